/* fuzz_pull.c — a pull request body against the reconciler on a real LMDB
 * store holding the built state of world.h (two partitions, page size 3).
 *
 * Properties, for every input:
 *  - never a crash, a leak or undefined behaviour, and never a write;
 *  - the answer is 200 or 400 with a {"v":1,...} body; a 400 names its
 *    error;
 *  - a 200 has a cursor of one integer per partition, never behind the
 *    request's, a boolean "more", at most "limit" changes, each naming a
 *    valid document of a real partition at a version past the request's
 *    cursor and within the new one;
 *  - following "more" pages ends, with the cursor only moving forward. */
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

/* Checks a 200 answer to a request whose cursor was REQ_CUR (NULL: none
 * or empty) and limit LIMIT (0: none). Copies the new cursor to CUR. */
static void check_ok(const json_t *resp, const json_t *req_cur, size_t limit,
                     uint64_t cur[W_PARTS]) {
  const json_t *c = json_object_get(resp, "cursor");
  const json_t *ch = json_object_get(resp, "changes");
  const json_t *more = json_object_get(resp, "more");
  size_t i;
  const json_t *e;

  FF_CHECK(json_is_array(c) && json_array_size(c) == W_PARTS,
           "cursor of %zu entries", json_array_size(c));
  FF_CHECK(json_is_boolean(more), "no boolean more");
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
    if (json_array_size(req_cur) == W_PARTS)
      FF_CHECK(cur[p] >= (uint64_t)json_integer_value(
                             json_array_get(req_cur, p)),
               "cursor[%u] moved back", p);
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
    FF_CHECK(json_integer_value(p) ==
                 (json_int_t)tt_server_partition_of(coll, id, W_PARTS),
             "change %zu: partition is not the document's", i);
    FF_CHECK(json_is_integer(ver) && json_integer_value(ver) > 0 &&
                 (uint64_t)json_integer_value(ver) <=
                     cur[json_integer_value(p)],
             "change %zu: version beyond the new cursor", i);
    if (json_array_size(req_cur) == W_PARTS)
      FF_CHECK(json_integer_value(ver) >
                   json_integer_value(
                       json_array_get(req_cur, json_integer_value(p))),
               "change %zu: not newer than the cursor", i);
    if (json_is_true(json_object_get(e, "deleted")))
      FF_CHECK(!json_object_get(e, "set"), "change %zu: deleted with set", i);
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
    uint64_t cur[W_PARTS];
    check_ok(resp, json_object_get(req, "cursor"), limit, cur);
    /* Follow the pages: each must be accepted and the walk must end. */
    for (int page = 0; json_is_true(json_object_get(resp, "more")); page++) {
      json_t *next = json_deep_copy(req), *c = json_array();
      FF_CHECK(page < 64, "more never ends");
      for (unsigned p = 0; p < W_PARTS; p++)
        json_array_append_new(c, json_integer((json_int_t)cur[p]));
      json_object_set_new(next, "cursor", c);
      json_decref(resp);
      resp = NULL;
      rc = tt_server_pull(W.srv, next, &status, &resp);
      FF_CHECK(rc == 0 && status == 200, "page %d after more: %d", page,
               status);
      check_ok(resp, json_object_get(next, "cursor"), limit, cur);
      json_decref(next);
    }
  }
  json_decref(resp);
  json_decref(req);
  FF_CHECK(ff_print_eq(ff_fingerprint(W.st), base), "a pull wrote");
  return 0;
}
