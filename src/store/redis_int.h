/* redis_int.h — internals shared by the Redis backend's files:
 *   redis_conn.c     URL, connections and their pool, bounded replies,
 *                    pipelined requests, error classification
 *   redis_cluster.c  CRC16 hash slots, the slot map, topology refresh
 *   redis.c          the tt_store: transactions, read-your-writes, scan
 * Nothing outside src/store/redis*.c (and its unit test) includes this. */
#ifndef TT_STORE_REDIS_INT_H
#define TT_STORE_REDIS_INT_H

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdint.h>

#include "store/store.h"

/* A reply (all of it, summed over bulk strings) larger than this is an
 * error and the connection is dropped, rather than an allocation. */
#define RD_REPLY_MAX ((size_t)64 << 20)
/* Elements of one array reply; scan pages and MGETs stay far below. */
#define RD_ARRAY_MAX 65536
/* Same as LMDB's, so a store can move between backends (docs/STORE.md). */
#define RD_MAX_KEY 511
/* Members per ZRANGEBYLEX page, keys per MGET/WATCH/DEL command. */
#define RD_PAGE 512
/* Bytes a transaction keeps (buffered writes, cached reads, values handed
 * out); beyond it, TETHER_ENOMEM. Matches the LMDB backend's copy cap. */
#define RD_TXN_MEM_MAX ((size_t)256 << 20)
/* A request being built (commit of a big group) may not exceed this. */
#define RD_REQ_MAX ((size_t)512 << 20)
#define RD_SLOTS 16384
#define RD_MAX_NODES 1024
#define RD_MAX_SEEDS 64
/* Live connections per node (one per open transaction); more is EBUSY. */
#define RD_MAX_CONNS 256
/* Idle connections kept per node for the next transactions. */
#define RD_MAX_IDLE 16
/* MOVED/ASK hops for one request before giving up (topology in flux). */
#define RD_MAX_REDIRECTS 5
#define RD_CONNECT_MS 2000
#define RD_TIMEOUT_MS 10000

typedef struct rd_node rd_node;

typedef struct rd_conn {
  redisContext *c;
  rd_node *node;
  struct rd_conn *next;
  /* A write transaction ended with keys still watched: the next write
   * transaction on this connection sends UNWATCH first (same round trip). */
  int needs_unwatch;
  int reused; /* came from the idle pool: may have died while idle */
  size_t reply_bytes;
  int reply_too_big;
} rd_conn;

struct rd_node {
  char *host;
  int port;
  char name[280]; /* "host:port", for messages and identity */
  rd_conn *idle;  /* guarded by the store's mutex, like the counts */
  int nidle;
  int live; /* connections out of the pool (in transactions) */
};

typedef struct {
  int cluster;
  int nseeds;
  char *hosts[RD_MAX_SEEDS];
  int ports[RD_MAX_SEEDS];
  int db;
  char *user;     /* NULL: AUTH with the password only (or no AUTH) */
  char *password; /* NULL: no AUTH */
  int wait_replicas; /* ?wait=N: WAIT N after EXEC; 0 = no WAIT */
  int wait_ms;
  int connect_ms;
  int timeout_ms;
} rd_cfg;

typedef struct {
  pthread_t thread;
  unsigned partition;
} rd_writer;

typedef struct rd_store {
  tt_store base;
  rd_cfg cfg;
  char *url; /* as given, password masked: for messages */
  int read_only;
  pthread_mutex_t mu; /* everything below */
  pthread_cond_t cv;  /* a write transaction ended */
  rd_node *nodes[RD_MAX_NODES];
  int nnodes;
  int16_t slot[RD_SLOTS]; /* node index, -1 = no known owner */
  rd_writer *writers;     /* open write transactions of this process */
  size_t nwriters, capwriters;
  char lasterr[256];
  /* Requests sent (each one write + one read: a round trip). For tests and
   * benchmarks: round trips per commit. */
  uint64_t roundtrips;
} rd_store;

/* ---- requests: pipelined commands built first, sent together ----------- */

typedef struct {
  const void *ext; /* stable caller memory, or NULL: bytes in the arena */
  size_t off, len;
} rd_arg;

typedef struct {
  rd_arg *args;
  size_t nargs, capargs;
  size_t *cmds; /* index of each command's first argument */
  size_t ncmds, capcmds;
  char *arena;
  size_t used, cap;
  size_t bytes; /* total argument bytes, bounded by RD_REQ_MAX */
  int err;      /* sticky: ENOMEM or ETOOBIG while building */
} rd_req;

void rd_req_init(rd_req *q);
void rd_req_reset(rd_req *q);
void rd_req_free(rd_req *q);
/* Starts a new command; its arguments follow. */
void rd_req_cmd(rd_req *q, const char *name);
/* An argument pointing at P, which must stay valid until the send. */
void rd_req_ref(rd_req *q, const void *p, size_t n);
/* An argument copied into the request: A then B (either may be empty). */
void rd_req_cat(rd_req *q, const void *a, size_t alen, const void *b,
                size_t blen);
void rd_req_fmt(rd_req *q, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static inline size_t rd_req_argc(const rd_req *q, size_t cmd) {
  return (cmd + 1 < q->ncmds ? q->cmds[cmd + 1] : q->nargs) - q->cmds[cmd];
}

/* ---- connections --------------------------------------------------------- */

void rd_seterr(rd_store *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A connection to NODE: an idle one or a new one (connect, AUTH, SELECT).
 * TETHER_EUNAVAILABLE (message in s->lasterr) when it cannot connect,
 * TETHER_EBUSY at RD_MAX_CONNS. */
int rd_conn_get(rd_store *s, rd_node *node, rd_conn **out);
/* Back to the pool, or closed when BROKEN (then the node's idle
 * connections are closed too: they likely died the same way). NULL ok. */
void rd_conn_put(rd_store *s, rd_conn *k, int broken);
/* rd_conn_send flags */
#define RD_SEND_ASKING 1  /* ASKING before each command (reply dropped) */
#define RD_SEND_UNWATCH 2 /* UNWATCH before the first (reply dropped) */
/* Sends every command of Q in one write, then reads one reply per command
 * into REPLIES[0..ncmds) (caller frees them with rd_replies_free). On a
 * connection failure (refused, reset, timeout, reply over RD_REPLY_MAX)
 * returns TETHER_EUNAVAILABLE, sets s->lasterr, leaves REPLIES all NULL,
 * and K must be put back broken. Q->err (ENOMEM, ETOOBIG) is returned
 * before anything is sent. */
int rd_conn_send(rd_store *s, rd_conn *k, const rd_req *q, int flags,
                 redisReply **replies);
void rd_replies_free(redisReply **r, size_t n);
/* Closes every idle connection and frees the nodes (at close). */
void rd_nodes_free(rd_store *s);

/* A reply that is an error starting with the word PFX ("MOVED", ...). */
int rd_is_err(const redisReply *r, const char *pfx);
/* Parses "MOVED 3999 127.0.0.1:6381" / "ASK ...": 0 or -1. */
int rd_parse_redirect(const redisReply *r, unsigned *slot, char *host,
                      size_t hostlen, int *port);
/* Maps a Redis error reply to a TETHER_E* code (OOM -> EFULL, LOADING,
 * CLUSTERDOWN, MASTERDOWN, NOAUTH... -> EUNAVAILABLE, TRYAGAIN -> ERETRY,
 * anything else -> EIO), recording it in s->lasterr. */
int rd_map_error(rd_store *s, const rd_node *n, const redisReply *r);

/* Parses URL into CFG (allocations freed by rd_cfg_free). On error fills
 * ERRBUF naming the URL and what is expected; TETHER_EINVAL. */
int rd_cfg_parse(const char *url, rd_cfg *cfg, char *errbuf, size_t errlen);
void rd_cfg_free(rd_cfg *cfg);
/* URL with the password replaced by "***" (malloc'd, free()). */
char *rd_url_masked(const char *url);

/* Round trips sent by S so far (tests, benchmarks). S must be a Redis
 * store. */
uint64_t rd_store_roundtrips(tt_store *s);

/* ---- cluster -------------------------------------------------------------- */

/* CRC16-CCITT (XMODEM), as in the Redis Cluster specification. */
uint16_t rd_crc16(const void *buf, size_t len);
/* Hash slot of every key of PARTITION: CRC16 of its hash tag "p<p>". */
unsigned rd_partition_slot(unsigned partition);
/* The node known or added for HOST:PORT; NULL when RD_MAX_NODES are known
 * or out of memory. Call with s->mu held. */
rd_node *rd_node_intern(rd_store *s, const char *host, int port);
/* The node serving SLOT (refreshing the map once if none is known).
 * TETHER_EUNAVAILABLE when none can be found. */
int rd_slot_node(rd_store *s, unsigned slot, rd_node **out);
/* Reloads the slot map with CLUSTER SLOTS, asking HINT first (may be
 * NULL), then every known node. 0 or TETHER_EUNAVAILABLE. */
int rd_refresh(rd_store *s, rd_node *hint);
/* After MOVED: SLOT is now at HOST:PORT; refreshes the whole map. */
void rd_moved(rd_store *s, unsigned slot, const char *host, int port);

#endif
