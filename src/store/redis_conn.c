/* redis_conn.c — the Redis backend's plumbing: the URL, hiredis
 * connections and their per-node pool, pipelined requests, replies read
 * with a size bound, and Redis errors mapped to TETHER_E* codes.
 *
 * Bounded replies: hiredis 0.14 buffers and allocates whatever the server
 * sends. Replies are built here by our own reader functions, which count
 * the bytes and elements of the reply being read (per thread: a connection
 * is read by one thread at a time) and refuse past RD_REPLY_MAX /
 * RD_ARRAY_MAX; the read loop also refuses an unparsed backlog past the
 * limit. Either way the connection is dropped: its stream is unusable. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "store/redis_int.h"

/* ---- requests ------------------------------------------------------------ */

void rd_req_init(rd_req *q) { memset(q, 0, sizeof(*q)); }

void rd_req_reset(rd_req *q) {
  q->nargs = q->ncmds = q->used = q->bytes = 0;
  q->err = 0;
}

void rd_req_free(rd_req *q) {
  free(q->args);
  free(q->cmds);
  free(q->arena);
  memset(q, 0, sizeof(*q));
}

/* Grows *P (elements of SIZE) to hold at least NEED; 0 or -1. */
static int rd_grow(void **p, size_t *cap, size_t need, size_t size) {
  size_t n = *cap ? *cap : 16;
  void *np;
  if (need <= *cap)
    return 0;
  while (n < need) {
    if (n > SIZE_MAX / 2 / size)
      return -1;
    n *= 2;
  }
  np = realloc(*p, n * size);
  if (!np)
    return -1;
  *p = np;
  *cap = n;
  return 0;
}

static rd_arg *rd_req_newarg(rd_req *q, size_t len) {
  if (q->err)
    return NULL;
  if (len > RD_REQ_MAX - q->bytes) {
    q->err = TETHER_ETOOBIG;
    return NULL;
  }
  if (rd_grow((void **)&q->args, &q->capargs, q->nargs + 1, sizeof(rd_arg))) {
    q->err = TETHER_ENOMEM;
    return NULL;
  }
  q->bytes += len;
  return &q->args[q->nargs++];
}

void rd_req_ref(rd_req *q, const void *p, size_t n) {
  rd_arg *a = rd_req_newarg(q, n);
  if (!a)
    return;
  a->ext = n ? p : "";
  a->off = 0;
  a->len = n;
}

void rd_req_cat(rd_req *q, const void *a, size_t alen, const void *b,
                size_t blen) {
  rd_arg *g;
  size_t need;
  if (q->err)
    return;
  need = q->used + alen + blen;
  if (need < q->used || rd_grow((void **)&q->arena, &q->cap, need, 1)) {
    q->err = TETHER_ENOMEM;
    return;
  }
  g = rd_req_newarg(q, alen + blen);
  if (!g)
    return;
  g->ext = NULL;
  g->off = q->used;
  g->len = alen + blen;
  if (alen)
    memcpy(q->arena + q->used, a, alen);
  if (blen)
    memcpy(q->arena + q->used + alen, b, blen);
  q->used = need;
}

void rd_req_fmt(rd_req *q, const char *fmt, ...) {
  char buf[64];
  va_list ap;
  int n;
  va_start(ap, fmt);
  n = vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof(buf)) {
    if (!q->err)
      q->err = TETHER_EINVAL;
    return;
  }
  rd_req_cat(q, buf, (size_t)n, NULL, 0);
}

void rd_req_cmd(rd_req *q, const char *name) {
  if (q->err)
    return;
  if (rd_grow((void **)&q->cmds, &q->capcmds, q->ncmds + 1, sizeof(size_t))) {
    q->err = TETHER_ENOMEM;
    return;
  }
  q->cmds[q->ncmds++] = q->nargs;
  rd_req_ref(q, name, strlen(name));
}

/* ---- errors -------------------------------------------------------------- */

void rd_seterr(rd_store *s, const char *fmt, ...) {
  va_list ap;
  char buf[sizeof(s->lasterr)];
  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  pthread_mutex_lock(&s->mu);
  memcpy(s->lasterr, buf, sizeof(buf));
  pthread_mutex_unlock(&s->mu);
}

int rd_is_err(const redisReply *r, const char *pfx) {
  size_t n = strlen(pfx);
  return r && r->type == REDIS_REPLY_ERROR && r->len >= n &&
         memcmp(r->str, pfx, n) == 0 && (r->len == n || r->str[n] == ' ');
}

int rd_parse_redirect(const redisReply *r, unsigned *slot, char *host,
                      size_t hostlen, int *port) {
  char buf[320];
  char *sp, *colon, *end;
  unsigned long v;
  if (!r || r->type != REDIS_REPLY_ERROR || r->len >= sizeof(buf))
    return -1;
  memcpy(buf, r->str, r->len);
  buf[r->len] = '\0';
  sp = strchr(buf, ' '); /* after MOVED / ASK */
  if (!sp)
    return -1;
  errno = 0;
  v = strtoul(sp + 1, &end, 10);
  if (errno || end == sp + 1 || *end != ' ' || v >= RD_SLOTS)
    return -1;
  *slot = (unsigned)v;
  colon = strrchr(end + 1, ':');
  if (!colon || (size_t)(colon - (end + 1)) >= hostlen)
    return -1;
  memcpy(host, end + 1, (size_t)(colon - (end + 1)));
  host[colon - (end + 1)] = '\0';
  v = strtoul(colon + 1, &end, 10);
  if (*end != '\0' || end == colon + 1 || v == 0 || v > 65535)
    return -1;
  *port = (int)v;
  return 0;
}

int rd_map_error(rd_store *s, const rd_node *n, const redisReply *r) {
  static const char *const unavailable[] = {
      "LOADING", "CLUSTERDOWN", "MASTERDOWN", "NOAUTH",      "WRONGPASS",
      "NOPERM",  "READONLY",    "BUSY",       "NOREPLICAS", "NOTBUSY"};
  int rc = TETHER_EIO;
  int len = r && r->type == REDIS_REPLY_ERROR ? (int)(r->len > 160 ? 160 : r->len)
                                              : 0;
  if (!r || r->type != REDIS_REPLY_ERROR)
    return TETHER_EIO;
  if (rd_is_err(r, "OOM"))
    rc = TETHER_EFULL;
  else if (rd_is_err(r, "TRYAGAIN") || rd_is_err(r, "MOVED") ||
           rd_is_err(r, "ASK"))
    rc = TETHER_ERETRY;
  else if (rd_is_err(r, "WRONGTYPE"))
    rc = TETHER_ECORRUPT;
  for (size_t i = 0; rc == TETHER_EIO && i < sizeof(unavailable) /
                                                 sizeof(unavailable[0]); i++)
    if (rd_is_err(r, unavailable[i]))
      rc = TETHER_EUNAVAILABLE;
  rd_seterr(s, "redis %s: %.*s%s", n ? n->name : "?", len, r->str,
            rc == TETHER_EFULL
                ? " (raise maxmemory or free memory in Redis)"
            : rc == TETHER_ECORRUPT
                ? " (a tether key was written by something else)"
                : "");
  return rc;
}

/* ---- bounded replies --------------------------------------------------------
 * Same shapes as hiredis's own reply objects, so freeReplyObject frees
 * them (it uses free()). */

static __thread rd_conn *rd_reading;

static int rd_account(size_t n) {
  rd_conn *k = rd_reading;
  if (!k)
    return 0;
  if (n > RD_REPLY_MAX - k->reply_bytes) {
    k->reply_too_big = 1;
    return -1;
  }
  k->reply_bytes += n;
  return 0;
}

static redisReply *rd_obj(const redisReadTask *task, int type) {
  redisReply *r = calloc(1, sizeof(*r));
  if (!r)
    return NULL;
  r->type = type;
  if (task->parent) {
    redisReply *p = task->parent->obj;
    p->element[task->idx] = r;
  }
  return r;
}

static void *rd_create_string(const redisReadTask *task, char *str,
                              size_t len) {
  redisReply *r;
  char *buf;
  if (rd_account(len + sizeof(redisReply)))
    return NULL;
  buf = malloc(len + 1);
  if (!buf)
    return NULL;
  r = rd_obj(task, task->type);
  if (!r) {
    free(buf);
    return NULL;
  }
  memcpy(buf, str, len);
  buf[len] = '\0';
  r->str = buf;
  r->len = len;
  return r;
}

static void *rd_create_array(const redisReadTask *task, int elements) {
  redisReply *r;
  redisReply **el = NULL;
  if (elements < 0 || elements > RD_ARRAY_MAX) {
    if (rd_reading)
      rd_reading->reply_too_big = 1;
    return NULL;
  }
  if (rd_account((size_t)elements * sizeof(void *) + sizeof(redisReply)))
    return NULL;
  if (elements > 0 && !(el = calloc((size_t)elements, sizeof(*el))))
    return NULL;
  r = rd_obj(task, REDIS_REPLY_ARRAY);
  if (!r) {
    free(el);
    return NULL;
  }
  r->element = el;
  r->elements = (size_t)elements;
  return r;
}

static void *rd_create_integer(const redisReadTask *task, long long v) {
  redisReply *r;
  if (rd_account(sizeof(redisReply)))
    return NULL;
  r = rd_obj(task, REDIS_REPLY_INTEGER);
  if (r)
    r->integer = v;
  return r;
}

static void *rd_create_nil(const redisReadTask *task) {
  if (rd_account(sizeof(redisReply)))
    return NULL;
  return rd_obj(task, REDIS_REPLY_NIL);
}

static redisReplyObjectFunctions rd_reply_fns = {
    rd_create_string, rd_create_array, rd_create_integer, rd_create_nil,
    freeReplyObject};

void rd_replies_free(redisReply **r, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (r[i])
      freeReplyObject(r[i]);
    r[i] = NULL;
  }
}

/* One whole reply into *OUT: 0, or -1 with the context unusable. */
static int rd_read_one(rd_conn *k, redisReply **out) {
  void *r = NULL;
  int rc = 0;
  k->reply_bytes = 0;
  k->reply_too_big = 0;
  rd_reading = k;
  for (;;) {
    if (redisGetReplyFromReader(k->c, &r) != REDIS_OK) {
      rc = -1;
      break;
    }
    if (r)
      break;
    if (k->c->reader->len > RD_REPLY_MAX + 65536) {
      k->reply_too_big = 1;
      rc = -1;
      break;
    }
    if (redisBufferRead(k->c) != REDIS_OK) {
      rc = -1;
      break;
    }
  }
  rd_reading = NULL;
  *out = r;
  return rc;
}

static void rd_conn_failed(rd_store *s, rd_conn *k) {
  const char *why = k->reply_too_big
                        ? "reply larger than the 64 MiB limit"
                    : k->c->err == REDIS_ERR_EOF ? "connection closed by Redis"
                    : k->c->errstr[0]            ? k->c->errstr
                                                 : "connection failed";
  rd_seterr(s, "redis %s: %s", k->node->name, why);
}

/* Writes the output buffer. hiredis uses write(2), which raises SIGPIPE
 * on a connection the server closed, and the default action would kill
 * the process: the signal is blocked in this thread meanwhile and one it
 * caused is consumed, so the error comes back as EPIPE instead. */
static int rd_write_all(rd_conn *k) {
  sigset_t pipe, old, pending;
  int done = 0, rc = 0, was_pending;
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe, &old);
  sigpending(&pending);
  was_pending = sigismember(&pending, SIGPIPE);
  while (!done && rc == 0)
    if (redisBufferWrite(k->c, &done) != REDIS_OK)
      rc = -1;
  if (rc && !was_pending) {
    struct timespec zero = {0, 0};
    sigpending(&pending);
    if (sigismember(&pending, SIGPIPE))
      (void)sigtimedwait(&pipe, NULL, &zero);
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return rc;
}

int rd_conn_send(rd_store *s, rd_conn *k, const rd_req *q, int flags,
                 redisReply **replies) {
  const char **argv = NULL;
  size_t *lens = NULL, maxargc = 0;
  int rc = 0;
  redisReply *drop = NULL;
  for (size_t i = 0; i < q->ncmds; i++)
    replies[i] = NULL;
  if (q->err)
    return q->err;
  for (size_t i = 0; i < q->ncmds; i++)
    if (rd_req_argc(q, i) > maxargc)
      maxargc = rd_req_argc(q, i);
  if (maxargc > INT_MAX)
    return TETHER_ETOOBIG;
  argv = malloc((maxargc ? maxargc : 1) * sizeof(*argv));
  lens = malloc((maxargc ? maxargc : 1) * sizeof(*lens));
  if (!argv || !lens) {
    rc = TETHER_ENOMEM;
    goto out;
  }
  if ((flags & RD_SEND_UNWATCH) &&
      redisAppendCommand(k->c, "UNWATCH") != REDIS_OK)
    goto fail;
  for (size_t i = 0; i < q->ncmds; i++) {
    size_t argc = rd_req_argc(q, i), first = q->cmds[i];
    for (size_t j = 0; j < argc; j++) {
      const rd_arg *a = &q->args[first + j];
      argv[j] = a->ext ? a->ext : q->arena + a->off;
      lens[j] = a->len;
    }
    if ((flags & RD_SEND_ASKING) &&
        redisAppendCommand(k->c, "ASKING") != REDIS_OK)
      goto fail;
    if (redisAppendCommandArgv(k->c, (int)argc, argv, lens) != REDIS_OK)
      goto fail;
  }
  __atomic_fetch_add(&s->roundtrips, 1, __ATOMIC_RELAXED);
  if (rd_write_all(k) != 0)
    goto fail;
  if (flags & RD_SEND_UNWATCH) {
    if (rd_read_one(k, &drop))
      goto fail;
    freeReplyObject(drop);
  }
  for (size_t i = 0; i < q->ncmds; i++) {
    if (flags & RD_SEND_ASKING) {
      if (rd_read_one(k, &drop))
        goto fail;
      freeReplyObject(drop);
    }
    if (rd_read_one(k, &replies[i]))
      goto fail;
  }
  goto out;
fail:
  rd_conn_failed(s, k);
  rd_replies_free(replies, q->ncmds);
  rc = TETHER_EUNAVAILABLE;
out:
  free(argv);
  free(lens);
  return rc;
}

/* ---- connections ----------------------------------------------------------- */

static void rd_conn_close(rd_conn *k) {
  if (!k)
    return;
  if (k->c)
    redisFree(k->c);
  free(k);
}

static struct timeval rd_tv(int ms) {
  struct timeval tv;
  tv.tv_sec = ms / 1000;
  tv.tv_usec = (ms % 1000) * 1000;
  return tv;
}


/* AUTH and SELECT on a new connection, in one round trip. */
static int rd_conn_setup(rd_store *s, rd_conn *k) {
  rd_req q;
  redisReply *r[2] = {NULL, NULL};
  int rc = 0;
  if (!s->cfg.password && s->cfg.db == 0)
    return 0;
  rd_req_init(&q);
  if (s->cfg.password) {
    rd_req_cmd(&q, "AUTH");
    if (s->cfg.user)
      rd_req_ref(&q, s->cfg.user, strlen(s->cfg.user));
    rd_req_ref(&q, s->cfg.password, strlen(s->cfg.password));
  }
  if (s->cfg.db) {
    rd_req_cmd(&q, "SELECT");
    rd_req_fmt(&q, "%d", s->cfg.db);
  }
  rc = rd_conn_send(s, k, &q, 0, r);
  for (size_t i = 0; rc == 0 && i < q.ncmds; i++) {
    if (r[i]->type == REDIS_REPLY_ERROR) {
      rd_seterr(s, "redis %s: %s refused: %.*s; check the URL", k->node->name,
                s->cfg.password && i == 0 ? "AUTH" : "SELECT",
                (int)(r[i]->len > 120 ? 120 : r[i]->len), r[i]->str);
      rc = TETHER_ECONFIG;
    }
  }
  rd_replies_free(r, q.ncmds);
  rd_req_free(&q);
  return rc;
}

/* An idle connection has nothing to read; readable means the server
 * closed it (restart, idle timeout) or broke the protocol. Checked before
 * reuse so that a commit is never the request that finds out. */
static int rd_idle_alive(const rd_conn *k) {
  struct pollfd p = {.fd = k->c->fd, .events = POLLIN};
  return poll(&p, 1, 0) == 0;
}

int rd_conn_get(rd_store *s, rd_node *node, rd_conn **out) {
  rd_conn *k = NULL;
  int rc = 0;
  *out = NULL;
  pthread_mutex_lock(&s->mu);
  while (node->idle) {
    k = node->idle;
    node->idle = k->next;
    node->nidle--;
    k->next = NULL;
    if (!rd_idle_alive(k)) {
      pthread_mutex_unlock(&s->mu);
      rd_conn_close(k);
      k = NULL;
      pthread_mutex_lock(&s->mu);
      continue;
    }
    node->live++;
    pthread_mutex_unlock(&s->mu);
    k->reused = 1;
    *out = k;
    return 0;
  }
  if (node->live >= RD_MAX_CONNS) {
    pthread_mutex_unlock(&s->mu);
    rd_seterr(s, "redis %s: %d connections already open from this process",
              node->name, RD_MAX_CONNS);
    return TETHER_EBUSY;
  }
  node->live++;
  pthread_mutex_unlock(&s->mu);

  k = calloc(1, sizeof(*k));
  if (!k) {
    rc = TETHER_ENOMEM;
    goto out;
  }
  k->node = node;
  k->c = redisConnectWithTimeout(node->host, node->port,
                                 rd_tv(s->cfg.connect_ms));
  if (!k->c || k->c->err) {
    rd_seterr(s, "redis %s: cannot connect: %s", node->name,
              k->c ? k->c->errstr : "out of memory");
    rc = TETHER_EUNAVAILABLE;
    goto out;
  }
  if (redisSetTimeout(k->c, rd_tv(s->cfg.timeout_ms)) != REDIS_OK) {
    rd_seterr(s, "redis %s: cannot set the command timeout: %s", node->name,
              k->c->errstr);
    rc = TETHER_EUNAVAILABLE;
    goto out;
  }
  (void)redisEnableKeepAlive(k->c);
  k->c->reader->fn = &rd_reply_fns;
  rc = rd_conn_setup(s, k);
out:
  if (rc) {
    rd_conn_close(k);
    pthread_mutex_lock(&s->mu);
    node->live--;
    pthread_mutex_unlock(&s->mu);
    return rc;
  }
  *out = k;
  return 0;
}

void rd_conn_put(rd_store *s, rd_conn *k, int broken) {
  rd_conn *dead = NULL;
  rd_node *n;
  if (!k)
    return;
  n = k->node;
  pthread_mutex_lock(&s->mu);
  n->live--;
  if (broken) {
    dead = n->idle;
    n->idle = NULL;
    n->nidle = 0;
  } else if (n->nidle < RD_MAX_IDLE) {
    k->next = n->idle;
    n->idle = k;
    n->nidle++;
    k = NULL;
  }
  pthread_mutex_unlock(&s->mu);
  rd_conn_close(k);
  while (dead) {
    rd_conn *next = dead->next;
    rd_conn_close(dead);
    dead = next;
  }
}

void rd_nodes_free(rd_store *s) {
  for (int i = 0; i < s->nnodes; i++) {
    rd_node *n = s->nodes[i];
    while (n->idle) {
      rd_conn *next = n->idle->next;
      rd_conn_close(n->idle);
      n->idle = next;
    }
    free(n->host);
    free(n);
    s->nodes[i] = NULL;
  }
  s->nnodes = 0;
}

/* ---- URL ------------------------------------------------------------------- */

#define RD_URL_SINGLE "redis://[[USER]:PASSWORD@]HOST[:PORT][/DB][?OPTIONS]"
#define RD_URL_CLUSTER                                                         \
  "redis-cluster://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]...][?OPTIONS]"
#define RD_URL_OPTS                                                            \
  "options: wait=N, wait_ms=MS, connect_timeout_ms=MS, timeout_ms=MS"

char *rd_url_masked(const char *url) {
  const char *scheme = strstr(url, "://");
  const char *at, *colon, *end;
  char *m;
  size_t n;
  if (!scheme)
    return strdup(url);
  scheme += 3;
  end = scheme + strcspn(scheme, "/?");
  at = memchr(scheme, '@', (size_t)(end - scheme));
  if (!at)
    return strdup(url);
  colon = memchr(scheme, ':', (size_t)(at - scheme));
  if (!colon)
    colon = scheme - 1; /* "PASSWORD@" without a user */
  n = (size_t)(colon + 1 - url);
  m = malloc(n + 3 + strlen(at) + 1);
  if (!m)
    return NULL;
  memcpy(m, url, n);
  if (colon == scheme - 1) {
    memcpy(m + n, ":", 1); /* shows as ":***@" */
    n++;
  }
  memcpy(m + n, "***", 3);
  strcpy(m + n + 3, at);
  return m;
}

void rd_cfg_free(rd_cfg *cfg) {
  for (int i = 0; i < cfg->nseeds; i++)
    free(cfg->hosts[i]);
  free(cfg->user);
  free(cfg->password);
  memset(cfg, 0, sizeof(*cfg));
}

/* Decimal in [MIN, MAX], the whole of [P, END). */
static int rd_num(const char *p, const char *end, long min, long max,
                  long *out) {
  long v = 0;
  if (p == end || end - p > 10)
    return -1;
  for (; p < end; p++) {
    if (*p < '0' || *p > '9')
      return -1;
    v = v * 10 + (*p - '0');
  }
  if (v < min || v > max)
    return -1;
  *out = v;
  return 0;
}

static char *rd_strndup(const char *p, size_t n) {
  char *s = malloc(n + 1);
  if (s) {
    memcpy(s, p, n);
    s[n] = '\0';
  }
  return s;
}

/* One "HOST[:PORT]" or "[V6][:PORT]" in [P, END) into seed I. */
static int rd_parse_hostport(rd_cfg *cfg, const char *p, const char *end,
                             const char **why) {
  const char *hs = p, *he, *ps = NULL;
  long port = 6379;
  if (p == end) {
    *why = "a host is empty";
    return -1;
  }
  if (*p == '[') {
    he = memchr(p, ']', (size_t)(end - p));
    if (!he) {
      *why = "an IPv6 address lacks its closing ']'";
      return -1;
    }
    hs = p + 1;
    if (he + 1 < end) {
      if (he[1] != ':') {
        *why = "expected ':PORT' after ']'";
        return -1;
      }
      ps = he + 2;
    }
  } else {
    he = memchr(p, ':', (size_t)(end - p));
    if (he) {
      ps = he + 1;
    } else {
      he = end;
    }
  }
  if (he == hs) {
    *why = "a host is empty";
    return -1;
  }
  if (ps && rd_num(ps, end, 1, 65535, &port)) {
    *why = "a port is not a number from 1 to 65535";
    return -1;
  }
  if (cfg->nseeds >= RD_MAX_SEEDS) {
    *why = "more than 64 seed nodes";
    return -1;
  }
  if (!(cfg->hosts[cfg->nseeds] = rd_strndup(hs, (size_t)(he - hs)))) {
    *why = "out of memory";
    return -1;
  }
  cfg->ports[cfg->nseeds++] = (int)port;
  return 0;
}

static int rd_parse_opts(rd_cfg *cfg, const char *p, const char **why) {
  while (*p) {
    const char *amp = p + strcspn(p, "&");
    const char *eq = memchr(p, '=', (size_t)(amp - p));
    long v;
    size_t nl;
    if (!eq) {
      *why = "an option is not NAME=VALUE";
      return -1;
    }
    nl = (size_t)(eq - p);
    if (rd_num(eq + 1, amp, 0, 86400000, &v)) {
      *why = "an option value is not a number of at most 86400000";
      return -1;
    }
    if (nl == 4 && memcmp(p, "wait", 4) == 0)
      cfg->wait_replicas = (int)v;
    else if (nl == 7 && memcmp(p, "wait_ms", 7) == 0)
      cfg->wait_ms = (int)v;
    else if (nl == 18 && memcmp(p, "connect_timeout_ms", 18) == 0 && v > 0)
      cfg->connect_ms = (int)v;
    else if (nl == 10 && memcmp(p, "timeout_ms", 10) == 0 && v > 0)
      cfg->timeout_ms = (int)v;
    else {
      *why = "unknown option (or a zero timeout)";
      return -1;
    }
    p = *amp ? amp + 1 : amp;
  }
  return 0;
}

int rd_cfg_parse(const char *url, rd_cfg *cfg, char *errbuf, size_t errlen) {
  const char *p, *end, *at, *why = NULL;
  char *shown = NULL;
  memset(cfg, 0, sizeof(*cfg));
  cfg->connect_ms = RD_CONNECT_MS;
  cfg->timeout_ms = RD_TIMEOUT_MS;
  cfg->wait_ms = 1000;
  if (!url) {
    if (errbuf && errlen)
      snprintf(errbuf, errlen,
               "no Redis URL given; expected " RD_URL_SINGLE " or "
               RD_URL_CLUSTER);
    return TETHER_EINVAL;
  }
  if (strncmp(url, "redis://", 8) == 0) {
    p = url + 8;
  } else if (strncmp(url, "redis-cluster://", 16) == 0) {
    p = url + 16;
    cfg->cluster = 1;
  } else {
    why = "unknown scheme";
    goto bad;
  }
  end = p + strcspn(p, "/?");
  at = memchr(p, '@', (size_t)(end - p));
  if (at) {
    const char *colon = memchr(p, ':', (size_t)(at - p));
    if (!colon) {
      why = "credentials must be [USER]:PASSWORD@";
      goto bad;
    }
    if (colon > p && !(cfg->user = rd_strndup(p, (size_t)(colon - p)))) {
      why = "out of memory";
      goto bad;
    }
    if (!(cfg->password =
              rd_strndup(colon + 1, (size_t)(at - colon - 1)))) {
      why = "out of memory";
      goto bad;
    }
    p = at + 1;
  }
  while (p < end) {
    const char *comma = memchr(p, ',', (size_t)(end - p));
    const char *e = comma ? comma : end;
    if (rd_parse_hostport(cfg, p, e, &why))
      goto bad;
    p = comma ? comma + 1 : end;
    if (comma && p == end) {
      why = "a host is empty";
      goto bad;
    }
  }
  if (cfg->nseeds == 0) {
    why = "no HOST";
    goto bad;
  }
  if (cfg->nseeds > 1 && !cfg->cluster) {
    why = "several hosts need redis-cluster://";
    goto bad;
  }
  if (*p == '/') {
    const char *de = p + 1 + strcspn(p + 1, "?");
    long db;
    if (cfg->cluster) {
      why = "a Redis Cluster has no database numbers";
      goto bad;
    }
    if (de > p + 1) {
      if (rd_num(p + 1, de, 0, 65535, &db)) {
        why = "the database is not a number";
        goto bad;
      }
      cfg->db = (int)db;
    }
    p = de;
  }
  if (*p == '?' && rd_parse_opts(cfg, p + 1, &why))
    goto bad;
  if (cfg->wait_replicas && (cfg->wait_ms == 0 ||
                             cfg->wait_ms >= cfg->timeout_ms)) {
    /* WAIT with timeout 0 blocks forever; past the command timeout the
     * connection would be dropped first. */
    why = "wait_ms must be above 0 and below timeout_ms";
    goto bad;
  }
  return 0;
bad:
  shown = url ? rd_url_masked(url) : NULL;
  if (errbuf && errlen)
    snprintf(errbuf, errlen, "backend URL \"%s\": %s; expected %s (%s)",
             shown ? shown : "?", why,
             cfg->cluster ? RD_URL_CLUSTER : RD_URL_SINGLE, RD_URL_OPTS);
  free(shown);
  rd_cfg_free(cfg);
  return TETHER_EINVAL;
}
