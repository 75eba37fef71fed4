/* view.c — the optimistic view: confirmed state with the pending intents
 * replayed on top (re-based whenever either side changes), and the reads
 * that go through it. */
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "core/merge.h"
#include "replica/internal.h"

/* Most pending intents replayed for one document. */
#define MAX_DOC_PENDING (1u << 24)

int tt_r_view_load(tt_txn *t, const uint8_t *key, size_t klen, json_t **obj,
                   tt_rdoc *conf) {
  *obj = NULL;
  tt_rdoc d;
  int has = 0;
  json_t *ov = NULL;
  int rc = tt_r_overlay_load(t, key, klen, &has, &ov);
  if (rc) return rc;
  if (has && !conf) {
    *obj = ov;
    return 0;
  }
  rc = tt_r_doc_load(t, key, klen, &d);
  if (rc) {
    json_decref(ov);
    return rc;
  }
  if (has) {
    *obj = ov;
  } else {
    *obj = d.obj ? json_incref(d.obj) : NULL;
  }
  if (conf)
    *conf = d;
  else
    tt_r_doc_clear(&d);
  return 0;
}

typedef struct {
  const uint8_t *prefix; /* coll \0 id \0 */
  size_t plen;
  uint64_t after;
  uint64_t *seqs; /* when collecting */
  size_t n, cap;
  int err;
} pend_ctx;

static int pend_first_cb(void *vctx, tt_bytes k, tt_bytes v) {
  (void)v;
  pend_ctx *c = vctx;
  if (k.len != c->plen + 8 || memcmp(k.data, c->prefix, c->plen) != 0)
    return 2; /* past the document's entries */
  if (tt_be64_get((const uint8_t *)k.data + c->plen) > c->after) return 1;
  return 0;
}

static int pend_collect_cb(void *vctx, tt_bytes k, tt_bytes v) {
  (void)v;
  pend_ctx *c = vctx;
  if (k.len != c->plen + 8 || memcmp(k.data, c->prefix, c->plen) != 0)
    return 2;
  if (c->n == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 8;
    if (cap > MAX_DOC_PENDING) {
      c->err = TETHER_ETOOBIG;
      return 3;
    }
    uint64_t *ns = realloc(c->seqs, cap * sizeof *ns);
    if (!ns) {
      c->err = TETHER_ENOMEM;
      return 3;
    }
    c->seqs = ns;
    c->cap = cap;
  }
  c->seqs[c->n++] = tt_be64_get((const uint8_t *)k.data + c->plen);
  return 0;
}

static size_t pend_prefix(uint8_t *out, const uint8_t *key, size_t klen) {
  memcpy(out, key, klen);
  out[klen] = 0;
  return klen + 1;
}

int tt_r_has_pending_after(tt_txn *t, const uint8_t *key, size_t klen,
                           uint64_t after) {
  uint8_t pre[TT_R_KEYMAX + 1];
  if (klen > TT_R_KEYMAX) return TETHER_EINVAL;
  pend_ctx c = {pre, pend_prefix(pre, key, klen), after, NULL, 0, 0, 0};
  int rc = tt_scan(t, TT_TABLE_PENDING, (tt_bytes){pre, c.plen},
                   pend_first_cb, &c);
  if (rc < 0) return rc;
  return rc == 1;
}

static int pend_only_cb(void *vctx, tt_bytes k, tt_bytes v) {
  (void)v;
  pend_ctx *c = vctx;
  if (k.len != c->plen + 8 || memcmp(k.data, c->prefix, c->plen) != 0)
    return 2;
  if (tt_be64_get((const uint8_t *)k.data + c->plen) != c->after ||
      ++c->n > 1)
    return 1; /* another one */
  return 0;
}

int tt_r_pending_only(tt_txn *t, const uint8_t *key, size_t klen,
                      uint64_t seq) {
  uint8_t pre[TT_R_KEYMAX + 1];
  if (klen > TT_R_KEYMAX) return TETHER_EINVAL;
  pend_ctx c = {pre, pend_prefix(pre, key, klen), seq, NULL, 0, 0, 0};
  int rc = tt_scan(t, TT_TABLE_PENDING, (tt_bytes){pre, c.plen},
                   pend_only_cb, &c);
  if (rc < 0) return rc;
  return rc != 1 && c.n == 1;
}

int tt_r_has_pending(tt_txn *t, const uint8_t *key, size_t klen) {
  return tt_r_has_pending_after(t, key, klen, 0);
}

int tt_r_view_recompute(tt_txn *t, const uint8_t *key, size_t klen) {
  uint8_t pre[TT_R_KEYMAX + 1];
  if (klen > TT_R_KEYMAX) return TETHER_EINVAL;
  pend_ctx c = {pre, pend_prefix(pre, key, klen), 0, NULL, 0, 0, 0};
  tt_rdoc d = {0};
  json_t *cur = NULL, *ij = NULL;
  tt_intent in = {0};
  int rc = tt_scan(t, TT_TABLE_PENDING, (tt_bytes){pre, c.plen},
                   pend_collect_cb, &c);
  if (rc == 3) rc = c.err;
  if (rc < 0) goto out;
  rc = 0;
  if (c.n == 0) {
    rc = tt_del(t, TT_TABLE_VIEW, (tt_bytes){key, klen});
    goto out;
  }
  if ((rc = tt_r_doc_load(t, key, klen, &d))) goto out;
  cur = d.obj ? json_incref(d.obj) : NULL;
  for (size_t i = 0; i < c.n; i++) {
    uint8_t sk[8];
    tt_bytes v;
    tt_robx o;
    tt_r_seqkey(sk, c.seqs[i]);
    /* tmp: parsed into IJ before anything is written */
    rc = tt_get_tmp(t, TT_TABLE_OUTBOX, (tt_bytes){sk, 8}, &v);
    if (rc == TETHER_ENOTFOUND) rc = TETHER_ECORRUPT;
    if (rc) goto out;
    if ((rc = tt_r_obx_decode(v, &o))) goto out;
    ij = tt_json_load(o.json, o.json_len, 0);
    if (!ij || tt_intent_from_json(ij, &in, NULL, 0) != 0) {
      rc = TETHER_ECORRUPT;
      goto out;
    }
    json_t *next = NULL;
    rc = tt_view_apply(cur, &in, &next);
    if (rc == TETHER_ETYPE) {
      /* No longer fits the re-based value; the server will reject it and
       * the outcome will remove it from the outbox. */
      rc = 0;
    } else if (rc) {
      goto out;
    } else {
      json_decref(cur);
      cur = next;
    }
    tt_intent_clear(&in);
    json_decref(ij);
    ij = NULL;
  }
  rc = tt_r_overlay_store(t, key, klen, cur);
out:
  tt_intent_clear(&in);
  json_decref(ij);
  json_decref(cur);
  tt_r_doc_clear(&d);
  free(c.seqs);
  return rc;
}

/* ---- reads --------------------------------------------------------------- */

static int check_names(const char *coll, const char *id) {
  if (!coll || !id || !tt_name_valid(coll) || !tt_name_valid(id))
    return TETHER_EINVAL;
  return 0;
}

int tt_replica_get(tt_replica *r, const char *coll, const char *id,
                   json_t **out) {
  if (!out) return TETHER_EINVAL;
  *out = NULL;
  if (!r) return TETHER_EINVAL;
  int rc = check_names(coll, id);
  if (rc) return rc;
  uint8_t key[TT_R_KEYMAX];
  size_t kl = tt_r_dockey(key, coll, id);
  tt_txn *t = NULL;
  if ((rc = tt_r_begin(r, 0, &t))) return rc;
  json_t *o = NULL;
  rc = tt_r_view_load(t, key, kl, &o, NULL);
  tt_r_end(r, t);
  if (rc) return rc;
  if (!o) return TETHER_ENOTFOUND;
  *out = o;
  return 0;
}

/* list: documents are read in batches, each in its own short read
 * transaction, and handed to the callback outside any transaction so the
 * callback may call back into the replica (even write). */
#define LIST_BATCH 256

typedef struct {
  uint8_t *key;
  size_t klen;
  tt_bytes val; /* copy, owned */
} kv;

typedef struct {
  const uint8_t *prefix;
  size_t plen;
  kv *items;
  size_t n;
  int full;
  int err;
} batch_ctx;

static void batch_free(batch_ctx *b) {
  for (size_t i = 0; i < b->n; i++) {
    free(b->items[i].key);
    free((void *)b->items[i].val.data);
  }
  b->n = 0;
}

static int batch_cb(void *vctx, tt_bytes k, tt_bytes v) {
  batch_ctx *b = vctx;
  if (k.len < b->plen || memcmp(k.data, b->prefix, b->plen) != 0) return 1;
  if (b->n == LIST_BATCH) {
    b->full = 1;
    return 1;
  }
  kv *e = &b->items[b->n];
  e->key = malloc(k.len);
  e->val.data = malloc(v.len ? v.len : 1);
  if (!e->key || !e->val.data) {
    free(e->key);
    free((void *)e->val.data);
    b->err = TETHER_ENOMEM;
    return 2;
  }
  memcpy(e->key, k.data, k.len);
  memcpy((void *)e->val.data, v.data, v.len);
  e->klen = k.len;
  e->val.len = v.len;
  b->n++;
  return 0;
}

static int key_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl) {
  size_t m = al < bl ? al : bl;
  int c = memcmp(a, b, m);
  if (c) return c;
  return al < bl ? -1 : al > bl ? 1 : 0;
}

typedef struct {
  char *id;
  json_t *doc;
} list_item;

static int list_walk(tt_replica *r, const char *coll, tt_replica_doc_cb cb,
                     void *ctx) {
  size_t plen = strlen(coll) + 1;
  uint8_t *from = malloc(TT_R_KEYMAX + 1);
  kv *di = malloc(LIST_BATCH * sizeof *di);
  kv *vi = malloc(LIST_BATCH * sizeof *vi);
  list_item *out = malloc(2 * LIST_BATCH * sizeof *out);
  batch_ctx db = {NULL, plen, di, 0, 0, 0};
  batch_ctx vb = {NULL, plen, vi, 0, 0, 0};
  size_t nout = 0, flen = plen;
  int rc = 0;
  if (!from || !di || !vi || !out) {
    rc = TETHER_ENOMEM;
    goto out;
  }
  memcpy(from, coll, plen); /* includes the NUL */
  db.prefix = vb.prefix = (const uint8_t *)coll;
  for (;;) {
    tt_txn *t = NULL;
    db.full = vb.full = 0;
    if ((rc = tt_r_begin(r, 0, &t))) goto out;
    rc = tt_scan(t, TT_TABLE_DOCS, (tt_bytes){from, flen}, batch_cb, &db);
    if (rc >= 0 && !db.err)
      rc = tt_scan(t, TT_TABLE_VIEW, (tt_bytes){from, flen}, batch_cb, &vb);
    tt_r_end(r, t);
    if (db.err || vb.err) rc = db.err ? db.err : vb.err;
    if (rc < 0) goto out;
    rc = 0;
    /* Everything up to BOUND is complete in both batches. */
    const kv *bound = NULL;
    if (db.full) bound = &db.items[db.n - 1];
    if (vb.full) {
      const kv *vl = &vb.items[vb.n - 1];
      if (!bound || key_cmp(vl->key, vl->klen, bound->key, bound->klen) < 0)
        bound = vl;
    }
    size_t i = 0, j = 0;
    while (i < db.n || j < vb.n) {
      int c;
      if (i == db.n)
        c = 1;
      else if (j == vb.n)
        c = -1;
      else
        c = key_cmp(db.items[i].key, db.items[i].klen, vb.items[j].key,
                    vb.items[j].klen);
      const kv *e = c <= 0 ? &db.items[i] : &vb.items[j];
      if (bound && key_cmp(e->key, e->klen, bound->key, bound->klen) > 0)
        break;
      json_t *doc = NULL;
      if (c < 0) {
        tt_rdoc d;
        rc = tt_r_doc_decode(e->val, &d);
        doc = d.obj;
      } else {
        rc = tt_r_overlay_decode(vb.items[j].val, &doc);
      }
      if (rc) goto out;
      if (c <= 0) i++;
      if (c >= 0) j++;
      if (!doc) continue;
      size_t il = e->klen - plen;
      char *id = malloc(il + 1);
      if (!id) {
        json_decref(doc);
        rc = TETHER_ENOMEM;
        goto out;
      }
      memcpy(id, e->key + plen, il);
      id[il] = 0;
      out[nout].id = id;
      out[nout].doc = doc;
      nout++;
    }
    if (bound) {
      if (bound->klen > TT_R_KEYMAX) {
        rc = TETHER_ECORRUPT;
        goto out;
      }
      /* The next key after BOUND is BOUND followed by a zero byte. */
      memcpy(from, bound->key, bound->klen);
      from[bound->klen] = 0;
      flen = bound->klen + 1;
    }
    batch_free(&db);
    batch_free(&vb);
    for (size_t k = 0; k < nout; k++) {
      if (rc == 0) rc = cb(ctx, out[k].id, out[k].doc);
      free(out[k].id);
      json_decref(out[k].doc);
    }
    nout = 0;
    if (rc || !bound) goto out;
  }
out:
  for (size_t k = 0; k < nout; k++) {
    free(out[k].id);
    json_decref(out[k].doc);
  }
  batch_free(&db);
  batch_free(&vb);
  free(from);
  free(di);
  free(vi);
  free(out);
  return rc;
}

int tt_replica_list(tt_replica *r, const char *coll, tt_replica_doc_cb cb,
                    void *ctx) {
  if (!r || !coll || !cb || !tt_name_valid(coll)) return TETHER_EINVAL;
  return list_walk(r, coll, cb, ctx);
}
