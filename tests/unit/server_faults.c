/* server_faults.c — the reconciler when its store fails: a full LMDB map,
 * a read-only store, a store directory that vanished. What must hold
 * (G1): every push answered 200 is in the store and stays there; a push
 * that could not commit is answered 507/503, changes nothing, and
 * succeeds once the operator fixed the store; never a crash, never an
 * acknowledgement of something that is not stored. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "server_helpers.h"

#define HLC(ms) ((uint64_t)(ms) << 16)
#define SMALL_MAP (2u << 20)
#define BIG_MAP (64u << 20)
#define PAD 3000 /* bytes of filler per document */

/* ---- a server on a store with a chosen map size ------------------------- */

typedef struct {
  char dir[64];
  tt_store *st;
  tt_policy_table *pol;
  tt_server *srv;
} fenv;

static int fopen_store(fenv *e, uint64_t map, int read_only, char *err,
                       size_t errlen) {
  tt_store_opts so = {.map_size = map, .read_only = read_only, .no_sync = 1};
  return tt_store_open_lmdb(e->dir, &so, &e->st, err, errlen);
}

static int fopen_server(fenv *e, char *err, size_t errlen) {
  tt_server_opts o = {.partitions = 1};
  if (!e->pol)
    assert_int_equal(tt_policy_parse(NULL, 0, &e->pol, err, errlen), 0);
  return tt_server_open(e->st, e->pol, &o, &e->srv, err, errlen);
}

static void fopen_all(fenv *e, uint64_t map, int read_only) {
  char err[256] = "";
  if (fopen_store(e, map, read_only, err, sizeof err))
    fail_msg("store open: %s", err);
  if (fopen_server(e, err, sizeof err))
    fail_msg("server open: %s", err);
}

static void fclose_all(fenv *e) {
  tt_server_close(e->srv);
  e->srv = NULL;
  tt_store_close(e->st);
  e->st = NULL;
}

static fenv *fenv_new(void) {
  fenv *e = calloc(1, sizeof *e);
  assert_non_null(e);
  strcpy(e->dir, "/tmp/tt_sfault_XXXXXX");
  assert_non_null(mkdtemp(e->dir));
  return e;
}

static void fenv_free(fenv *e) {
  char cmd[128];
  fclose_all(e);
  tt_policy_free(e->pol);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", e->dir);
  assert_int_equal(system(cmd), 0);
  free(e);
}

/* ---- store fingerprint: every entry of every table ---------------------- */

typedef struct {
  uint64_t h, n;
} fprint;

static void fmix(fprint *f, const void *p, size_t len) {
  const uint8_t *b = p;
  for (size_t i = 0; i < 8; i++)
    f->h = (f->h ^ (uint8_t)(len >> (8 * i))) * 1099511628211ull;
  for (size_t i = 0; i < len; i++)
    f->h = (f->h ^ b[i]) * 1099511628211ull;
}

static int fprint_cb(void *ctx, tt_bytes k, tt_bytes v) {
  fprint *f = ctx;
  fmix(f, k.data, k.len);
  fmix(f, v.data, v.len);
  f->n++;
  return 0;
}

static fprint fingerprint(tt_store *st) {
  fprint f = {14695981039346656037ull, 0};
  tt_txn *t = NULL;
  tt_bytes all = {NULL, 0};
  assert_int_equal(tt_txn_begin(st, 0, 0, &t), 0);
  for (int tab = 0; tab < TT_TABLE__COUNT; tab++) {
    uint8_t tb = (uint8_t)tab;
    fmix(&f, &tb, 1);
    assert_int_equal(tt_scan(t, (tt_table)tab, all, fprint_cb, &f), 0);
  }
  tt_abort(t);
  return f;
}

#define assert_same_store(a, b)                                                \
  do {                                                                         \
    assert_true((a).h == (b).h);                                               \
    assert_true((a).n == (b).n);                                               \
  } while (0)

/* ---- pushing and reading back ------------------------------------------- */

/* Pushes REQ as one job; returns the status, *resp the body. */
static int fpush(fenv *e, const json_t *req, json_t **resp) {
  tt_push_job job = {.request = req};
  tt_server_push(e->srv, &job, 1, TH_NOW);
  assert_non_null(job.response);
  assert_int_equal(json_integer_value(json_object_get(job.response, "v")), 1);
  *resp = job.response;
  return job.status;
}

/* The intent creating document "d<N>" with a filler field. */
static json_t *doc_intent(th_rep *r, unsigned n) {
  char id[32], *ops = malloc(PAD + 128);
  assert_non_null(ops);
  snprintf(id, sizeof id, "d%05u", n);
  int len = snprintf(ops, PAD + 128,
                     "[{\"kind\":\"create\",\"value\":{\"n\":%u,\"pad\":\"", n);
  memset(ops + len, 'a' + (char)(n % 26), PAD);
  strcpy(ops + len + PAD, "\"}}]");
  json_t *in = th_intent(r, HLC(TH_NOW) + n, "docs", id, 0, ops);
  free(ops);
  return in;
}

/* Every document a full pull from [] returns: {"id": doc}. */
static json_t *pull_all(fenv *e) {
  json_t *docs = json_object(), *req, *resp;
  int more = 1, status = 0, pages = 0;
  req = json_pack("{s:i,s:s,s:[]}", "v", 1, "replica",
                  "a0000000000000000000000000000000", "cursor");
  while (more) {
    json_t *ch, *c;
    size_t i;
    assert_int_equal(tt_server_pull(e->srv, req, &status, &resp), 0);
    assert_int_equal(status, 200);
    ch = json_object_get(resp, "changes");
    json_array_foreach(ch, i, c) {
      json_t *cur = json_object_get(docs, th_str(c, "id"));
      json_t *set = json_object_get(c, "set");
      if (!cur) {
        cur = json_object();
        json_object_set_new(docs, th_str(c, "id"), cur);
      }
      if (set)
        json_object_update(cur, set);
    }
    more = json_is_true(json_object_get(resp, "more"));
    json_object_set(req, "cursor", json_object_get(resp, "cursor"));
    if (json_object_get(resp, "resume"))
      json_object_set(req, "resume", json_object_get(resp, "resume"));
    json_decref(resp);
    assert_true(++pages < 10000);
  }
  json_decref(req);
  return docs;
}

/* Asserts documents d00001..d<N> are all there, each whole. */
static void assert_docs(fenv *e, unsigned n, unsigned absent) {
  json_t *docs = pull_all(e);
  for (unsigned i = 1; i <= n; i++) {
    char id[32];
    snprintf(id, sizeof id, "d%05u", i);
    json_t *d = json_object_get(docs, id);
    if (!d)
      fail_msg("acknowledged document %s is missing", id);
    assert_int_equal(json_integer_value(json_object_get(d, "n")), i);
    const char *pad = json_string_value(json_object_get(d, "pad"));
    assert_non_null(pad);
    assert_int_equal(strlen(pad), PAD);
    assert_int_equal(pad[PAD - 1], 'a' + (char)(i % 26));
  }
  if (absent) {
    char id[32];
    snprintf(id, sizeof id, "d%05u", absent);
    assert_null(json_object_get(docs, id));
  }
  json_decref(docs);
}

/* ---- tests --------------------------------------------------------------- */

/* Push one intent at a time into a 2 MiB map until the store is full. */
static void test_full_store(void **state) {
  (void)state;
  fenv *e = fenv_new();
  th_rep r;
  json_t *req = NULL, *resp = NULL;
  unsigned acked = 0;
  int st = 200;
  tt_server_stats s0, s1;

  th_rep_init(&r, 7);
  fopen_all(e, SMALL_MAP, 0);
  while (st == 200) {
    json_t *in = doc_intent(&r, acked + 1);
    req = th_req(&r, &in, 1);
    st = fpush(e, req, &resp);
    if (st == 200) {
      acked++;
      assert_int_equal(th_int(resp, "acked"), acked);
      json_decref(resp);
      json_decref(req);
      assert_true(acked < 5000); /* 2 MiB cannot hold that much */
    }
  }
  /* The push that did not fit: 507 "full", nothing acknowledged. */
  assert_int_equal(st, 507);
  assert_string_equal(th_str(resp, "error"), "full");
  assert_null(json_object_get(resp, "acked"));
  assert_true(acked > 10);
  print_message("store full after %u acknowledged pushes\n", acked);
  json_decref(resp);

  /* It changed nothing: same store, same counters, and it fails again
   * the same way (the server's caches were not advanced either). */
  fprint before = fingerprint(e->st);
  tt_server_get_stats(e->srv, &s0);
  assert_int_equal(fpush(e, req, &resp), 507);
  json_decref(resp);
  assert_same_store(before, fingerprint(e->st));
  tt_server_get_stats(e->srv, &s1);
  assert_int_equal(s1.commits, s0.commits);
  assert_int_equal(s1.intents_applied, s0.intents_applied);

  /* Everything acknowledged before is there, whole; the failed one not. */
  assert_docs(e, acked, acked + 1);

  /* An acknowledged intent pushed again is still a duplicate (its dedupe
   * record survived) — even on a full store. */
  {
    th_rep old;
    th_rep_init(&old, 7);
    json_t *first = doc_intent(&old, 1);
    json_t *dreq = th_req(&old, &first, 1);
    assert_int_equal(fpush(e, dreq, &resp), 200);
    assert_true(json_is_true(json_object_get(
        json_array_get(json_object_get(resp, "outcomes"), 0), "duplicate")));
    assert_int_equal(th_int(resp, "acked"), acked);
    json_decref(resp);
    json_decref(dreq);
  }

  /* The operator grows the map: the same push now succeeds. */
  fclose_all(e);
  fopen_all(e, BIG_MAP, 0);
  assert_same_store(before, fingerprint(e->st));
  assert_int_equal(fpush(e, req, &resp), 200);
  assert_int_equal(th_int(resp, "acked"), acked + 1);
  assert_string_equal(
      th_str(json_array_get(json_object_get(resp, "outcomes"), 0), "outcome"),
      "applied");
  json_decref(resp);
  json_decref(req);
  assert_docs(e, acked + 1, 0);

  /* And the replica goes on from there. */
  json_t *in = doc_intent(&r, acked + 2);
  req = th_req(&r, &in, 1);
  assert_int_equal(fpush(e, req, &resp), 200);
  json_decref(resp);
  json_decref(req);
  fenv_free(e);
}

/* A group commit that does not fit: every job answered 507, none of them
 * acknowledged, nothing written; after growing the map both go through. */
static void test_full_group_commit(void **state) {
  (void)state;
  fenv *e = fenv_new();
  th_rep a, b;
  json_t *resp;
  unsigned n = 0;
  int st;

  th_rep_init(&a, 8);
  th_rep_init(&b, 9);
  fopen_all(e, SMALL_MAP, 0);
  /* Fill with A until a push fails; keep that intent for the group. */
  json_t *req = NULL;
  do {
    json_t *in = doc_intent(&a, ++n);
    json_decref(req);
    req = th_req(&a, &in, 1);
    st = fpush(e, req, &resp);
    json_decref(resp);
    assert_true(n < 5000);
  } while (st == 200);
  assert_int_equal(st, 507);

  json_t *in_b = doc_intent(&b, 90000);
  json_t *req_b = th_req(&b, &in_b, 1);
  tt_push_job jobs[2] = {{.request = req_b}, {.request = req}};
  fprint before = fingerprint(e->st);
  assert_int_equal(tt_server_push(e->srv, jobs, 2, TH_NOW), TETHER_EFULL);
  for (int i = 0; i < 2; i++) {
    assert_int_equal(jobs[i].status, 507);
    assert_string_equal(th_str(jobs[i].response, "error"), "full");
    json_decref(jobs[i].response);
  }
  assert_same_store(before, fingerprint(e->st));

  fclose_all(e);
  fopen_all(e, BIG_MAP, 0);
  assert_int_equal(tt_server_push(e->srv, jobs, 2, TH_NOW), 0);
  for (int i = 0; i < 2; i++) {
    assert_int_equal(jobs[i].status, 200);
    json_decref(jobs[i].response);
  }
  assert_docs(e, n, 0);
  json_decref(req);
  json_decref(req_b);
  fenv_free(e);
}

/* A store opened read-only: pulls work, pushes are 503 and acknowledge
 * nothing, and the same push succeeds once the store is writable. */
static void test_read_only_store(void **state) {
  (void)state;
  fenv *e = fenv_new();
  th_rep r;
  json_t *resp, *in, *req;
  char err[256] = "";

  th_rep_init(&r, 10);
  fopen_all(e, BIG_MAP, 0);
  in = doc_intent(&r, 1);
  req = th_req(&r, &in, 1);
  assert_int_equal(fpush(e, req, &resp), 200);
  json_decref(resp);
  json_decref(req);
  fclose_all(e);

  fopen_all(e, 0, 1);
  fprint before = fingerprint(e->st);
  in = doc_intent(&r, 2);
  req = th_req(&r, &in, 1);
  assert_int_equal(fpush(e, req, &resp), 503);
  assert_string_equal(th_str(resp, "error"), "unavailable");
  assert_null(json_object_get(resp, "acked"));
  json_decref(resp);
  assert_same_store(before, fingerprint(e->st));
  assert_docs(e, 1, 2);
  fclose_all(e);

  /* A read-only open of a directory that holds no server yet fails at
   * open with a message, instead of failing later. */
  {
    fenv *e2 = fenv_new();
    tt_store_opts so = {.no_sync = 1};
    assert_int_equal(tt_store_open_lmdb(e2->dir, &so, &e2->st, err,
                                        sizeof err),
                     0);
    tt_store_close(e2->st); /* an empty store: no server meta in it */
    e2->st = NULL;
    assert_int_equal(fopen_store(e2, 0, 1, err, sizeof err), 0);
    err[0] = 0;
    int rc = fopen_server(e2, err, sizeof err);
    assert_int_not_equal(rc, 0);
    assert_null(e2->srv);
    assert_true(strlen(err) > 0);
    fenv_free(e2);
  }

  fopen_all(e, BIG_MAP, 0);
  assert_int_equal(fpush(e, req, &resp), 200);
  json_decref(resp);
  json_decref(req);
  assert_docs(e, 2, 0);
  fenv_free(e);
}

/* The store directory is gone. A read-only open says so (naming the
 * path); a read-write open starts an empty store, and a replica that had
 * intents acknowledged there is told "gap from 1", never acknowledged for
 * intents the server does not have. */
static void test_vanished_directory(void **state) {
  (void)state;
  fenv *e = fenv_new();
  th_rep r;
  json_t *resp, *in, *req;
  char err[256] = "", cmd[128];

  th_rep_init(&r, 11);
  fopen_all(e, BIG_MAP, 0);
  for (unsigned i = 1; i <= 3; i++) {
    in = doc_intent(&r, i);
    req = th_req(&r, &in, 1);
    assert_int_equal(fpush(e, req, &resp), 200);
    json_decref(resp);
    json_decref(req);
  }
  fclose_all(e);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", e->dir);
  assert_int_equal(system(cmd), 0);

  assert_int_not_equal(fopen_store(e, 0, 1, err, sizeof err), 0);
  assert_null(e->st);
  assert_non_null(strstr(err, e->dir));

  fopen_all(e, BIG_MAP, 0);
  in = doc_intent(&r, 4);
  req = th_req(&r, &in, 1);
  assert_int_equal(fpush(e, req, &resp), 409);
  assert_string_equal(th_str(resp, "error"), "gap");
  assert_int_equal(th_int(resp, "expected"), 1);
  json_decref(resp);
  json_decref(req);
  json_t *docs = pull_all(e);
  assert_int_equal(json_object_size(docs), 0);
  json_decref(docs);
  fenv_free(e);
}

/* The directory is removed while the server runs. LMDB keeps writing to
 * the unlinked files, so nothing here can fail visibly; what must hold is
 * that the server neither crashes nor answers anything malformed, and that
 * a 200 is consistent with what the same process then reads. */
static void test_directory_removed_while_open(void **state) {
  (void)state;
  fenv *e = fenv_new();
  th_rep r;
  json_t *resp, *in, *req;
  char cmd[128];
  int st;

  th_rep_init(&r, 12);
  fopen_all(e, BIG_MAP, 0);
  in = doc_intent(&r, 1);
  req = th_req(&r, &in, 1);
  assert_int_equal(fpush(e, req, &resp), 200);
  json_decref(resp);
  json_decref(req);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", e->dir);
  assert_int_equal(system(cmd), 0);

  in = doc_intent(&r, 2);
  req = th_req(&r, &in, 1);
  st = fpush(e, req, &resp);
  print_message("push after the directory was removed: %d\n", st);
  assert_true(st == 200 || st == 503);
  if (st == 200)
    assert_docs(e, 2, 0);
  else
    assert_docs(e, 1, 2);
  json_decref(resp);
  json_decref(req);
  fenv_free(e);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_full_store),
      cmocka_unit_test(test_full_group_commit),
      cmocka_unit_test(test_read_only_store),
      cmocka_unit_test(test_vanished_directory),
      cmocka_unit_test(test_directory_removed_while_open),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
