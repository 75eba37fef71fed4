/* write.c — local writes: each becomes one intent, chained to the previous
 * one, appended to the outbox and shown in the view, in one durable local
 * commit. */
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "core/merge.h"
#include "replica/internal.h"

#define NOCHANGE 1

/* Fills in->ops/nops for the current optimistic document VIEW (NULL =
 * absent). Returns 0, NOCHANGE (no intent to record) or a TETHER_E* code
 * with r->err set. Reads T, never writes it: a write that fails must leave
 * an open batch as it was. */
typedef int (*build_fn)(void *ctx, tt_replica *r, tt_txn *t,
                        const json_t *view, tt_intent *in);
/* Called once everything is validated, to write what the builder decided
 * beyond the intent (resolve: remove its conflicts); may adjust ST, the
 * document's status record written afterwards. */
typedef int (*after_fn)(void *ctx, tt_txn *t, tt_rstatus *st);

static int ops_alloc(tt_intent *in, size_t n) {
  if (n > TT_MAX_OPS) return TETHER_ETOOBIG;
  in->ops = calloc(n ? n : 1, sizeof *in->ops);
  if (!in->ops) return TETHER_ENOMEM;
  return 0;
}

/* tt_op_init takes its own references; VALUE is consumed here. */
static int op_add(tt_intent *in, tt_op_kind kind, const char *field,
                  json_t *value, const json_t *base_value,
                  const char *conflict) {
  int rc = tt_op_init(&in->ops[in->nops], kind, field, value,
                      (json_t *)base_value, conflict);
  json_decref(value);
  if (rc) return rc;
  in->nops++;
  return 0;
}

static json_t *copy_or_null(const json_t *v) {
  return v ? json_deep_copy(v) : NULL;
}

static int field_ok(tt_replica *r, const char *field) {
  if (!field || !tt_name_valid(field)) {
    TT_R_ERR(r, "invalid field name");
    return TETHER_EINVAL;
  }
  return 0;
}

static int value_ok(tt_replica *r, const json_t *v) {
  int rc = tt_r_value_size_ok(v);
  if (rc == TETHER_ETOOBIG)
    TT_R_ERR(r, "value over %u bytes", (unsigned)TT_MAX_VALUE);
  return rc;
}

static int commit_local(tt_replica *r, const char *coll, const char *id,
                        const char *label, uint64_t now_ms, build_fn build,
                        after_fn after, void *bctx) {
  uint8_t key[TT_R_KEYMAX];
  tt_txn *t = NULL;
  tt_intent in;
  tt_rdoc conf = {0};
  json_t *view = NULL, *next = NULL, *wire = NULL;
  char *text = NULL;
  uint8_t *rec = NULL;
  size_t rec_len = 0, text_len = 0, kl;
  int rc;

  memset(&in, 0, sizeof in);
  r->err[0] = 0;
  if (!coll || !id || !tt_name_valid(coll) || !tt_name_valid(id)) {
    TT_R_ERR(r, "invalid collection or document id");
    return TETHER_EINVAL;
  }
  if (label && (label[0] == 0 || strlen(label) > TT_MAX_LABEL)) {
    TT_R_ERR(r, "label must be 1..%d bytes", TT_MAX_LABEL);
    return TETHER_EINVAL;
  }
  kl = tt_r_dockey(key, coll, id);
  if ((rc = tt_r_begin(r, 1, &t))) return rc;
  tt_rchain ch;
  if ((rc = tt_r_chain_load(t, &ch))) goto out;
  if (ch.next_seq >= (UINT64_C(1) << 63)) {
    rc = TETHER_ETOOBIG;
    goto out;
  }
  if ((rc = tt_r_view_load(t, key, kl, &view, &conf))) goto out;
  rc = build(bctx, r, t, view, &in);
  if (rc) goto out; /* NOCHANGE included: nothing to commit */

  memcpy(in.client, r->id, TT_ID_LEN);
  in.seq = ch.next_seq;
  memcpy(in.prev, ch.head, TT_HASH_LEN);
  tt_hlc_clock clk = {ch.hlc};
  in.hlc = tt_hlc_tick(&clk, now_ms);
  in.schema = 0;
  in.base = conf.version;
  in.coll = strdup(coll);
  in.id = strdup(id);
  in.label = label ? strdup(label) : NULL;
  if (!in.coll || !in.id || (label && !in.label)) {
    rc = TETHER_ENOMEM;
    goto out;
  }
  if ((rc = tt_intent_compute_hash(&in, in.hash))) goto out;
  rc = tt_view_apply(view, &in, &next);
  if (rc == TETHER_ETYPE) {
    TT_R_ERR(r, "%s does not fit the current value of %s/%s",
             tt_op_kind_name(in.ops[0].kind), coll, id);
    goto out;
  }
  if (rc) {
    TT_R_ERR(r, "cannot apply %s to %s/%s: %s",
             tt_op_kind_name(in.ops[0].kind), coll, id, tether_strerror(rc));
    goto out;
  }

  wire = tt_intent_to_json(&in, 1);
  if (!wire || !(text = tt_r_dump(wire, &text_len))) {
    rc = TETHER_ENOMEM;
    goto out;
  }
  /* An intent too big for one push would wedge the outbox forever. */
  if (text_len > TT_R_MAX_INTENT_BYTES) {
    TT_R_ERR(r, "intent over %u bytes", (unsigned)TT_R_MAX_INTENT_BYTES);
    rc = TETHER_ETOOBIG;
    goto out;
  }
  tt_robx o = {.state = TT_ROBX_PENDING,
               .base = in.base,
               .has_base = 1,
               .key = key,
               .klen = kl,
               .label = label,
               .label_len = label ? strlen(label) : 0,
               .json = text,
               .json_len = text_len};
  if ((rc = tt_r_obx_encode(&o, &rec, &rec_len))) goto out;
  tt_rstatus st;
  if ((rc = tt_r_status_load(t, key, kl, &st))) goto out;

  /* Everything is checked: only store writes from here on. */
  uint8_t sk[8], pk[TT_R_KEYMAX + 9];
  tt_r_seqkey(sk, in.seq);
  memcpy(pk, key, kl);
  pk[kl] = 0;
  memcpy(pk + kl + 1, sk, 8);
  if ((rc = tt_put(t, TT_TABLE_OUTBOX, (tt_bytes){sk, 8},
                   (tt_bytes){rec, rec_len})) ||
      (rc = tt_put(t, TT_TABLE_PENDING, (tt_bytes){pk, kl + 9},
                   (tt_bytes){"", 0})) ||
      (rc = tt_r_overlay_store(t, key, kl, next)))
    goto out;
  if (after && (rc = after(bctx, t, &st))) goto out;
  /* A newer write supersedes a reported rejection on the document. */
  st.rejected = 0;
  if ((rc = tt_r_status_store(t, key, kl, &st))) goto out;
  ch.next_seq = in.seq + 1;
  memcpy(ch.head, in.hash, TT_HASH_LEN);
  ch.hlc = in.hlc;
  if ((rc = tt_r_chain_store(t, &ch))) goto out;
  rc = tt_r_commit(r, t);
  t = NULL;
out:
  if (rc == NOCHANGE) rc = 0;
  if (rc && !r->err[0])
    TT_R_ERR(r, "write to %s/%s: %s", coll, id, tether_strerror(rc));
  tt_r_end(r, t);
  tt_intent_clear(&in);
  tt_r_doc_clear(&conf);
  json_decref(view);
  json_decref(next);
  json_decref(wire);
  free(text);
  free(rec);
  return rc;
}

/* ---- put ----------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int build_put(void *ctx, tt_replica *r, tt_txn *t, const json_t *view,
                     tt_intent *in) {
  (void)t;
  const json_t *obj = ctx;
  const char *k;
  json_t *v;
  int rc;
  if (!view) {
    if ((rc = value_ok(r, obj)) || (rc = ops_alloc(in, 1))) return rc;
    json_t *c = json_deep_copy(obj);
    if (!c) return TETHER_ENOMEM;
    return op_add(in, TT_OP_CREATE, NULL, c, NULL, NULL);
  }
  /* Diff against the view, in field-name order so the intent is
   * deterministic whatever the caller's key order. */
  size_t n = json_object_size(obj) + json_object_size(view), m = 0;
  const char **names = malloc((n ? n : 1) * sizeof *names);
  if (!names) return TETHER_ENOMEM;
  json_object_foreach((json_t *)obj, k, v) {
    const json_t *old = json_object_get(view, k);
    if (!old || !tt_canon_equal(old, v)) names[m++] = k;
  }
  json_object_foreach((json_t *)view, k, v) {
    if (!json_object_get(obj, k)) names[m++] = k;
  }
  if (m == 0) {
    rc = NOCHANGE;
    goto out;
  }
  qsort(names, m, sizeof *names, cmp_str);
  if ((rc = ops_alloc(in, m))) {
    if (rc == TETHER_ETOOBIG)
      TT_R_ERR(r, "put changes more than %d fields", TT_MAX_OPS);
    goto out;
  }
  for (size_t i = 0; i < m; i++) {
    const json_t *nv = json_object_get(obj, names[i]);
    const json_t *old = json_object_get(view, names[i]);
    if (nv) {
      if ((rc = value_ok(r, nv))) goto out;
      json_t *c = json_deep_copy(nv);
      if (!c) {
        rc = TETHER_ENOMEM;
        goto out;
      }
      rc = op_add(in, TT_OP_SET, names[i], c, old, NULL);
    } else {
      rc = op_add(in, TT_OP_UNSET, names[i], NULL, old, NULL);
    }
    if (rc) goto out;
  }
out:
  free(names);
  return rc;
}

int tt_replica_put(tt_replica *r, const char *coll, const char *id,
                   const json_t *object, const char *label, uint64_t now_ms) {
  if (!r) return TETHER_EINVAL;
  if (!json_is_object(object)) {
    TT_R_ERR(r, "put needs a JSON object");
    return TETHER_EINVAL;
  }
  const char *k;
  json_t *v;
  json_object_foreach((json_t *)object, k, v) {
    if (!tt_name_valid(k)) {
      TT_R_ERR(r, "invalid field name in object");
      return TETHER_EINVAL;
    }
  }
  return commit_local(r, coll, id, label, now_ms, build_put, NULL,
                      (void *)object);
}

/* ---- single ops ---------------------------------------------------------- */

typedef struct {
  tt_op_kind kind;
  const char *field;
  const json_t *value;
} write_ctx;

static int build_write(void *vctx, tt_replica *r, tt_txn *t,
                       const json_t *view, tt_intent *in) {
  (void)t;
  const write_ctx *w = vctx;
  int rc = ops_alloc(in, 1);
  if (rc) return rc;
  json_t *val = copy_or_null(w->value);
  if (w->value && !val) return TETHER_ENOMEM;
  (void)r;
  /* Only set and unset carry the value they replace: the server needs it
   * for the three-way check. incr/add/remove always combine with the
   * server's current value (core/merge.c), and carrying the whole field
   * would make every such intent as big as the field: quadratic outbox
   * growth, and past the body limit a push that can never be accepted. */
  int three_way = w->kind == TT_OP_SET || w->kind == TT_OP_UNSET;
  const json_t *base = three_way && w->field && view
                           ? json_object_get(view, w->field)
                           : NULL;
  return op_add(in, w->kind, w->field, val, base, NULL);
}

int tt_replica_write(tt_replica *r, const char *coll, const char *id,
                     tt_op_kind kind, const char *field, const json_t *value,
                     const char *label, uint64_t now_ms) {
  if (!r) return TETHER_EINVAL;
  int rc = 0, need_field = 1, need_value = 1;
  switch (kind) {
  case TT_OP_SET:
  case TT_OP_ADD:
  case TT_OP_REMOVE:
    break;
  case TT_OP_INCR:
    if (value && !json_is_integer(value)) {
      TT_R_ERR(r, "incr needs an integer");
      return TETHER_EINVAL;
    }
    break;
  case TT_OP_UNSET:
    need_value = 0;
    break;
  case TT_OP_DELETE:
    need_field = need_value = 0;
    break;
  case TT_OP_CREATE:
    need_field = 0;
    if (value && !json_is_object(value)) {
      TT_R_ERR(r, "create needs a JSON object");
      return TETHER_EINVAL;
    }
    break;
  default:
    TT_R_ERR(r, "op kind not allowed here");
    return TETHER_EINVAL;
  }
  if (need_field && (rc = field_ok(r, field))) return rc;
  if (!need_field && field) {
    TT_R_ERR(r, "%s takes no field", tt_op_kind_name(kind));
    return TETHER_EINVAL;
  }
  if (need_value != (value != NULL)) {
    TT_R_ERR(r, "%s %s a value", tt_op_kind_name(kind),
             need_value ? "needs" : "takes no");
    return TETHER_EINVAL;
  }
  if (value && (rc = value_ok(r, value))) return rc;
  write_ctx w = {kind, field, value};
  return commit_local(r, coll, id, label, now_ms, build_write, NULL, &w);
}

/* ---- resolve ------------------------------------------------------------- */

typedef struct {
  const char *coll, *id, *field;
  const json_t *value;
  char **ids; /* matching conflict ids */
  size_t n, cap;
  int err;
} resolve_ctx;

static int conflict_match_cb(void *vctx, tt_bytes k, tt_bytes v) {
  resolve_ctx *c = vctx;
  json_t *j = tt_json_load(v.data, v.len, 0);
  if (!json_is_object(j)) {
    json_decref(j);
    c->err = TETHER_ECORRUPT;
    return 1;
  }
  const char *co = json_string_value(json_object_get(j, "coll"));
  const char *id = json_string_value(json_object_get(j, "id"));
  const char *f = json_string_value(json_object_get(j, "field"));
  int match = co && id && f && strcmp(co, c->coll) == 0 &&
              strcmp(id, c->id) == 0 && strcmp(f, c->field) == 0;
  json_decref(j);
  if (!match) return 0;
  if (c->n == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 4;
    if (cap > TT_MAX_OPS) {
      c->err = TETHER_ETOOBIG;
      return 1;
    }
    char **ni = realloc(c->ids, cap * sizeof *ni);
    if (!ni) {
      c->err = TETHER_ENOMEM;
      return 1;
    }
    c->ids = ni;
    c->cap = cap;
  }
  char *s = malloc(k.len + 1);
  if (!s) {
    c->err = TETHER_ENOMEM;
    return 1;
  }
  memcpy(s, k.data, k.len);
  s[k.len] = 0;
  c->ids[c->n++] = s;
  return 0;
}

static int build_resolve(void *vctx, tt_replica *r, tt_txn *t,
                         const json_t *view, tt_intent *in) {
  resolve_ctx *c = vctx;
  int rc = tt_scan(t, TT_TABLE_RCONFLICTS, (tt_bytes){NULL, 0},
                   conflict_match_cb, c);
  if (rc > 0) rc = c->err;
  if (rc) return rc;
  if (c->n == 0) {
    TT_R_ERR(r, "no open conflict on %s/%s field %s", c->coll, c->id,
             c->field);
    return TETHER_ENOTFOUND;
  }
  if ((rc = ops_alloc(in, c->n))) return rc;
  const json_t *base = view ? json_object_get(view, c->field) : NULL;
  /* One op per open conflict on the field: a single decision settles
   * every concurrent write that was held. */
  for (size_t i = 0; i < c->n; i++) {
    json_t *val = copy_or_null(c->value);
    if (c->value && !val) return TETHER_ENOMEM;
    if ((rc = op_add(in, TT_OP_RESOLVE, c->field, val, base, c->ids[i])))
      return rc;
    in->ops[in->nops - 1].resolve_unset = c->value == NULL;
  }
  return 0;
}

/* The decision is recorded: the conflicts it settles are no longer open. */
static int after_resolve(void *vctx, tt_txn *t, tt_rstatus *st) {
  resolve_ctx *c = vctx;
  for (size_t i = 0; i < c->n; i++) {
    int rc = tt_del(t, TT_TABLE_RCONFLICTS,
                    (tt_bytes){c->ids[i], strlen(c->ids[i])});
    if (rc) return rc;
  }
  st->nconflicts =
      st->nconflicts > c->n ? st->nconflicts - (uint32_t)c->n : 0;
  return 0;
}

int tt_replica_resolve(tt_replica *r, const char *coll, const char *id,
                       const char *field, const json_t *value,
                       uint64_t now_ms) {
  if (!r) return TETHER_EINVAL;
  int rc = field_ok(r, field);
  if (rc) return rc;
  if (value && (rc = value_ok(r, value))) return rc;
  resolve_ctx c = {coll, id, field, value, NULL, 0, 0, 0};
  rc = commit_local(r, coll, id, NULL, now_ms, build_resolve, after_resolve,
                    &c);
  for (size_t i = 0; i < c.n; i++) free(c.ids[i]);
  free(c.ids);
  return rc;
}
