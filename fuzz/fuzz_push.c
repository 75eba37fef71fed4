/* fuzz_push.c — a push request body against the reconciler on a real LMDB
 * store (world.h), the way POST /v1/push hands it over.
 *
 * Properties, for every input:
 *  - never a crash, a leak or undefined behaviour;
 *  - every answer has a known status and a {"v":1,...} body; an error body
 *    names its error; a 200 has one outcome per intent, in order;
 *  - an input answered 4xx changes nothing in the store (whole-store
 *    fingerprint before and after);
 *  - a request answered 200, pushed again, is answered 200 with the same
 *    outcomes marked "duplicate" and changes nothing (G2 exactly-once);
 *  - the body read by tt_server_push_prepare (job.prep, what net/ does)
 *    gets the answer it gets parsed as net/ parsed it before (the checks
 *    of tt_codec_parse, then job.request): the same status and body, and
 *    the same store afterwards (a second store, built the same way).
 * A top-level JSON array is a group commit: each element is one job.
 *
 * Mutated bytes almost never carry a valid hash, so each input whose
 * intents parse but hash wrong is run a second time with its hashes (and
 * the prev links inside the request) recomputed: that reaches the merge
 * engine with arbitrary ops. Every run starts from the same built state. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "fuzz_common.h"
#include "world.h"

#define MAX_JOBS 8

static w_world W, W2; /* W2: the prepared side of compare_paths */
static char dir[64], dir2[64];
static ff_print base;
static int ready;

static void cleanup(void) {
  tt_server_close(W.srv);
  tt_policy_free(W.pol);
  tt_store_close(W.st);
  ff_rmrf(dir);
  tt_server_close(W2.srv);
  tt_policy_free(W2.pol);
  tt_store_close(W2.st);
  ff_rmrf(dir2);
}

static void init(void) {
  W.st = ff_store_new(dir, "push");
  atexit(cleanup);
  w_build(&W);
  base = ff_fingerprint(W.st);
  W2.st = ff_store_new(dir2, "push2");
  w_build(&W2);
  if (!ff_print_eq(ff_fingerprint(W2.st), base))
    FF_FAIL("the built state is not deterministic");
  ready = 1;
}

/* Back to the built state if the last run changed the store of w. */
static void restore_world(w_world *w) {
  ff_print now = ff_fingerprint(w->st);
  if (ff_print_eq(now, base))
    return;
  w_reset(w);
  now = ff_fingerprint(w->st);
  if (!ff_print_eq(now, base))
    FF_FAIL("the built state is not deterministic");
}

static void restore(void) { restore_world(&W); }

static int known_status(int st) {
  switch (st) {
  case 200:
  case 400:
  case 409:
  case 413:
  case 500:
  case 503:
  case 507:
    return 1;
  default:
    return 0;
  }
}

static int known_outcome(const char *o) {
  static const char *const names[] = {"applied", "merged", "conflict",
                                      "rejected", "duplicate"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (o && !strcmp(o, names[i]))
      return 1;
  return 0;
}

static char *dump(const json_t *j) {
  char *s = j ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
  return s ? s : strdup("(null)");
}

static void check_answer(const json_t *req, int status, const json_t *resp) {
  const json_t *v = json_object_get(resp, "v");
  if (!known_status(status))
    FF_FAIL("unexpected status %d", status);
  if (!json_is_object(resp) || !json_is_integer(v) ||
      json_integer_value(v) != 1)
    FF_FAIL("status %d with a body that is not {\"v\":1,...}", status);
  if (status != 200) {
    FF_CHECK(json_is_string(json_object_get(resp, "error")),
             "status %d without an error code", status);
    return;
  }
  const json_t *outs = json_object_get(resp, "outcomes");
  const json_t *ins = json_object_get(req, "intents");
  const json_t *acked = json_object_get(resp, "acked");
  FF_CHECK(json_is_integer(acked) && json_integer_value(acked) >= 0,
           "200 without acked");
  FF_CHECK(json_is_array(outs) && json_is_array(ins) &&
               json_array_size(outs) == json_array_size(ins),
           "200 with %zu outcomes for %zu intents", json_array_size(outs),
           json_array_size(ins));
  for (size_t i = 0; i < json_array_size(outs); i++) {
    const json_t *o = json_array_get(outs, i);
    const json_t *in = json_array_get(ins, i);
    const char *name = json_string_value(json_object_get(o, "outcome"));
    FF_CHECK(known_outcome(name), "outcome %zu: unknown kind", i);
    FF_CHECK(json_equal(json_object_get(o, "seq"), json_object_get(in, "seq")),
             "outcome %zu is not for intent %zu", i, i);
    FF_CHECK(json_integer_value(json_object_get(o, "seq")) <=
                 json_integer_value(acked),
             "outcome %zu beyond acked", i);
  }
}

/* Runs BODY as one job, or as a group commit when it is an array of 1 to
 * MAX_JOBS elements. Returns the number of jobs; fills STATUS/RESP. */
static size_t run(const json_t *body, int *status, json_t **resp) {
  tt_push_job jobs[MAX_JOBS];
  size_t n = 1;
  int rc;

  memset(jobs, 0, sizeof jobs);
  if (json_is_array(body) && json_array_size(body) >= 1 &&
      json_array_size(body) <= MAX_JOBS) {
    n = json_array_size(body);
    for (size_t i = 0; i < n; i++)
      jobs[i].request = json_array_get(body, i);
  } else {
    jobs[0].request = body;
  }
  rc = tt_server_push(W.srv, jobs, n, W_NOW);
  if (rc)
    FF_FAIL("tt_server_push failed on a healthy store: %s",
            tether_err_name(rc));
  for (size_t i = 0; i < n; i++) {
    FF_CHECK(jobs[i].response != NULL, "job %zu without a response", i);
    check_answer(jobs[i].request, jobs[i].status, jobs[i].response);
    status[i] = jobs[i].status;
    resp[i] = jobs[i].response;
  }
  return n;
}

static void free_resps(json_t **resp, size_t n) {
  for (size_t i = 0; i < n; i++)
    json_decref(resp[i]);
}

/* Outcome O without its "duplicate" key, as a new reference. */
static json_t *strip_dup(const json_t *o) {
  json_t *c = json_deep_copy(o);
  json_object_del(c, "duplicate");
  return c;
}

/* One whole check from the built state; EXPECT applies to this body. */
static void check_body(const json_t *body, ff_expect expect) {
  int st[MAX_JOBS], st2[MAX_JOBS];
  json_t *resp[MAX_JOBS], *resp2[MAX_JOBS];
  size_t n, n2, nok = 0;
  ff_print after, again;

  n = run(body, st, resp);
  for (size_t i = 0; i < n; i++)
    nok += st[i] == 200;
  after = ff_fingerprint(W.st);
  if (expect == FF_EXPECT_OK && nok != n) {
    char *s = dump(resp[nok ? n - 1 : 0]);
    FF_FAIL("a valid push was refused (%d): %s", st[0], s);
  }
  if (expect == FF_EXPECT_BAD && nok)
    FF_FAIL("an invalid push was accepted");
  if (nok == 0 && !ff_print_eq(after, base)) {
    char *s = dump(resp[0]);
    FF_FAIL("a push answered %d changed the store: %s", st[0], s);
  }
  if (n == 1 && st[0] == 200) {
    /* Exactly once: the same request again is all duplicates. */
    n2 = run(body, st2, resp2);
    FF_CHECK(n2 == 1 && st2[0] == 200, "a replayed push got %d", st2[0]);
    again = ff_fingerprint(W.st);
    FF_CHECK(ff_print_eq(again, after), "a replayed push changed the store");
    const json_t *o1 = json_object_get(resp[0], "outcomes");
    const json_t *o2 = json_object_get(resp2[0], "outcomes");
    for (size_t i = 0; i < json_array_size(o1); i++) {
      const json_t *b = json_array_get(o2, i);
      FF_CHECK(json_is_true(json_object_get(b, "duplicate")),
               "replayed intent %zu not reported as a duplicate", i);
      json_t *x = strip_dup(json_array_get(o1, i)), *y = strip_dup(b);
      /* Pruned outcomes are answered {"outcome":"duplicate"}; anything
       * the first answer reported in full must come back identical. */
      if (strcmp(json_string_value(json_object_get(x, "outcome")),
                 "duplicate") &&
          !json_equal(x, y)) {
        char *sx = dump(x), *sy = dump(y);
        FF_FAIL("replayed intent %zu: outcome %s then %s", i, sx, sy);
      }
      json_decref(x);
      json_decref(y);
    }
    FF_CHECK(json_equal(json_object_get(resp[0], "acked"),
                        json_object_get(resp2[0], "acked")),
             "a replayed push moved acked");
    free_resps(resp2, n2);
  }
  free_resps(resp, n);
  restore();
}

/* Recomputes the hashes (and in-request prev links) of JOB's intents.
 * Returns 1 if anything changed. */
static int fix_job(json_t *job) {
  json_t *ins = json_object_get(job, "intents");
  uint8_t prev[TT_HASH_LEN];
  char hex[2 * TT_HASH_LEN + 1], err[200];
  int have_prev = 0, changed = 0;

  for (size_t i = 0; i < json_array_size(ins); i++) {
    json_t *ij = json_array_get(ins, i);
    tt_intent in;
    uint8_t h[TT_HASH_LEN];
    if (!json_is_object(ij))
      return changed;
    if (have_prev) {
      tt_hex_encode(prev, TT_HASH_LEN, hex);
      const char *old = json_string_value(json_object_get(ij, "prev"));
      if (!old || strcmp(old, hex)) {
        json_object_set_new(ij, "prev", json_string(hex));
        changed = 1;
      }
    }
    if (tt_intent_from_json(ij, &in, err, sizeof err))
      return changed;
    if (tt_intent_compute_hash(&in, h)) {
      tt_intent_clear(&in);
      return changed;
    }
    if (memcmp(h, in.hash, TT_HASH_LEN)) {
      tt_hex_encode(h, TT_HASH_LEN, hex);
      json_object_set_new(ij, "hash", json_string(hex));
      changed = 1;
    }
    tt_intent_clear(&in);
    memcpy(prev, h, TT_HASH_LEN);
    have_prev = 1;
  }
  return changed;
}

static json_t *fixed_copy(const json_t *body) {
  json_t *c = json_deep_copy(body);
  int changed = 0;
  if (!c)
    return NULL;
  if (json_is_array(c)) {
    for (size_t i = 0; i < json_array_size(c) && i < MAX_JOBS; i++)
      changed |= fix_job(json_array_get(c, i));
  } else {
    changed = fix_job(c);
  }
  if (!changed) {
    json_decref(c);
    return NULL;
  }
  return c;
}

/* ---- the prepared path against the tree path ---------------------------- */

static json_t *json_error_body(const char *msg) {
  json_t *b =
      json_pack("{s:i,s:s,s:s}", "v", 1, "error", "json", "message", msg);
  if (!b)
    FF_FAIL("out of memory");
  return b;
}

/* What net/codec.c's tt_codec_parse did with a push body (this target does
 * not link net/: the same checks): the tree, or NULL and *REFUSED set to
 * the 400 "json" answer net/ gave without the reconciler. */
static json_t *tree_of(const char *text, size_t len, json_t **refused) {
  tt_json_error err;
  json_t *v = NULL;
  char msg[256];
  *refused = NULL;
  if (len == 0) {
    *refused = json_error_body("empty body, expected a JSON object");
    return NULL;
  }
  int rc = tt_json_parse(text, len, TT_JSON_REJECT_DUPLICATES, &v, &err);
  if (rc) {
    FF_CHECK(rc == TETHER_EJSON, "tt_json_parse: %s", tether_err_name(rc));
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

/* The bodies TEXT[0..N) (N <= MAX_JOBS) as one group commit, both ways:
 * parsed as net/ parsed them and pushed as job.request on W (a body that
 * does not parse answered alone, as net/ answered it), and prepared and
 * pushed as job.prep on W2. Every job must get the same status and body,
 * and the two stores must be alike afterwards. Both are back to the built
 * state after. */
static void compare_paths(const char *const *text, const size_t *len,
                          size_t n) {
  tt_push_job tj[MAX_JOBS], pj[MAX_JOBS];
  json_t *tree[MAX_JOBS], *refused[MAX_JOBS];
  size_t nt = 0;
  int rc;

  memset(tj, 0, sizeof tj);
  memset(pj, 0, sizeof pj);
  for (size_t i = 0; i < n; i++) {
    tree[i] = tree_of(text[i], len[i], &refused[i]);
    if (tree[i])
      tj[nt++].request = tree[i];
    /* an exact-size copy: ASan sees a read past the body */
    char *c = malloc(len[i] ? len[i] : 1);
    if (!c)
      FF_FAIL("out of memory");
    memcpy(c, text[i], len[i]);
    rc = tt_server_push_prepare(c, len[i], &pj[i].prep);
    free(c);
    FF_CHECK(rc == 0 && pj[i].prep, "tt_server_push_prepare: %s",
             tether_err_name(rc));
  }
  if (nt) {
    rc = tt_server_push(W.srv, tj, nt, W_NOW);
    FF_CHECK(rc == 0, "tt_server_push (trees): %s", tether_err_name(rc));
  }
  rc = tt_server_push(W2.srv, pj, n, W_NOW);
  FF_CHECK(rc == 0, "tt_server_push (prepared): %s", tether_err_name(rc));
  for (size_t i = 0, k = 0; i < n; i++) {
    int st = tree[i] ? tj[k].status : 400;
    const json_t *resp = tree[i] ? tj[k++].response : refused[i];
    if (st != pj[i].status || !json_equal(resp, pj[i].response)) {
      char *a = dump(resp), *b = dump(pj[i].response);
      FF_FAIL("job %zu of %zu: as a tree %d %s, prepared %d %s", i, n, st, a,
              pj[i].status, b);
    }
  }
  FF_CHECK(ff_print_eq(ff_fingerprint(W.st), ff_fingerprint(W2.st)),
           "the prepared path left another store than the tree path");
  for (size_t i = 0; i < nt; i++)
    json_decref(tj[i].response);
  for (size_t i = 0; i < n; i++) {
    json_decref(tree[i]);
    json_decref(refused[i]);
    json_decref(pj[i].response);
    tt_push_prep_free(pj[i].prep);
  }
  restore_world(&W);
  restore_world(&W2);
}

/* compare_paths over BODY re-encoded: each job of a group commit (an
 * array of 1 to MAX_JOBS elements, as run() reads it), or BODY alone. */
static void compare_json(const json_t *body) {
  char *text[MAX_JOBS] = {0};
  size_t len[MAX_JOBS] = {0}, n = 1;
  int group = json_is_array(body) && json_array_size(body) >= 1 &&
              json_array_size(body) <= MAX_JOBS;
  if (group)
    n = json_array_size(body);
  for (size_t i = 0; i < n; i++) {
    text[i] = json_dumps(group ? json_array_get(body, i) : body,
                         JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text[i])
      FF_FAIL("out of memory");
    len[i] = strlen(text[i]);
  }
  compare_paths((const char *const *)text, len, n);
  for (size_t i = 0; i < n; i++)
    free(text[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  json_t *body, *fixed;
  ff_expect expect = ff_expectation();

  if (!ready)
    init();
  body = ff_json(data, size);
  if (!json_is_array(body)) {
    /* the input itself, as net/ would get it (JSON or not) */
    const char *text = (const char *)data;
    compare_paths(&text, &size, 1);
  }
  if (!body) {
    /* Not JSON: net/ answers 400 before the reconciler sees it. */
    FF_CHECK(expect != FF_EXPECT_OK, "an ok- seed is not JSON");
    return 0;
  }
  check_body(body, expect);
  if (json_is_array(body))
    compare_json(body);
  fixed = fixed_copy(body);
  if (fixed) {
    check_body(fixed, FF_EXPECT_NONE);
    compare_json(fixed);
    json_decref(fixed);
  }
  json_decref(body);
  return 0;
}
