/* replica_write.c — local writes: intents, the optimistic view, crash
 * safety, validation. */
#include "replica_fixture.h"

static const uint8_t ZERO_HASH[TT_HASH_LEN];

static void test_create_open(void **state) {
  fx *f = *state;
  assert_int_equal(tt_replica_create(f->st, FX_ID, "http://other"),
                   TETHER_EEXIST);
  assert_memory_equal(tt_replica_id(f->r), FX_ID, TT_ID_LEN);
  assert_string_equal(tt_replica_server_url(f->r), FX_URL);
  assert_string_equal(tt_replica_last_error(f->r), "");
  fx_reopen(f);
  assert_string_equal(tt_replica_server_url(f->r), FX_URL);

  /* An empty store holds no replica. */
  char dir[] = "/tmp/tt_replica_empty_XXXXXX";
  assert_non_null(mkdtemp(dir));
  char err[256];
  tt_store *st = NULL;
  assert_int_equal(tt_store_open_lmdb(dir, NULL, &st, err, sizeof err), 0);
  tt_replica *r = (tt_replica *)1;
  assert_int_equal(tt_replica_open(st, &r), TETHER_ENOREPLICA);
  assert_null(r);
  assert_int_equal(tt_replica_create(st, FX_ID, ""), TETHER_EINVAL);
  tt_store_close(st);
  nftw(dir, fx_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void test_put_create_then_diff(void **state) {
  fx *f = *state;
  assert_int_equal(fx_put(f, "notes", "n1", "{\"a\":1,\"b\":\"x\"}"), 0);
  assert_doc(f, "notes", "n1", "{\"a\":1,\"b\":\"x\"}");
  assert_int_equal(fx_put(f, "notes", "n1", "{\"c\":true,\"a\":2}"), 0);
  assert_doc(f, "notes", "n1", "{\"a\":2,\"c\":true}");
  /* Same content again: nothing to record. */
  assert_int_equal(fx_put(f, "notes", "n1", "{\"a\":2,\"c\":true}"), 0);
  assert_int_equal(tt_replica_outbox_len(f->r), 2);

  json_t *ints = fx_intents(f);
  assert_int_equal(json_array_size(ints), 2);
  tt_intent a = {0}, b = {0};
  fx_intent_ok(json_array_get(ints, 0), &a);
  fx_intent_ok(json_array_get(ints, 1), &b);
  assert_int_equal(a.seq, 1);
  assert_memory_equal(a.prev, ZERO_HASH, TT_HASH_LEN);
  assert_int_equal(a.base, 0);
  assert_string_equal(a.coll, "notes");
  assert_string_equal(a.id, "n1");
  assert_null(a.label);
  assert_int_equal(a.nops, 1);
  assert_int_equal(a.ops[0].kind, TT_OP_CREATE);
  assert_null(a.ops[0].field);
  assert_null(a.ops[0].base_value);
  assert_json(a.ops[0].value, "{\"a\":1,\"b\":\"x\"}");

  assert_int_equal(b.seq, 2);
  assert_memory_equal(b.prev, a.hash, TT_HASH_LEN);
  assert_true(b.hlc > a.hlc);
  assert_int_equal(b.nops, 3);
  /* Field order: a, b, c. */
  assert_int_equal(b.ops[0].kind, TT_OP_SET);
  assert_string_equal(b.ops[0].field, "a");
  assert_json(b.ops[0].value, "2");
  assert_json(b.ops[0].base_value, "1");
  assert_int_equal(b.ops[1].kind, TT_OP_UNSET);
  assert_string_equal(b.ops[1].field, "b");
  assert_null(b.ops[1].value);
  assert_json(b.ops[1].base_value, "\"x\"");
  assert_int_equal(b.ops[2].kind, TT_OP_SET);
  assert_string_equal(b.ops[2].field, "c");
  assert_null(b.ops[2].base_value);
  tt_intent_clear(&a);
  tt_intent_clear(&b);
  json_decref(ints);
  assert_int_equal(fx_status(f, "notes", "n1"), TETHER_PENDING);
  assert_int_equal(fx_status(f, "notes", "n2"), TETHER_SYNCED);
}

static void test_ops_in_view_and_chain(void **state) {
  fx *f = *state;
  assert_int_equal(fx_set(f, "c", "d", "t", "\"A\""), 0);
  assert_doc(f, "c", "d", "{\"t\":\"A\"}");
  assert_int_equal(fx_set(f, "c", "d", "t", "\"B\""), 0);
  assert_int_equal(fx_op(f, "c", "d", TT_OP_INCR, "n", "5"), 0);
  assert_int_equal(fx_op(f, "c", "d", TT_OP_INCR, "n", "-2"), 0);
  assert_int_equal(fx_op(f, "c", "d", TT_OP_ADD, "tags", "\"x\""), 0);
  assert_int_equal(fx_op(f, "c", "d", TT_OP_ADD, "tags", "\"y\""), 0);
  assert_int_equal(fx_op(f, "c", "d", TT_OP_REMOVE, "tags", "\"x\""), 0);
  assert_int_equal(fx_op(f, "c", "d", TT_OP_UNSET, "t", NULL), 0);
  assert_doc(f, "c", "d", "{\"n\":3,\"tags\":[\"y\"]}");
  assert_int_equal(
      tt_replica_write(f->r, "c", "d", TT_OP_DELETE, NULL, NULL, "rm", T0), 0);
  assert_doc(f, "c", "d", "absent");

  static const struct {
    tt_op_kind kind;
    const char *field, *value, *base_value;
  } want[] = {
      {TT_OP_SET, "t", "\"A\"", NULL},
      {TT_OP_SET, "t", "\"B\"", "\"A\""},
      /* incr/add/remove always combine: no base_value, whatever the
       * field holds (it would make each intent as big as the field). */
      {TT_OP_INCR, "n", "5", NULL},
      {TT_OP_INCR, "n", "-2", NULL},
      {TT_OP_ADD, "tags", "\"x\"", NULL},
      {TT_OP_ADD, "tags", "\"y\"", NULL},
      {TT_OP_REMOVE, "tags", "\"x\"", NULL},
      {TT_OP_UNSET, "t", NULL, "\"B\""},
      {TT_OP_DELETE, NULL, NULL, NULL},
  };
  json_t *ints = fx_intents(f);
  assert_int_equal(json_array_size(ints), 9);
  uint8_t prev[TT_HASH_LEN] = {0};
  tt_hlc last = 0;
  for (size_t i = 0; i < 9; i++) {
    tt_intent in = {0};
    fx_intent_ok(json_array_get(ints, i), &in);
    assert_int_equal(in.seq, i + 1);
    assert_memory_equal(in.prev, prev, TT_HASH_LEN);
    memcpy(prev, in.hash, TT_HASH_LEN);
    assert_true(in.hlc > last);
    last = in.hlc;
    assert_int_equal(in.base, 0);
    assert_int_equal(in.nops, 1);
    assert_int_equal(in.ops[0].kind, want[i].kind);
    if (want[i].field)
      assert_string_equal(in.ops[0].field, want[i].field);
    else
      assert_null(in.ops[0].field);
    if (want[i].value)
      assert_json(in.ops[0].value, want[i].value);
    else
      assert_null(in.ops[0].value);
    if (want[i].base_value)
      assert_json(in.ops[0].base_value, want[i].base_value);
    else
      assert_null(in.ops[0].base_value);
    if (i == 8)
      assert_string_equal(in.label, "rm");
    tt_intent_clear(&in);
  }
  json_decref(ints);
}

/* An intent that combines (incr/add/remove) does not carry the field it
 * combines with: with a big set field, each add stays small instead of
 * growing with the set (the outbox would grow quadratically, and past the
 * server's body limit no push could carry it). */
static void test_combining_ops_stay_small(void **state) {
  fx *f = *state;
  char elem[64];
  assert_int_equal(fx_set(f, "c", "big", "n", "0"), 0);
  for (int i = 0; i < 200; i++) {
    snprintf(elem, sizeof elem, "\"element-%04d-padding-padding-padding\"",
             i);
    assert_int_equal(fx_op(f, "c", "big", TT_OP_ADD, "tags", elem), 0);
    assert_int_equal(fx_op(f, "c", "big", TT_OP_INCR, "n", "1"), 0);
  }
  assert_int_equal(fx_op(f, "c", "big", TT_OP_REMOVE, "tags", elem), 0);
  json_t *ints = fx_intents(f);
  assert_int_equal(json_array_size(ints), 402);
  size_t first = 0;
  for (size_t i = 1; i < json_array_size(ints); i++) {
    json_t *in = json_array_get(ints, i);
    json_t *op = json_array_get(json_object_get(in, "ops"), 0);
    const char *kind = json_string_value(json_object_get(op, "kind"));
    assert_true(strcmp(kind, "add") == 0 || strcmp(kind, "incr") == 0 ||
                strcmp(kind, "remove") == 0);
    if (json_object_get(op, "base_value"))
      print_error("intent %zu (%s) carries base_value\n", i, kind);
    assert_null(json_object_get(op, "base_value"));
    char *text = tt_canon(in);
    size_t len = strlen(text);
    free(text);
    if (i == 1) first = len;
    /* Same shape every time: the size does not follow the set's. */
    assert_true(len < first + 64);
  }
  json_decref(ints);
  /* The view still has the whole set and the sum. */
  json_t *doc = NULL;
  assert_int_equal(tt_replica_get(f->r, "c", "big", &doc), 0);
  assert_int_equal(json_array_size(json_object_get(doc, "tags")), 199);
  assert_int_equal(json_integer_value(json_object_get(doc, "n")), 200);
  json_decref(doc);
}

static void test_crash_safety(void **state) {
  fx *f = *state;
  /* The wall clock runs backwards across restarts; HLCs must not. */
  uint64_t now = T0 + 100000;
  json_t *v = J("1");
  for (int i = 0; i < 5; i++) {
    assert_int_equal(
        tt_replica_write(f->r, "c", "d", TT_OP_INCR, "n", v, NULL, now), 0);
    now -= 10000;
    fx_reopen(f);
    assert_int_equal(tt_replica_outbox_len(f->r), (uint64_t)i + 1);
    char want[32];
    snprintf(want, sizeof want, "{\"n\":%d}", i + 1);
    assert_doc(f, "c", "d", want);
  }
  json_decref(v);
  json_t *ints = fx_intents(f);
  assert_int_equal(json_array_size(ints), 5);
  uint8_t prev[TT_HASH_LEN] = {0};
  tt_hlc last = 0;
  for (size_t i = 0; i < 5; i++) {
    tt_intent in = {0};
    fx_intent_ok(json_array_get(ints, i), &in);
    assert_int_equal(in.seq, i + 1);
    assert_memory_equal(in.prev, prev, TT_HASH_LEN);
    assert_true(in.hlc > last);
    assert_true(TT_HLC_MS(in.hlc) >= T0 + 100000);
    last = in.hlc;
    memcpy(prev, in.hash, TT_HASH_LEN);
    tt_intent_clear(&in);
  }
  json_decref(ints);
}

/* Snapshot of what a failed call must leave alone. */
static char *snapshot(fx *f) {
  json_t *req = NULL;
  int rc = tt_replica_push_request(f->r, 0, &req);
  char *ints = rc == 0 ? tt_canon(req) : strdup("none");
  json_decref(req);
  char *doc = fx_get(f, "c", "d");
  size_t n = strlen(ints) + strlen(doc) + 32;
  char *s = malloc(n);
  snprintf(s, n, "%s|%s|%llu", ints, doc,
           (unsigned long long)tt_replica_outbox_len(f->r));
  free(ints);
  free(doc);
  return s;
}

static void test_errors_change_nothing(void **state) {
  fx *f = *state;
  assert_int_equal(fx_set(f, "c", "d", "s", "\"text\""), 0);
  char *before = snapshot(f);

  assert_int_equal(fx_op(f, "c", "d", TT_OP_INCR, "s", "1"), TETHER_ETYPE);
  assert_true(strlen(tt_replica_last_error(f->r)) > 0);
  assert_int_equal(fx_op(f, "c", "d", TT_OP_ADD, "s", "1"), TETHER_ETYPE);
  assert_int_equal(fx_op(f, "c", "d", TT_OP_INCR, "n", "1.5"), TETHER_EINVAL);
  assert_int_equal(fx_op(f, "c", "d", TT_OP_INCR, "n", "\"1\""),
                   TETHER_EINVAL);
  assert_int_equal(fx_set(f, "", "d", "x", "1"), TETHER_EINVAL);
  assert_int_equal(fx_set(f, "c", "", "x", "1"), TETHER_EINVAL);
  assert_int_equal(fx_set(f, "c", "d", "", "1"), TETHER_EINVAL);
  char longname[TT_MAX_NAME + 2];
  memset(longname, 'x', sizeof longname - 1);
  longname[sizeof longname - 1] = 0;
  assert_int_equal(fx_set(f, "c", "d", longname, "1"), TETHER_EINVAL);
  assert_int_equal(fx_set(f, longname, "d", "x", "1"), TETHER_EINVAL);
  assert_int_equal(fx_op(f, "c", "d", TT_OP_SET, "x", NULL), TETHER_EINVAL);
  assert_int_equal(fx_op(f, "c", "d", TT_OP_UNSET, "x", "1"), TETHER_EINVAL);
  assert_int_equal(fx_op(f, "c", "d", TT_OP_DELETE, "x", NULL),
                   TETHER_EINVAL);
  assert_int_equal(fx_op(f, "c", "d", TT_OP_RESOLVE, "x", "1"),
                   TETHER_EINVAL);
  assert_int_equal(fx_put(f, "c", "d", "[1]"), TETHER_EINVAL);
  assert_int_equal(fx_put(f, "c", "d", "{\"\":1}"), TETHER_EINVAL);
  json_t *o = J("{}");
  char label[TT_MAX_LABEL + 2];
  memset(label, 'l', sizeof label - 1);
  label[sizeof label - 1] = 0;
  assert_int_equal(tt_replica_put(f->r, "c", "d", o, label, T0),
                   TETHER_EINVAL);
  json_decref(o);
  /* A value over 1 MiB canonical. */
  char *big = malloc(TT_MAX_VALUE + 16);
  memset(big, 'a', TT_MAX_VALUE + 10);
  big[TT_MAX_VALUE + 10] = 0;
  json_t *bv = json_string(big);
  assert_int_equal(
      tt_replica_write(f->r, "c", "d", TT_OP_SET, "big", bv, NULL, T0),
      TETHER_ETOOBIG);
  json_t *bo = json_pack("{s:O}", "big", bv);
  assert_int_equal(tt_replica_put(f->r, "c", "d", bo, NULL, T0),
                   TETHER_ETOOBIG);
  assert_int_equal(tt_replica_put(f->r, "c", "e", bo, NULL, T0),
                   TETHER_ETOOBIG);
  json_decref(bo);
  json_decref(bv);
  /* Each value fits, the whole intent (over 32 MiB) would not fit a push. */
  big[TT_MAX_VALUE - 100] = 0;
  bo = json_pack("{s:s}", "s", "text");
  for (int i = 0; i < 34; i++) {
    char k[8];
    snprintf(k, sizeof k, "f%d", i);
    json_object_set_new(bo, k, json_string(big));
  }
  assert_int_equal(tt_replica_put(f->r, "c", "d", bo, NULL, T0),
                   TETHER_ETOOBIG);
  json_decref(bo);
  free(big);
  /* No conflict to resolve. */
  json_t *one = J("1");
  assert_int_equal(tt_replica_resolve(f->r, "c", "d", "s", one, T0),
                   TETHER_ENOTFOUND);
  json_decref(one);

  char *after = snapshot(f);
  assert_string_equal(before, after);
  free(before);
  free(after);
  fx_reopen(f);
  /* The next intent still gets seq 2, chained to seq 1. */
  assert_int_equal(fx_set(f, "c", "d", "s", "\"more\""), 0);
  json_t *ints = fx_intents(f);
  assert_int_equal(json_array_size(ints), 2);
  tt_intent a = {0}, b = {0};
  fx_intent_ok(json_array_get(ints, 0), &a);
  fx_intent_ok(json_array_get(ints, 1), &b);
  assert_int_equal(b.seq, 2);
  assert_memory_equal(b.prev, a.hash, TT_HASH_LEN);
  tt_intent_clear(&a);
  tt_intent_clear(&b);
  json_decref(ints);
}

typedef struct {
  json_t *ids;
  json_t *docs;
  int stop_at;
} list_ctx;

static int list_cb(void *vctx, const char *id, const json_t *doc) {
  list_ctx *c = vctx;
  json_array_append_new(c->ids, json_string(id));
  json_array_append_new(c->docs, json_deep_copy(doc));
  if (c->stop_at > 0 && (int)json_array_size(c->ids) == c->stop_at) return 7;
  return 0;
}

static void test_list_merges_confirmed_and_view(void **state) {
  fx *f = *state;
  /* Confirmed: d000..d599 (even ones deleted from 500 on); local: writes
   * to some of them and new ids in between, so both tables span several
   * list batches. */
  json_t *changes = json_array();
  for (int i = 0; i < 600; i++) {
    char id[16];
    snprintf(id, sizeof id, "d%03d", i);
    json_t *c;
    if (i >= 500 && i % 2 == 0)
      c = json_pack("{s:s,s:s,s:i,s:i,s:b}", "coll", "c", "id", id, "p", 0,
                    "version", i + 1, "deleted", 1);
    else
      c = json_pack("{s:s,s:s,s:i,s:i,s:{s:i}}", "coll", "c", "id", id, "p",
                    0, "version", i + 1, "set", "i", i);
    json_array_append_new(changes, c);
  }
  /* Another collection sorts around "c". */
  json_array_append_new(changes, J("{\"coll\":\"b\",\"id\":\"z\",\"p\":0,"
                                   "\"version\":700,\"set\":{\"k\":1}}"));
  json_array_append_new(changes, J("{\"coll\":\"cc\",\"id\":\"a\",\"p\":0,"
                                   "\"version\":701,\"set\":{\"k\":1}}"));
  char *text = json_dumps(changes, 0);
  fx_pull(f, 701, 0, text);
  free(text);
  json_decref(changes);

  assert_int_equal(fx_set(f, "c", "d001", "local", "true"), 0);
  assert_int_equal(fx_op(f, "c", "d003", TT_OP_DELETE, NULL, NULL), 0);
  assert_int_equal(fx_set(f, "c", "d500", "i", "-1"), 0); /* revive */
  for (int i = 0; i < 300; i++) {
    char id[16];
    snprintf(id, sizeof id, "d%03d_%d", i * 2, i);
    assert_int_equal(fx_set(f, "c", id, "new", "1"), 0);
  }

  list_ctx c = {json_array(), json_array(), 0};
  assert_int_equal(tt_replica_list(f->r, "c", list_cb, &c), 0);
  /* 600 - 50 deleted - 1 locally deleted + 1 revived + 300 new. */
  assert_int_equal(json_array_size(c.ids), 850);
  for (size_t i = 1; i < json_array_size(c.ids); i++)
    assert_true(strcmp(json_string_value(json_array_get(c.ids, i - 1)),
                       json_string_value(json_array_get(c.ids, i))) < 0);
  for (size_t i = 0; i < json_array_size(c.ids); i++) {
    const char *id = json_string_value(json_array_get(c.ids, i));
    const json_t *d = json_array_get(c.docs, i);
    assert_string_not_equal(id, "d003");
    if (strcmp(id, "d001") == 0) assert_json(d, "{\"i\":1,\"local\":true}");
    if (strcmp(id, "d500") == 0) assert_json(d, "{\"i\":-1}");
    if (strcmp(id, "d002") == 0) assert_json(d, "{\"i\":2}");
    if (strcmp(id, "d004_2") == 0) assert_json(d, "{\"new\":1}");
  }
  json_decref(c.ids);
  json_decref(c.docs);

  /* A non-zero return stops the walk and is returned. */
  list_ctx s = {json_array(), json_array(), 3};
  assert_int_equal(tt_replica_list(f->r, "c", list_cb, &s), 7);
  assert_int_equal(json_array_size(s.ids), 3);
  json_decref(s.ids);
  json_decref(s.docs);

  tether_stats st;
  assert_int_equal(tt_replica_stats(f->r, &st), 0);
  assert_int_equal(st.documents, 852);
  assert_int_equal(st.pending_intents, 303);
  assert_int_equal(st.conflicts, 0);
  assert_int_equal(st.rejected, 0);
}


static void test_batch(void **state) {
  fx *f = *state;
  assert_int_equal(fx_set(f, "c", "a", "n", "1"), 0); /* committed: seq 1 */
  assert_int_equal(tt_replica_batch_commit(f->r), TETHER_EINVAL);
  assert_int_equal(tt_replica_batch_begin(f->r), 0);
  assert_int_equal(tt_replica_batch_begin(f->r), TETHER_EBUSY);
  assert_int_equal(fx_set(f, "c", "b", "s", "\"x\""), 0);
  assert_int_equal(fx_op(f, "c", "a", TT_OP_INCR, "n", "2"), 0);
  /* A failing write inside leaves the batch as it was. */
  assert_int_equal(fx_op(f, "c", "b", TT_OP_INCR, "s", "1"), TETHER_ETYPE);
  json_t *one = J("1");
  assert_int_equal(tt_replica_resolve(f->r, "c", "b", "s", one, T0),
                   TETHER_ENOTFOUND);
  json_decref(one);
  /* Reads see the batch. */
  assert_doc(f, "c", "a", "{\"n\":3}");
  assert_doc(f, "c", "b", "{\"s\":\"x\"}");
  assert_int_equal(fx_status(f, "c", "b"), TETHER_PENDING);
  assert_int_equal(tt_replica_outbox_len(f->r), 3);
  tether_stats st;
  assert_int_equal(tt_replica_stats(f->r, &st), 0);
  assert_int_equal(st.documents, 2);
  /* Only durably committed intents may be pushed. */
  json_t *req = fx_push_req(f, 0);
  assert_int_equal(json_array_size(json_object_get(req, "intents")), 1);
  json_t *outs = json_array();
  json_array_append_new(outs, fx_outcome(1, "applied", 1));
  json_t *resp = fx_push_resp(outs);
  assert_int_equal(tt_replica_push_done(f->r, req, 200, resp), TETHER_EBUSY);
  int more;
  size_t n;
  json_t *pr = J("{\"v\":1,\"cursor\":[1],\"more\":false,\"changes\":"
                 "[{\"coll\":\"c\",\"id\":\"a\",\"p\":0,\"version\":1,"
                 "\"set\":{\"n\":1}}]}");
  assert_int_equal(tt_replica_pull_done(f->r, 200, pr, &more, &n),
                   TETHER_EBUSY);
  assert_int_equal(tt_replica_batch_commit(f->r), 0);
  assert_int_equal(tt_replica_push_done(f->r, req, 200, resp), 0);
  assert_int_equal(tt_replica_pull_done(f->r, 200, pr, &more, &n), 0);
  json_decref(pr);
  json_decref(req);
  json_decref(resp);
  fx_reopen(f);
  assert_doc(f, "c", "a", "{\"n\":3}");
  assert_int_equal(tt_replica_outbox_len(f->r), 2);

  /* An aborted batch leaves nothing; its seqs are used again. */
  assert_int_equal(tt_replica_batch_begin(f->r), 0);
  assert_int_equal(fx_set(f, "c", "z", "k", "1"), 0);
  assert_doc(f, "c", "z", "{\"k\":1}");
  tt_replica_batch_abort(f->r);
  assert_doc(f, "c", "z", "absent");
  /* A batch left open at close is aborted. */
  assert_int_equal(tt_replica_batch_begin(f->r), 0);
  assert_int_equal(fx_set(f, "c", "z", "k", "2"), 0);
  fx_reopen(f);
  assert_doc(f, "c", "z", "absent");
  assert_int_equal(fx_set(f, "c", "z", "k", "3"), 0);
  json_t *ints = fx_intents(f);
  assert_int_equal(json_array_size(ints), 3);
  uint8_t prev[TT_HASH_LEN];
  for (size_t i = 0; i < 3; i++) {
    tt_intent in = {0};
    fx_intent_ok(json_array_get(ints, i), &in);
    assert_int_equal(in.seq, i + 2);
    if (i > 0) assert_memory_equal(in.prev, prev, TT_HASH_LEN);
    memcpy(prev, in.hash, TT_HASH_LEN);
    tt_intent_clear(&in);
  }
  json_decref(ints);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_create_open, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(test_put_create_then_diff, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(test_ops_in_view_and_chain, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(test_combining_ops_stay_small,
                                      fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_crash_safety, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(test_errors_change_nothing, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(test_list_merges_confirmed_and_view,
                                      fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_batch, fx_setup, fx_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
