/* store.h — the storage interface used by the server and the replica.
 *
 * A store is a set of tables of ordered binary keys -> binary values. A
 * transaction covers one partition: all writes in it commit atomically and
 * are durable when commit returns. The embedded backend (LMDB) has one
 * partition-agnostic environment; a distributed backend (Redis) maps a
 * partition to one hash slot, so nothing here may need a cross-partition
 * transaction. A backend stores; it never decides: no merge logic here.
 * Keys are not namespaced by partition, but a distributed backend keeps a
 * key in the slot of the partition it was written under, so a given key
 * must always be used under the same partition (LMDB does not check this).
 *
 * Nothing above store/ sees a backend type. */
#ifndef TT_STORE_STORE_H
#define TT_STORE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "tether.h"

typedef enum {
  /* shared */
  TT_TABLE_META = 0,   /* small named values (format version, ids, cursors) */
  TT_TABLE_DOCS,       /* key: coll \0 id            -> doc record          */
  /* server */
  TT_TABLE_CHANGES,    /* key: be32 partition be64 seq -> coll \0 id        */
  TT_TABLE_REPLICAS,   /* key: replica id (16 bytes)   -> dedupe record     */
  TT_TABLE_OUTCOMES,   /* key: replica id, be64 seq    -> outcome record    */
  TT_TABLE_CONFLICTS,  /* key: conflict id             -> conflict record   */
  TT_TABLE_AUDIT,      /* key: be32 partition be64 seq be32 n -> entry      */
  /* replica */
  TT_TABLE_OUTBOX,     /* key: be64 seq                -> intent + state    */
  TT_TABLE_PENDING,    /* key: coll \0 id \0 be64 seq  -> empty (index)     */
  TT_TABLE_VIEW,       /* key: coll \0 id -> optimistic overlay             */
  TT_TABLE_STATUS,     /* key: coll \0 id -> per-document status record     */
  TT_TABLE_RCONFLICTS, /* key: conflict id -> open conflict on the replica  */
  TT_TABLE_ROUTCOMES,  /* key: be64 seq -> outcome not yet read by the app  */
  TT_TABLE__COUNT
} tt_table;

typedef struct {
  const void *data;
  size_t len;
} tt_bytes;

typedef struct tt_store tt_store;
typedef struct tt_txn tt_txn;

/* Called per entry of a scan, in ascending key order. KEY/VAL are valid
 * only during the call. Return 0 to go on, non-zero to stop (that value is
 * then returned by scan). */
typedef int (*tt_scan_cb)(void *ctx, tt_bytes key, tt_bytes val);

typedef struct tt_store_ops {
  const char *name; /* "lmdb", "redis", ... */
  /* WRITE: 1 for a read-write transaction. One write transaction per
   * partition at a time (begin blocks until the previous one ends); read
   * transactions run concurrently with it and see a consistent snapshot.
   * A thread holds at most one write transaction (a second begin is
   * TETHER_EBUSY: partitions may share one writer) and ends it itself; a
   * read transaction may move between threads. */
  int (*begin)(tt_store *s, unsigned partition, int write, tt_txn **out);
  /* TETHER_ENOTFOUND when absent. *VAL valid until the transaction ends. */
  int (*get)(tt_txn *t, tt_table tab, tt_bytes key, tt_bytes *val);
  /* Optional (NULL: get is used): as get, but *VAL is valid only until the
   * next put or del on T. For a caller that decodes the value at once: LMDB then
   * needs no private copy of a page the transaction already wrote, so a
   * transaction that re-reads what it writes costs no memory per read. */
  int (*get_tmp)(tt_txn *t, tt_table tab, tt_bytes key, tt_bytes *val);
  /* A put/del that fails with TETHER_EINVAL or TETHER_ETOOBIG (key longer
   * than the backend's maximum: 511 bytes for LMDB) changed nothing and T
   * goes on; any other failed put/del leaves T able only to end: later calls
   * and commit return that error. */
  int (*put)(tt_txn *t, tt_table tab, tt_bytes key, tt_bytes val);
  /* Deleting an absent key is not an error. */
  int (*del)(tt_txn *t, tt_table tab, tt_bytes key);
  /* Entries with key >= FROM (FROM.len 0: from the first). CB may write
   * to T, even delete the entry it is given; the scan then goes on at the
   * first key above the one CB was given, as the table is after the write. */
  int (*scan)(tt_txn *t, tt_table tab, tt_bytes from, tt_scan_cb cb,
              void *ctx);
  /* Optional (NULL: nothing to gain): the caller will get these keys of
   * TAB in T soon. A remote backend fetches them all in one round trip (and
   * watches them, in a write transaction), so that a batch costs round
   * trips per partition, not per intent. Later gets must still be correct
   * without it. */
  int (*prefetch)(tt_txn *t, tt_table tab, const tt_bytes *keys, size_t n);
  /* Durable on return 0. On error nothing of the transaction is applied.
   * Either way T is gone. TETHER_EFULL when the store is full;
   * TETHER_ERETRY when an optimistic backend (Redis WATCH) saw a key it
   * read change under it — redo the whole transaction;
   * TETHER_EUNAVAILABLE when the backend cannot be reached (nothing
   * applied, or, if the connection died during the commit, unknown: the
   * caller must not acknowledge and must let clients retry). */
  int (*commit)(tt_txn *t);
  /* Discards T. NULL is a no-op. */
  void (*abort)(tt_txn *t);
  void (*close)(tt_store *s);
  /* Optional (NULL: none): the backend's most recent failure in one line
   * (which server, what happened), for logs and 503 reasons. Copies at
   * most LEN-1 bytes and a NUL into BUF. Thread-safe. */
  void (*last_error)(tt_store *s, char *buf, size_t len);
} tt_store_ops;

/* Every backend's handle starts with this. */
struct tt_store {
  const tt_store_ops *ops;
};

typedef struct {
  uint64_t map_size; /* bytes; 0 = backend default */
  int read_only;     /* open for reading only */
  int no_sync;       /* tests/benchmarks only: skip fsync (not durable) */
} tt_store_opts;

/* Opens (creating DIR and the environment if missing, unless read_only) the
 * LMDB store in DIR. On failure *out is NULL and errbuf says what was wrong
 * with what path. OPTS may be NULL. Close with tt_store_close. */
int tt_store_open_lmdb(const char *dir, const tt_store_opts *opts,
                       tt_store **out, char *errbuf, size_t errlen);

/* Opens the Redis backend. URL is redis://HOST:PORT[/DB] (one server) or
 * redis-cluster://HOST:PORT[,HOST:PORT...] (seed nodes of a Redis
 * Cluster). Every key of partition p carries the hash tag {p<p>}, so a
 * partition is one hash slot and one MULTI/EXEC. On failure *out is NULL
 * and errbuf names the URL and the reason. OPTS may be NULL (map_size and
 * no_sync do not apply). */
int tt_store_open_redis(const char *url, const tt_store_opts *opts,
                        tt_store **out, char *errbuf, size_t errlen);

/* Convenience wrappers over s->ops. tt_store_close(NULL) is a no-op. */
static inline int tt_txn_begin(tt_store *s, unsigned p, int write,
                               tt_txn **out) {
  return s->ops->begin(s, p, write, out);
}
void tt_store_close(tt_store *s);

/* The transaction remembers its store so the wrappers need only T. */
int tt_get(tt_txn *t, tt_table tab, tt_bytes key, tt_bytes *val);
/* *VAL valid only until the next put or del on T (see get_tmp). */
int tt_get_tmp(tt_txn *t, tt_table tab, tt_bytes key, tt_bytes *val);
int tt_put(tt_txn *t, tt_table tab, tt_bytes key, tt_bytes val);
int tt_del(tt_txn *t, tt_table tab, tt_bytes key);
int tt_scan(tt_txn *t, tt_table tab, tt_bytes from, tt_scan_cb cb, void *ctx);
/* The backend's last failure message into BUF; "" when it has none. */
void tt_store_last_error(tt_store *s, char *buf, size_t len);
/* A no-op returning 0 when the backend has no prefetch. */
int tt_prefetch(tt_txn *t, tt_table tab, const tt_bytes *keys, size_t n);
int tt_commit(tt_txn *t);
void tt_abort(tt_txn *t);

/* Every backend's transaction starts with this. */
struct tt_txn {
  tt_store *store;
};

#endif
