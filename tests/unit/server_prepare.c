/* server_prepare.c — a push body read by tt_server_push_prepare (the
 * streamed reader net/ uses, job.prep) gets exactly the answer it gets as
 * a parsed tree (job.request): the same status, the same body (error code
 * and message included), the same documents and records afterwards, the
 * same counters.
 *
 * Each case runs its body text on a PAIR of fresh servers: (a) parsed the
 * way net/ parsed a push body before tt_server_push_prepare existed
 * (tt_codec_parse: tt_json_parse with duplicate keys refused, an empty
 * body or a non-object refused as "json") and pushed as job.request, and
 * (b) prepared and pushed as job.prep. The prepared text is an exact-size
 * copy without a terminating NUL, so that ASan sees any read past it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/json.h"
#include "server_helpers.h"

#define HLC(ms) ((uint64_t)(ms) << 16)

/* Random bodies test_mutations tries. */
#ifndef PP_MUTANTS
#define PP_MUTANTS 400
#endif

/* ---- the two paths ------------------------------------------------------ */

typedef struct {
  int status;
  json_t *resp;
  int pushed; /* went through tt_server_push (not refused by the parse) */
} pp_ans;

static json_t *json_error_body(const char *msg) {
  json_t *b =
      json_pack("{s:i,s:s,s:s}", "v", 1, "error", "json", "message", msg);
  assert_non_null(b);
  return b;
}

/* What net/codec.c's tt_codec_parse did with a push body (this layer does
 * not link net/): NULL and *REFUSED set when net/ answered 400 "json". */
static json_t *tree_of(const char *body, size_t len, json_t **refused) {
  tt_json_error err;
  json_t *v = NULL;
  char msg[256];
  *refused = NULL;
  if (len == 0) {
    *refused = json_error_body("empty body, expected a JSON object");
    return NULL;
  }
  int rc = tt_json_parse(body, len, TT_JSON_REJECT_DUPLICATES, &v, &err);
  if (rc) {
    assert_int_equal(rc, TETHER_EJSON);
    snprintf(msg, sizeof msg, "%s at line %d column %d", err.text, err.line,
             err.column);
    *refused = json_error_body(msg);
    return NULL;
  }
  if (!json_is_object(v)) {
    json_decref(v);
    *refused = json_error_body("body is not a JSON object");
    return NULL;
  }
  return v;
}

/* An exact-size copy of BODY, without a NUL after it. */
static char *exact_copy(const char *body, size_t len) {
  char *c = malloc(len ? len : 1);
  assert_non_null(c);
  if (len)
    memcpy(c, body, len);
  return c;
}

static tt_push_prep *prepare(const char *body, size_t len) {
  char *c = exact_copy(body, len);
  tt_push_prep *p = (tt_push_prep *)1;
  assert_int_equal(tt_server_push_prepare(c, len, &p), 0);
  assert_non_null(p);
  free(c); /* the prep holds nothing of the text */
  return p;
}

/* Pushes JOBS, checks every one got an answer. */
static void push_jobs(th_env *e, tt_push_job *jobs, size_t n) {
  assert_int_equal(tt_server_push(e->srv, jobs, n, TH_NOW), 0);
  for (size_t i = 0; i < n; i++) {
    assert_non_null(jobs[i].response);
    assert_int_equal(th_int(jobs[i].response, "v"), 1);
  }
}

/* (a) */
static pp_ans run_tree(th_env *e, const char *body, size_t len) {
  pp_ans a = {0};
  json_t *refused, *req = tree_of(body, len, &refused);
  if (!req) {
    a.status = 400;
    a.resp = refused;
    return a;
  }
  tt_push_job job = {.request = req};
  push_jobs(e, &job, 1);
  json_decref(req);
  a.status = job.status;
  a.resp = job.response;
  a.pushed = 1;
  return a;
}

/* (b) */
static pp_ans run_prep(th_env *e, const char *body, size_t len) {
  pp_ans a = {0};
  tt_push_job job = {.prep = prepare(body, len)};
  push_jobs(e, &job, 1);
  tt_push_prep_free(job.prep);
  a.status = job.status;
  a.resp = job.response;
  a.pushed = 1;
  return a;
}

static char *canon_of(const json_t *v) {
  char *s = tt_canon(v);
  assert_non_null(s);
  return s;
}

/* The same status and the same body, byte for byte once canonical. */
static void assert_same_answer(int st_a, const json_t *a, int st_b,
                               const json_t *b, const char *what) {
  char *ta = canon_of(a), *tb = canon_of(b);
  if (st_a != st_b || strcmp(ta, tb))
    fail_msg("%s: as a tree %d %.600s; prepared %d %.600s", what, st_a, ta,
             st_b, tb);
  free(ta);
  free(tb);
}

/* Everything a pull from [] returns, page after page, as one text. */
static char *store_text(th_env *e) {
  json_t *all = json_array(), *resp;
  char *cur = strdup("[]"), *res = NULL, *out;
  int more = 1;
  for (size_t n = 0; more; n++) {
    assert_true(n < 1000);
    assert_int_equal(th_pull_r(e, cur, res, 0, &resp), 200);
    more = json_is_true(json_object_get(resp, "more"));
    free(cur);
    free(res);
    cur = th_key_text(resp, "cursor");
    res = th_key_text(resp, "resume");
    assert_int_equal(json_array_append_new(all, resp), 0);
  }
  free(cur);
  free(res);
  out = canon_of(all);
  json_decref(all);
  return out;
}

static uint64_t last_seq(th_env *e, const th_rep *r) {
  uint64_t last = 99;
  int rc = tt_server_replica_last_seq(e->srv, r->id, &last);
  if (rc == TETHER_ENOTFOUND)
    assert_int_equal(last, 0);
  else
    assert_int_equal(rc, 0);
  return last;
}

static void assert_same_stats(const tt_server_stats *a,
                              const tt_server_stats *b) {
  assert_int_equal(a->commits, b->commits);
  assert_int_equal(a->pushes, b->pushes);
  assert_int_equal(a->pulls, b->pulls);
  assert_int_equal(a->intents_applied, b->intents_applied);
  assert_int_equal(a->intents_merged, b->intents_merged);
  assert_int_equal(a->intents_conflict, b->intents_conflict);
  assert_int_equal(a->intents_rejected, b->intents_rejected);
  assert_int_equal(a->intents_duplicate, b->intents_duplicate);
  assert_int_equal(a->concurrent_writes, b->concurrent_writes);
  assert_int_equal(a->bad_requests, b->bad_requests);
}

static tt_server_stats stats_delta(const tt_server_stats *a,
                                   const tt_server_stats *b) {
  tt_server_stats d = {
      .commits = b->commits - a->commits,
      .pushes = b->pushes - a->pushes,
      .pulls = b->pulls - a->pulls,
      .intents_applied = b->intents_applied - a->intents_applied,
      .intents_merged = b->intents_merged - a->intents_merged,
      .intents_conflict = b->intents_conflict - a->intents_conflict,
      .intents_rejected = b->intents_rejected - a->intents_rejected,
      .intents_duplicate = b->intents_duplicate - a->intents_duplicate,
      .concurrent_writes = b->concurrent_writes - a->concurrent_writes,
      .bad_requests = b->bad_requests - a->bad_requests,
  };
  return d;
}

/* Two fresh servers: T takes job.request, P takes job.prep. */
typedef struct {
  th_env *t, *p;
} pp_pair;

static void pair_open(pp_pair *pp, unsigned parts) {
  th_skip_unless(strcmp(th_backend(), "redis-cluster"),
                 "two independent stores needed");
  pp->t = th_env_new(NULL, parts, 0);
  pp->p = th_env_new(NULL, parts, 0);
}

static void pair_close(pp_pair *pp) {
  th_env_free(pp->t);
  th_env_free(pp->p);
  pp->t = pp->p = NULL;
}

/* Runs BODY both ways on PP and asserts that the answers, the stores
 * afterwards and the counters moved agree; a refused body changes neither
 * store. R (or NULL): a replica whose last seq must agree. Returns the
 * status; *RESP (if not NULL) gets the prepared path's answer. */
static int both_n(pp_pair *pp, const char *body, size_t len, const th_rep *r,
                  json_t **resp) {
  tt_server_stats t0, p0, t1, p1, dt, dp;
  char *before_t = store_text(pp->t), *before_p = store_text(pp->p);
  char *after_t, *after_p;
  tt_server_get_stats(pp->t->srv, &t0);
  tt_server_get_stats(pp->p->srv, &p0);

  pp_ans a = run_tree(pp->t, body, len);
  pp_ans b = run_prep(pp->p, body, len);
  assert_same_answer(a.status, a.resp, b.status, b.resp, "one job");
  if (a.status != 200)
    assert_non_null(json_string_value(json_object_get(b.resp, "error")));

  after_t = store_text(pp->t);
  after_p = store_text(pp->p);
  assert_string_equal(after_t, after_p);
  if (a.status != 200) {
    assert_string_equal(before_t, after_t);
    assert_string_equal(before_p, after_p);
  }
  if (r)
    assert_int_equal(last_seq(pp->t, r), last_seq(pp->p, r));

  tt_server_get_stats(pp->t->srv, &t1);
  tt_server_get_stats(pp->p->srv, &p1);
  dt = stats_delta(&t0, &t1);
  dp = stats_delta(&p0, &p1);
  dt.pulls = dp.pulls = 0; /* store_text's own */
  if (!a.pushed) {
    /* net/ answered it before the state machine saw it: now the state
     * machine answers it, and counts it as a push and a 4xx. */
    tt_server_stats want = {.pushes = 1, .bad_requests = 1}, none = {0};
    assert_same_stats(&dt, &none);
    assert_same_stats(&dp, &want);
  } else {
    assert_same_stats(&dt, &dp);
    assert_int_equal(dp.pushes, 1);
    assert_int_equal(dp.bad_requests, a.status >= 400 && a.status < 500);
  }

  free(before_t);
  free(before_p);
  free(after_t);
  free(after_p);
  json_decref(a.resp);
  if (resp)
    *resp = b.resp;
  else
    json_decref(b.resp);
  return b.status;
}

static int both(pp_pair *pp, const char *body, const th_rep *r, json_t **resp) {
  return both_n(pp, body, strlen(body), r, resp);
}

/* On a fresh pair: BODY must get WANT_STATUS with error WANT_ERROR (NULL
 * for 200) both ways, and (when R is given and it is refused) leave R
 * unknown to the server. */
static void expect_n(const char *body, size_t len, const th_rep *r,
                     int want_status, const char *want_error) {
  pp_pair pp;
  json_t *resp;
  pair_open(&pp, 0);
  int st = both_n(&pp, body, len, r, &resp);
  if (st != want_status ||
      (want_error && strcmp(th_str(resp, "error"), want_error))) {
    char *s = canon_of(resp);
    fail_msg("want %d %s, got %d %.400s (body %.200s)", want_status,
             want_error ? want_error : "", st, s, body);
  }
  if (r && st != 200) {
    uint64_t last = 99;
    assert_int_equal(tt_server_replica_last_seq(pp.p->srv, r->id, &last),
                     TETHER_ENOTFOUND);
    assert_int_equal(last, 0);
  }
  json_decref(resp);
  pair_close(&pp);
}

static void expect(const char *body, const th_rep *r, int want_status,
                   const char *want_error) {
  expect_n(body, strlen(body), r, want_status, want_error);
}

/* ---- bodies ------------------------------------------------------------- */

/* The next N intents of R: creates, sets, incrs and deletes over a few
 * documents of "c", so that merging has something to do. */
static json_t *intents_of(th_rep *r, size_t n) {
  json_t *arr = json_array();
  assert_non_null(arr);
  for (size_t i = 0; i < n; i++) {
    uint64_t s = r->seq + 1;
    char id[32], ops[160];
    snprintf(id, sizeof id, "d%llu", (unsigned long long)(s / 4));
    switch (s % 4) {
    case 0:
      snprintf(ops, sizeof ops,
               "[{\"kind\":\"create\",\"value\":{\"t\":\"%llu\",\"n\":1}}]",
               (unsigned long long)s);
      break;
    case 1:
      snprintf(ops, sizeof ops,
               "[{\"kind\":\"set\",\"field\":\"t\",\"value\":\"x%llu\"}]",
               (unsigned long long)s);
      break;
    case 2:
      snprintf(ops, sizeof ops,
               "[{\"kind\":\"incr\",\"field\":\"n\",\"value\":%llu}]",
               (unsigned long long)s);
      break;
    default:
      snprintf(ops, sizeof ops, "%s",
               s % 8 == 7 ? "[{\"kind\":\"delete\"}]"
                          : "[{\"kind\":\"set\",\"field\":\"u\",\"value\":"
                            "[1,{\"a\":null}]}]");
    }
    assert_int_equal(json_array_append_new(
                         arr, th_intent(r, HLC(TH_NOW) + s, "c", id, 0, ops)),
                     0);
  }
  return arr;
}

static char *dumps(const json_t *j) {
  char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
  assert_non_null(s);
  return s;
}

/* printf into a new string. */
static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...) {
  va_list ap;
  va_start(ap, f);
  int n = vsnprintf(NULL, 0, f, ap);
  va_end(ap);
  assert_true(n >= 0);
  char *s = malloc((size_t)n + 1);
  assert_non_null(s);
  va_start(ap, f);
  vsnprintf(s, (size_t)n + 1, f, ap);
  va_end(ap);
  return s;
}

/* {"v":1,"replica":R,"intents":ARR} as text; steals ARR. */
static char *body_of(const th_rep *r, json_t *arr) {
  char *t = dumps(arr), *b;
  json_decref(arr);
  b = fmt("{\"v\":1,\"replica\":\"%s\",\"intents\":%s}", r->hex, t);
  free(t);
  return b;
}

/* A body of the next N intents of R. */
static char *body_next(th_rep *r, size_t n) {
  return body_of(r, intents_of(r, n));
}

/* Replaces the first occurrence of FROM in S (freed) by TO. */
static char *replace(char *s, const char *from, const char *to) {
  char *at = strstr(s, from), *out;
  assert_non_null(at);
  out = fmt("%.*s%s%s", (int)(at - s), s, to, at + strlen(from));
  free(s);
  return out;
}

/* ---- valid pushes ------------------------------------------------------- */

static void test_valid_one_and_many(void **state) {
  (void)state;
  th_rep r;
  char *b;
  pp_pair pp;
  json_t *resp;

  th_rep_init(&r, 1);
  b = body_next(&r, 1);
  expect(b, &r, 200, NULL);
  free(b);

  th_rep_init(&r, 2);
  b = body_next(&r, 777);
  expect(b, &r, 200, NULL);
  free(b);

  /* exactly the limit */
  th_rep_init(&r, 3);
  b = body_next(&r, TT_MAX_INTENTS);
  pair_open(&pp, 0);
  assert_int_equal(both(&pp, b, &r, &resp), 200);
  assert_int_equal(json_array_size(json_object_get(resp, "outcomes")),
                   TT_MAX_INTENTS);
  assert_int_equal(last_seq(pp.p, &r), TT_MAX_INTENTS);
  json_decref(resp);
  /* and again: all duplicates, both ways */
  assert_int_equal(both(&pp, b, &r, &resp), 200);
  assert_true(json_is_true(json_object_get(
      json_array_get(json_object_get(resp, "outcomes"), 0), "duplicate")));
  json_decref(resp);
  pair_close(&pp);
  free(b);
}

static void test_chain_continues(void **state) {
  (void)state;
  pp_pair pp;
  th_rep r, s, fork;
  char *b1, *b2, *b3, *gap, *bad;
  json_t *resp;

  for (unsigned parts = 1; parts <= 4; parts += 3) {
    pair_open(&pp, parts);
    th_rep_init(&r, 4);
    th_rep_init(&s, 5);
    b1 = body_next(&r, 5);
    b2 = body_next(&r, 40);
    assert_int_equal(both(&pp, b1, &r, NULL), 200);
    assert_int_equal(both(&pp, b2, &r, NULL), 200);
    assert_int_equal(last_seq(pp.p, &r), 45);
    /* another replica on the same documents: merges */
    b3 = body_next(&s, 45);
    assert_int_equal(both(&pp, b3, &s, NULL), 200);
    /* the first again: duplicates */
    assert_int_equal(both(&pp, b1, &r, &resp), 200);
    assert_int_equal(th_int(resp, "acked"), 45);
    json_decref(resp);
    /* a gap */
    fork = r;
    json_decref(intents_of(&fork, 1));
    gap = body_next(&fork, 2);
    assert_int_equal(both(&pp, gap, &r, &resp), 409);
    assert_string_equal(th_str(resp, "error"), "gap");
    json_decref(resp);
    /* seq 46 chained on something else than seq 45 */
    fork = r;
    memset(fork.last, 0x5a, TT_HASH_LEN);
    bad = body_next(&fork, 3);
    assert_int_equal(both(&pp, bad, &r, &resp), 409);
    assert_string_equal(th_str(resp, "error"), "chain");
    json_decref(resp);
    assert_int_equal(last_seq(pp.p, &r), 45);
    /* "seen" given, keys in another order */
    json_t *arr = intents_of(&r, 3);
    char *t = dumps(arr), *b4;
    json_decref(arr);
    b4 =
        fmt("{\"seen\":2,\"intents\":%s,\"replica\":\"%s\",\"v\":1}", t, r.hex);
    assert_int_equal(both(&pp, b4, &r, NULL), 200);
    assert_int_equal(last_seq(pp.p, &r), 48);
    free(t);
    free(b4);
    free(b1);
    free(b2);
    free(b3);
    free(gap);
    free(bad);
    pair_close(&pp);
  }
}

/* A push sent "ahead" that finds a gap before it is held while the caller
 * lets it wait (deferred: no answer, nothing changes, its prep intact), is
 * run once the push before it has committed, and without may_wait gets
 * the usual 409 gap at once. PROTOCOL.md "Pushes in flight". */
static tt_push_prep *ahead_prep(th_rep *r, size_t n) {
  json_t *arr = intents_of(r, n);
  char *t = dumps(arr);
  json_decref(arr);
  char *b = fmt("{\"ahead\":true,\"intents\":%s,\"replica\":\"%s\",\"v\":1}",
                t, r->hex);
  tt_push_prep *p = prepare(b, strlen(b));
  assert_int_equal(tt_push_prep_ahead(p), 1);
  free(t);
  free(b);
  return p;
}

static void test_ahead_deferred(void **state) {
  (void)state;
  pp_pair pp;
  th_rep r;

  for (unsigned parts = 1; parts <= 4; parts += 3) {
    pair_open(&pp, parts);
    th_rep_init(&r, 6);
    char *b1 = body_next(&r, 3); /* seqs 1-3 */
    tt_push_job ah = {.prep = ahead_prep(&r, 4), .may_wait = 1}; /* 4-7 */

    assert_int_equal(tt_server_push(pp.p->srv, &ah, 1, TH_NOW), 0);
    assert_int_equal(ah.deferred, 1);
    assert_int_equal(ah.status, 0);
    assert_null(ah.response);
    assert_int_equal(last_seq(pp.p, &r), 0);

    /* held behind the push it follows, in one group commit: that one
     * commits, the held one waits for the next */
    tt_push_job jobs[2] = {ah, {.prep = prepare(b1, strlen(b1))}};
    assert_int_equal(tt_server_push(pp.p->srv, jobs, 2, TH_NOW), 0);
    assert_int_equal(jobs[0].deferred, 1);
    assert_null(jobs[0].response);
    assert_int_equal(jobs[1].status, 200);
    assert_true(json_is_true(json_object_get(jobs[1].response, "ahead_ok")));
    assert_int_equal(last_seq(pp.p, &r), 3);
    json_decref(jobs[1].response);
    tt_push_prep_free(jobs[1].prep);

    assert_int_equal(tt_server_push(pp.p->srv, &jobs[0], 1, TH_NOW), 0);
    assert_int_equal(jobs[0].deferred, 0);
    assert_int_equal(jobs[0].status, 200);
    assert_int_equal(th_int(jobs[0].response, "acked"), 7);
    assert_int_equal(json_array_size(json_object_get(jobs[0].response,
                                                     "outcomes")),
                     4);
    assert_int_equal(last_seq(pp.p, &r), 7);
    json_decref(jobs[0].response);
    tt_push_prep_free(jobs[0].prep);

    /* a real gap: held while it may wait, 409 once it may not */
    json_decref(intents_of(&r, 1)); /* seq 8 never sent */
    tt_push_job gap = {.prep = ahead_prep(&r, 2), .may_wait = 1};
    assert_int_equal(tt_server_push(pp.p->srv, &gap, 1, TH_NOW), 0);
    assert_int_equal(gap.deferred, 1);
    gap.may_wait = 0;
    assert_int_equal(tt_server_push(pp.p->srv, &gap, 1, TH_NOW), 0);
    assert_int_equal(gap.deferred, 0);
    assert_int_equal(gap.status, 409);
    assert_string_equal(th_str(gap.response, "error"), "gap");
    assert_int_equal(th_int(gap.response, "expected"), 8);
    assert_int_equal(last_seq(pp.p, &r), 7);
    json_decref(gap.response);
    tt_push_prep_free(gap.prep);

    /* may_wait alone changes nothing for a push not sent ahead */
    char *plain = body_next(&r, 1);
    tt_push_job pj = {.prep = prepare(plain, strlen(plain)), .may_wait = 1};
    assert_int_equal(tt_server_push(pp.p->srv, &pj, 1, TH_NOW), 0);
    assert_int_equal(pj.deferred, 0);
    assert_int_equal(pj.status, 409);
    json_decref(pj.response);
    tt_push_prep_free(pj.prep);

    /* "ahead" is a boolean */
    json_t *one = intents_of(&r, 1);
    char *ot = dumps(one);
    json_decref(one);
    char *bad = fmt("{\"ahead\":1,\"intents\":%s,\"replica\":\"%s\",\"v\":1}",
                    ot, r.hex);
    tt_push_job bj = {.prep = prepare(bad, strlen(bad)), .may_wait = 1};
    assert_int_equal(tt_push_prep_ahead(bj.prep), 0);
    assert_int_equal(tt_server_push(pp.p->srv, &bj, 1, TH_NOW), 0);
    assert_int_equal(bj.status, 400);
    assert_string_equal(th_str(bj.response, "error"), "invalid");
    assert_non_null(strstr(th_str(bj.response, "message"), "ahead"));
    json_decref(bj.response);
    tt_push_prep_free(bj.prep);
    free(ot);
    free(bad);
    free(plain);
    free(b1);
    pair_close(&pp);
  }
}

static void test_envelope_key_order(void **state) {
  (void)state;
  th_rep r;
  json_t *arr;
  char *t, *b;

  th_rep_init(&r, 6);
  arr = intents_of(&r, 3);
  t = dumps(arr);
  json_decref(arr);
  b = fmt("{\"intents\":%s,\"v\":1,\"replica\":\"%s\"}", t, r.hex);
  expect(b, &r, 200, NULL);
  free(b);
  b = fmt(" \n{ \"replica\" : \"%s\" ,\n\t\"intents\" : %s , \"v\" : 1 "
          "}\r\n ",
          r.hex, t);
  expect(b, &r, 200, NULL);
  free(b);
  /* members the server does not know are ignored both ways, and an
   * "intents" that is not the envelope's is not the envelope's */
  b = fmt("{\"x\":{\"intents\":[1,2,3]},\"intents\":%s,\"y\":[{\"intents\":"
          "[]}],\"v\":1,\"replica\":\"%s\",\"intentsx\":[5]}",
          t, r.hex);
  expect(b, &r, 200, NULL);
  free(b);
  /* the key spelled with an escape is the same key */
  b = fmt("{\"v\":1,\"replica\":\"%s\",\"int\\u0065nts\":%s}", r.hex, t);
  expect(b, &r, 200, NULL);
  free(b);
  /* an "intents" key inside the intents' own values */
  free(t);
  th_rep_init(&r, 7);
  arr = json_array();
  json_array_append_new(
      arr, th_intent(&r, HLC(TH_NOW), "c", "i", 0,
                     "[{\"kind\":\"create\",\"value\":{\"intents\":[1,2,"
                     "{\"intents\":[3]}]}}]"));
  json_array_append_new(
      arr, th_intent(&r, HLC(TH_NOW) + 1, "c", "i", 1,
                     "[{\"kind\":\"set\",\"field\":\"intents\",\"value\":"
                     "[[4],{\"intents\":{\"intents\":[]}}]}]"));
  b = body_of(&r, arr);
  expect(b, &r, 200, NULL);
  free(b);
}

/* Several jobs in one group commit: the same answers whichever of them
 * come prepared. */
static void test_group_commit_mixed(void **state) {
  (void)state;
  enum { NJ = 7 };
  th_rep a, b, c;
  char *body[NJ];
  size_t len[NJ];

  th_rep_init(&a, 8);
  th_rep_init(&b, 9);
  th_rep_init(&c, 10);
  body[0] = body_next(&a, 3);
  body[1] = body_next(&b, 20);
  body[2] = body_next(&a, 4); /* continues job 0 in the same commit */
  body[3] = strdup("{\"v\":1,\"replica\":\"zz\",\"intents\":[]}");
  body[4] = body_next(&c, 2);
  th_rep fork = b;
  json_decref(intents_of(&fork, 1));
  body[5] = body_next(&fork, 1); /* a gap after job 1 */
  body[6] = strdup("{\"v\":1,"); /* not JSON */
  for (size_t i = 0; i < NJ; i++)
    len[i] = strlen(body[i]);

  for (unsigned parts = 1; parts <= 3; parts += 2) {
    /* mask bit i: job i prepared; all of them as trees first */
    static const unsigned masks[] = {0x00, 0x7f, 0x15, 0x6a, 0x01};
    char *want_store = NULL, *want[NJ];
    int want_st[NJ];
    tt_server_stats want_stats;
    for (size_t m = 0; m < sizeof masks / sizeof masks[0]; m++) {
      th_skip_unless(strcmp(th_backend(), "redis-cluster"),
                     "independent stores needed");
      th_env *e = th_env_new(NULL, parts, 0);
      tt_push_job jobs[NJ];
      json_t *trees[NJ];
      size_t nj = 0;
      memset(jobs, 0, sizeof jobs);
      for (size_t i = 0; i < NJ; i++) {
        json_t *refused;
        trees[i] = NULL;
        if (masks[m] & (1u << i)) {
          jobs[nj++].prep = prepare(body[i], len[i]);
          continue;
        }
        trees[i] = tree_of(body[i], len[i], &refused);
        if (!trees[i]) {
          json_decref(refused);
          continue; /* net/ answers it alone: not in this commit */
        }
        jobs[nj++].request = trees[i];
      }
      if (m == 0) {
        assert_int_equal(nj, NJ - 1);
        /* an all-prepared commit has the unparsable job too: compare
         * the first NJ - 1 */
      }
      push_jobs(e, jobs, nj);
      assert_int_equal(jobs[0].status, 200);
      assert_int_equal(jobs[1].status, 200);
      assert_int_equal(jobs[2].status, 200);
      assert_int_equal(jobs[3].status, 400);
      assert_int_equal(jobs[4].status, 200);
      assert_int_equal(jobs[5].status, 409);
      for (size_t i = 0; i < NJ - 1; i++) {
        if (m == 0) {
          want_st[i] = jobs[i].status;
          want[i] = canon_of(jobs[i].response);
        } else {
          char *got = canon_of(jobs[i].response);
          if (want_st[i] != jobs[i].status || strcmp(want[i], got))
            fail_msg("mask %#x job %zu: %d %.300s, as trees %d %.300s",
                     masks[m], i, jobs[i].status, got, want_st[i], want[i]);
          free(got);
        }
      }
      if (nj == NJ) {
        assert_int_equal(jobs[6].status, 400);
        assert_string_equal(th_str(jobs[6].response, "error"), "json");
      }
      for (size_t i = 0; i < nj; i++) {
        json_decref(jobs[i].response);
        tt_push_prep_free(jobs[i].prep);
      }
      for (size_t i = 0; i < NJ; i++)
        json_decref(trees[i]);

      char *st = store_text(e);
      tt_server_stats s;
      tt_server_get_stats(e->srv, &s);
      s.pulls = 0;
      assert_int_equal(s.pushes, nj);
      if (m == 0) {
        want_store = st;
        want_stats = s;
      } else {
        assert_string_equal(st, want_store);
        /* the unparsable job counts once it reaches the state machine */
        want_stats.pushes += nj - (NJ - 1);
        want_stats.bad_requests += nj - (NJ - 1);
        assert_same_stats(&s, &want_stats);
        want_stats.pushes -= nj - (NJ - 1);
        want_stats.bad_requests -= nj - (NJ - 1);
        free(st);
      }
      assert_int_equal(last_seq(e, &a), 7);
      assert_int_equal(last_seq(e, &b), 20);
      assert_int_equal(last_seq(e, &c), 2);
      th_env_free(e);
    }
    free(want_store);
    for (size_t i = 0; i < NJ - 1; i++)
      free(want[i]);
  }
  for (size_t i = 0; i < NJ; i++)
    free(body[i]);
}

/* ---- refused bodies ----------------------------------------------------- */

static void test_not_json(void **state) {
  (void)state;
  th_rep r;
  th_rep_init(&r, 11);
  expect_n("", 0, &r, 400, "json");
  expect(" ", &r, 400, "json");
  expect(" \t\r\n ", &r, 400, "json");
  expect("hello", &r, 400, "json");
  expect("{", &r, 400, "json");
  expect("{\"v\":1,", &r, 400, "json");
  expect("{\"v\":1}}", &r, 400, "json");
  expect("\"a string\"", &r, 400, "json");
  expect("42", &r, 400, "json");
  expect("null", &r, 400, "json");
  expect("[]", &r, 400, "json");
  expect("[1,2]", &r, 400, "json");
  expect("[{\"v\":1,\"intents\":[]}]", &r, 400, "json");
  expect("{\"v\":1,\"v\":1}", &r, 400, "json");
  expect_n("{\"v\":1}\0", 8, &r, 400, "json");
  expect_n("\0{\"v\":1}", 8, &r, 400, "json");
  expect("{\"v\":1,\"replica\":\"\\u0000\"}", &r, 400, "json");
  expect("{\"v\":1,\"replica\":\"\xff\"}", &r, 400, "json");
  expect("\xef\xbb\xbf{\"v\":1}", &r, 400, "json");
}

static void test_envelope(void **state) {
  (void)state;
  th_rep r;
  json_t *arr;
  char *t, *b;

  th_rep_init(&r, 12);
  arr = intents_of(&r, 2);
  t = dumps(arr);
  json_decref(arr);
  /* "v" */
  b = fmt("{\"replica\":\"%s\",\"intents\":%s}", r.hex, t);
  expect(b, &r, 400, "version");
  free(b);
  b = fmt("{\"v\":2,\"replica\":\"%s\",\"intents\":%s}", r.hex, t);
  expect(b, &r, 400, "version");
  free(b);
  b = fmt("{\"v\":\"1\",\"replica\":\"%s\",\"intents\":%s}", r.hex, t);
  expect(b, &r, 400, "version");
  free(b);
  b = fmt("{\"v\":1.0,\"replica\":\"%s\",\"intents\":%s}", r.hex, t);
  expect(b, &r, 400, "version");
  free(b);
  /* "v" wrong and the intents bad too: the version is said */
  b = fmt("{\"v\":2,\"replica\":\"%s\",\"intents\":[{}]}", r.hex);
  expect(b, &r, 400, "version");
  free(b);
  /* replica */
  b = fmt("{\"v\":1,\"intents\":%s}", t);
  expect(b, &r, 400, "invalid");
  free(b);
  b = fmt("{\"v\":1,\"replica\":\"%.31s\",\"intents\":%s}", r.hex, t);
  expect(b, &r, 400, "invalid");
  free(b);
  b = fmt("{\"v\":1,\"replica\":\"%s0\",\"intents\":%s}", r.hex, t);
  expect(b, &r, 400, "invalid");
  free(b);
  b = fmt("{\"v\":1,\"replica\":\"%.31sg\",\"intents\":%s}", r.hex, t);
  expect(b, &r, 400, "invalid");
  free(b);
  b = fmt("{\"v\":1,\"replica\":7,\"intents\":%s}", t);
  expect(b, &r, 400, "invalid");
  free(b);
  /* intents */
  b = fmt("{\"v\":1,\"replica\":\"%s\"}", r.hex);
  expect(b, &r, 400, "invalid");
  free(b);
  b = fmt("{\"v\":1,\"replica\":\"%s\",\"intents\":{\"0\":%s}}", r.hex, t);
  expect(b, &r, 400, "invalid");
  free(b);
  b = fmt("{\"v\":1,\"replica\":\"%s\",\"intents\":null}", r.hex);
  expect(b, &r, 400, "invalid");
  free(b);
  b = fmt("{\"v\":1,\"replica\":\"%s\",\"intents\":[]}", r.hex);
  expect(b, &r, 400, "invalid");
  free(b);
  b = fmt("{\"v\":1,\"replica\":\"%s\",\"intents\":[ \n ]}", r.hex);
  expect(b, &r, 400, "invalid");
  free(b);
  /* seen */
  b = fmt("{\"v\":1,\"replica\":\"%s\",\"intents\":%s,\"seen\":-1}", r.hex, t);
  expect(b, &r, 400, "invalid");
  free(b);
  b = fmt("{\"v\":1,\"replica\":\"%s\",\"intents\":%s,\"seen\":\"3\"}", r.hex,
          t);
  expect(b, &r, 400, "invalid");
  free(b);
  b = fmt("{\"v\":1,\"replica\":\"%s\",\"intents\":%s,\"seen\":0.5}", r.hex, t);
  expect(b, &r, 400, "invalid");
  free(b);
  b = fmt("{\"v\":1,\"replica\":\"%s\",\"intents\":%s,\"seen\":0}", r.hex, t);
  expect(b, &r, 200, NULL);
  free(b);
  b = fmt("{\"v\":1,\"replica\":\"%s\",\"intents\":%s,\"seen\":null}", r.hex,
          t);
  expect(b, &r, 400, "invalid");
  free(b);
  /* seen bad and the intents bad too: seen is said */
  b = fmt("{\"v\":1,\"replica\":\"%s\",\"intents\":[{}],\"seen\":-1}", r.hex);
  expect(b, &r, 400, "invalid");
  free(b);
  /* "intents" twice, whatever the two are */
  b = fmt("{\"v\":1,\"replica\":\"%s\",\"intents\":%s,\"intents\":%s}", r.hex,
          t, t);
  expect(b, &r, 400, "json");
  free(b);
  b = fmt("{\"v\":1,\"intents\":%s,\"replica\":\"%s\",\"intents\":[]}", t,
          r.hex);
  expect(b, &r, 400, "json");
  free(b);
  b = fmt("{\"v\":1,\"intents\":5,\"replica\":\"%s\",\"intents\":%s}", r.hex,
          t);
  expect(b, &r, 400, "json");
  free(b);
  b = fmt("{\"v\":1,\"int\\u0065nts\":%s,\"replica\":\"%s\",\"intents\":%s}", t,
          r.hex, t);
  expect(b, &r, 400, "json");
  free(b);
  /* trailing garbage: nothing applied */
  b = fmt("{\"v\":1,\"replica\":\"%s\",\"intents\":%s} x", r.hex, t);
  expect(b, &r, 400, "json");
  free(b);
  b = fmt("{\"v\":1,\"replica\":\"%s\",\"intents\":%s}{}", r.hex, t);
  expect(b, &r, 400, "json");
  free(b);
  b = fmt("{\"v\":1,\"replica\":\"%s\",\"intents\":%s,}", r.hex, t);
  expect(b, &r, 400, "json");
  free(b);
  /* truncated inside the intents */
  b = fmt("{\"v\":1,\"replica\":\"%s\",\"intents\":%s", r.hex, t);
  expect_n(b, strlen(b) - 5, &r, 400, "json");
  expect_n(b, strlen(b) - 1, &r, 400, "json");
  free(b);
  free(t);
}

static void test_too_many_intents(void **state) {
  (void)state;
  th_rep r;
  json_t *arr;
  char *one, *t, *b, *p;
  size_t n1, n = TT_MAX_INTENTS + 1;

  th_rep_init(&r, 13);
  arr = intents_of(&r, 1);
  one = dumps(json_array_get(arr, 0));
  json_decref(arr);
  n1 = strlen(one);
  t = malloc(n * (n1 + 1) + 3);
  assert_non_null(t);
  p = t;
  *p++ = '[';
  for (size_t i = 0; i < n; i++) {
    memcpy(p, one, n1);
    p += n1;
    *p++ = ',';
  }
  p[-1] = ']';
  *p = '\0';
  b = fmt("{\"v\":1,\"replica\":\"%s\",\"intents\":%s}", r.hex, t);
  expect(b, &r, 413, "too_big");
  free(b);
  /* over the limit and every intent bad: the count is said */
  b = fmt("{\"v\":1,\"replica\":\"%s\",\"intents\":%s}", r.hex, t);
  b = replace(b, "\"client\"", "\"klient\"");
  expect(b, &r, 413, "too_big");
  free(b);
  /* over the limit and a syntax error at the very end: json */
  b = fmt("{\"v\":1,\"replica\":\"%s\",\"intents\":%s,}", r.hex, t);
  expect(b, &r, 400, "json");
  free(b);
  /* the first intent bad, then 10000 more to be read for their syntax */
  b = fmt("{\"v\":1,\"replica\":\"%s\",\"intents\":[{\"seq\":\"x\"},%s}", r.hex,
          t + 1);
  expect(b, &r, 413, "too_big");
  free(b);
  free(t);
  free(one);
}

/* N intents of a fresh replica as a body, intent AT changed by EDIT
 * (json_t surgery) or NULL. */
static char *body_edited(uint8_t fill, size_t n, size_t at,
                         void (*edit)(json_t *in)) {
  th_rep r;
  th_rep_init(&r, fill);
  json_t *arr = intents_of(&r, n);
  if (edit)
    edit(json_array_get(arr, at));
  return body_of(&r, arr);
}

static void ed_kind(json_t *in) {
  json_t *op = json_array_get(json_object_get(in, "ops"), 0);
  json_object_set_new(op, "kind", json_string("frobnicate"));
}
static void ed_no_coll(json_t *in) { json_object_del(in, "coll"); }
static void ed_seq_str(json_t *in) {
  json_object_set_new(in, "seq", json_string("1"));
}
static void ed_hlc_neg(json_t *in) {
  json_object_set_new(in, "hlc", json_integer(-1));
}
static void ed_unknown_key(json_t *in) {
  json_object_set_new(in, "zzz", json_true());
}
static void ed_ops_str(json_t *in) {
  json_object_set_new(in, "ops", json_string("nope"));
}
static void ed_big_value(json_t *in) {
  size_t n = TT_MAX_VALUE + 10;
  char *s = malloc(n + 1);
  assert_non_null(s);
  memset(s, 'x', n);
  s[n] = '\0';
  json_t *ops =
      json_pack("[{s:s,s:{s:s}}]", "kind", "create", "value", "big", s);
  free(s);
  json_object_set_new(in, "ops", ops);
}
static void ed_many_ops(json_t *in) {
  json_t *ops = json_array();
  for (int i = 0; i <= TT_MAX_OPS; i++)
    json_array_append_new(ops, json_pack("{s:s,s:s,s:i}", "kind", "set",
                                         "field", "f", "value", i));
  json_object_set_new(in, "ops", ops);
}
static void ed_client(json_t *in) {
  json_object_set_new(in, "client",
                      json_string("a0ffffffffffffffffffffffffffffff"));
}
static void ed_seq_skip(json_t *in) {
  json_object_set_new(
      in, "seq",
      json_integer(json_integer_value(json_object_get(in, "seq")) + 1));
}
static void ed_hash(json_t *in) {
  json_object_set_new(
      in, "hash",
      json_string(
          "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"));
}
static void ed_content(json_t *in) {
  json_object_set_new(in, "id", json_string("someone-else"));
}
static void ed_prev(json_t *in) {
  json_object_set_new(
      in, "prev",
      json_string(
          "00000000000000000000000000000000000000000000000000000000000000aa"));
}

static void test_bad_intents(void **state) {
  (void)state;
  static const struct {
    void (*edit)(json_t *);
    int status;
    const char *error;
  } cases[] = {
      {ed_kind, 400, "invalid"},        {ed_no_coll, 400, "invalid"},
      {ed_seq_str, 400, "invalid"},     {ed_hlc_neg, 400, "invalid"},
      {ed_unknown_key, 400, "invalid"}, {ed_ops_str, 400, "invalid"},
      {ed_big_value, 413, "too_big"},   {ed_many_ops, 413, "too_big"},
      {ed_client, 400, "replica"},      {ed_seq_skip, 400, "invalid"},
      {ed_hash, 400, "hash"},           {ed_content, 400, "hash"},
  };
  static const size_t at[][2] = {{0, 1}, {0, 3}, {500, 501}, {500, 900}};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
    for (size_t k = 0; k < sizeof at / sizeof at[0]; k++) {
      size_t idx = at[k][0], n = at[k][1];
      if (cases[c].edit == ed_seq_skip && idx == 0) {
        idx = 1; /* the first seq may be anything above 0 for the shape */
        n = n < 2 ? 2 : n;
      }
      char *b = body_edited((uint8_t)(20 + c), n, idx, cases[c].edit);
      th_rep r;
      th_rep_init(&r, (uint8_t)(20 + c));
      expect(b, &r, cases[c].status, cases[c].error);
      free(b);
    }
  /* prev broken inside the request (not at its first intent): 409 chain */
  for (size_t k = 0; k < 2; k++) {
    th_rep r;
    th_rep_init(&r, 40);
    json_t *arr = intents_of(&r, k ? 500 : 1);
    memset(r.last, 0x77, TT_HASH_LEN); /* the next hash is right for it */
    json_t *more = intents_of(&r, k ? 400 : 2);
    json_array_extend(arr, more);
    json_decref(more);
    char *b = body_of(&r, arr);
    expect(b, &r, 409, "chain");
    free(b);
  }
  /* prev edited (hash now wrong, prev wrong): hash is found first */
  char *b = body_edited(41, 3, 1, ed_prev);
  th_rep r;
  th_rep_init(&r, 41);
  expect(b, &r, 400, "hash");
  free(b);
  /* an intent that is not an object, at 0 and at 500 */
  for (size_t k = 0; k < 2; k++) {
    th_rep_init(&r, 42);
    json_t *arr = intents_of(&r, 600);
    json_array_set_new(arr, k ? 500 : 0, json_string("intent"));
    b = body_of(&r, arr);
    expect(b, &r, 400, "invalid");
    free(b);
    th_rep_init(&r, 42);
    arr = intents_of(&r, 600);
    json_array_set_new(arr, k ? 500 : 0, json_pack("[i]", 1));
    b = body_of(&r, arr);
    expect(b, &r, 400, "invalid");
    free(b);
  }
}

/* Syntax errors come before anything an intent says. */
static void test_syntax_after_bad_intent(void **state) {
  (void)state;
  static const char *const tails[] = {
      ",]}", "]", "]}x", "],\"v\":2}", "],\"v\":1,\"v\":1}", "\xff]}"};
  for (size_t k = 0; k < 2; k++)
    for (size_t i = 0; i < sizeof tails / sizeof tails[0]; i++) {
      char *b = body_edited(50, k ? 700 : 2, k ? 500 : 0, ed_kind);
      b[strlen(b) - 2] = '\0'; /* without "]}" */
      char *c = fmt("%s%s", b, tails[i]);
      th_rep r;
      th_rep_init(&r, 50);
      expect(c, &r, 400, "json");
      free(b);
      free(c);
    }
  /* a duplicate key inside a later intent, after a bad one */
  char *b = body_edited(51, 3, 0, ed_kind);
  b = replace(b, "\"seq\":2,", "\"seq\":2,\"seq\":2,");
  th_rep r;
  th_rep_init(&r, 51);
  expect(b, &r, 400, "json");
  free(b);
  /* an integer too big, a lone surrogate and a NUL inside a later intent */
  static const char *const bad[] = {
      "\"seq\":99999999999999999999,", "\"seq\":3,\"x\":\"\\ud800\",",
      "\"seq\":3,\"x\":\"a\\u0000\",", "\"seq\":3,\"x\":1e999,"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    b = body_edited(52, 3, 0, ed_kind);
    b = replace(b, "\"seq\":3,", bad[i]);
    th_rep_init(&r, 52);
    expect(b, &r, 400, "json");
    free(b);
  }
}

/* Errors on a later line: the same line and column both ways. */
static void test_pretty_printed(void **state) {
  (void)state;
  th_rep r;
  th_rep_init(&r, 55);
  json_t *arr = intents_of(&r, 400), *env;
  env = json_pack("{s:i,s:s,s:o}", "v", 1, "replica", r.hex, "intents", arr);
  assert_non_null(env);
  char *b = json_dumps(env, JSON_INDENT(3));
  assert_non_null(b);
  json_decref(env);
  expect(b, &r, 200, NULL);
  /* a syntax error deep in intent 300 (on its own line), after intent 100
   * was made bad */
  char *c = strdup(b), *at = c;
  for (int i = 0; i < 300; i++) {
    at = strstr(at + 1, "\"hlc\"");
    assert_non_null(at);
  }
  at[1] = '\n'; /* a control character inside the key */
  at = c;
  for (int i = 0; i < 100; i++)
    at = strstr(at + 1, "\"coll\"");
  at[1] = 'k';
  expect(c, &r, 400, "json");
  free(c);
  /* the bad intent alone */
  c = strdup(b);
  at = c;
  for (int i = 0; i < 100; i++)
    at = strstr(at + 1, "\"coll\"");
  at[1] = 'k';
  expect(c, &r, 400, "invalid");
  free(c);
  /* trailing garbage on a line of its own */
  c = fmt("%s\n\n  ,\n", b);
  expect(c, &r, 400, "json");
  free(c);
  free(b);
}

/* Bodies mutated at random (a fixed seed): whatever they are, both ways
 * agree. One pair for all, so accepted ones pile up alike on both. */
static void test_mutations(void **state) {
  (void)state;
  static const char alphabet[] = "{}[]\",:\\ \n0123456789abcdefnu-+.eE\x80"
                                 "\xff";
  uint64_t x = 0x9e3779b97f4a7c15ull;
#define RND() (x ^= x << 13, x ^= x >> 7, x ^= x << 17, x)
  pp_pair pp;
  pair_open(&pp, 0);
  for (int it = 0; it < PP_MUTANTS; it++) {
    th_rep r;
    th_rep_init(&r, (uint8_t)(90 + it % 4));
    char *b = body_next(&r, 1 + RND() % 4);
    size_t len = strlen(b);
    int nm = 1 + (int)(RND() % 3);
    for (int m = 0; m < nm && len > 2; m++) {
      size_t at = RND() % len;
      switch (RND() % 4) {
      case 0: /* replace a byte */
        b[at] = alphabet[RND() % (sizeof alphabet - 1)];
        break;
      case 1: /* delete a byte */
        memmove(b + at, b + at + 1, len - at);
        len--;
        break;
      case 2: { /* insert a byte */
        char *c = fmt("%.*s%c%s", (int)at, b,
                      alphabet[RND() % (sizeof alphabet - 1)], b + at);
        free(b);
        b = c;
        len++;
        break;
      }
      default: { /* copy a span elsewhere */
        size_t from = RND() % len, n = 1 + RND() % 40;
        if (n > len - from)
          n = len - from;
        char *c = fmt("%.*s%.*s%s", (int)at, b, (int)n, b + from, b + at);
        free(b);
        b = c;
        len += n;
      }
      }
    }
    both_n(&pp, b, len, NULL, NULL);
    free(b);
  }
#undef RND
  pair_close(&pp);
}

/* The nesting limit counts from the top of the body, intents included. */
static void test_depth(void **state) {
  (void)state;
  int seen_ok = 0, seen_json = 0;
  for (int d = TT_JSON_MAX_DEPTH - 8; d <= TT_JSON_MAX_DEPTH + 2; d++) {
    th_rep r;
    th_rep_init(&r, 60);
    json_t *arr = intents_of(&r, 2);
    char *b = body_of(&r, arr);
    /* depth of the envelope, the array, the intent, "ops", the op: 5 */
    size_t k = (size_t)(d - 5);
    char *open = malloc(k + 1), *close = malloc(k + 1);
    assert_non_null(open);
    assert_non_null(close);
    memset(open, '[', k);
    memset(close, ']', k);
    open[k] = close[k] = '\0';
    char *v = fmt("\"value\":%s7%s", open, close);
    b = replace(b, "\"value\":\"x1\"", v);
    pp_pair pp;
    json_t *resp;
    pair_open(&pp, 0);
    int st = both(&pp, b, &r, &resp);
    if (st == 400 && !strcmp(th_str(resp, "error"), "json"))
      seen_json++;
    else
      seen_ok++;
    json_decref(resp);
    pair_close(&pp);
    free(open);
    free(close);
    free(v);
    free(b);
  }
  assert_true(seen_ok > 0);
  assert_true(seen_json > 0);
}

/* ---- the prep itself ---------------------------------------------------- */

static void test_prep_free_and_refused(void **state) {
  (void)state;
  th_rep r;
  char *b;
  tt_push_prep *p;

  tt_push_prep_free(NULL);
  /* freed without being pushed: valid, refused, empty */
  th_rep_init(&r, 70);
  b = body_next(&r, 30);
  tt_push_prep_free(prepare(b, strlen(b)));
  tt_push_prep_free(prepare("{\"v\":2}", 7));
  tt_push_prep_free(prepare("", 0));
  tt_push_prep_free(prepare("{", 1));

  /* a refused prep beside valid request jobs: they go on, it changes
   * nothing, and the counters count it like a request job */
  th_env *e = th_env_new(NULL, 0, 0);
  th_rep q;
  th_rep_init(&q, 71);
  char *bad = fmt("{\"v\":1,\"replica\":\"%s\",\"intents\":[{}]}", q.hex);
  json_t *ref, *good = tree_of(b, strlen(b), &ref);
  assert_non_null(good);
  tt_push_job jobs[3] = {{.prep = prepare(bad, strlen(bad))},
                         {.request = good},
                         {.prep = prepare(bad, strlen(bad))}};
  push_jobs(e, jobs, 3);
  assert_int_equal(jobs[0].status, 400);
  assert_int_equal(jobs[1].status, 200);
  assert_int_equal(jobs[2].status, 400);
  assert_string_equal(th_str(jobs[0].response, "message"),
                      th_str(jobs[2].response, "message"));
  assert_int_equal(last_seq(e, &q), 0);
  assert_int_equal(last_seq(e, &r), 30);
  tt_server_stats s;
  tt_server_get_stats(e->srv, &s);
  assert_int_equal(s.pushes, 3);
  assert_int_equal(s.bad_requests, 2);
  assert_int_equal(s.intents_applied + s.intents_merged, 30);
  for (size_t i = 0; i < 3; i++) {
    json_decref(jobs[i].response);
    tt_push_prep_free(jobs[i].prep);
  }
  json_decref(good);

  /* every refused prep: the store untouched, the replica unknown */
  static const char *const refused[] = {
      "", "x", "[]", "{\"v\":1}", "{\"v\":1,\"replica\":\"00\"}",
  };
  char *before = store_text(e);
  for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
    tt_push_job job = {.prep = prepare(refused[i], strlen(refused[i]))};
    push_jobs(e, &job, 1);
    assert_true(job.status >= 400 && job.status < 500);
    json_decref(job.response);
    tt_push_prep_free(job.prep);
  }
  p = prepare(bad, strlen(bad));
  tt_push_job job = {.prep = p};
  push_jobs(e, &job, 1);
  json_decref(job.response);
  tt_push_prep_free(p);
  char *after = store_text(e);
  assert_string_equal(before, after);
  assert_int_equal(last_seq(e, &q), 0);
  tt_server_get_stats(e->srv, &s);
  assert_int_equal(s.pushes, 3 + 6);
  assert_int_equal(s.bad_requests, 2 + 6);
  free(before);
  free(after);
  th_env_free(e);
  free(bad);
  free(b);
}

/* A run of pushes, half of them bad, on one pair: counters move the same
 * (both_n checks each step). */
static void test_stats(void **state) {
  (void)state;
  pp_pair pp;
  th_rep r;
  tt_server_stats t, p;
  pair_open(&pp, 0);
  th_rep_init(&r, 80);
  for (int i = 0; i < 6; i++) {
    char *b = body_next(&r, 5);
    if (i % 2) {
      char *c = replace(strdup(b), "\"hash\":\"", "\"hash\":\"f");
      assert_int_equal(both(&pp, c, &r, NULL), 400);
      free(c);
    }
    assert_int_equal(both(&pp, b, &r, NULL), 200);
    assert_int_equal(both(&pp, b, &r, NULL), 200); /* duplicates */
    free(b);
  }
  tt_server_get_stats(pp.t->srv, &t);
  tt_server_get_stats(pp.p->srv, &p);
  t.pulls = p.pulls = 0;
  assert_same_stats(&t, &p);
  assert_int_equal(p.pushes, 15);
  assert_int_equal(p.bad_requests, 3);
  assert_int_equal(p.intents_duplicate, 30);
  pair_close(&pp);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_valid_one_and_many),
      cmocka_unit_test(test_chain_continues),
      cmocka_unit_test(test_ahead_deferred),
      cmocka_unit_test(test_envelope_key_order),
      cmocka_unit_test(test_group_commit_mixed),
      cmocka_unit_test(test_not_json),
      cmocka_unit_test(test_envelope),
      cmocka_unit_test(test_too_many_intents),
      cmocka_unit_test(test_bad_intents),
      cmocka_unit_test(test_syntax_after_bad_intent),
      cmocka_unit_test(test_pretty_printed),
      cmocka_unit_test(test_mutations),
      cmocka_unit_test(test_depth),
      cmocka_unit_test(test_prep_free_and_refused),
      cmocka_unit_test(test_stats),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
