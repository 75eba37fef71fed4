/* fuzz_pull.c — a pull request body against the reconciler on a real LMDB
 * store holding the built state of world.h (two partitions, page size 3).
 *
 * Properties, for every input:
 *  - never a crash, a leak or undefined behaviour, and never a write;
 *  - the answer is 200 or 400 with a {"v":1,...} body; a 400 names its
 *    error;
 *  - a 200 has a cursor of one integer per partition, never behind the
 *    request's, a boolean "more" with a "resume" exactly when more, at
 *    most "limit" changes in commit order, each naming a valid document
 *    of its own partition at a version past the position asked from and
 *    within the new one;
 *  - following "more" pages (cursor + resume) ends, moving forward. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "world.h"

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
  W.st = ff_store_new(dir, "pull");
  atexit(cleanup);
  w_build(&W);
  base = ff_fingerprint(W.st);
  ready = 1;
}

/* The integer at I of array A when A has W_PARTS entries; else DFLT. */
static uint64_t at(const json_t *a, unsigned i, uint64_t dflt) {
  if (json_array_size(a) != W_PARTS)
    return dflt;
  return (uint64_t)json_integer_value(json_array_get(a, i));
}

/* Checks a 200 answer to REQ (limit LIMIT, 0: none). Copies the new
 * cursor and resume to CUR and RES. */
static void check_ok(const json_t *resp, const json_t *req, size_t limit,
                     uint64_t cur[W_PARTS], uint64_t res[W_PARTS]) {
  const json_t *c = json_object_get(resp, "cursor");
  const json_t *r = json_object_get(resp, "resume");
  const json_t *ch = json_object_get(resp, "changes");
  const json_t *more = json_object_get(resp, "more");
  const json_t *req_cur = json_object_get(req, "cursor");
  const json_t *req_res = json_object_get(req, "resume");
  uint64_t last[W_PARTS] = {0};
  unsigned last_p = 0;
  size_t i;
  const json_t *e;

  FF_CHECK(json_is_array(c) && json_array_size(c) == W_PARTS,
           "cursor of %zu entries", json_array_size(c));
  FF_CHECK(json_is_boolean(more), "no boolean more");
  FF_CHECK(json_is_true(more) ? json_array_size(r) == W_PARTS : r == NULL,
           "resume must come with more, and only with it");
  FF_CHECK(json_is_array(ch), "no changes array");
  FF_CHECK(json_array_size(ch) <= 3, "%zu changes over the page size",
           json_array_size(ch));
  if (limit)
    FF_CHECK(json_array_size(ch) <= limit, "%zu changes over limit %zu",
             json_array_size(ch), limit);
  for (unsigned p = 0; p < W_PARTS; p++) {
    const json_t *v = json_array_get(c, p);
    FF_CHECK(json_is_integer(v) && json_integer_value(v) >= 0,
             "cursor[%u] not a count", p);
    cur[p] = (uint64_t)json_integer_value(v);
    res[p] = r ? (uint64_t)json_integer_value(json_array_get(r, p)) : cur[p];
    FF_CHECK(res[p] >= cur[p], "resume[%u] below cursor", p);
    FF_CHECK(cur[p] >= at(req_cur, p, 0), "cursor[%u] moved back", p);
    FF_CHECK(res[p] >= at(req_res, p, 0), "resume[%u] moved back", p);
  }
  json_array_foreach(ch, i, e) {
    const json_t *p = json_object_get(e, "p");
    const json_t *ver = json_object_get(e, "version");
    const char *coll = json_string_value(json_object_get(e, "coll"));
    const char *id = json_string_value(json_object_get(e, "id"));
    FF_CHECK(coll && tt_name_valid(coll) && id && tt_name_valid(id),
             "change %zu: bad names", i);
    FF_CHECK(json_is_integer(p) && json_integer_value(p) >= 0 &&
                 json_integer_value(p) < W_PARTS,
             "change %zu: bad partition", i);
    unsigned pp = (unsigned)json_integer_value(p);
    FF_CHECK(pp == tt_server_partition_of(coll, id, W_PARTS),
             "change %zu: partition is not the document's", i);
    FF_CHECK(json_is_integer(ver) && json_integer_value(ver) > 0,
             "change %zu: no version", i);
    uint64_t v = (uint64_t)json_integer_value(ver);
    FF_CHECK(v <= res[pp], "change %zu: version beyond the new position", i);
    FF_CHECK(v > at(req_res, pp, at(req_cur, pp, 0)),
             "change %zu: not past the position asked from", i);
    /* Commit order per partition, partitions in order. */
    FF_CHECK(pp >= last_p && v > last[pp], "change %zu out of order", i);
    last_p = pp;
    last[pp] = v;
    if (json_is_true(json_object_get(e, "deleted")))
      FF_CHECK(!json_object_get(e, "set") && !json_object_get(e, "unset"),
               "change %zu: deleted with fields", i);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ff_expect expect = ff_expectation();
  json_t *req, *resp = NULL;
  int status = 0, rc;

  if (!ready)
    init();
  req = ff_json(data, size);
  if (!req) {
    FF_CHECK(expect != FF_EXPECT_OK, "an ok- seed is not JSON");
    return 0;
  }
  rc = tt_server_pull(W.srv, req, &status, &resp);
  FF_CHECK(rc == 0, "tt_server_pull: %s", tether_err_name(rc));
  FF_CHECK(json_is_object(resp) &&
               json_integer_value(json_object_get(resp, "v")) == 1,
           "answer without {\"v\":1}");
  FF_CHECK(status == 200 || status == 400, "status %d", status);
  if (expect == FF_EXPECT_OK)
    FF_CHECK(status == 200, "a valid pull was refused: %s",
             json_string_value(json_object_get(resp, "message")));
  if (expect == FF_EXPECT_BAD)
    FF_CHECK(status == 400, "an invalid pull was accepted");
  if (status == 400) {
    FF_CHECK(json_is_string(json_object_get(resp, "error")),
             "400 without an error code");
  } else {
    const json_t *lim = json_object_get(req, "limit");
    size_t limit = json_is_integer(lim) && json_integer_value(lim) > 0
                       ? (size_t)json_integer_value(lim)
                       : 0;
    uint64_t cur[W_PARTS], res[W_PARTS];
    check_ok(resp, req, limit, cur, res);
    /* Follow the pages: each must be accepted and the walk must end. */
    for (int page = 0; json_is_true(json_object_get(resp, "more")); page++) {
      json_t *next = json_deep_copy(req), *c = json_array(), *r = json_array();
      FF_CHECK(page < 64, "more never ends");
      for (unsigned p = 0; p < W_PARTS; p++) {
        json_array_append_new(c, json_integer((json_int_t)cur[p]));
        json_array_append_new(r, json_integer((json_int_t)res[p]));
      }
      json_object_set_new(next, "cursor", c);
      json_object_set_new(next, "resume", r);
      json_decref(resp);
      resp = NULL;
      rc = tt_server_pull(W.srv, next, &status, &resp);
      FF_CHECK(rc == 0 && status == 200, "page %d after more: %d", page,
               status);
      check_ok(resp, next, limit, cur, res);
      json_decref(next);
    }
  }
  json_decref(resp);
  json_decref(req);
  FF_CHECK(ff_print_eq(ff_fingerprint(W.st), base), "a pull wrote");
  return 0;
}
