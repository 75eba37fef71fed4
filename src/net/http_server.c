/* http_server.c — libmicrohttpd front of the reconciler, with group commit
 * and long-poll. */
#include "net/http_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "core/util.h"
#include "net/codec.h"

/* Each connection may hold a store read transaction, and LMDB has 1024
 * reader slots (LM_MAX_READERS in src/store/lmdb.c): past that a pull
 * fails with "readers full" instead of waiting. Some slots stay free for
 * the committer and the server's own reads. */
#define MAX_CONNS 1000u
#define DEFAULT_MAX_CONNS MAX_CONNS
/* Request body bytes buffered at once, all connections together (raw
 * bodies as they arrive, then their decoded text until parsed): without
 * it, every connection buffering a body up to max_body is up to 64 GiB. */
#define DEFAULT_MAX_BUFFERED ((size_t)1 << 30)
#define DEFAULT_MAX_BATCH 256u
#define DEFAULT_MAX_WAIT_MS 60000u
/* Starting capacity of a request buffer when no Content-Length says more. */
#define BODY_INITIAL_CAP 16384u
#define BODY_PREALLOC_MAX ((size_t)1 << 20)

/* How long a push sent "ahead" (PROTOCOL.md) may wait for the push it
 * follows when it finds a gap before it. That push is normally a few
 * milliseconds behind; past this the gap is answered as usual and the
 * replica pushes those intents again. */
#define DEFAULT_AHEAD_WAIT_MS 2000u
/* How long a stop waits for the requests under way to be answered before
 * it closes their connections anyway (a client still uploading a body). */
#define STOP_DRAIN_MS 5000u

/* One queued push: the handler thread owns it on its stack and waits until
 * the committer sets DONE. */
typedef struct push_waiter {
  tt_push_job job;
  int done;
  uint64_t wait_until; /* CLOCK_MONOTONIC ms; 0 = a gap is answered at once */
  struct push_waiter *next;
} push_waiter;

struct tt_http_server {
  tt_server *srv;
  struct MHD_Daemon *daemon;
  uint16_t port;
  size_t max_body;
  size_t max_raw; /* bound on the encoded bytes we buffer */
  size_t max_buffered;
  unsigned max_conns;
  size_t max_batch;
  uint32_t max_wait_ms;
  uint32_t ahead_wait_ms;
  void (*log)(void *ctx, const char *level, const char *msg);
  void *log_ctx;

  pthread_mutex_t mu;
  pthread_cond_t queue_cond;  /* committer: jobs arrived or stop
                                 (CLOCK_MONOTONIC) */
  pthread_cond_t done_cond;   /* handlers: a group commit finished */
  pthread_cond_t commit_cond; /* long-polls (CLOCK_MONOTONIC) */
  pthread_cond_t idle_cond;   /* stop: in_flight reached 0 (CLOCK_MONOTONIC) */
  unsigned in_flight;         /* requests begun, not yet completed (sent or
                                 abandoned); guarded by mu */
  push_waiter *head, *tail;   /* guarded by mu */
  uint64_t generation;        /* group commits so far; guarded by mu */
  int stopping;               /* long-polls answer at once; guarded by mu */
  int committer_stop;         /* guarded by mu */
  int committer_started;
  pthread_t committer;
  tt_push_job *batch;         /* committer-only scratch, max_batch long */
  push_waiter **batch_w;
  /* Committer-only: pushes sent ahead that were deferred (their replica's
   * previous push had not committed), oldest first. */
  push_waiter *parked, *parked_tail;

  atomic_size_t buffered; /* request bytes held, at most max_buffered */
  atomic_uint_fast64_t req_bytes;
  atomic_uint_fast64_t resp_bytes;
  atomic_uint_fast64_t requests;
  atomic_uint_fast64_t bad_requests; /* 4xx answered here, before tt_server */
};

/* Per-request state kept by MHD between calls of the access handler. */
typedef struct {
  int route;
  char *buf; /* raw (possibly compressed) body, bounded by max_raw */
  size_t len, cap;
  int too_big;
  int busy;    /* the buffer budget ran out: answered 503 busy */
  size_t held; /* bytes of the buffer budget held (cap, then decoded) */
  tt_encoding enc;
} req_ctx;

enum { ROUTE_PUSH = 1, ROUTE_PULL, ROUTE_HEALTH, ROUTE_METRICS, ROUTE_NONE };

static void logf_(tt_http_server *h, const char *level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void logf_(tt_http_server *h, const char *level, const char *fmt, ...) {
  if (h->log == NULL)
    return;
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  /* One line, whatever the message held. */
  for (char *p = msg; *p; p++)
    if (*p == '\n' || *p == '\r')
      *p = ' ';
  h->log(h->log_ctx, level, msg);
}

static void mhd_logger(void *cls, const char *fmt, va_list ap) {
  tt_http_server *h = cls;
  if (h->log == NULL)
    return;
  char msg[512];
  vsnprintf(msg, sizeof msg, fmt, ap);
  size_t n = strlen(msg);
  while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
    msg[--n] = '\0';
  for (char *p = msg; *p; p++)
    if (*p == '\n' || *p == '\r')
      *p = ' ';
  h->log(h->log_ctx, "warn", msg);
}

static uint64_t clock_ms(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Deadlines and waits; the condition variables wait on this clock. */
static uint64_t mono_ms(void) { return clock_ms(CLOCK_MONOTONIC); }
/* What the reconciler is told the time is (HLC clamping). */
static uint64_t wall_ms(void) { return clock_ms(CLOCK_REALTIME); }

/* MS (mono_ms) as a deadline for pthread_cond_timedwait. */
static struct timespec mono_at(uint64_t ms) {
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  return ts;
}

static int cond_init_mono(pthread_cond_t *c) {
  pthread_condattr_t a;
  pthread_condattr_init(&a);
  pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
  int err = pthread_cond_init(c, &a);
  pthread_condattr_destroy(&a);
  return err;
}

/* ---- responses ---------------------------------------------------------- */

/* RETRY_AFTER: the Retry-After header's value, or NULL for none. */
static enum MHD_Result send_bytes(tt_http_server *h,
                                  struct MHD_Connection *conn,
                                  unsigned status, char *body, size_t len,
                                  const char *ctype, int compressible,
                                  const char *retry_after) {
  const char *ae =
      MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Accept-Encoding");
  int zstd = 0;
  if (compressible && len > TT_CODEC_COMPRESS_MIN &&
      tt_codec_accepts_zstd(ae)) {
    char *z = NULL;
    size_t zlen = 0;
    if (tt_codec_compress(body, len, &z, &zlen) == 0) {
      free(body);
      body = z;
      len = zlen;
      zstd = 1;
    }
    /* On failure the plain body goes out: still a correct answer. */
  }
  struct MHD_Response *r =
      MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
  if (r == NULL) {
    free(body);
    return MHD_NO;
  }
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
  MHD_add_response_header(r, "Accept-Encoding", "zstd");
  if (zstd)
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_ENCODING, "zstd");
  if (retry_after)
    MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, retry_after);
  atomic_fetch_add(&h->resp_bytes, len);
  enum MHD_Result ret = MHD_queue_response(conn, status, r);
  MHD_destroy_response(r);
  return ret;
}

static enum MHD_Result send_json(tt_http_server *h,
                                 struct MHD_Connection *conn, unsigned status,
                                 const json_t *body) {
  size_t len = 0;
  char *text = tt_codec_dump(body, &len);
  if (text == NULL)
    return MHD_NO;
  return send_bytes(h, conn, status, text, len, "application/json", 1, NULL);
}

static enum MHD_Result send_error(tt_http_server *h,
                                  struct MHD_Connection *conn,
                                  unsigned status, const char *code,
                                  const char *message) {
  json_t *b = json_pack("{s:i,s:s,s:s}", "v", TETHER_PROTOCOL_VERSION,
                        "error", code, "message", message ? message : "");
  if (b == NULL)
    return MHD_NO;
  if (status >= 500)
    logf_(h, "error", "%u %s: %s", status, code, message ? message : "");
  else
    atomic_fetch_add(&h->bad_requests, 1);
  enum MHD_Result ret = send_json(h, conn, status, b);
  json_decref(b);
  return ret;
}

/* 503 busy: the request was refused only because too many bodies are
 * buffered right now; the client retries after a pause. */
static enum MHD_Result send_busy(tt_http_server *h,
                                 struct MHD_Connection *conn) {
  char msg[160];
  snprintf(msg, sizeof msg,
           "the server is buffering %zu bytes of request bodies, its limit; "
           "retry later",
           h->max_buffered);
  json_t *b = json_pack("{s:i,s:s,s:s}", "v", TETHER_PROTOCOL_VERSION,
                        "error", "busy", "message", msg);
  if (b == NULL)
    return MHD_NO;
  size_t len = 0;
  char *text = tt_codec_dump(b, &len);
  json_decref(b);
  if (text == NULL)
    return MHD_NO;
  logf_(h, "warn", "503 busy: %s", msg);
  return send_bytes(h, conn, 503, text, len, "application/json", 1, "1");
}

static enum MHD_Result send_method_not_allowed(tt_http_server *h,
                                               struct MHD_Connection *conn,
                                               const char *allow,
                                               const char *method) {
  char msg[128];
  snprintf(msg, sizeof msg, "method %s not allowed here; use %s", method,
           allow);
  json_t *b = json_pack("{s:i,s:s,s:s}", "v", TETHER_PROTOCOL_VERSION,
                        "error", "method", "message", msg);
  if (b == NULL)
    return MHD_NO;
  size_t len = 0;
  char *text = tt_codec_dump(b, &len);
  json_decref(b);
  if (text == NULL)
    return MHD_NO;
  struct MHD_Response *r =
      MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
  if (r == NULL) {
    free(text);
    return MHD_NO;
  }
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
  MHD_add_response_header(r, "Accept-Encoding", "zstd");
  MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
  atomic_fetch_add(&h->resp_bytes, len);
  atomic_fetch_add(&h->bad_requests, 1);
  enum MHD_Result ret =
      MHD_queue_response(conn, MHD_HTTP_METHOD_NOT_ALLOWED, r);
  MHD_destroy_response(r);
  return ret;
}

/* A response the state machine filled (or failed to): never send nothing. */
static enum MHD_Result send_result(tt_http_server *h,
                                   struct MHD_Connection *conn, int status,
                                   json_t *resp) {
  if (resp == NULL || status < 100 || status > 599)
    return send_error(h, conn, 503, "unavailable",
                      "the server could not answer; retry later");
  enum MHD_Result ret = send_json(h, conn, (unsigned)status, resp);
  return ret;
}

/* The answer of the reconciler: TEXT (taken) when it gave one, else the
 * tree RESP (released). */
static enum MHD_Result send_answer(tt_http_server *h,
                                   struct MHD_Connection *conn, int status,
                                   char *text, size_t len, json_t *resp) {
  if (text)
    return send_bytes(h, conn, (unsigned)status, text, len,
                      "application/json", 1, NULL);
  enum MHD_Result ret = send_result(h, conn, status, resp);
  json_decref(resp);
  return ret;
}

/* ---- group commit ------------------------------------------------------- */

/* The queue and the parked pushes are both lists appended at the tail and
 * taken from the head. */
static void list_append(push_waiter **head, push_waiter **tail,
                        push_waiter *w) {
  w->next = NULL;
  if (*tail)
    (*tail)->next = w;
  else
    *head = w;
  *tail = w;
}

/* Moves waiters from the head of the list to BATCH[N..], up to MAX in
 * all; the new count. */
static size_t list_take(push_waiter **head, push_waiter **tail,
                        push_waiter **batch, size_t n, size_t max) {
  while (*head != NULL && n < max) {
    batch[n++] = *head;
    *head = (*head)->next;
  }
  if (*head == NULL)
    *tail = NULL;
  return n;
}

static uint64_t parked_until(const tt_http_server *h) {
  uint64_t t = UINT64_MAX;
  for (const push_waiter *w = h->parked; w; w = w->next)
    if (w->wait_until < t)
      t = w->wait_until;
  return t;
}

/* Waits, with MU held, until there is a group commit to run. RETRY: the
 * last one committed something, so parked pushes may follow on now.
 * 0 when stopping with nothing left. */
static int wait_for_work(tt_http_server *h, int retry) {
  for (;;) {
    if (h->head)
      return 1;
    if (h->parked == NULL) {
      if (h->committer_stop)
        return 0;
      pthread_cond_wait(&h->queue_cond, &h->mu);
      continue;
    }
    /* Only a commit moves a replica's chain head, so parked pushes are
     * worth another try only after one, or once their wait is over. */
    if (retry || h->stopping || h->committer_stop)
      return 1;
    uint64_t until = parked_until(h);
    if (mono_ms() >= until)
      return 1;
    struct timespec at = mono_at(until);
    pthread_cond_timedwait(&h->queue_cond, &h->mu, &at);
    retry = 0;
  }
}

static void *committer_main(void *arg) {
  tt_http_server *h = arg;
  int retry = 0;
  pthread_mutex_lock(&h->mu);
  for (;;) {
    if (!wait_for_work(h, retry))
      break; /* stopping and drained */
    /* New pushes first, then the parked ones: a push sent ahead usually
     * follows one that has just arrived, and both then commit together. */
    size_t n = list_take(&h->head, &h->tail, h->batch_w, 0, h->max_batch);
    n = list_take(&h->parked, &h->parked_tail, h->batch_w, n, h->max_batch);
    uint64_t now = mono_ms();
    int no_wait = h->stopping || h->committer_stop;
    for (size_t i = 0; i < n; i++) {
      h->batch[i] = h->batch_w[i]->job;
      h->batch[i].may_wait = !no_wait && h->batch_w[i]->wait_until > now;
    }
    pthread_mutex_unlock(&h->mu);

    int rc = tt_server_push(h->srv, h->batch, n, wall_ms());
    if (rc != 0)
      logf_(h, "error", "group commit of %zu push(es) failed: %s", n,
            tether_strerror(rc));

    pthread_mutex_lock(&h->mu);
    retry = 0;
    for (size_t i = 0; i < n; i++) {
      push_waiter *w = h->batch_w[i];
      w->job = h->batch[i];
      if (w->job.deferred) {
        list_append(&h->parked, &h->parked_tail, w);
        continue;
      }
      w->done = 1;
      retry |= w->job.status == 200;
    }
    h->generation++;
    pthread_cond_broadcast(&h->done_cond);
    pthread_cond_broadcast(&h->commit_cond);
  }
  pthread_mutex_unlock(&h->mu);
  return NULL;
}

static enum MHD_Result handle_push(tt_http_server *h,
                                   struct MHD_Connection *conn,
                                   tt_push_prep *prep) {
  push_waiter w;
  memset(&w, 0, sizeof w);
  w.job.prep = prep;
  w.job.text_answer = 1; /* sent as it is: no tree to build and dump */
  if (tt_push_prep_ahead(prep))
    w.wait_until = mono_ms() + h->ahead_wait_ms;
  pthread_mutex_lock(&h->mu);
  if (h->committer_stop) {
    pthread_mutex_unlock(&h->mu);
    return send_error(h, conn, 503, "unavailable",
                      "the server is shutting down; retry later");
  }
  list_append(&h->head, &h->tail, &w);
  pthread_cond_signal(&h->queue_cond);
  while (!w.done)
    pthread_cond_wait(&h->done_cond, &h->mu);
  pthread_mutex_unlock(&h->mu);
  return send_answer(h, conn, w.job.status, w.job.response_text,
                     w.job.response_len, w.job.response);
}

/* ---- long-poll pull ----------------------------------------------------- */

static enum MHD_Result handle_pull(tt_http_server *h,
                                   struct MHD_Connection *conn,
                                   const json_t *req) {
  uint64_t wait_ms = 0;
  const json_t *w = json_object_get(req, "wait_ms");
  if (json_is_integer(w) && json_integer_value(w) > 0)
    wait_ms = (uint64_t)json_integer_value(w);
  if (wait_ms > h->max_wait_ms)
    wait_ms = h->max_wait_ms;

  struct timespec deadline = mono_at(mono_ms() + wait_ms);

  /* A 200 page comes as its text, sent as it is. */
  tt_pull_answer a;
  for (;;) {
    /* Read the generation BEFORE pulling: a commit that lands between the
     * pull and the wait then still wakes us (no lost wake-up). */
    pthread_mutex_lock(&h->mu);
    uint64_t gen = h->generation;
    int stopping = h->stopping;
    pthread_mutex_unlock(&h->mu);

    memset(&a, 0, sizeof a);
    a.text = 1;
    int rc = tt_server_pull_answer(h->srv, req, &a);
    if (rc != 0 || a.status != 200 || wait_ms == 0 || stopping || !a.empty)
      break;

    int timed_out = 0;
    pthread_mutex_lock(&h->mu);
    while (h->generation == gen && !h->stopping) {
      if (pthread_cond_timedwait(&h->commit_cond, &h->mu, &deadline) ==
          ETIMEDOUT) {
        timed_out = 1;
        break;
      }
    }
    pthread_mutex_unlock(&h->mu);
    if (timed_out)
      break; /* A is the latest (empty) answer */
    free(a.body);
    json_decref(a.response);
  }
  return send_answer(h, conn, a.status, a.body, a.body_len, a.response);
}

/* ---- health and metrics ------------------------------------------------- */

static enum MHD_Result handle_health(tt_http_server *h,
                                     struct MHD_Connection *conn) {
  json_t *b = json_pack("{s:i,s:s,s:I,s:i,s:s}", "v", TETHER_PROTOCOL_VERSION,
                        "status", "ok", "partitions",
                        (json_int_t)tt_server_partitions(h->srv), "protocol",
                        TETHER_PROTOCOL_VERSION, "version",
                        TETHER_VERSION_STRING);
  if (b == NULL)
    return MHD_NO;
  enum MHD_Result ret = send_json(h, conn, 200, b);
  json_decref(b);
  return ret;
}

static enum MHD_Result handle_metrics(tt_http_server *h,
                                      struct MHD_Connection *conn) {
  tt_server_stats st;
  memset(&st, 0, sizeof st);
  tt_server_get_stats(h->srv, &st);
  size_t cap = 4096;
  char *buf = malloc(cap);
  if (buf == NULL)
    return MHD_NO;
  int n = snprintf(
      buf, cap,
      "# HELP tether_pushes_total Push requests answered.\n"
      "# TYPE tether_pushes_total counter\n"
      "tether_pushes_total %" PRIu64 "\n"
      "# HELP tether_pushes_held_total Pushes sent ahead held until the "
      "push before them committed (once per hold).\n"
      "# TYPE tether_pushes_held_total counter\n"
      "tether_pushes_held_total %" PRIu64 "\n"
      "# HELP tether_pulls_total Pull requests answered.\n"
      "# TYPE tether_pulls_total counter\n"
      "tether_pulls_total %" PRIu64 "\n"
      "# HELP tether_intents_total Intents handled, by outcome.\n"
      "# TYPE tether_intents_total counter\n"
      "tether_intents_total{outcome=\"applied\"} %" PRIu64 "\n"
      "tether_intents_total{outcome=\"merged\"} %" PRIu64 "\n"
      "tether_intents_total{outcome=\"conflict\"} %" PRIu64 "\n"
      "tether_intents_total{outcome=\"rejected\"} %" PRIu64 "\n"
      "tether_intents_total{outcome=\"duplicate\"} %" PRIu64 "\n"
      "# HELP tether_commits_total Group commits that changed something.\n"
      "# TYPE tether_commits_total counter\n"
      "tether_commits_total %" PRIu64 "\n"
      "# HELP tether_concurrent_writes_total Concurrent same-field writes "
      "detected.\n"
      "# TYPE tether_concurrent_writes_total counter\n"
      "tether_concurrent_writes_total %" PRIu64 "\n"
      "# HELP tether_bad_requests_total Requests answered with a 4xx.\n"
      "# TYPE tether_bad_requests_total counter\n"
      "tether_bad_requests_total %" PRIu64 "\n"
      "# HELP tether_http_requests_total HTTP requests received.\n"
      "# TYPE tether_http_requests_total counter\n"
      "tether_http_requests_total %" PRIu64 "\n"
      "# HELP tether_http_request_bytes_total Request body bytes received "
      "on the wire (after compression).\n"
      "# TYPE tether_http_request_bytes_total counter\n"
      "tether_http_request_bytes_total %" PRIu64 "\n"
      "# HELP tether_http_response_bytes_total Response body bytes sent on "
      "the wire (after compression).\n"
      "# TYPE tether_http_response_bytes_total counter\n"
      "tether_http_response_bytes_total %" PRIu64 "\n",
      st.pushes, st.pushes_held, st.pulls, st.intents_applied, st.intents_merged,
      st.intents_conflict, st.intents_rejected, st.intents_duplicate,
      st.commits, st.concurrent_writes,
      st.bad_requests + (uint64_t)atomic_load(&h->bad_requests),
      (uint64_t)atomic_load(&h->requests),
      (uint64_t)atomic_load(&h->req_bytes),
      (uint64_t)atomic_load(&h->resp_bytes));
  if (n < 0 || (size_t)n >= cap) {
    free(buf);
    return MHD_NO;
  }
  return send_bytes(h, conn, 200, buf, (size_t)n,
                    "text/plain; version=0.0.4; charset=utf-8", 0, NULL);
}

/* ---- request plumbing --------------------------------------------------- */

static int route_of(const char *url) {
  if (strcmp(url, "/v1/push") == 0)
    return ROUTE_PUSH;
  if (strcmp(url, "/v1/pull") == 0)
    return ROUTE_PULL;
  if (strcmp(url, "/v1/health") == 0)
    return ROUTE_HEALTH;
  if (strcmp(url, "/metrics") == 0)
    return ROUTE_METRICS;
  return ROUTE_NONE;
}

/* Reserves N bytes of the buffer budget for RC: 0, or -1 (nothing
 * reserved) when that would pass max_buffered. */
static int budget_take(tt_http_server *h, req_ctx *rc, size_t n) {
  size_t cur = atomic_load(&h->buffered);
  do {
    if (n > h->max_buffered - cur)
      return -1;
  } while (!atomic_compare_exchange_weak(&h->buffered, &cur, cur + n));
  rc->held += n;
  return 0;
}

static void budget_give(tt_http_server *h, req_ctx *rc, size_t n) {
  atomic_fetch_sub(&h->buffered, n);
  rc->held -= n;
}

/* Frees the raw body and gives back its share of the budget. */
static void req_drop_buf(tt_http_server *h, req_ctx *rc) {
  free(rc->buf);
  rc->buf = NULL;
  budget_give(h, rc, rc->cap);
  rc->len = rc->cap = 0;
}

static void req_free(tt_http_server *h, req_ctx *rc) {
  if (rc == NULL)
    return;
  req_drop_buf(h, rc);
  budget_give(h, rc, rc->held);
  free(rc);
}

/* MHD calls it once for every request whose handler it called, once its
 * answer is sent or the request is given up. */
static void on_completed(void *cls, struct MHD_Connection *conn,
                         void **con_cls, enum MHD_RequestTerminationCode toe) {
  tt_http_server *h = cls;
  (void)conn;
  (void)toe;
  req_free(h, *con_cls);
  *con_cls = NULL;
  pthread_mutex_lock(&h->mu);
  if (--h->in_flight == 0 && h->stopping)
    pthread_cond_broadcast(&h->idle_cond);
  pthread_mutex_unlock(&h->mu);
}

/* Appends upload bytes, or only counts them once over the bound (the body
 * is then answered 413 when it ends). */
static void req_append(tt_http_server *h, req_ctx *rc, const char *data,
                       size_t n) {
  atomic_fetch_add(&h->req_bytes, n);
  if (rc->too_big || rc->busy)
    return;
  if (n > h->max_raw - rc->len) {
    rc->too_big = 1;
    req_drop_buf(h, rc);
    return;
  }
  if (rc->len + n > rc->cap) {
    size_t ncap = rc->cap ? rc->cap : BODY_INITIAL_CAP;
    while (ncap < rc->len + n)
      ncap = ncap > h->max_raw / 2 ? h->max_raw : ncap * 2;
    if (budget_take(h, rc, ncap - rc->cap) != 0) {
      rc->busy = 1;
      req_drop_buf(h, rc);
      return;
    }
    char *nb = realloc(rc->buf, ncap);
    if (nb == NULL) {
      /* Treated like an oversized body: refused, the server goes on. */
      budget_give(h, rc, ncap - rc->cap);
      rc->too_big = 1;
      req_drop_buf(h, rc);
      return;
    }
    rc->buf = nb;
    rc->cap = ncap;
  }
  memcpy(rc->buf + rc->len, data, n);
  rc->len += n;
}

/* The decoded size the zstd frames of BUF declare, summed, or
 * ZSTD_CONTENTSIZE_UNKNOWN when a frame does not say or does not parse. */
static unsigned long long zstd_content_size(const char *buf, size_t len) {
  unsigned long long total = 0;
  size_t off = 0;
  while (off < len) {
    unsigned long long fs = ZSTD_getFrameContentSize(buf + off, len - off);
    size_t fl = ZSTD_findFrameCompressedSize(buf + off, len - off);
    if (fs == ZSTD_CONTENTSIZE_UNKNOWN || fs == ZSTD_CONTENTSIZE_ERROR ||
        ZSTD_isError(fl) || fl == 0 || fs > ZSTD_CONTENTSIZE_ERROR - 1 - total)
      return ZSTD_CONTENTSIZE_UNKNOWN;
    total += fs;
    off += fl;
  }
  return total;
}

static enum MHD_Result handle_body(tt_http_server *h,
                                   struct MHD_Connection *conn,
                                   req_ctx *rc) {
  char msg[256];
  if (rc->busy)
    return send_busy(h, conn);
  if (rc->too_big) {
    snprintf(msg, sizeof msg, "request body over the server's limit of %zu "
             "bytes", h->max_body);
    return send_error(h, conn, 413, "too_big", msg);
  }
  /* The decoded text is held beside the raw body for a moment: reserve
   * it too. A zstd frame names its size (the reference client's always
   * do); decoding stops there, so the reservation bounds it. */
  size_t want = rc->len, limit = h->max_body;
  if (rc->enc == TT_ENC_ZSTD) {
    unsigned long long fs = zstd_content_size(rc->buf, rc->len);
    want = fs <= h->max_body ? (size_t)fs : h->max_body + 1;
    if (fs <= h->max_body)
      limit = (size_t)fs;
  }
  if (want > h->max_body)
    want = h->max_body + 1; /* decoding stops past max_body anyway */
  size_t reserved = want + 1;
  if (budget_take(h, rc, reserved) != 0) {
    req_drop_buf(h, rc);
    return send_busy(h, conn);
  }
  char *plain = NULL;
  size_t plen = 0;
  int rc2 = tt_codec_decode(rc->enc, rc->buf, rc->len, limit, &plain, &plen);
  req_drop_buf(h, rc);
  if (rc2 != 0) {
    budget_give(h, rc, reserved);
    if (rc2 == TETHER_ETOOBIG && limit < h->max_body)
      return send_error(h, conn, 400, "encoding",
                        "the zstd frames hold more than the content size "
                        "they declare");
    if (rc2 == TETHER_ETOOBIG) {
      snprintf(msg, sizeof msg, "request body over the server's limit of "
               "%zu bytes (decompressed)", h->max_body);
      return send_error(h, conn, 413, "too_big", msg);
    }
    if (rc2 == TETHER_EPROTO)
      return send_error(h, conn, 400, "encoding",
                        "request body is not valid zstd data");
    return send_error(h, conn, 503, "unavailable",
                      "out of memory decoding the request; retry later");
  }

  if (rc->route == ROUTE_PUSH) {
    /* Read and checked here, in this connection's thread, one intent at a
     * time, while the committer runs the pushes queued before. */
    tt_push_prep *prep = NULL;
    rc2 = tt_server_push_prepare(plain, plen, &prep);
    free(plain);
    budget_give(h, rc, reserved);
    if (rc2 != 0)
      return send_error(h, conn, 503, "unavailable",
                        "out of memory reading the request; retry later");
    enum MHD_Result ret = handle_push(h, conn, prep);
    tt_push_prep_free(prep);
    return ret;
  }
  json_t *req = NULL;
  rc2 = tt_codec_parse(plain, plen, &req, msg, sizeof msg);
  free(plain);
  budget_give(h, rc, reserved);
  if (rc2 != 0)
    return send_error(h, conn, 400, "json", msg);
  const json_t *v = json_object_get(req, "v");
  if (!json_is_integer(v) || json_integer_value(v) != TETHER_PROTOCOL_VERSION) {
    json_decref(req);
    snprintf(msg, sizeof msg,
             "\"v\" must be %d, the protocol version this server speaks",
             TETHER_PROTOCOL_VERSION);
    return send_error(h, conn, 400, "version", msg);
  }
  enum MHD_Result ret = handle_pull(h, conn, req);
  json_decref(req);
  return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
                                  const char *url, const char *method,
                                  const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls) {
  tt_http_server *h = cls;
  (void)version;
  req_ctx *rc = *con_cls;

  if (rc == NULL) {
    /* First call: headers are in, the body (if any) is not. Anything that
     * can be refused on the headers alone is refused now. */
    atomic_fetch_add(&h->requests, 1);
    pthread_mutex_lock(&h->mu);
    h->in_flight++;
    int stopping = h->stopping;
    pthread_mutex_unlock(&h->mu);
    if (stopping) /* a request on a connection kept alive */
      return send_error(h, conn, 503, "unavailable",
                        "the server is shutting down; retry later");
    int route = route_of(url);
    int is_get = strcmp(method, MHD_HTTP_METHOD_GET) == 0 ||
                 strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
    int is_post = strcmp(method, MHD_HTTP_METHOD_POST) == 0;
    if (route == ROUTE_NONE)
      return send_error(h, conn, 404, "not_found",
                        "no such endpoint; see docs/PROTOCOL.md");
    if (route == ROUTE_HEALTH || route == ROUTE_METRICS) {
      if (!is_get)
        return send_method_not_allowed(h, conn, "GET, HEAD", method);
      return route == ROUTE_HEALTH ? handle_health(h, conn)
                                   : handle_metrics(h, conn);
    }
    if (!is_post)
      return send_method_not_allowed(h, conn, "POST", method);

    const char *ce = MHD_lookup_connection_value(
        conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_ENCODING);
    tt_encoding enc = tt_codec_encoding(ce);
    if (enc == TT_ENC_UNKNOWN) {
      char msg[160];
      snprintf(msg, sizeof msg,
               "Content-Encoding \"%.64s\" is not supported; use zstd or none",
               ce);
      return send_error(h, conn, 415, "encoding", msg);
    }
    const char *cl = MHD_lookup_connection_value(
        conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    unsigned long long declared = cl ? strtoull(cl, NULL, 10) : 0;
    if (declared > h->max_raw) {
      char msg[160];
      snprintf(msg, sizeof msg,
               "request body of %llu bytes over the server's limit of %zu",
               declared, h->max_body);
      return send_error(h, conn, 413, "too_big", msg);
    }
    /* A body that cannot fit in what is left of the buffer budget now is
     * refused before it is read. */
    if (declared > h->max_buffered - atomic_load(&h->buffered))
      return send_busy(h, conn);
    rc = calloc(1, sizeof *rc);
    if (rc == NULL)
      return MHD_NO;
    rc->route = route;
    rc->enc = enc;
    *con_cls = rc;
    /* Trust a declared length only up to a modest first allocation: a
     * client that claims a huge body and sends nothing costs us little. */
    if (declared > 0) {
      size_t first = declared < BODY_PREALLOC_MAX ? (size_t)declared
                                                  : BODY_PREALLOC_MAX;
      if (budget_take(h, rc, first) != 0) {
        rc->busy = 1;
        return MHD_YES; /* the body is read and dropped, then answered */
      }
      rc->buf = malloc(first);
      if (rc->buf)
        rc->cap = first;
      else
        budget_give(h, rc, first);
    }
    return MHD_YES;
  }

  if (*upload_data_size > 0) {
    req_append(h, rc, upload_data, *upload_data_size);
    *upload_data_size = 0;
    return MHD_YES;
  }
  return handle_body(h, conn, rc);
}

/* ---- lifecycle ---------------------------------------------------------- */

static int resolve_addr(const char *host, uint16_t port,
                        struct sockaddr_storage *ss, socklen_t *sslen,
                        int *ipv6, char *errbuf, size_t errlen) {
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  char portstr[8];
  snprintf(portstr, sizeof portstr, "%u", (unsigned)port);
  const char *name = host;
  char inner[64];
  if (host[0] == '[') { /* "[::1]" as written in URLs */
    size_t n = strlen(host);
    if (n < 3 || host[n - 1] != ']' || n - 2 >= sizeof inner) {
      tt_errf(errbuf, errlen, "bad listen address \"%s\"", host);
      return TETHER_EINVAL;
    }
    memcpy(inner, host + 1, n - 2);
    inner[n - 2] = '\0';
    name = inner;
  }
  int gai = getaddrinfo(name, portstr, &hints, &res);
  if (gai != 0 || res == NULL) {
    tt_errf(errbuf, errlen, "cannot resolve listen address \"%s\": %s", host,
            gai_strerror(gai));
    return TETHER_EINVAL;
  }
  memcpy(ss, res->ai_addr, res->ai_addrlen);
  *sslen = res->ai_addrlen;
  *ipv6 = res->ai_family == AF_INET6;
  freeaddrinfo(res);
  return 0;
}

int tt_http_server_start(tt_server *srv, const tt_http_server_opts *opts,
                         tt_http_server **out, char *errbuf, size_t errlen) {
  tt_http_server_opts o;
  memset(&o, 0, sizeof o);
  if (opts)
    o = *opts;
  *out = NULL;
  if (srv == NULL) {
    tt_errf(errbuf, errlen, "no reconciler to serve");
    return TETHER_EINVAL;
  }
  int rc = 0;
  tt_http_server *h = calloc(1, sizeof *h);
  if (h == NULL)
    return TETHER_ENOMEM;
  int mu_ok = 0, qc_ok = 0, dc_ok = 0, cc_ok = 0, ic_ok = 0;
  h->srv = srv;
  h->max_body = o.max_body ? o.max_body : TT_CODEC_MAX_BODY_DEFAULT;
  /* A zstd body can be a little larger than what it encodes. */
  h->max_raw = ZSTD_compressBound(h->max_body);
  h->max_buffered = o.max_buffered ? o.max_buffered : DEFAULT_MAX_BUFFERED;
  h->max_batch = o.max_batch ? o.max_batch : DEFAULT_MAX_BATCH;
  h->max_wait_ms = o.max_wait_ms ? o.max_wait_ms : DEFAULT_MAX_WAIT_MS;
  h->ahead_wait_ms = o.ahead_wait_ms ? o.ahead_wait_ms : DEFAULT_AHEAD_WAIT_MS;
  h->log = o.log;
  h->log_ctx = o.log_ctx;
  unsigned max_conns = o.max_conns ? o.max_conns : DEFAULT_MAX_CONNS;
  if (max_conns > MAX_CONNS)
    max_conns = MAX_CONNS;
  h->max_conns = max_conns;
  atomic_init(&h->buffered, 0);
  atomic_init(&h->req_bytes, 0);
  atomic_init(&h->resp_bytes, 0);
  atomic_init(&h->requests, 0);
  atomic_init(&h->bad_requests, 0);

  h->batch = calloc(h->max_batch, sizeof *h->batch);
  h->batch_w = calloc(h->max_batch, sizeof *h->batch_w);
  if (h->batch == NULL || h->batch_w == NULL) {
    rc = TETHER_ENOMEM;
    goto fail;
  }
  if (pthread_mutex_init(&h->mu, NULL) != 0) {
    rc = TETHER_ENOMEM;
    goto fail;
  }
  mu_ok = 1;
  if (cond_init_mono(&h->queue_cond) != 0) {
    rc = TETHER_ENOMEM;
    goto fail;
  }
  qc_ok = 1;
  if (pthread_cond_init(&h->done_cond, NULL) != 0) {
    rc = TETHER_ENOMEM;
    goto fail;
  }
  dc_ok = 1;
  if (cond_init_mono(&h->commit_cond) != 0) {
    rc = TETHER_ENOMEM;
    goto fail;
  }
  cc_ok = 1;
  if (cond_init_mono(&h->idle_cond) != 0) {
    rc = TETHER_ENOMEM;
    goto fail;
  }
  ic_ok = 1;

  if (pthread_create(&h->committer, NULL, committer_main, h) != 0) {
    tt_errf(errbuf, errlen, "cannot start the committer thread");
    rc = TETHER_ENOMEM;
    goto fail;
  }
  h->committer_started = 1;

  struct sockaddr_storage ss;
  socklen_t sslen = 0;
  int ipv6 = 0;
  const char *host = o.host && o.host[0] ? o.host : "127.0.0.1";
  rc = resolve_addr(host, o.port, &ss, &sslen, &ipv6, errbuf, errlen);
  if (rc != 0)
    goto fail;
  (void)sslen;

  /* poll(), not select(): with over a thousand connections descriptors
   * pass FD_SETSIZE. */
  /* MHD_USE_ITC: MHD_quiesce_daemon needs it (tt_http_server_stop). */
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD |
                   MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL |
                   MHD_USE_ITC | MHD_USE_ERROR_LOG;
  if (ipv6)
    flags |= MHD_USE_IPv6;
  h->daemon = MHD_start_daemon(
      flags, o.port, NULL, NULL, on_request, h,
      /* The logger first, so MHD never prints on its own. */
      MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, h, MHD_OPTION_SOCK_ADDR,
      (struct sockaddr *)&ss, MHD_OPTION_CONNECTION_LIMIT, max_conns,
      MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u, MHD_OPTION_CONNECTION_TIMEOUT,
      (unsigned)(h->max_wait_ms / 1000 + 60), MHD_OPTION_NOTIFY_COMPLETED,
      on_completed, h, MHD_OPTION_END);
  if (h->daemon == NULL) {
    tt_errf(errbuf, errlen,
            "cannot listen on %s:%u (address in use, or not an address of "
            "this machine?)",
            host, (unsigned)o.port);
    rc = TETHER_EUNAVAILABLE;
    goto fail;
  }
  const union MHD_DaemonInfo *di =
      MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_LISTEN_FD);
  h->port = o.port;
  if (di != NULL) {
    struct sockaddr_storage bound;
    socklen_t blen = sizeof bound;
    if (getsockname(di->listen_fd, (struct sockaddr *)&bound, &blen) == 0) {
      if (bound.ss_family == AF_INET)
        h->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
      else if (bound.ss_family == AF_INET6)
        h->port = ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
    }
  }
  logf_(h, "info", "listening on %s:%u", host, (unsigned)h->port);
  *out = h;
  return 0;

fail:
  if (h->committer_started) {
    pthread_mutex_lock(&h->mu);
    h->committer_stop = 1;
    pthread_cond_signal(&h->queue_cond);
    pthread_mutex_unlock(&h->mu);
    pthread_join(h->committer, NULL);
  }
  if (ic_ok)
    pthread_cond_destroy(&h->idle_cond);
  if (cc_ok)
    pthread_cond_destroy(&h->commit_cond);
  if (dc_ok)
    pthread_cond_destroy(&h->done_cond);
  if (qc_ok)
    pthread_cond_destroy(&h->queue_cond);
  if (mu_ok)
    pthread_mutex_destroy(&h->mu);
  free(h->batch);
  free(h->batch_w);
  free(h);
  return rc;
}

uint16_t tt_http_server_port(const tt_http_server *h) { return h->port; }

unsigned tt_http_server_max_conns(const tt_http_server *h) {
  return h->max_conns;
}

size_t tt_http_server_buffered(const tt_http_server *h) {
  tt_http_server *m = (tt_http_server *)h; /* atomics need a mutable object */
  return atomic_load(&m->buffered);
}

void tt_http_server_bytes(const tt_http_server *h, uint64_t *req_bytes,
                          uint64_t *resp_bytes) {
  tt_http_server *m = (tt_http_server *)h; /* atomics need a mutable object */
  if (req_bytes)
    *req_bytes = (uint64_t)atomic_load(&m->req_bytes);
  if (resp_bytes)
    *resp_bytes = (uint64_t)atomic_load(&m->resp_bytes);
}

void tt_http_server_stop(tt_http_server *h) {
  if (h == NULL)
    return;
  /* 1. No new connection; long-polls and parked pushes answer now, and a
   * new request on a connection kept alive gets 503. */
  MHD_socket listen_fd = MHD_quiesce_daemon(h->daemon);
  pthread_mutex_lock(&h->mu);
  h->stopping = 1;
  pthread_cond_broadcast(&h->commit_cond);
  pthread_cond_signal(&h->queue_cond); /* parked pushes are answered now */
  /* 2. The committer still runs, so pushes already queued get their
   * durable answer. Wait until every request under way has been sent its
   * answer: MHD_stop_daemon drops the answers it finds still unsent. */
  struct timespec drained = mono_at(mono_ms() + STOP_DRAIN_MS);
  while (h->in_flight > 0 &&
         pthread_cond_timedwait(&h->idle_cond, &h->mu, &drained) != ETIMEDOUT)
    ;
  unsigned unanswered = h->in_flight;
  pthread_mutex_unlock(&h->mu);
  if (unanswered > 0)
    logf_(h, "warn", "stopping with %u requests still unanswered after %u ms",
          unanswered, STOP_DRAIN_MS);
  /* 3. Close the connections kept alive and join their threads. */
  MHD_stop_daemon(h->daemon);
  if (listen_fd != MHD_INVALID_SOCKET)
    close(listen_fd);
  /* 3. Drain and stop the committer. */
  pthread_mutex_lock(&h->mu);
  h->committer_stop = 1;
  pthread_cond_signal(&h->queue_cond);
  pthread_mutex_unlock(&h->mu);
  pthread_join(h->committer, NULL);
  logf_(h, "info", "stopped");
  pthread_cond_destroy(&h->idle_cond);
  pthread_cond_destroy(&h->commit_cond);
  pthread_cond_destroy(&h->done_cond);
  pthread_cond_destroy(&h->queue_cond);
  pthread_mutex_destroy(&h->mu);
  free(h->batch);
  free(h->batch_w);
  free(h);
}
