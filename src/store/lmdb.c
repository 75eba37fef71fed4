/* lmdb.c — the embedded backend: one LMDB environment in a directory, one
 * named database per tt_table.
 *
 * Partitions: the environment is shared by every partition and LMDB has a
 * single writer, so the PARTITION argument of begin is accepted and ignored:
 * a write transaction covers every partition, and "one writer per
 * partition" is, here, one writer for the whole store. A thread must not
 * hold two write transactions at once (it would wait for itself); begin
 * reports that as TETHER_EBUSY instead of deadlocking.
 *
 * Threads: the environment is opened with MDB_NOTLS, so a read transaction
 * may be begun, used and ended on any thread. A write transaction must be
 * used and ended by the thread that began it (LMDB's writer lock is a mutex
 * owned by that thread).
 *
 * LMDB allows one open of an environment per process (closing a second
 * handle would drop the first one's file locks), so opens are registered by
 * (device, inode) and a second open of the same directory is TETHER_EBUSY. */
#include <errno.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "store/store.h"

/* Sparse on 64-bit Linux: only pages actually written take disk space. */
#define LM_DEFAULT_MAP_64 ((uint64_t)64 << 30)
#define LM_DEFAULT_MAP_32 ((uint64_t)1 << 30)
/* Readers are per read transaction (MDB_NOTLS), not per thread; the lock
 * file costs 64 bytes per slot. */
#define LM_MAX_READERS 1024
/* Values read back in a write transaction from a table it already wrote are
 * copied (see lm_stable); this bounds those copies per transaction. */
#define LM_COPY_MAX ((size_t)256 << 20)
#define LM_COPY_CHUNK ((size_t)64 << 10)

_Static_assert(TT_TABLE__COUNT <= 32, "dirty mask is 32 bits");

/* On-disk names of the tables: part of the store format, never renamed. */
static const char *const lm_table_names[TT_TABLE__COUNT] = {
    [TT_TABLE_META] = "meta",           [TT_TABLE_DOCS] = "docs",
    [TT_TABLE_CHANGES] = "changes",     [TT_TABLE_REPLICAS] = "replicas",
    [TT_TABLE_OUTCOMES] = "outcomes",   [TT_TABLE_CONFLICTS] = "conflicts",
    [TT_TABLE_AUDIT] = "audit",         [TT_TABLE_OUTBOX] = "outbox",
    [TT_TABLE_PENDING] = "pending",     [TT_TABLE_VIEW] = "view",
    [TT_TABLE_STATUS] = "status",       [TT_TABLE_RCONFLICTS] = "rconflicts",
    [TT_TABLE_ROUTCOMES] = "routcomes",
};

typedef struct lm_store {
  tt_store base;
  MDB_env *env;
  MDB_dbi dbi[TT_TABLE__COUNT];
  /* A read-only open of a store made before a table existed sees it as
   * empty rather than failing. */
  unsigned char present[TT_TABLE__COUNT];
  int read_only;
  size_t maxkey;
  char *path;
  dev_t dev;
  ino_t ino;
  struct lm_store *next_open;
  pthread_mutex_t mu; /* guards has_writer/writer */
  int has_writer;
  pthread_t writer;
} lm_store;

typedef struct lm_chunk {
  struct lm_chunk *next;
  size_t cap, used;
  unsigned char data[];
} lm_chunk;

typedef struct {
  tt_txn base;
  MDB_txn *txn;
  int write;
  /* Sticky: after a failed write LMDB refuses everything but abort. */
  int err;
  uint32_t dirty; /* tables written in this transaction */
  uint64_t writes; /* put/del calls, so a scan sees its callback wrote */
  lm_chunk *chunks;
  size_t copied;
} lm_txn;

static pthread_mutex_t lm_open_mu = PTHREAD_MUTEX_INITIALIZER;
static lm_store *lm_open_list;

static const unsigned char lm_empty[1];

static void lm_errf(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void lm_errf(char *errbuf, size_t errlen, const char *fmt, ...) {
  va_list ap;
  if (!errbuf || !errlen)
    return;
  va_start(ap, fmt);
  vsnprintf(errbuf, errlen, fmt, ap);
  va_end(ap);
}

static int lm_map(int rc) {
  switch (rc) {
  case MDB_SUCCESS:
    return 0;
  case MDB_NOTFOUND:
    return TETHER_ENOTFOUND;
  case MDB_MAP_FULL:
  case ENOSPC:
    return TETHER_EFULL;
  case EACCES:
  case EROFS:
    return TETHER_EREADONLY;
  case MDB_CORRUPTED:
  case MDB_PAGE_NOTFOUND:
  case MDB_INVALID:
    return TETHER_ECORRUPT;
  case MDB_VERSION_MISMATCH:
    return TETHER_EVERSION;
  case ENOMEM:
    return TETHER_ENOMEM;
  case MDB_READERS_FULL:
    return TETHER_EBUSY;
  case MDB_BAD_VALSIZE:
  case MDB_TXN_FULL:
    return TETHER_ETOOBIG;
  default:
    return TETHER_EIO;
  }
}

static const char *lm_hint(int err) {
  switch (err) {
  case TETHER_EFULL:
    return "free disk space or raise the map size (tt_store_opts.map_size)";
  case TETHER_EREADONLY:
    return "make the directory and its files writable by this user, or open "
           "read-only";
  case TETHER_ECORRUPT:
    return "the store is damaged or is not an LMDB store; restore it from a "
           "backup";
  case TETHER_EVERSION:
    return "the store was written by an incompatible LMDB version";
  case TETHER_ENOMEM:
    return "not enough memory or address space; lower the map size";
  case TETHER_EBUSY:
    return "too many concurrent readers; end idle read transactions";
  default:
    return "check the disk and the directory";
  }
}

/* Like mkdir -p; new directories get mode 0700 (a store holds user data).
 * Returns 0 or an errno. */
static int lm_mkdirs(const char *dir) {
  char *p = strdup(dir);
  int err = 0;
  if (!p)
    return ENOMEM;
  for (char *c = p + 1; *c; c++) {
    if (*c != '/')
      continue;
    *c = '\0';
    if (mkdir(p, 0700) != 0 && errno != EEXIST) {
      err = errno;
      goto out;
    }
    *c = '/';
  }
  if (mkdir(p, 0700) != 0 && errno != EEXIST)
    err = errno;
out:
  free(p);
  return err;
}

static int lm_register(lm_store *s) {
  int rc = 0;
  pthread_mutex_lock(&lm_open_mu);
  for (lm_store *o = lm_open_list; o; o = o->next_open) {
    if (o->dev == s->dev && o->ino == s->ino) {
      rc = TETHER_EBUSY;
      goto out;
    }
  }
  s->next_open = lm_open_list;
  lm_open_list = s;
out:
  pthread_mutex_unlock(&lm_open_mu);
  return rc;
}

static void lm_unregister(lm_store *s) {
  pthread_mutex_lock(&lm_open_mu);
  for (lm_store **pp = &lm_open_list; *pp; pp = &(*pp)->next_open) {
    if (*pp == s) {
      *pp = s->next_open;
      break;
    }
  }
  pthread_mutex_unlock(&lm_open_mu);
}

static void lm_release_writer(lm_store *s, lm_txn *t) {
  if (!t->write)
    return;
  /* Cleared before LMDB releases its lock, so the next writer's claim is
   * never overwritten. */
  pthread_mutex_lock(&s->mu);
  s->has_writer = 0;
  pthread_mutex_unlock(&s->mu);
}

static void lm_txn_free(lm_txn *t) {
  lm_chunk *c = t->chunks;
  while (c) {
    lm_chunk *n = c->next;
    free(c);
    c = n;
  }
  free(t);
}

/* In a write transaction, pages of a table already written in it are
 * private copies that LMDB edits in place on the next write, so a pointer
 * into them would change under the caller. Pages of an untouched table are
 * the read-only map and stay put until the transaction ends. Copying only
 * the former keeps the "valid until the transaction ends" contract. */
static int lm_stable(lm_txn *t, tt_table tab, MDB_val *v) {
  lm_chunk *c = t->chunks;
  unsigned char *dst;
  if (!t->write || !(t->dirty & (1u << tab)) || v->mv_size == 0)
    return 0;
  if (v->mv_size > LM_COPY_MAX - t->copied)
    return TETHER_ENOMEM;
  if (!c || c->cap - c->used < v->mv_size) {
    size_t cap = v->mv_size > LM_COPY_CHUNK ? v->mv_size : LM_COPY_CHUNK;
    c = malloc(sizeof(*c) + cap);
    if (!c)
      return TETHER_ENOMEM;
    c->cap = cap;
    c->used = 0;
    c->next = t->chunks;
    t->chunks = c;
  }
  dst = c->data + c->used;
  memcpy(dst, v->mv_data, v->mv_size);
  c->used += v->mv_size;
  t->copied += v->mv_size;
  v->mv_data = dst;
  return 0;
}

static int lm_begin(tt_store *base, unsigned partition, int write,
                    tt_txn **out) {
  lm_store *s = (lm_store *)base;
  lm_txn *t = NULL;
  int rc = 0, mrc;
  (void)partition; /* one environment for all partitions: see top */
  if (!out)
    return TETHER_EINVAL;
  *out = NULL;
  if (write && s->read_only)
    return TETHER_EREADONLY;
  t = calloc(1, sizeof(*t));
  if (!t)
    return TETHER_ENOMEM;
  t->base.store = base;
  t->write = !!write;
  if (write) {
    pthread_mutex_lock(&s->mu);
    if (s->has_writer && pthread_equal(s->writer, pthread_self()))
      rc = TETHER_EBUSY;
    pthread_mutex_unlock(&s->mu);
    if (rc)
      goto out;
  }
  mrc = mdb_txn_begin(s->env, NULL, write ? 0 : MDB_RDONLY, &t->txn);
  if (mrc) {
    rc = lm_map(mrc);
    goto out;
  }
  if (write) {
    pthread_mutex_lock(&s->mu);
    s->has_writer = 1;
    s->writer = pthread_self();
    pthread_mutex_unlock(&s->mu);
  }
  *out = &t->base;
  t = NULL;
out:
  if (t)
    lm_txn_free(t);
  return rc;
}

static int lm_get_any(tt_txn *base, tt_table tab, tt_bytes key, tt_bytes *val,
                      int stable) {
  lm_txn *t = (lm_txn *)base;
  lm_store *s = (lm_store *)base->store;
  MDB_val k, v;
  int rc, mrc;
  if (!val)
    return TETHER_EINVAL;
  val->data = NULL;
  val->len = 0;
  if (t->err)
    return t->err;
  if (!key.data || key.len == 0)
    return TETHER_EINVAL;
  /* A key longer than any storable key cannot be present. */
  if (key.len > s->maxkey || !s->present[tab])
    return TETHER_ENOTFOUND;
  k.mv_size = key.len;
  k.mv_data = (void *)key.data;
  mrc = mdb_get(t->txn, s->dbi[tab], &k, &v);
  if (mrc)
    return lm_map(mrc);
  rc = stable ? lm_stable(t, tab, &v) : 0;
  if (rc)
    return rc;
  val->data = v.mv_size ? v.mv_data : lm_empty;
  val->len = v.mv_size;
  return 0;
}

static int lm_get(tt_txn *base, tt_table tab, tt_bytes key, tt_bytes *val) {
  return lm_get_any(base, tab, key, val, 1);
}

/* Valid until the next put or del: the page may be edited in place by the
 * next write, which the caller has promised not to make before it is done
 * with the value. */
static int lm_get_tmp(tt_txn *base, tt_table tab, tt_bytes key,
                      tt_bytes *val) {
  return lm_get_any(base, tab, key, val, 0);
}

static int lm_put(tt_txn *base, tt_table tab, tt_bytes key, tt_bytes val) {
  lm_txn *t = (lm_txn *)base;
  lm_store *s = (lm_store *)base->store;
  MDB_val k, v;
  int mrc;
  if (t->err)
    return t->err;
  if (!t->write)
    return TETHER_EREADONLY;
  if (!key.data || key.len == 0 || (val.len && !val.data))
    return TETHER_EINVAL;
  if (key.len > s->maxkey)
    return TETHER_ETOOBIG;
  k.mv_size = key.len;
  k.mv_data = (void *)key.data;
  v.mv_size = val.len;
  v.mv_data = val.len ? (void *)val.data : (void *)lm_empty;
  t->dirty |= 1u << tab;
  t->writes++;
  mrc = mdb_put(t->txn, s->dbi[tab], &k, &v, 0);
  if (mrc) {
    t->err = lm_map(mrc);
    return t->err;
  }
  return 0;
}

static int lm_del(tt_txn *base, tt_table tab, tt_bytes key) {
  lm_txn *t = (lm_txn *)base;
  lm_store *s = (lm_store *)base->store;
  MDB_val k;
  int mrc;
  if (t->err)
    return t->err;
  if (!t->write)
    return TETHER_EREADONLY;
  if (!key.data || key.len == 0)
    return TETHER_EINVAL;
  if (key.len > s->maxkey)
    return 0; /* cannot be present */
  k.mv_size = key.len;
  k.mv_data = (void *)key.data;
  t->dirty |= 1u << tab;
  t->writes++;
  mrc = mdb_del(t->txn, s->dbi[tab], &k, NULL);
  if (mrc == MDB_NOTFOUND)
    return 0;
  if (mrc) {
    t->err = lm_map(mrc);
    return t->err;
  }
  return 0;
}

/* LMDB's default order: bytewise, a prefix before its extensions. */
static int lm_keycmp(const MDB_val *a, tt_bytes b) {
  size_t n = a->mv_size < b.len ? a->mv_size : b.len;
  int c = n ? memcmp(a->mv_data, b.data, n) : 0;
  if (c)
    return c;
  return a->mv_size < b.len ? -1 : a->mv_size > b.len;
}

static int lm_scan(tt_txn *base, tt_table tab, tt_bytes from, tt_scan_cb cb,
                   void *ctx) {
  lm_txn *t = (lm_txn *)base;
  lm_store *s = (lm_store *)base->store;
  MDB_cursor *c = NULL;
  MDB_val k, v;
  int rc = 0, mrc, skip = 0;
  /* Per scan, not per transaction: a callback may scan too. */
  unsigned char *scratch = NULL, *lastkey = NULL;
  size_t scratch_cap = 0;
  if (t->err)
    return t->err;
  if (from.len && !from.data)
    return TETHER_EINVAL;
  if (!s->present[tab])
    return 0;
  if (t->write && !(lastkey = malloc(s->maxkey)))
    return TETHER_ENOMEM;
  mrc = mdb_cursor_open(t->txn, s->dbi[tab], &c);
  if (mrc) {
    free(lastkey);
    return lm_map(mrc);
  }
  if (from.len == 0) {
    mrc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
  } else {
    /* LMDB rejects a search key longer than maxkey; start at its prefix
     * and skip the few stored keys that sort below the full FROM. */
    skip = from.len > s->maxkey;
    k.mv_size = skip ? s->maxkey : from.len;
    k.mv_data = (void *)from.data;
    mrc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
  }
  while (mrc == MDB_SUCCESS) {
    tt_bytes kb, vb;
    if (skip) {
      if (lm_keycmp(&k, from) < 0) {
        mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
        continue;
      }
      skip = 0;
    }
    kb.data = k.mv_data;
    kb.len = k.mv_size;
    vb.data = v.mv_size ? v.mv_data : lm_empty;
    vb.len = v.mv_size;
    if (t->write && (t->dirty & (1u << tab))) {
      /* The callback may write this table, editing the page KEY/VAL point
       * into (see lm_stable); give it a copy. */
      size_t need = k.mv_size + v.mv_size;
      if (need > scratch_cap) {
        unsigned char *n = realloc(scratch, need);
        if (!n) {
          rc = TETHER_ENOMEM;
          goto out;
        }
        scratch = n;
        scratch_cap = need;
      }
      memcpy(scratch, k.mv_data, k.mv_size);
      if (v.mv_size)
        memcpy(scratch + k.mv_size, v.mv_data, v.mv_size);
      kb.data = scratch;
      if (v.mv_size)
        vb.data = scratch + k.mv_size;
    }
    if (t->write) {
      uint64_t writes = t->writes;
      size_t klen = k.mv_size;
      memcpy(lastkey, k.mv_data, klen);
      rc = cb(ctx, kb, vb);
      if (rc)
        goto out;
      if (t->err) { /* the callback's write failed and poisoned T */
        rc = t->err;
        goto out;
      }
      if (writes != t->writes) {
        /* Rather than trust cursor fix-ups after the callback's writes,
         * resume at the first key above the last one visited, as the table
         * is now: entries the callback added beyond it are visited. */
        k.mv_size = klen;
        k.mv_data = lastkey;
        mrc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
        if (mrc == MDB_SUCCESS && k.mv_size == klen &&
            memcmp(k.mv_data, lastkey, klen) == 0)
          mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
        continue;
      }
    } else {
      rc = cb(ctx, kb, vb);
      if (rc)
        goto out;
    }
    mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
  }
  if (mrc != MDB_NOTFOUND)
    rc = lm_map(mrc);
out:
  mdb_cursor_close(c);
  free(scratch);
  free(lastkey);
  return rc;
}

/* 1 when the environment's data file no longer has a name on disk. */
static int lm_vanished(lm_store *s) {
  mdb_filehandle_t fd;
  struct stat st;
  if (mdb_env_get_fd(s->env, &fd) || fstat(fd, &st))
    return 0;
  return st.st_nlink == 0;
}

static int lm_commit(tt_txn *base) {
  lm_txn *t = (lm_txn *)base;
  lm_store *s = (lm_store *)base->store;
  int rc;
  lm_release_writer(s, t);
  if (t->err) {
    rc = t->err;
    mdb_txn_abort(t->txn);
  } else if (lm_vanished(s)) {
    /* The data file was deleted under us: a commit would land in an
     * unlinked file and be gone at the next open, so it must not be
     * acknowledged. */
    rc = TETHER_EIO;
    mdb_txn_abort(t->txn);
  } else {
    rc = lm_map(mdb_txn_commit(t->txn));
  }
  lm_txn_free(t);
  return rc;
}

static void lm_abort(tt_txn *base) {
  lm_txn *t = (lm_txn *)base;
  if (!t)
    return;
  lm_release_writer((lm_store *)base->store, t);
  mdb_txn_abort(t->txn);
  lm_txn_free(t);
}

static void lm_free(lm_store *s) {
  if (s->env)
    mdb_env_close(s->env);
  pthread_mutex_destroy(&s->mu);
  free(s->path);
  free(s);
}

static void lm_close(tt_store *base) {
  lm_store *s = (lm_store *)base;
  lm_unregister(s);
  lm_free(s);
}

static const tt_store_ops lm_ops = {
    .name = "lmdb",
    .begin = lm_begin,
    .get = lm_get,
    .get_tmp = lm_get_tmp,
    .put = lm_put,
    .del = lm_del,
    .scan = lm_scan,
    .commit = lm_commit,
    .abort = lm_abort,
    .close = lm_close,
};

/* Opens (or, writable, creates) every table. */
static int lm_open_tables(lm_store *s, char *errbuf, size_t errlen) {
  MDB_txn *txn = NULL;
  int rc = 0, mrc;
  mrc = mdb_txn_begin(s->env, NULL, s->read_only ? MDB_RDONLY : 0, &txn);
  if (mrc)
    goto fail;
  for (int i = 0; i < TT_TABLE__COUNT; i++) {
    mrc = mdb_dbi_open(txn, lm_table_names[i], s->read_only ? 0 : MDB_CREATE,
                       &s->dbi[i]);
    if (mrc == MDB_NOTFOUND && s->read_only)
      continue;
    if (mrc)
      goto fail;
    s->present[i] = 1;
  }
  /* Commit, not abort: it is what makes the handles usable afterwards. */
  mrc = mdb_txn_commit(txn);
  txn = NULL;
  if (mrc)
    goto fail;
  return 0;
fail:
  if (txn)
    mdb_txn_abort(txn);
  rc = lm_map(mrc);
  lm_errf(errbuf, errlen, "%s: cannot open the store's tables: %s; %s",
          s->path, mdb_strerror(mrc), lm_hint(rc));
  return rc;
}

int tt_store_open_lmdb(const char *dir, const tt_store_opts *opts,
                       tt_store **out, char *errbuf, size_t errlen) {
  lm_store *s = NULL;
  struct stat st;
  uint64_t map_size;
  unsigned flags = MDB_NOTLS;
  int rc = 0, mrc, err, dead;
  int registered = 0;

  if (out)
    *out = NULL;
  if (errbuf && errlen)
    errbuf[0] = '\0';
  if (!dir || !*dir || !out) {
    lm_errf(errbuf, errlen, "store: no directory or no output handle given");
    return TETHER_EINVAL;
  }
  map_size = opts && opts->map_size ? opts->map_size
             : sizeof(size_t) >= 8  ? LM_DEFAULT_MAP_64
                                    : LM_DEFAULT_MAP_32;
  if (map_size > SIZE_MAX) {
    lm_errf(errbuf, errlen,
            "%s: map size %llu does not fit this platform's address space; "
            "lower the map size",
            dir, (unsigned long long)map_size);
    return TETHER_EINVAL;
  }
  s = calloc(1, sizeof(*s));
  if (!s || !(s->path = strdup(dir))) {
    free(s);
    lm_errf(errbuf, errlen, "%s: out of memory opening the store", dir);
    return TETHER_ENOMEM;
  }
  pthread_mutex_init(&s->mu, NULL);
  s->base.ops = &lm_ops;
  s->read_only = opts && opts->read_only;
  if (s->read_only)
    flags |= MDB_RDONLY;
  if (opts && opts->no_sync && !s->read_only)
    flags |= MDB_NOSYNC;

  if (!s->read_only && (err = lm_mkdirs(dir)) != 0) {
    rc = err == ENOSPC                     ? TETHER_EFULL
         : err == EACCES || err == EROFS   ? TETHER_EREADONLY
         : err == ENOTDIR || err == EEXIST ? TETHER_EINVAL
         : err == ENOMEM                   ? TETHER_ENOMEM
                                           : TETHER_EIO;
    lm_errf(errbuf, errlen,
            "%s: cannot create the store directory: %s; check the path and "
            "the parent directory's permissions",
            dir, strerror(err));
    goto out;
  }
  if (stat(dir, &st) != 0) {
    err = errno;
    rc = err == ENOENT ? TETHER_ENOTFOUND
         : err == EACCES ? TETHER_EREADONLY
                         : TETHER_EIO;
    lm_errf(errbuf, errlen, "%s: %s; %s", dir, strerror(err),
            err == ENOENT ? "a read-only open never creates a store: check "
                            "the path"
                          : "check the path and its permissions");
    goto out;
  }
  if (!S_ISDIR(st.st_mode)) {
    rc = TETHER_EINVAL;
    lm_errf(errbuf, errlen,
            "%s: not a directory; give the directory that holds (or will "
            "hold) the store",
            dir);
    goto out;
  }
  s->dev = st.st_dev;
  s->ino = st.st_ino;
  rc = lm_register(s);
  if (rc) {
    lm_errf(errbuf, errlen,
            "%s: the store is already open in this process; LMDB allows one "
            "open per process, so share that handle or close it first",
            dir);
    goto out;
  }
  registered = 1;

  mrc = mdb_env_create(&s->env);
  if (!mrc)
    mrc = mdb_env_set_maxdbs(s->env, TT_TABLE__COUNT);
  if (!mrc)
    mrc = mdb_env_set_maxreaders(s->env, LM_MAX_READERS);
  if (!mrc)
    mrc = mdb_env_set_mapsize(s->env, (size_t)map_size);
  if (mrc) {
    rc = lm_map(mrc);
    lm_errf(errbuf, errlen, "%s: cannot set up LMDB: %s; %s", dir,
            mdb_strerror(mrc), lm_hint(rc));
    goto out;
  }
  mrc = mdb_env_open(s->env, dir, flags, 0600);
  if (mrc) {
    if (mrc == ENOENT && s->read_only) {
      rc = TETHER_ENOTFOUND;
      lm_errf(errbuf, errlen,
              "%s: no store in this directory (data.mdb missing); a "
              "read-only open never creates one: check the path",
              dir);
    } else {
      rc = lm_map(mrc);
      lm_errf(errbuf, errlen, "%s: cannot open the LMDB store: %s; %s", dir,
              mdb_strerror(mrc), lm_hint(rc));
    }
    goto out;
  }
  /* Reader slots of crashed processes would pin old pages forever. */
  (void)mdb_reader_check(s->env, &dead);
  s->maxkey = (size_t)mdb_env_get_maxkeysize(s->env);
  rc = lm_open_tables(s, errbuf, errlen);
  if (rc)
    goto out;
  *out = &s->base;
  s = NULL;
out:
  if (s) {
    if (registered)
      lm_unregister(s);
    lm_free(s);
  }
  return rc;
}
