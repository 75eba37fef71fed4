/* net_http.c — the HTTP server and client against a real reconciler on a
 * temporary LMDB store: endpoints, error bodies, limits, zstd both ways,
 * group-committed concurrent pushes, long-poll with 100+ waiting
 * replicas, and pushes sent "ahead" (held, run, timed out, stopped). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <zstd.h>

#include "core/intent.h"
#include "core/policy.h"
#include "core/util.h"
#include "net/codec.h"
#include "net/http_client.h"
#include "net/http_server.h"
#include "net/sync.h"
#include "replica/replica.h"
#include "server/server.h"
#include "store/store.h"

#define MAX_BODY ((size_t)1 << 20)

typedef struct {
  char dir[64];
  tt_store *st;
  tt_policy_table *pol;
  tt_server *srv;
  tt_http_server *http;
  char url[64];
} env;

typedef struct {
  char dir[64];
  tt_store *st;
  tt_replica *r;
  char hex[2 * TT_ID_LEN + 1];
} rep;

static int rm_one(const char *p, const struct stat *sb, int flag,
                  struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(p);
}

static uint64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int env_setup(void **state) {
  env *e = calloc(1, sizeof *e);
  assert_non_null(e);
  strcpy(e->dir, "/tmp/tt_net_XXXXXX");
  assert_non_null(mkdtemp(e->dir));
  char err[256];
  tt_store_opts so = {.no_sync = 1};
  assert_int_equal(tt_store_open_lmdb(e->dir, &so, &e->st, err, sizeof err),
                   0);
  assert_int_equal(tt_policy_parse(NULL, 0, &e->pol, err, sizeof err), 0);
  tt_server_opts o = {0};
  assert_int_equal(
      tt_server_open(e->st, e->pol, &o, &e->srv, err, sizeof err), 0);
  tt_http_server_opts ho = {.host = "127.0.0.1", .port = 0,
                            .max_body = MAX_BODY};
  int rc = tt_http_server_start(e->srv, &ho, &e->http, err, sizeof err);
  if (rc)
    print_error("http start: %s\n", err);
  assert_int_equal(rc, 0);
  assert_true(tt_http_server_port(e->http) != 0);
  snprintf(e->url, sizeof e->url, "http://127.0.0.1:%u",
           (unsigned)tt_http_server_port(e->http));
  *state = e;
  return 0;
}

static int env_teardown(void **state) {
  env *e = *state;
  tt_http_server_stop(e->http);
  tt_server_close(e->srv);
  tt_store_close(e->st);
  tt_policy_free(e->pol);
  nftw(e->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
  free(e);
  return 0;
}

static void rep_open(rep *r, unsigned n, const char *url) {
  strcpy(r->dir, "/tmp/tt_netrep_XXXXXX");
  assert_non_null(mkdtemp(r->dir));
  char err[256];
  tt_store_opts so = {.no_sync = 1};
  assert_int_equal(tt_store_open_lmdb(r->dir, &so, &r->st, err, sizeof err),
                   0);
  uint8_t id[TT_ID_LEN] = {0x7e, 0x57};
  id[12] = (uint8_t)(n >> 24);
  id[13] = (uint8_t)(n >> 16);
  id[14] = (uint8_t)(n >> 8);
  id[15] = (uint8_t)n;
  id[2] = (uint8_t)(mono_ms() & 0xff); /* fresh ids per run */
  assert_int_equal(tt_replica_create(r->st, id, url), 0);
  assert_int_equal(tt_replica_open(r->st, &r->r), 0);
  tt_hex_encode(id, TT_ID_LEN, r->hex);
}

static void rep_close(rep *r) {
  tt_replica_close(r->r);
  tt_store_close(r->st);
  nftw(r->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static int rep_sync(rep *r, const char *url) {
  tt_http_client *c = NULL;
  assert_int_equal(tt_http_client_new(url, NULL, &c), 0);
  char err[512];
  int rc = tt_sync_run(r->r, c, NULL, err, sizeof err);
  if (rc)
    print_error("sync: %s\n", err);
  tt_http_client_free(c);
  return rc;
}

/* ---- raw HTTP, for bodies the client would never send -------------------- */

typedef struct {
  char *body;
  size_t len;
  char enc[32];
  char retry_after[16];
  int saw_accept_zstd;
} raw_resp;

static size_t raw_write(char *d, size_t s, size_t n, void *ud) {
  raw_resp *r = ud;
  char *nb = realloc(r->body, r->len + s * n + 1);
  if (nb == NULL)
    return 0;
  r->body = nb;
  memcpy(r->body + r->len, d, s * n);
  r->len += s * n;
  r->body[r->len] = '\0';
  return s * n;
}

static size_t raw_header(char *d, size_t s, size_t n, void *ud) {
  raw_resp *r = ud;
  size_t len = s * n;
  if (len > 17 && strncasecmp(d, "Content-Encoding:", 17) == 0) {
    const char *v = d + 17;
    while (*v == ' ')
      v++;
    size_t k = 0;
    while (k + 1 < sizeof r->enc && v + k < d + len && v[k] != '\r' &&
           v[k] != '\n')
      k++;
    memcpy(r->enc, v, k);
    r->enc[k] = '\0';
  }
  if (len > 12 && strncasecmp(d, "Retry-After:", 12) == 0) {
    const char *v = d + 12;
    while (*v == ' ')
      v++;
    size_t k = 0;
    while (k + 1 < sizeof r->retry_after && v + k < d + len &&
           v[k] != '\r' && v[k] != '\n')
      k++;
    memcpy(r->retry_after, v, k);
    r->retry_after[k] = '\0';
  }
  if (len > 16 && strncasecmp(d, "Accept-Encoding:", 16) == 0 &&
      memmem(d, len, "zstd", 4))
    r->saw_accept_zstd = 1;
  return len;
}

/* POSTs LEN bytes of BODY with the given Content-Encoding (NULL: none),
 * asking for zstd answers if ACCEPT_ZSTD. Returns the status; *out gets
 * the (possibly compressed) body. */
static long raw_post(const char *url, const void *body, size_t len,
                     const char *enc, int accept_zstd, raw_resp *out) {
  memset(out, 0, sizeof *out);
  CURL *c = curl_easy_init();
  assert_non_null(c);
  struct curl_slist *h = NULL;
  h = curl_slist_append(h, "Content-Type: application/json");
  h = curl_slist_append(h, "Expect:");
  char eh[64];
  if (enc) {
    snprintf(eh, sizeof eh, "Content-Encoding: %s", enc);
    h = curl_slist_append(h, eh);
  }
  if (accept_zstd)
    h = curl_slist_append(h, "Accept-Encoding: zstd");
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, raw_write);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, raw_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, out);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 20000L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  long status = 0;
  CURLcode res = curl_easy_perform(c);
  if (res == CURLE_OK)
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  else
    print_error("raw post: %s\n", curl_easy_strerror(res));
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  return status;
}

/* The "error" of an error body; asserts the body's shape. */
static void assert_error_body(const raw_resp *r, const char *code) {
  json_t *j = NULL;
  char err[200];
  assert_int_equal(tt_codec_parse(r->body, r->len, &j, err, sizeof err), 0);
  assert_int_equal(json_integer_value(json_object_get(j, "v")), 1);
  assert_string_equal(json_string_value(json_object_get(j, "error")), code);
  assert_true(json_is_string(json_object_get(j, "message")));
  json_decref(j);
}

static void assert_healthy(const char *base) {
  tt_http_client *c = NULL;
  assert_int_equal(tt_http_client_new(base, NULL, &c), 0);
  int status = 0;
  json_t *resp = NULL;
  char err[256];
  assert_int_equal(tt_http_get(c, "/v1/health", &status, &resp, err,
                               sizeof err),
                   0);
  assert_int_equal(status, 200);
  assert_string_equal(json_string_value(json_object_get(resp, "status")),
                      "ok");
  assert_true(tt_http_client_server_zstd(c));
  json_decref(resp);
  tt_http_client_free(c);
}

/* ---- tests ------------------------------------------------------------------ */

static void test_health_and_routing(void **state) {
  env *e = *state;
  tt_http_client *c = NULL;
  assert_int_equal(tt_http_client_new(e->url, NULL, &c), 0);
  int status = 0;
  json_t *resp = NULL;
  char err[256];
  assert_int_equal(
      tt_http_get(c, "/v1/health", &status, &resp, err, sizeof err), 0);
  assert_int_equal(status, 200);
  assert_int_equal(json_integer_value(json_object_get(resp, "v")), 1);
  assert_int_equal(json_integer_value(json_object_get(resp, "protocol")), 1);
  assert_true(json_integer_value(json_object_get(resp, "partitions")) >= 1);
  assert_string_equal(json_string_value(json_object_get(resp, "version")),
                      TETHER_VERSION_STRING);
  json_decref(resp);
  assert_true(tt_http_client_server_zstd(c)); /* advertised */
  uint64_t sent = 0, recv = 0;
  tt_http_client_bytes(c, &sent, &recv);
  assert_true(sent > 0 && recv > 0);

  assert_int_equal(tt_http_get(c, "/v1/push", &status, &resp, err, sizeof err),
                   0);
  assert_int_equal(status, 405);
  assert_string_equal(json_string_value(json_object_get(resp, "error")),
                      "method");
  json_decref(resp);
  assert_int_equal(tt_http_get(c, "/nope", &status, &resp, err, sizeof err),
                   0);
  assert_int_equal(status, 404);
  assert_string_equal(json_string_value(json_object_get(resp, "error")),
                      "not_found");
  json_decref(resp);
  json_t *body = json_pack("{s:i}", "v", 1);
  assert_int_equal(
      tt_http_post(c, "/v1/health", body, &status, &resp, err, sizeof err), 0);
  assert_int_equal(status, 405);
  json_decref(resp);
  json_decref(body);
  tt_http_client_free(c);
}

static void test_bad_requests(void **state) {
  env *e = *state;
  char url[128];
  snprintf(url, sizeof url, "%s/v1/push", e->url);
  raw_resp r;

  assert_int_equal(raw_post(url, "xx", 2, NULL, 0, &r), 400);
  assert_error_body(&r, "json");
  assert_true(r.saw_accept_zstd);
  free(r.body);
  assert_int_equal(raw_post(url, "[1,2]", 5, NULL, 0, &r), 400);
  assert_error_body(&r, "json");
  free(r.body);
  assert_int_equal(raw_post(url, "{\"v\":2}", 7, NULL, 0, &r), 400);
  assert_error_body(&r, "version");
  free(r.body);
  assert_int_equal(raw_post(url, "{}", 2, NULL, 0, &r), 400);
  assert_error_body(&r, "version");
  free(r.body);
  assert_int_equal(raw_post(url, "{}", 2, "gzip", 0, &r), 415);
  assert_error_body(&r, "encoding");
  free(r.body);
  assert_int_equal(raw_post(url, "not zstd", 8, "zstd", 0, &r), 400);
  assert_error_body(&r, "encoding");
  free(r.body);

  /* Over max_body, plain. */
  size_t big = MAX_BODY + 10;
  char *blob = malloc(big);
  assert_non_null(blob);
  memset(blob, ' ', big);
  blob[0] = '{';
  blob[big - 1] = '}';
  assert_int_equal(raw_post(url, blob, big, NULL, 0, &r), 413);
  assert_error_body(&r, "too_big");
  free(r.body);

  /* A zstd bomb: small on the wire, 64 MiB decompressed. */
  size_t bomb_len = 64u << 20;
  char *zeros = calloc(1, bomb_len);
  assert_non_null(zeros);
  char *z = NULL;
  size_t zlen = 0;
  assert_int_equal(tt_codec_compress(zeros, bomb_len, &z, &zlen), 0);
  free(zeros);
  assert_true(zlen < MAX_BODY);
  assert_int_equal(raw_post(url, z, zlen, "zstd", 0, &r), 413);
  assert_error_body(&r, "too_big");
  free(r.body);
  free(z);
  free(blob);

  /* A valid compressed request is accepted (here: answered by the
   * reconciler, which finds the replica id bad — not a transport error). */
  const char pull[] = "{\"v\":1,\"replica\":\"00112233445566778899aabbccddeeff\","
                      "\"cursor\":[]}";
  assert_int_equal(tt_codec_compress(pull, strlen(pull), &z, &zlen), 0);
  snprintf(url, sizeof url, "%s/v1/pull", e->url);
  assert_int_equal(raw_post(url, z, zlen, "zstd", 0, &r), 200);
  free(r.body);
  free(z);

  /* Still serving, and the refusals were counted. */
  assert_healthy(e->url);
  tt_http_client *c = NULL;
  assert_int_equal(tt_http_client_new(e->url, NULL, &c), 0);
  tt_http_client_free(c);
  uint64_t reqb = 0, respb = 0;
  tt_http_server_bytes(e->http, &reqb, &respb);
  assert_true(reqb > big);
  assert_true(respb > 0);
}

static void test_metrics(void **state) {
  env *e = *state;
  char url[128];
  snprintf(url, sizeof url, "%s/v1/push", e->url);
  raw_resp r;
  assert_int_equal(raw_post(url, "xx", 2, NULL, 0, &r), 400);
  free(r.body);
  CURL *c = curl_easy_init();
  snprintf(url, sizeof url, "%s/metrics", e->url);
  memset(&r, 0, sizeof r);
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, raw_write);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
  assert_int_equal(curl_easy_perform(c), CURLE_OK);
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_cleanup(c);
  assert_int_equal(status, 200);
  const char *names[] = {"tether_pushes_total ", "tether_pushes_held_total ",
                         "tether_pulls_total ",
                         "tether_intents_total{outcome=\"applied\"} ",
                         "tether_intents_total{outcome=\"duplicate\"} ",
                         "tether_commits_total ",
                         "tether_concurrent_writes_total ",
                         "tether_bad_requests_total ",
                         "tether_http_request_bytes_total ",
                         "tether_http_response_bytes_total "};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    if (strstr(r.body, names[i]) == NULL)
      print_error("missing metric %s\n", names[i]);
    assert_non_null(strstr(r.body, names[i]));
  }
  const char *bad = strstr(r.body, "\ntether_bad_requests_total ");
  assert_non_null(bad);
  assert_true(strtoull(bad + 27, NULL, 10) >= 1);
  const char *reqb = strstr(r.body, "\ntether_http_request_bytes_total ");
  assert_true(strtoull(reqb + 33, NULL, 10) >= 2);
  free(r.body);
}

/* Writes N documents of ~300 bytes into R. */
static void write_docs(rep *r, int n, const char *prefix) {
  char big[301];
  memset(big, 'x', 300);
  big[300] = '\0';
  for (int i = 0; i < n; i++) {
    char id[32];
    snprintf(id, sizeof id, "%s%03d", prefix, i);
    json_t *doc = json_pack("{s:s,s:i}", "text", big, "n", i);
    assert_int_equal(tt_replica_put(r->r, "notes", id, doc, NULL, wall_ms()),
                     0);
    json_decref(doc);
  }
}

static void test_sync_and_zstd_answers(void **state) {
  env *e = *state;
  rep a, b;
  rep_open(&a, 1, e->url);
  rep_open(&b, 2, e->url);
  write_docs(&a, 60, "d");
  assert_int_equal(tt_replica_outbox_len(a.r), 60);
  assert_int_equal(rep_sync(&a, e->url), 0);
  assert_int_equal(tt_replica_outbox_len(a.r), 0);

  /* A pull answer over 4 KiB comes compressed when asked for. */
  char url[128], body[200];
  snprintf(url, sizeof url, "%s/v1/pull", e->url);
  snprintf(body, sizeof body, "{\"v\":1,\"replica\":\"%s\",\"cursor\":[]}",
           b.hex);
  raw_resp r;
  assert_int_equal(raw_post(url, body, strlen(body), NULL, 1, &r), 200);
  assert_string_equal(r.enc, "zstd");
  char *plain = NULL;
  size_t plen = 0;
  assert_int_equal(
      tt_codec_decompress(r.body, r.len, 64u << 20, &plain, &plen), 0);
  assert_true(plen > r.len);
  json_t *j = NULL;
  char err[200];
  assert_int_equal(tt_codec_parse(plain, plen, &j, err, sizeof err), 0);
  assert_int_equal(json_array_size(json_object_get(j, "changes")), 60);
  json_decref(j);
  free(plain);
  free(r.body);
  /* And plain when not asked for. */
  assert_int_equal(raw_post(url, body, strlen(body), NULL, 0, &r), 200);
  assert_string_equal(r.enc, "");
  assert_int_equal(tt_codec_parse(r.body, r.len, &j, err, sizeof err), 0);
  json_decref(j);
  free(r.body);

  /* B catches up through the client (which decodes zstd answers). */
  assert_int_equal(rep_sync(&b, e->url), 0);
  json_t *doc = NULL;
  assert_int_equal(tt_replica_get(b.r, "notes", "d042", &doc), 0);
  assert_int_equal(json_integer_value(json_object_get(doc, "n")), 42);
  json_decref(doc);

  /* A second batch from A: its client now knows the server takes zstd and
   * compresses the >4 KiB push; the server's wire count grows by less than
   * the plain body would need. */
  write_docs(&a, 40, "e");
  uint64_t before = 0, after = 0;
  tt_http_server_bytes(e->http, &before, NULL);
  tt_http_client *c = NULL;
  assert_int_equal(tt_http_client_new(e->url, NULL, &c), 0);
  assert_healthy(e->url);
  int status = 0;
  json_t *resp = NULL;
  assert_int_equal(
      tt_http_get(c, "/v1/health", &status, &resp, err, sizeof err), 0);
  json_decref(resp);
  tt_http_server_bytes(e->http, &before, NULL);
  assert_int_equal(tt_sync_run(a.r, c, NULL, err, sizeof err), 0);
  tt_http_server_bytes(e->http, &after, NULL);
  tt_http_client_free(c);
  assert_true(after - before < 40 * 300); /* 12 KB of text went smaller */
  assert_int_equal(tt_replica_outbox_len(a.r), 0);
  rep_close(&a);
  rep_close(&b);
}

/* ---- concurrency --------------------------------------------------------- */

typedef struct {
  const char *url;
  rep *r;
  int rc;
} push_arg;

static void *push_thread(void *p) {
  push_arg *a = p;
  tt_http_client *c = NULL;
  if (tt_http_client_new(a->url, NULL, &c) != 0) {
    a->rc = -100;
    return NULL;
  }
  char err[256];
  a->rc = tt_sync_run(a->r->r, c, NULL, err, sizeof err);
  tt_http_client_free(c);
  return NULL;
}

static void test_concurrent_pushes(void **state) {
  env *e = *state;
  enum { N = 16, PER = 5 };
  static rep reps[N];
  push_arg args[N];
  pthread_t th[N];
  tt_server_stats s0, s1;
  tt_server_get_stats(e->srv, &s0);
  for (int i = 0; i < N; i++) {
    rep_open(&reps[i], 100 + (unsigned)i, e->url);
    for (int k = 0; k < PER; k++) {
      char id[32];
      snprintf(id, sizeof id, "c%d", i);
      json_t *v = json_integer(k);
      assert_int_equal(tt_replica_write(reps[i].r, "ctr", id, TT_OP_SET, "k",
                                        v, NULL, wall_ms()),
                       0);
      json_decref(v);
    }
    args[i] = (push_arg){e->url, &reps[i], -1};
  }
  for (int i = 0; i < N; i++)
    assert_int_equal(pthread_create(&th[i], NULL, push_thread, &args[i]), 0);
  for (int i = 0; i < N; i++) {
    pthread_join(th[i], NULL);
    assert_int_equal(args[i].rc, 0);
    assert_int_equal(tt_replica_outbox_len(reps[i].r), 0);
  }
  tt_server_get_stats(e->srv, &s1);
  assert_int_equal(s1.intents_applied - s0.intents_applied, N * PER);
  /* Group commit never commits more often than pushes arrive. */
  assert_true(s1.commits - s0.commits <= s1.pushes - s0.pushes);
  for (int i = 0; i < N; i++)
    rep_close(&reps[i]);
}

typedef struct {
  const char *url;
  char body[256];
  int status;
  size_t nchanges;
  uint64_t elapsed;
  int rc;
  int *started;
  pthread_mutex_t *mu;
} poll_arg;

static void *poll_thread(void *p) {
  poll_arg *a = p;
  tt_http_client_opts o = {.timeout_ms = 30000, .no_retry = 1};
  tt_http_client *c = NULL;
  a->rc = tt_http_client_new(a->url, &o, &c);
  if (a->rc)
    return NULL;
  json_error_t je;
  json_t *req = json_loads(a->body, 0, &je);
  pthread_mutex_lock(a->mu);
  (*a->started)++;
  pthread_mutex_unlock(a->mu);
  uint64_t t0 = mono_ms();
  json_t *resp = NULL;
  char err[256];
  a->rc = tt_http_post(c, "/v1/pull", req, &a->status, &resp, err, sizeof err);
  a->elapsed = mono_ms() - t0;
  if (a->rc == 0)
    a->nchanges = json_array_size(json_object_get(resp, "changes"));
  json_decref(resp);
  json_decref(req);
  tt_http_client_free(c);
  return NULL;
}

/* The cursor of a replica that has everything committed so far. */
static char *current_cursor(env *e) {
  tt_http_client *c = NULL;
  assert_int_equal(tt_http_client_new(e->url, NULL, &c), 0);
  json_t *req = json_pack("{s:i,s:s,s:[],s:i}", "v", 1, "replica",
                          "0123456789abcdef0123456789abcdef", "cursor",
                          "limit", 5000);
  int status = 0;
  json_t *resp = NULL;
  char err[256];
  json_t *cursor = NULL;
  for (;;) {
    assert_int_equal(
        tt_http_post(c, "/v1/pull", req, &status, &resp, err, sizeof err), 0);
    assert_int_equal(status, 200);
    cursor = json_object_get(resp, "cursor");
    json_object_set(req, "cursor", cursor);
    int more = json_is_true(json_object_get(resp, "more"));
    if (!more)
      break;
    json_decref(resp);
  }
  char *s = json_dumps(cursor, JSON_COMPACT);
  json_decref(resp);
  json_decref(req);
  tt_http_client_free(c);
  return s;
}

static void test_long_poll_many(void **state) {
  env *e = *state;
  enum { N = 120 };
  static poll_arg args[N];
  pthread_t th[N];
  int started = 0;
  pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
  char *cursor = current_cursor(e);

  for (int i = 0; i < N; i++) {
    args[i] = (poll_arg){.url = e->url, .started = &started, .mu = &mu};
    snprintf(args[i].body, sizeof args[i].body,
             "{\"v\":1,\"replica\":\"%032x\",\"cursor\":%s,\"wait_ms\":20000}",
             i + 1, cursor);
    assert_int_equal(pthread_create(&th[i], NULL, poll_thread, &args[i]), 0);
  }
  for (;;) {
    pthread_mutex_lock(&mu);
    int s = started;
    pthread_mutex_unlock(&mu);
    if (s == N)
      break;
    struct timespec ts = {0, 10 * 1000000L};
    nanosleep(&ts, NULL);
  }
  struct timespec ts = {0, 500 * 1000000L}; /* let them all reach the wait */
  nanosleep(&ts, NULL);

  rep a;
  rep_open(&a, 7, e->url);
  uint64_t t0 = mono_ms();
  write_docs(&a, 1, "poll");
  assert_int_equal(rep_sync(&a, e->url), 0);
  for (int i = 0; i < N; i++) {
    pthread_join(th[i], NULL);
    if (args[i].rc != 0 || args[i].status != 200)
      print_error("poller %d: rc %d status %d\n", i, args[i].rc,
                  args[i].status);
    assert_int_equal(args[i].rc, 0);
    assert_int_equal(args[i].status, 200);
    assert_true(args[i].nchanges >= 1);
  }
  /* Woken by the commit, not by their 20 s timeout. */
  assert_true(mono_ms() - t0 < 10000);
  rep_close(&a);
  free(cursor);
}

static void test_long_poll_times_out(void **state) {
  env *e = *state;
  char *cursor = current_cursor(e);
  int started = 0;
  pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
  poll_arg a = {.url = e->url, .started = &started, .mu = &mu};
  snprintf(a.body, sizeof a.body,
           "{\"v\":1,\"replica\":\"%032x\",\"cursor\":%s,\"wait_ms\":400}", 9,
           cursor);
  poll_thread(&a);
  assert_int_equal(a.rc, 0);
  assert_int_equal(a.status, 200);
  assert_int_equal(a.nchanges, 0);
  assert_true(a.elapsed >= 350);
  assert_true(a.elapsed < 5000);
  /* wait_ms 0 answers at once. */
  snprintf(a.body, sizeof a.body,
           "{\"v\":1,\"replica\":\"%032x\",\"cursor\":%s,\"wait_ms\":0}", 9,
           cursor);
  poll_thread(&a);
  assert_int_equal(a.status, 200);
  assert_true(a.elapsed < 300);
  free(cursor);
}

/* Stopping the server answers long-polls at once instead of waiting. */
static void test_stop_with_waiters(void **state) {
  (void)state;
  void *st = NULL;
  env_setup(&st);
  env *e = st;
  char *cursor = current_cursor(e);
  enum { N = 5 };
  poll_arg args[N];
  pthread_t th[N];
  int started = 0;
  pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
  for (int i = 0; i < N; i++) {
    args[i] = (poll_arg){.url = e->url, .started = &started, .mu = &mu};
    snprintf(args[i].body, sizeof args[i].body,
             "{\"v\":1,\"replica\":\"%032x\",\"cursor\":%s,\"wait_ms\":30000}",
             i + 1, cursor);
    assert_int_equal(pthread_create(&th[i], NULL, poll_thread, &args[i]), 0);
  }
  struct timespec ts = {0, 400 * 1000000L};
  nanosleep(&ts, NULL);
  uint64_t t0 = mono_ms();
  tt_http_server_stop(e->http);
  e->http = NULL;
  for (int i = 0; i < N; i++)
    pthread_join(th[i], NULL);
  assert_true(mono_ms() - t0 < 10000);
  /* Each got its (empty) answer, not a closed connection. */
  for (int i = 0; i < N; i++) {
    assert_int_equal(args[i].rc, 0);
    assert_int_equal(args[i].status, 200);
    assert_int_equal(args[i].nchanges, 0);
  }
  free(cursor);
  env_teardown(&st);
}

/* ---- pushes in flight ("ahead", PROTOCOL.md) ----------------------------- */

/* A replica of the tests below: it makes its own chained intents (hashes
 * computed by core/), so a push can be built and sent out of order. */
typedef struct {
  uint8_t id[TT_ID_LEN];
  char hex[2 * TT_ID_LEN + 1];
  uint64_t seq;              /* of the last intent made */
  uint8_t last[TT_HASH_LEN]; /* its hash; zeros before the first */
} ah_rep;

static void ah_rep_init(ah_rep *r, uint8_t fill) {
  memset(r, 0, sizeof *r);
  memset(r->id, fill, TT_ID_LEN);
  r->id[0] = 0xa4;
  r->id[1] = (uint8_t)(mono_ms() & 0xff);
  tt_hex_encode(r->id, TT_ID_LEN, r->hex);
}

/* The next intent of R on document ah/ctr: the first creates it with
 * {"n":1}, every later one adds 1 to "n". So after intents 1..m the
 * counter is m exactly when each was applied once. */
static json_t *ah_intent(ah_rep *r) {
  char prev[2 * TT_HASH_LEN + 1], err[256];
  uint64_t s = r->seq + 1;
  const char *ops = s == 1
                        ? "[{\"kind\":\"create\",\"value\":{\"n\":1}}]"
                        : "[{\"kind\":\"incr\",\"field\":\"n\",\"value\":1}]";
  json_error_t je;
  json_t *jops = json_loads(ops, 0, &je);
  assert_non_null(jops);
  tt_hex_encode(r->last, TT_HASH_LEN, prev);
  json_t *j = json_pack(
      "{s:s,s:I,s:s,s:s,s:I,s:i,s:s,s:s,s:I,s:o}", "client", r->hex, "seq",
      (json_int_t)s, "prev", prev, "hash",
      "0000000000000000000000000000000000000000000000000000000000000000",
      "hlc", (json_int_t)((wall_ms() << 16) + s), "schema", 0, "coll", "ah",
      "id", "ctr", "base", (json_int_t)0, "ops", jops);
  assert_non_null(j);
  tt_intent in;
  if (tt_intent_from_json(j, &in, err, sizeof err))
    fail_msg("intent: %s", err);
  json_decref(j);
  assert_int_equal(tt_intent_compute_hash(&in, in.hash), 0);
  r->seq = in.seq;
  memcpy(r->last, in.hash, TT_HASH_LEN);
  json_t *out = tt_intent_to_json(&in, 1);
  assert_non_null(out);
  tt_intent_clear(&in);
  return out;
}

/* A push body of R's next N intents; with "ahead": true if AHEAD. */
static char *ah_body(ah_rep *r, size_t n, int ahead) {
  json_t *arr = json_array();
  assert_non_null(arr);
  for (size_t i = 0; i < n; i++)
    assert_int_equal(json_array_append_new(arr, ah_intent(r)), 0);
  json_t *b = json_pack("{s:i,s:s,s:o}", "v", 1, "replica", r->hex,
                        "intents", arr);
  assert_non_null(b);
  if (ahead)
    assert_int_equal(json_object_set_new(b, "ahead", json_true()), 0);
  char *s = json_dumps(b, JSON_COMPACT);
  assert_non_null(s);
  json_decref(b);
  return s;
}

/* One POST /v1/push from a thread of its own: no cmocka asserts in here
 * (they must not jump out of another thread); the main thread checks. */
typedef struct {
  char url[128];
  const char *body;
  CURLcode res;
  long status;
  raw_resp resp;
  uint64_t t0, t1; /* mono_ms around the request */
  atomic_int done;
} ah_post;

static void *ah_post_main(void *p) {
  ah_post *a = p;
  memset(&a->resp, 0, sizeof a->resp);
  a->status = 0;
  a->res = CURLE_FAILED_INIT;
  a->t0 = mono_ms();
  CURL *c = curl_easy_init();
  if (c != NULL) {
    struct curl_slist *h = NULL;
    h = curl_slist_append(h, "Content-Type: application/json");
    h = curl_slist_append(h, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, a->url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
                     (curl_off_t)strlen(a->body));
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, a->body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, raw_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &a->resp);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    a->res = curl_easy_perform(c);
    if (a->res == CURLE_OK)
      curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &a->status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
  }
  a->t1 = mono_ms();
  atomic_store(&a->done, 1);
  return NULL;
}

static void ah_post_start(ah_post *a, pthread_t *th, const char *base,
                          const char *body) {
  memset(a, 0, sizeof *a);
  snprintf(a->url, sizeof a->url, "%s/v1/push", base);
  a->body = body;
  atomic_init(&a->done, 0);
  assert_int_equal(pthread_create(th, NULL, ah_post_main, a), 0);
}

/* The same, in this thread. */
static void ah_post_run(ah_post *a, const char *base, const char *body) {
  pthread_t th;
  ah_post_start(a, &th, base, body);
  pthread_join(th, NULL);
}

static void ah_sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* Waits until the push A (the only one in flight on SRV) has been through
 * a group commit that left it parked ("pushes_held" moved), and the
 * request is still not answered, nothing applied, nothing refused. S0: the
 * counts before A was sent. */
static void ah_wait_parked(tt_server *srv, const tt_server_stats *s0,
                           ah_post *a) {
  uint64_t until = mono_ms() + 10000;
  tt_server_stats s;
  for (;;) {
    tt_server_get_stats(srv, &s);
    if (s.pushes_held > s0->pushes_held)
      break;
    if (atomic_load(&a->done))
      fail_msg("the push sent ahead was answered (curl %d, status %ld: %s) "
               "instead of being held",
               (int)a->res, a->status, a->resp.body ? a->resp.body : "");
    if (mono_ms() > until)
      fail_msg("the push sent ahead never reached the committer");
    ah_sleep_ms(5);
  }
  /* Run once and held: still unanswered a while later. */
  ah_sleep_ms(100);
  if (atomic_load(&a->done))
    fail_msg("the push sent ahead was answered (curl %d, status %ld: %s) "
             "instead of being held",
             (int)a->res, a->status, a->resp.body ? a->resp.body : "");
  tt_server_get_stats(srv, &s);
  assert_int_equal(s.intents_applied + s.intents_merged,
                   s0->intents_applied + s0->intents_merged);
  assert_int_equal(s.bad_requests, s0->bad_requests);
}

static json_t *ah_parse(const ah_post *a) {
  json_t *j = NULL;
  char err[200];
  if (a->resp.body == NULL)
    fail_msg("no answer body (curl %d, status %ld)", (int)a->res, a->status);
  if (tt_codec_parse(a->resp.body, a->resp.len, &j, err, sizeof err))
    fail_msg("answer not JSON: %s: %s", err, a->resp.body);
  return j;
}

/* A 200 push answer of intents FIRST..LAST: ahead_ok, acked at least
 * LAST (exactly ACKED if non-zero), one outcome per intent, in order, each
 * applied or merged, none a duplicate. */
static void ah_assert_ok(const ah_post *a, uint64_t first, uint64_t last,
                         uint64_t acked) {
  if (a->res != CURLE_OK || a->status != 200)
    print_error("push: curl %d status %ld: %s\n", (int)a->res, a->status,
                a->resp.body ? a->resp.body : "");
  assert_int_equal(a->res, CURLE_OK);
  assert_int_equal(a->status, 200);
  json_t *j = ah_parse(a);
  assert_true(json_is_true(json_object_get(j, "ahead_ok")));
  json_int_t ack = json_integer_value(json_object_get(j, "acked"));
  assert_true((uint64_t)ack >= last);
  if (acked)
    assert_int_equal(ack, acked);
  json_t *outs = json_object_get(j, "outcomes");
  assert_int_equal(json_array_size(outs), last - first + 1);
  for (size_t i = 0; i < json_array_size(outs); i++) {
    json_t *o = json_array_get(outs, i);
    assert_int_equal(json_integer_value(json_object_get(o, "seq")),
                     first + i);
    const char *k = json_string_value(json_object_get(o, "outcome"));
    assert_non_null(k);
    if (strcmp(k, "applied") != 0 && strcmp(k, "merged") != 0)
      fail_msg("seq %zu: outcome %s: %s", (size_t)(first + i), k,
               a->resp.body);
    assert_null(json_object_get(o, "duplicate"));
  }
  json_decref(j);
}

/* A 409 gap answer saying EXPECTED. */
static void ah_assert_gap(const ah_post *a, uint64_t expected) {
  if (a->res != CURLE_OK || a->status != 409)
    print_error("push: curl %d status %ld: %s\n", (int)a->res, a->status,
                a->resp.body ? a->resp.body : "");
  assert_int_equal(a->res, CURLE_OK);
  assert_int_equal(a->status, 409);
  assert_error_body(&a->resp, "gap");
  json_t *j = ah_parse(a);
  assert_int_equal(json_integer_value(json_object_get(j, "expected")),
                   expected);
  json_decref(j);
}

/* Document ah/ctr as a new replica pulls it from BASE: its "n", or -1 if
 * absent. */
static long long ah_pulled_counter(const char *base) {
  char url[128], body[160];
  snprintf(url, sizeof url, "%s/v1/pull", base);
  snprintf(body, sizeof body,
           "{\"v\":1,\"replica\":\"%032x\",\"cursor\":[],\"limit\":5000}",
           0xfeed);
  raw_resp r;
  assert_int_equal(raw_post(url, body, strlen(body), NULL, 0, &r), 200);
  json_t *j = NULL;
  char err[200];
  assert_int_equal(tt_codec_parse(r.body, r.len, &j, err, sizeof err), 0);
  assert_false(json_is_true(json_object_get(j, "more")));
  long long n = -1;
  int seen = 0;
  json_t *ch = json_object_get(j, "changes");
  for (size_t i = 0; i < json_array_size(ch); i++) {
    json_t *c = json_array_get(ch, i);
    if (strcmp(json_string_value(json_object_get(c, "coll")), "ah") != 0 ||
        strcmp(json_string_value(json_object_get(c, "id")), "ctr") != 0)
      continue;
    seen++;
    json_t *v = json_object_get(json_object_get(c, "set"), "n");
    if (json_is_integer(v))
      n = json_integer_value(v);
  }
  assert_true(seen <= 1);
  json_decref(j);
  free(r.body);
  return n;
}

static void ah_server(env *e, uint32_t ahead_wait_ms, tt_http_server **h,
                      char *base, size_t baselen) {
  tt_http_server_opts ho = {.host = "127.0.0.1", .max_body = MAX_BODY,
                            .ahead_wait_ms = ahead_wait_ms};
  char err[256];
  int rc = tt_http_server_start(e->srv, &ho, h, err, sizeof err);
  if (rc)
    print_error("http start: %s\n", err);
  assert_int_equal(rc, 0);
  snprintf(base, baselen, "http://127.0.0.1:%u",
           (unsigned)tt_http_server_port(*h));
}

/* Push B (seqs 4-9, "ahead") reaches the server before push A (1-3) it
 * follows: B is held with no effect, A commits, then B: both 200, each
 * with the outcomes of its own seqs, all nine intents applied once. */
static void test_ahead_parked_then_committed(void **state) {
  env *e = *state;
  enum { K = 3, M = 9 };
  /* A wait far longer than the test: B must be run by A's commit, not by
   * its wait running out. */
  tt_http_server *h = NULL;
  char base[64];
  ah_server(e, 30000, &h, base, sizeof base);
  ah_rep r;
  ah_rep_init(&r, 0x11);
  char *a_body = ah_body(&r, K, 0);
  char *b_body = ah_body(&r, M - K, 1);
  tt_server_stats s0, s1;
  tt_server_get_stats(e->srv, &s0);

  ah_post b, a;
  pthread_t tb, ta;
  ah_post_start(&b, &tb, base, b_body);
  ah_wait_parked(e->srv, &s0, &b);
  uint64_t t_a = mono_ms();
  ah_post_start(&a, &ta, base, a_body);
  pthread_join(ta, NULL);
  pthread_join(tb, NULL);

  ah_assert_ok(&a, 1, K, 0);
  ah_assert_ok(&b, K + 1, M, M);
  /* B was answered after A was sent, and soon: by the commit. */
  assert_true(b.t1 >= t_a);
  assert_true(b.t1 - t_a < 3000);
  tt_server_get_stats(e->srv, &s1);
  assert_int_equal(s1.intents_applied + s1.intents_merged -
                       s0.intents_applied - s0.intents_merged,
                   M);
  assert_int_equal(s1.intents_duplicate - s0.intents_duplicate, 0);
  assert_int_equal(s1.intents_rejected - s0.intents_rejected, 0);
  assert_int_equal(s1.intents_conflict - s0.intents_conflict, 0);
  assert_int_equal(ah_pulled_counter(e->url), M);

  /* The chain goes on from B's last intent. */
  char *c_body = ah_body(&r, 1, 0);
  ah_post c;
  ah_post_run(&c, e->url, c_body);
  ah_assert_ok(&c, M + 1, M + 1, M + 1);
  assert_int_equal(ah_pulled_counter(e->url), M + 1);
  free(c.resp.body);
  free(c_body);

  free(a.resp.body);
  free(b.resp.body);
  free(a_body);
  free(b_body);
  tt_http_server_stop(h);
}

/* After B (intents K+1..M) was refused as a gap: nothing of it was
 * applied, and the replica's pushes go on as if B had never come: A
 * (1..K), then B again, both 200, through BASE. Frees both bodies and
 * B's answer. */
static void ah_gap_left_nothing(const env *e, const tt_server_stats *s0,
                                const char *base, ah_post *b, char *a_body,
                                char *b_body, uint64_t K, uint64_t M) {
  tt_server_stats s1;
  tt_server_get_stats(e->srv, &s1);
  assert_int_equal(s1.intents_applied + s1.intents_merged -
                       s0->intents_applied - s0->intents_merged,
                   0);
  assert_int_equal(ah_pulled_counter(e->url), -1);
  free(b->resp.body);
  ah_post a;
  ah_post_run(&a, base, a_body);
  ah_assert_ok(&a, 1, K, K);
  ah_post_run(b, base, b_body);
  ah_assert_ok(b, K + 1, M, M);
  assert_true(b->t1 - b->t0 < 1000); /* no gap: not held */
  assert_int_equal(ah_pulled_counter(e->url), (long long)M);
  free(a.resp.body);
  free(b->resp.body);
  free(a_body);
  free(b_body);
}

/* A push sent ahead whose predecessor never comes is held for
 * ahead_wait_ms, then answered 409 gap, and changed nothing. */
static void test_ahead_wait_times_out(void **state) {
  env *e = *state;
  enum { K = 3, M = 7, WAIT = 300 };
  tt_http_server *h = NULL;
  char base[64];
  ah_server(e, WAIT, &h, base, sizeof base);
  ah_rep r;
  ah_rep_init(&r, 0x22);
  char *a_body = ah_body(&r, K, 0);
  char *b_body = ah_body(&r, M - K, 1);
  tt_server_stats s0;
  tt_server_get_stats(e->srv, &s0);

  ah_post b;
  ah_post_run(&b, base, b_body);
  ah_assert_gap(&b, 1);
  uint64_t took = b.t1 - b.t0;
  if (took < WAIT - 20 || took >= 1500)
    print_error("gap answered after %llu ms\n", (unsigned long long)took);
  assert_true(took >= WAIT - 20); /* held for its wait */
  assert_true(took < 1500);       /* the option, not the 2000 ms default */
  ah_gap_left_nothing(e, &s0, base, &b, a_body, b_body, K, M);
  tt_http_server_stop(h);
}

/* Without "ahead" a gap is answered at once, however long a push sent
 * ahead would be held. */
static void test_ahead_same_without_flag(void **state) {
  env *e = *state;
  enum { K = 2, M = 5, WAIT = 5000 };
  tt_http_server *h = NULL;
  char base[64];
  ah_server(e, WAIT, &h, base, sizeof base);
  ah_rep r;
  ah_rep_init(&r, 0x33);
  char *a_body = ah_body(&r, K, 0);
  char *b_body = ah_body(&r, M - K, 0);
  tt_server_stats s0;
  tt_server_get_stats(e->srv, &s0);

  ah_post b;
  ah_post_run(&b, base, b_body);
  ah_assert_gap(&b, 1);
  if (b.t1 - b.t0 >= 1000)
    print_error("gap answered after %llu ms\n",
                (unsigned long long)(b.t1 - b.t0));
  assert_true(b.t1 - b.t0 < 1000);
  ah_gap_left_nothing(e, &s0, base, &b, a_body, b_body, K, M);
  tt_http_server_stop(h);
}

/* A fault hook that holds the committer inside its next group commit
 * (at "push:before-commit") until released: pushes sent meanwhile queue
 * up and go into the following group commit together, in arrival order. */
typedef struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int armed, inside, released;
} ah_gate;

static int ah_gate_hook(void *ctx, const char *point) {
  ah_gate *g = ctx;
  if (strcmp(point, "push:before-commit") != 0)
    return 0;
  pthread_mutex_lock(&g->mu);
  if (g->armed) {
    g->armed = 0;
    g->inside = 1;
    pthread_cond_broadcast(&g->cv);
    while (!g->released)
      pthread_cond_wait(&g->cv, &g->mu);
  }
  pthread_mutex_unlock(&g->mu);
  return 0;
}

/* Waits until the server has received NBYTES more request body bytes
 * than REQ0, then a moment for the handler to queue the push. */
static void ah_wait_received(tt_http_server *h, uint64_t req0,
                             size_t nbytes) {
  uint64_t until = mono_ms() + 10000, req = 0;
  for (;;) {
    tt_http_server_bytes(h, &req, NULL);
    if (req >= req0 + nbytes)
      break;
    if (mono_ms() > until)
      fail_msg("the server never received the push");
    ah_sleep_ms(5);
  }
  ah_sleep_ms(150);
}

/* Push B (sent ahead) and push A it follows arrive in that order while
 * the committer is busy, so both go into one group commit with B first:
 * B finds the gap (A is checked after it) and is parked, A commits, and
 * the committer runs B again at once because that commit answered a push
 * 200 — not when B's wait runs out. */
static void test_ahead_retried_after_commit(void **state) {
  (void)state;
  enum { K = 2, M = 5 };
  ah_gate g = {.armed = 0};
  pthread_mutex_init(&g.mu, NULL);
  pthread_cond_init(&g.cv, NULL);
  char dir[64] = "/tmp/tt_netah_XXXXXX", err[256];
  assert_non_null(mkdtemp(dir));
  tt_store *st = NULL;
  tt_policy_table *pol = NULL;
  tt_server *srv = NULL;
  tt_store_opts so = {.no_sync = 1};
  assert_int_equal(tt_store_open_lmdb(dir, &so, &st, err, sizeof err), 0);
  assert_int_equal(tt_policy_parse(NULL, 0, &pol, err, sizeof err), 0);
  tt_server_opts o = {.fault = ah_gate_hook, .fault_ctx = &g};
  assert_int_equal(tt_server_open(st, pol, &o, &srv, err, sizeof err), 0);
  tt_http_server *h = NULL;
  char base[64];
  {
    env tmp = {.srv = srv};
    ah_server(&tmp, 30000, &h, base, sizeof base);
  }

  /* X, of another replica, holds the committer. */
  ah_rep rx, r;
  ah_rep_init(&rx, 0x55);
  ah_rep_init(&r, 0x66);
  char *x_body = ah_body(&rx, 1, 0);
  char *a_body = ah_body(&r, K, 0);
  char *b_body = ah_body(&r, M - K, 1);
  pthread_mutex_lock(&g.mu);
  g.armed = 1;
  pthread_mutex_unlock(&g.mu);
  ah_post x, a, b;
  pthread_t tx, ta, tb;
  ah_post_start(&x, &tx, base, x_body);
  pthread_mutex_lock(&g.mu);
  while (!g.inside)
    pthread_cond_wait(&g.cv, &g.mu);
  pthread_mutex_unlock(&g.mu);
  tt_server_stats s0, s1;
  tt_server_get_stats(srv, &s0);
  uint64_t req0 = 0;
  tt_http_server_bytes(h, &req0, NULL);
  ah_post_start(&b, &tb, base, b_body);
  ah_wait_received(h, req0, strlen(b_body));
  tt_http_server_bytes(h, &req0, NULL);
  ah_post_start(&a, &ta, base, a_body);
  ah_wait_received(h, req0, strlen(a_body));
  assert_false(atomic_load(&b.done));
  assert_false(atomic_load(&a.done));

  uint64_t t0 = mono_ms();
  pthread_mutex_lock(&g.mu);
  g.released = 1;
  pthread_cond_broadcast(&g.cv);
  pthread_mutex_unlock(&g.mu);
  pthread_join(tx, NULL);
  pthread_join(ta, NULL);
  pthread_join(tb, NULL);

  ah_assert_ok(&x, 1, 1, 1);
  ah_assert_ok(&a, 1, K, K);
  ah_assert_ok(&b, K + 1, M, M);
  assert_true(b.t1 - t0 < 3000); /* run again at once, not after 30 s */
  /* The group commits after X's: [B, A] (B deferred), then [B] again. X's
   * own count was taken before its commit ended. */
  tt_server_get_stats(srv, &s1);
  if (s1.pushes - s0.pushes != 1 + 2 || s1.pushes_held - s0.pushes_held != 1)
    print_error("pushes answered after X: %llu, held: %llu\n",
                (unsigned long long)(s1.pushes - s0.pushes),
                (unsigned long long)(s1.pushes_held - s0.pushes_held));
  assert_int_equal(s1.pushes - s0.pushes, 1 + 2); /* X, A, B */
  assert_int_equal(s1.pushes_held - s0.pushes_held, 1);
  assert_int_equal(ah_pulled_counter(base), M);

  tt_http_server_stop(h);
  tt_server_close(srv);
  tt_store_close(st);
  tt_policy_free(pol);
  nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
  pthread_cond_destroy(&g.cv);
  pthread_mutex_destroy(&g.mu);
  free(x.resp.body);
  free(a.resp.body);
  free(b.resp.body);
  free(x_body);
  free(a_body);
  free(b_body);
}

static void *ah_stop_main(void *p) {
  tt_http_server_stop(p);
  return NULL;
}

/* Stopping the server ends a held push at once instead of after its wait,
 * and the stop returns: the push is answered 409 gap (counted as a bad
 * request; nothing of it applied), and that answer reaches the client
 * before the connection closes (tt_http_server_stop waits for the answers
 * under way before MHD_stop_daemon, which would drop them). */
static void test_stop_with_parked_push(void **state) {
  env *e = *state;
  enum { K = 2, M = 6, WAIT = 60000 };
  tt_http_server *h = NULL;
  char base[64];
  ah_server(e, WAIT, &h, base, sizeof base);
  ah_rep r;
  ah_rep_init(&r, 0x44);
  char *a_body = ah_body(&r, K, 0);
  char *b_body = ah_body(&r, M - K, 1);
  tt_server_stats s0;
  tt_server_get_stats(e->srv, &s0);

  ah_post b;
  pthread_t tb, ts;
  ah_post_start(&b, &tb, base, b_body);
  ah_wait_parked(e->srv, &s0, &b);
  uint64_t t0 = mono_ms();
  assert_int_equal(pthread_create(&ts, NULL, ah_stop_main, h), 0);
  struct timespec at;
  clock_gettime(CLOCK_REALTIME, &at);
  at.tv_sec += 10;
  int jrc = pthread_timedjoin_np(ts, NULL, &at);
  if (jrc != 0)
    fail_msg("tt_http_server_stop still running after 10 s with a push "
             "held");
  uint64_t stop_ms = mono_ms() - t0;
  pthread_join(tb, NULL);
  uint64_t answer_ms = b.t1 - t0;
  if (stop_ms >= 3000 || answer_ms >= 3000)
    print_error("stop took %llu ms, answer %llu ms\n",
                (unsigned long long)stop_ms, (unsigned long long)answer_ms);
  assert_true(stop_ms < 3000);
  assert_true(answer_ms < 3000);
  if (b.res != CURLE_OK)
    print_error("held push on stop: curl %d (%s)\n", (int)b.res,
                curl_easy_strerror(b.res));
  assert_int_equal(b.res, CURLE_OK);
  ah_assert_gap(&b, 1);
  /* Answered as a gap, and nothing applied: it was not left parked, nor
   * run as if the gap were not there. The reconciler is untouched: A,
   * then B again, commit through the fixture's server. */
  tt_server_stats s1;
  tt_server_get_stats(e->srv, &s1);
  assert_int_equal(s1.bad_requests - s0.bad_requests, 1);
  ah_gap_left_nothing(e, &s0, e->url, &b, a_body, b_body, K, M);
}

/* A body sent chunked (no Content-Length), from memory. */
typedef struct {
  const char *p;
  size_t left;
} chunk_src;

static size_t chunk_read(char *buf, size_t size, size_t n, void *ud) {
  chunk_src *s = ud;
  size_t k = size * n < 4096 ? size * n : 4096;
  if (k > s->left)
    k = s->left;
  memcpy(buf, s->p, k);
  s->p += k;
  s->left -= k;
  return k;
}

static long chunked_post(const char *url, const char *body, size_t len,
                         raw_resp *out) {
  memset(out, 0, sizeof *out);
  CURL *c = curl_easy_init();
  assert_non_null(c);
  struct curl_slist *h = NULL;
  h = curl_slist_append(h, "Transfer-Encoding: chunked");
  h = curl_slist_append(h, "Expect:");
  chunk_src src = {body, len};
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_POST, 1L);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_READFUNCTION, chunk_read);
  curl_easy_setopt(c, CURLOPT_READDATA, &src);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, raw_write);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, raw_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, out);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 20000L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  long status = 0;
  if (curl_easy_perform(c) == CURLE_OK)
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  return status;
}

/* Request bodies buffered at once are bounded over all connections: past
 * the budget a request is 503 busy with Retry-After (whether its
 * Content-Length says so up front, its chunked body grows past it, or its
 * zstd body would decode past it), nothing is held afterwards, and the
 * server goes on. The connection limit never passes LMDB's 1024 reader
 * slots. */
static void test_buffer_budget(void **state) {
  env *e = *state;
  const size_t budget = 256u << 10;
  tt_http_server_opts ho = {.host = "127.0.0.1", .max_body = MAX_BODY,
                            .max_buffered = budget, .max_conns = 5000};
  tt_http_server *h = NULL;
  char err[256];
  assert_int_equal(tt_http_server_start(e->srv, &ho, &h, err, sizeof err), 0);
  assert_int_equal(tt_http_server_max_conns(h), 1000);
  assert_int_equal(tt_http_server_max_conns(e->http), 1000);
  char base[64], url[128];
  snprintf(base, sizeof base, "http://127.0.0.1:%u",
           (unsigned)tt_http_server_port(h));
  snprintf(url, sizeof url, "%s/v1/pull", base);

  /* Under max_body (1 MiB) but over the budget. */
  size_t big = 512u << 10;
  char *blob = malloc(big);
  assert_non_null(blob);
  memset(blob, ' ', big);
  blob[0] = '{';
  blob[big - 1] = '}';
  raw_resp r;
  assert_int_equal(raw_post(url, blob, big, NULL, 0, &r), 503);
  assert_error_body(&r, "busy");
  assert_string_equal(r.retry_after, "1");
  free(r.body);
  assert_int_equal(chunked_post(url, blob, big, &r), 503);
  assert_error_body(&r, "busy");
  assert_string_equal(r.retry_after, "1");
  free(r.body);
  /* Small on the wire, over the budget once decoded. */
  char *z = NULL;
  size_t zlen = 0;
  assert_int_equal(tt_codec_compress(blob, big, &z, &zlen), 0);
  assert_true(zlen < budget / 4);
  assert_int_equal(raw_post(url, z, zlen, "zstd", 0, &r), 503);
  assert_error_body(&r, "busy");
  free(r.body);
  free(z);
  free(blob);
  assert_int_equal(tt_http_server_buffered(h), 0);

  /* Requests that fit are served as before, and give their share back. */
  const char pull[] = "{\"v\":1,\"replica\":\"00112233445566778899aabbccddeeff\","
                      "\"cursor\":[]}";
  assert_int_equal(raw_post(url, pull, strlen(pull), NULL, 0, &r), 200);
  free(r.body);
  assert_int_equal(tt_codec_compress(pull, strlen(pull), &z, &zlen), 0);
  assert_int_equal(raw_post(url, z, zlen, "zstd", 0, &r), 200);
  free(r.body);
  free(z);
  assert_int_equal(chunked_post(url, pull, strlen(pull), &r), 200);
  free(r.body);
  assert_int_equal(tt_http_server_buffered(h), 0);
  assert_healthy(base);
  tt_http_server_stop(h);
}

/* A client pointed at a port nobody listens on. */
static void test_client_unreachable(void **state) {
  (void)state;
  tt_http_client_opts o = {.retries = 2, .backoff_ms = 20};
  tt_http_client *c = NULL;
  assert_int_equal(tt_http_client_new("http://127.0.0.1:1", &o, &c), 0);
  json_t *body = json_pack("{s:i}", "v", 1);
  int status = -1;
  json_t *resp = (json_t *)1;
  char err[256] = "";
  uint64_t t0 = mono_ms();
  assert_int_equal(
      tt_http_post(c, "/v1/push", body, &status, &resp, err, sizeof err),
      TETHER_EUNREACHABLE);
  assert_true(mono_ms() - t0 >= 20); /* it did back off and retry */
  assert_null(resp);
  assert_non_null(strstr(err, "http://127.0.0.1:1/v1/push"));
  json_decref(body);
  tt_http_client_free(c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_health_and_routing, env_setup,
                                      env_teardown),
      cmocka_unit_test_setup_teardown(test_bad_requests, env_setup,
                                      env_teardown),
      cmocka_unit_test_setup_teardown(test_metrics, env_setup, env_teardown),
      cmocka_unit_test_setup_teardown(test_sync_and_zstd_answers, env_setup,
                                      env_teardown),
      cmocka_unit_test_setup_teardown(test_concurrent_pushes, env_setup,
                                      env_teardown),
      cmocka_unit_test_setup_teardown(test_long_poll_many, env_setup,
                                      env_teardown),
      cmocka_unit_test_setup_teardown(test_long_poll_times_out, env_setup,
                                      env_teardown),
      cmocka_unit_test_setup_teardown(test_buffer_budget, env_setup,
                                      env_teardown),
      cmocka_unit_test(test_stop_with_waiters),
      cmocka_unit_test_setup_teardown(test_ahead_parked_then_committed,
                                      env_setup, env_teardown),
      cmocka_unit_test_setup_teardown(test_ahead_wait_times_out, env_setup,
                                      env_teardown),
      cmocka_unit_test_setup_teardown(test_ahead_same_without_flag,
                                      env_setup, env_teardown),
      cmocka_unit_test_setup_teardown(test_stop_with_parked_push, env_setup,
                                      env_teardown),
      cmocka_unit_test(test_ahead_retried_after_commit),
      cmocka_unit_test(test_client_unreachable),
  };
  curl_global_init(CURL_GLOBAL_ALL);
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  curl_global_cleanup();
  return rc;
}
