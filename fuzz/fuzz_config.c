/* fuzz_config.c — bytes -> tt_policy_parse (the server's policy config).
 *
 * Properties: never a crash, leak or UB; a refusal is ECONFIG or EJSON
 * with a reason and no table; an accepted table answers every lookup with
 * exactly what the text declared (field policy, else the collection's,
 * else lww), and unknown names fall back to lww. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/policy.h"
#include "core/util.h"
#include "fuzz_common.h"

static tt_policy named(const json_t *v) {
  tt_policy p = TT_POLICY_LWW;
  if (tt_policy_parse_name(json_string_value(v), &p))
    FF_FAIL("accepted an unknown policy name");
  return p;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ff_expect expect = ff_expectation();
  tt_policy_table *t = (tt_policy_table *)&t; /* must be reset to NULL */
  char err[256];
  int rc;

  memset(err, 'x', sizeof err);
  err[sizeof err - 1] = 0;
  rc = tt_policy_parse((const char *)data, size, &t, err, sizeof err);
  if (rc) {
    FF_CHECK(expect != FF_EXPECT_OK, "valid config refused: %s", err);
    FF_CHECK(rc == TETHER_ECONFIG || rc == TETHER_EJSON, "error %s",
             tether_err_name(rc));
    FF_CHECK(t == NULL, "refused config left a table");
    FF_CHECK(err[0] && strncmp(err, "xxxx", 4), "refusal without reason");
    return 0;
  }
  FF_CHECK(expect != FF_EXPECT_BAD, "invalid config accepted");
  FF_CHECK(t != NULL, "accepted config without a table");
  /* Longer than any valid name: it cannot have been declared. */
  char nope[TT_MAX_NAME + 2];
  memset(nope, 'z', sizeof nope - 1);
  nope[sizeof nope - 1] = 0;
  FF_CHECK(tt_policy_lookup(t, nope, "f") ==
               TT_POLICY_LWW,
           "unknown collection is not lww");
  FF_CHECK(tt_policy_lookup(t, NULL, NULL) == TT_POLICY_LWW, "NULL coll");

  /* Every declaration must be found again. The text parsed, so JSON
   * parses it too (without the NUL-in-string extension). */
  json_t *root = size ? json_loadb((const char *)data, size, 0, NULL) : NULL;
  const json_t *colls = json_object_get(root, "collections");
  const char *cname;
  json_t *c;
  json_object_foreach((json_t *)colls, cname, c) {
    const json_t *cp = json_object_get(c, "policy");
    tt_policy want_c = cp ? named(cp) : TT_POLICY_LWW;
    const char *fname;
    json_t *f;
    FF_CHECK(tt_policy_lookup(t, cname, NULL) == want_c,
             "collection %s: wrong policy", cname);
    FF_CHECK(tt_policy_lookup(t, cname, nope) == want_c,
             "collection %s: unlisted field does not fall back", cname);
    json_object_foreach(json_object_get(c, "fields"), fname, f) {
      tt_policy want_f = named(json_object_get(f, "policy"));
      FF_CHECK(tt_policy_lookup(t, cname, fname) == want_f,
               "%s.%s: wrong policy", cname, fname);
    }
  }
  json_decref(root);
  for (int p = 0; p < TT_POLICY__COUNT; p++) {
    tt_policy back;
    FF_CHECK(tt_policy_parse_name(tt_policy_name((tt_policy)p), &back) == 0 &&
                 back == (tt_policy)p,
             "policy name round trip");
  }
  tt_policy_free(t);
  return 0;
}
