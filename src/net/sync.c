/* sync.c — push then pull, until caught up. */
#include "net/sync.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "net/codec.h"

/* Consecutive answers that moved nothing before we give up instead of
 * looping: a misbehaving server must not spin a client forever. */
#define MAX_STALLS 3
#define MAX_EMPTY_PAGES 10000u
/* A second refusal of the cursor in one sync means re-bootstrapping does
 * not help (the server refuses even []): stop and say so. */
#define MAX_REBOOTSTRAPS 1

static void progress(const tether_sync_opts *o, const char *phase,
                     uint64_t done, uint64_t total) {
  if (o == NULL || o->progress == NULL)
    return;
  tether_progress p = {phase, done, total};
  o->progress(o->progress_ctx, &p);
}

/* What the user can do about a refusal, or "". */
static const char *advice(int rc) {
  switch (rc) {
  case TETHER_EGAP:
    return "; the server has lost intents it had acknowledged from this "
           "replica (was its data reset or restored from a backup?). Local "
           "changes are kept: restore the server's data, or copy the "
           "documents into a new replica";
  case TETHER_ECHAIN:
    return "; the server's record of this replica's intents does not match "
           "this replica's (was this replica restored from a backup or its "
           "directory copied, or the server's data restored?). Local "
           "changes are kept: never use two copies of one replica; copy the "
           "documents into a new replica";
  case TETHER_ESERVER:
    return "; retry later";
  default:
    return "";
  }
}

/* One line naming why a request failed: the replica's reason (which has
 * the server's message), else the server's code and message, and what to
 * do about it. */
static void refused(char *errbuf, size_t errlen, const char *what,
                    tt_replica *r, int status, const json_t *resp, int rc) {
  const char *why = tt_replica_last_error(r);
  const char *code = json_string_value(json_object_get(resp, "error"));
  const char *msg = json_string_value(json_object_get(resp, "message"));
  if (why && why[0])
    tt_errf(errbuf, errlen, "%s refused (HTTP %d): %s%s", what, status, why,
            advice(rc));
  else if (code || msg)
    tt_errf(errbuf, errlen, "%s refused (HTTP %d): %s%s%s%s", what, status,
            code ? code : "", code && msg ? ": " : "", msg ? msg : "",
            advice(rc));
  else
    tt_errf(errbuf, errlen, "%s failed (HTTP %d): %s%s", what, status,
            tether_strerror(rc), advice(rc));
}

/* One request in flight on a thread of its own, so that the server works
 * on the next message while this replica applies the answer to the last
 * one (the two took turns before, each leaving a core idle). The thread
 * also releases the answer applied before (RELEASE): freeing a page of
 * thousands of values costs about as much as applying it (glibc
 * consolidates its free lists as the tree's memory coalesces), and the
 * applying thread need not wait for it. */
typedef struct {
  tt_http_client *c;
  const char *path;
  char *body; /* owned */
  size_t len;
  json_t *release; /* owned: dropped by the thread */
  int rc, status;
  json_t *resp;
  char err[512];
  pthread_t th;
  int running;
} inflight;

static void *inflight_main(void *arg) {
  inflight *f = arg;
  f->rc = tt_http_post_text(f->c, f->path, f->body, f->len, &f->status,
                            &f->resp, f->err, sizeof f->err);
  json_decref(f->release);
  f->release = NULL;
  return NULL;
}

/* Sends BODY (taken over) to PATH and drops RELEASE (taken over, may be
 * NULL); 0 when no thread could be started (both are freed here and the
 * caller goes on without the overlap). */
static int inflight_start(inflight *f, tt_http_client *c, const char *path,
                          char *body, size_t len, json_t *release) {
  memset(f, 0, sizeof *f);
  f->c = c;
  f->path = path;
  f->body = body;
  f->len = len;
  f->release = release;
  if (pthread_create(&f->th, NULL, inflight_main, f) != 0) {
    free(body);
    f->body = NULL;
    json_decref(release);
    f->release = NULL;
    return 0;
  }
  f->running = 1;
  return 1;
}

/* Waits for it; *RESP (a new reference or NULL) and its result. With
 * KEEP 0 the answer is dropped. */
static int inflight_finish(inflight *f, int keep, int *status, json_t **resp,
                           char *errbuf, size_t errlen) {
  if (!f->running)
    return TETHER_EINVAL;
  pthread_join(f->th, NULL);
  f->running = 0;
  free(f->body);
  f->body = NULL;
  if (!keep) {
    json_decref(f->resp);
    return 0;
  }
  *status = f->status;
  *resp = f->resp;
  if (f->rc != 0)
    tt_errf(errbuf, errlen, "%s", f->err);
  return f->rc;
}

/* Starts asking for the pull page after RESP; 0 when nothing was started
 * (no more pages, or an answer the replica will refuse anyway). *SPENT is
 * handed to the thread (set to NULL) when one starts. */
static int prefetch_start(inflight *f, tt_replica *r, tt_http_client *c,
                          const json_t *resp, json_t **spent) {
  json_t *req = NULL;
  size_t len = 0;
  if (tt_replica_pull_next_request(r, resp, TT_SYNC_PULL_LIMIT, &req))
    return 0;
  char *body = tt_codec_dump(req, &len);
  json_decref(req);
  if (!body)
    return 0;
  json_t *release = *spent;
  *spent = NULL;
  return inflight_start(f, c, "/v1/pull", body, len, release);
}

/* Pushes in flight at once when the server takes pushes sent "ahead"
 * (PROTOCOL.md): it then reads and checks the next one while it commits
 * the one before, and this replica records outcomes meanwhile. Each push
 * on the wire needs a connection of its own, and push_pages has two (C
 * and its sibling): more would need more siblings. */
#define PUSH_WINDOW 2

/* A push on the wire, not answered yet. Slots stay put while their thread
 * runs (it writes into F). */
typedef struct {
  tt_push_body req; /* lo, hi, n; the text is F's */
  inflight f;
  tt_http_client *client;
  int ahead;
} sent_push;

static int is_gap(int status, const json_t *resp) {
  const char *e = json_string_value(json_object_get(resp, "error"));
  return status == 409 && e && strcmp(e, "gap") == 0;
}

/* Waits for every push still on the wire and drops its answer: its
 * intents stay in the outbox and go again later (as duplicates, with the
 * outcomes the server kept, if it applied them). */
static void drop_sent(sent_push *q, size_t *head, size_t *nq) {
  for (; *nq > 0; (*nq)--, *head = (*head + 1) % PUSH_WINDOW) {
    inflight_finish(&q[*head].f, 0, NULL, NULL, NULL, 0);
    tt_push_body_clear(&q[*head].req);
  }
}

static int push_pages(tt_replica *r, tt_http_client *c,
                      const tether_sync_opts *o, json_t **spent, char *errbuf,
                      size_t errlen) {
  int rc = 0;
  uint64_t total = tt_replica_outbox_len(r);
  uint64_t done = 0;
  int stalls = 0;
  tt_push_body req;
  json_t *resp = NULL; /* the answer to REQ, when it was sent ahead */
  int status = 0;
  sent_push q[PUSH_WINDOW];
  size_t head = 0, nq = 0;
  tt_http_client *sibling = NULL; /* the second connection, made when used */
  int may_send_ahead = 1;
  memset(&req, 0, sizeof req);
  if (total > 0)
    progress(o, "push", 0, total);
  for (;;) {
    if (!resp) {
      rc = tt_replica_push_body(r, TT_SYNC_PUSH_BATCH, 0, 0, &req);
      if (rc == TETHER_ENOTFOUND) {
        rc = 0; /* outbox empty */
        goto out;
      }
      if (rc != 0) {
        tt_errf(errbuf, errlen, "cannot build the push request: %s",
                tether_strerror(rc));
        goto out;
      }
      if (!tt_http_client_server_zstd(c) && req.n >= TT_SYNC_PROBE_INTENTS) {
        /* The client compresses only once it has seen the server's
         * Accept-Encoding: zstd (PROTOCOL.md "Compression"); a large first
         * push would otherwise go out whole. The probe is one small round
         * trip per connection. Unreachable is the answer the push would
         * get too (nothing has changed); any other failure only leaves the
         * push uncompressed. */
        json_t *h = NULL;
        int hs = 0;
        rc = tt_http_get(c, "/v1/health", &hs, &h, errbuf, errlen);
        json_decref(h);
        if (rc == TETHER_EUNREACHABLE) {
          tt_push_body_clear(&req);
          goto out;
        }
        if (errbuf && errlen)
          errbuf[0] = '\0';
      }
      rc = tt_http_post_text(c, "/v1/push", req.text, req.len, &status,
                             &resp, errbuf, errlen);
      if (rc != 0) {
        tt_push_body_clear(&req);
        goto out; /* nothing handed to the replica: nothing changed */
      }
    }
    /* More pushes go out before this answer is applied. With "seen_ok"
     * (the server keeps outcomes the replica has not recorded yet) one,
     * sent only now that this push is committed; with "ahead_ok" too, a
     * second one before the first is answered, which the server holds
     * until the one before it commits. */
    int seen_ok =
        status == 200 && json_is_true(json_object_get(resp, "seen_ok"));
    int ahead_ok = seen_ok && may_send_ahead &&
                   json_is_true(json_object_get(resp, "ahead_ok"));
    size_t window = ahead_ok ? PUSH_WINDOW : (size_t)seen_ok;
    if (window > 1 && !sibling && tt_http_client_sibling(c, &sibling) != 0)
      window = 1;
    while (nq < window) {
      size_t slot = (head + nq) % PUSH_WINDOW;
      sent_push *s = &q[slot];
      uint64_t from =
          (nq ? q[(slot + PUSH_WINDOW - 1) % PUSH_WINDOW].req.hi : req.hi) + 1;
      memset(s, 0, sizeof *s);
      s->ahead = nq > 0; /* the push before it is still unanswered */
      s->client = nq > 0 && q[head].client == c ? sibling : c;
      if (tt_replica_push_body(r, TT_SYNC_PUSH_BATCH, from, s->ahead,
                               &s->req) != 0)
        break; /* nothing left, or the next round says what is wrong */
      int started = inflight_start(&s->f, s->client, "/v1/push", s->req.text,
                                   s->req.len, *spent);
      s->req.text = NULL; /* taken over (or freed) by inflight_start */
      *spent = NULL;
      if (!started)
        break;
      nq++;
    }
    uint64_t before = tt_replica_outbox_len(r);
    /* Fails for every status but 200 (push_done's contract). */
    rc = tt_replica_push_done_range(r, req.lo, req.hi, status, resp);
    if (rc != 0)
      refused(errbuf, errlen, "push", r, status, resp, rc);
    json_decref(*spent);
    *spent = resp;
    resp = NULL;
    tt_push_body_clear(&req);
    if (rc != 0) {
      drop_sent(q, &head, &nq);
      goto out;
    }
    uint64_t after = tt_replica_outbox_len(r);
    if (after < before) {
      done += before - after;
      stalls = 0;
      progress(o, "push", done, total);
    } else if (++stalls >= MAX_STALLS) {
      drop_sent(q, &head, &nq);
      tt_errf(errbuf, errlen,
              "push made no progress: the server answered without "
              "acknowledging any of this replica's intents; local changes "
              "are kept, check the server");
      rc = TETHER_EPROTO;
      goto out;
    }
    if (nq == 0)
      continue; /* the next push is built and sent above */
    /* The answers are applied in the order the pushes went out. */
    sent_push *s = &q[head];
    int next_status = 0;
    json_t *next_resp = NULL;
    rc = inflight_finish(&s->f, 1, &next_status, &next_resp, errbuf, errlen);
    req = s->req;
    int was_ahead = s->ahead;
    memset(&s->req, 0, sizeof s->req);
    head = (head + 1) % PUSH_WINDOW;
    nq--;
    if (rc != 0) {
      drop_sent(q, &head, &nq);
      goto out; /* nothing of it was handed to the replica */
    }
    if (was_ahead && is_gap(next_status, next_resp)) {
      /* The server stopped waiting for the push before it (PROTOCOL.md):
       * nothing of it was applied. Go on one push at a time, from the
       * outbox. */
      json_decref(next_resp);
      drop_sent(q, &head, &nq);
      may_send_ahead = 0;
      continue;
    }
    resp = next_resp;
    status = next_status;
  }
out:
  tt_http_client_free(sibling);
  return rc;
}

static int pull_pages(tt_replica *r, tt_http_client *c,
                      const tether_sync_opts *o, json_t **spent, char *errbuf,
                      size_t errlen) {
  int rc = 0;
  uint64_t pulled = 0;
  unsigned empty_pages = 0;
  int rebootstraps = 0;
  json_t *resp = NULL; /* the next answer, when it was prefetched */
  int status = 0;
  progress(o, "pull", 0, 0);
  for (;;) {
    int more = 0;
    size_t n = 0;
    if (!resp) {
      json_t *req = NULL;
      rc = tt_replica_pull_request(r, TT_SYNC_PULL_LIMIT, 0, &req);
      if (rc != 0) {
        tt_errf(errbuf, errlen, "cannot build the pull request: %s",
                tether_strerror(rc));
        return rc;
      }
      rc = tt_http_post(c, "/v1/pull", req, &status, &resp, errbuf, errlen);
      json_decref(req);
      if (rc != 0)
        return rc;
    }
    inflight f;
    int ahead = status == 200 && prefetch_start(&f, r, c, resp, spent);
    /* Fails for every status but 200 (pull_done's contract). */
    rc = tt_replica_pull_done(r, status, resp, &more, &n);
    json_t *next = NULL;
    int next_status = 0, next_rc = 0;
    if (ahead)
      next_rc = inflight_finish(&f, rc == 0 && more, &next_status, &next,
                                errbuf, errlen);
    if (rc != 0 && tt_replica_cursor_refused(r)) {
      if (rebootstraps++ < MAX_REBOOTSTRAPS) {
        json_decref(resp);
        resp = NULL;
        /* PROTOCOL.md: the replica starts again from []; its unacknowledged
         * intents stay in the outbox. */
        rc = tt_replica_rebootstrap(r);
        if (rc != 0) {
          tt_errf(errbuf, errlen, "cannot re-bootstrap this replica: %s",
                  tt_replica_last_error(r));
          return rc;
        }
        empty_pages = 0;
        continue;
      }
      tt_errf(errbuf, errlen,
              "pull refused (HTTP %d): the server refused this replica's "
              "cursor again after it re-bootstrapped from an empty one (%s); "
              "local changes are kept: check the server, then sync again",
              status, tt_replica_last_error(r));
    } else if (rc != 0) {
      refused(errbuf, errlen, "pull", r, status, resp, rc);
    }
    json_decref(*spent);
    *spent = resp;
    resp = NULL;
    if (rc != 0)
      return rc;
    pulled += n;
    progress(o, "pull", pulled, 0);
    if (!more) {
      json_decref(next);
      return 0;
    }
    /* Empty pages that still say "more" may be legitimate (entries whose
     * documents changed again later), but not without end. */
    if (n == 0 && ++empty_pages > MAX_EMPTY_PAGES) {
      json_decref(next);
      tt_errf(errbuf, errlen, "pull: the server keeps sending empty pages");
      return TETHER_EPROTO;
    }
    if (n > 0)
      empty_pages = 0;
    if (ahead) {
      if (next_rc != 0)
        return next_rc; /* as if asked now: nothing was changed by it */
      resp = next;
      status = next_status;
    }
  }
}

/* SPENT: the answer applied last, until a request thread takes it. */
int tt_sync_run(tt_replica *r, tt_http_client *c, const tether_sync_opts *opts,
                char *errbuf, size_t errlen) {
  json_t *spent = NULL;
  if (errbuf && errlen)
    errbuf[0] = '\0';
  int rc = push_pages(r, c, opts, &spent, errbuf, errlen);
  if (rc == 0)
    rc = pull_pages(r, c, opts, &spent, errbuf, errlen);
  json_decref(spent);
  return rc;
}
