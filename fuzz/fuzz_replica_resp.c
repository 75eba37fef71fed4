/* fuzz_replica_resp.c — a server's answer to a push or a pull, handed to
 * the replica (tt_replica_push_done / tt_replica_pull_done) in the state
 * of rworld.h. The server is not trusted: whatever it sends, the replica
 * must not crash, and an answer it refuses must change nothing.
 *
 * Input: an optional first line "push STATUS" or "pull STATUS" (at most
 * 32 bytes; default "push 200"), then the response body.
 *
 * Properties, for every input:
 *  - never a crash, a leak or undefined behaviour;
 *  - an error return leaves the store byte for byte as it was, and a
 *    protocol or server error says why in last_error;
 *  - success implies status 200, and leaves a store that keeps the
 *    replica's invariants (internal.h): chain acked < next_seq; every
 *    outbox record decodes, carries its own well-hashed intent and has its
 *    PENDING index entry and vice versa; a VIEW overlay exists iff the
 *    document has a PENDING entry; every record decodes; the public reads
 *    work on every document. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/intent.h"
#include "core/merge.h"
#include "fuzz_common.h"
#include "replica/internal.h"
#include "rworld.h"

static tt_store *st;
static tt_replica *R;
static json_t *REQ;
static char dir[64];
static ff_print base;

static void cleanup(void) {
  json_decref(REQ);
  tt_replica_close(R);
  tt_store_close(st);
  ff_rmrf(dir);
}

static void build(void) {
  rw_build(st, &R, &REQ);
}

static void init(void) {
  st = ff_store_new(dir, "replica");
  atexit(cleanup);
  build();
  base = ff_fingerprint(st);
}

/* Back to the built state when the store changed, or when FORCE: a pull
 * answered "more" leaves its resume position in the handle, not in the
 * store. */
static void restore(int force) {
  if (!force && ff_print_eq(ff_fingerprint(st), base))
    return;
  json_decref(REQ);
  REQ = NULL;
  tt_replica_close(R);
  R = NULL;
  ff_wipe(st);
  build();
  FF_CHECK(ff_print_eq(ff_fingerprint(st), base),
           "the built replica state is not deterministic");
}

/* ---- invariants ---------------------------------------------------------- */

#define MAXE 256

typedef struct {
  uint64_t seq;
  uint8_t key[TT_R_KEYMAX];
  size_t klen;
} ent;

typedef struct {
  ent obx[MAXE], pend[MAXE], view[MAXE], docs[MAXE];
  size_t nobx, npend, nview, ndocs;
  int pending_state[MAXE];
  tt_rchain ch;
} inv;

static int has_key(const ent *a, size_t n, const uint8_t *k, size_t kl) {
  for (size_t i = 0; i < n; i++)
    if (a[i].klen == kl && !memcmp(a[i].key, k, kl))
      return 1;
  return 0;
}

static int obx_cb(void *ctx, tt_bytes k, tt_bytes v) {
  inv *s = ctx;
  tt_robx o;
  tt_intent in;
  char err[200];
  json_t *j;
  uint32_t ip;
  uint64_t icommit, iseq;
  if (tt_r_ackidx_parse(k, &ip, &icommit, &iseq)) {
    /* The acked index (replica/internal.h) follows every seq key. */
    FF_CHECK(iseq >= 1 && iseq < s->ch.next_seq, "acked index seq");
    return 0;
  }
  FF_CHECK(k.len == 8, "outbox key of %zu bytes", k.len);
  FF_CHECK(s->nobx < MAXE, "outbox too large for the checker");
  FF_CHECK(tt_r_obx_decode(v, &o) == 0, "outbox record does not decode");
  ent *e = &s->obx[s->nobx];
  e->seq = tt_be64_get(k.data);
  FF_CHECK(o.klen <= TT_R_KEYMAX, "outbox doc key");
  memcpy(e->key, o.key, o.klen);
  e->klen = o.klen;
  s->pending_state[s->nobx] = o.state == TT_ROBX_PENDING;
  FF_CHECK(e->seq >= 1 && e->seq < s->ch.next_seq,
           "outbox seq %llu outside the chain", (unsigned long long)e->seq);
  if (o.state == TT_ROBX_PENDING)
    FF_CHECK(e->seq > s->ch.acked, "seq %llu pending but below acked %llu",
             (unsigned long long)e->seq, (unsigned long long)s->ch.acked);
  j = json_loadb(o.json, o.json_len, 0, NULL);
  FF_CHECK(j && tt_intent_from_json(j, &in, err, sizeof err) == 0,
           "outbox intent does not parse");
  FF_CHECK(in.seq == e->seq && tt_intent_check_hash(&in) == 0,
           "outbox intent seq/hash");
  tt_intent_clear(&in);
  json_decref(j);
  s->nobx++;
  return 0;
}

static int pend_cb(void *ctx, tt_bytes k, tt_bytes v) {
  inv *s = ctx;
  const uint8_t *p = k.data;
  (void)v;
  FF_CHECK(k.len > 9 && p[k.len - 9] == 0, "PENDING key shape");
  FF_CHECK(s->npend < MAXE, "pending too large for the checker");
  ent *e = &s->pend[s->npend++];
  e->klen = k.len - 9;
  FF_CHECK(e->klen <= TT_R_KEYMAX, "PENDING doc key");
  memcpy(e->key, p, e->klen);
  e->seq = tt_be64_get(p + k.len - 8);
  return 0;
}

static int key_cb(void *ctx, tt_bytes k, tt_bytes v) {
  ent *e = ctx;
  char c[TT_MAX_NAME + 1], id[TT_MAX_NAME + 1];
  (void)v;
  FF_CHECK(k.len <= TT_R_KEYMAX, "doc key of %zu bytes", k.len);
  FF_CHECK(tt_r_dockey_split(k.data, k.len, c, id) == 0, "bad doc key");
  memcpy(e->key, k.data, k.len);
  e->klen = k.len;
  return 0;
}

typedef struct {
  inv *s;
  int which; /* 0 docs, 1 view */
} kctx;

static int docs_view_cb(void *vctx, tt_bytes k, tt_bytes v) {
  kctx *c = vctx;
  inv *s = c->s;
  if (c->which == 0) {
    tt_rdoc d;
    FF_CHECK(s->ndocs < MAXE, "docs");
    key_cb(&s->docs[s->ndocs++], k, v);
    FF_CHECK(tt_r_doc_decode(v, &d) == 0, "DOCS record does not decode");
    tt_r_doc_clear(&d);
  } else {
    json_t *o = NULL;
    FF_CHECK(s->nview < MAXE, "view");
    key_cb(&s->view[s->nview++], k, v);
    FF_CHECK(tt_r_overlay_decode(v, &o) == 0, "VIEW record does not decode");
    json_decref(o);
  }
  return 0;
}

static int status_cb(void *ctx, tt_bytes k, tt_bytes v) {
  (void)ctx, (void)k;
  FF_CHECK(v.len == 13 && ((const uint8_t *)v.data)[4] <= 1,
           "STATUS record shape");
  return 0;
}

static int routcome_cb(void *ctx, tt_bytes k, tt_bytes v) {
  const uint8_t *p = v.data;
  json_t *j;
  (void)ctx;
  FF_CHECK(k.len == 8 && v.len > 1 && p[0] < TT_OUT__COUNT,
           "ROUTCOMES record shape");
  j = json_loadb((const char *)p + 1, v.len - 1, 0, NULL);
  FF_CHECK(json_is_object(j), "ROUTCOMES JSON");
  json_decref(j);
  return 0;
}

static int rconflict_cb(void *ctx, tt_bytes k, tt_bytes v) {
  json_t *j = json_loadb(v.data, v.len, 0, NULL);
  (void)ctx, (void)k;
  FF_CHECK(json_is_object(j), "RCONFLICTS JSON");
  json_decref(j);
  return 0;
}

static void check_invariants(void) {
  static inv s;
  tt_txn *t = NULL;
  tt_bytes all = {NULL, 0};
  kctx kd = {&s, 0}, kv = {&s, 1};

  memset(&s, 0, sizeof s);
  FF_CHECK(tt_txn_begin(st, 0, 0, &t) == 0, "begin");
  FF_CHECK(tt_r_chain_load(t, &s.ch) == 0, "chain does not load");
  FF_CHECK(tt_scan(t, TT_TABLE_OUTBOX, all, obx_cb, &s) == 0, "scan outbox");
  FF_CHECK(tt_scan(t, TT_TABLE_PENDING, all, pend_cb, &s) == 0, "scan pend");
  FF_CHECK(tt_scan(t, TT_TABLE_DOCS, all, docs_view_cb, &kd) == 0, "docs");
  FF_CHECK(tt_scan(t, TT_TABLE_VIEW, all, docs_view_cb, &kv) == 0, "view");
  FF_CHECK(tt_scan(t, TT_TABLE_STATUS, all, status_cb, NULL) == 0, "status");
  FF_CHECK(tt_scan(t, TT_TABLE_ROUTCOMES, all, routcome_cb, NULL) == 0,
           "routcomes");
  FF_CHECK(tt_scan(t, TT_TABLE_RCONFLICTS, all, rconflict_cb, NULL) == 0,
           "rconflicts");
  uint64_t *cur = NULL;
  size_t ncur = 0;
  FF_CHECK(tt_r_cursor_load(t, &cur, &ncur) == 0, "cursor does not load");
  free(cur);
  tt_abort(t);

  for (size_t i = 0; i < s.npend; i++) {
    int found = 0;
    for (size_t j = 0; j < s.nobx && !found; j++)
      found = s.obx[j].seq == s.pend[i].seq &&
              s.obx[j].klen == s.pend[i].klen &&
              !memcmp(s.obx[j].key, s.pend[i].key, s.pend[i].klen);
    FF_CHECK(found, "PENDING entry seq %llu without its outbox record",
             (unsigned long long)s.pend[i].seq);
    FF_CHECK(has_key(s.view, s.nview, s.pend[i].key, s.pend[i].klen),
             "document with a pending intent has no overlay");
  }
  for (size_t j = 0; j < s.nobx; j++) {
    int found = 0;
    for (size_t i = 0; i < s.npend && !found; i++)
      found = s.obx[j].seq == s.pend[i].seq;
    FF_CHECK(found, "outbox seq %llu without its PENDING entry",
             (unsigned long long)s.obx[j].seq);
  }
  for (size_t i = 0; i < s.nview; i++)
    FF_CHECK(has_key(s.pend, s.npend, s.view[i].key, s.view[i].klen),
             "overlay without a pending intent");

  /* The public reads work on every document the store knows. */
  ent *lists[2] = {s.docs, s.view};
  size_t counts[2] = {s.ndocs, s.nview};
  for (int l = 0; l < 2; l++)
    for (size_t i = 0; i < counts[l]; i++) {
      char c[TT_MAX_NAME + 1], id[TT_MAX_NAME + 1];
      json_t *o = NULL;
      tether_doc_status ds;
      tt_r_dockey_split(lists[l][i].key, lists[l][i].klen, c, id);
      int rc = tt_replica_get(R, c, id, &o);
      FF_CHECK(rc == 0 || rc == TETHER_ENOTFOUND, "get %s/%s: %s", c, id,
               tether_err_name(rc));
      json_decref(o);
      FF_CHECK(tt_replica_status(R, c, id, &ds) == 0, "status %s/%s", c, id);
    }
  tether_stats stats;
  FF_CHECK(tt_replica_stats(R, &stats) == 0, "stats");
  FF_CHECK(tt_replica_outbox_len(R) == s.ch.next_seq - 1 - s.ch.acked,
           "outbox_len %llu, chain says %llu",
           (unsigned long long)tt_replica_outbox_len(R),
           (unsigned long long)(s.ch.next_seq - 1 - s.ch.acked));
  /* The next request still builds (or there is nothing left to push). */
  json_t *req = NULL;
  int rc = tt_replica_push_request(R, 0, &req);
  FF_CHECK(rc == 0 || rc == TETHER_ENOTFOUND, "push request after: %s",
           tether_err_name(rc));
  json_decref(req);
  rc = tt_replica_pull_request(R, 10, 0, &req);
  FF_CHECK(rc == 0, "pull request after: %s", tether_err_name(rc));
  json_decref(req);
}

/* ---- the input ------------------------------------------------------------ */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ff_expect expect = ff_expectation();
  const uint8_t *nl = memchr(data, '\n', size < 33 ? size : 33);
  const uint8_t *body = data;
  size_t blen = size;
  int pull = 0, status = 200, more = -1, rc;
  size_t nch = 99;
  json_t *resp;

  if (!st)
    init();
  if (nl) {
    char hdr[34];
    size_t hl = (size_t)(nl - data);
    memcpy(hdr, data, hl);
    hdr[hl] = 0;
    pull = !strncmp(hdr, "pull", 4);
    const char *sp = strchr(hdr, ' ');
    if (sp) {
      status = 0;
      for (const char *c = sp + 1; *c >= '0' && *c <= '9' && status < 1000;
           c++)
        status = status * 10 + (*c - '0');
    }
    body = nl + 1;
    blen = size - hl - 1;
  }
  resp = ff_json(body, blen);

  if (pull)
    rc = tt_replica_pull_done(R, status, resp, &more, &nch);
  else
    rc = tt_replica_push_done(R, REQ, status, resp);

  if (rc) {
    FF_CHECK(expect != FF_EXPECT_OK, "a valid answer was refused: %s (%s)",
             tether_err_name(rc), tt_replica_last_error(R));
    FF_CHECK(ff_print_eq(ff_fingerprint(st), base),
             "a refused answer (%s) changed the store", tether_err_name(rc));
    if (rc == TETHER_EPROTO || rc == TETHER_EREJECTED ||
        rc == TETHER_ESERVER || rc == TETHER_EGAP || rc == TETHER_ECHAIN)
      FF_CHECK(tt_replica_last_error(R)[0], "%s without a reason",
               tether_err_name(rc));
    if (pull)
      FF_CHECK(more == 0 && nch == 0, "a refused pull reported progress");
  } else {
    FF_CHECK(expect != FF_EXPECT_BAD, "an invalid answer was accepted");
    FF_CHECK(status == 200, "status %d accepted", status);
    if (pull)
      FF_CHECK((more == 0 || more == 1) &&
                   nch == json_array_size(json_object_get(resp, "changes")),
               "pull progress");
    check_invariants();
  }
  json_decref(resp);
  restore(pull && rc == 0 && more == 1);
  return 0;
}
