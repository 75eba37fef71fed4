/* net_sync.c — the sync driver (net/sync.c) against a scripted server: a
 * small libmicrohttpd server in the test answers each push and pull with
 * what the test decides, so answers a real server rarely gives (a cursor
 * it no longer knows, a gap, a broken chain, a forgotten outcome) can be
 * played on demand. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/util.h"
#include "net/http_client.h"
#include "net/sync.h"
#include "replica/replica.h"
#include "store/store.h"

/* ---- the scripted server -------------------------------------------------- */

typedef struct fake fake;
/* Decides the answer to REQ (borrowed) on PATH: *status and a new
 * reference in *resp. */
typedef void (*answer_fn)(fake *f, const char *path, const json_t *req,
                          int *status, json_t **resp);

struct fake {
  struct MHD_Daemon *d;
  char url[64];
  answer_fn answer;
  pthread_mutex_t mu; /* guards the counters and the script state */
  int pushes, pulls, empty_cursor_pulls, refused_pulls;
  int mode; /* per test */
  uint64_t commit;
};

typedef struct {
  char *buf;
  size_t len;
} body;

static enum MHD_Result on_req(void *cls, struct MHD_Connection *conn,
                              const char *url, const char *method,
                              const char *version, const char *upload,
                              size_t *upload_size, void **con_cls) {
  fake *f = cls;
  (void)method, (void)version;
  body *b = *con_cls;
  if (b == NULL) {
    b = calloc(1, sizeof *b);
    if (b == NULL)
      return MHD_NO;
    *con_cls = b;
    return MHD_YES;
  }
  if (*upload_size > 0) {
    char *nb = realloc(b->buf, b->len + *upload_size + 1);
    if (nb == NULL)
      return MHD_NO;
    b->buf = nb;
    memcpy(b->buf + b->len, upload, *upload_size);
    b->len += *upload_size;
    *upload_size = 0;
    return MHD_YES;
  }
  json_t *req = json_loadb(b->buf ? b->buf : "", b->len, 0, NULL);
  int status = 500;
  json_t *resp = NULL;
  pthread_mutex_lock(&f->mu);
  f->answer(f, url, req, &status, &resp);
  pthread_mutex_unlock(&f->mu);
  json_decref(req);
  char *text = resp ? json_dumps(resp, JSON_COMPACT) : strdup("{}");
  json_decref(resp);
  struct MHD_Response *r = MHD_create_response_from_buffer(
      strlen(text), text, MHD_RESPMEM_MUST_FREE);
  MHD_add_response_header(r, "Content-Type", "application/json");
  enum MHD_Result ret = MHD_queue_response(conn, (unsigned)status, r);
  MHD_destroy_response(r);
  return ret;
}

static void on_done(void *cls, struct MHD_Connection *conn, void **con_cls,
                    enum MHD_RequestTerminationCode toe) {
  (void)cls, (void)conn, (void)toe;
  body *b = *con_cls;
  if (b) {
    free(b->buf);
    free(b);
  }
  *con_cls = NULL;
}

static void fake_start(fake *f, answer_fn answer) {
  memset(f, 0, sizeof *f);
  f->answer = answer;
  pthread_mutex_init(&f->mu, NULL);
  f->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL,
                          on_req, f, MHD_OPTION_NOTIFY_COMPLETED, on_done, f,
                          MHD_OPTION_END);
  assert_non_null(f->d);
  const union MHD_DaemonInfo *di =
      MHD_get_daemon_info(f->d, MHD_DAEMON_INFO_BIND_PORT);
  assert_non_null(di);
  snprintf(f->url, sizeof f->url, "http://127.0.0.1:%u",
           (unsigned)di->port);
}

static void fake_stop(fake *f) {
  MHD_stop_daemon(f->d);
  pthread_mutex_destroy(&f->mu);
}

/* {"v":1,"error":CODE,"message":MSG} */
static json_t *err_body(const char *code, const char *msg) {
  return json_pack("{s:i,s:s,s:s}", "v", 1, "error", code, "message", msg);
}

/* A 200 push answer giving every intent of REQ OUTCOME ("applied": at
 * p 0, the next commits). */
static json_t *push_answer(fake *f, const json_t *req, const char *outcome) {
  json_t *outs = json_array();
  const json_t *ints = json_object_get(req, "intents");
  json_int_t last = 0;
  for (size_t i = 0; i < json_array_size(ints); i++) {
    last = json_integer_value(json_object_get(json_array_get(ints, i), "seq"));
    if (strcmp(outcome, "applied") == 0)
      json_array_append_new(outs, json_pack("{s:I,s:s,s:i,s:I}", "seq", last,
                                            "outcome", "applied", "p", 0,
                                            "commit",
                                            (json_int_t)++f->commit));
    else
      json_array_append_new(outs, json_pack("{s:I,s:s,s:b}", "seq", last,
                                            "outcome", outcome, "duplicate",
                                            1));
  }
  return json_pack("{s:i,s:I,s:o}", "v", 1, "acked", last, "outcomes", outs);
}

/* ---- a replica ------------------------------------------------------------ */

typedef struct {
  char dir[64];
  tt_store *st;
  tt_replica *r;
} rep;

static int rm_one(const char *p, const struct stat *sb, int flag,
                  struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(p);
}

static void rep_open(rep *r, const char *url) {
  strcpy(r->dir, "/tmp/tt_netsync_XXXXXX");
  assert_non_null(mkdtemp(r->dir));
  char err[256];
  tt_store_opts so = {.no_sync = 1};
  assert_int_equal(tt_store_open_lmdb(r->dir, &so, &r->st, err, sizeof err),
                   0);
  uint8_t id[TT_ID_LEN] = {0x5e, 0x11};
  assert_int_equal(tt_replica_create(r->st, id, url), 0);
  assert_int_equal(tt_replica_open(r->st, &r->r), 0);
}

static void rep_close(rep *r) {
  tt_replica_close(r->r);
  tt_store_close(r->st);
  nftw(r->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static int rep_sync(rep *r, const char *url, char *err, size_t errlen) {
  tt_http_client *c = NULL;
  tt_http_client_opts o = {.timeout_ms = 10000, .retries = 1,
                           .backoff_ms = 10};
  assert_int_equal(tt_http_client_new(url, &o, &c), 0);
  int rc = tt_sync_run(r->r, c, NULL, err, errlen);
  tt_http_client_free(c);
  return rc;
}

static void set(rep *r, const char *id, const char *field, const char *v) {
  json_t *j = json_loads(v, JSON_DECODE_ANY, NULL);
  assert_non_null(j);
  assert_int_equal(
      tt_replica_write(r->r, "c", id, TT_OP_SET, field, j, NULL, 1700000000000u),
      0);
  json_decref(j);
}

/* The optimistic document as compact sorted JSON, or "absent". */
static char *get(rep *r, const char *id) {
  json_t *o = NULL;
  int rc = tt_replica_get(r->r, "c", id, &o);
  if (rc == TETHER_ENOTFOUND)
    return strdup("absent");
  assert_int_equal(rc, 0);
  char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
  json_decref(o);
  return s;
}

#define assert_doc(r, id, want)                                               \
  do {                                                                        \
    char *g_ = get((r), (id));                                                \
    assert_string_equal(g_, (want));                                          \
    free(g_);                                                                 \
  } while (0)

/* Gives the replica confirmed documents and a cursor of [7] without any
 * server: a hand-fed pull answer. */
static void seed(rep *r) {
  json_t *p = json_loads(
      "{\"v\":1,\"cursor\":[7],\"more\":false,\"changes\":["
      "{\"coll\":\"c\",\"id\":\"old\",\"p\":0,\"version\":3,"
      "\"set\":{\"t\":\"old\"}},"
      "{\"coll\":\"c\",\"id\":\"keep\",\"p\":0,\"version\":7,"
      "\"set\":{\"t\":\"v1\"}}]}",
      0, NULL);
  int more = 0;
  size_t n = 0;
  assert_int_equal(tt_replica_pull_done(r->r, 200, p, &more, &n), 0);
  json_decref(p);
}

/* ---- re-bootstrap ----------------------------------------------------------- */

/* A server restored from an older backup: it no longer knows cursor [7],
 * and its whole state is "keep" at version 1 plus what we push now. */
static void restored_server(fake *f, const char *path, const json_t *req,
                            int *status, json_t **resp) {
  if (strcmp(path, "/v1/push") == 0) {
    f->pushes++;
    *status = 200;
    *resp = push_answer(f, req, "applied");
    return;
  }
  f->pulls++;
  const json_t *cur = json_object_get(req, "cursor");
  if (json_array_size(cur) > 0 &&
      json_integer_value(json_array_get(cur, 0)) > (json_int_t)f->commit) {
    f->refused_pulls++;
    *status = 400;
    *resp = err_body("cursor", "cursor [7] is ahead of the server");
    return;
  }
  if (json_array_size(cur) == 0)
    f->empty_cursor_pulls++;
  *status = 200;
  *resp = json_pack(
      "{s:i,s:[I],s:b,s:[{s:s,s:s,s:i,s:I,s:{s:s}},{s:s,s:s,s:i,s:I,"
      "s:{s:s}}]}",
      "v", 1, "cursor", (json_int_t)f->commit, "more", 0, "changes", "coll",
      "c", "id", "keep", "p", 0, "version", (json_int_t)1, "set", "t",
      "restored", "coll", "c", "id", "mine", "p", 0, "version",
      (json_int_t)f->commit, "set", "t", "pending");
}

static void test_rebootstrap_then_pull_again(void **state) {
  (void)state;
  fake f;
  fake_start(&f, restored_server);
  f.commit = 1; /* the restored server's history: "keep" at commit 1 */
  rep r;
  rep_open(&r, f.url);
  seed(&r);
  set(&r, "mine", "t", "\"pending\""); /* unacknowledged */
  char err[512] = "";
  int rc = rep_sync(&r, f.url, err, sizeof err);
  if (rc)
    print_error("sync: %s: %s\n", tether_err_name(rc), err);
  assert_int_equal(rc, 0);
  /* Pushed once (kept through the re-bootstrap), refused once, then
   * pulled from []. */
  assert_int_equal(f.pushes, 1);
  assert_int_equal(f.refused_pulls, 1);
  assert_int_equal(f.empty_cursor_pulls, 1);
  /* The replica now holds the server's state: "old" is gone. */
  assert_doc(&r, "old", "absent");
  assert_doc(&r, "keep", "{\"t\":\"restored\"}");
  assert_doc(&r, "mine", "{\"t\":\"pending\"}");
  assert_int_equal(tt_replica_outbox_len(r.r), 0);
  json_t *req = NULL;
  assert_int_equal(tt_replica_pull_request(r.r, 0, 0, &req), 0);
  assert_int_equal(json_integer_value(
                       json_array_get(json_object_get(req, "cursor"), 0)),
                   2);
  json_decref(req);
  rep_close(&r);
  fake_stop(&f);
}

/* A server that refuses every cursor, even []: re-bootstrapping cannot
 * help, and the sync must say so instead of looping. */
static void always_refuses_cursor(fake *f, const char *path,
                                  const json_t *req, int *status,
                                  json_t **resp) {
  if (strcmp(path, "/v1/push") == 0) {
    f->pushes++;
    *status = 200;
    *resp = push_answer(f, req, "applied");
    return;
  }
  f->pulls++;
  if (json_array_size(json_object_get(req, "cursor")) == 0)
    f->empty_cursor_pulls++;
  *status = 400;
  *resp = err_body("cursor", "no such cursor");
}

static void test_cursor_refused_twice_stops(void **state) {
  (void)state;
  fake f;
  fake_start(&f, always_refuses_cursor);
  rep r;
  rep_open(&r, f.url);
  seed(&r);
  char err[512] = "";
  int rc = rep_sync(&r, f.url, err, sizeof err);
  assert_int_equal(rc, TETHER_EPROTO);
  /* One re-bootstrap, then it stops instead of looping. */
  assert_int_equal(f.pulls, 2);
  assert_int_equal(f.empty_cursor_pulls, 1);
  assert_non_null(strstr(err, "again after it re-bootstrapped"));
  assert_non_null(strstr(err, "local changes are kept"));
  rep_close(&r);
  fake_stop(&f);
}

/* ---- push refusals: clear messages ----------------------------------------- */

static void gap_or_chain(fake *f, const char *path, const json_t *req,
                         int *status, json_t **resp) {
  (void)req;
  if (strcmp(path, "/v1/push") == 0) {
    f->pushes++;
    *status = 409;
    *resp = f->mode == 0 ? json_pack("{s:i,s:s,s:s,s:i}", "v", 1, "error",
                                     "gap", "message",
                                     "expected seq 1, got 5", "expected", 1)
                         : err_body("chain", "prev of seq 1 does not match");
    return;
  }
  f->pulls++;
  *status = 500;
  *resp = err_body("internal", "not expected in this test");
}

static void test_gap_and_chain_messages(void **state) {
  (void)state;
  fake f;
  fake_start(&f, gap_or_chain);
  rep r;
  rep_open(&r, f.url);
  set(&r, "a", "t", "1");
  char err[1024] = "";
  int rc = rep_sync(&r, f.url, err, sizeof err);
  assert_int_equal(rc, TETHER_EGAP);
  assert_int_equal(f.pushes, 1);
  assert_int_equal(f.pulls, 0);
  assert_non_null(strstr(err, "HTTP 409"));
  assert_non_null(strstr(err, "expected seq 1"));      /* the server's word */
  assert_non_null(strstr(err, "lost intents"));         /* what happened */
  assert_non_null(strstr(err, "Local changes are kept")); /* what to do */
  f.mode = 1;
  rc = rep_sync(&r, f.url, err, sizeof err);
  assert_int_equal(rc, TETHER_ECHAIN);
  assert_non_null(strstr(err, "does not match"));
  assert_non_null(strstr(err, "two copies of one replica"));
  assert_int_equal(tt_replica_outbox_len(r.r), 1);
  rep_close(&r);
  fake_stop(&f);
}

/* ---- a forgotten outcome acknowledges ---------------------------------------- */

static void forgets_outcomes(fake *f, const char *path, const json_t *req,
                             int *status, json_t **resp) {
  if (strcmp(path, "/v1/push") == 0) {
    f->pushes++;
    *status = 200;
    *resp = push_answer(f, req, "duplicate");
    return;
  }
  f->pulls++;
  *status = 200;
  *resp = json_pack("{s:i,s:[i],s:b,s:[{s:s,s:s,s:i,s:i,s:{s:i}}]}", "v", 1,
                    "cursor", 4, "more", 0, "changes", "coll", "c", "id", "a",
                    "p", 0, "version", 4, "set", "t", 1);
}

static void test_forgotten_outcome_acknowledges(void **state) {
  (void)state;
  fake f;
  fake_start(&f, forgets_outcomes);
  rep r;
  rep_open(&r, f.url);
  set(&r, "a", "t", "1");
  char err[512] = "";
  int rc = rep_sync(&r, f.url, err, sizeof err);
  if (rc)
    print_error("sync: %s\n", err);
  assert_int_equal(rc, 0);
  assert_int_equal(f.pushes, 1); /* not re-pushed */
  assert_int_equal(tt_replica_outbox_len(r.r), 0);
  assert_doc(&r, "a", "{\"t\":1}");
  rep_close(&r);
  fake_stop(&f);
}

/* ---- two pushes in flight ------------------------------------------------- */

/* Answers every push 200 with seen_ok, and with ahead_ok unless mode is
 * 1; in mode 2 the first push sent "ahead" is answered 409 gap, as a
 * server gives it once it stopped holding it (PROTOCOL.md "Pushes in
 * flight"). Counts pushes that said "ahead" and the gaps answered. */
static void ahead_server(fake *f, const char *path, const json_t *req,
                         int *status, json_t **resp) {
  if (strcmp(path, "/v1/push") != 0) {
    f->pulls++;
    *status = 200;
    *resp = json_pack("{s:i,s:[i],s:b,s:[]}", "v", 1, "cursor",
                      (int)f->commit, "more", 0, "changes");
    return;
  }
  f->pushes++;
  if (json_is_true(json_object_get(req, "ahead"))) {
    f->empty_cursor_pulls++; /* here: pushes sent ahead */
    if (f->mode == 2 && f->refused_pulls == 0) {
      f->refused_pulls++; /* here: gaps answered */
      *status = 409;
      *resp = err_body("gap", "first intent seq beyond the head");
      return;
    }
  }
  *status = 200;
  *resp = push_answer(f, req, "applied");
  json_object_set_new(*resp, "seen_ok", json_true());
  if (f->mode != 1)
    json_object_set_new(*resp, "ahead_ok", json_true());
}

/* Enough intents for 5 pushes (TT_SYNC_PUSH_BATCH each), in one batch. */
static void many_writes(rep *r, size_t n) {
  assert_int_equal(tt_replica_batch_begin(r->r), 0);
  for (size_t i = 0; i < n; i++) {
    char id[32];
    snprintf(id, sizeof id, "d%zu", i);
    set(r, id, "t", "1");
  }
  assert_int_equal(tt_replica_batch_commit(r->r), 0);
}

static void sync_with(int mode, int *pushes, int *ahead, int *gaps) {
  fake f;
  fake_start(&f, ahead_server);
  f.mode = mode;
  rep r;
  rep_open(&r, f.url);
  many_writes(&r, 4 * TT_SYNC_PUSH_BATCH + 1);
  char err[512] = "";
  int rc = rep_sync(&r, f.url, err, sizeof err);
  if (rc)
    print_error("sync: %s\n", err);
  assert_int_equal(rc, 0);
  assert_int_equal(tt_replica_outbox_len(r.r), 0);
  *pushes = f.pushes;
  *ahead = f.empty_cursor_pulls;
  *gaps = f.refused_pulls;
  rep_close(&r);
  fake_stop(&f);
}

static void test_pushes_in_flight(void **state) {
  (void)state;
  int pushes, ahead, gaps;
  /* ahead_ok: from the third push on, each goes out before the one
   * before it is answered */
  sync_with(0, &pushes, &ahead, &gaps);
  assert_int_equal(pushes, 5);
  assert_int_equal(ahead, 3);
  assert_int_equal(gaps, 0);
  /* seen_ok only: never ahead */
  sync_with(1, &pushes, &ahead, &gaps);
  assert_int_equal(pushes, 5);
  assert_int_equal(ahead, 0);
  /* a gap to a push sent ahead: the rest go one at a time, and every
   * intent is still acknowledged */
  sync_with(2, &pushes, &ahead, &gaps);
  assert_int_equal(gaps, 1);
  assert_in_range(ahead, 1, 2);
  assert_in_range(pushes, 6, 7);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rebootstrap_then_pull_again),
      cmocka_unit_test(test_cursor_refused_twice_stops),
      cmocka_unit_test(test_gap_and_chain_messages),
      cmocka_unit_test(test_forgotten_outcome_acknowledges),
      cmocka_unit_test(test_pushes_in_flight),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
