/* intent.c — intents: strict parsing of the wire form, the wire form back,
 * and the BLAKE2b-256 hash over its canonical encoding.
 *
 * Parsing is strict so that tt_intent_to_json(tt_intent_from_json(j)) is
 * canonically identical to j: every key the wire form has is either
 * required or optional-with-one-meaning, unknown keys are errors (in the
 * intent and in its ops), and "unset" appears only as true on a resolve.
 * That is what lets the server re-hash the parsed intent and compare. */
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/intent.h"
#include "core/json.h"

static const char *const op_names[TT_OP__COUNT] = {
    [TT_OP_SET] = "set",       [TT_OP_UNSET] = "unset",
    [TT_OP_INCR] = "incr",     [TT_OP_ADD] = "add",
    [TT_OP_REMOVE] = "remove", [TT_OP_DELETE] = "delete",
    [TT_OP_CREATE] = "create", [TT_OP_RESOLVE] = "resolve",
};

const char *tt_op_kind_name(tt_op_kind k) {
  if ((unsigned)k >= TT_OP__COUNT)
    return "unknown";
  return op_names[k];
}

int tt_op_kind_parse(const char *name, tt_op_kind *out) {
  if (!name)
    return TETHER_EINVAL;
  for (int k = 0; k < TT_OP__COUNT; k++) {
    if (strcmp(name, op_names[k]) == 0) {
      if (out)
        *out = (tt_op_kind)k;
      return 0;
    }
  }
  return TETHER_EINVAL;
}

/* Which parts each kind has on the wire. */
static int kind_has_field(tt_op_kind k) {
  return k != TT_OP_CREATE && k != TT_OP_DELETE;
}
static int kind_has_value(tt_op_kind k) {
  return k != TT_OP_UNSET && k != TT_OP_DELETE;
}

/* ---- op helpers ---------------------------------------------------------*/

void tt_op_clear(tt_op *op) {
  if (!op)
    return;
  free(op->field);
  free(op->conflict);
  json_decref(op->value);
  json_decref(op->base_value);
  memset(op, 0, sizeof *op);
}

int tt_op_init(tt_op *op, tt_op_kind kind, const char *field, json_t *value,
               json_t *base_value, const char *conflict) {
  memset(op, 0, sizeof *op);
  if ((unsigned)kind >= TT_OP__COUNT)
    return TETHER_EINVAL;
  op->kind = kind;
  if (field && !(op->field = strdup(field)))
    goto nomem;
  if (conflict && !(op->conflict = strdup(conflict)))
    goto nomem;
  if (kind == TT_OP_RESOLVE && !value) {
    /* A resolve without a value settles to "field absent"; its wire form
     * carries "value": null with "unset": true. */
    op->resolve_unset = 1;
    if (!(op->value = json_null()))
      goto nomem;
  } else {
    op->value = json_incref(value);
  }
  op->base_value = json_incref(base_value);
  return 0;
nomem:
  tt_op_clear(op);
  return TETHER_ENOMEM;
}

/* ---- parsing ------------------------------------------------------------*/

typedef struct {
  char *errbuf;
  size_t errlen;
  char seqs[32]; /* "seq N" or "seq ?" for messages */
} perr;

#define PFAIL(code, ...)                                                       \
  do {                                                                         \
    rc = (code);                                                               \
    fail_msg(pe, __VA_ARGS__);                                                 \
    goto out;                                                                  \
  } while (0)

__attribute__((format(printf, 2, 3))) static void fail_msg(perr *pe,
                                                          const char *fmt,
                                                          ...) {
  char msg[200];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (n < 0)
    msg[0] = '\0';
  else if ((size_t)n >= sizeof msg) /* cut, but not inside a character */
    msg[tt_utf8_prefix(msg, sizeof msg - 1)] = '\0';
  tt_errf(pe->errbuf, pe->errlen, "intent %s: %s", pe->seqs, msg);
}

/* A JSON string that is a valid name: 1..MAX bytes, no embedded NUL. */
static int get_name(const json_t *v, size_t max, int allow_empty,
                    const char **out) {
  if (!json_is_string(v))
    return TETHER_ETYPE;
  size_t n = json_string_length(v);
  const char *s = json_string_value(v);
  if (n > max)
    return TETHER_ETOOBIG;
  if ((n == 0 && !allow_empty) || strlen(s) != n)
    return TETHER_EINVAL;
  *out = s;
  return 0;
}

static int get_u64(const json_t *v, uint64_t max, uint64_t *out) {
  if (!json_is_integer(v))
    return TETHER_ETYPE;
  json_int_t x = json_integer_value(v);
  if (x < 0 || (uint64_t)x > max)
    return TETHER_EINVAL;
  *out = (uint64_t)x;
  return 0;
}

static int get_hex(const json_t *v, uint8_t *out, size_t len) {
  if (!json_is_string(v))
    return TETHER_ETYPE;
  if (json_string_length(v) != 2 * len ||
      tt_hex_decode(json_string_value(v), out, len) != 0)
    return TETHER_EINVAL;
  return 0;
}

static const char *why(int rc) {
  switch (rc) {
  case TETHER_ETYPE:
    return "wrong type";
  case TETHER_ETOOBIG:
    return "too long";
  default:
    return "invalid value";
  }
}

/* MEASURE 0: the caller knows the whole intent's canonical text is within
 * the limit, so no value inside it can be over. */
static int check_value_size(const json_t *v, int measure) {
  return measure ? tt_canon_len(v, TT_MAX_VALUE, NULL) : 0;
}

static int parse_op(const json_t *j, size_t i, tt_op *op, perr *pe,
                    int measure) {
  int rc = 0;
  const char *kname = NULL, *s = NULL;
  json_t *v;
  memset(op, 0, sizeof *op);

  if (!json_is_object(j))
    PFAIL(TETHER_ETYPE, "ops[%zu]: not an object", i);

  const char *key;
  json_t *val;
  json_object_foreach((json_t *)j, key, val) {
    (void)val;
    if (strcmp(key, "kind") && strcmp(key, "field") && strcmp(key, "value") &&
        strcmp(key, "base_value") && strcmp(key, "conflict") &&
        strcmp(key, "unset"))
      PFAIL(TETHER_EINVAL, "ops[%zu]: unknown key '%.*s'", i,
            (int)tt_utf8_prefix(key, 64), key);
  }

  v = json_object_get(j, "kind");
  if (!v)
    PFAIL(TETHER_EINVAL, "ops[%zu].kind: missing", i);
  if (!json_is_string(v))
    PFAIL(TETHER_ETYPE, "ops[%zu].kind: wrong type", i);
  kname = json_string_value(v);
  if (tt_op_kind_parse(kname, &op->kind) != 0 ||
      strlen(kname) != json_string_length(v))
    PFAIL(TETHER_EINVAL, "ops[%zu].kind: unknown op kind '%.*s'", i,
          (int)tt_utf8_prefix(kname, 32), kname);

  v = json_object_get(j, "field");
  if (kind_has_field(op->kind)) {
    if (!v)
      PFAIL(TETHER_EINVAL, "ops[%zu].field: missing for %s", i, kname);
    if ((rc = get_name(v, TT_MAX_NAME, 0, &s)) != 0)
      PFAIL(rc, "ops[%zu].field: %s", i, why(rc));
    if (!(op->field = strdup(s)))
      PFAIL(TETHER_ENOMEM, "out of memory");
  } else if (v) {
    PFAIL(TETHER_EINVAL, "ops[%zu].field: not allowed for %s", i, kname);
  }

  v = json_object_get(j, "unset");
  if (v) {
    if (op->kind != TT_OP_RESOLVE)
      PFAIL(TETHER_EINVAL, "ops[%zu].unset: only allowed for resolve", i);
    if (!json_is_true(v))
      PFAIL(json_is_boolean(v) ? TETHER_EINVAL : TETHER_ETYPE,
            "ops[%zu].unset: must be true when present", i);
    op->resolve_unset = 1;
  }

  v = json_object_get(j, "value");
  if (kind_has_value(op->kind)) {
    if (!v)
      PFAIL(TETHER_EINVAL, "ops[%zu].value: missing for %s", i, kname);
    if (op->kind == TT_OP_INCR && !json_is_integer(v))
      PFAIL(TETHER_ETYPE, "ops[%zu].value: incr needs an integer", i);
    if (op->kind == TT_OP_CREATE && !json_is_object(v))
      PFAIL(TETHER_ETYPE, "ops[%zu].value: create needs an object", i);
    if (op->resolve_unset && !json_is_null(v))
      PFAIL(TETHER_EINVAL, "ops[%zu].value: must be null with unset", i);
    if ((rc = check_value_size(v, measure)) != 0)
      PFAIL(rc, "ops[%zu].value: %s", i,
            rc == TETHER_ETOOBIG ? "larger than 1 MiB" : "out of memory");
    op->value = json_incref(v);
  } else if (v) {
    PFAIL(TETHER_EINVAL, "ops[%zu].value: not allowed for %s", i, kname);
  }

  v = json_object_get(j, "base_value");
  if (v) {
    if ((rc = check_value_size(v, measure)) != 0)
      PFAIL(rc, "ops[%zu].base_value: %s", i,
            rc == TETHER_ETOOBIG ? "larger than 1 MiB" : "out of memory");
    op->base_value = json_incref(v);
  }

  v = json_object_get(j, "conflict");
  if (op->kind == TT_OP_RESOLVE) {
    if (!v)
      PFAIL(TETHER_EINVAL, "ops[%zu].conflict: missing for resolve", i);
    if ((rc = get_name(v, TT_MAX_NAME, 0, &s)) != 0)
      PFAIL(rc, "ops[%zu].conflict: %s", i, why(rc));
    if (!(op->conflict = strdup(s)))
      PFAIL(TETHER_ENOMEM, "out of memory");
  } else if (v) {
    PFAIL(TETHER_EINVAL, "ops[%zu].conflict: only allowed for resolve", i);
  }
out:
  if (rc)
    tt_op_clear(op);
  return rc;
}

static const char *const intent_keys[] = {
    "client", "seq", "prev", "hash", "hlc", "schema",
    "coll",   "id",  "base", "label", "ops"};

int tt_intent_from_json(const json_t *j, tt_intent *out, char *errbuf,
                        size_t errlen) {
  return tt_intent_from_json_sized(j, 0, out, errbuf, errlen);
}

int tt_intent_from_json_sized(const json_t *j, size_t canon_len,
                              tt_intent *out, char *errbuf, size_t errlen) {
  int measure = canon_len == 0 || canon_len > TT_MAX_VALUE;
  int rc = 0;
  perr pe_s = {errbuf, errlen, "seq ?"}, *pe = &pe_s;
  const char *s = NULL;
  json_t *v;
  uint64_t u;

  memset(out, 0, sizeof *out);
  if (!json_is_object(j))
    PFAIL(TETHER_EJSON, "not a JSON object");

  /* The seq first, so that every later message can name the intent. */
  v = json_object_get(j, "seq");
  if (!v)
    PFAIL(TETHER_EINVAL, "seq: missing");
  if ((rc = get_u64(v, INT64_MAX, &out->seq)) != 0 || out->seq == 0)
    PFAIL(rc ? rc : TETHER_EINVAL, "seq: %s",
          rc == TETHER_ETYPE ? "wrong type" : "must be 1 or more");
  snprintf(pe->seqs, sizeof pe->seqs, "seq %llu",
           (unsigned long long)out->seq);

  const char *key;
  json_t *val;
  json_object_foreach((json_t *)j, key, val) {
    (void)val;
    size_t k, nk = sizeof intent_keys / sizeof intent_keys[0];
    for (k = 0; k < nk; k++)
      if (strcmp(key, intent_keys[k]) == 0)
        break;
    if (k == nk)
      PFAIL(TETHER_EINVAL, "unknown key '%.*s'", (int)tt_utf8_prefix(key, 64),
            key);
  }

  if (!(v = json_object_get(j, "client")))
    PFAIL(TETHER_EINVAL, "client: missing");
  if ((rc = get_hex(v, out->client, TT_ID_LEN)) != 0)
    PFAIL(rc, "client: %s", rc == TETHER_ETYPE ? "wrong type"
                                               : "not 32 hex characters");
  if (!(v = json_object_get(j, "prev")))
    PFAIL(TETHER_EINVAL, "prev: missing");
  if ((rc = get_hex(v, out->prev, TT_HASH_LEN)) != 0)
    PFAIL(rc, "prev: %s", rc == TETHER_ETYPE ? "wrong type"
                                             : "not 64 hex characters");
  if (!(v = json_object_get(j, "hash")))
    PFAIL(TETHER_EINVAL, "hash: missing");
  if ((rc = get_hex(v, out->hash, TT_HASH_LEN)) != 0)
    PFAIL(rc, "hash: %s", rc == TETHER_ETYPE ? "wrong type"
                                             : "not 64 hex characters");

  if (!(v = json_object_get(j, "hlc")))
    PFAIL(TETHER_EINVAL, "hlc: missing");
  if ((rc = get_u64(v, INT64_MAX, &out->hlc)) != 0)
    PFAIL(rc, "hlc: %s", why(rc));
  if (!(v = json_object_get(j, "schema")))
    PFAIL(TETHER_EINVAL, "schema: missing");
  if ((rc = get_u64(v, UINT32_MAX, &u)) != 0)
    PFAIL(rc, "schema: %s", why(rc));
  out->schema = (uint32_t)u;
  if (!(v = json_object_get(j, "base")))
    PFAIL(TETHER_EINVAL, "base: missing");
  if ((rc = get_u64(v, INT64_MAX, &out->base)) != 0)
    PFAIL(rc, "base: %s", why(rc));

  if (!(v = json_object_get(j, "coll")))
    PFAIL(TETHER_EINVAL, "coll: missing");
  if ((rc = get_name(v, TT_MAX_NAME, 0, &s)) != 0)
    PFAIL(rc, "coll: %s", why(rc));
  if (!(out->coll = strdup(s)))
    PFAIL(TETHER_ENOMEM, "out of memory");
  if (!(v = json_object_get(j, "id")))
    PFAIL(TETHER_EINVAL, "id: missing");
  if ((rc = get_name(v, TT_MAX_NAME, 0, &s)) != 0)
    PFAIL(rc, "id: %s", why(rc));
  if (!(out->id = strdup(s)))
    PFAIL(TETHER_ENOMEM, "out of memory");

  if ((v = json_object_get(j, "label"))) {
    if ((rc = get_name(v, TT_MAX_LABEL, 1, &s)) != 0)
      PFAIL(rc, "label: %s", why(rc));
    if (!(out->label = strdup(s)))
      PFAIL(TETHER_ENOMEM, "out of memory");
  }

  if (!(v = json_object_get(j, "ops")))
    PFAIL(TETHER_EINVAL, "ops: missing");
  if (!json_is_array(v))
    PFAIL(TETHER_ETYPE, "ops: wrong type");
  size_t n = json_array_size(v);
  if (n == 0)
    PFAIL(TETHER_EINVAL, "ops: empty");
  if (n > TT_MAX_OPS)
    PFAIL(TETHER_ETOOBIG, "ops: more than %d", TT_MAX_OPS);
  if (!(out->ops = calloc(n, sizeof *out->ops)))
    PFAIL(TETHER_ENOMEM, "out of memory");
  for (size_t i = 0; i < n; i++) {
    if ((rc = parse_op(json_array_get(v, i), i, &out->ops[i], pe,
                       measure)) != 0)
      goto out;
    out->nops = i + 1;
  }
out:
  if (rc)
    tt_intent_clear(out);
  return rc;
}

/* ---- canonical text, read directly --------------------------------------*/

/* Nearly every intent a server reads is tt_canon's text of a valid intent:
 * its members come in one order with no white space, so they are read off
 * the text here without building the envelope as a JSON object (a third of
 * a push's cost on the server, with the freeing). Each reader below takes
 * exactly what it expects or clears OK; anything else, valid or not, is
 * left to tt_intent_from_json_sized, whose messages say what is wrong. */
typedef struct {
  const char *p, *end;
  int ok, nomem;
} ctext;

static void ct_lit(ctext *c, const char *lit, size_t n) {
  if (c->ok && (size_t)(c->end - c->p) >= n && memcmp(c->p, lit, n) == 0)
    c->p += n;
  else
    c->ok = 0;
}
#define CT_LIT(c, lit) ct_lit((c), (lit), sizeof(lit) - 1)

static int ct_digit(const ctext *c, const char *p) {
  return p < c->end && *p >= '0' && *p <= '9';
}

/* An integer 0..MAX as tt_canon writes it: no sign, no leading zero. */
static uint64_t ct_uint(ctext *c, uint64_t max) {
  const char *p = c->p;
  uint64_t v = 0;
  if (!c->ok || !ct_digit(c, p) || (*p == '0' && ct_digit(c, p + 1))) {
    c->ok = 0;
    return 0;
  }
  for (; ct_digit(c, p); p++) {
    unsigned d = (unsigned)(*p - '0');
    if (v > (max - d) / 10) {
      c->ok = 0;
      return 0;
    }
    v = v * 10 + d;
  }
  c->p = p;
  return v;
}

/* 2*N lower-case hex digits and the closing quote. */
static void ct_hex(ctext *c, uint8_t *out, size_t n) {
  const unsigned char *p = (const unsigned char *)c->p;
  if (!c->ok || (size_t)(c->end - c->p) < 2 * n + 1) {
    c->ok = 0;
    return;
  }
  for (size_t i = 0; i < n; i++) {
    unsigned hi = tt_hex_lower_digit[p[2 * i]];
    unsigned lo = tt_hex_lower_digit[p[2 * i + 1]];
    if (!hi || !lo) {
      c->ok = 0;
      return;
    }
    out[i] = (uint8_t)((hi - 1) << 4 | (lo - 1));
  }
  if (p[2 * n] != '"') {
    c->ok = 0;
    return;
  }
  c->p += 2 * n + 1;
}

/* A string of MIN..MAX printable ASCII bytes (no escape) and its closing
 * quote, copied. */
static char *ct_name(ctext *c, size_t min, size_t max) {
  if (!c->ok)
    return NULL;
  const unsigned char *b = (const unsigned char *)c->p;
  const unsigned char *q = tt_json_plain_end(b, (const unsigned char *)c->end);
  size_t n = (size_t)(q - b);
  if (q >= (const unsigned char *)c->end || *q != '"' || n < min || n > max) {
    c->ok = 0;
    return NULL;
  }
  char *s = malloc(n + 1);
  if (!s) {
    c->ok = 0;
    c->nomem = 1;
    return NULL;
  }
  memcpy(s, b, n);
  s[n] = '\0';
  c->p = (const char *)q + 1;
  return s;
}

int tt_intent_from_canonical(const char *text, size_t avail, unsigned flags,
                             int depth, tt_intent *out, size_t *used) {
  static const char label_key[] = ",\"label\":\"";
  ctext c = {text, text + avail, text != NULL, 0};
  json_t *ops = NULL;
  int rc = 1;
  memset(out, 0, sizeof *out);
  if (depth < 1 || depth >= TT_JSON_MAX_DEPTH)
    return 1;
  CT_LIT(&c, "{\"base\":");
  out->base = ct_uint(&c, INT64_MAX);
  CT_LIT(&c, ",\"client\":\"");
  ct_hex(&c, out->client, TT_ID_LEN);
  CT_LIT(&c, ",\"coll\":\"");
  out->coll = ct_name(&c, 1, TT_MAX_NAME);
  CT_LIT(&c, ",\"hash\":\"");
  ct_hex(&c, out->hash, TT_HASH_LEN);
  CT_LIT(&c, ",\"hlc\":");
  out->hlc = ct_uint(&c, INT64_MAX);
  CT_LIT(&c, ",\"id\":\"");
  out->id = ct_name(&c, 1, TT_MAX_NAME);
  if (c.ok && (size_t)(c.end - c.p) > sizeof label_key &&
      memcmp(c.p, label_key, sizeof label_key - 1) == 0) {
    c.p += sizeof label_key - 1;
    out->label = ct_name(&c, 0, TT_MAX_LABEL);
  }
  CT_LIT(&c, ",\"ops\":");
  if (c.ok) {
    size_t n = 0;
    int canonical = 0;
    int jr = tt_json_parse_prefix(c.p, (size_t)(c.end - c.p), flags, depth,
                                  &ops, &n, &canonical);
    if (jr == TETHER_ENOMEM)
      c.nomem = 1;
    if (jr || !canonical || !json_is_array(ops) || json_array_size(ops) == 0 ||
        json_array_size(ops) > TT_MAX_OPS)
      c.ok = 0;
    else
      c.p += n;
  }
  CT_LIT(&c, ",\"prev\":\"");
  ct_hex(&c, out->prev, TT_HASH_LEN);
  CT_LIT(&c, ",\"schema\":");
  out->schema = (uint32_t)ct_uint(&c, UINT32_MAX);
  CT_LIT(&c, ",\"seq\":");
  out->seq = ct_uint(&c, INT64_MAX);
  CT_LIT(&c, "}");
  if (!c.ok || out->seq == 0) {
    rc = c.nomem ? TETHER_ENOMEM : 1;
    goto out;
  }
  *used = (size_t)(c.p - text);

  /* The ops by the general rules, now that the intent's size is known. */
  size_t n = json_array_size(ops);
  perr pe = {NULL, 0, "seq ?"};
  if (!(out->ops = calloc(n, sizeof *out->ops))) {
    rc = TETHER_ENOMEM;
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    int orc = parse_op(json_array_get(ops, i), i, &out->ops[i], &pe,
                       *used > TT_MAX_VALUE);
    if (orc) {
      rc = orc == TETHER_ENOMEM ? orc : 1;
      goto out;
    }
    out->nops = i + 1;
  }
  rc = 0;
out:
  json_decref(ops);
  if (rc)
    tt_intent_clear(out);
  return rc;
}

/* ---- wire form ----------------------------------------------------------*/

/* Sets KEY to the new reference V; false (and V released) on failure. */
static int put(json_t *o, const char *key, json_t *v) {
  return v && json_object_set_new(o, key, v) == 0;
}

static json_t *op_to_json(const tt_op *op) {
  json_t *o = json_object();
  if (!o)
    return NULL;
  if (!put(o, "kind", json_string(tt_op_kind_name(op->kind))))
    goto fail;
  if (kind_has_field(op->kind) && op->field &&
      !put(o, "field", json_string(op->field)))
    goto fail;
  if (op->kind == TT_OP_RESOLVE && op->resolve_unset) {
    if (!put(o, "value", json_null()) || !put(o, "unset", json_true()))
      goto fail;
  } else if (kind_has_value(op->kind) && op->value &&
             json_object_set(o, "value", op->value) != 0) {
    goto fail;
  }
  if (op->base_value && json_object_set(o, "base_value", op->base_value) != 0)
    goto fail;
  if (op->kind == TT_OP_RESOLVE && op->conflict &&
      !put(o, "conflict", json_string(op->conflict)))
    goto fail;
  return o;
fail:
  json_decref(o);
  return NULL;
}

json_t *tt_intent_to_json(const tt_intent *in, int with_hash) {
  char hex[2 * TT_HASH_LEN + 1];
  json_t *o = json_object(), *ops = NULL;
  if (!o)
    return NULL;
  tt_hex_encode(in->client, TT_ID_LEN, hex);
  if (!put(o, "client", json_string(hex)))
    goto fail;
  if (!put(o, "seq", json_integer((json_int_t)in->seq)))
    goto fail;
  tt_hex_encode(in->prev, TT_HASH_LEN, hex);
  if (!put(o, "prev", json_string(hex)))
    goto fail;
  if (with_hash) {
    tt_hex_encode(in->hash, TT_HASH_LEN, hex);
    if (!put(o, "hash", json_string(hex)))
      goto fail;
  }
  if (!put(o, "hlc", json_integer((json_int_t)in->hlc)) ||
      !put(o, "schema", json_integer((json_int_t)in->schema)) ||
      !put(o, "coll", json_string(in->coll ? in->coll : "")) ||
      !put(o, "id", json_string(in->id ? in->id : "")) ||
      !put(o, "base", json_integer((json_int_t)in->base)))
    goto fail;
  if (in->label && !put(o, "label", json_string(in->label)))
    goto fail;
  if (!(ops = json_array()) || json_object_set_new(o, "ops", ops) != 0) {
    ops = NULL;
    goto fail;
  }
  for (size_t i = 0; i < in->nops; i++) {
    json_t *jo = op_to_json(&in->ops[i]);
    if (!jo || json_array_append_new(ops, jo) != 0)
      goto fail;
  }
  return o;
fail:
  json_decref(o);
  return NULL;
}

/* ---- hash ---------------------------------------------------------------*/

/* The canonical text of the intent without "hash", written field by field
 * in sorted key order (the same bytes as tt_canon(tt_intent_to_json(in,
 * 0)); core_intent checks both on every op kind) without building a tree.
 * Top-level keys sort as base, client, coll, hlc, id, label, ops, prev,
 * schema, seq; op keys as base_value, conflict, field, kind, unset, value. */
static int canon_key(tt_buf *b, const char *key, int first) {
  return tt_buf_add(b, first ? "\"" : ",\"", first ? 1 : 2) ||
                 tt_buf_add(b, key, strlen(key)) || tt_buf_add(b, "\":", 2)
             ? TETHER_ENOMEM
             : 0;
}

static int canon_int(tt_buf *b, const char *key, long long v) {
  return canon_key(b, key, 0) || tt_buf_add_int(b, v)
             ? TETHER_ENOMEM
             : 0;
}

static int canon_str(tt_buf *b, const char *key, const char *v, int first) {
  int rc = canon_key(b, key, first);
  return rc ? rc : tt_canon_str_buf(b, v, strlen(v));
}

static int canon_hex(tt_buf *b, const char *key, const uint8_t *bytes,
                     size_t n) {
  char hex[2 * TT_HASH_LEN + 1];
  tt_hex_encode(bytes, n, hex);
  return canon_key(b, key, 0) || tt_buf_add(b, "\"", 1) ||
                 tt_buf_add(b, hex, 2 * n) || tt_buf_add(b, "\"", 1)
             ? TETHER_ENOMEM
             : 0;
}

static int canon_json(tt_buf *b, const char *key, const json_t *v, int first) {
  int rc = canon_key(b, key, first);
  return rc ? rc : tt_canon_buf(b, v, 0);
}

static int canon_op(tt_buf *b, const tt_op *op) {
  int rc = 0, first = 1;
  int unset = op->kind == TT_OP_RESOLVE && op->resolve_unset;
  if (tt_buf_add(b, "{", 1)) return TETHER_ENOMEM;
  if (op->base_value) {
    if ((rc = canon_json(b, "base_value", op->base_value, first))) return rc;
    first = 0;
  }
  if (op->kind == TT_OP_RESOLVE && op->conflict) {
    if ((rc = canon_str(b, "conflict", op->conflict, first))) return rc;
    first = 0;
  }
  if (kind_has_field(op->kind) && op->field) {
    if ((rc = canon_str(b, "field", op->field, first))) return rc;
    first = 0;
  }
  if ((rc = canon_str(b, "kind", tt_op_kind_name(op->kind), first))) return rc;
  if (unset) {
    if (canon_key(b, "unset", 0) || tt_buf_add(b, "true", 4) ||
        canon_key(b, "value", 0) || tt_buf_add(b, "null", 4))
      return TETHER_ENOMEM;
  } else if (kind_has_value(op->kind) && op->value &&
             (rc = canon_json(b, "value", op->value, 0))) {
    return rc;
  }
  return tt_buf_add(b, "}", 1) ? TETHER_ENOMEM : 0;
}

static int canon_intent(tt_buf *b, const tt_intent *in) {
  int rc;
  if ((rc = canon_key(b, "base", 1)))
    return rc;
  if (tt_buf_add_int(b, (int64_t)in->base))
    return TETHER_ENOMEM;
  if ((rc = canon_hex(b, "client", in->client, TT_ID_LEN)) ||
      (rc = canon_str(b, "coll", in->coll ? in->coll : "", 0)) ||
      (rc = canon_int(b, "hlc", (long long)in->hlc)) ||
      (rc = canon_str(b, "id", in->id ? in->id : "", 0)) ||
      (in->label && (rc = canon_str(b, "label", in->label, 0))) ||
      (rc = canon_key(b, "ops", 0)))
    return rc;
  if (tt_buf_add(b, "[", 1)) return TETHER_ENOMEM;
  for (size_t i = 0; i < in->nops; i++) {
    if (i && tt_buf_add(b, ",", 1)) return TETHER_ENOMEM;
    if ((rc = canon_op(b, &in->ops[i]))) return rc;
  }
  if (tt_buf_add(b, "]", 1)) return TETHER_ENOMEM;
  if ((rc = canon_hex(b, "prev", in->prev, TT_HASH_LEN)) ||
      (rc = canon_int(b, "schema", (long long)in->schema)) ||
      (rc = canon_int(b, "seq", (long long)in->seq)))
    return rc;
  return tt_buf_add(b, "}", 1) ? TETHER_ENOMEM : 0;
}

int tt_intent_compute_hash(const tt_intent *in, uint8_t out[TT_HASH_LEN]) {
  tt_buf b = {0};
  int rc = tt_buf_add(&b, "{", 1) ? TETHER_ENOMEM : canon_intent(&b, in);
  if (!rc && crypto_generichash(out, TT_HASH_LEN, b.data, b.len, NULL, 0))
    rc = TETHER_ENOMEM;
  tt_buf_free(&b);
  return rc;
}

static int lower_hex(const char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!tt_hex_lower_digit[(uint8_t)p[i]])
      return 0;
  return 1;
}

static int has(const char *text, size_t len, size_t at, const char *lit,
               size_t n) {
  return at <= len && len - at >= n && memcmp(text + at, lit, n) == 0;
}

/* Why this is the hash: TEXT is tt_canon of the element, so dropping its
 * "hash" member leaves tt_canon of the element without it (keys keep
 * their order; "hash" is never first). tt_intent_from_json accepted the
 * element, and it changes nothing it reads but the case of hex strings:
 * with "client" and "prev" in lower case, that object is
 * tt_intent_to_json(in, 0), whose canonical text tt_intent_compute_hash
 * hashes. Sorted, the text opens {"base":N,"client":"…","coll":"…",
 * "hash":"…","hlc": and closes ,"prev":"…","schema":N,"seq":N}. */
int tt_intent_hash_text(const char *text, size_t len,
                        uint8_t out[TT_HASH_LEN]) {
  static const char head[] = "{\"base\":", client[] = ",\"client\":\"",
                    coll[] = ",\"coll\":\"", hash[] = ",\"hash\":\"",
                    prev[] = ",\"prev\":\"", schema[] = "\",\"schema\":",
                    seq[] = ",\"seq\":";
  size_t i = 0;
  if (!text || !has(text, len, 0, head, sizeof head - 1))
    return TETHER_EINVAL;
  i = sizeof head - 1;
  while (i < len && text[i] >= '0' && text[i] <= '9')
    i++;
  if (!has(text, len, i, client, sizeof client - 1))
    return TETHER_EINVAL;
  i += sizeof client - 1;
  if (len - i < 2 * TT_ID_LEN + 1 || !lower_hex(text + i, 2 * TT_ID_LEN) ||
      text[i + 2 * TT_ID_LEN] != '"')
    return TETHER_EINVAL;
  i += 2 * TT_ID_LEN + 1;
  if (!has(text, len, i, coll, sizeof coll - 1))
    return TETHER_EINVAL;
  i += sizeof coll - 1;
  while (i < len && text[i] != '"')
    i += text[i] == '\\' ? 2 : 1;
  if (i >= len)
    return TETHER_EINVAL;
  size_t cut = ++i; /* the "hash" member starts here */
  if (!has(text, len, i, hash, sizeof hash - 1))
    return TETHER_EINVAL;
  i += sizeof hash - 1 + 2 * TT_HASH_LEN;
  if (i >= len || text[i] != '"')
    return TETHER_EINVAL;
  size_t resume = ++i;

  /* The tail, read backwards: digits, seq, digits, schema, prev's hex. */
  size_t j = len;
  if (j <= resume || text[--j] != '}')
    return TETHER_EINVAL;
  while (j > resume && text[j - 1] >= '0' && text[j - 1] <= '9')
    j--;
  if (j - resume < sizeof seq - 1 ||
      !has(text, len, j - (sizeof seq - 1), seq, sizeof seq - 1))
    return TETHER_EINVAL;
  j -= sizeof seq - 1;
  while (j > resume && text[j - 1] >= '0' && text[j - 1] <= '9')
    j--;
  size_t tail = sizeof schema - 1 + 2 * TT_HASH_LEN + sizeof prev - 1;
  if (j - resume < tail ||
      !has(text, len, j - (sizeof schema - 1), schema, sizeof schema - 1))
    return TETHER_EINVAL;
  j -= sizeof schema - 1 + 2 * TT_HASH_LEN;
  if (!lower_hex(text + j, 2 * TT_HASH_LEN) ||
      !has(text, len, j - (sizeof prev - 1), prev, sizeof prev - 1))
    return TETHER_EINVAL;

  crypto_generichash_state st;
  if (crypto_generichash_init(&st, NULL, 0, TT_HASH_LEN) ||
      crypto_generichash_update(&st, (const unsigned char *)text, cut) ||
      crypto_generichash_update(&st, (const unsigned char *)text + resume,
                                len - resume) ||
      crypto_generichash_final(&st, out, TT_HASH_LEN))
    return TETHER_ENOMEM;
  return 0;
}

int tt_intent_check_hash(const tt_intent *in) {
  uint8_t h[TT_HASH_LEN];
  int rc = tt_intent_compute_hash(in, h);
  if (rc)
    return rc;
  return sodium_memcmp(h, in->hash, TT_HASH_LEN) == 0 ? 0 : TETHER_ECHAIN;
}

/* ---- lifetime -----------------------------------------------------------*/

void tt_intent_clear(tt_intent *in) {
  if (!in)
    return;
  for (size_t i = 0; i < in->nops; i++)
    tt_op_clear(&in->ops[i]);
  free(in->ops);
  free(in->coll);
  free(in->id);
  free(in->label);
  memset(in, 0, sizeof *in);
}

static int dup_str(char **dst, const char *src) {
  if (!src) {
    *dst = NULL;
    return 0;
  }
  return (*dst = strdup(src)) ? 0 : TETHER_ENOMEM;
}

static int dup_json(json_t **dst, const json_t *src) {
  if (!src) {
    *dst = NULL;
    return 0;
  }
  return (*dst = json_deep_copy(src)) ? 0 : TETHER_ENOMEM;
}

int tt_intent_copy(tt_intent *dst, const tt_intent *src) {
  int rc = 0;
  memset(dst, 0, sizeof *dst);
  memcpy(dst->client, src->client, TT_ID_LEN);
  dst->seq = src->seq;
  memcpy(dst->prev, src->prev, TT_HASH_LEN);
  memcpy(dst->hash, src->hash, TT_HASH_LEN);
  dst->hlc = src->hlc;
  dst->schema = src->schema;
  dst->base = src->base;
  if ((rc = dup_str(&dst->coll, src->coll)) || (rc = dup_str(&dst->id, src->id)) ||
      (rc = dup_str(&dst->label, src->label)))
    goto out;
  if (src->nops) {
    if (!(dst->ops = calloc(src->nops, sizeof *dst->ops))) {
      rc = TETHER_ENOMEM;
      goto out;
    }
    for (size_t i = 0; i < src->nops; i++) {
      const tt_op *s = &src->ops[i];
      tt_op *d = &dst->ops[i];
      dst->nops = i + 1;
      d->kind = s->kind;
      d->resolve_unset = s->resolve_unset;
      if ((rc = dup_str(&d->field, s->field)) ||
          (rc = dup_str(&d->conflict, s->conflict)) ||
          (rc = dup_json(&d->value, s->value)) ||
          (rc = dup_json(&d->base_value, s->base_value)))
        goto out;
    }
  }
out:
  if (rc)
    tt_intent_clear(dst);
  return rc;
}
