/* policy.c — the conflict-policy table of the server config. Lookups are
 * binary searches over sorted arrays built once at parse time. */
#include <stdlib.h>
#include <string.h>

#include "core/policy.h"
#include "core/util.h"

static const char *const policy_names[TT_POLICY__COUNT] = {
    [TT_POLICY_LWW] = "lww",
    [TT_POLICY_SERVER_WINS] = "server-wins",
    [TT_POLICY_CLIENT_WINS] = "client-wins",
    [TT_POLICY_MANUAL] = "manual",
};

const char *tt_policy_name(tt_policy p) {
  if ((unsigned)p >= TT_POLICY__COUNT)
    return "unknown";
  return policy_names[p];
}

int tt_policy_parse_name(const char *name, tt_policy *out) {
  if (!name)
    return TETHER_EINVAL;
  for (int p = 0; p < TT_POLICY__COUNT; p++) {
    if (strcmp(name, policy_names[p]) == 0) {
      if (out)
        *out = (tt_policy)p;
      return 0;
    }
  }
  return TETHER_EINVAL;
}

typedef struct {
  char *name;
  tt_policy policy;
} field_pol;

typedef struct {
  char *name;
  tt_policy policy;
  field_pol *fields;
  size_t nfields;
} coll_pol;

struct tt_policy_table {
  coll_pol *colls;
  size_t ncolls;
};

void tt_policy_free(tt_policy_table *t) {
  if (!t)
    return;
  for (size_t i = 0; i < t->ncolls; i++) {
    for (size_t j = 0; j < t->colls[i].nfields; j++)
      free(t->colls[i].fields[j].name);
    free(t->colls[i].fields);
    free(t->colls[i].name);
  }
  free(t->colls);
  free(t);
}

/* Both structs start with the name, so one comparator sorts and finds. */
static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int parse_policy_value(const json_t *v, tt_policy *out) {
  if (!json_is_string(v))
    return TETHER_ECONFIG;
  return tt_policy_parse_name(json_string_value(v), out) == 0 ? 0
                                                               : TETHER_ECONFIG;
}

#define CFAIL(...)                                                             \
  do {                                                                         \
    rc = TETHER_ECONFIG;                                                       \
    tt_errf(errbuf, errlen, __VA_ARGS__);                                      \
    goto out;                                                                  \
  } while (0)

static int parse_coll(const char *cname, const json_t *c, coll_pol *cp,
                      char *errbuf, size_t errlen) {
  int rc = 0;
  const char *key;
  json_t *v;
  cp->policy = TT_POLICY_LWW;
  if (!json_is_object(c))
    CFAIL("collections.%s: not an object", cname);
  json_object_foreach((json_t *)c, key, v) {
    if (strcmp(key, "policy") == 0) {
      if (parse_policy_value(v, &cp->policy))
        CFAIL("collections.%s.policy: unknown policy (lww, server-wins, "
              "client-wins, manual)",
              cname);
    } else if (strcmp(key, "fields") == 0) {
      if (!json_is_object(v))
        CFAIL("collections.%s.fields: not an object", cname);
    } else {
      CFAIL("collections.%s: unknown key '%.*s'", cname,
            (int)tt_utf8_prefix(key, 64), key);
    }
  }
  json_t *fields = json_object_get(c, "fields");
  size_t n = json_object_size(fields);
  if (n && !(cp->fields = calloc(n, sizeof *cp->fields))) {
    rc = TETHER_ENOMEM;
    goto out;
  }
  json_t *f;
  json_object_foreach(fields, key, f) {
    const char *fk;
    json_t *fv;
    field_pol *fp = &cp->fields[cp->nfields];
    if (!tt_name_valid(key))
      CFAIL("collections.%s.fields: bad field name", cname);
    if (!json_is_object(f))
      CFAIL("collections.%s.fields.%s: not an object", cname, key);
    if (!json_object_get(f, "policy"))
      CFAIL("collections.%s.fields.%s.policy: missing", cname, key);
    json_object_foreach(f, fk, fv) {
      if (strcmp(fk, "policy") != 0)
        CFAIL("collections.%s.fields.%s: unknown key '%.*s'", cname, key,
              (int)tt_utf8_prefix(fk, 64), fk);
      if (parse_policy_value(fv, &fp->policy))
        CFAIL("collections.%s.fields.%s.policy: unknown policy (lww, "
              "server-wins, client-wins, manual)",
              cname, key);
    }
    if (!(fp->name = strdup(key))) {
      rc = TETHER_ENOMEM;
      goto out;
    }
    cp->nfields++;
  }
  if (cp->nfields > 1)
    qsort(cp->fields, cp->nfields, sizeof *cp->fields, by_name);
out:
  return rc;
}

int tt_policy_parse(const char *text, size_t len, tt_policy_table **out,
                    char *errbuf, size_t errlen) {
  int rc = 0;
  json_t *root = NULL;
  json_error_t jerr;
  tt_policy_table *t = calloc(1, sizeof *t);
  *out = NULL;
  tt_errf(errbuf, errlen, "%s", "");
  if (!t)
    return TETHER_ENOMEM;
  if (!text || len == 0)
    goto out;
  root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
  if (!root) {
    rc = TETHER_EJSON;
    tt_errf(errbuf, errlen, "policy config: line %d: %s", jerr.line,
            jerr.text);
    goto out;
  }
  if (!json_is_object(root))
    CFAIL("policy config: not a JSON object");
  const char *key;
  json_t *v;
  json_object_foreach(root, key, v) {
    if (strcmp(key, "collections") != 0)
      CFAIL("unknown key '%.*s'", (int)tt_utf8_prefix(key, 64), key);
    if (!json_is_object(v))
      CFAIL("collections: not an object");
  }
  json_t *colls = json_object_get(root, "collections");
  size_t n = json_object_size(colls);
  if (n && !(t->colls = calloc(n, sizeof *t->colls))) {
    rc = TETHER_ENOMEM;
    goto out;
  }
  json_t *c;
  json_object_foreach(colls, key, c) {
    coll_pol *cp = &t->colls[t->ncolls];
    if (!tt_name_valid(key))
      CFAIL("collections: bad collection name");
    if (!(cp->name = strdup(key))) {
      rc = TETHER_ENOMEM;
      goto out;
    }
    t->ncolls++;
    if ((rc = parse_coll(key, c, cp, errbuf, errlen)) != 0)
      goto out;
  }
  if (t->ncolls > 1)
    qsort(t->colls, t->ncolls, sizeof *t->colls, by_name);
out:
  json_decref(root);
  if (rc) {
    tt_policy_free(t);
    return rc;
  }
  *out = t;
  return 0;
}

tt_policy tt_policy_lookup(const tt_policy_table *t, const char *coll,
                           const char *field) {
  /* bsearch may not be given a NULL array, even with no elements. */
  if (!t || !coll || t->ncolls == 0)
    return TT_POLICY_LWW;
  const coll_pol *cp =
      bsearch(&coll, t->colls, t->ncolls, sizeof *t->colls, by_name);
  if (!cp)
    return TT_POLICY_LWW;
  if (field && cp->nfields) {
    const field_pol *fp =
        bsearch(&field, cp->fields, cp->nfields, sizeof *cp->fields, by_name);
    if (fp)
      return fp->policy;
  }
  return cp->policy;
}
