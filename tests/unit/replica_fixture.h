/* replica_fixture.h — shared helpers for the replica unit tests: a replica
 * on a real LMDB store in a temporary directory, reopened at will, and
 * hand-built server answers (docs/PROTOCOL.md). */
#ifndef TT_TEST_REPLICA_FIXTURE_H
#define TT_TEST_REPLICA_FIXTURE_H

#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "core/intent.h"
#include "core/util.h"
#include "replica/replica.h"
#include "store/store.h"

static const uint8_t FX_ID[TT_ID_LEN] = {0xa1, 0xb2, 0xc3, 0xd4, 1, 2, 3, 4,
                                         5,    6,    7,    8,    9, 10, 11, 12};
#define FX_URL "http://127.0.0.1:8420"
#define T0 UINT64_C(1700000000000)

typedef struct {
  char dir[64];
  tt_store *st;
  tt_replica *r;
} fx;

static inline int fx_rm_one(const char *p, const struct stat *sb, int flag,
                     struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(p);
}

static inline void fx_store_open(fx *f) {
  char err[256];
  tt_store_opts o = {0, 0, 1}; /* no_sync: reopen in-process is enough */
  int rc = tt_store_open_lmdb(f->dir, &o, &f->st, err, sizeof err);
  if (rc) print_error("store open: %s\n", err);
  assert_int_equal(rc, 0);
}

static inline void fx_reopen(fx *f) {
  tt_replica_close(f->r);
  f->r = NULL;
  tt_store_close(f->st);
  f->st = NULL;
  fx_store_open(f);
  assert_int_equal(tt_replica_open(f->st, &f->r), 0);
}

static inline int fx_setup(void **state) {
  fx *f = calloc(1, sizeof *f);
  assert_non_null(f);
  strcpy(f->dir, "/tmp/tt_replica_XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  fx_store_open(f);
  assert_int_equal(tt_replica_create(f->st, FX_ID, FX_URL), 0);
  assert_int_equal(tt_replica_open(f->st, &f->r), 0);
  *state = f;
  return 0;
}

static inline int fx_teardown(void **state) {
  fx *f = *state;
  tt_replica_close(f->r);
  tt_store_close(f->st);
  nftw(f->dir, fx_rm_one, 16, FTW_DEPTH | FTW_PHYS);
  free(f);
  return 0;
}

/* ---- JSON helpers ------------------------------------------------------- */

static inline json_t *J(const char *text) {
  json_error_t e;
  json_t *j = json_loads(text, JSON_DECODE_ANY, &e);
  if (!j) print_error("bad test JSON %s: %s\n", text, e.text);
  assert_non_null(j);
  return j;
}

/* Asserts A equals the JSON TEXT, canonically. */
#define assert_json(a, text)                                                  \
  do {                                                                        \
    json_t *e_ = J(text);                                                     \
    char *ca_ = tt_canon(a), *ce_ = tt_canon(e_);                             \
    if (strcmp(ca_, ce_) != 0)                                                \
      print_error("json: got %s want %s\n", ca_, ce_);                        \
    assert_string_equal(ca_, ce_);                                            \
    free(ca_);                                                                \
    free(ce_);                                                                \
    json_decref(e_);                                                          \
  } while (0)

/* The optimistic document as canonical text, or "absent". Caller frees. */
static inline char *fx_get(fx *f, const char *coll, const char *id) {
  json_t *o = NULL;
  int rc = tt_replica_get(f->r, coll, id, &o);
  if (rc == TETHER_ENOTFOUND) {
    assert_null(o);
    return strdup("absent");
  }
  assert_int_equal(rc, 0);
  char *s = tt_canon(o);
  json_decref(o);
  return s;
}

#define assert_doc(f, coll, id, text)                                         \
  do {                                                                        \
    char *g_ = fx_get((f), (coll), (id));                                     \
    json_t *wj_ = strcmp((text), "absent") == 0 ? NULL : J(text);             \
    char *w_ = wj_ ? tt_canon(wj_) : strdup("absent");                        \
    json_decref(wj_);                                                         \
    if (strcmp(g_, w_) != 0) print_error("doc: got %s want %s\n", g_, w_);    \
    assert_string_equal(g_, w_);                                              \
    free(g_);                                                                 \
    free(w_);                                                                 \
  } while (0)

static inline tether_doc_status fx_status(fx *f, const char *coll, const char *id) {
  tether_doc_status s = (tether_doc_status)-1;
  assert_int_equal(tt_replica_status(f->r, coll, id, &s), 0);
  return s;
}

/* Writes with a distinct clock per call. */
static uint64_t fx_now = T0;
static inline int fx_set(fx *f, const char *coll, const char *id, const char *field,
                  const char *value) {
  json_t *v = J(value);
  int rc = tt_replica_write(f->r, coll, id, TT_OP_SET, field, v, NULL,
                            fx_now++);
  json_decref(v);
  return rc;
}
static inline int fx_op(fx *f, const char *coll, const char *id, tt_op_kind k,
                 const char *field, const char *value) {
  json_t *v = value ? J(value) : NULL;
  int rc = tt_replica_write(f->r, coll, id, k, field, v, NULL, fx_now++);
  json_decref(v);
  return rc;
}
static inline int fx_put(fx *f, const char *coll, const char *id, const char *obj) {
  json_t *v = J(obj);
  int rc = tt_replica_put(f->r, coll, id, v, NULL, fx_now++);
  json_decref(v);
  return rc;
}

/* ---- protocol helpers --------------------------------------------------- */

/* Every unacknowledged intent as the push request carries it. */
static inline json_t *fx_push_req(fx *f, size_t max) {
  json_t *req = NULL;
  assert_int_equal(tt_replica_push_request(f->r, max, &req), 0);
  assert_non_null(req);
  return req;
}

static inline json_t *fx_intents(fx *f) {
  json_t *req = fx_push_req(f, 0);
  json_t *a = json_incref(json_object_get(req, "intents"));
  json_decref(req);
  return a;
}

/* Parses an intent from the wire and checks it is well-formed and hashed. */
static inline void fx_intent_ok(const json_t *j, tt_intent *in) {
  char err[200];
  int rc = tt_intent_from_json(j, in, err, sizeof err);
  if (rc) print_error("intent: %s\n", err);
  assert_int_equal(rc, 0);
  assert_int_equal(tt_intent_check_hash(in), 0);
  assert_memory_equal(in->client, FX_ID, TT_ID_LEN);
}

/* {"seq":S,"outcome":...,"p":0,"commit":C} */
static inline json_t *fx_outcome(uint64_t seq, const char *outcome, uint64_t commit) {
  json_t *o = json_pack("{s:I,s:s,s:i,s:I}", "seq", (json_int_t)seq,
                        "outcome", outcome, "p", 0, "commit",
                        (json_int_t)commit);
  assert_non_null(o);
  return o;
}

/* A 200 push answer for OUTCOMES (stolen). */
static inline json_t *fx_push_resp(json_t *outcomes) {
  uint64_t acked = 0;
  for (size_t i = 0; i < json_array_size(outcomes); i++) {
    uint64_t s =
        (uint64_t)json_integer_value(json_object_get(json_array_get(outcomes, i), "seq"));
    if (s > acked) acked = s;
  }
  json_t *o = json_pack("{s:i,s:I,s:o}", "v", 1, "acked", (json_int_t)acked,
                        "outcomes", outcomes);
  assert_non_null(o);
  return o;
}

/* Pushes everything and answers each intent "applied" at commit BASE+seq. */
static inline void fx_push_all_applied(fx *f, uint64_t commit_base) {
  json_t *req = fx_push_req(f, 0);
  json_t *outs = json_array();
  json_t *ints = json_object_get(req, "intents");
  for (size_t i = 0; i < json_array_size(ints); i++) {
    uint64_t s = (uint64_t)json_integer_value(
        json_object_get(json_array_get(ints, i), "seq"));
    json_array_append_new(outs, fx_outcome(s, "applied", commit_base + s));
  }
  json_t *resp = fx_push_resp(outs);
  assert_int_equal(tt_replica_push_done(f->r, req, 200, resp), 0);
  json_decref(req);
  json_decref(resp);
}

/* Applies a 200 pull answer {"v":1,"cursor":[CURSOR],"more":MORE,
 * "changes":CHANGES_TEXT}. */
static inline void fx_pull(fx *f, uint64_t cursor, int more, const char *changes) {
  json_t *ch = J(changes);
  json_t *resp = json_pack("{s:i,s:[I],s:b,s:o}", "v", 1, "cursor",
                           (json_int_t)cursor, "more", more, "changes", ch);
  assert_non_null(resp);
  int m = -1;
  size_t n = 99;
  int rc = tt_replica_pull_done(f->r, 200, resp, &m, &n);
  if (rc) print_error("pull_done: %s\n", tt_replica_last_error(f->r));
  assert_int_equal(rc, 0);
  assert_int_equal(m, more);
  assert_int_equal(n, json_array_size(ch));
  json_decref(resp);
}

typedef struct {
  json_t *items;
} collect;

static inline int fx_collect_cb(void *ctx, const json_t *obj) {
  collect *c = ctx;
  json_array_append_new(c->items, json_deep_copy(obj));
  return 0;
}

static inline json_t *fx_take_outcomes(fx *f) {
  collect c = {json_array()};
  assert_int_equal(tt_replica_take_outcomes(f->r, fx_collect_cb, &c), 0);
  return c.items;
}

static inline json_t *fx_conflicts(fx *f) {
  collect c = {json_array()};
  assert_int_equal(tt_replica_conflicts(f->r, fx_collect_cb, &c), 0);
  return c.items;
}

#endif
