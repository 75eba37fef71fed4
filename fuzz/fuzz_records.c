/* fuzz_records.c — the stored-record decoders of the server and the
 * replica. A store is only ever written by tether itself, but a disk, a
 * copy or an older version can hand back anything: every decoder must
 * refuse a bad record with ECORRUPT, never crash or over-read.
 *
 * The first input byte selects the decoder (modulo the count), the rest is
 * the record:
 *   0 server replica dedupe record   (exact re-encode)
 *   1 server outcome record          (stable re-encode, wire form)
 *   2 server JSON record             (stable re-encode)
 *   3 replica confirmed document
 *   4 replica view overlay
 *   5 replica outbox record          (exact re-encode)
 *   6 replica cursor (JSON text)
 *   7 replica doc key split          (exact rebuild)
 *   8 replica META "chain"    loaded through a store transaction
 *   9 replica STATUS record   loaded through a store transaction
 *  10 replica META "cursor"   loaded through a store transaction
 *  11 server partition seq    loaded through a store transaction
 *  12 replica view (DOCS record + VIEW overlay: the rest split in half)
 *  13 server per-partition dedupe record  (exact re-encode)
 * The store-backed cases write the record in a transaction that is always
 * aborted, so every input meets the same empty store. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "replica/internal.h"
#include "server/server_int.h"

#define NCASES 14

static tt_store *st;
static char dir[64];

static void cleanup(void) {
  tt_store_close(st);
  ff_rmrf(dir);
}

static tt_bytes B(const uint8_t *d, size_t n) {
  tt_bytes b = {d, n};
  return b;
}

static void bad_or_ok(int rc, ff_expect expect, const char *what) {
  if (rc) {
    FF_CHECK(expect != FF_EXPECT_OK, "%s: valid record refused: %s", what,
             tether_err_name(rc));
    FF_CHECK(rc == TETHER_ECORRUPT || rc == TETHER_EVERSION,
             "%s: error %s, not ECORRUPT", what, tether_err_name(rc));
  } else {
    FF_CHECK(expect != FF_EXPECT_BAD, "%s: invalid record accepted", what);
  }
}

static void srv_replica(const uint8_t *d, size_t n, ff_expect ex) {
  tt_srv_replica r;
  uint8_t out[TT_SRV_REPLICA_LEN];
  int rc = tt_srv_replica_decode(B(d, n), &r);
  bad_or_ok(rc, ex, "server replica record");
  if (rc)
    return;
  tt_srv_replica_encode(&r, out);
  FF_CHECK(n == sizeof out && !memcmp(out, d, n), "replica re-encode");
}

static void srv_dedupe(const uint8_t *d, size_t n, ff_expect ex) {
  uint64_t seq = 0;
  uint8_t out[TT_SRV_DEDUPE_LEN];
  int rc = tt_srv_dedupe_decode(B(d, n), &seq);
  bad_or_ok(rc, ex, "server dedupe record");
  if (rc)
    return;
  tt_srv_dedupe_encode(seq, out);
  FF_CHECK(n == sizeof out && !memcmp(out, d, n), "dedupe re-encode");
}

static void srv_outcome(const uint8_t *d, size_t n, ff_expect ex) {
  tt_srv_outcome o, o2;
  json_t *c = NULL, *c2 = NULL, *j;
  uint8_t *e1 = NULL, *e2 = NULL;
  size_t l1, l2;
  int rc = tt_srv_outcome_decode(B(d, n), 7, &o, &c);
  bad_or_ok(rc, ex, "server outcome record");
  if (rc) {
    FF_CHECK(c == NULL, "refused outcome left a conflict");
    return;
  }
  FF_CHECK(o.seq == 7 && o.kind < TT_OUT__COUNT, "outcome fields");
  FF_CHECK(!o.conflict || json_is_object(o.conflict), "conflict not object");
  j = tt_srv_outcome_json(&o, 1);
  FF_CHECK(j && json_is_true(json_object_get(j, "duplicate")), "wire form");
  json_decref(j);
  /* The text a push answer is written from is canonical JSON (the tree
   * is read from it and written again, byte for byte), or both fail: a
   * rule or reason that is not UTF-8. */
  for (int dup = 0; dup <= 1; dup++) {
    tt_buf t = {0};
    json_t *tree = tt_srv_outcome_json(&o, dup);
    int trc = tt_srv_outcome_text(&t, &o, dup);
    char *canon = tree ? tt_canon(tree) : NULL;
    FF_CHECK((trc == 0) == (canon != NULL), "outcome text and tree disagree "
             "on success (%d)", trc);
    FF_CHECK(!canon || (t.len == strlen(canon) &&
                        memcmp(t.data, canon, t.len) == 0),
             "outcome text differs from the tree's:\n%.*s\n%s", (int)t.len,
             (const char *)t.data, canon);
    free(canon);
    json_decref(tree);
    tt_buf_free(&t);
  }
  FF_CHECK(tt_srv_outcome_encode(&o, &e1, &l1) == 0, "encode");
  rc = tt_srv_outcome_decode(B(e1, l1), 7, &o2, &c2);
  FF_CHECK(rc == 0, "re-encoded outcome refused");
  FF_CHECK(tt_srv_outcome_encode(&o2, &e2, &l2) == 0 && l1 == l2 &&
               !memcmp(e1, e2, l1),
           "outcome encode not stable");
  FF_CHECK(o2.kind == o.kind && o2.p == o.p && o2.commit == o.commit &&
               o2.rule_len == o.rule_len && o2.reason_len == o.reason_len,
           "outcome round trip");
  free(e1);
  free(e2);
  json_decref(c);
  json_decref(c2);
}

static void srv_json(const uint8_t *d, size_t n, ff_expect ex) {
  json_t *j = NULL, *j2 = NULL;
  char *e1 = NULL, *e2 = NULL;
  size_t l1, l2;
  int rc = tt_srv_json_decode(B(d, n), &j);
  bad_or_ok(rc, ex, "server json record");
  if (rc) {
    FF_CHECK(j == NULL, "refused json record left a value");
    return;
  }
  FF_CHECK(json_is_object(j), "json record not an object");
  FF_CHECK(tt_srv_json_encode(j, &e1, &l1) == 0, "encode");
  FF_CHECK(tt_srv_json_decode(B((const uint8_t *)e1, l1), &j2) == 0,
           "re-encoded json record refused");
  FF_CHECK(tt_srv_json_encode(j2, &e2, &l2) == 0 && l1 == l2 &&
               !memcmp(e1, e2, l1),
           "json record encode not stable");
  free(e1);
  free(e2);
  json_decref(j);
  json_decref(j2);
}

static void r_doc(const uint8_t *d, size_t n, ff_expect ex) {
  tt_rdoc doc;
  int rc = tt_r_doc_decode(B(d, n), &doc);
  bad_or_ok(rc, ex, "replica doc record");
  if (rc) {
    FF_CHECK(doc.obj == NULL, "refused doc holds a value");
    return;
  }
  FF_CHECK(doc.exists, "decoded doc does not exist");
  FF_CHECK(doc.deleted ? doc.obj == NULL : json_is_object(doc.obj),
           "doc shape");
  tt_r_doc_clear(&doc);
}

static void r_overlay(const uint8_t *d, size_t n, ff_expect ex) {
  json_t *o = (json_t *)&o;
  int rc = tt_r_overlay_decode(B(d, n), &o);
  bad_or_ok(rc, ex, "replica overlay record");
  if (rc) {
    FF_CHECK(o == NULL, "refused overlay left a value");
    return;
  }
  FF_CHECK(o == NULL || json_is_object(o), "overlay shape");
  json_decref(o);
}

static void r_obx(const uint8_t *d, size_t n, ff_expect ex) {
  tt_robx o;
  uint8_t *e = NULL;
  size_t l;
  int rc = tt_r_obx_decode(B(d, n), &o);
  bad_or_ok(rc, ex, "replica outbox record");
  if (rc)
    return;
  FF_CHECK(o.key >= d && o.key + o.klen <= d + n, "key out of the record");
  FF_CHECK((const uint8_t *)o.json >= d &&
               (const uint8_t *)o.json + o.json_len <= d + n &&
               o.json_len > 0,
           "json out of the record");
  if (o.label)
    FF_CHECK((const uint8_t *)o.label >= d &&
                 (const uint8_t *)o.label + o.label_len <= d + n &&
                 o.label_len <= TT_MAX_LABEL,
             "label out of the record");
  FF_CHECK(tt_r_obx_encode(&o, &e, &l) == 0, "outbox re-encode refused");
  FF_CHECK(l == n && !memcmp(e, d, n), "outbox re-encode differs");
  free(e);
}

static void r_cursor(const uint8_t *d, size_t n, ff_expect ex) {
  json_t *j = ff_json(d, n);
  uint64_t *cur = NULL;
  size_t nc = 0;
  int rc;
  if (!j) {
    FF_CHECK(ex != FF_EXPECT_OK, "ok- cursor seed is not JSON");
    return;
  }
  rc = tt_r_cursor_parse(j, &cur, &nc, TETHER_EPROTO);
  if (rc) {
    FF_CHECK(ex != FF_EXPECT_OK, "valid cursor refused");
    FF_CHECK(rc == TETHER_EPROTO, "cursor error %s", tether_err_name(rc));
    FF_CHECK(cur == NULL && nc == 0, "refused cursor left an array");
  } else {
    FF_CHECK(ex != FF_EXPECT_BAD, "invalid cursor accepted");
    FF_CHECK(nc == json_array_size(j) && nc <= TT_R_MAX_PARTITIONS,
             "cursor size");
    for (size_t i = 0; i < nc; i++)
      FF_CHECK(cur[i] == (uint64_t)json_integer_value(json_array_get(j, i)),
               "cursor entry %zu", i);
  }
  free(cur);
  json_decref(j);
}

static void r_dockey(const uint8_t *d, size_t n, ff_expect ex) {
  char coll[TT_MAX_NAME + 1], id[TT_MAX_NAME + 1];
  uint8_t back[TT_R_KEYMAX];
  int rc = tt_r_dockey_split(d, n, coll, id);
  bad_or_ok(rc, ex, "replica doc key");
  if (rc)
    return;
  FF_CHECK(tt_name_valid(coll) && tt_name_valid(id), "split names invalid");
  size_t l = tt_r_dockey(back, coll, id);
  FF_CHECK(l == n && !memcmp(back, d, n), "doc key rebuild differs");
}

/* Puts the record under TAB/KEY in a write transaction that is aborted
 * after LOAD ran on it. */
typedef int (*loader)(tt_txn *t, const uint8_t *d, size_t n);

static void in_txn(tt_table tab, const char *key, size_t klen,
                   const uint8_t *d, size_t n, loader load, ff_expect ex,
                   const char *what) {
  tt_txn *t = NULL;
  int rc = tt_txn_begin(st, 0, 1, &t);
  FF_CHECK(rc == 0, "begin: %s", tether_err_name(rc));
  rc = tt_put(t, tab, B((const uint8_t *)key, klen), B(d, n));
  if (rc == 0) {
    rc = load(t, d, n);
    bad_or_ok(rc, ex, what);
  } else {
    FF_CHECK(rc == TETHER_EINVAL || rc == TETHER_ETOOBIG, "put: %s",
             tether_err_name(rc));
  }
  tt_abort(t);
}

static int load_chain(tt_txn *t, const uint8_t *d, size_t n) {
  tt_rchain c;
  int rc = tt_r_chain_load(t, &c);
  (void)d, (void)n;
  if (!rc)
    FF_CHECK(c.next_seq >= 1 && c.acked < c.next_seq, "chain invariants");
  return rc;
}

static int load_status(tt_txn *t, const uint8_t *d, size_t n) {
  tt_rstatus s;
  int rc = tt_r_status_load(t, (const uint8_t *)"c\0i", 3, &s);
  (void)d, (void)n;
  if (!rc)
    FF_CHECK(s.rejected == 0 || s.rejected == 1, "status flag");
  return rc;
}

static int load_cursor(tt_txn *t, const uint8_t *d, size_t n) {
  uint64_t *cur = NULL;
  size_t nc = 0;
  int rc = tt_r_cursor_load(t, &cur, &nc);
  (void)d, (void)n;
  if (rc)
    FF_CHECK(cur == NULL && nc == 0, "refused cursor left an array");
  free(cur);
  return rc;
}

static int load_seq(tt_txn *t, const uint8_t *d, size_t n) {
  uint64_t s;
  (void)d, (void)n;
  return tt_srv_load_seq(t, 1, &s);
}

static void r_view(const uint8_t *d, size_t n, ff_expect ex) {
  static const uint8_t key[] = "c\0i";
  size_t half = n / 2;
  tt_txn *t = NULL;
  json_t *obj = NULL;
  tt_rdoc conf;
  int rc = tt_txn_begin(st, 0, 1, &t);
  (void)ex;
  FF_CHECK(rc == 0, "begin");
  if (!tt_put(t, TT_TABLE_DOCS, B(key, 3), B(d, half)) &&
      !tt_put(t, TT_TABLE_VIEW, B(key, 3), B(d + half, n - half))) {
    memset(&conf, 0, sizeof conf);
    rc = tt_r_view_load(t, key, 3, &obj, &conf);
    if (rc)
      FF_CHECK(rc == TETHER_ECORRUPT, "view load: %s", tether_err_name(rc));
    else
      FF_CHECK(obj == NULL || json_is_object(obj), "view shape");
    json_decref(obj);
    tt_r_doc_clear(&conf);
  }
  tt_abort(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ff_expect ex = ff_expectation();
  const uint8_t *d = data + 1;
  size_t n;
  static const uint8_t seqkey[] = {'s', 'e', 'r', 'v', 'e', 'r', '.', 's',
                                   'e', 'q', 0,   0,   0,   1};

  if (size == 0)
    return 0;
  n = size - 1;
  if (!st) {
    st = ff_store_new(dir, "records");
    atexit(cleanup);
  }
  switch (data[0] % NCASES) {
  case 0:
    srv_replica(d, n, ex);
    break;
  case 1:
    srv_outcome(d, n, ex);
    break;
  case 2:
    srv_json(d, n, ex);
    break;
  case 3:
    r_doc(d, n, ex);
    break;
  case 4:
    r_overlay(d, n, ex);
    break;
  case 5:
    r_obx(d, n, ex);
    break;
  case 6:
    r_cursor(d, n, ex);
    break;
  case 7:
    r_dockey(d, n, ex);
    break;
  case 8:
    in_txn(TT_TABLE_META, "chain", 5, d, n, load_chain, ex, "chain");
    break;
  case 9:
    in_txn(TT_TABLE_STATUS, "c\0i", 3, d, n, load_status, ex, "status");
    break;
  case 10:
    in_txn(TT_TABLE_META, "cursor", 6, d, n, load_cursor, ex, "cursor");
    break;
  case 11:
    in_txn(TT_TABLE_META, (const char *)seqkey, sizeof seqkey, d, n, load_seq,
           ex, "server seq");
    break;
  case 12:
    r_view(d, n, ex);
    break;
  default:
    srv_dedupe(d, n, ex);
    break;
  }
  return 0;
}
