/* fuzz_intent.c — JSON text -> tt_intent_from_json, and the same text
 * -> tt_intent_from_canonical (its fast path) checked against it.
 *
 * Properties: never a crash, leak or UB; a refusal comes with a reason;
 * an accepted intent respects the limits, and its wire form
 * (tt_intent_to_json) parses again to the same intent: same canonical
 * JSON, same hash, and the deep copy is the same too. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/intent.h"
#include "core/json.h"
#include "core/util.h"
#include "fuzz_common.h"

static char *canon_of(const tt_intent *in) {
  json_t *j = tt_intent_to_json(in, 1);
  char *s;
  FF_CHECK(j != NULL, "to_json failed");
  s = tt_canon(j);
  FF_CHECK(s != NULL, "canon failed");
  json_decref(j);
  return s;
}

static void check_limits(const tt_intent *in) {
  FF_CHECK(in->seq >= 1, "seq 0 accepted");
  FF_CHECK(tt_name_valid(in->coll) && tt_name_valid(in->id), "bad name");
  FF_CHECK(in->nops >= 1 && in->nops <= TT_MAX_OPS, "%zu ops", in->nops);
  FF_CHECK(!in->label || strlen(in->label) <= TT_MAX_LABEL, "long label");
  for (size_t i = 0; i < in->nops; i++) {
    const tt_op *op = &in->ops[i];
    size_t len = 0;
    FF_CHECK(op->kind < TT_OP__COUNT, "op %zu kind", i);
    if (op->field)
      FF_CHECK(tt_name_valid(op->field), "op %zu field", i);
    if (op->kind == TT_OP_INCR)
      FF_CHECK(json_is_integer(op->value), "incr without integer");
    if (op->kind == TT_OP_CREATE)
      FF_CHECK(json_is_object(op->value), "create without object");
    if (op->kind == TT_OP_RESOLVE)
      FF_CHECK(op->conflict && op->field, "resolve without conflict/field");
    if (op->value)
      FF_CHECK(tt_canon_len(op->value, TT_MAX_VALUE, &len) == 0,
               "op %zu value over the limit", i);
  }
}

/* tt_intent_from_canonical is a fast path of the general reader: whatever
 * start of the input it takes must be canonical text that the general
 * reader takes as the same intent. */
static void check_canonical_reader(const uint8_t *data, size_t size) {
  tt_intent fast, slow;
  size_t used = 0;
  json_t *j = NULL;
  int rc = tt_intent_from_canonical((const char *)data, size,
                                    TT_JSON_REJECT_DUPLICATES, 3, &fast, &used);
  FF_CHECK(rc == 0 || rc == 1 || rc == TETHER_ENOMEM, "canonical reader: %d",
           rc);
  if (rc) {
    FF_CHECK(fast.ops == NULL && fast.coll == NULL && fast.nops == 0,
             "a text the canonical reader left is not cleared");
    return;
  }
  FF_CHECK(used <= size, "read past the input");
  /* Read the general way at the same level (two values around it, as a
   * push body's element has), so depth limits count the same. */
  size_t plen = 0;
  int canonical = 0;
  FF_CHECK(tt_json_parse_prefix((const char *)data, used,
                                TT_JSON_REJECT_DUPLICATES, 2, &j, &plen,
                                &canonical) == 0 &&
               plen == used && canonical,
           "canonical reader took text the parser refuses");
  char *c = tt_canon(j);
  FF_CHECK(c && strlen(c) == used && memcmp(c, data, used) == 0,
           "canonical reader took text that is not canonical");
  free(c);
  FF_CHECK(tt_intent_from_json_sized(j, used, &slow, NULL, 0) == 0,
           "canonical reader took an intent the general reader refuses");
  json_decref(j);
  char *a = canon_of(&fast), *b = canon_of(&slow);
  FF_CHECK(!strcmp(a, b), "canonical reader differs:\n%s\n%s", a, b);
  free(a);
  free(b);
  tt_intent_clear(&fast);
  tt_intent_clear(&slow);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ff_expect expect = ff_expectation();
  check_canonical_reader(data, size);
  json_t *j = ff_json(data, size);
  tt_intent in, again, copy;
  char err[256];
  int rc;

  if (!j) {
    FF_CHECK(expect != FF_EXPECT_OK, "an ok- seed is not JSON");
    return 0;
  }
  memset(err, 'x', sizeof err);
  err[sizeof err - 1] = 0;
  rc = tt_intent_from_json(j, &in, err, sizeof err);
  json_decref(j);
  if (rc) {
    FF_CHECK(expect != FF_EXPECT_OK, "valid intent refused: %s", err);
    FF_CHECK(rc == TETHER_EJSON || rc == TETHER_EINVAL ||
                 rc == TETHER_ETYPE || rc == TETHER_ETOOBIG,
             "unexpected error %s", tether_err_name(rc));
    FF_CHECK(err[0] && strncmp(err, "xxxx", 4), "refusal without a reason");
    FF_CHECK(in.ops == NULL && in.coll == NULL && in.nops == 0,
             "a refused intent is not cleared");
    return 0;
  }
  FF_CHECK(expect != FF_EXPECT_BAD, "invalid intent accepted");
  check_limits(&in);

  /* Wire form round trip. */
  json_t *w = tt_intent_to_json(&in, 1);
  FF_CHECK(w != NULL, "to_json failed");
  rc = tt_intent_from_json(w, &again, err, sizeof err);
  FF_CHECK(rc == 0, "the wire form of an accepted intent is refused: %s",
           err);
  json_decref(w);
  char *a = canon_of(&in), *b = canon_of(&again);
  FF_CHECK(!strcmp(a, b), "round trip differs:\n%s\n%s", a, b);
  uint8_t h1[TT_HASH_LEN], h2[TT_HASH_LEN];
  FF_CHECK(tt_intent_compute_hash(&in, h1) == 0 &&
               tt_intent_compute_hash(&again, h2) == 0,
           "hash failed");
  FF_CHECK(!memcmp(h1, h2, TT_HASH_LEN), "round trip hashes differently");
  /* check_hash agrees with compute_hash. */
  FF_CHECK((tt_intent_check_hash(&in) == 0) ==
               (memcmp(h1, in.hash, TT_HASH_LEN) == 0),
           "check_hash disagrees with compute_hash");

  FF_CHECK(tt_intent_copy(&copy, &in) == 0, "copy failed");
  char *c = canon_of(&copy);
  FF_CHECK(!strcmp(a, c), "copy differs");
  free(a);
  free(b);
  free(c);
  tt_intent_clear(&copy);
  tt_intent_clear(&again);
  tt_intent_clear(&in);
  FF_CHECK(in.ops == NULL && in.nops == 0, "clear left state behind");
  return 0;
}
