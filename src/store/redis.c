/* redis.c — the Redis and Redis Cluster backend of store.h.
 *
 * Layout: the record KEY of table T in partition P is the Redis string
 * "tt{pP}:T:KEY" (T in decimal, KEY binary), and each (P, T) has a sorted
 * set "tt{pP}:idx:T" holding every KEY of the table with score 0, which
 * Redis orders bytewise (a prefix first), as LMDB does: a scan is
 * ZRANGEBYLEX over it in pages plus MGET of the values. The hash tag {pP}
 * puts every key of a partition in one hash slot, hence on one node and
 * in reach of one MULTI/EXEC. ("idx" cannot clash with a record: record
 * keys have digits where it has "idx".)
 *
 * Write transactions are optimistic. Every remote read WATCHes what it
 * reads in the same round trip (WATCH k; MGET k), a scan also WATCHes the
 * table's index, and writes are buffered in the transaction: commit sends
 * MULTI, the writes, EXEC in one round trip, and EXEC answering nil (a
 * watched key changed) is TETHER_ERETRY. Everything read or written is
 * kept in an ordered map of the transaction (an AVL tree on (table, key)),
 * so reads see the transaction's own writes, a key is fetched at most once,
 * and every value handed out stays valid until the transaction ends.
 *
 * Read transactions read Redis as it is: Redis has no snapshots, so two
 * reads in one read transaction may see two different commits. What was
 * read once is cached, so reading the same key again gives the same
 * answer.
 *
 * One write transaction per partition at a time in this process (begin
 * waits), and at most one per thread (EBUSY), as store.h requires; other
 * processes are kept apart by WATCH. Each transaction holds one pooled
 * connection to its partition's node while it lives (WATCH state is per
 * connection). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/redis_int.h"

enum { E_ABSENT, E_PRESENT, E_PUT, E_DEL };
enum { K_UNKNOWN, K_PRESENT, K_ABSENT }; /* what Redis held when read */

typedef struct rd_val {
  struct rd_val *next; /* on the retired list once replaced */
  size_t len;
  unsigned char data[];
} rd_val;

typedef struct rd_ent {
  struct rd_ent *l, *r;
  int h;
  unsigned char tab, st, known;
  unsigned char handed; /* v was given to the caller: retire, never free */
  rd_val *v;            /* E_PRESENT, E_PUT; NULL otherwise */
  size_t klen;
  unsigned char key[];
} rd_ent;

typedef struct {
  tt_txn base;
  unsigned partition, slot;
  int write;
  int err;    /* sticky; a write transaction that hit trouble can only end */
  int writer; /* registered in s->writers */
  rd_conn *conn;
  int watched; /* something is WATCHed on conn */
  int fresh;   /* no round trip yet on conn */
  uint32_t idx_watched;
  char kp[TT_TABLE__COUNT][32]; /* "tt{pP}:T:" */
  size_t kplen[TT_TABLE__COUNT];
  char ix[TT_TABLE__COUNT][32]; /* "tt{pP}:idx:T" */
  size_t ixlen[TT_TABLE__COUNT];
  rd_ent *root;
  size_t mem;
  uint64_t writes;
  rd_val *retired;
  rd_req q;
} rd_txn;

_Static_assert(TT_TABLE__COUNT <= 32, "idx_watched is 32 bits");

/* rd_txn_send flags */
#define TX_WATCHES 1 /* the request WATCHes keys */
#define TX_COMMIT 2  /* never resent once it may have reached Redis */

/* ---- the transaction's ordered map ---------------------------------------- */

static int rd_bytescmp(const void *a, size_t alen, const void *b, size_t blen) {
  size_t n = alen < blen ? alen : blen;
  int c = n ? memcmp(a, b, n) : 0;
  if (c)
    return c;
  return alen < blen ? -1 : alen > blen;
}

static int rd_entcmp(const rd_ent *e, unsigned tab, const void *k, size_t n) {
  if (e->tab != tab)
    return e->tab < tab ? -1 : 1;
  return rd_bytescmp(e->key, e->klen, k, n);
}

static int rd_h(const rd_ent *e) { return e ? e->h : 0; }

static void rd_fix(rd_ent *e) {
  int a = rd_h(e->l), b = rd_h(e->r);
  e->h = 1 + (a > b ? a : b);
}

static rd_ent *rd_rotr(rd_ent *y) {
  rd_ent *x = y->l;
  y->l = x->r;
  x->r = y;
  rd_fix(y);
  rd_fix(x);
  return x;
}

static rd_ent *rd_rotl(rd_ent *x) {
  rd_ent *y = x->r;
  x->r = y->l;
  y->l = x;
  rd_fix(x);
  rd_fix(y);
  return y;
}

static rd_ent *rd_balance(rd_ent *e) {
  int b;
  rd_fix(e);
  b = rd_h(e->l) - rd_h(e->r);
  if (b > 1) {
    if (rd_h(e->l->l) < rd_h(e->l->r))
      e->l = rd_rotl(e->l);
    return rd_rotr(e);
  }
  if (b < -1) {
    if (rd_h(e->r->r) < rd_h(e->r->l))
      e->r = rd_rotr(e->r);
    return rd_rotl(e);
  }
  return e;
}

/* N is not in the tree (callers look first). */
static rd_ent *rd_insert(rd_ent *root, rd_ent *n) {
  if (!root)
    return n;
  if (rd_entcmp(n, root->tab, root->key, root->klen) < 0)
    root->l = rd_insert(root->l, n);
  else
    root->r = rd_insert(root->r, n);
  return rd_balance(root);
}

static rd_ent *rd_find(rd_txn *t, unsigned tab, const void *k, size_t n) {
  rd_ent *e = t->root;
  while (e) {
    int c = rd_entcmp(e, tab, k, n);
    if (c == 0)
      return e;
    e = c > 0 ? e->l : e->r;
  }
  return NULL;
}

/* The first entry above (TAB, K), or at it too with INCL. */
static rd_ent *rd_succ(rd_txn *t, unsigned tab, const void *k, size_t n,
                       int incl) {
  rd_ent *e = t->root, *best = NULL;
  while (e) {
    int c = rd_entcmp(e, tab, k, n);
    if (c > 0 || (incl && c == 0)) {
      best = e;
      e = e->l;
    } else {
      e = e->r;
    }
  }
  return best;
}

/* The first buffered put of TAB above K (or at it, with INCL). */
static rd_ent *rd_succ_put(rd_txn *t, unsigned tab, const void *k, size_t n,
                           int incl) {
  rd_ent *e = rd_succ(t, tab, k, n, incl);
  while (e && e->tab == tab && e->st != E_PUT)
    e = rd_succ(t, tab, e->key, e->klen, 0);
  return e && e->tab == tab ? e : NULL;
}

static int rd_charge(rd_txn *t, size_t n) {
  if (n > RD_TXN_MEM_MAX - t->mem) {
    rd_seterr((rd_store *)t->base.store,
              "redis: a transaction reached its %zu MiB memory bound",
              RD_TXN_MEM_MAX >> 20);
    return TETHER_ENOMEM;
  }
  t->mem += n;
  return 0;
}

static rd_ent *rd_ent_new(rd_txn *t, unsigned tab, const void *k, size_t n) {
  rd_ent *e;
  if (rd_charge(t, sizeof(*e) + n))
    return NULL;
  e = calloc(1, sizeof(*e) + n);
  if (!e) {
    t->mem -= sizeof(*e) + n;
    return NULL;
  }
  e->h = 1;
  e->tab = (unsigned char)tab;
  e->klen = n;
  memcpy(e->key, k, n);
  t->root = rd_insert(t->root, e);
  return e;
}

/* Drops E's value: retired if the caller may still hold it. */
static void rd_ent_dropval(rd_txn *t, rd_ent *e) {
  if (!e->v)
    return;
  if (e->handed) {
    e->v->next = t->retired;
    t->retired = e->v;
  } else {
    t->mem -= sizeof(rd_val) + e->v->len;
    free(e->v);
  }
  e->v = NULL;
  e->handed = 0;
}

static int rd_ent_setval(rd_txn *t, rd_ent *e, const void *p, size_t n) {
  rd_val *v;
  if (rd_charge(t, sizeof(*v) + n))
    return TETHER_ENOMEM;
  v = malloc(sizeof(*v) + n);
  if (!v) {
    t->mem -= sizeof(*v) + n;
    return TETHER_ENOMEM;
  }
  v->next = NULL;
  v->len = n;
  if (n)
    memcpy(v->data, p, n);
  rd_ent_dropval(t, e);
  e->v = v;
  return 0;
}

static void rd_tree_free(rd_ent *e) {
  while (e) {
    rd_ent *r = e->r;
    rd_tree_free(e->l);
    free(e->v);
    free(e);
    e = r;
  }
}

/* ---- round trips ------------------------------------------------------------ */

static rd_store *rd_s(rd_txn *t) { return (rd_store *)t->base.store; }

static void rd_key(rd_txn *t, unsigned tab, const void *k, size_t n) {
  rd_req_cat(&t->q, t->kp[tab], t->kplen[tab], k, n);
}

static void rd_sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static int rd_txn_connect(rd_txn *t) {
  rd_store *s = rd_s(t);
  rd_node *n;
  int rc = rd_slot_node(s, t->slot, &n);
  if (rc)
    return rc;
  rc = rd_conn_get(s, n, &t->conn);
  t->fresh = 1;
  return rc;
}

/* The first MOVED, ASK or TRYAGAIN among the replies: 1, 2, 3; else 0. */
static int rd_redirect_of(redisReply **rep, size_t n, size_t *at) {
  for (size_t i = 0; i < n; i++) {
    *at = i;
    if (rd_is_err(rep[i], "MOVED"))
      return 1;
    if (rd_is_err(rep[i], "ASK"))
      return 2;
    if (rd_is_err(rep[i], "TRYAGAIN"))
      return 3;
  }
  return 0;
}

/* Sends t->q on T's connection; REP gets one reply per command (freed by
 * the caller with rd_replies_free, even on error: they are NULL then).
 * Transparent where it is safe — nothing watched yet on the connection,
 * or a read transaction: reconnects once after a pooled connection turned
 * out dead (Redis restarted) or, on a cluster, after refreshing the slot
 * map; follows MOVED (to the new owner) and, in a read transaction, ASK
 * (ASKING + the request on the importing node) and TRYAGAIN (waits). */
static int rd_txn_send(rd_txn *t, redisReply **rep, int flags) {
  rd_store *s = rd_s(t);
  int moves = 0, retried = 0, tries = 0, rc, kind;
  size_t at = 0;
  for (;;) {
    int movable = !t->write || !t->watched, sf;
    if (!t->conn && (rc = rd_txn_connect(t)) != 0)
      return rc;
    sf = t->write && t->conn->needs_unwatch ? RD_SEND_UNWATCH : 0;
    rc = rd_conn_send(s, t->conn, &t->q, sf, rep);
    if (rc == TETHER_EUNAVAILABLE) {
      int stale = t->conn->reused && t->fresh;
      rd_conn_put(s, t->conn, 1);
      t->conn = NULL;
      if (!movable || (flags & TX_COMMIT) || retried++)
        return rc;
      if (!stale) {
        if (!s->cfg.cluster)
          return rc;
        (void)rd_refresh(s, NULL); /* maybe a failover: find the new owner */
      }
      continue;
    }
    if (rc)
      return rc;
    if (sf)
      t->conn->needs_unwatch = 0;
    t->fresh = 0;
    kind = s->cfg.cluster ? rd_redirect_of(rep, t->q.ncmds, &at) : 0;
    if (kind == 1) {
      char host[256];
      unsigned slot;
      int port;
      if (rd_parse_redirect(rep[at], &slot, host, sizeof(host), &port)) {
        rc = rd_map_error(s, t->conn->node, rep[at]);
        rd_replies_free(rep, t->q.ncmds);
        return rc == TETHER_ERETRY ? TETHER_EIO : rc;
      }
      rd_replies_free(rep, t->q.ncmds);
      rd_moved(s, slot, host, port);
      if (!movable) {
        rd_seterr(s, "redis cluster %s: hash slot %u moved to %s:%d during a "
                     "write transaction; redo it",
                  s->url, slot, host, port);
        return TETHER_ERETRY;
      }
      rd_conn_put(s, t->conn, 0);
      t->conn = NULL;
      if (++moves > RD_MAX_REDIRECTS) {
        rd_seterr(s, "redis cluster %s: hash slot %u: more than %d MOVED "
                     "redirects in a row",
                  s->url, slot, RD_MAX_REDIRECTS);
        return TETHER_EUNAVAILABLE;
      }
      continue;
    }
    if (kind == 2) {
      char host[256];
      unsigned slot;
      int port;
      rd_node *n;
      rd_conn *k = NULL;
      if (rd_parse_redirect(rep[at], &slot, host, sizeof(host), &port)) {
        rc = rd_map_error(s, t->conn->node, rep[at]);
        rd_replies_free(rep, t->q.ncmds);
        return rc == TETHER_ERETRY ? TETHER_EIO : rc;
      }
      rd_replies_free(rep, t->q.ncmds);
      if (t->write) {
        /* Some keys of the slot are already on the importing node and
         * one MULTI/EXEC cannot span two nodes: wait for the end of the
         * migration (MOVED then). */
        rd_seterr(s, "redis cluster %s: hash slot %u is migrating to %s:%d; "
                     "redo the write transaction",
                  s->url, slot, host, port);
        return TETHER_ERETRY;
      }
      pthread_mutex_lock(&s->mu);
      n = rd_node_intern(s, host, port);
      pthread_mutex_unlock(&s->mu);
      if (!n)
        return TETHER_ENOMEM;
      if ((rc = rd_conn_get(s, n, &k)) != 0)
        return rc;
      rc = rd_conn_send(s, k, &t->q, RD_SEND_ASKING, rep);
      rd_conn_put(s, k, rc == TETHER_EUNAVAILABLE);
      return rc; /* once: a TRYAGAIN or error in REP is the caller's */
    }
    if (kind == 3) {
      rd_replies_free(rep, t->q.ncmds);
      if (t->write || ++tries > 50) {
        rd_seterr(s, "redis cluster %s: hash slot %u is being migrated "
                     "(TRYAGAIN); redo the transaction",
                  s->url, t->slot);
        return TETHER_ERETRY;
      }
      rd_sleep_ms(10);
      continue;
    }
    if (flags & TX_WATCHES)
      t->watched = 1;
    return 0;
  }
}

/* A write transaction that failed mid-way can only end: its watches may be
 * gone with its connection. */
static int rd_fail(rd_txn *t, int rc) {
  if (rc && t->write && !t->err)
    t->err = rc;
  return rc;
}

static int rd_status_ok(rd_txn *t, const redisReply *r) {
  if (r->type == REDIS_REPLY_STATUS)
    return 0;
  if (r->type == REDIS_REPLY_ERROR)
    return rd_map_error(rd_s(t), t->conn ? t->conn->node : NULL, r);
  return TETHER_EIO;
}

/* Reads the keys of TAB not yet known to T (and watches them, in a write
 * transaction): one round trip for all of them. Each becomes an entry. */
static int rd_fetch(rd_txn *t, unsigned tab, const tt_bytes *keys, size_t n) {
  rd_req *q = &t->q;
  redisReply **rep = NULL;
  size_t *sel = NULL, m = 0, ci = 0;
  int rc = 0;
  sel = malloc((n ? n : 1) * sizeof(*sel));
  if (!sel)
    return TETHER_ENOMEM;
  for (size_t i = 0; i < n; i++)
    if (keys[i].data && keys[i].len && keys[i].len <= RD_MAX_KEY &&
        !rd_find(t, tab, keys[i].data, keys[i].len))
      sel[m++] = i;
  if (m == 0)
    goto out;
  rd_req_reset(q);
  for (size_t c = 0; c < m; c += RD_PAGE) {
    size_t cn = m - c < RD_PAGE ? m - c : RD_PAGE;
    if (t->write) {
      rd_req_cmd(q, "WATCH");
      for (size_t j = 0; j < cn; j++)
        rd_key(t, tab, keys[sel[c + j]].data, keys[sel[c + j]].len);
    }
    rd_req_cmd(q, "MGET");
    for (size_t j = 0; j < cn; j++)
      rd_key(t, tab, keys[sel[c + j]].data, keys[sel[c + j]].len);
  }
  if (q->err) {
    rc = q->err;
    goto out;
  }
  rep = calloc(q->ncmds, sizeof(*rep));
  if (!rep) {
    rc = TETHER_ENOMEM;
    goto out;
  }
  rc = rd_txn_send(t, rep, t->write ? TX_WATCHES : 0);
  if (rc)
    goto out;
  for (size_t c = 0; c < m && !rc; c += RD_PAGE) {
    size_t cn = m - c < RD_PAGE ? m - c : RD_PAGE;
    redisReply *mr;
    if (t->write && (rc = rd_status_ok(t, rep[ci++])) != 0)
      break;
    mr = rep[ci++];
    if (mr->type == REDIS_REPLY_ERROR) {
      rc = rd_map_error(rd_s(t), t->conn ? t->conn->node : NULL, mr);
      break;
    }
    if (mr->type != REDIS_REPLY_ARRAY || mr->elements != cn) {
      rc = TETHER_EIO;
      break;
    }
    for (size_t j = 0; j < cn && !rc; j++) {
      const tt_bytes *k = &keys[sel[c + j]];
      const redisReply *v = mr->element[j];
      rd_ent *e;
      if (rd_find(t, tab, k->data, k->len))
        continue; /* listed twice */
      if (v->type != REDIS_REPLY_STRING && v->type != REDIS_REPLY_NIL) {
        rc = TETHER_EIO;
        break;
      }
      if (!(e = rd_ent_new(t, tab, k->data, k->len))) {
        rc = TETHER_ENOMEM;
        break;
      }
      if (v->type == REDIS_REPLY_NIL) {
        e->st = E_ABSENT;
        e->known = K_ABSENT;
      } else {
        e->st = E_PRESENT;
        e->known = K_PRESENT;
        rc = rd_ent_setval(t, e, v->str, v->len);
      }
    }
  }
out:
  if (rep)
    rd_replies_free(rep, q->ncmds);
  free(rep);
  free(sel);
  return rd_fail(t, rc);
}

/* ---- operations ------------------------------------------------------------- */

static void rd_writer_leave(rd_store *s, unsigned partition) {
  pthread_mutex_lock(&s->mu);
  for (size_t i = 0; i < s->nwriters; i++) {
    if (s->writers[i].partition == partition) {
      s->writers[i] = s->writers[--s->nwriters];
      break;
    }
  }
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

static int rd_writer_enter(rd_store *s, unsigned partition) {
  int rc = 0;
  pthread_mutex_lock(&s->mu);
  for (;;) {
    int busy = 0;
    for (size_t i = 0; i < s->nwriters; i++) {
      if (pthread_equal(s->writers[i].thread, pthread_self())) {
        rc = TETHER_EBUSY;
        goto out;
      }
      if (s->writers[i].partition == partition)
        busy = 1;
    }
    if (!busy)
      break;
    pthread_cond_wait(&s->cv, &s->mu);
  }
  if (s->nwriters == s->capwriters) {
    size_t n = s->capwriters ? s->capwriters * 2 : 8;
    rd_writer *w = realloc(s->writers, n * sizeof(*w));
    if (!w) {
      rc = TETHER_ENOMEM;
      goto out;
    }
    s->writers = w;
    s->capwriters = n;
  }
  s->writers[s->nwriters].thread = pthread_self();
  s->writers[s->nwriters].partition = partition;
  s->nwriters++;
out:
  pthread_mutex_unlock(&s->mu);
  return rc;
}

/* Ends T: the connection goes back to the pool (UNWATCHed lazily by the
 * next write transaction on it), the partition to the next writer. */
static void rd_txn_end(rd_txn *t) {
  rd_store *s = rd_s(t);
  if (t->conn) {
    if (t->watched)
      t->conn->needs_unwatch = 1;
    rd_conn_put(s, t->conn, 0);
  }
  if (t->writer)
    rd_writer_leave(s, t->partition);
  rd_tree_free(t->root);
  while (t->retired) {
    rd_val *n = t->retired->next;
    free(t->retired);
    t->retired = n;
  }
  rd_req_free(&t->q);
  free(t);
}

static int rd_begin(tt_store *base, unsigned partition, int write,
                    tt_txn **out) {
  rd_store *s = (rd_store *)base;
  rd_txn *t;
  int rc;
  if (!out)
    return TETHER_EINVAL;
  *out = NULL;
  if (write && s->read_only)
    return TETHER_EREADONLY;
  t = calloc(1, sizeof(*t));
  if (!t)
    return TETHER_ENOMEM;
  t->base.store = base;
  t->partition = partition;
  t->slot = rd_partition_slot(partition);
  t->write = !!write;
  rd_req_init(&t->q);
  for (int i = 0; i < TT_TABLE__COUNT; i++) {
    t->kplen[i] = (size_t)snprintf(t->kp[i], sizeof(t->kp[i]), "tt{p%u}:%d:",
                                   partition, i);
    t->ixlen[i] = (size_t)snprintf(t->ix[i], sizeof(t->ix[i]),
                                   "tt{p%u}:idx:%d", partition, i);
  }
  if (write) {
    rc = rd_writer_enter(s, partition);
    if (rc) {
      free(t);
      return rc;
    }
    t->writer = 1;
  }
  /* Now rather than at the first read, so that an unreachable Redis shows
   * at begin. */
  rc = rd_txn_connect(t);
  if (rc) {
    rd_txn_end(t);
    return rc;
  }
  *out = &t->base;
  return 0;
}

static int rd_get(tt_txn *base, tt_table tab, tt_bytes key, tt_bytes *val) {
  rd_txn *t = (rd_txn *)base;
  rd_ent *e;
  int rc;
  val->data = NULL;
  val->len = 0;
  if (t->err)
    return t->err;
  if (!key.data || key.len == 0)
    return TETHER_EINVAL;
  if (key.len > RD_MAX_KEY)
    return TETHER_ENOTFOUND; /* could never have been stored */
  e = rd_find(t, tab, key.data, key.len);
  if (!e) {
    rc = rd_fetch(t, tab, &key, 1);
    if (rc)
      return rc;
    e = rd_find(t, tab, key.data, key.len);
    if (!e)
      return TETHER_EIO;
  }
  if (e->st != E_PUT && e->st != E_PRESENT)
    return TETHER_ENOTFOUND;
  e->handed = 1;
  val->data = e->v->data;
  val->len = e->v->len;
  return 0;
}

static int rd_prefetch(tt_txn *base, tt_table tab, const tt_bytes *keys,
                       size_t n) {
  rd_txn *t = (rd_txn *)base;
  if (t->err)
    return t->err;
  if (!keys && n)
    return TETHER_EINVAL;
  return rd_fetch(t, tab, keys, n);
}

static int rd_put(tt_txn *base, tt_table tab, tt_bytes key, tt_bytes val) {
  rd_txn *t = (rd_txn *)base;
  rd_ent *e;
  int rc;
  if (t->err)
    return t->err;
  if (!t->write)
    return TETHER_EREADONLY;
  if (!key.data || key.len == 0 || (val.len && !val.data))
    return TETHER_EINVAL;
  if (key.len > RD_MAX_KEY)
    return TETHER_ETOOBIG;
  e = rd_find(t, tab, key.data, key.len);
  if (!e && !(e = rd_ent_new(t, tab, key.data, key.len)))
    return rd_fail(t, TETHER_ENOMEM);
  rc = rd_ent_setval(t, e, val.data, val.len);
  if (rc)
    return rd_fail(t, rc);
  e->st = E_PUT;
  t->writes++;
  return 0;
}

static int rd_del(tt_txn *base, tt_table tab, tt_bytes key) {
  rd_txn *t = (rd_txn *)base;
  rd_ent *e;
  if (t->err)
    return t->err;
  if (!t->write)
    return TETHER_EREADONLY;
  if (!key.data || key.len == 0)
    return TETHER_EINVAL;
  if (key.len > RD_MAX_KEY)
    return 0; /* cannot be present */
  e = rd_find(t, tab, key.data, key.len);
  if (!e && !(e = rd_ent_new(t, tab, key.data, key.len)))
    return rd_fail(t, TETHER_ENOMEM);
  rd_ent_dropval(t, e);
  e->st = E_DEL;
  t->writes++;
  return 0;
}

/* ---- scan --------------------------------------------------------------------- */

typedef struct {
  redisReply *zr, *mr; /* the page: members (keys) and their values */
  size_t pi;           /* next member */
  int done;            /* Redis has nothing beyond the page */
  int started;         /* pos holds the last key visited */
  int vanished;        /* a member of the page was deleted before its MGET */
  unsigned char *pos;
  size_t poslen, poscap;
} rd_scanst;

/* Loads the page after the current one (the first: from FROM). */
static int rd_scan_page(rd_txn *t, unsigned tab, tt_bytes from,
                        rd_scanst *st) {
  rd_req *q = &t->q;
  redisReply *rep[2] = {NULL, NULL}, *zr = NULL, **mrep = NULL;
  int watch_idx = t->write && !(t->idx_watched & (1u << tab));
  size_t zi = watch_idx ? 1 : 0, n;
  int rc = 0;

  rd_req_reset(q);
  if (watch_idx) {
    rd_req_cmd(q, "WATCH");
    rd_req_ref(q, t->ix[tab], t->ixlen[tab]);
  }
  rd_req_cmd(q, "ZRANGEBYLEX");
  rd_req_ref(q, t->ix[tab], t->ixlen[tab]);
  if (st->zr && st->zr->elements) {
    const redisReply *last = st->zr->element[st->zr->elements - 1];
    rd_req_cat(q, "(", 1, last->str, last->len);
  } else if (from.len) {
    rd_req_cat(q, "[", 1, from.data, from.len);
  } else {
    rd_req_ref(q, "-", 1);
  }
  rd_req_ref(q, "+", 1);
  rd_req_ref(q, "LIMIT", 5);
  rd_req_ref(q, "0", 1);
  rd_req_fmt(q, "%d", RD_PAGE);
  rc = rd_txn_send(t, rep, watch_idx ? TX_WATCHES : 0);
  if (rc)
    goto out;
  if (watch_idx && (rc = rd_status_ok(t, rep[0])) != 0)
    goto out;
  zr = rep[zi];
  rep[zi] = NULL;
  if (zr->type == REDIS_REPLY_ERROR) {
    rc = rd_map_error(rd_s(t), t->conn ? t->conn->node : NULL, zr);
    goto out;
  }
  if (zr->type != REDIS_REPLY_ARRAY || zr->elements > RD_PAGE) {
    rc = TETHER_EIO;
    goto out;
  }
  n = zr->elements;
  for (size_t i = 0; i < n; i++)
    if (zr->element[i]->type != REDIS_REPLY_STRING) {
      rc = TETHER_EIO;
      goto out;
    }
  if (watch_idx)
    t->idx_watched |= 1u << tab;
  if (st->zr)
    freeReplyObject(st->zr);
  if (st->mr)
    freeReplyObject(st->mr);
  st->zr = zr;
  st->mr = NULL;
  st->pi = 0;
  zr = NULL;
  st->done = n < RD_PAGE;
  st->vanished = 0;
  if (n == 0)
    goto out;

  rd_req_reset(q);
  if (t->write) {
    rd_req_cmd(q, "WATCH");
    for (size_t i = 0; i < n; i++)
      rd_key(t, tab, st->zr->element[i]->str, st->zr->element[i]->len);
  }
  rd_req_cmd(q, "MGET");
  for (size_t i = 0; i < n; i++)
    rd_key(t, tab, st->zr->element[i]->str, st->zr->element[i]->len);
  rd_replies_free(rep, 2);
  rc = rd_txn_send(t, rep, t->write ? TX_WATCHES : 0);
  if (rc)
    goto out;
  if (t->write && (rc = rd_status_ok(t, rep[0])) != 0)
    goto out;
  mrep = &rep[t->write ? 1 : 0];
  if ((*mrep)->type == REDIS_REPLY_ERROR) {
    rc = rd_map_error(rd_s(t), t->conn ? t->conn->node : NULL, *mrep);
    goto out;
  }
  if ((*mrep)->type != REDIS_REPLY_ARRAY || (*mrep)->elements != n) {
    rc = TETHER_EIO;
    goto out;
  }
  st->mr = *mrep;
  *mrep = NULL;
out:
  rd_replies_free(rep, 2);
  if (zr)
    freeReplyObject(zr);
  if (rc) /* never leave members without their values */
    st->done = 1, st->pi = st->zr ? st->zr->elements : 0;
  return rc;
}

static int rd_scan_setpos(rd_scanst *st, const void *k, size_t n) {
  if (n > st->poscap) {
    size_t cap = n < 512 ? 512 : n;
    unsigned char *p = realloc(st->pos, cap);
    if (!p)
      return TETHER_ENOMEM;
    st->pos = p;
    st->poscap = cap;
  }
  memcpy(st->pos, k, n);
  st->poslen = n;
  st->started = 1;
  return 0;
}

/* Merges Redis's entries (ZRANGEBYLEX pages) with the transaction's
 * buffered puts and deletes, one key at a time, so the callback's own
 * writes are seen: the next key is the smallest above the last visited
 * among the page and the buffered puts, skipping keys deleted here. */
static int rd_scan(tt_txn *base, tt_table tab, tt_bytes from, tt_scan_cb cb,
                   void *ctx) {
  rd_txn *t = (rd_txn *)base;
  rd_scanst st;
  int rc = 0;
  if (t->err)
    return t->err;
  if (from.len && !from.data)
    return TETHER_EINVAL;
  memset(&st, 0, sizeof(st));
  for (;;) {
    const redisReply *rk = NULL;
    rd_ent *le, *e;
    tt_bytes k, v;
    int c;
    while (!rk) {
      if (st.zr && st.pi < st.zr->elements) {
        rk = st.zr->element[st.pi];
        break;
      }
      /* A member deleted between ZRANGEBYLEX and MGET was deleted by a
       * commit that may have added keys beyond this page (a changelog
       * entry moving forward): list once more before ending. */
      if (st.done && st.zr && !st.vanished)
        break;
      if ((rc = rd_scan_page(t, tab, from, &st)) != 0) {
        rd_fail(t, rc);
        goto out;
      }
    }
    le = st.started ? rd_succ_put(t, tab, st.pos, st.poslen, 0)
                    : rd_succ_put(t, tab, from.data, from.len, 1);
    if (!rk && !le)
      break;
    c = rk && le ? rd_bytescmp(rk->str, rk->len, le->key, le->klen)
        : rk     ? -1
                 : 1;
    if (c <= 0) {
      const redisReply *vr = st.mr->element[st.pi++];
      k.data = rk->str;
      k.len = rk->len;
      e = c == 0 ? le : rd_find(t, tab, rk->str, rk->len);
      if (e && e->st == E_PUT) {
        e->handed = 1;
        v.data = e->v->data;
        v.len = e->v->len;
      } else if ((e && e->st == E_DEL) || vr->type == REDIS_REPLY_NIL) {
        /* deleted here, or by another client since the index was read */
        if (!(e && e->st == E_DEL))
          st.vanished = 1;
        if ((rc = rd_scan_setpos(&st, k.data, k.len)) != 0)
          goto out;
        continue;
      } else if (vr->type == REDIS_REPLY_STRING) {
        v.data = vr->str;
        v.len = vr->len;
      } else {
        rc = rd_fail(t, TETHER_EIO);
        goto out;
      }
    } else {
      k.data = le->key;
      k.len = le->klen;
      le->handed = 1;
      v.data = le->v->data;
      v.len = le->v->len;
    }
    if ((rc = rd_scan_setpos(&st, k.data, k.len)) != 0)
      goto out;
    rc = cb(ctx, k, v);
    if (rc)
      goto out;
    if (t->err) { /* the callback's write failed and poisoned T */
      rc = t->err;
      goto out;
    }
  }
out:
  if (st.zr)
    freeReplyObject(st.zr);
  if (st.mr)
    freeReplyObject(st.mr);
  free(st.pos);
  return rc;
}

/* ---- commit --------------------------------------------------------------------- */

/* The entries to write, in (table, key) order. *OUT malloc'd. */
static int rd_collect(rd_txn *t, rd_ent ***out, size_t *n) {
  rd_ent *stack[96], *e = t->root, **w = NULL;
  size_t sp = 0, cap = 0, m = 0;
  *out = NULL;
  *n = 0;
  while (e || sp) {
    while (e) {
      if (sp == sizeof(stack) / sizeof(stack[0])) {
        free(w);
        return TETHER_EIO; /* an AVL tree this deep cannot fit memory */
      }
      stack[sp++] = e;
      e = e->l;
    }
    e = stack[--sp];
    /* A delete of a key read as absent (and watched) has nothing to do. */
    if (e->st == E_PUT || (e->st == E_DEL && e->known != K_ABSENT)) {
      if (m == cap) {
        size_t nc = cap ? cap * 2 : 64;
        rd_ent **nw = realloc(w, nc * sizeof(*nw));
        if (!nw) {
          free(w);
          return TETHER_ENOMEM;
        }
        w = nw;
        cap = nc;
      }
      w[m++] = e;
    }
    e = e->r;
  }
  *out = w;
  *n = m;
  return 0;
}

/* MULTI, per table: MSET + ZADD for the puts, DEL + ZREM for the deletes
 * (in chunks), EXEC, and WAIT when configured. */
static void rd_build_commit(rd_txn *t, rd_ent **w, size_t n) {
  rd_store *s = rd_s(t);
  rd_req *q = &t->q;
  rd_req_reset(q);
  rd_req_cmd(q, "MULTI");
  for (size_t i = 0; i < n;) {
    unsigned tab = w[i]->tab;
    size_t end = i;
    while (end < n && w[end]->tab == tab)
      end++;
    for (int del = 0; del < 2; del++) {
      int want = del ? E_DEL : E_PUT;
      size_t cnt = 0;
      for (size_t j = i; j < end; j++) {
        if (w[j]->st != want)
          continue;
        if (cnt % (RD_PAGE / 2) == 0)
          rd_req_cmd(q, del ? "DEL" : "MSET");
        rd_key(t, tab, w[j]->key, w[j]->klen);
        if (!del)
          rd_req_ref(q, w[j]->v->data, w[j]->v->len);
        cnt++;
      }
      cnt = 0;
      for (size_t j = i; j < end; j++) {
        if (w[j]->st != want)
          continue;
        if (cnt % (RD_PAGE / 2) == 0) {
          rd_req_cmd(q, del ? "ZREM" : "ZADD");
          rd_req_ref(q, t->ix[tab], t->ixlen[tab]);
        }
        if (!del)
          rd_req_ref(q, "0", 1);
        rd_req_ref(q, w[j]->key, w[j]->klen);
        cnt++;
      }
    }
    i = end;
  }
  rd_req_cmd(q, "EXEC");
  if (s->cfg.wait_replicas) {
    rd_req_cmd(q, "WAIT");
    rd_req_fmt(q, "%d", s->cfg.wait_replicas);
    rd_req_fmt(q, "%d", s->cfg.wait_ms);
  }
}

static int rd_commit(tt_txn *base) {
  rd_txn *t = (rd_txn *)base;
  rd_store *s = rd_s(t);
  rd_ent **w = NULL;
  redisReply **rep = NULL;
  size_t n = 0, exec_i, ncmds = 0;
  int rc = t->err;
  const redisReply *qbad = NULL;
  if (rc || !t->write)
    goto out;
  if ((rc = rd_collect(t, &w, &n)) != 0 || n == 0)
    goto out; /* nothing to write: no round trip */
  rd_build_commit(t, w, n);
  if ((rc = t->q.err) != 0)
    goto out;
  ncmds = t->q.ncmds;
  exec_i = ncmds - 1 - (s->cfg.wait_replicas ? 1 : 0);
  rep = calloc(ncmds, sizeof(*rep));
  if (!rep) {
    rc = TETHER_ENOMEM;
    goto out;
  }
  rc = rd_txn_send(t, rep, TX_COMMIT);
  if (rc)
    goto out;
  t->watched = 0; /* EXEC (or its refusal) ends every WATCH */
  for (size_t i = 0; i < exec_i && !qbad; i++)
    if (rep[i]->type == REDIS_REPLY_ERROR)
      qbad = rep[i];
  if (rep[exec_i]->type == REDIS_REPLY_NIL) {
    rd_seterr(s, "redis %s: a key read by the transaction on partition %u "
                 "changed before it committed (WATCH); redo it",
              t->conn->node->name, t->partition);
    rc = TETHER_ERETRY;
  } else if (rep[exec_i]->type == REDIS_REPLY_ERROR) {
    /* EXECABORT: a command was refused when queued (OOM, MOVED...) and
     * nothing was applied; the queued refusal says why. */
    rc = rd_map_error(s, t->conn->node, qbad ? qbad : rep[exec_i]);
  } else if (rep[exec_i]->type == REDIS_REPLY_ARRAY && !qbad) {
    /* Redis does not roll back a command failing inside EXEC; only a key
     * of the wrong type (not written by tether) makes ours fail. */
    for (size_t i = 0; i < rep[exec_i]->elements && !rc; i++)
      if (rep[exec_i]->element[i]->type == REDIS_REPLY_ERROR)
        rc = rd_map_error(s, t->conn->node, rep[exec_i]->element[i]);
    if (rc)
      rc = TETHER_ECORRUPT;
  } else {
    rc = TETHER_EIO; /* MULTI itself refused: never seen */
  }
  if (!rc && s->cfg.wait_replicas) {
    const redisReply *wr = rep[exec_i + 1];
    if (wr->type != REDIS_REPLY_INTEGER ||
        wr->integer < s->cfg.wait_replicas) {
      rd_seterr(s, "redis %s: WAIT: %lld of %d replicas acknowledged within "
                   "%d ms; the commit is on the master but a failover could "
                   "lose it",
                t->conn->node->name,
                wr->type == REDIS_REPLY_INTEGER ? wr->integer : -1LL,
                s->cfg.wait_replicas, s->cfg.wait_ms);
      rc = TETHER_EUNAVAILABLE;
    }
  }
out:
  if (rep)
    rd_replies_free(rep, ncmds);
  free(rep);
  free(w);
  rd_txn_end(t);
  return rc;
}

static void rd_abort(tt_txn *base) {
  if (base)
    rd_txn_end((rd_txn *)base);
}

static void rd_last_error(tt_store *base, char *buf, size_t len) {
  rd_store *s = (rd_store *)base;
  if (!buf || !len)
    return;
  pthread_mutex_lock(&s->mu);
  snprintf(buf, len, "%s", s->lasterr);
  pthread_mutex_unlock(&s->mu);
}

static void rd_store_free(rd_store *s) {
  rd_nodes_free(s);
  rd_cfg_free(&s->cfg);
  pthread_cond_destroy(&s->cv);
  pthread_mutex_destroy(&s->mu);
  free(s->writers);
  free(s->url);
  free(s);
}

static void rd_close(tt_store *base) { rd_store_free((rd_store *)base); }

static const tt_store_ops rd_ops = {
    .name = "redis",
    .begin = rd_begin,
    .get = rd_get,
    .put = rd_put,
    .del = rd_del,
    .scan = rd_scan,
    .prefetch = rd_prefetch,
    .commit = rd_commit,
    .abort = rd_abort,
    .close = rd_close,
    .last_error = rd_last_error,
};

uint64_t rd_store_roundtrips(tt_store *base) {
  rd_store *s = (rd_store *)base;
  return __atomic_load_n(&s->roundtrips, __ATOMIC_RELAXED);
}

/* One command on node N at open: *R is its reply (caller frees). */
static int rd_open_cmd(rd_store *s, rd_node *n, const char *a, const char *b,
                       redisReply **r) {
  rd_conn *k = NULL;
  rd_req q;
  int rc = rd_conn_get(s, n, &k);
  *r = NULL;
  if (rc)
    return rc;
  rd_req_init(&q);
  rd_req_cmd(&q, a);
  if (b)
    rd_req_ref(&q, b, strlen(b));
  rc = rd_conn_send(s, k, &q, 0, r);
  rd_conn_put(s, k, rc != 0);
  rd_req_free(&q);
  return rc;
}

/* An allkeys-* eviction policy would silently drop tether's records when
 * Redis fills up; noeviction (OOM -> TETHER_EFULL) or volatile-* (our keys
 * have no TTL, so they are never evicted) are safe. An unreachable node is
 * left to the transactions. */
static int rd_check_policy(rd_store *s, rd_node *n) {
  redisReply *r = NULL;
  const char *p;
  int rc = rd_open_cmd(s, n, "INFO", "memory", &r);
  if (rc == TETHER_EUNAVAILABLE && s->cfg.cluster)
    return 0;
  if (rc)
    return rc;
  if (r->type == REDIS_REPLY_STRING &&
      (p = strstr(r->str, "maxmemory_policy:allkeys-")) != NULL) {
    int len = (int)strcspn(p + 17, "\r\n");
    rd_seterr(s, "redis %s: maxmemory-policy %.*s would evict tether's "
                 "records; set it to noeviction",
              n->name, len > 40 ? 40 : len, p + 17);
    rc = TETHER_ECONFIG;
  }
  freeReplyObject(r);
  return rc;
}

int tt_store_open_redis(const char *url, const tt_store_opts *opts,
                        tt_store **out, char *errbuf, size_t errlen) {
  rd_store *s = NULL;
  redisReply *r = NULL;
  int rc = 0;
  if (errbuf && errlen)
    errbuf[0] = '\0';
  if (!out) {
    if (errbuf && errlen)
      snprintf(errbuf, errlen, "store: no output handle given");
    return TETHER_EINVAL;
  }
  *out = NULL;
  s = calloc(1, sizeof(*s));
  if (!s) {
    if (errbuf && errlen)
      snprintf(errbuf, errlen, "redis: out of memory opening the store");
    return TETHER_ENOMEM;
  }
  if ((rc = rd_cfg_parse(url, &s->cfg, errbuf, errlen)) != 0) {
    free(s);
    return rc;
  }
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  s->base.ops = &rd_ops;
  s->read_only = opts && opts->read_only;
  s->url = rd_url_masked(url);
  if (!s->url) {
    rc = TETHER_ENOMEM;
    goto fail;
  }
  for (int i = 0; i < s->cfg.nseeds; i++) {
    if (!rd_node_intern(s, s->cfg.hosts[i], s->cfg.ports[i])) {
      rc = TETHER_EINVAL;
      rd_seterr(s, "%s: seed %s is not a usable host", s->url,
                s->cfg.hosts[i]);
      goto fail;
    }
  }
  for (int i = 0; i < RD_SLOTS; i++)
    s->slot[i] = s->cfg.cluster ? -1 : 0;

  if (s->cfg.cluster) {
    rc = rd_refresh(s, NULL);
    if (rc) {
      rc = TETHER_EUNAVAILABLE;
      if (strstr(s->lasterr, "cluster support disabled")) {
        char msg[sizeof(s->lasterr)];
        snprintf(msg, sizeof(msg), "%s", s->lasterr);
        rd_seterr(s, "%.200s; for a single server use redis://", msg);
        rc = TETHER_ECONFIG;
      }
      goto fail;
    }
  } else {
    /* Catch redis:// given a cluster node: most keys would be MOVED. */
    rc = rd_open_cmd(s, s->nodes[0], "INFO", "cluster", &r);
    if (rc)
      goto fail;
    if (r->type == REDIS_REPLY_STRING && strstr(r->str, "cluster_enabled:1")) {
      rd_seterr(s, "%s is a Redis Cluster node; use redis-cluster://%s",
                s->nodes[0]->name, s->nodes[0]->name);
      rc = TETHER_ECONFIG;
      goto fail;
    }
  }
  freeReplyObject(r);
  r = NULL;
  for (int i = 0; i < RD_MAX_NODES; i++) {
    rd_node *n;
    pthread_mutex_lock(&s->mu);
    n = i < s->nnodes ? s->nodes[i] : NULL;
    pthread_mutex_unlock(&s->mu);
    if (!n)
      break;
    if ((rc = rd_check_policy(s, n)) != 0)
      goto fail;
  }
  *out = &s->base;
  return 0;
fail:
  if (r)
    freeReplyObject(r);
  if (errbuf && errlen) {
    const char *hint =
        rc == TETHER_EUNAVAILABLE
            ? "; start Redis there or fix the URL"
            : "";
    snprintf(errbuf, errlen, "backend %s: %s%s", s->url ? s->url : "redis",
             s->lasterr[0] ? s->lasterr : tether_strerror(rc), hint);
  }
  rd_store_free(s);
  return rc;
}
