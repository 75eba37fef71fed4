/* replica.c — opening a replica, its meta records and the stored record
 * codecs the other replica files share (layouts in internal.h). */
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "replica/internal.h"

#define META_KEY(s) ((tt_bytes){(s), sizeof(s) - 1})

/* ---- meta ---------------------------------------------------------------- */

#define CHAIN_LEN (8 + TT_HASH_LEN + 8 + 8)

int tt_r_chain_load(tt_txn *t, tt_rchain *c) {
  tt_bytes v;
  int rc = tt_get(t, TT_TABLE_META, META_KEY("chain"), &v);
  if (rc == TETHER_ENOTFOUND) return TETHER_ECORRUPT;
  if (rc) return rc;
  if (v.len != CHAIN_LEN) return TETHER_ECORRUPT;
  const uint8_t *p = v.data;
  c->next_seq = tt_be64_get(p);
  memcpy(c->head, p + 8, TT_HASH_LEN);
  c->hlc = tt_be64_get(p + 8 + TT_HASH_LEN);
  c->acked = tt_be64_get(p + 16 + TT_HASH_LEN);
  if (c->next_seq == 0 || c->acked >= c->next_seq) return TETHER_ECORRUPT;
  return 0;
}

int tt_r_chain_store(tt_txn *t, const tt_rchain *c) {
  uint8_t b[CHAIN_LEN];
  tt_be64_put(b, c->next_seq);
  memcpy(b + 8, c->head, TT_HASH_LEN);
  tt_be64_put(b + 8 + TT_HASH_LEN, c->hlc);
  tt_be64_put(b + 16 + TT_HASH_LEN, c->acked);
  return tt_put(t, TT_TABLE_META, META_KEY("chain"), (tt_bytes){b, sizeof b});
}

static int first_ackidx_cb(void *ctx, tt_bytes k, tt_bytes v) {
  (void)v;
  *(int *)ctx = k.len == TT_R_ACKIDX_LEN;
  return 1;
}

static int be64_meta_load(tt_txn *t, tt_bytes key, uint64_t *out,
                          int *found) {
  tt_bytes v;
  *out = 0;
  *found = 0;
  int rc = tt_get(t, TT_TABLE_META, key, &v);
  if (rc == TETHER_ENOTFOUND) return 0;
  if (rc) return rc;
  if (v.len != 8) return TETHER_ECORRUPT;
  *out = tt_be64_get(v.data);
  *found = 1;
  return 0;
}

int tt_r_own_load(tt_txn *t, uint64_t *own) {
  int found;
  return be64_meta_load(t, META_KEY("own"), own, &found);
}

static int be64_meta_store(tt_txn *t, tt_bytes key, uint64_t val) {
  uint8_t b[8];
  tt_be64_put(b, val);
  return tt_put(t, TT_TABLE_META, key, (tt_bytes){b, 8});
}

static int meta_del(tt_txn *t, tt_bytes key) {
  int rc = tt_del(t, TT_TABLE_META, key);
  return rc == TETHER_ENOTFOUND ? 0 : rc;
}

int tt_r_own_update(tt_txn *t, const tt_rchain *c) {
  const uint8_t tag = TT_R_ACKIDX_TAG;
  int waiting = 0, held;
  uint64_t own, hold;
  int rc = tt_scan(t, TT_TABLE_OUTBOX, (tt_bytes){&tag, 1}, first_ackidx_cb,
                   &waiting);
  if (rc < 0) return rc;
  if (waiting) return 0;
  if ((rc = tt_r_own_load(t, &own)) ||
      (rc = be64_meta_load(t, META_KEY("ownhold"), &hold, &held)))
    return rc;
  uint64_t want = c->acked;
  if (held && want >= hold) want = hold - 1;
  if (want <= own) return 0;
  return be64_meta_store(t, META_KEY("own"), want);
}

int tt_r_own_hold(tt_txn *t, uint64_t seq) {
  /* "own" itself never needs lowering: it is at most "acked", below any
   * intent still waiting for its outcome. */
  int held;
  uint64_t hold;
  int rc;
  if (seq == 0) return TETHER_EINVAL;
  if ((rc = be64_meta_load(t, META_KEY("ownhold"), &hold, &held)))
    return rc;
  if (held && hold <= seq) return 0;
  return be64_meta_store(t, META_KEY("ownhold"), seq);
}

int tt_r_own_release(tt_txn *t) { return meta_del(t, META_KEY("ownhold")); }

int tt_r_own_reset(tt_txn *t) {
  /* Held at 1, not just cleared: "acked" stays what it was, and nothing
   * of ours may be skipped until the pull from [] has caught up. */
  int rc = meta_del(t, META_KEY("own"));
  return rc ? rc : be64_meta_store(t, META_KEY("ownhold"), 1);
}

int tt_r_cursor_parse(const json_t *a, uint64_t **cur, size_t *n,
                      int err_code) {
  *cur = NULL;
  *n = 0;
  if (!json_is_array(a)) return err_code;
  size_t len = json_array_size(a);
  if (len > TT_R_MAX_PARTITIONS) return err_code;
  if (len == 0) return 0;
  uint64_t *c = malloc(len * sizeof *c);
  if (!c) return TETHER_ENOMEM;
  for (size_t i = 0; i < len; i++) {
    const json_t *e = json_array_get(a, i);
    if (!json_is_integer(e) || json_integer_value(e) < 0) {
      free(c);
      return err_code;
    }
    c[i] = (uint64_t)json_integer_value(e);
  }
  *cur = c;
  *n = len;
  return 0;
}

int tt_r_cursor_load(tt_txn *t, uint64_t **cur, size_t *n) {
  *cur = NULL;
  *n = 0;
  tt_bytes v;
  int rc = tt_get(t, TT_TABLE_META, META_KEY("cursor"), &v);
  if (rc == TETHER_ENOTFOUND) return TETHER_ECORRUPT;
  if (rc) return rc;
  json_t *a = tt_json_load(v.data, v.len, 0);
  if (!a) return TETHER_ECORRUPT;
  rc = tt_r_cursor_parse(a, cur, n, TETHER_ECORRUPT);
  json_decref(a);
  return rc;
}

/* ---- keys ---------------------------------------------------------------- */

size_t tt_r_dockey(uint8_t *out, const char *coll, const char *id) {
  size_t lc = strlen(coll), li = strlen(id);
  memcpy(out, coll, lc);
  out[lc] = 0;
  memcpy(out + lc + 1, id, li);
  return lc + 1 + li;
}

int tt_r_dockey_split(const uint8_t *key, size_t klen, char *coll, char *id) {
  const uint8_t *z = memchr(key, 0, klen);
  if (!z) return TETHER_ECORRUPT;
  size_t lc = (size_t)(z - key), li = klen - lc - 1;
  if (lc == 0 || lc > TT_MAX_NAME || li == 0 || li > TT_MAX_NAME ||
      memchr(z + 1, 0, li) || !tt_utf8_valid(key, lc) ||
      !tt_utf8_valid(z + 1, li))
    return TETHER_ECORRUPT;
  memcpy(coll, key, lc);
  coll[lc] = 0;
  memcpy(id, z + 1, li);
  id[li] = 0;
  return 0;
}

void tt_r_seqkey(uint8_t out[8], uint64_t seq) { tt_be64_put(out, seq); }

/* ---- helpers ------------------------------------------------------------- */

int tt_r_value_size_ok(const json_t *v) {
  /* Counted without building it; stops as soon as the limit is passed. */
  return tt_canon_len(v, TT_MAX_VALUE, NULL);
}

char *tt_r_dump(const json_t *v, size_t *len) {
  return tt_canon_n(v, len);
}

int tt_r_http_error(tt_replica *r, const char *what, int status,
                    const json_t *resp) {
  const char *code = NULL, *msg = NULL;
  if (json_is_object(resp)) {
    code = json_string_value(json_object_get(resp, "error"));
    msg = json_string_value(json_object_get(resp, "message"));
  }
  TT_R_ERR(r, "%s: HTTP %d%s%s%s%s", what, status, code ? " " : "",
           code ? code : "", msg ? ": " : "", msg ? msg : "");
  if (status == 409 && code && strcmp(code, "gap") == 0) return TETHER_EGAP;
  if (status == 409 && code && strcmp(code, "chain") == 0)
    return TETHER_ECHAIN;
  if (status >= 400 && status < 500) return TETHER_EREJECTED;
  if (status >= 500 && status < 600) return TETHER_ESERVER;
  return TETHER_EPROTO;
}

/* ---- confirmed documents ------------------------------------------------- */

void tt_r_doc_clear(tt_rdoc *d) {
  json_decref(d->obj);
  memset(d, 0, sizeof *d);
}

int tt_r_doc_decode(tt_bytes val, tt_rdoc *out) {
  memset(out, 0, sizeof *out);
  const uint8_t *p = val.data;
  if (val.len < 9 || p[0] > 1) return TETHER_ECORRUPT;
  out->exists = 1;
  out->deleted = p[0] & 1;
  out->version = tt_be64_get(p + 1);
  if (out->deleted) return val.len == 9 ? 0 : TETHER_ECORRUPT;
  json_t *o = tt_json_load((const char *)p + 9, val.len - 9, 0);
  if (!json_is_object(o)) {
    json_decref(o);
    memset(out, 0, sizeof *out);
    return TETHER_ECORRUPT;
  }
  out->obj = o;
  return 0;
}

int tt_r_doc_load(tt_txn *t, const uint8_t *key, size_t klen, tt_rdoc *out) {
  memset(out, 0, sizeof *out);
  tt_bytes v;
  int rc = tt_get(t, TT_TABLE_DOCS, (tt_bytes){key, klen}, &v);
  if (rc == TETHER_ENOTFOUND) return 0;
  if (rc) return rc;
  return tt_r_doc_decode(v, out);
}

/* Serializes HDR_LEN header bytes followed by the canonical JSON of OBJ
 * (if any) into one malloc'd buffer in a single pass. */
static int encode_with_json(const uint8_t *hdr, size_t hdr_len,
                            const json_t *obj, uint8_t **buf, size_t *len) {
  tt_buf b = {0};
  int rc = tt_buf_add(&b, hdr, hdr_len);
  if (rc == 0 && obj) rc = tt_canon_buf(&b, obj, TT_R_MAX_RECORD - hdr_len);
  if (rc) {
    tt_buf_free(&b);
    return rc == TETHER_ETOOBIG ? rc : TETHER_ENOMEM;
  }
  *buf = b.data;
  *len = b.len;
  return 0;
}

int tt_r_doc_store(tt_txn *t, const uint8_t *key, size_t klen,
                   uint64_t version, int deleted, const json_t *obj) {
  uint8_t hdr[9];
  hdr[0] = deleted ? 1 : 0;
  tt_be64_put(hdr + 1, version);
  uint8_t *buf = NULL;
  size_t len = 0;
  int rc = encode_with_json(hdr, sizeof hdr, deleted ? NULL : obj, &buf, &len);
  if (rc) return rc;
  rc = tt_put(t, TT_TABLE_DOCS, (tt_bytes){key, klen}, (tt_bytes){buf, len});
  free(buf);
  return rc;
}

/* ---- overlay ------------------------------------------------------------- */

int tt_r_overlay_decode(tt_bytes val, json_t **obj) {
  *obj = NULL;
  const uint8_t *p = val.data;
  if (val.len < 1 || p[0] > 1) return TETHER_ECORRUPT;
  if (p[0] == 1) return val.len == 1 ? 0 : TETHER_ECORRUPT;
  json_t *o = tt_json_load((const char *)p + 1, val.len - 1, 0);
  if (!json_is_object(o)) {
    json_decref(o);
    return TETHER_ECORRUPT;
  }
  *obj = o;
  return 0;
}

int tt_r_overlay_load(tt_txn *t, const uint8_t *key, size_t klen, int *has,
                      json_t **obj) {
  *has = 0;
  *obj = NULL;
  tt_bytes v;
  int rc = tt_get(t, TT_TABLE_VIEW, (tt_bytes){key, klen}, &v);
  if (rc == TETHER_ENOTFOUND) return 0;
  if (rc) return rc;
  rc = tt_r_overlay_decode(v, obj);
  if (rc == 0) *has = 1;
  return rc;
}

int tt_r_overlay_store(tt_txn *t, const uint8_t *key, size_t klen,
                       const json_t *obj) {
  uint8_t hdr = obj ? 0 : 1;
  uint8_t *buf = NULL;
  size_t len = 0;
  int rc = encode_with_json(&hdr, 1, obj, &buf, &len);
  if (rc) return rc;
  rc = tt_put(t, TT_TABLE_VIEW, (tt_bytes){key, klen}, (tt_bytes){buf, len});
  free(buf);
  return rc;
}

/* ---- outbox records ------------------------------------------------------ */

int tt_r_obx_decode(tt_bytes val, tt_robx *out) {
  memset(out, 0, sizeof *out);
  const uint8_t *p = val.data, *end = p + val.len;
  if (val.len < 1 + 1 + 4 + 8 + 2 || (p[0] != 1 && p[0] != 2) ||
      p[1] > TT_ROBX_ACKED || (p[0] == 2 && val.len < 1 + 1 + 4 + 8 + 8 + 2))
    return TETHER_ECORRUPT;
  out->state = p[1];
  out->p = tt_be32_get(p + 2);
  out->commit = tt_be64_get(p + 6);
  p += 14;
  if (((const uint8_t *)val.data)[0] == 2) {
    out->base = tt_be64_get(p);
    out->has_base = 1;
    p += 8;
  }
  size_t kl = ((size_t)p[0] << 8) | p[1];
  p += 2;
  if (kl == 0 || kl > TT_R_KEYMAX || (size_t)(end - p) < kl + 2)
    return TETHER_ECORRUPT;
  out->key = p;
  out->klen = kl;
  p += kl;
  size_t ll = ((size_t)p[0] << 8) | p[1];
  p += 2;
  if (ll > 0) {
    if (ll - 1 > TT_MAX_LABEL || (size_t)(end - p) < ll - 1 ||
        !tt_utf8_valid(p, ll - 1))
      return TETHER_ECORRUPT;
    out->label = (const char *)p;
    out->label_len = ll - 1;
    p += ll - 1;
  }
  if (p == end) return TETHER_ECORRUPT;
  out->json = (const char *)p;
  out->json_len = (size_t)(end - p);
  return 0;
}

int tt_r_obx_encode(const tt_robx *o, uint8_t **buf, size_t *len) {
  if (o->klen == 0 || o->klen > TT_R_KEYMAX ||
      (o->label && o->label_len > TT_MAX_LABEL))
    return TETHER_EINVAL;
  size_t hdr = o->has_base ? 24 : 16;
  size_t n = hdr + o->klen + 2 + (o->label ? o->label_len : 0) + o->json_len;
  uint8_t *b = malloc(n), *p = b;
  if (!b) return TETHER_ENOMEM;
  p[0] = o->has_base ? 2 : 1;
  p[1] = (uint8_t)o->state;
  tt_be32_put(p + 2, o->p);
  tt_be64_put(p + 6, o->commit);
  p += 14;
  if (o->has_base) {
    tt_be64_put(p, o->base);
    p += 8;
  }
  p[0] = (uint8_t)(o->klen >> 8);
  p[1] = (uint8_t)o->klen;
  p += 2;
  memcpy(p, o->key, o->klen);
  p += o->klen;
  size_t ll = o->label ? o->label_len + 1 : 0;
  p[0] = (uint8_t)(ll >> 8);
  p[1] = (uint8_t)ll;
  p += 2;
  if (o->label) {
    memcpy(p, o->label, o->label_len);
    p += o->label_len;
  }
  memcpy(p, o->json, o->json_len);
  *buf = b;
  *len = n;
  return 0;
}

void tt_r_ackidx_key(uint8_t out[TT_R_ACKIDX_LEN], uint32_t p,
                     uint64_t commit, uint64_t seq) {
  out[0] = TT_R_ACKIDX_TAG;
  tt_be32_put(out + 1, p);
  tt_be64_put(out + 5, commit);
  tt_be64_put(out + 13, seq);
}

int tt_r_ackidx_parse(tt_bytes k, uint32_t *p, uint64_t *commit,
                      uint64_t *seq) {
  const uint8_t *b = k.data;
  if (k.len != TT_R_ACKIDX_LEN || b[0] != TT_R_ACKIDX_TAG) return 0;
  *p = tt_be32_get(b + 1);
  *commit = tt_be64_get(b + 5);
  *seq = tt_be64_get(b + 13);
  return 1;
}

int tt_r_obx_drop(tt_txn *t, uint64_t seq, const uint8_t *key, size_t klen) {
  uint8_t sk[8];
  tt_r_seqkey(sk, seq);
  tt_bytes v;
  tt_robx o;
  int rc = tt_get_tmp(t, TT_TABLE_OUTBOX, (tt_bytes){sk, 8}, &v);
  if (rc == 0) {
    if ((rc = tt_r_obx_decode(v, &o))) return rc;
    if (o.state == TT_ROBX_ACKED) {
      uint8_t ik[TT_R_ACKIDX_LEN];
      tt_r_ackidx_key(ik, o.p, o.commit, seq);
      if ((rc = tt_del(t, TT_TABLE_OUTBOX, (tt_bytes){ik, sizeof ik})))
        return rc;
    }
  } else if (rc != TETHER_ENOTFOUND) {
    return rc;
  }
  return tt_r_obx_drop_pending(t, seq, key, klen);
}

int tt_r_obx_drop_pending(tt_txn *t, uint64_t seq, const uint8_t *key,
                          size_t klen) {
  uint8_t sk[8];
  tt_r_seqkey(sk, seq);
  int rc = tt_del(t, TT_TABLE_OUTBOX, (tt_bytes){sk, 8});
  if (rc) return rc;
  uint8_t pk[TT_R_KEYMAX + 9];
  if (klen > TT_R_KEYMAX) return TETHER_ECORRUPT;
  memcpy(pk, key, klen);
  pk[klen] = 0;
  memcpy(pk + klen + 1, sk, 8);
  return tt_del(t, TT_TABLE_PENDING, (tt_bytes){pk, klen + 9});
}

/* ---- status -------------------------------------------------------------- */

int tt_r_status_load(tt_txn *t, const uint8_t *key, size_t klen,
                     tt_rstatus *s) {
  memset(s, 0, sizeof *s);
  tt_bytes v;
  int rc = tt_get(t, TT_TABLE_STATUS, (tt_bytes){key, klen}, &v);
  if (rc == TETHER_ENOTFOUND) return 0;
  if (rc) return rc;
  const uint8_t *p = v.data;
  if (v.len != 13 || p[4] > 1) return TETHER_ECORRUPT;
  s->nconflicts = tt_be32_get(p);
  s->rejected = p[4];
  s->rejected_seq = tt_be64_get(p + 5);
  return 0;
}

int tt_r_status_store(tt_txn *t, const uint8_t *key, size_t klen,
                      const tt_rstatus *s) {
  if (s->nconflicts == 0 && !s->rejected)
    return tt_del(t, TT_TABLE_STATUS, (tt_bytes){key, klen});
  uint8_t b[13];
  tt_be32_put(b, s->nconflicts);
  b[4] = s->rejected ? 1 : 0;
  tt_be64_put(b + 5, s->rejected ? s->rejected_seq : 0);
  return tt_put(t, TT_TABLE_STATUS, (tt_bytes){key, klen},
                (tt_bytes){b, sizeof b});
}

/* ---- transactions and batches ------------------------------------------ */

int tt_r_begin(tt_replica *r, int write, tt_txn **t) {
  if (r->batch) {
    *t = r->batch;
    return 0;
  }
  return tt_txn_begin(r->st, 0, write, t);
}

int tt_r_commit(tt_replica *r, tt_txn *t) {
  if (t == r->batch) return 0;
  return tt_commit(t);
}

void tt_r_end(tt_replica *r, tt_txn *t) {
  if (t && t != r->batch) tt_abort(t);
}

int tt_r_no_batch(tt_replica *r, const char *what) {
  if (!r->batch) return 0;
  TT_R_ERR(r, "%s: not allowed while a batch is open", what);
  return TETHER_EBUSY;
}

int tt_replica_batch_begin(tt_replica *r) {
  if (!r) return TETHER_EINVAL;
  if (r->batch) {
    TT_R_ERR(r, "a batch is already open");
    return TETHER_EBUSY;
  }
  r->err[0] = 0;
  return tt_txn_begin(r->st, 0, 1, &r->batch);
}

int tt_replica_batch_commit(tt_replica *r) {
  if (!r) return TETHER_EINVAL;
  if (!r->batch) {
    TT_R_ERR(r, "no batch is open");
    return TETHER_EINVAL;
  }
  tt_txn *t = r->batch;
  r->batch = NULL;
  int rc = tt_commit(t);
  if (rc) TT_R_ERR(r, "batch commit: %s", tether_strerror(rc));
  return rc;
}

void tt_replica_batch_abort(tt_replica *r) {
  if (!r || !r->batch) return;
  tt_abort(r->batch);
  r->batch = NULL;
}

/* ---- lifecycle ----------------------------------------------------------- */

int tt_replica_create(tt_store *st, const uint8_t id[TT_ID_LEN],
                      const char *server_url) {
  if (!st || !id || !server_url) return TETHER_EINVAL;
  size_t ul = strlen(server_url);
  if (ul == 0 || ul > TT_R_MAX_URL) return TETHER_EINVAL;
  tt_txn *t = NULL;
  int rc = tt_txn_begin(st, 0, 1, &t);
  if (rc) return rc;
  tt_bytes v;
  rc = tt_get(t, TT_TABLE_META, META_KEY("id"), &v);
  if (rc == 0) rc = TETHER_EEXIST;
  if (rc != TETHER_ENOTFOUND) goto out;
  uint8_t fmt[4];
  tt_be32_put(fmt, TT_R_FORMAT);
  tt_rchain c;
  memset(&c, 0, sizeof c);
  c.next_seq = 1;
  if ((rc = tt_put(t, TT_TABLE_META, META_KEY("format"),
                   (tt_bytes){fmt, 4})) ||
      (rc = tt_put(t, TT_TABLE_META, META_KEY("id"),
                   (tt_bytes){id, TT_ID_LEN})) ||
      (rc = tt_put(t, TT_TABLE_META, META_KEY("url"),
                   (tt_bytes){server_url, ul})) ||
      (rc = tt_put(t, TT_TABLE_META, META_KEY("cursor"),
                   (tt_bytes){"[]", 2})) ||
      (rc = tt_r_chain_store(t, &c)))
    goto out;
  rc = tt_commit(t);
  t = NULL;
out:
  tt_abort(t);
  return rc;
}

/* Format 1 -> 2: index the acked intents. */
typedef struct {
  uint8_t (*keys)[TT_R_ACKIDX_LEN];
  size_t n, cap;
  int err;
} mig_ctx;

static int mig_cb(void *vctx, tt_bytes k, tt_bytes v) {
  mig_ctx *c = vctx;
  tt_robx o;
  if (k.len != 8) return 1; /* past the seq keys */
  if ((c->err = tt_r_obx_decode(v, &o))) return 2;
  if (o.state != TT_ROBX_ACKED) return 0;
  if (c->n == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 64;
    void *nk = realloc(c->keys, cap * sizeof *c->keys);
    if (!nk) {
      c->err = TETHER_ENOMEM;
      return 2;
    }
    c->keys = nk;
    c->cap = cap;
  }
  tt_r_ackidx_key(c->keys[c->n++], o.p, o.commit, tt_be64_get(k.data));
  return 0;
}

/* Format 1: adds the acked index. Format 2: only marked 3 (its layout-1
 * outbox records are read as they are). */
static int migrate(tt_store *st) {
  tt_txn *t = NULL;
  mig_ctx c = {0};
  int rc = tt_txn_begin(st, 0, 1, &t);
  if (rc) return rc;
  tt_bytes v;
  /* Another process may have migrated it meanwhile. */
  if ((rc = tt_get(t, TT_TABLE_META, META_KEY("format"), &v))) goto out;
  if (v.len != 4) {
    rc = TETHER_ECORRUPT;
    goto out;
  }
  if (tt_be32_get(v.data) == TT_R_FORMAT) goto out;
  if (tt_be32_get(v.data) == 1) {
    rc = tt_scan(t, TT_TABLE_OUTBOX, (tt_bytes){NULL, 0}, mig_cb, &c);
    if (rc == 2) rc = c.err;
    if (rc < 0) goto out;
  }
  for (size_t i = 0; i < c.n; i++)
    if ((rc = tt_put(t, TT_TABLE_OUTBOX, (tt_bytes){c.keys[i], TT_R_ACKIDX_LEN},
                     (tt_bytes){"", 0})))
      goto out;
  uint8_t fmt[4];
  tt_be32_put(fmt, TT_R_FORMAT);
  if ((rc = tt_put(t, TT_TABLE_META, META_KEY("format"), (tt_bytes){fmt, 4})))
    goto out;
  rc = tt_commit(t);
  t = NULL;
out:
  tt_abort(t);
  free(c.keys);
  return rc;
}

int tt_replica_open(tt_store *st, tt_replica **out) {
  if (!out) return TETHER_EINVAL;
  *out = NULL;
  if (!st) return TETHER_EINVAL;
  tt_replica *r = calloc(1, sizeof *r);
  if (!r) return TETHER_ENOMEM;
  r->st = st;
  tt_txn *t = NULL;
  int rc = tt_txn_begin(st, 0, 0, &t);
  if (rc) goto out;
  tt_bytes v;
  rc = tt_get(t, TT_TABLE_META, META_KEY("id"), &v);
  if (rc == TETHER_ENOTFOUND) rc = TETHER_ENOREPLICA;
  if (rc) goto out;
  if (v.len != TT_ID_LEN) {
    rc = TETHER_ECORRUPT;
    goto out;
  }
  memcpy(r->id, v.data, TT_ID_LEN);
  tt_hex_encode(r->id, TT_ID_LEN, r->id_hex);
  rc = tt_get(t, TT_TABLE_META, META_KEY("format"), &v);
  if (rc == TETHER_ENOTFOUND) rc = TETHER_ECORRUPT;
  if (rc) goto out;
  if (v.len != 4) {
    rc = TETHER_ECORRUPT;
    goto out;
  }
  if (tt_be32_get(v.data) == 1 || tt_be32_get(v.data) == 2) {
    tt_abort(t);
    t = NULL;
    if ((rc = migrate(st)) || (rc = tt_txn_begin(st, 0, 0, &t))) goto out;
  } else if (tt_be32_get(v.data) != TT_R_FORMAT) {
    rc = TETHER_EVERSION;
    goto out;
  }
  rc = tt_get(t, TT_TABLE_META, META_KEY("url"), &v);
  if (rc == TETHER_ENOTFOUND) rc = TETHER_ECORRUPT;
  if (rc) goto out;
  if (v.len == 0 || v.len > TT_R_MAX_URL || memchr(v.data, 0, v.len)) {
    rc = TETHER_ECORRUPT;
    goto out;
  }
  r->url = malloc(v.len + 1);
  if (!r->url) {
    rc = TETHER_ENOMEM;
    goto out;
  }
  memcpy(r->url, v.data, v.len);
  r->url[v.len] = 0;
  tt_rchain c;
  rc = tt_r_chain_load(t, &c);
out:
  tt_abort(t);
  if (rc) {
    tt_replica_close(r);
    return rc;
  }
  *out = r;
  return 0;
}

void tt_replica_close(tt_replica *r) {
  if (!r) return;
  tt_replica_batch_abort(r);
  json_decref(r->resume);
  free(r->url);
  free(r);
}

const uint8_t *tt_replica_id(const tt_replica *r) { return r->id; }
const char *tt_replica_server_url(const tt_replica *r) { return r->url; }
const char *tt_replica_last_error(const tt_replica *r) { return r->err; }
