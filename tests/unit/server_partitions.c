/* server_partitions.c — the group commit with several partitions, one
 * store transaction per partition, on a real LMDB store: exactly once
 * across partitions, crashes between partition commits, two servers on one
 * store, gaps and chains from the home record. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "server/server_int.h"
#include "server_helpers.h"

#define HLC(ms) ((uint64_t)(ms) << 16)
#define P 4

/* ---- helpers ------------------------------------------------------------ */

/* ids[p]: a document id of collection "c" living in partition p. */
static void docs_by_partition(char ids[P][16]) {
  int found = 0;
  for (int i = 0; found < P; i++) {
    char id[16];
    snprintf(id, sizeof id, "d%d", i);
    unsigned p = tt_server_partition_of("c", id, P);
    if (!ids[p][0]) {
      strcpy(ids[p], id);
      found++;
    }
    assert_true(i < 1000);
  }
}

/* A replica whose home partition is HOME. */
static void rep_with_home(th_rep *r, unsigned home, uint8_t from) {
  for (unsigned f = from;; f++) {
    assert_true(f < 256);
    th_rep_init(r, (uint8_t)f);
    if (tt_server_home_of(r->id, P) == home)
      return;
  }
}

static json_t *incr(th_rep *r, const char *id) {
  return th_intent(r, HLC(TH_NOW) + r->seq, "c", id, 0,
                   "[{\"kind\":\"incr\",\"field\":\"n\",\"value\":1}]");
}

/* The value of field n of c/ID as a pull shows it; -1 when absent. */
static long long doc_n(th_env *e, const char *id) {
  json_t *d = th_doc(e, "c", id);
  long long n = d ? th_int(d, "n") : -1;
  json_decref(d);
  return n;
}

typedef struct {
  const char *point; /* crash at this point ... */
  unsigned skip;     /* ... after passing it this many times */
  int before, after; /* calls seen */
} fault_ctx;

static int fault_hook(void *ctx, const char *point) {
  fault_ctx *f = ctx;
  if (!strcmp(point, "push:before-commit"))
    f->before++;
  else if (!strcmp(point, "push:after-commit"))
    f->after++;
  if (!f->point || strcmp(point, f->point))
    return 0;
  if (f->skip) {
    f->skip--;
    return 0;
  }
  f->point = NULL;
  return 1;
}

static int has_key(th_env *e, tt_table tab, const void *k, size_t kl) {
  tt_txn *t;
  tt_bytes key = {k, kl}, v;
  assert_int_equal(tt_txn_begin(e->st, 0, 0, &t), 0);
  int rc = tt_get(t, tab, key, &v);
  tt_abort(t);
  assert_true(rc == 0 || rc == TETHER_ENOTFOUND);
  return rc == 0;
}

static uint64_t dedupe_of(th_env *e, const th_rep *r, uint32_t p) {
  uint8_t k[TT_ID_LEN + 4];
  tt_txn *t;
  tt_bytes key = {k, sizeof k}, v;
  uint64_t seq = 0;
  memcpy(k, r->id, TT_ID_LEN);
  tt_be32_put(k + TT_ID_LEN, p);
  assert_int_equal(tt_txn_begin(e->st, p, 0, &t), 0);
  if (tt_get(t, TT_TABLE_REPLICAS, key, &v) == 0) {
    assert_int_equal(v.len, 9);
    seq = tt_be64_get((const uint8_t *)v.data + 1);
  }
  tt_abort(t);
  return seq;
}

static const json_t *outcome(const json_t *resp, size_t i) {
  return json_array_get(json_object_get(resp, "outcomes"), i);
}

/* ---- tests -------------------------------------------------------------- */

/* One push over every partition: applied once, per-partition dedupe
 * records and the home record written; a redelivery changes nothing. */
static void test_push_spans_partitions_once(void **state) {
  (void)state;
  th_env *e = th_env_new(NULL, P, 0);
  char ids[P][16] = {{0}};
  th_rep r;
  json_t *in[2 * P], *req, *resp, *again;
  uint64_t last = 0;

  docs_by_partition(ids);
  th_rep_init(&r, 0x31);
  for (int i = 0; i < 2 * P; i++) /* d3, d2, d1, d0, d3, ... */
    in[i] = incr(&r, ids[P - 1 - i % P]);
  req = th_req(&r, in, 2 * P);
  assert_int_equal(th_push(e, req, &resp), 200);
  assert_int_equal(th_int(resp, "acked"), 2 * P);
  for (int i = 0; i < 2 * P; i++) {
    const json_t *o = outcome(resp, (size_t)i);
    assert_int_equal(th_int(o, "seq"), i + 1);
    assert_int_equal(th_int(o, "p"), P - 1 - i % P);
    assert_null(json_object_get(o, "duplicate"));
    /* each partition's sequence counts its own commits: 1, then 2 */
    assert_int_equal(th_int(o, "commit"), 1 + i / P);
  }
  for (int p = 0; p < P; p++) {
    assert_int_equal(doc_n(e, ids[p]), 2);
    /* the last seq of the replica applied in p: 5..8 went to 3..0 */
    assert_int_equal(dedupe_of(e, &r, (uint32_t)p), 2 * P - p);
  }
  assert_int_equal(tt_server_replica_last_seq(e->srv, r.id, &last), 0);
  assert_int_equal(last, 2 * P);
  assert_true(has_key(e, TT_TABLE_REPLICAS, r.id, TT_ID_LEN));

  /* Redelivered, on a server restarted in between: all duplicates, each
   * with the outcome it got the first time. */
  th_reopen(e);
  assert_int_equal(th_push(e, req, &again), 200);
  for (int i = 0; i < 2 * P; i++) {
    json_t *d = json_deep_copy(outcome(again, (size_t)i));
    assert_true(json_is_true(json_object_get(d, "duplicate")));
    json_object_del(d, "duplicate");
    assert_true(json_equal(d, outcome(resp, (size_t)i)));
    json_decref(d);
  }
  for (int p = 0; p < P; p++)
    assert_int_equal(doc_n(e, ids[p]), 2);
  json_t *pr;
  assert_int_equal(th_pull(e, "[]", 0, &pr), 200);
  th_assert_json(json_object_get(pr, "cursor"), "[2,2,2,2]");
  json_decref(pr);
  tt_server_stats st;
  tt_server_get_stats(e->srv, &st);
  assert_int_equal(st.intents_duplicate, 2 * P);
  assert_int_equal(st.intents_applied, 0);
  json_decref(again);
  json_decref(resp);
  json_decref(req);
  th_env_free(e);
}

/* A crash after some partitions committed and before the others: the job
 * is not acknowledged; its retry applies what was missing and nothing
 * twice, and a job whose partitions all committed keeps its 200. */
static void test_crash_between_partitions(void **state) {
  (void)state;
  th_env *e = th_env_new(NULL, P, 0);
  fault_ctx f = {0};
  char ids[P][16] = {{0}};
  th_rep r, a;
  json_t *in[P], *req, *resp, *reqa, *ia;
  uint64_t last = 0;

  e->opts.fault = fault_hook;
  e->opts.fault_ctx = &f;
  th_reopen(e);
  docs_by_partition(ids);
  th_rep_init(&r, 0x41);
  for (int i = 0; i < P; i++) /* seq 1..4 on partitions 3, 0, 2, 1 */
    in[i] = incr(&r, ids[(unsigned[]){3, 0, 2, 1}[i]]);
  req = th_req(&r, in, P);
  /* A: one intent in partition 0, home partition 0: done after p0 */
  rep_with_home(&a, 0, 0x50);
  ia = incr(&a, ids[0]);
  reqa = th_req(&a, &ia, 1);

  /* crash right after partition 1 committed: 0 and 1 are durable */
  f.point = "push:after-commit";
  f.skip = 1;
  tt_push_job jobs[2] = {{.request = reqa}, {.request = req}};
  assert_int_equal(tt_server_push(e->srv, jobs, 2, TH_NOW),
                   TETHER_EUNAVAILABLE);
  assert_int_equal(jobs[0].status, 200); /* durable; the caller drops it */
  assert_int_equal(jobs[1].status, 503);
  assert_string_equal(th_str(jobs[1].response, "error"), "unavailable");
  assert_null(json_object_get(jobs[1].response, "acked"));
  json_decref(jobs[0].response);
  json_decref(jobs[1].response);
  th_reopen(e);

  /* partition 0 has A's and R's seq 2, partition 1 R's seq 4 */
  assert_int_equal(doc_n(e, ids[0]), 2);
  assert_int_equal(doc_n(e, ids[1]), 1);
  assert_int_equal(doc_n(e, ids[2]), -1);
  assert_int_equal(doc_n(e, ids[3]), -1);
  assert_int_equal(dedupe_of(e, &r, 0), 2);
  assert_int_equal(dedupe_of(e, &r, 1), 4);
  assert_int_equal(dedupe_of(e, &r, 2), 0);
  int rc = tt_server_replica_last_seq(e->srv, r.id, &last);
  if (tt_server_home_of(r.id, P) <= 1) {
    /* the home record committed with its partition: ahead of p2, p3 */
    assert_int_equal(rc, 0);
    assert_int_equal(last, P);
  } else {
    assert_int_equal(rc, TETHER_ENOTFOUND);
  }

  /* the replica retries: 2 and 4 are duplicates, 1 and 3 applied */
  assert_int_equal(th_push(e, req, &resp), 200);
  assert_int_equal(th_int(resp, "acked"), P);
  for (size_t i = 0; i < P; i++) {
    int dup = i == 1 || i == 3;
    assert_int_equal(json_is_true(json_object_get(outcome(resp, i),
                                                  "duplicate")),
                     dup);
    /* seq 2 met A's increment of the same counter */
    assert_string_equal(th_str(outcome(resp, i), "outcome"),
                        i == 1 ? "merged" : "applied");
  }
  json_decref(resp);
  for (int p = 0; p < P; p++)
    assert_int_equal(doc_n(e, ids[p]), p == 0 ? 2 : 1);
  assert_int_equal(tt_server_replica_last_seq(e->srv, r.id, &last), 0);
  assert_int_equal(last, P);

  /* once more: nothing moves, and no partition commits anything */
  f.before = 0;
  assert_int_equal(th_push(e, req, &resp), 200);
  json_decref(resp);
  assert_int_equal(f.before, 0);
  for (int p = 0; p < P; p++)
    assert_int_equal(doc_n(e, ids[p]), p == 0 ? 2 : 1);

  /* the chain goes on after the retried seq 4 */
  json_t *next = incr(&r, ids[2]);
  json_t *nreq = th_req(&r, &next, 1);
  assert_int_equal(th_push(e, nreq, &resp), 200);
  assert_string_equal(th_str(outcome(resp, 0), "outcome"), "applied");
  json_decref(resp);
  json_decref(nreq);
  assert_int_equal(doc_n(e, ids[2]), 2);
  json_decref(req);
  json_decref(reqa);
  th_env_free(e);
}

/* Before-commit crash of the transaction that only moves a home record:
 * the intent is durable, the job is not acknowledged; the retry is a
 * duplicate that then moves the home record. */
static void test_crash_before_home_commit(void **state) {
  (void)state;
  th_env *e = th_env_new(NULL, P, 0);
  fault_ctx f = {0};
  char ids[P][16] = {{0}};
  th_rep r;
  json_t *in, *req, *resp;
  uint64_t last = 0;

  e->opts.fault = fault_hook;
  e->opts.fault_ctx = &f;
  th_reopen(e);
  docs_by_partition(ids);
  rep_with_home(&r, 3, 0x60);
  in = incr(&r, ids[1]); /* partition 1, then the home in 3 */
  req = th_req(&r, &in, 1);
  f.point = "push:before-commit";
  f.skip = 1;
  tt_push_job job = {.request = req};
  assert_int_equal(tt_server_push(e->srv, &job, 1, TH_NOW),
                   TETHER_EUNAVAILABLE);
  assert_int_equal(job.status, 503);
  assert_int_equal(f.before, 2);
  json_decref(job.response);
  th_reopen(e);
  assert_int_equal(doc_n(e, ids[1]), 1);
  assert_int_equal(tt_server_replica_last_seq(e->srv, r.id, &last),
                   TETHER_ENOTFOUND);

  f.before = 0;
  assert_int_equal(th_push(e, req, &resp), 200);
  assert_true(json_is_true(json_object_get(outcome(resp, 0), "duplicate")));
  assert_string_equal(th_str(outcome(resp, 0), "outcome"), "applied");
  assert_int_equal(f.before, 1); /* only the home record's transaction */
  json_decref(resp);
  assert_int_equal(doc_n(e, ids[1]), 1);
  assert_int_equal(tt_server_replica_last_seq(e->srv, r.id, &last), 0);
  assert_int_equal(last, 1);
  json_decref(req);
  th_env_free(e);
}

/* Commits per group commit: ONE with one partition, whatever the jobs;
 * one per partition written with several. */
static void test_commits_per_group(void **state) {
  (void)state;
  fault_ctx f = {0};
  char ids[P][16] = {{0}};
  docs_by_partition(ids);
  for (unsigned parts = 1; parts <= P; parts += P - 1) {
    th_env *e = th_env_new(NULL, parts, 0);
    th_rep reps[3];
    json_t *reqs[3];
    tt_push_job jobs[3];
    uint8_t next = 0x70;

    e->opts.fault = fault_hook;
    e->opts.fault_ctx = &f;
    th_reopen(e);
    for (int j = 0; j < 3; j++) {
      json_t *in[P];
      /* homes 0 in the P-partition store: no home-only transaction */
      if (parts == 1)
        th_rep_init(&reps[j], next);
      else
        rep_with_home(&reps[j], 0, next);
      next = (uint8_t)(reps[j].id[1] + 1);
      for (int i = 0; i < P; i++)
        in[i] = incr(&reps[j], ids[i % 2 ? 2 : 0]); /* partitions 0, 2 */
      reqs[j] = th_req(&reps[j], in, P);
      jobs[j] = (tt_push_job){.request = reqs[j]};
    }
    f.before = f.after = 0;
    assert_int_equal(tt_server_push(e->srv, jobs, 3, TH_NOW), 0);
    assert_int_equal(f.before, parts == 1 ? 1 : 2);
    assert_int_equal(f.after, f.before);
    for (int j = 0; j < 3; j++) {
      assert_int_equal(jobs[j].status, 200);
      json_decref(jobs[j].response);
      json_decref(reqs[j]);
    }
    assert_int_equal(doc_n(e, ids[0]), 6);
    assert_int_equal(doc_n(e, ids[2]), 6);
    th_env_free(e);
  }
}

/* Canonical dump of the tables a replay must reproduce. */
static int dump_cb(void *ctx, tt_bytes k, tt_bytes v) {
  json_t *arr = ctx;
  char *hk = malloc(2 * k.len + 1), *hv = malloc(2 * v.len + 1);
  assert_non_null(hk);
  assert_non_null(hv);
  tt_hex_encode(k.data, k.len, hk);
  tt_hex_encode(v.data, v.len, hv);
  json_array_append_new(arr, json_pack("[s,s]", hk, hv));
  free(hk);
  free(hv);
  return 0;
}

static char *dump_store(tt_store *st) {
  static const tt_table tabs[] = {TT_TABLE_META, TT_TABLE_DOCS,
                                  TT_TABLE_CHANGES, TT_TABLE_REPLICAS,
                                  TT_TABLE_OUTCOMES, TT_TABLE_CONFLICTS,
                                  TT_TABLE_AUDIT};
  json_t *all = json_array();
  tt_txn *t;
  tt_bytes from = {NULL, 0};
  assert_int_equal(tt_txn_begin(st, 0, 0, &t), 0);
  for (size_t i = 0; i < sizeof tabs / sizeof tabs[0]; i++) {
    json_t *arr = json_array();
    assert_int_equal(tt_scan(t, tabs[i], from, dump_cb, arr), 0);
    json_array_append_new(all, arr);
  }
  tt_abort(t);
  char *s = json_dumps(all, JSON_COMPACT);
  json_decref(all);
  return s;
}

/* Two stateless servers on one store, fed interleaved pushes to the same
 * documents (and one redelivered to the other server), end exactly where
 * one server fed the same pushes in the same order ends. */
static void test_two_servers_one_store(void **state) {
  (void)state;
  static const char *conf =
      "{\"collections\":{\"notes\":{\"policy\":\"manual\"},"
      "\"c\":{\"policy\":\"lww\"}}}";
  th_skip_unless(strcmp(th_backend(), "redis-cluster"),
                 "needs two independent stores, and a cluster has one "
                 "database (tests/redis/test_e2e_redis.sh runs two servers "
                 "on one cluster)");
  th_env *one = th_env_new(conf, P, 0), *two = th_env_new(conf, P, 0);
  tt_server *second = NULL;
  char err[256] = "", ids[P][16] = {{0}};
  th_rep a, b;
  json_t *reqs[12];
  size_t n = 0;

  assert_int_equal(tt_server_open(two->st, two->pol, &two->opts, &second,
                                  err, sizeof err),
                   0);
  assert_int_equal(tt_server_partitions(second), P);
  docs_by_partition(ids);
  th_rep_init(&a, 0x11);
  th_rep_init(&b, 0x22);
  for (int round = 0; round < 3; round++) {
    json_t *ia[3], *ib[2];
    char ops[160];
    /* both write the same field having seen nothing of the other: lww */
    snprintf(ops, sizeof ops,
             "[{\"kind\":\"set\",\"field\":\"t\",\"value\":\"a%d\"}]", round);
    ia[0] = th_intent(&a, HLC(TH_NOW) + 10 * round, "c", ids[round % P], 0,
                      ops);
    ia[1] = incr(&a, ids[(round + 1) % P]);
    ia[2] = th_intent(&a, HLC(TH_NOW) + round, "notes", "x", 0,
                      "[{\"kind\":\"set\",\"field\":\"s\",\"value\":\"A\"}]");
    snprintf(ops, sizeof ops,
             "[{\"kind\":\"set\",\"field\":\"t\",\"value\":\"b%d\"}]", round);
    ib[0] = th_intent(&b, HLC(TH_NOW) + 10 * round + 5, "c", ids[round % P],
                      0, ops);
    ib[1] = th_intent(&b, HLC(TH_NOW) + round, "notes", "x", 0,
                      "[{\"kind\":\"set\",\"field\":\"s\",\"value\":\"B\"}]");
    reqs[n++] = th_req(&a, ia, 3);
    reqs[n++] = th_req(&b, ib, 2);
    reqs[n] = json_deep_copy(reqs[n - 2]); /* A's push redelivered */
    n++;
  }
  for (size_t i = 0; i < n; i++) {
    tt_push_job j1 = {.request = reqs[i]}, j2 = {.request = reqs[i]};
    /* the single server takes every push ... */
    tt_server_push(one->srv, &j1, 1, TH_NOW + i);
    /* ... the pair alternates */
    tt_server_push(i % 2 ? second : two->srv, &j2, 1, TH_NOW + i);
    assert_int_equal(j1.status, 200);
    assert_int_equal(j2.status, 200);
    assert_true(json_equal(j1.response, j2.response));
    if (i % 3 == 2) /* the redelivery: duplicates on the other server */
      assert_true(json_is_true(
          json_object_get(outcome(j2.response, 0), "duplicate")));
    json_decref(j1.response);
    json_decref(j2.response);
    json_decref(reqs[i]);
  }
  char *d1 = dump_store(one->st), *d2 = dump_store(two->st);
  assert_string_equal(d1, d2);
  free(d1);
  free(d2);
  /* and the store says the manual conflicts were recorded */
  json_t *x = th_doc(two, "notes", "x");
  assert_non_null(x);
  json_decref(x);
  tt_server_close(second);
  th_env_free(one);
  th_env_free(two);
}

/* Gaps and chains are judged from the home record, whatever partitions
 * the intents live in; intents at or below it are judged by the dedupe
 * records alone. */
static void test_gap_and_chain_with_home(void **state) {
  (void)state;
  th_env *e = th_env_new(NULL, P, 0);
  char ids[P][16] = {{0}};
  th_rep r, fork;
  json_t *in[3], *req, *resp, *i4, *i5;

  docs_by_partition(ids);
  th_rep_init(&r, 0x33);
  for (int i = 0; i < 3; i++)
    in[i] = incr(&r, ids[i]);
  req = th_req(&r, in, 3);
  assert_int_equal(th_push(e, req, &resp), 200);
  json_decref(resp);

  i4 = incr(&r, ids[3]);
  i5 = incr(&r, ids[0]);
  /* seq 5 without 4: a gap from 4 */
  json_t *g = th_req(&r, (json_t *[]){json_incref(i5)}, 1);
  assert_int_equal(th_push(e, g, &resp), 409);
  assert_string_equal(th_str(resp, "error"), "gap");
  assert_int_equal(th_int(resp, "expected"), 4);
  json_decref(resp);
  json_decref(g);

  /* seq 4 chained on a hash that is not seq 3's */
  fork = r;
  fork.seq = 3;
  memset(fork.last, 0x77, TT_HASH_LEN);
  json_t *bad = incr(&fork, ids[3]);
  g = th_req(&r, &bad, 1);
  assert_int_equal(th_push(e, g, &resp), 409);
  assert_string_equal(th_str(resp, "error"), "chain");
  json_decref(resp);
  json_decref(g);

  /* 2..5: 2 and 3 are duplicates, 4 and 5 new */
  json_t *more[4] = {json_incref(json_array_get(
                         json_object_get(req, "intents"), 1)),
                     json_incref(json_array_get(
                         json_object_get(req, "intents"), 2)),
                     i4, i5};
  g = th_req(&r, more, 4);
  assert_int_equal(th_push(e, g, &resp), 200);
  assert_int_equal(th_int(resp, "acked"), 5);
  assert_true(json_is_true(json_object_get(outcome(resp, 0), "duplicate")));
  assert_true(json_is_true(json_object_get(outcome(resp, 1), "duplicate")));
  assert_null(json_object_get(outcome(resp, 2), "duplicate"));
  assert_null(json_object_get(outcome(resp, 3), "duplicate"));
  json_decref(resp);
  json_decref(g);
  assert_int_equal(doc_n(e, ids[0]), 2);
  for (int p = 1; p < P; p++)
    assert_int_equal(doc_n(e, ids[p]), 1);
  /* that push said the replica took every outcome below its first seq:
   * seq 1's went, seq 3's (not below 2) stays */
  json_t *o = NULL;
  assert_int_equal(tt_server_outcome(e->srv, r.id, 1, &o), TETHER_ENOTFOUND);
  assert_null(o);
  assert_int_equal(tt_server_outcome(e->srv, r.id, 3, &o), 0);
  assert_int_equal(th_int(o, "p"), 2);
  json_decref(o);
  json_decref(req);
  th_env_free(e);
}

/* A replica whose dedupe record in a partition is unreadable gets 500 for
 * its push (never a guess over it); the other pushes of the batch go on. */
static void test_corrupt_dedupe_record(void **state) {
  (void)state;
  th_env *e = th_env_new(NULL, P, 0);
  char ids[P][16] = {{0}};
  th_rep r, q;
  uint8_t k[TT_ID_LEN + 4];
  tt_txn *t;

  docs_by_partition(ids);
  th_rep_init(&r, 0x91);
  th_rep_init(&q, 0x92);
  memcpy(k, r.id, TT_ID_LEN);
  tt_be32_put(k + TT_ID_LEN, 2);
  assert_int_equal(tt_txn_begin(e->st, 2, 1, &t), 0);
  assert_int_equal(tt_put(t, TT_TABLE_REPLICAS, (tt_bytes){k, sizeof k},
                          (tt_bytes){"junk", 4}),
                   0);
  assert_int_equal(tt_commit(t), 0);

  json_t *ir = incr(&r, ids[2]), *iq = incr(&q, ids[2]);
  json_t *rr = th_req(&r, &ir, 1), *rq = th_req(&q, &iq, 1);
  tt_push_job jobs[2] = {{.request = rr}, {.request = rq}};
  assert_int_equal(tt_server_push(e->srv, jobs, 2, TH_NOW), 0);
  assert_int_equal(jobs[0].status, 500);
  assert_string_equal(th_str(jobs[0].response, "error"), "internal");
  assert_int_equal(jobs[1].status, 200);
  assert_int_equal(doc_n(e, ids[2]), 1); /* Q's increment only */
  for (int i = 0; i < 2; i++)
    json_decref(jobs[i].response);
  json_decref(rr);
  json_decref(rq);
  th_env_free(e);
}

/* A store written by the format-1 server with several partitions has no
 * per-partition dedupe records: refused. With one partition it is read. */
static void test_format1_store(void **state) {
  (void)state;
  for (uint32_t parts = 1; parts <= 2; parts++) {
    char dir[] = "/tmp/tt_server_XXXXXX", err[256] = "", cmd[64];
    tt_store *st;
    tt_txn *t;
    tt_policy_table *pol;
    tt_server *srv = NULL;
    uint8_t v[4];
    tt_store_opts so = {.no_sync = 1};
    tt_server_opts o = {0};

    assert_non_null(mkdtemp(dir));
    assert_int_equal(tt_store_open_lmdb(dir, &so, &st, err, sizeof err), 0);
    assert_int_equal(tt_txn_begin(st, 0, 1, &t), 0);
    tt_be32_put(v, 1);
    assert_int_equal(tt_put(t, TT_TABLE_META,
                            (tt_bytes){"server.format", 13},
                            (tt_bytes){v, 4}),
                     0);
    tt_be32_put(v, parts);
    assert_int_equal(tt_put(t, TT_TABLE_META,
                            (tt_bytes){"server.partitions", 17},
                            (tt_bytes){v, 4}),
                     0);
    assert_int_equal(tt_commit(t), 0);
    assert_int_equal(tt_policy_parse(NULL, 0, &pol, err, sizeof err), 0);
    int rc = tt_server_open(st, pol, &o, &srv, err, sizeof err);
    if (parts == 1) {
      assert_int_equal(rc, 0);
      assert_int_equal(tt_server_partitions(srv), 1);
      /* marked as this build's format, so older builds refuse it now */
      tt_bytes fv;
      assert_int_equal(tt_txn_begin(st, 0, 0, &t), 0);
      assert_int_equal(tt_get(t, TT_TABLE_META,
                              (tt_bytes){"server.format", 13}, &fv),
                       0);
      assert_int_equal(fv.len, 4);
      assert_int_equal(tt_be32_get(fv.data), TT_SRV_FORMAT);
      tt_abort(t);
    } else {
      assert_int_equal(rc, TETHER_EVERSION);
      assert_null(srv);
      assert_non_null(strstr(err, "format 1"));
    }
    tt_server_close(srv);
    tt_policy_free(pol);
    tt_store_close(st);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_push_spans_partitions_once),
      cmocka_unit_test(test_crash_between_partitions),
      cmocka_unit_test(test_crash_before_home_commit),
      cmocka_unit_test(test_commits_per_group),
      cmocka_unit_test(test_two_servers_one_store),
      cmocka_unit_test(test_gap_and_chain_with_home),
      cmocka_unit_test(test_corrupt_dedupe_record),
      cmocka_unit_test(test_format1_store),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
