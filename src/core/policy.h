/* policy.h — conflict policies per collection and per field, from the
 * server's JSON config:
 *   {"collections": {"notes": {"policy": "manual",
 *                              "fields": {"n": {"policy": "lww"}}}}}
 * Unconfigured collections and fields fall back to the collection's policy,
 * then to lww. Unknown keys or policy names are a TETHER_ECONFIG error. */
#ifndef TT_CORE_POLICY_H
#define TT_CORE_POLICY_H

#include <stddef.h>

typedef enum {
  TT_POLICY_LWW = 0,      /* greater (hlc, origin) wins */
  TT_POLICY_SERVER_WINS,  /* the committed value stays */
  TT_POLICY_CLIENT_WINS,  /* the incoming intent wins */
  TT_POLICY_MANUAL,       /* keep the server value, record a conflict */
  TT_POLICY__COUNT
} tt_policy;

/* "lww", "server-wins", "client-wins", "manual". Static storage. */
const char *tt_policy_name(tt_policy p);
int tt_policy_parse_name(const char *name, tt_policy *out);

typedef struct tt_policy_table tt_policy_table; /* opaque, immutable */

/* Parses config TEXT (LEN bytes). On success *out is a table to free with
 * tt_policy_free. On failure *out is NULL, the return is TETHER_ECONFIG (or
 * TETHER_EJSON) and errbuf names the bad key or value. LEN 0 / TEXT NULL
 * gives the all-lww table. */
int tt_policy_parse(const char *text, size_t len, tt_policy_table **out,
                    char *errbuf, size_t errlen);
/* FIELD may be NULL: the collection-level policy (used for delete). */
tt_policy tt_policy_lookup(const tt_policy_table *t, const char *coll,
                           const char *field);
void tt_policy_free(tt_policy_table *t);

#endif
