/* server.c — opening the reconciler on a store: meta (format version,
 * partition count, per-partition commit sequences), counters, error
 * bodies, and the read-only admin lookups.
 *
 * Meta keys (TT_TABLE_META):
 *   "server.format"      be32 TT_SRV_FORMAT            (partition 0)
 *   "server.partitions"  be32 P, fixed when the store is created (partition 0)
 *   "server.seq" be32 p  be64 last commit sequence of partition p (absent = 0),
 *                        stored in partition p and written by every write
 *                        transaction of p, so that on an optimistic backend
 *                        two servers writing p always conflict on it
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server_int.h"

static const char K_FORMAT[] = "server.format";
static const char K_PARTS[] = "server.partitions";
static const char K_SEQ[] = "server.seq"; /* + be32 partition */

_Static_assert(sizeof K_SEQ - 1 + 4 == TT_SRV_SEQ_KEY_LEN, "seq key length");

static tt_bytes cstr_key(const char *k) {
  tt_bytes b = {k, strlen(k)};
  return b;
}

size_t tt_srv_seq_key(uint8_t out[TT_SRV_SEQ_KEY_LEN], unsigned p) {
  memcpy(out, K_SEQ, sizeof K_SEQ - 1);
  tt_be32_put(out + sizeof K_SEQ - 1, p);
  return TT_SRV_SEQ_KEY_LEN;
}

int tt_srv_load_seq(tt_txn *t, unsigned p, uint64_t *out) {
  uint8_t k[TT_SRV_SEQ_KEY_LEN];
  tt_bytes key = {k, sizeof k}, val;
  int rc;

  tt_srv_seq_key(k, p);
  rc = tt_get(t, TT_TABLE_META, key, &val);
  if (rc == TETHER_ENOTFOUND) {
    *out = 0;
    return 0;
  }
  if (rc)
    return rc;
  if (val.len != 8)
    return TETHER_ECORRUPT;
  *out = tt_be64_get(val.data);
  return 0;
}

int tt_srv_store_seq(tt_txn *t, unsigned p, uint64_t seq) {
  uint8_t k[TT_SRV_SEQ_KEY_LEN], v[8];
  tt_bytes key = {k, sizeof k}, val = {v, sizeof v};

  tt_srv_seq_key(k, p);
  tt_be64_put(v, seq);
  return tt_put(t, TT_TABLE_META, key, val);
}

static int get_u32(tt_txn *t, const char *name, uint32_t *out) {
  tt_bytes val;
  int rc = tt_get(t, TT_TABLE_META, cstr_key(name), &val);
  if (rc)
    return rc;
  if (val.len != 4)
    return TETHER_ECORRUPT;
  *out = tt_be32_get(val.data);
  return 0;
}

static int put_u32(tt_txn *t, const char *name, uint32_t v) {
  uint8_t b[4];
  tt_bytes val = {b, 4};
  tt_be32_put(b, v);
  return tt_put(t, TT_TABLE_META, cstr_key(name), val);
}

/* Reads the meta into *nparts, creating it (with WANT partitions) when the
 * store is new. Two servers may create it at once: the loser's commit is
 * TETHER_ERETRY (it read the format key as absent) and it reads again. */
static int init_meta(tt_server *s, unsigned want, unsigned *nparts,
                     char *errbuf, size_t errlen) {
  tt_txn *t = NULL;
  uint32_t fmt = 0, np = 0;
  int rc, write = 0, tries = 0;

again:
  rc = tt_txn_begin(s->st, 0, write, &t);
  if (rc) {
    tt_errf(errbuf, errlen, "cannot begin a %s transaction: %s",
            write ? "write" : "read", tether_strerror(rc));
    goto out;
  }
  rc = get_u32(t, K_FORMAT, &fmt);
  if (rc == TETHER_ENOTFOUND && !write) {
    /* New store: only now take the writer, so a read-only store that is
     * already initialised opens fine. */
    tt_abort(t);
    t = NULL;
    write = 1;
    goto again;
  }
  if (rc == TETHER_ENOTFOUND) {
    rc = put_u32(t, K_FORMAT, TT_SRV_FORMAT);
    if (!rc)
      rc = put_u32(t, K_PARTS, want);
    if (!rc) {
      rc = tt_commit(t);
      t = NULL;
    }
    if (rc == TETHER_ERETRY && ++tries < TT_SRV_MAX_TRIES) {
      write = 0;
      goto again;
    }
    if (rc) {
      tt_errf(errbuf, errlen, "cannot initialise the server meta: %s",
              tether_strerror(rc));
      goto out;
    }
    *nparts = want;
    goto out;
  }
  if (rc) {
    tt_errf(errbuf, errlen, "cannot read the server format: %s",
            tether_strerror(rc));
    goto out;
  }
  if (fmt != TT_SRV_FORMAT && fmt != 2 && fmt != 1) {
    rc = TETHER_EVERSION;
    tt_errf(errbuf, errlen, "store has server format %u, this build reads %u",
            (unsigned)fmt, TT_SRV_FORMAT);
    goto out;
  }
  rc = get_u32(t, K_PARTS, &np);
  if (!rc && (np == 0 || np > TT_SRV_MAX_PARTITIONS))
    rc = TETHER_ECORRUPT;
  if (rc) {
    if (rc == TETHER_ENOTFOUND)
      rc = TETHER_ECORRUPT;
    tt_errf(errbuf, errlen, "cannot read the partition count: %s",
            tether_strerror(rc));
    goto out;
  }
  /* Format 1 with one partition is format 2 without its (never needed)
   * per-partition dedupe records: see server_int.h. */
  if (fmt == 1 && np != 1) {
    rc = TETHER_EVERSION;
    tt_errf(errbuf, errlen,
            "store has server format 1 with %u partitions, which lacks "
            "per-partition dedupe records; this build reads format %u (and "
            "format 1 with one partition)",
            (unsigned)np, TT_SRV_FORMAT);
    goto out;
  }
  *nparts = np;
  if (fmt < TT_SRV_FORMAT) {
    /* Mark the store as this format before anything of it is written, so
     * that an older build refuses it instead of reading format-3 records
     * as corrupt. Best effort: a read-only store stays as it is (and gets
     * no writes either). */
    tt_abort(t);
    t = NULL;
    if (tt_txn_begin(s->st, 0, 1, &t) == 0 &&
        put_u32(t, K_FORMAT, TT_SRV_FORMAT) == 0) {
      tt_commit(t);
      t = NULL;
    }
  }
out:
  tt_abort(t);
  return rc;
}

int tt_server_open(tt_store *st, const tt_policy_table *policies,
                   const tt_server_opts *opts, tt_server **out, char *errbuf,
                   size_t errlen) {
  tt_server *s = NULL;
  unsigned want = opts && opts->partitions ? opts->partitions : 1;
  int rc;

  if (out)
    *out = NULL;
  if (!st || !policies || !out) {
    tt_errf(errbuf, errlen, "tt_server_open: store, policies and out needed");
    return TETHER_EINVAL;
  }
  if (want > TT_SRV_MAX_PARTITIONS) {
    tt_errf(errbuf, errlen, "partitions: %u is over the maximum %u", want,
            TT_SRV_MAX_PARTITIONS);
    return TETHER_EINVAL;
  }
  s = calloc(1, sizeof *s);
  if (!s) {
    rc = TETHER_ENOMEM;
    tt_errf(errbuf, errlen, "out of memory");
    goto out;
  }
  s->st = st;
  s->pol = policies;
  s->max_skew_ms =
      opts && opts->max_skew_ms ? opts->max_skew_ms : TT_SRV_DEFAULT_SKEW;
  s->pull_limit =
      opts && opts->pull_limit ? opts->pull_limit : TT_SRV_DEFAULT_PULL;
  if (opts) {
    s->fault = opts->fault;
    s->fault_ctx = opts->fault_ctx;
  }
  rc = init_meta(s, want, &s->nparts, errbuf, errlen);
  if (rc)
    goto out;
  *out = s;
  s = NULL;
out:
  tt_server_close(s);
  return rc;
}

void tt_server_close(tt_server *s) {
  if (!s)
    return;
  free(s);
}

unsigned tt_server_partitions(const tt_server *s) { return s->nparts; }

int tt_server_replica_last_seq(tt_server *s, const uint8_t id[TT_ID_LEN],
                               uint64_t *last) {
  tt_txn *t = NULL;
  tt_bytes key = {id, TT_ID_LEN}, val;
  tt_srv_replica rec;
  int rc;

  *last = 0;
  rc = tt_txn_begin(s->st, tt_server_home_of(id, s->nparts), 0, &t);
  if (rc)
    return rc;
  rc = tt_get(t, TT_TABLE_REPLICAS, key, &val);
  if (!rc)
    rc = tt_srv_replica_decode(val, &rec);
  if (!rc)
    *last = rec.last_seq;
  tt_abort(t);
  return rc;
}

int tt_server_outcome(tt_server *s, const uint8_t id[TT_ID_LEN], uint64_t seq,
                      json_t **out) {
  uint8_t k[TT_ID_LEN + 8];
  tt_bytes key = {k, sizeof k}, val;
  int rc = TETHER_ENOTFOUND;

  *out = NULL;
  tt_srv_outcome_key(k, id, seq);
  /* The record lives in its document's partition, which (coll, id) would
   * name but (replica, seq) does not: ask each. */
  for (unsigned p = 0; p < s->nparts && rc == TETHER_ENOTFOUND; p++) {
    tt_txn *t = NULL;
    tt_srv_outcome o;
    json_t *conflict = NULL;

    rc = tt_txn_begin(s->st, p, 0, &t);
    if (rc)
      return rc;
    rc = tt_get(t, TT_TABLE_OUTCOMES, key, &val);
    if (!rc)
      rc = tt_srv_outcome_decode(val, seq, &o, &conflict);
    if (!rc) {
      *out = tt_srv_outcome_json(&o, 0);
      if (!*out)
        rc = TETHER_ENOMEM;
    }
    json_decref(conflict);
    tt_abort(t);
  }
  return rc;
}

void tt_server_get_stats(const tt_server *s, tt_server_stats *out) {
  /* atomic_load wants a non-const pointer in C11; reading never writes. */
  tt_server *m = (tt_server *)s;
  out->commits = atomic_load_explicit(&m->commits, memory_order_acquire);
  out->pushes = atomic_load_explicit(&m->pushes, memory_order_relaxed);
  out->pushes_held =
      atomic_load_explicit(&m->pushes_held, memory_order_relaxed);
  out->pulls = atomic_load_explicit(&m->pulls, memory_order_relaxed);
  out->intents_applied = atomic_load_explicit(&m->applied, memory_order_relaxed);
  out->intents_merged = atomic_load_explicit(&m->merged, memory_order_relaxed);
  out->intents_conflict =
      atomic_load_explicit(&m->conflict, memory_order_relaxed);
  out->intents_rejected =
      atomic_load_explicit(&m->rejected, memory_order_relaxed);
  out->intents_duplicate =
      atomic_load_explicit(&m->duplicate, memory_order_relaxed);
  out->concurrent_writes =
      atomic_load_explicit(&m->concurrent, memory_order_relaxed);
  out->bad_requests =
      atomic_load_explicit(&m->bad_requests, memory_order_relaxed);
}

json_t *tt_srv_error(const char *code, const char *fmt, ...) {
  char msg[256] = "";
  va_list ap;
  json_t *j;

  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  /* Keep what is UTF-8: a message quoting client bytes may have been cut
   * in the middle of a character. */
  msg[tt_utf8_prefix(msg, sizeof msg - 1)] = '\0';
  j = json_object();
  if (!j)
    return NULL;
  /* Each value made only when its set runs: a set that fails releases
   * its value, and one never made cannot leak. */
  if (json_object_set_new_nocheck(j, "v", json_integer(1)) ||
      json_object_set_new_nocheck(j, "error", json_string(code)) ||
      json_object_set_new_nocheck(j, "message", json_string(msg))) {
    json_decref(j);
    return NULL;
  }
  return j;
}
