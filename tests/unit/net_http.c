/* net_http.c — the HTTP server and client against a real reconciler on a
 * temporary LMDB store: endpoints, error bodies, limits, zstd both ways,
 * group-committed concurrent pushes, and long-poll with 100+ waiting
 * replicas. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <zstd.h>

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
  const char *names[] = {"tether_pushes_total ", "tether_pulls_total ",
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
  free(cursor);
  env_teardown(&st);
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
      cmocka_unit_test(test_client_unreachable),
  };
  curl_global_init(CURL_GLOBAL_ALL);
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  curl_global_cleanup();
  return rc;
}
