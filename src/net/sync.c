/* sync.c — push then pull, until caught up. */
#include "net/sync.h"

#include <stdio.h>
#include <string.h>

#include "core/util.h"

/* Consecutive answers that moved nothing before we give up instead of
 * looping: a misbehaving server must not spin a client forever. */
#define MAX_STALLS 3
#define MAX_EMPTY_PAGES 10000u

static void progress(const tether_sync_opts *o, const char *phase,
                     uint64_t done, uint64_t total) {
  if (o == NULL || o->progress == NULL)
    return;
  tether_progress p = {phase, done, total};
  o->progress(o->progress_ctx, &p);
}

/* One line naming why a request failed: the replica's reason, else the
 * server's message. */
static void refused(char *errbuf, size_t errlen, const char *what,
                    tt_replica *r, int status, const json_t *resp, int rc) {
  const char *why = tt_replica_last_error(r);
  const char *code = json_string_value(json_object_get(resp, "error"));
  const char *msg = json_string_value(json_object_get(resp, "message"));
  if (why && why[0])
    tt_errf(errbuf, errlen, "%s refused (HTTP %d): %s", what, status, why);
  else if (code || msg)
    tt_errf(errbuf, errlen, "%s refused (HTTP %d): %s%s%s", what, status,
            code ? code : "", code && msg ? ": " : "", msg ? msg : "");
  else
    tt_errf(errbuf, errlen, "%s failed (HTTP %d): %s", what, status,
            tether_strerror(rc));
}

static int push_all(tt_replica *r, tt_http_client *c,
                    const tether_sync_opts *o, char *errbuf, size_t errlen) {
  int rc = 0;
  uint64_t total = tt_replica_outbox_len(r);
  uint64_t done = 0;
  int stalls = 0;
  if (total > 0)
    progress(o, "push", 0, total);
  for (;;) {
    json_t *req = NULL, *resp = NULL;
    int status = 0;
    rc = tt_replica_push_request(r, TT_SYNC_PUSH_BATCH, &req);
    if (rc == TETHER_ENOTFOUND)
      return 0; /* outbox empty */
    if (rc != 0) {
      tt_errf(errbuf, errlen, "cannot build the push request: %s",
              tether_strerror(rc));
      return rc;
    }
    uint64_t before = tt_replica_outbox_len(r);
    rc = tt_http_post(c, "/v1/push", req, &status, &resp, errbuf, errlen);
    if (rc != 0) {
      json_decref(req);
      return rc; /* nothing handed to the replica: nothing changed */
    }
    rc = tt_replica_push_done(r, req, status, resp);
    if (rc != 0)
      refused(errbuf, errlen, "push", r, status, resp, rc);
    else if (status != 200 && status != 409) {
      /* The replica should have said so; never report success on it. */
      refused(errbuf, errlen, "push", r, status, resp, TETHER_ESERVER);
      rc = TETHER_ESERVER;
    }
    json_decref(req);
    json_decref(resp);
    if (rc != 0)
      return rc;
    uint64_t after = tt_replica_outbox_len(r);
    if (after < before) {
      done += before - after;
      stalls = 0;
      progress(o, "push", done, total);
    } else if (++stalls >= MAX_STALLS) {
      if (status == 409) {
        tt_errf(errbuf, errlen,
                "push refused (HTTP 409): the server keeps reporting a gap "
                "in this replica's intents");
        return TETHER_EGAP;
      }
      tt_errf(errbuf, errlen,
              "push made no progress: the server acknowledged nothing");
      return TETHER_EPROTO;
    }
  }
}

static int pull_all(tt_replica *r, tt_http_client *c,
                    const tether_sync_opts *o, char *errbuf, size_t errlen) {
  int rc = 0;
  uint64_t pulled = 0;
  int stalls = 0;
  unsigned empty_pages = 0;
  progress(o, "pull", 0, 0);
  for (;;) {
    json_t *req = NULL, *resp = NULL;
    int status = 0, more = 0;
    size_t n = 0;
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
    rc = tt_replica_pull_done(r, status, resp, &more, &n);
    if (rc != 0)
      refused(errbuf, errlen, "pull", r, status, resp, rc);
    json_decref(resp);
    if (rc != 0)
      return rc;
    if (status != 200) {
      /* Handled by the replica (e.g. a stale cursor: it re-bootstraps);
       * ask again, but not forever. */
      if (++stalls >= MAX_STALLS) {
        tt_errf(errbuf, errlen, "pull keeps failing (HTTP %d)", status);
        return TETHER_EPROTO;
      }
      continue;
    }
    stalls = 0;
    pulled += n;
    progress(o, "pull", pulled, 0);
    if (!more)
      return 0;
    /* Empty pages that still say "more" may be legitimate (entries whose
     * documents changed again later), but not without end. */
    if (n == 0 && ++empty_pages > MAX_EMPTY_PAGES) {
      tt_errf(errbuf, errlen, "pull: the server keeps sending empty pages");
      return TETHER_EPROTO;
    }
    if (n > 0)
      empty_pages = 0;
  }
}

int tt_sync_run(tt_replica *r, tt_http_client *c, const tether_sync_opts *opts,
                char *errbuf, size_t errlen) {
  if (errbuf && errlen)
    errbuf[0] = '\0';
  int rc = push_all(r, c, opts, errbuf, errlen);
  if (rc != 0)
    return rc;
  return pull_all(r, c, opts, errbuf, errlen);
}
