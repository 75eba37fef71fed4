/* status.c — per-document sync status, replica-wide counts, open
 * conflicts and outcomes waiting for the app.
 *
 * Counts are computed by scanning (conflicts, unread rejections, live
 * documents): the first two tables stay small, and documents are counted
 * from the one-byte record headers without decoding JSON. The outbox
 * length is O(1) from the chain record. */
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "core/merge.h"
#include "replica/internal.h"

#define CB_BATCH 256

int tt_replica_status(tt_replica *r, const char *coll, const char *id,
                      tether_doc_status *out) {
  if (!r || !out || !coll || !id || !tt_name_valid(coll) ||
      !tt_name_valid(id))
    return TETHER_EINVAL;
  uint8_t key[TT_R_KEYMAX];
  size_t kl = tt_r_dockey(key, coll, id);
  tt_txn *t = NULL;
  int rc = tt_r_begin(r, 0, &t);
  if (rc) return rc;
  tt_rstatus st;
  if ((rc = tt_r_status_load(t, key, kl, &st))) goto out;
  if (st.nconflicts > 0) {
    *out = TETHER_CONFLICT;
  } else if (st.rejected) {
    *out = TETHER_REJECTED;
  } else {
    rc = tt_r_has_pending(t, key, kl);
    if (rc < 0) goto out;
    *out = rc ? TETHER_PENDING : TETHER_SYNCED;
    rc = 0;
  }
out:
  tt_r_end(r, t);
  return rc;
}

uint64_t tt_replica_outbox_len(tt_replica *r) {
  if (!r) return 0;
  tt_txn *t = NULL;
  tt_rchain ch;
  uint64_t n = 0;
  if (tt_r_begin(r, 0, &t)) return 0;
  if (tt_r_chain_load(t, &ch) == 0) n = ch.next_seq - 1 - ch.acked;
  tt_r_end(r, t);
  return n;
}

/* ---- stats --------------------------------------------------------------- */

typedef struct {
  uint64_t n;
  int err;
} count_ctx;

static int count_all_cb(void *ctx, tt_bytes k, tt_bytes v) {
  (void)k;
  (void)v;
  ((count_ctx *)ctx)->n++;
  return 0;
}

static int count_rejected_cb(void *ctx, tt_bytes k, tt_bytes v) {
  (void)k;
  count_ctx *c = ctx;
  if (v.len < 1) {
    c->err = TETHER_ECORRUPT;
    return 1;
  }
  if (((const uint8_t *)v.data)[0] == TT_OUT_REJECTED) c->n++;
  return 0;
}

/* Both DOCS and VIEW records start with a flag byte: 0 = live. */
static int count_live_cb(void *ctx, tt_bytes k, tt_bytes v) {
  (void)k;
  count_ctx *c = ctx;
  if (v.len < 1) {
    c->err = TETHER_ECORRUPT;
    return 1;
  }
  if (((const uint8_t *)v.data)[0] == 0) c->n++;
  return 0;
}

typedef struct {
  uint8_t **keys;
  size_t *lens;
  int *live;
  size_t n, cap;
  int err;
} ov_ctx;

static int ov_collect_cb(void *ctx, tt_bytes k, tt_bytes v) {
  ov_ctx *c = ctx;
  if (v.len < 1) {
    c->err = TETHER_ECORRUPT;
    return 1;
  }
  if (c->n == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 32;
    uint8_t **nk = realloc(c->keys, cap * sizeof *nk);
    if (nk) c->keys = nk;
    size_t *nl = realloc(c->lens, cap * sizeof *nl);
    if (nl) c->lens = nl;
    int *nv = realloc(c->live, cap * sizeof *nv);
    if (nv) c->live = nv;
    if (!nk || !nl || !nv) {
      c->err = TETHER_ENOMEM;
      return 1;
    }
    c->cap = cap;
  }
  uint8_t *kc = malloc(k.len ? k.len : 1);
  if (!kc) {
    c->err = TETHER_ENOMEM;
    return 1;
  }
  memcpy(kc, k.data, k.len);
  c->keys[c->n] = kc;
  c->lens[c->n] = k.len;
  c->live[c->n] = ((const uint8_t *)v.data)[0] == 0;
  c->n++;
  return 0;
}

int tt_replica_stats(tt_replica *r, tether_stats *out) {
  if (!r || !out) return TETHER_EINVAL;
  memset(out, 0, sizeof *out);
  tt_txn *t = NULL;
  ov_ctx ov = {0};
  int rc = tt_r_begin(r, 0, &t);
  if (rc) return rc;
  tt_rchain ch;
  if ((rc = tt_r_chain_load(t, &ch))) goto out;
  out->pending_intents = ch.next_seq - 1 - ch.acked;
  count_ctx c = {0, 0};
  rc = tt_scan(t, TT_TABLE_RCONFLICTS, (tt_bytes){NULL, 0}, count_all_cb, &c);
  if (rc < 0) goto out;
  out->conflicts = c.n;
  c = (count_ctx){0, 0};
  rc = tt_scan(t, TT_TABLE_ROUTCOMES, (tt_bytes){NULL, 0}, count_rejected_cb,
               &c);
  if (rc > 0) rc = c.err;
  if (rc < 0) goto out;
  out->rejected = c.n;
  c = (count_ctx){0, 0};
  rc = tt_scan(t, TT_TABLE_DOCS, (tt_bytes){NULL, 0}, count_live_cb, &c);
  if (rc > 0) rc = c.err;
  if (rc < 0) goto out;
  /* Overlays replace their confirmed document in the view. */
  rc = tt_scan(t, TT_TABLE_VIEW, (tt_bytes){NULL, 0}, ov_collect_cb, &ov);
  if (rc > 0) rc = ov.err;
  if (rc < 0) goto out;
  rc = 0;
  int64_t docs = (int64_t)c.n;
  for (size_t i = 0; i < ov.n; i++) {
    tt_bytes v;
    int conf_live = 0;
    rc = tt_get(t, TT_TABLE_DOCS, (tt_bytes){ov.keys[i], ov.lens[i]}, &v);
    if (rc == 0)
      conf_live = v.len >= 1 && ((const uint8_t *)v.data)[0] == 0;
    else if (rc != TETHER_ENOTFOUND)
      goto out;
    rc = 0;
    docs += ov.live[i] - conf_live;
  }
  out->documents = docs < 0 ? 0 : (uint64_t)docs;
out:
  for (size_t i = 0; i < ov.n; i++) free(ov.keys[i]);
  free(ov.keys);
  free(ov.lens);
  free(ov.live);
  tt_r_end(r, t);
  return rc;
}

/* ---- batched walks over small tables ------------------------------------- */
/* Entries are read in batches in short read transactions and handed to the
 * callback outside any transaction, so it may call into the replica. */

typedef struct {
  uint8_t *key;
  size_t klen;
  json_t *obj;
} entry;

typedef struct {
  entry items[CB_BATCH];
  size_t n;
  int full;
  int json_off; /* bytes before the JSON in the value */
  int with_id;  /* add the key as "conflict" */
  int err;
} walk_ctx;

static void walk_free(walk_ctx *w) {
  for (size_t i = 0; i < w->n; i++) {
    free(w->items[i].key);
    json_decref(w->items[i].obj);
  }
  w->n = 0;
}

static int walk_cb(void *ctx, tt_bytes k, tt_bytes v) {
  walk_ctx *w = ctx;
  if (w->n == CB_BATCH) {
    w->full = 1;
    return 1;
  }
  if (v.len < (size_t)w->json_off) {
    w->err = TETHER_ECORRUPT;
    return 2;
  }
  json_t *o = tt_json_load((const char *)v.data + w->json_off,
                         v.len - (size_t)w->json_off, 0);
  if (!json_is_object(o)) {
    json_decref(o);
    w->err = TETHER_ECORRUPT;
    return 2;
  }
  if (w->with_id &&
      json_object_set_new(o, "conflict", json_stringn(k.data, k.len))) {
    json_decref(o);
    w->err = TETHER_ENOMEM;
    return 2;
  }
  uint8_t *kc = malloc(k.len + 1);
  if (!kc) {
    json_decref(o);
    w->err = TETHER_ENOMEM;
    return 2;
  }
  memcpy(kc, k.data, k.len);
  w->items[w->n++] = (entry){kc, k.len, o};
  return 0;
}

/* Reads the next batch at or after FROM. */
static int walk_batch(tt_replica *r, tt_table tab, const uint8_t *from,
                      size_t flen, walk_ctx *w) {
  tt_txn *t = NULL;
  w->full = 0;
  w->err = 0;
  int rc = tt_r_begin(r, 0, &t);
  if (rc) return rc;
  rc = tt_scan(t, tab, (tt_bytes){from, flen}, walk_cb, w);
  tt_r_end(r, t);
  if (rc == 2) rc = w->err;
  return rc < 0 ? rc : 0;
}

int tt_replica_conflicts(tt_replica *r, tt_replica_json_cb cb, void *ctx) {
  if (!r || !cb) return TETHER_EINVAL;
  walk_ctx *w = calloc(1, sizeof *w);
  uint8_t *from = malloc(2 * TT_MAX_NAME + 2);
  size_t flen = 0;
  int rc = 0;
  if (!w || !from) {
    rc = TETHER_ENOMEM;
    goto out;
  }
  w->with_id = 1;
  for (;;) {
    if ((rc = walk_batch(r, TT_TABLE_RCONFLICTS, from, flen, w))) goto out;
    for (size_t i = 0; i < w->n && rc == 0; i++) rc = cb(ctx, w->items[i].obj);
    if (rc || !w->full || w->n == 0) goto out;
    const entry *last = &w->items[w->n - 1];
    if (last->klen > 2 * TT_MAX_NAME) {
      rc = TETHER_ECORRUPT;
      goto out;
    }
    /* The next key after LAST is LAST followed by a zero byte. */
    memcpy(from, last->key, last->klen);
    from[last->klen] = 0;
    flen = last->klen + 1;
    walk_free(w);
  }
out:
  if (w) walk_free(w);
  free(w);
  free(from);
  return rc;
}

int tt_replica_take_outcomes(tt_replica *r, tt_replica_json_cb cb,
                             void *ctx) {
  if (!r || !cb) return TETHER_EINVAL;
  walk_ctx *w = calloc(1, sizeof *w);
  int rc = 0;
  if (!w) return TETHER_ENOMEM;
  w->json_off = 1;
  for (;;) {
    /* Taken outcomes are deleted, so each batch starts at the first. */
    if ((rc = walk_batch(r, TT_TABLE_ROUTCOMES, NULL, 0, w))) goto out;
    if (w->n == 0) goto out;
    size_t taken = 0;
    int crc = 0;
    for (; taken < w->n; taken++) {
      if ((crc = cb(ctx, w->items[taken].obj))) break;
    }
    if (taken > 0) {
      tt_txn *t = NULL;
      if ((rc = tt_r_begin(r, 1, &t))) goto out;
      for (size_t i = 0; i < taken && rc == 0; i++)
        rc = tt_del(t, TT_TABLE_ROUTCOMES,
                    (tt_bytes){w->items[i].key, w->items[i].klen});
      if (rc) {
        tt_r_end(r, t);
        goto out;
      }
      if ((rc = tt_r_commit(r, t))) goto out;
    }
    if (crc) {
      rc = crc;
      goto out;
    }
    if (!w->full) goto out;
    walk_free(w);
  }
out:
  walk_free(w);
  free(w);
  return rc;
}
