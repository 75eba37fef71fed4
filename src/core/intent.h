/* intent.h — what a user did, with enough context to merge it later.
 *
 * Wire/hash form (JSON object; see docs/PROTOCOL.md):
 *   {"client":"<32 hex>","seq":N,"prev":"<64 hex>","hash":"<64 hex>",
 *    "hlc":N,"schema":N,"coll":"..","id":"..","base":N,"label":"..",
 *    "ops":[{"kind":"set","field":"title","value":V,"base_value":V}, ...]}
 * "label" is omitted when NULL. In an op, "field" is omitted for create and
 * delete, "value" when the kind takes none, "base_value" when the replica saw
 * no value, "conflict" except on resolve.
 *
 * The hash is BLAKE2b-256 over the canonical JSON (tt_canon) of that object
 * without its "hash" key; "prev" is the previous intent's hash of the same
 * replica (all zero for seq 1). */
#ifndef TT_CORE_INTENT_H
#define TT_CORE_INTENT_H

#include <jansson.h>
#include <stdint.h>

#include "hlc.h"
#include "util.h"

typedef enum {
  TT_OP_SET,     /* field := value                    (field, value)       */
  TT_OP_UNSET,   /* remove field                      (field)              */
  TT_OP_INCR,    /* counter += value (integer)        (field, value)       */
  TT_OP_ADD,     /* set-valued field ∪= {value}       (field, value)       */
  TT_OP_REMOVE,  /* set-valued field -= {value}       (field, value)       */
  TT_OP_DELETE,  /* document tombstone                ()                   */
  TT_OP_CREATE,  /* document := value (object)        (value)              */
  TT_OP_RESOLVE, /* settle a conflict: field := value (field, value, conflict);
                    a JSON null value with "unset":true in the wire form
                    means resolve to "field absent"   */
  TT_OP__COUNT
} tt_op_kind;

/* "set", "unset", ... Static storage. */
const char *tt_op_kind_name(tt_op_kind k);
/* TETHER_EINVAL for an unknown name. */
int tt_op_kind_parse(const char *name, tt_op_kind *out);

typedef struct {
  tt_op_kind kind;
  char *field;        /* NULL for create/delete */
  json_t *value;      /* owned reference; NULL where the kind takes none */
  json_t *base_value; /* owned reference; NULL = the replica saw no value */
  char *conflict;     /* resolve only: the conflict id; else NULL */
  int resolve_unset;  /* resolve only: settle to "field absent" */
} tt_op;

typedef struct {
  uint8_t client[TT_ID_LEN];
  uint64_t seq;                /* 1, 2, 3, ... per replica, no gaps */
  uint8_t prev[TT_HASH_LEN];
  uint8_t hash[TT_HASH_LEN];
  tt_hlc hlc;
  uint32_t schema;
  char *coll;
  char *id;
  uint64_t base;               /* document version the replica saw; 0 = none */
  char *label;                 /* NULL = none */
  tt_op *ops;
  size_t nops;
} tt_intent;

/* Parses and validates one intent: every key present with the right type,
 * names valid, known op kinds, each op's required parts present and of the
 * right type (incr: integer value; create: object value), limits respected.
 * Does NOT check the hash; use tt_intent_check_hash.
 * On success *out owns copies/references; release with tt_intent_clear.
 * On failure returns TETHER_EJSON/EINVAL/ETYPE/ETOOBIG, writes a one-line
 * reason naming the bad key into errbuf, and *out is left cleared. */
int tt_intent_from_json(const json_t *j, tt_intent *out, char *errbuf,
                        size_t errlen);
/* tt_intent_from_json when the length of J's canonical text is known
 * (CANON_LEN, 0 = not known): within TT_MAX_VALUE, no value inside can be
 * over the limit, and values are not measured. */
int tt_intent_from_json_sized(const json_t *j, size_t canon_len,
                              tt_intent *out, char *errbuf, size_t errlen);

/* tt_intent_from_json_sized's fast path for the usual case: TEXT (AVAIL
 * bytes, more may follow the intent) starts with tt_canon's text of a valid
 * intent. 0: *OUT holds it and *USED is the length of that text. 1: the
 * text is not that (not canonical, or not valid; *OUT empty): read it the
 * general way, which says what is wrong. TETHER_ENOMEM. FLAGS and DEPTH
 * (the intent's own nesting level) are the surrounding parse's
 * (tt_json_each_text_fn), so the values inside are read as it would read
 * them. Either way gives the same intent from the same text
 * (tests/unit/core_intent.c). */
int tt_intent_from_canonical(const char *text, size_t avail, unsigned flags,
                             int depth, tt_intent *out, size_t *used);

/* New JSON object in the wire form; WITH_HASH adds "hash". NULL on ENOMEM.
 * Caller owns the reference (json_decref). */
json_t *tt_intent_to_json(const tt_intent *in, int with_hash);

/* Computes the BLAKE2b-256 of the canonical form without "hash". */
int tt_intent_compute_hash(const tt_intent *in, uint8_t out[TT_HASH_LEN]);
/* 0 if in->hash matches, TETHER_ECHAIN otherwise. */
int tt_intent_check_hash(const tt_intent *in);
/* The hash of an intent read from the TEXT of its wire form, when TEXT is
 * exactly tt_canon of an object tt_intent_from_json accepted (a streamed
 * element with tt_json_span.canonical): the same bytes as
 * tt_intent_compute_hash of what it parsed, from two slices of TEXT instead
 * of writing the intent again. TETHER_EINVAL when TEXT is not laid out
 * that way (hex in upper case, say): then use tt_intent_check_hash. */
int tt_intent_hash_text(const char *text, size_t len,
                        uint8_t out[TT_HASH_LEN]);

/* Frees everything the intent owns and zeroes it. Safe on a zeroed intent. */
void tt_intent_clear(tt_intent *in);

/* Deep copy; 0 or TETHER_ENOMEM (then *dst is cleared). */
int tt_intent_copy(tt_intent *dst, const tt_intent *src);

/* Op helpers for building intents. tt_op_init takes new references to VALUE
 * and BASE_VALUE (either may be NULL) and copies FIELD/CONFLICT. */
int tt_op_init(tt_op *op, tt_op_kind kind, const char *field, json_t *value,
               json_t *base_value, const char *conflict);
void tt_op_clear(tt_op *op);

#endif
