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
 *    outcomes marked "duplicate" and changes nothing (G2 exactly-once).
 * A top-level JSON array is a group commit: each element is one job.
 *
 * Mutated bytes almost never carry a valid hash, so each input whose
 * intents parse but hash wrong is run a second time with its hashes (and
 * the prev links inside the request) recomputed: that reaches the merge
 * engine with arbitrary ops. Every run starts from the same built state. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "world.h"

#define MAX_JOBS 8

static w_world W;
static char dir[64];
static ff_print base;
static int ready;

static void cleanup(void) {
  tt_server_close(W.srv);
  tt_policy_free(W.pol);
  tt_store_close(W.st);
  ff_rmrf(dir);
}

static void init(void) {
  W.st = ff_store_new(dir, "push");
  atexit(cleanup);
  w_build(&W);
  base = ff_fingerprint(W.st);
  ready = 1;
}

/* Back to the built state if the last run changed the store. */
static void restore(void) {
  ff_print now = ff_fingerprint(W.st);
  if (ff_print_eq(now, base))
    return;
  w_reset(&W);
  now = ff_fingerprint(W.st);
  if (!ff_print_eq(now, base))
    FF_FAIL("the built state is not deterministic");
}

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  json_t *body, *fixed;
  ff_expect expect = ff_expectation();

  if (!ready)
    init();
  body = ff_json(data, size);
  if (!body) {
    /* Not JSON: net/ answers 400 before the reconciler sees it. */
    FF_CHECK(expect != FF_EXPECT_OK, "an ok- seed is not JSON");
    return 0;
  }
  check_body(body, expect);
  fixed = fixed_copy(body);
  if (fixed) {
    check_body(fixed, FF_EXPECT_NONE);
    json_decref(fixed);
  }
  json_decref(body);
  return 0;
}
