/* replica_confirm.c — a clean outcome confirmed from the overlay's text
 * (confirm_from_overlay in src/replica/sync.c: the intent is its
 * document's only pending one, was written on the version confirmed now,
 * and the overlay differs from the confirmed record) against the slow path
 * that parses the stored intent and applies it (confirm_clean); outbox
 * records of layout 1 (no base: always the slow path) and 2; store formats
 * 1 and 2 migrated to 3 on open, a later one refused; ROUTCOMES records as
 * canonical text.
 *
 * Every comparison is of stored bytes. Three replicas run each scenario
 * with the same writes at the same clock, so their intents are identical:
 *   A  as written (layout 2): the fast path when it applies;
 *   B  the same outbox records rewritten as layout 1 (has_base 0): the
 *      slow path always;
 *   C  layout 2 with the intent text replaced by "{}": the fast path never
 *      reads it, the slow path cannot parse it (TETHER_ECORRUPT, nothing
 *      changed). Which path decides only on PENDING, the base, DOCS and
 *      VIEW, identical in A and C, so C's answer tells which path A took. */
#include "core/merge.h"
#include "replica/internal.h"
#include "replica_fixture.h"

/* ---- fixtures ------------------------------------------------------------ */

static fx *fx_new(void) {
  void *s = NULL;
  assert_int_equal(fx_setup(&s), 0);
  return s;
}

static void fx_free(fx *f) {
  if (!f) return;
  void *s = f;
  fx_teardown(&s);
}

typedef struct {
  fx *f[3]; /* A, B, C above */
} trio;

static int trio_setup(void **state) {
  trio *t = calloc(1, sizeof *t);
  assert_non_null(t);
  for (int i = 0; i < 3; i++) t->f[i] = fx_new();
  *state = t;
  return 0;
}

static int trio_teardown(void **state) {
  trio *t = *state;
  for (int i = 0; i < 3; i++) fx_free(t->f[i]);
  free(t);
  return 0;
}

static void trio_reset(trio *t) {
  for (int i = 0; i < 3; i++) {
    fx_free(t->f[i]);
    t->f[i] = fx_new();
  }
}

/* ---- raw store access ---------------------------------------------------- */

typedef struct {
  uint8_t *p;
  size_t n;
  int found;
} blob;

static void blob_free(blob *b) {
  free(b->p);
  memset(b, 0, sizeof *b);
}

static blob raw_get(fx *f, tt_table tab, const void *k, size_t kl) {
  tt_txn *t = NULL;
  blob b = {NULL, 0, 0};
  tt_bytes v;
  assert_int_equal(tt_txn_begin(f->st, 0, 0, &t), 0);
  int rc = tt_get(t, tab, (tt_bytes){k, kl}, &v);
  if (rc == 0) {
    b.found = 1;
    b.n = v.len;
    b.p = malloc(v.len ? v.len : 1);
    assert_non_null(b.p);
    memcpy(b.p, v.data, v.len);
  } else {
    assert_int_equal(rc, TETHER_ENOTFOUND);
  }
  tt_abort(t);
  return b;
}

/* Overwrites (V NULL: deletes) one record, in a transaction of its own. */
static void raw_set(fx *f, tt_table tab, const void *k, size_t kl,
                    const void *v, size_t vl) {
  tt_txn *t = NULL;
  assert_int_equal(tt_txn_begin(f->st, 0, 1, &t), 0);
  if (v)
    assert_int_equal(tt_put(t, tab, (tt_bytes){k, kl}, (tt_bytes){v, vl}), 0);
  else
    assert_int_equal(tt_del(t, tab, (tt_bytes){k, kl}), 0);
  assert_int_equal(tt_commit(t), 0);
}

static blob docs_raw(fx *f, const char *coll, const char *id) {
  uint8_t key[TT_R_KEYMAX];
  size_t kl = tt_r_dockey(key, coll, id);
  return raw_get(f, TT_TABLE_DOCS, key, kl);
}

static blob view_raw(fx *f, const char *coll, const char *id) {
  uint8_t key[TT_R_KEYMAX];
  size_t kl = tt_r_dockey(key, coll, id);
  return raw_get(f, TT_TABLE_VIEW, key, kl);
}

static blob obx_raw(fx *f, uint64_t seq) {
  uint8_t sk[8];
  tt_r_seqkey(sk, seq);
  return raw_get(f, TT_TABLE_OUTBOX, sk, 8);
}

static void obx_set(fx *f, uint64_t seq, const void *v, size_t vl) {
  uint8_t sk[8];
  tt_r_seqkey(sk, seq);
  raw_set(f, TT_TABLE_OUTBOX, sk, 8, v, vl);
}

static void hex_add(tt_buf *b, const void *p, size_t n) {
  char *h = malloc(2 * n + 1);
  assert_non_null(h);
  tt_hex_encode(p, n, h);
  assert_int_equal(tt_buf_add(b, h, 2 * n), 0);
  free(h);
}

static int dump_cb(void *ctx, tt_bytes k, tt_bytes v) {
  tt_buf *b = ctx;
  hex_add(b, k.data, k.len);
  assert_int_equal(tt_buf_add(b, "=", 1), 0);
  hex_add(b, v.data, v.len);
  assert_int_equal(tt_buf_add(b, "\n", 1), 0);
  return 0;
}

/* The whole store as text (every table; OUTBOX left out unless
 * WITH_OUTBOX). Caller frees. */
static char *dump(fx *f, int with_outbox) {
  tt_buf b = {0};
  tt_txn *t = NULL;
  assert_int_equal(tt_txn_begin(f->st, 0, 0, &t), 0);
  for (int tab = 0; tab < TT_TABLE__COUNT; tab++) {
    if (tab == TT_TABLE_OUTBOX && !with_outbox) continue;
    char h[16];
    int n = snprintf(h, sizeof h, "#%d\n", tab);
    assert_int_equal(tt_buf_add(&b, h, (size_t)n), 0);
    assert_int_equal(
        tt_scan(t, (tt_table)tab, (tt_bytes){NULL, 0}, dump_cb, &b), 0);
  }
  tt_abort(t);
  assert_int_equal(tt_buf_add(&b, "", 1), 0);
  return (char *)b.data;
}

#define assert_same_dump(fa, fb, with_outbox)                                 \
  do {                                                                        \
    char *da_ = dump((fa), (with_outbox)), *db_ = dump((fb), (with_outbox));  \
    assert_string_equal(da_, db_);                                            \
    free(da_);                                                                \
    free(db_);                                                                \
  } while (0)

#define assert_blob_equal(a, b)                                               \
  do {                                                                        \
    assert_int_equal((a).found, (b).found);                                   \
    assert_int_equal((a).n, (b).n);                                           \
    if ((a).n) assert_memory_equal((a).p, (b).p, (a).n);                      \
  } while (0)

/* ---- outbox and index ---------------------------------------------------- */

typedef struct {
  size_t seqs, idx;
} obx_count;

static int count_cb(void *ctx, tt_bytes k, tt_bytes v) {
  (void)v;
  obx_count *c = ctx;
  if (k.len == 8) c->seqs++;
  else if (k.len == TT_R_ACKIDX_LEN) c->idx++;
  else fail_msg("outbox key of %zu bytes", k.len);
  return 0;
}

static obx_count obx_counts(fx *f) {
  obx_count c = {0, 0};
  tt_txn *t = NULL;
  assert_int_equal(tt_txn_begin(f->st, 0, 0, &t), 0);
  assert_int_equal(
      tt_scan(t, TT_TABLE_OUTBOX, (tt_bytes){NULL, 0}, count_cb, &c), 0);
  tt_abort(t);
  return c;
}

static int ackidx_has(fx *f, uint32_t p, uint64_t commit, uint64_t seq) {
  uint8_t ik[TT_R_ACKIDX_LEN];
  tt_r_ackidx_key(ik, p, commit, seq);
  blob b = raw_get(f, TT_TABLE_OUTBOX, ik, sizeof ik);
  int found = b.found;
  if (found) assert_int_equal(b.n, 0);
  blob_free(&b);
  return found;
}

typedef struct {
  const uint8_t *pre;
  size_t plen;
  size_t n;
  uint64_t seqs[8];
} pend_count;

static int pend_cb(void *ctx, tt_bytes k, tt_bytes v) {
  pend_count *c = ctx;
  assert_int_equal(v.len, 0);
  if (k.len != c->plen + 8 || memcmp(k.data, c->pre, c->plen)) return 1;
  if (c->n < 8)
    c->seqs[c->n] = tt_be64_get((const uint8_t *)k.data + c->plen);
  c->n++;
  return 0;
}

/* PENDING entries of one document; *FIRST (may be NULL) the lowest seq. */
static size_t pending_of(fx *f, const char *coll, const char *id,
                         uint64_t *first) {
  uint8_t pre[TT_R_KEYMAX + 1];
  size_t kl = tt_r_dockey(pre, coll, id);
  pre[kl] = 0;
  pend_count c = {pre, kl + 1, 0, {0}};
  tt_txn *t = NULL;
  assert_int_equal(tt_txn_begin(f->st, 0, 0, &t), 0);
  assert_true(tt_scan(t, TT_TABLE_PENDING, (tt_bytes){pre, kl + 1}, pend_cb,
                      &c) >= 0);
  tt_abort(t);
  if (first) *first = c.n ? c.seqs[0] : 0;
  return c.n;
}

/* Decodes the stored record of SEQ and checks its layout byte, state, base
 * (layout 2), p and commit. */
static void obx_expect(fx *f, uint64_t seq, int layout, int state,
                       uint64_t base, uint32_t p, uint64_t commit) {
  blob b = obx_raw(f, seq);
  assert_true(b.found);
  assert_int_equal(b.p[0], layout);
  tt_robx o;
  assert_int_equal(tt_r_obx_decode((tt_bytes){b.p, b.n}, &o), 0);
  assert_int_equal(o.state, state);
  assert_int_equal(o.has_base, layout == 2);
  assert_int_equal(o.base, layout == 2 ? base : 0);
  assert_int_equal(o.p, p);
  assert_int_equal(o.commit, commit);
  blob_free(&b);
}

/* Rewrites the record of SEQ as a layout-1 record (what a format-2 build
 * wrote), everything else kept. */
static void obx_to_layout1(fx *f, uint64_t seq) {
  blob b = obx_raw(f, seq);
  assert_true(b.found);
  tt_robx o;
  assert_int_equal(tt_r_obx_decode((tt_bytes){b.p, b.n}, &o), 0);
  o.has_base = 0;
  o.base = 0;
  uint8_t *rec = NULL;
  size_t len = 0;
  assert_int_equal(tt_r_obx_encode(&o, &rec, &len), 0);
  assert_int_equal(rec[0], 1);
  assert_int_equal(len, b.n - (b.p[0] == 2 ? 8 : 0));
  obx_set(f, seq, rec, len);
  free(rec);
  blob_free(&b);
}

/* The intent text of SEQ replaced by "{}" (layout and base kept). */
static void obx_damage(fx *f, uint64_t seq) {
  blob b = obx_raw(f, seq);
  assert_true(b.found);
  tt_robx o;
  assert_int_equal(tt_r_obx_decode((tt_bytes){b.p, b.n}, &o), 0);
  o.json = "{}";
  o.json_len = 2;
  uint8_t *rec = NULL;
  size_t len = 0;
  assert_int_equal(tt_r_obx_encode(&o, &rec, &len), 0);
  obx_set(f, seq, rec, len);
  free(rec);
  blob_free(&b);
}

static void meta_format_set(fx *f, uint32_t v) {
  uint8_t fmt[4];
  tt_be32_put(fmt, v);
  raw_set(f, TT_TABLE_META, "format", 6, fmt, 4);
}

static uint32_t meta_format(fx *f) {
  blob b = raw_get(f, TT_TABLE_META, "format", 6);
  assert_true(b.found);
  assert_int_equal(b.n, 4);
  uint32_t v = tt_be32_get(b.p);
  blob_free(&b);
  return v;
}

static uint64_t chain_acked(fx *f) {
  tt_txn *t = NULL;
  tt_rchain c;
  assert_int_equal(tt_txn_begin(f->st, 0, 0, &t), 0);
  assert_int_equal(tt_r_chain_load(t, &c), 0);
  tt_abort(t);
  return c.acked;
}

static uint64_t own_of(fx *f) {
  tt_txn *t = NULL;
  uint64_t own = 99;
  assert_int_equal(tt_txn_begin(f->st, 0, 0, &t), 0);
  assert_int_equal(tt_r_own_load(t, &own), 0);
  tt_abort(t);
  return own;
}

/* Closes and reopens store and replica; the open's code (f->r NULL on
 * failure). */
static int reopen_rc(fx *f) {
  tt_replica_close(f->r);
  f->r = NULL;
  tt_store_close(f->st);
  f->st = NULL;
  fx_store_open(f);
  return tt_replica_open(f->st, &f->r);
}

/* ---- expected records, computed with the value rules -------------------- */

/* The intent stored for SEQ, parsed. */
static void intent_of(tt_txn *t, uint64_t seq, tt_robx *o, tt_intent *in) {
  uint8_t sk[8];
  tt_bytes v;
  tt_r_seqkey(sk, seq);
  assert_int_equal(tt_get(t, TT_TABLE_OUTBOX, (tt_bytes){sk, 8}, &v), 0);
  assert_int_equal(tt_r_obx_decode(v, o), 0);
  json_error_t e;
  json_t *ij = json_loadb(o->json, o->json_len, 0, &e);
  assert_non_null(ij);
  memset(in, 0, sizeof *in);
  assert_int_equal(tt_intent_from_json(ij, in, NULL, 0), 0);
  json_decref(ij);
}

/* What confirm_clean stores for SEQ at COMMIT: tt_view_apply of the
 * intent on the confirmed document held now, as a DOCS record. Also checks
 * that the record's base is that document's version. */
static blob expect_confirm(fx *f, uint64_t seq, uint64_t commit) {
  tt_txn *t = NULL;
  tt_robx o;
  tt_intent in;
  tt_rdoc d;
  json_t *next = NULL;
  assert_int_equal(tt_txn_begin(f->st, 0, 0, &t), 0);
  intent_of(t, seq, &o, &in);
  assert_int_equal(tt_r_doc_load(t, o.key, o.klen, &d), 0);
  tt_abort(t);
  assert_int_equal(in.base, d.exists ? d.version : 0);
  assert_int_equal(tt_view_apply(d.deleted ? NULL : d.obj, &in, &next), 0);
  size_t tl = 0;
  char *text = next ? tt_canon_n(next, &tl) : NULL;
  blob b = {malloc(9 + tl), 9 + tl, 1};
  assert_non_null(b.p);
  b.p[0] = next ? 0 : 1;
  tt_be64_put(b.p + 1, commit);
  if (tl) memcpy(b.p + 9, text, tl);
  free(text);
  json_decref(next);
  tt_intent_clear(&in);
  tt_r_doc_clear(&d);
  return b;
}

/* The overlay tt_r_view_recompute makes from the confirmed record held now
 * and the one pending intent SEQ, as a VIEW record. */
static blob expect_overlay(fx *f, uint64_t seq) {
  tt_txn *t = NULL;
  tt_robx o;
  tt_intent in;
  tt_rdoc d;
  json_t *next = NULL;
  assert_int_equal(tt_txn_begin(f->st, 0, 0, &t), 0);
  intent_of(t, seq, &o, &in);
  assert_int_equal(tt_r_doc_load(t, o.key, o.klen, &d), 0);
  tt_abort(t);
  assert_int_equal(tt_view_apply(d.deleted ? NULL : d.obj, &in, &next), 0);
  size_t tl = 0;
  char *text = next ? tt_canon_n(next, &tl) : NULL;
  blob b = {malloc(1 + tl), 1 + tl, 1};
  assert_non_null(b.p);
  b.p[0] = next ? 0 : 1;
  if (tl) memcpy(b.p + 1, text, tl);
  free(text);
  json_decref(next);
  tt_intent_clear(&in);
  tt_r_doc_clear(&d);
  return b;
}

/* {"seq","coll","id","outcome"[,"label"]}, the rest added by the caller. */
static json_t *oc_want(uint64_t seq, const char *coll, const char *id,
                       const char *outcome, const char *label) {
  json_t *o = json_pack("{s:I,s:s,s:s,s:s}", "seq", (json_int_t)seq, "coll",
                        coll, "id", id, "outcome", outcome);
  assert_non_null(o);
  if (label) assert_int_equal(json_object_set_new(o, "label", json_string(label)), 0);
  return o;
}

/* The ROUTCOMES record of SEQ is KIND then exactly tt_canon of WANT. */
static void expect_outcome(fx *f, uint64_t seq, uint8_t kind,
                           const json_t *want) {
  uint8_t sk[8];
  tt_r_seqkey(sk, seq);
  blob b = raw_get(f, TT_TABLE_ROUTCOMES, sk, 8);
  assert_true(b.found);
  size_t n = 0;
  char *c = tt_canon_n(want, &n);
  assert_non_null(c);
  if (b.n != n + 1 || b.p[0] != kind || memcmp(b.p + 1, c, n) != 0)
    print_error("outcome %llu: kind %u got %.*s\n  want kind %u %s\n",
                (unsigned long long)seq, b.n ? (unsigned)b.p[0] : 255u,
                (int)(b.n ? b.n - 1 : 0), b.n ? (char *)b.p + 1 : "",
                (unsigned)kind, c);
  assert_int_equal(b.n, n + 1);
  assert_int_equal(b.p[0], kind);
  assert_memory_equal(b.p + 1, c, n);
  free(c);
  blob_free(&b);
}

/* ---- writes and answers -------------------------------------------------- */

static void wr(fx *f, const char *coll, const char *id, tt_op_kind k,
               const char *field, const char *value, const char *label,
               uint64_t now) {
  json_t *v = value ? J(value) : NULL;
  int rc = tt_replica_write(f->r, coll, id, k, field, v, label, now);
  if (rc) print_error("write %s: %s\n", id, tt_replica_last_error(f->r));
  json_decref(v);
  assert_int_equal(rc, 0);
}

static void wput(fx *f, const char *coll, const char *id, const char *obj,
                 const char *label, uint64_t now) {
  json_t *v = J(obj);
  int rc = tt_replica_put(f->r, coll, id, v, label, now);
  if (rc) print_error("put %s: %s\n", id, tt_replica_last_error(f->r));
  json_decref(v);
  assert_int_equal(rc, 0);
}

static json_t *clean_oc(uint64_t seq, uint64_t commit) {
  json_t *o = fx_outcome(seq, "applied", commit);
  assert_int_equal(json_object_set_new(o, "clean", json_true()), 0);
  return o;
}

static json_t *one(json_t *o) {
  json_t *a = json_array();
  assert_non_null(a);
  assert_int_equal(json_array_append_new(a, o), 0);
  return a;
}

/* A 200 answer with OUTS (stolen) to a request that carried LO..HI. */
static int answer(fx *f, uint64_t lo, uint64_t hi, json_t *outs) {
  json_t *resp = fx_push_resp(outs);
  int rc = tt_replica_push_done_range(f->r, lo, hi, 200, resp);
  json_decref(resp);
  return rc;
}

/* The answer OUTS to LO..HI is refused as corrupt, and nothing in F's
 * store (outbox included) changes. */
static void refused_unchanged(fx *f, uint64_t lo, uint64_t hi, json_t *outs) {
  char *before = dump(f, 1);
  assert_int_equal(answer(f, lo, hi, outs), TETHER_ECORRUPT);
  char *after = dump(f, 1);
  assert_string_equal(before, after);
  free(before);
  free(after);
}

static char *body_text(fx *f, uint64_t *lo, uint64_t *hi) {
  tt_push_body b;
  assert_int_equal(tt_replica_push_body(f->r, 0, 0, 0, &b), 0);
  char *s = b.text;
  if (lo) *lo = b.lo;
  if (hi) *hi = b.hi;
  b.text = NULL;
  tt_push_body_clear(&b);
  return s;
}

/* ---- 1. the fast path: the same confirmed record as the slow path ------- */

#define BASE_DOC                                                              \
  "[{\"coll\":\"c\",\"id\":\"d\",\"p\":0,\"version\":5,\"set\":{\"n\":1,"     \
  "\"t\":\"old\",\"s\":[\"x\",\"y\"],\"r\":0.5,\"big\":9007199254740993,"     \
  "\"o\":{\"k\":[1,{\"z\":null}]},\"u\":\"\\u00e9\\n\\\"\"}}]"
#define TOMB_DOC                                                              \
  "[{\"coll\":\"c\",\"id\":\"d\",\"p\":0,\"version\":5,\"deleted\":true}]"
#define ONE_FIELD_DOC                                                         \
  "[{\"coll\":\"c\",\"id\":\"d\",\"p\":0,\"version\":5,\"set\":{\"only\":1}}]"

typedef struct {
  const char *name;
  const char *pull; /* changes of a pull at cursor 5 first, or NULL */
  int put;          /* tt_replica_put of VALUE, else tt_replica_write */
  tt_op_kind kind;
  const char *field, *value, *label;
} wcase;

static void run_write(fx *f, const wcase *w, uint64_t now) {
  if (w->pull) fx_pull(f, 5, 0, w->pull);
  if (w->put)
    wput(f, "c", "d", w->value, w->label, now);
  else
    wr(f, "c", "d", w->kind, w->field, w->value, w->label, now);
}

static const wcase fast_cases[] = {
    {"create on absent (put)", NULL, 1, TT_OP_CREATE, NULL,
     "{\"a\":1,\"b\":\"x\",\"c\":[1,2.5],\"u\":\"\\u00e9\\n\"}", NULL},
    {"create on tombstone", TOMB_DOC, 0, TT_OP_CREATE, NULL,
     "{\"z\":true,\"q\":null}", NULL},
    {"put on tombstone", TOMB_DOC, 1, TT_OP_CREATE, NULL, "{\"y\":[]}",
     "lbl"},
    {"create over live", BASE_DOC, 0, TT_OP_CREATE, NULL, "{\"w\":{}}", NULL},
    {"set existing", BASE_DOC, 0, TT_OP_SET, "t", "\"new\"", NULL},
    {"set new nested", BASE_DOC, 0, TT_OP_SET, "q",
     "{\"a\":[1,2,{\"b\":null}],\"c\":1.25,\"e\":-0.0}", NULL},
    {"set on absent doc", NULL, 0, TT_OP_SET, "t", "1", NULL},
    {"set on tombstone", TOMB_DOC, 0, TT_OP_SET, "t", "0.1", NULL},
    {"unset", BASE_DOC, 0, TT_OP_UNSET, "t", NULL, NULL},
    {"unset the last field", ONE_FIELD_DOC, 0, TT_OP_UNSET, "only", NULL,
     NULL},
    {"incr", BASE_DOC, 0, TT_OP_INCR, "n", "41", NULL},
    {"incr absent field", BASE_DOC, 0, TT_OP_INCR, "m", "-3", NULL},
    {"incr on absent doc", NULL, 0, TT_OP_INCR, "n", "2", NULL},
    {"add", BASE_DOC, 0, TT_OP_ADD, "s", "\"z\"", NULL},
    {"add object to absent field", BASE_DOC, 0, TT_OP_ADD, "w",
     "{\"b\":1,\"a\":2}", NULL},
    {"remove", BASE_DOC, 0, TT_OP_REMOVE, "s", "\"x\"", NULL},
    {"delete", BASE_DOC, 0, TT_OP_DELETE, NULL, NULL, NULL},
    {"put diff with label", BASE_DOC, 1, TT_OP_SET, NULL,
     "{\"n\":2,\"t\":\"old\",\"s\":[\"x\",\"y\"],\"big\":9007199254740993,"
     "\"u\":\"\\u00e9\\n\\\"\",\"new\":null}",
     "l\"a\\b\n\x01"},
    {"set real with label", BASE_DOC, 0, TT_OP_SET, "r", "1e-7", "\xc3\xa9"},
};

/* After a confirmed clean SEQ (the doc's only intent): nothing pending or
 * waiting, status synced, "own" and "acked" at SEQ. */
static void expect_all_confirmed(fx *f, const char *coll, const char *id,
                                 uint64_t seq) {
  blob v = view_raw(f, coll, id);
  assert_false(v.found);
  blob_free(&v);
  assert_int_equal(pending_of(f, coll, id, NULL), 0);
  obx_count c = obx_counts(f);
  assert_int_equal(c.seqs, 0);
  assert_int_equal(c.idx, 0);
  assert_int_equal(tt_replica_outbox_len(f->r), 0);
  assert_int_equal(fx_status(f, coll, id), TETHER_SYNCED);
  assert_int_equal(chain_acked(f), seq);
  assert_int_equal(own_of(f), seq);
}

static void test_fast_path_same_as_slow(void **state) {
  trio *t = *state;
  for (size_t i = 0; i < sizeof fast_cases / sizeof *fast_cases; i++) {
    const wcase *w = &fast_cases[i];
    print_message("case: %s\n", w->name);
    if (i) trio_reset(t);
    fx *a = t->f[0], *b = t->f[1], *c = t->f[2];
    for (int k = 0; k < 3; k++) run_write(t->f[k], w, T0 + 1);

    /* The record is layout 2 with the confirmed version as its base; the
     * overlay exists; the three replicas hold the same intent. */
    blob conf = docs_raw(a, "c", "d");
    uint64_t base = conf.found ? tt_be64_get(conf.p + 1) : 0;
    blob_free(&conf);
    assert_int_equal(base, w->pull ? 5 : 0);
    obx_expect(a, 1, 2, TT_ROBX_PENDING, base, 0, 0);
    blob ov = view_raw(a, "c", "d");
    assert_true(ov.found);
    blob_free(&ov);
    assert_int_equal(pending_of(a, "c", "d", NULL), 1);
    uint64_t lo = 0, hi = 0;
    char *ba = body_text(a, &lo, &hi);
    assert_int_equal(lo, 1);
    assert_int_equal(hi, 1);
    char *before = fx_get(a, "c", "d");
    blob want = expect_confirm(a, 1, 9);
    assert_int_equal(want.p[0], strcmp(before, "absent") == 0 ? 1 : 0);

    obx_to_layout1(b, 1);
    obx_expect(b, 1, 1, TT_ROBX_PENDING, 0, 0, 0);
    char *bb = body_text(b, NULL, NULL);
    assert_string_equal(ba, bb); /* the layout is not on the wire */
    obx_damage(c, 1);

    for (int k = 0; k < 3; k++) {
      fx *f = t->f[k];
      int rc = answer(f, 1, 1, one(clean_oc(1, 9)));
      if (rc) print_error("replica %d: %s\n", k, tt_replica_last_error(f->r));
      assert_int_equal(rc, 0);
      blob got = docs_raw(f, "c", "d");
      assert_blob_equal(got, want); /* version 9 = the commit */
      blob_free(&got);
      expect_all_confirmed(f, "c", "d", 1);
      char *after = fx_get(f, "c", "d");
      assert_string_equal(before, after);
      free(after);
      json_t *oc = oc_want(1, "c", "d", "applied", w->label);
      expect_outcome(f, 1, TT_OUT_APPLIED, oc);
      json_decref(oc);
    }
    /* Byte for byte the same stores, outbox included (it is empty). */
    assert_same_dump(a, b, 1);
    assert_same_dump(a, c, 1);
    fx_reopen(a);
    char *again = fx_get(a, "c", "d");
    assert_string_equal(before, again);
    free(again);
    free(before);
    free(ba);
    free(bb);
    blob_free(&want);
  }
}

/* The PENDING scan of one document stops at its own keys: neighbours whose
 * keys share a prefix (id "d" vs "d2", "d\x01"; coll "c" vs "c2"... ) do
 * not count as other pending intents, and keep their overlays. */
static void test_fast_path_neighbours(void **state) {
  trio *t = *state;
  for (int k = 0; k < 3; k++) {
    fx *f = t->f[k];
    fx_pull(f, 5, 0, BASE_DOC);
    wr(f, "c", "d2", TT_OP_SET, "x", "1", NULL, T0 + 1);   /* seq 1 */
    wr(f, "c", "d", TT_OP_INCR, "n", "1", NULL, T0 + 2);   /* seq 2 */
    wr(f, "c", "d\x01", TT_OP_SET, "x", "2", NULL, T0 + 3); /* seq 3 */
    wr(f, "c", "c", TT_OP_SET, "x", "3", NULL, T0 + 4);    /* seq 4 */
  }
  fx *a = t->f[0], *b = t->f[1], *c = t->f[2];
  blob want = expect_confirm(a, 2, 9);
  for (uint64_t s = 1; s <= 4; s++) obx_to_layout1(b, s);
  obx_damage(c, 2);
  char *before = fx_get(a, "c", "d");
  for (int k = 0; k < 3; k++) {
    fx *f = t->f[k];
    assert_int_equal(answer(f, 1, 4, one(clean_oc(2, 9))), 0);
    blob got = docs_raw(f, "c", "d");
    assert_blob_equal(got, want);
    blob_free(&got);
    blob v = view_raw(f, "c", "d");
    assert_false(v.found);
    blob_free(&v);
    assert_int_equal(pending_of(f, "c", "d", NULL), 0);
    assert_int_equal(fx_status(f, "c", "d"), TETHER_SYNCED);
    const char *others[] = {"d2", "d\x01", "c"};
    for (int i = 0; i < 3; i++) {
      assert_int_equal(pending_of(f, "c", others[i], NULL), 1);
      v = view_raw(f, "c", others[i]);
      assert_true(v.found);
      blob_free(&v);
      assert_int_equal(fx_status(f, "c", others[i]), TETHER_PENDING);
    }
    char *after = fx_get(f, "c", "d");
    assert_string_equal(before, after);
    free(after);
    /* Three records left; outbox_len counts past the acknowledged
     * prefix (seq 1 is not acknowledged), so all four. */
    assert_int_equal(obx_counts(f).seqs, 3);
    assert_int_equal(tt_replica_outbox_len(f->r), 4);
  }
  assert_same_dump(a, b, 0);
  assert_same_dump(a, c, 0);
  free(before);
  blob_free(&want);
}

/* ---- 2. not the fast path ------------------------------------------------ */

/* Two pending intents on one document: the first, answered clean, is
 * confirmed by the slow path; the second keeps a right overlay, and once
 * answered clean waits for a pull (its base is no longer confirmed). */
static void test_two_pending_same_doc(void **state) {
  trio *t = *state;
  for (int k = 0; k < 3; k++) {
    fx *f = t->f[k];
    fx_pull(f, 5, 0, BASE_DOC);
    wr(f, "c", "d", TT_OP_SET, "a", "1", "one", T0 + 1);  /* seq 1 */
    wr(f, "c", "d", TT_OP_INCR, "n", "2", NULL, T0 + 2); /* seq 2 */
  }
  fx *a = t->f[0], *b = t->f[1], *c = t->f[2];
  obx_expect(a, 2, 2, TT_ROBX_PENDING, 5, 0, 0);
  blob want = expect_confirm(a, 1, 9);
  char *before = fx_get(a, "c", "d");
  obx_to_layout1(b, 1);
  obx_to_layout1(b, 2);

  /* C: the slow path runs, cannot parse seq 1, and nothing changes. */
  obx_damage(c, 1);
  refused_unchanged(c, 1, 2, one(clean_oc(1, 9)));

  for (int k = 0; k < 2; k++) {
    fx *f = t->f[k];
    assert_int_equal(answer(f, 1, 2, one(clean_oc(1, 9))), 0);
    blob got = docs_raw(f, "c", "d");
    assert_blob_equal(got, want);
    blob_free(&got);
    /* The overlay: confirmed (at 9) plus seq 2. */
    blob ov = view_raw(f, "c", "d"), wov = expect_overlay(f, 2);
    assert_blob_equal(ov, wov);
    blob_free(&ov);
    blob_free(&wov);
    uint64_t first = 0;
    assert_int_equal(pending_of(f, "c", "d", &first), 1);
    assert_int_equal(first, 2);
    obx_count cn = obx_counts(f);
    assert_int_equal(cn.seqs, 1);
    assert_int_equal(cn.idx, 0);
    obx_expect(f, 2, k == 0 ? 2 : 1, TT_ROBX_PENDING, 5, 0, 0);
    assert_int_equal(tt_replica_outbox_len(f->r), 1);
    assert_int_equal(fx_status(f, "c", "d"), TETHER_PENDING);
    assert_int_equal(chain_acked(f), 1);
    assert_int_equal(own_of(f), 1);
    char *after = fx_get(f, "c", "d");
    assert_string_equal(before, after);
    free(after);
    json_t *oc = oc_want(1, "c", "d", "applied", "one");
    expect_outcome(f, 1, TT_OUT_APPLIED, oc);
    json_decref(oc);
  }
  assert_same_dump(a, b, 0);

  /* Seq 2 answered clean at 10: written on 5, confirmed is 9 now. */
  for (int k = 0; k < 2; k++) {
    fx *f = t->f[k];
    blob d0 = docs_raw(f, "c", "d"), v0 = view_raw(f, "c", "d");
    assert_int_equal(answer(f, 2, 2, one(clean_oc(2, 10))), 0);
    blob d1 = docs_raw(f, "c", "d"), v1 = view_raw(f, "c", "d");
    assert_blob_equal(d0, d1);
    assert_blob_equal(v0, v1);
    blob_free(&d0);
    blob_free(&d1);
    blob_free(&v0);
    blob_free(&v1);
    obx_expect(f, 2, k == 0 ? 2 : 1, TT_ROBX_ACKED, 5, 0, 10);
    assert_true(ackidx_has(f, 0, 10, 2));
    assert_int_equal(pending_of(f, "c", "d", NULL), 1);
    assert_int_equal(fx_status(f, "c", "d"), TETHER_PENDING);
    assert_int_equal(tt_replica_outbox_len(f->r), 0);
    assert_int_equal(chain_acked(f), 2);
    assert_int_equal(own_of(f), 1); /* seq 2 waits for a pull */
    char *after = fx_get(f, "c", "d");
    assert_string_equal(before, after);
    free(after);
    json_t *oc = oc_want(2, "c", "d", "applied", NULL);
    expect_outcome(f, 2, TT_OUT_APPLIED, oc);
    json_decref(oc);
    /* The pull that brings it. */
    fx_pull(f, 10, 0,
            "[{\"coll\":\"c\",\"id\":\"d\",\"p\":0,\"version\":10,"
            "\"set\":{\"a\":1,\"n\":3}}]");
    expect_all_confirmed(f, "c", "d", 2);
    after = fx_get(f, "c", "d");
    assert_string_equal(before, after);
    free(after);
  }
  assert_same_dump(a, b, 1);
  free(before);
  blob_free(&want);
}

/* The confirmed version moved (a pull) after the write: nothing confirmed
 * locally, the intent waits for a pull. Live and deleted by the pull. */
static void test_base_moved(void **state) {
  trio *t = *state;
  static const char *moved[] = {
      "[{\"coll\":\"c\",\"id\":\"d\",\"p\":0,\"version\":7,"
      "\"set\":{\"n\":10}}]",
      "[{\"coll\":\"c\",\"id\":\"d\",\"p\":0,\"version\":7,"
      "\"deleted\":true}]",
  };
  for (size_t i = 0; i < 2; i++) {
    if (i) trio_reset(t);
    for (int k = 0; k < 3; k++) {
      fx *f = t->f[k];
      fx_pull(f, 5, 0, BASE_DOC);
      wr(f, "c", "d", TT_OP_INCR, "n", "1", "m", T0 + 1); /* base 5 */
      fx_pull(f, 7, 0, moved[i]);
    }
    fx *a = t->f[0], *b = t->f[1], *c = t->f[2];
    obx_to_layout1(b, 1);
    obx_damage(c, 1);
    /* C: the slow path is tried (it parses before comparing bases). */
    refused_unchanged(c, 1, 1, one(clean_oc(1, 8)));
    char *before = fx_get(a, "c", "d");
    /* The pull's "set" merges into the confirmed document. */
    if (i == 0)
      assert_non_null(strstr(before, "\"n\":11,"));
    else
      assert_string_equal(before, "{\"n\":1}");
    for (int k = 0; k < 2; k++) {
      fx *f = t->f[k];
      blob d0 = docs_raw(f, "c", "d"), v0 = view_raw(f, "c", "d");
      assert_int_equal(tt_be64_get(d0.p + 1), 7);
      assert_int_equal(answer(f, 1, 1, one(clean_oc(1, 8))), 0);
      blob d1 = docs_raw(f, "c", "d"), v1 = view_raw(f, "c", "d");
      assert_blob_equal(d0, d1);
      assert_blob_equal(v0, v1);
      blob_free(&d0);
      blob_free(&d1);
      blob_free(&v0);
      blob_free(&v1);
      obx_expect(f, 1, k == 0 ? 2 : 1, TT_ROBX_ACKED, 5, 0, 8);
      assert_true(ackidx_has(f, 0, 8, 1));
      assert_int_equal(pending_of(f, "c", "d", NULL), 1);
      assert_int_equal(fx_status(f, "c", "d"), TETHER_PENDING);
      assert_int_equal(tt_replica_outbox_len(f->r), 0);
      assert_int_equal(own_of(f), 0);
      char *after = fx_get(f, "c", "d");
      assert_string_equal(before, after);
      free(after);
      json_t *oc = oc_want(1, "c", "d", "applied", "m");
      expect_outcome(f, 1, TT_OUT_APPLIED, oc);
      json_decref(oc);
    }
    assert_same_dump(a, b, 0);
    free(before);
  }
}

/* A write that changes nothing: the overlay equals the confirmed record,
 * so the slow path confirms it (C fails: the slow path ran), at the
 * commit, with the same text (or a tombstone). */
static const wcase noop_cases[] = {
    {"set the same value", BASE_DOC, 0, TT_OP_SET, "t", "\"old\"", NULL},
    {"set the same object", BASE_DOC, 0, TT_OP_SET, "o",
     "{\"k\":[1,{\"z\":null}]}", NULL},
    {"incr by 0", BASE_DOC, 0, TT_OP_INCR, "n", "0", NULL},
    {"add present element", BASE_DOC, 0, TT_OP_ADD, "s", "\"x\"", NULL},
    {"remove absent element", BASE_DOC, 0, TT_OP_REMOVE, "s", "\"q\"", NULL},
    {"unset absent field", BASE_DOC, 0, TT_OP_UNSET, "zz", NULL, NULL},
    {"create the same", ONE_FIELD_DOC, 0, TT_OP_CREATE, NULL,
     "{\"only\":1}", NULL},
    {"delete absent doc", NULL, 0, TT_OP_DELETE, NULL, NULL, NULL},
    {"delete tombstone", TOMB_DOC, 0, TT_OP_DELETE, NULL, NULL, NULL},
    {"unset on tombstone", TOMB_DOC, 0, TT_OP_UNSET, "a", NULL, NULL},
};

static void test_overlay_equals_confirmed(void **state) {
  trio *t = *state;
  for (size_t i = 0; i < sizeof noop_cases / sizeof *noop_cases; i++) {
    const wcase *w = &noop_cases[i];
    print_message("case: %s\n", w->name);
    if (i) trio_reset(t);
    for (int k = 0; k < 3; k++) run_write(t->f[k], w, T0 + 1);
    fx *a = t->f[0], *b = t->f[1], *c = t->f[2];
    assert_int_equal(tt_replica_outbox_len(a->r), 1);
    /* The overlay does equal the confirmed record. */
    blob ov = view_raw(a, "c", "d"), cd = docs_raw(a, "c", "d");
    assert_true(ov.found);
    if (ov.p[0] == 0) {
      assert_true(cd.found);
      assert_int_equal(cd.p[0], 0);
      assert_int_equal(ov.n - 1, cd.n - 9);
      assert_memory_equal(ov.p + 1, cd.p + 9, ov.n - 1);
    } else {
      assert_int_equal(ov.n, 1);
      assert_true(!cd.found || cd.p[0] == 1);
    }
    blob_free(&ov);
    blob_free(&cd);
    blob want = expect_confirm(a, 1, 9);
    char *before = fx_get(a, "c", "d");
    obx_to_layout1(b, 1);
    obx_damage(c, 1);
    refused_unchanged(c, 1, 1, one(clean_oc(1, 9)));
    for (int k = 0; k < 2; k++) {
      fx *f = t->f[k];
      assert_int_equal(answer(f, 1, 1, one(clean_oc(1, 9))), 0);
      blob got = docs_raw(f, "c", "d");
      assert_blob_equal(got, want);
      blob_free(&got);
      expect_all_confirmed(f, "c", "d", 1);
      char *after = fx_get(f, "c", "d");
      assert_string_equal(before, after);
      free(after);
    }
    assert_same_dump(a, b, 1);
    free(before);
    blob_free(&want);
  }
  /* A put of the document as it is records no intent at all. */
  trio_reset(t);
  fx *a = t->f[0];
  fx_pull(a, 5, 0, ONE_FIELD_DOC);
  wput(a, "c", "d", "{\"only\":1}", NULL, T0 + 1);
  assert_int_equal(tt_replica_outbox_len(a->r), 0);
}

/* An intent the overlay skipped (it no longer fits the confirmed value
 * once an earlier intent was rejected) leaves the overlay equal to the
 * confirmed record: never confirmed from it; the slow path finds it does
 * not fit either, and the intent waits for a pull. */
static void test_skipped_intent_not_confirmed(void **state) {
  trio *t = *state;
  for (int k = 0; k < 2; k++) {
    fx *f = t->f[k];
    fx_pull(f, 5, 0,
            "[{\"coll\":\"c\",\"id\":\"d\",\"p\":0,\"version\":5,"
            "\"set\":{\"n\":\"s\"}}]");
    wr(f, "c", "d", TT_OP_SET, "n", "1", NULL, T0 + 1);  /* seq 1 */
    wr(f, "c", "d", TT_OP_INCR, "n", "1", NULL, T0 + 2); /* seq 2, fits 1 */
    if (k == 1) {
      obx_to_layout1(f, 1);
      obx_to_layout1(f, 2);
    }
    json_t *rej = json_pack("{s:i,s:s,s:s}", "seq", 1, "outcome", "rejected",
                            "reason", "no");
    assert_int_equal(answer(f, 1, 2, one(rej)), 0);
    assert_doc(f, "c", "d", "{\"n\":\"s\"}"); /* seq 2 skipped */
    blob d0 = docs_raw(f, "c", "d");
    assert_int_equal(answer(f, 2, 2, one(clean_oc(2, 9))), 0);
    blob d1 = docs_raw(f, "c", "d");
    assert_blob_equal(d0, d1); /* still version 5, no increment */
    blob_free(&d0);
    blob_free(&d1);
    obx_expect(f, 2, k == 0 ? 2 : 1, TT_ROBX_ACKED, 5, 0, 9);
    assert_true(ackidx_has(f, 0, 9, 2));
    assert_int_equal(pending_of(f, "c", "d", NULL), 1);
    blob v = view_raw(f, "c", "d");
    assert_true(v.found);
    blob_free(&v);
    assert_int_equal(fx_status(f, "c", "d"), TETHER_PENDING);
    assert_doc(f, "c", "d", "{\"n\":\"s\"}");
  }
  assert_same_dump(t->f[0], t->f[1], 0);
}

/* ---- 3. layout-1 outbox records ------------------------------------------ */

static void test_layout1_records(void **state) {
  trio *t = *state;
  fx *a = t->f[0], *b = t->f[1];
  for (int k = 0; k < 2; k++) {
    fx *f = t->f[k];
    fx_pull(f, 5, 0, BASE_DOC);
    wr(f, "c", "d", TT_OP_SET, "t", "\"x\"", "lab", T0 + 1); /* seq 1 */
    wr(f, "c", "e", TT_OP_SET, "t", "\"y\"", NULL, T0 + 2);  /* seq 2 */
    wr(f, "c", "g", TT_OP_SET, "t", "\"z\"", NULL, T0 + 3);  /* seq 3 */
  }

  /* The codec: layout 2 has the base at bytes 14..21; layout 1 is the
   * same record without them. */
  blob r2 = obx_raw(a, 1);
  assert_int_equal(r2.p[0], 2);
  assert_int_equal(tt_be64_get(r2.p + 14), 5);
  tt_robx o2, o1;
  assert_int_equal(tt_r_obx_decode((tt_bytes){r2.p, r2.n}, &o2), 0);
  assert_int_equal(o2.has_base, 1);
  assert_int_equal(o2.base, 5);
  assert_int_equal(o2.state, TT_ROBX_PENDING);
  tt_robx h = {.state = TT_ROBX_PENDING,
               .key = o2.key,
               .klen = o2.klen,
               .label = o2.label,
               .label_len = o2.label_len,
               .json = o2.json,
               .json_len = o2.json_len};
  uint8_t *l1 = NULL;
  size_t l1n = 0;
  assert_int_equal(tt_r_obx_encode(&h, &l1, &l1n), 0); /* by hand */
  assert_int_equal(l1n, r2.n - 8);
  assert_int_equal(l1[0], 1);
  assert_memory_equal(l1 + 1, r2.p + 1, 13);
  assert_memory_equal(l1 + 14, r2.p + 22, l1n - 14);
  assert_int_equal(tt_r_obx_decode((tt_bytes){l1, l1n}, &o1), 0);
  assert_int_equal(o1.has_base, 0);
  assert_int_equal(o1.base, 0);
  assert_int_equal(o1.klen, o2.klen);
  assert_memory_equal(o1.key, o2.key, o1.klen);
  assert_int_equal(o1.label_len, 3);
  assert_memory_equal(o1.label, "lab", 3);
  assert_int_equal(o1.json_len, o2.json_len);
  assert_memory_equal(o1.json, o2.json, o1.json_len);
  /* Other layout bytes, and a layout-2 record too short for its base. */
  uint8_t *bad = malloc(r2.n);
  assert_non_null(bad);
  static const uint8_t layouts[] = {0, 3, 255};
  for (size_t i = 0; i < sizeof layouts; i++) {
    memcpy(bad, r2.p, r2.n);
    bad[0] = layouts[i];
    assert_int_equal(tt_r_obx_decode((tt_bytes){bad, r2.n}, &o1),
                     TETHER_ECORRUPT);
  }
  assert_int_equal(tt_r_obx_decode((tt_bytes){r2.p, 23}, &o1),
                   TETHER_ECORRUPT);
  assert_int_equal(tt_r_obx_decode((tt_bytes){l1, 15}, &o1), TETHER_ECORRUPT);
  free(bad);

  /* In B: seq 1 the hand-made record, seq 2 rewritten; seq 3 stays
   * layout 2. The wire text is the same. */
  char *ba = body_text(a, NULL, NULL);
  obx_set(b, 1, l1, l1n);
  obx_to_layout1(b, 2);
  char *bb = body_text(b, NULL, NULL);
  assert_string_equal(ba, bb);
  json_t *req = fx_push_req(b, 0);
  assert_int_equal(json_array_size(json_object_get(req, "intents")), 3);
  json_decref(req);
  obx_expect(b, 1, 1, TT_ROBX_PENDING, 0, 0, 0);
  obx_expect(b, 3, 2, TT_ROBX_PENDING, 0, 0, 0); /* c/g absent: base 0 */

  /* seq 1 clean (slow path in B), seq 2 applied not clean (waits: the
   * layout stays), seq 3 clean (fast path in both). */
  blob want1 = expect_confirm(a, 1, 9), want3 = expect_confirm(a, 3, 11);
  for (int k = 0; k < 2; k++) {
    fx *f = t->f[k];
    json_t *outs = json_array();
    json_array_append_new(outs, clean_oc(1, 9));
    json_array_append_new(outs, fx_outcome(2, "applied", 10));
    json_array_append_new(outs, clean_oc(3, 11));
    assert_int_equal(answer(f, 1, 3, outs), 0);
    blob g1 = docs_raw(f, "c", "d"), g3 = docs_raw(f, "c", "g");
    assert_blob_equal(g1, want1);
    assert_blob_equal(g3, want3);
    blob_free(&g1);
    blob_free(&g3);
    obx_expect(f, 2, k == 0 ? 2 : 1, TT_ROBX_ACKED, 0, 0, 10);
    assert_true(ackidx_has(f, 0, 10, 2));
    assert_int_equal(fx_status(f, "c", "d"), TETHER_SYNCED);
    assert_int_equal(fx_status(f, "c", "e"), TETHER_PENDING);
    assert_int_equal(fx_status(f, "c", "g"), TETHER_SYNCED);
    json_t *oc = oc_want(1, "c", "d", "applied", "lab");
    expect_outcome(f, 1, TT_OUT_APPLIED, oc);
    json_decref(oc);
    /* The pull covering commit 10 drops the layout-1 acked record. */
    fx_pull(f, 11, 0,
            "[{\"coll\":\"c\",\"id\":\"e\",\"p\":0,\"version\":10,"
            "\"set\":{\"t\":\"y\"}}]");
    obx_count cn = obx_counts(f);
    assert_int_equal(cn.seqs, 0);
    assert_int_equal(cn.idx, 0);
    assert_int_equal(fx_status(f, "c", "e"), TETHER_SYNCED);
    assert_int_equal(own_of(f), 3);
  }
  assert_same_dump(a, b, 1);
  blob_free(&want1);
  blob_free(&want3);
  free(ba);
  free(bb);
  free(l1);
  blob_free(&r2);
}

/* ---- 4. store formats ---------------------------------------------------- */

/* A format-2 store (layout-1 records, the acked index present) opens,
 * is marked 3 with its records as they were, and its outbox goes on. */
static void test_format2_migrated(void **state) {
  trio *t = *state;
  fx *f = t->f[0];
  wr(f, "c", "a", TT_OP_SET, "t", "1", NULL, T0 + 1); /* 1 */
  wr(f, "c", "b", TT_OP_SET, "t", "2", "l", T0 + 2);  /* 2 */
  wr(f, "c", "n", TT_OP_SET, "t", "3", NULL, T0 + 3); /* 3 */
  assert_int_equal(answer(f, 1, 3, one(fx_outcome(1, "applied", 4))), 0);
  assert_true(ackidx_has(f, 0, 4, 1));
  uint64_t lo = 0, hi = 0;
  char *before = body_text(f, &lo, &hi);
  assert_int_equal(lo, 2);
  assert_int_equal(hi, 3);
  for (uint64_t s = 1; s <= 3; s++) obx_to_layout1(f, s);
  meta_format_set(f, 2);
  char *d2 = dump(f, 1);

  fx_reopen(f);
  assert_int_equal(meta_format(f), TT_R_FORMAT);
  assert_int_equal(TT_R_FORMAT, 3);
  /* Only the format changed: records kept as layout 1, index as it was
   * (marked 2 again, the store is the one before the open). */
  meta_format_set(f, 2);
  char *d2b = dump(f, 1);
  assert_string_equal(d2, d2b);
  meta_format_set(f, 3);
  free(d2);
  free(d2b);
  obx_expect(f, 1, 1, TT_ROBX_ACKED, 0, 0, 4);
  obx_expect(f, 2, 1, TT_ROBX_PENDING, 0, 0, 0);
  char *after = body_text(f, &lo, &hi);
  assert_string_equal(before, after);
  free(before);
  free(after);

  json_t *outs = json_array();
  json_array_append_new(outs, clean_oc(2, 5));
  json_array_append_new(outs, fx_outcome(3, "applied", 6));
  assert_int_equal(answer(f, 2, 3, outs), 0);
  assert_int_equal(fx_status(f, "c", "b"), TETHER_SYNCED);
  blob db = docs_raw(f, "c", "b");
  assert_int_equal(tt_be64_get(db.p + 1), 5);
  blob_free(&db);
  obx_expect(f, 3, 1, TT_ROBX_ACKED, 0, 0, 6);
  json_t *oc = oc_want(2, "c", "b", "applied", "l");
  expect_outcome(f, 2, TT_OUT_APPLIED, oc);
  json_decref(oc);

  /* A new write is layout 2 and takes the fast path. */
  wr(f, "c", "b", TT_OP_SET, "u", "4", NULL, T0 + 4); /* 4, base 5 */
  obx_expect(f, 4, 2, TT_ROBX_PENDING, 5, 0, 0);
  obx_damage(f, 4);
  assert_int_equal(answer(f, 4, 4, one(clean_oc(4, 7))), 0);
  db = docs_raw(f, "c", "b");
  assert_int_equal(tt_be64_get(db.p + 1), 7);
  blob_free(&db);
  assert_doc(f, "c", "b", "{\"t\":2,\"u\":4}");
  fx_pull(f, 7, 0, "[]");
  obx_count cn = obx_counts(f);
  assert_int_equal(cn.seqs, 0);
  assert_int_equal(cn.idx, 0);
  assert_int_equal(own_of(f), 4);
  fx_reopen(f);
  assert_int_equal(meta_format(f), 3);
  assert_int_equal(tt_replica_outbox_len(f->r), 0);
}

/* A format-1 store of layout-1 records without the acked index: the index
 * is built from them on open. */
static void test_format1_layout1_migrated(void **state) {
  trio *t = *state;
  fx *f = t->f[0];
  wr(f, "c", "a", TT_OP_SET, "t", "1", NULL, T0 + 1);
  wr(f, "c", "b", TT_OP_SET, "t", "2", NULL, T0 + 2);
  wr(f, "c", "e", TT_OP_SET, "t", "3", NULL, T0 + 3);
  json_t *outs = json_array();
  json_array_append_new(outs, fx_outcome(1, "applied", 4));
  json_array_append_new(outs, fx_outcome(2, "applied", 5));
  assert_int_equal(answer(f, 1, 3, outs), 0);
  for (uint64_t s = 1; s <= 3; s++) obx_to_layout1(f, s);
  uint8_t ik[TT_R_ACKIDX_LEN];
  tt_r_ackidx_key(ik, 0, 4, 1);
  raw_set(f, TT_TABLE_OUTBOX, ik, sizeof ik, NULL, 0);
  tt_r_ackidx_key(ik, 0, 5, 2);
  raw_set(f, TT_TABLE_OUTBOX, ik, sizeof ik, NULL, 0);
  assert_int_equal(obx_counts(f).idx, 0);
  meta_format_set(f, 1);

  fx_reopen(f);
  assert_int_equal(meta_format(f), 3);
  assert_int_equal(obx_counts(f).idx, 2);
  assert_true(ackidx_has(f, 0, 4, 1));
  assert_true(ackidx_has(f, 0, 5, 2));
  obx_expect(f, 1, 1, TT_ROBX_ACKED, 0, 0, 4);
  obx_expect(f, 3, 1, TT_ROBX_PENDING, 0, 0, 0);
  uint64_t lo = 0, hi = 0;
  char *b = body_text(f, &lo, &hi);
  assert_int_equal(lo, 3);
  assert_int_equal(hi, 3);
  free(b);
  assert_int_equal(answer(f, 3, 3, one(clean_oc(3, 6))), 0);
  assert_int_equal(fx_status(f, "c", "e"), TETHER_SYNCED);
  fx_pull(f, 5, 0, "[]");
  obx_count cn = obx_counts(f);
  assert_int_equal(cn.seqs, 0);
  assert_int_equal(cn.idx, 0);
  assert_int_equal(own_of(f), 3);
}

/* A format this build does not know is refused, and the store is left as
 * it was; a format record of the wrong size is corrupt. */
static void test_format_unknown_refused(void **state) {
  trio *t = *state;
  fx *f = t->f[0];
  wr(f, "c", "a", TT_OP_SET, "t", "1", NULL, T0 + 1);
  char *d0 = dump(f, 1);
  static const uint32_t unknown[] = {4, 0, 5, UINT32_MAX};
  for (size_t i = 0; i < sizeof unknown / sizeof *unknown; i++) {
    meta_format_set(f, unknown[i]);
    assert_int_equal(reopen_rc(f), TETHER_EVERSION);
    assert_null(f->r);
    assert_int_equal(meta_format(f), unknown[i]);
    meta_format_set(f, 3);
    char *d = dump(f, 1);
    assert_string_equal(d0, d);
    free(d);
  }
  raw_set(f, TT_TABLE_META, "format", 6, "\0\0\3", 3);
  assert_int_equal(reopen_rc(f), TETHER_ECORRUPT);
  assert_null(f->r);
  meta_format_set(f, 3);
  assert_int_equal(reopen_rc(f), 0);
  char *b = body_text(f, NULL, NULL);
  free(b);
  assert_int_equal(tt_replica_outbox_len(f->r), 1);
  free(d0);
}

/* ---- 5. ROUTCOMES records ------------------------------------------------ */

#define C1 "q\"uo\\te\x01\t\n/\x7f \xc3\xa9"
#define I1 "b\\s\"\x1f\x02\r\b\f\xe2\x82\xac\xf0\x9f\x98\x80\xe2\x80\xa8"
#define L1 "lab\"el\\ \x01\x1f\n\t\x7f \xc3\xa9 \xf0\x9f\x98\x80 </script>"

typedef struct {
  const char *coll, *id, *label;
  const char *outcome; /* applied, clean, merged, conflict, rejected, dup */
  const char *detail;  /* rule, conflict id or reason; NULL = none */
} ocase;

static void test_outcome_records(void **state) {
  trio *t = *state;
  fx *f = t->f[0];
  char cmax[TT_MAX_NAME + 1], imax[TT_MAX_NAME + 1], lmax[TT_MAX_LABEL + 1];
  memset(cmax, '\x01', TT_MAX_NAME);
  cmax[TT_MAX_NAME] = 0;
  memset(imax, '"', TT_MAX_NAME);
  imax[TT_MAX_NAME] = 0;
  memset(lmax, '\\', TT_MAX_LABEL);
  lmax[TT_MAX_LABEL] = 0;
  const ocase cs[] = {
      {C1, I1, L1, "applied", NULL},
      {"c", "a2", NULL, "applied", NULL},
      {C1, "fast", L1, "clean", NULL},
      {"c", "fast2", NULL, "clean", NULL},
      {C1, "plain", NULL, "merged", "lww"},
      {"c", "m", L1, "merged", "r\"\\\x03\xc3\xa9"},
      {"c", I1, "x", "merged", NULL},
      {"c", "k", L1, "conflict", "cid\"\\\x02-\xc3\xa9"},
      {C1, "k2", NULL, "conflict", "plain-cid"},
      {"c", "r1", L1, "rejected", "no \"way\"\\\n\x01 \xc3\xa9"},
      {"c", "r2", NULL, "rejected", NULL},
      {"c", "dup", "d\"\\", "dup", NULL},
      {C1, "dup2", NULL, "dup", NULL},
      {cmax, imax, lmax, "applied", NULL},
      {"c", "ri", NULL, "merged", "int"}, /* a rule that is not a string */
  };
  const size_t n = sizeof cs / sizeof *cs;
  for (size_t i = 0; i < n; i++)
    wr(f, cs[i].coll, cs[i].id, TT_OP_SET, "f", "1", cs[i].label, T0 + i);

  json_t *outs = json_array(), *wants = json_array();
  for (size_t i = 0; i < n; i++) {
    const ocase *c = &cs[i];
    uint64_t seq = i + 1;
    json_t *o, *w;
    if (strcmp(c->outcome, "dup") == 0) {
      o = json_pack("{s:I,s:s,s:b}", "seq", (json_int_t)seq, "outcome",
                    "duplicate", "duplicate", 1);
      w = oc_want(seq, c->coll, c->id, "duplicate", c->label);
    } else if (strcmp(c->outcome, "rejected") == 0) {
      o = json_pack("{s:I,s:s}", "seq", (json_int_t)seq, "outcome",
                    "rejected");
      if (c->detail) json_object_set_new(o, "reason", json_string(c->detail));
      w = oc_want(seq, c->coll, c->id, "rejected", c->label);
      json_object_set_new(w, "reason",
                          json_string(c->detail ? c->detail : "rejected"));
    } else if (strcmp(c->outcome, "clean") == 0) {
      o = clean_oc(seq, 100 + seq);
      w = oc_want(seq, c->coll, c->id, "applied", c->label);
    } else {
      o = fx_outcome(seq, c->outcome, 100 + seq);
      w = oc_want(seq, c->coll, c->id, c->outcome, c->label);
      if (strcmp(c->outcome, "merged") == 0 && c->detail) {
        if (strcmp(c->detail, "int") == 0) {
          json_object_set_new(o, "rule", json_integer(5));
        } else {
          json_object_set_new(o, "rule", json_string(c->detail));
          json_object_set_new(w, "rule", json_string(c->detail));
        }
      } else if (strcmp(c->outcome, "conflict") == 0) {
        json_object_set_new(
            o, "conflict",
            json_pack("{s:s,s:s,s:i,s:i}", "id", c->detail, "field", "f",
                      "theirs", 9, "ours", 1));
        json_object_set_new(w, "conflict", json_string(c->detail));
      }
    }
    assert_non_null(o);
    json_array_append_new(outs, o);
    json_array_append_new(wants, w);
  }
  int rc = answer(f, 1, n, outs);
  if (rc) print_error("push_done: %s\n", tt_replica_last_error(f->r));
  assert_int_equal(rc, 0);

  for (size_t i = 0; i < n; i++) {
    const ocase *c = &cs[i];
    uint8_t kind = strcmp(c->outcome, "merged") == 0     ? TT_OUT_MERGED
                   : strcmp(c->outcome, "conflict") == 0 ? TT_OUT_CONFLICT
                   : strcmp(c->outcome, "rejected") == 0 ? TT_OUT_REJECTED
                                                         : TT_OUT_APPLIED;
    expect_outcome(f, i + 1, kind, json_array_get(wants, i));
  }
  /* Where the outcomes left the documents. */
  assert_int_equal(fx_status(f, C1, "fast"), TETHER_SYNCED);
  assert_int_equal(fx_status(f, "c", "k"), TETHER_CONFLICT);
  assert_int_equal(fx_status(f, C1, "k2"), TETHER_CONFLICT);
  assert_int_equal(fx_status(f, "c", "r1"), TETHER_REJECTED);
  assert_doc(f, "c", "r2", "absent");
  assert_int_equal(fx_status(f, C1, I1), TETHER_PENDING);
  tether_stats st;
  assert_int_equal(tt_replica_stats(f->r, &st), 0);
  assert_int_equal(st.rejected, 2);
  assert_int_equal(st.conflicts, 2);

  fx_reopen(f);
  json_t *got = fx_take_outcomes(f);
  assert_int_equal(json_array_size(got), n);
  for (size_t i = 0; i < n; i++) {
    if (!json_equal(json_array_get(got, i), json_array_get(wants, i))) {
      char *g = tt_canon(json_array_get(got, i));
      char *w = tt_canon(json_array_get(wants, i));
      print_error("outcome %zu: got %s want %s\n", i + 1, g, w);
      free(g);
      free(w);
    }
    assert_true(json_equal(json_array_get(got, i), json_array_get(wants, i)));
  }
  json_decref(got);
  /* Taken: gone. */
  tt_txn *tx = NULL;
  assert_int_equal(tt_txn_begin(f->st, 0, 0, &tx), 0);
  obx_count none = {0, 0};
  assert_int_equal(
      tt_scan(tx, TT_TABLE_ROUTCOMES, (tt_bytes){NULL, 0}, count_cb, &none), 0);
  tt_abort(tx);
  assert_int_equal(none.seqs, 0);
  got = fx_take_outcomes(f);
  assert_int_equal(json_array_size(got), 0);
  json_decref(got);
  json_decref(wants);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_fast_path_same_as_slow, trio_setup,
                                      trio_teardown),
      cmocka_unit_test_setup_teardown(test_fast_path_neighbours, trio_setup,
                                      trio_teardown),
      cmocka_unit_test_setup_teardown(test_two_pending_same_doc, trio_setup,
                                      trio_teardown),
      cmocka_unit_test_setup_teardown(test_base_moved, trio_setup,
                                      trio_teardown),
      cmocka_unit_test_setup_teardown(test_overlay_equals_confirmed,
                                      trio_setup, trio_teardown),
      cmocka_unit_test_setup_teardown(test_skipped_intent_not_confirmed,
                                      trio_setup, trio_teardown),
      cmocka_unit_test_setup_teardown(test_layout1_records, trio_setup,
                                      trio_teardown),
      cmocka_unit_test_setup_teardown(test_format2_migrated, trio_setup,
                                      trio_teardown),
      cmocka_unit_test_setup_teardown(test_format1_layout1_migrated,
                                      trio_setup, trio_teardown),
      cmocka_unit_test_setup_teardown(test_format_unknown_refused, trio_setup,
                                      trio_teardown),
      cmocka_unit_test_setup_teardown(test_outcome_records, trio_setup,
                                      trio_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
