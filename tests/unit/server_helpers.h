/* server_helpers.h — shared by tests/unit/server_*.c: a server on a real
 * store, and replicas that make valid chained intents (hashes computed by
 * core/). Included after the cmocka headers.
 *
 * The store is LMDB in a temporary directory, or, when the environment
 * variable TETHER_TEST_STORE_URL is set (tests/redis/test_server_redis.sh
 * sets it), the Redis at that URL: redis://HOST:PORT (one server) or
 * redis-cluster://HOST:PORT[,...] (a cluster). On Redis the keyspace is
 * flushed (FLUSHALL on the server, or on every master of the cluster) when
 * a test opens its first environment, and an environment opened while
 * another is open gets a store of its own in the next database number
 * (redis://HOST:PORT/1, ...), as a second LMDB directory would be; a
 * cluster has only one database, so a test needing two independent stores
 * skips there (th_skip_unless). */
#ifndef TT_TESTS_SERVER_HELPERS_H
#define TT_TESTS_SERVER_HELPERS_H

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/intent.h"
#include "core/policy.h"
#include "core/util.h"
#include "server/server.h"
#include "store/store.h"

#define TH_UNUSED __attribute__((unused))
#define TH_NOW 1700000000000ull /* ms; the server's "now" in tests */

typedef struct {
  char dir[64];
  tt_store *st;
  tt_policy_table *pol;
  tt_server *srv;
  tt_server_opts opts;
  char *config;
  uint64_t map_size; /* 0 = the store's default */
  char url[320];     /* the Redis store of this environment; "" = LMDB */
} th_env;

/* Environments open on Redis now: the next one's database number. */
static int th_redis_envs __attribute__((unused));

/* TETHER_TEST_STORE_URL, or NULL when the tests run on LMDB. */
TH_UNUSED static const char *th_store_url(void) {
  const char *u = getenv("TETHER_TEST_STORE_URL");
  return u && u[0] ? u : NULL;
}

/* "lmdb", "redis" or "redis-cluster": the backend of this run. */
TH_UNUSED static const char *th_backend(void) {
  const char *u = th_store_url();
  if (!u)
    return "lmdb";
  return strncmp(u, "redis-cluster://", 16) ? "redis" : "redis-cluster";
}

/* Ends the current test as skipped, saying why, unless COND. */
#define th_skip_unless(cond, why)                                              \
  do {                                                                         \
    if (!(cond)) {                                                             \
      print_message("[   SKIP   ] on %s: %s\n", th_backend(), (why));          \
      skip();                                                                  \
    }                                                                          \
  } while (0)

/* HOST:PORT at *P (up to ',' '/' or the end) into HOST/PORT; *P moves past
 * it. Test URLs only: no password, no IPv6. */
TH_UNUSED static void th_hostport(const char **p, char *host, size_t hl,
                                  int *port) {
  size_t n = strcspn(*p, ":,/");
  if (n == 0 || n >= hl || (*p)[n] != ':')
    fail_msg("TETHER_TEST_STORE_URL: HOST:PORT expected at \"%s\"", *p);
  memcpy(host, *p, n);
  host[n] = '\0';
  *port = atoi(*p + n + 1);
  *p += n + 1 + strcspn(*p + n + 1, ",/");
}

TH_UNUSED static void th_redis_cmd(const char *host, int port,
                                   const char *cmd, redisReply **out) {
  struct timeval tv = {10, 0};
  redisContext *c = redisConnectWithTimeout(host, port, tv);
  redisReply *r;
  if (!c || c->err)
    fail_msg("redis %s:%d: %s", host, port, c ? c->errstr : "no memory");
  r = redisCommand(c, cmd);
  if (!r || r->type == REDIS_REPLY_ERROR)
    fail_msg("redis %s:%d: %s: %s", host, port, cmd,
             r ? r->str : c->errstr);
  redisFree(c);
  if (out)
    *out = r;
  else
    freeReplyObject(r);
}

/* Empties every database of the Redis at URL: the server, or every master
 * of the cluster (found with CLUSTER NODES from the first seed). */
TH_UNUSED static void th_redis_flush(const char *url) {
  char host[256];
  int port;
  const char *p = strstr(url, "://") + 3;
  redisReply *r;
  th_hostport(&p, host, sizeof host, &port);
  if (strcmp(th_backend(), "redis-cluster")) {
    th_redis_cmd(host, port, "FLUSHALL", NULL);
    return;
  }
  th_redis_cmd(host, port, "CLUSTER NODES", &r);
  /* one node a line: ID HOST:PORT@BUS FLAGS ... */
  for (const char *l = r->str; l && *l;) {
    const char *e = strchr(l, '\n'), *a = strchr(l, ' ');
    char line[512], nh[256];
    int np;
    size_t n = e ? (size_t)(e - l) : strlen(l);
    if (a && n < sizeof line) {
      memcpy(line, l, n);
      line[n] = '\0';
      if (strstr(line, " master") || strstr(line, ",master")) {
        const char *q = line + (a - l) + 1;
        th_hostport(&q, nh, sizeof nh, &np);
        th_redis_cmd(nh, np, "FLUSHALL", NULL);
      }
    }
    l = e ? e + 1 : NULL;
  }
  freeReplyObject(r);
}

TH_UNUSED static void th_open_server(th_env *e) {
  char err[256] = "";
  tt_store_opts so = {.no_sync = 1, .map_size = e->map_size};
  const char *url = th_store_url();
  int rc;
  if (url && !e->url[0]) { /* first open of this environment */
    if (th_redis_envs == 0)
      th_redis_flush(url);
    else if (!strcmp(th_backend(), "redis-cluster"))
      fail_msg("a cluster has one database: a test with two stores must "
               "th_skip_unless(strcmp(th_backend(), \"redis-cluster\"))");
    if (!strstr(url, "://"))
      fail_msg("TETHER_TEST_STORE_URL=%s: redis://HOST:PORT or "
               "redis-cluster://HOST:PORT[,...] expected", url);
    if (th_redis_envs == 0)
      snprintf(e->url, sizeof e->url, "%s", url);
    else if (strchr(strstr(url, "://") + 3, '/'))
      fail_msg("TETHER_TEST_STORE_URL=%s: a second store needs the next "
               "database; give the URL without /DB", url);
    else
      snprintf(e->url, sizeof e->url, "%s/%d", url, th_redis_envs);
    th_redis_envs++;
  }
  if (e->url[0])
    rc = tt_store_open_redis(e->url, &so, &e->st, err, sizeof err);
  else
    rc = tt_store_open_lmdb(e->dir, &so, &e->st, err, sizeof err);
  if (rc)
    fail_msg("store open: %s", err);
  rc = tt_policy_parse(e->config, e->config ? strlen(e->config) : 0, &e->pol,
                       err, sizeof err);
  if (rc)
    fail_msg("policy: %s", err);
  rc = tt_server_open(e->st, e->pol, &e->opts, &e->srv, err, sizeof err);
  if (rc)
    fail_msg("server open: %s", err);
}

TH_UNUSED static void th_close_server(th_env *e) {
  tt_server_close(e->srv);
  e->srv = NULL;
  tt_policy_free(e->pol);
  e->pol = NULL;
  tt_store_close(e->st);
  e->st = NULL;
}

/* CONFIG: policy JSON or NULL; PARTS: partitions (0 = 1). */
TH_UNUSED static th_env *th_env_new(const char *config, unsigned parts,
                                    size_t pull_limit) {
  th_env *e = calloc(1, sizeof *e);
  assert_non_null(e);
  strcpy(e->dir, "/tmp/tt_server_XXXXXX");
  assert_non_null(mkdtemp(e->dir));
  e->config = config ? strdup(config) : NULL;
  e->opts.partitions = parts;
  e->opts.pull_limit = pull_limit;
  th_open_server(e);
  return e;
}

TH_UNUSED static void th_env_free(th_env *e) {
  char cmd[128];
  if (!e)
    return;
  th_close_server(e);
  if (e->url[0])
    th_redis_envs--;
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", e->dir);
  assert_int_equal(system(cmd), 0);
  free(e->config);
  free(e);
}

TH_UNUSED static void th_reopen(th_env *e) {
  th_close_server(e);
  th_open_server(e);
}

typedef struct {
  uint8_t id[TT_ID_LEN];
  char hex[2 * TT_ID_LEN + 1];
  uint64_t seq; /* last seq made */
  uint8_t last[TT_HASH_LEN];
  uint8_t prev_last[TT_HASH_LEN]; /* last before the latest intent */
} th_rep;

TH_UNUSED static void th_rep_init(th_rep *r, uint8_t fill) {
  memset(r, 0, sizeof *r);
  memset(r->id, fill, TT_ID_LEN);
  r->id[0] = 0xa0;
  tt_hex_encode(r->id, TT_ID_LEN, r->hex);
}

/* The next intent of R as wire JSON (with a correct hash chained on R's
 * previous one). OPS is the JSON text of the "ops" array. */
TH_UNUSED static json_t *th_intent(th_rep *r, uint64_t hlc, const char *coll,
                                   const char *id, uint64_t base,
                                   const char *ops) {
  char prev[2 * TT_HASH_LEN + 1], err[256];
  json_error_t je;
  json_t *jops = json_loads(ops, 0, &je), *j, *out;
  tt_intent in;

  if (!jops)
    fail_msg("ops JSON: %s: %s", je.text, ops);
  tt_hex_encode(r->last, TT_HASH_LEN, prev);
  j = json_pack("{s:s,s:I,s:s,s:s,s:I,s:i,s:s,s:s,s:I,s:o}", "client",
                r->hex, "seq", (json_int_t)(r->seq + 1), "prev", prev, "hash",
                "0000000000000000000000000000000000000000000000000000000000000000",
                "hlc", (json_int_t)hlc, "schema", 0, "coll", coll, "id", id,
                "base", (json_int_t)base, "ops", jops);
  assert_non_null(j);
  if (tt_intent_from_json(j, &in, err, sizeof err))
    fail_msg("intent: %s", err);
  json_decref(j);
  assert_int_equal(tt_intent_compute_hash(&in, in.hash), 0);
  r->seq = in.seq;
  memcpy(r->prev_last, r->last, TT_HASH_LEN);
  memcpy(r->last, in.hash, TT_HASH_LEN);
  out = tt_intent_to_json(&in, 1);
  assert_non_null(out);
  tt_intent_clear(&in);
  return out;
}

/* {"v":1,"replica":R,"intents":[...]}; steals the intent references. */
TH_UNUSED static json_t *th_req(const th_rep *r, json_t **intents, size_t n) {
  json_t *arr = json_array();
  for (size_t i = 0; i < n; i++)
    assert_int_equal(json_array_append_new(arr, intents[i]), 0);
  return json_pack("{s:i,s:s,s:o}", "v", 1, "replica", r->hex, "intents",
                   arr);
}

/* One push job; returns the status, *resp the body (caller decrefs). */
TH_UNUSED static int th_push(th_env *e, const json_t *req, json_t **resp) {
  tt_push_job job = {.request = req};
  tt_server_push(e->srv, &job, 1, TH_NOW);
  assert_non_null(job.response);
  assert_non_null(json_object_get(job.response, "v"));
  *resp = job.response;
  return job.status;
}

/* Pushes one intent of R; returns the status and *outcome (a new reference
 * to outcomes[0], or NULL on an error status). */
TH_UNUSED static int th_push1(th_env *e, th_rep *r, json_t *intent,
                              json_t **outcome) {
  json_t *req = th_req(r, &intent, 1), *resp;
  int st = th_push(e, req, &resp);
  *outcome = NULL;
  if (st == 200) {
    *outcome = json_incref(json_array_get(json_object_get(resp, "outcomes"),
                                          0));
    assert_non_null(*outcome);
  }
  json_decref(resp);
  json_decref(req);
  return st;
}

TH_UNUSED static const char *th_str(const json_t *o, const char *k) {
  json_t *v = json_object_get(o, k);
  return json_is_string(v) ? json_string_value(v) : "";
}

TH_UNUSED static long long th_int(const json_t *o, const char *k) {
  json_t *v = json_object_get(o, k);
  return json_is_integer(v) ? json_integer_value(v) : -1;
}

/* Pull as replica HEX with CURSOR text ("[]" or "[3]"), RESUME text (NULL
 * = omit), LIMIT (0 = omit) and OWN (JSON text of "own", NULL = omit). */
TH_UNUSED static int th_pull_as(th_env *e, const char *hex, const char *cursor,
                                const char *resume, long long limit,
                                const char *own, json_t **resp) {
  json_t *req = json_pack("{s:i,s:s,s:o}", "v", 1, "replica", hex, "cursor",
                          json_loads(cursor, 0, NULL));
  int st = 0;
  assert_non_null(req);
  if (resume)
    json_object_set_new(req, "resume", json_loads(resume, 0, NULL));
  if (limit)
    json_object_set_new(req, "limit", json_integer(limit));
  if (own) {
    json_t *o = json_loads(own, JSON_DECODE_ANY, NULL);
    assert_non_null(o);
    json_object_set_new(req, "own", o);
  }
  assert_int_equal(tt_server_pull(e->srv, req, &st, resp), 0);
  assert_non_null(*resp);
  json_decref(req);
  return st;
}

/* Pull with CURSOR text, RESUME text (NULL = omit) and LIMIT (0 = omit). */
TH_UNUSED static int th_pull_r(th_env *e, const char *cursor,
                               const char *resume, long long limit,
                               json_t **resp) {
  return th_pull_as(e, "a0000000000000000000000000000000", cursor, resume,
                    limit, NULL, resp);
}

TH_UNUSED static int th_pull(th_env *e, const char *cursor, long long limit,
                             json_t **resp) {
  return th_pull_r(e, cursor, NULL, limit, resp);
}

/* *text: compact JSON of KEY in RESP, or NULL when absent (free()). */
TH_UNUSED static char *th_key_text(const json_t *resp, const char *key) {
  json_t *v = json_object_get(resp, key);
  return v ? json_dumps(v, JSON_COMPACT) : NULL;
}

/* The state of (coll, id) as a pull from [] (or the cursor given) sees it:
 * a new reference to the "set" object of its change, NULL if absent. */
TH_UNUSED static json_t *th_doc(th_env *e, const char *coll, const char *id) {
  json_t *resp, *found = NULL;
  char *cur = strdup("[]"), *res = NULL;
  size_t n = 0;
  int more = 1;

  while (more) {
    json_t *ch, *c;
    size_t i;
    assert_int_equal(th_pull_r(e, cur, res, 0, &resp), 200);
    ch = json_object_get(resp, "changes");
    json_array_foreach(ch, i, c) {
      if (!strcmp(th_str(c, "coll"), coll) && !strcmp(th_str(c, "id"), id)) {
        json_decref(found);
        found = json_object_get(c, "deleted")
                    ? NULL
                    : json_incref(json_object_get(c, "set"));
        if (!found && !json_object_get(c, "deleted"))
          found = json_object();
      }
    }
    more = json_is_true(json_object_get(resp, "more"));
    free(cur);
    free(res);
    cur = th_key_text(resp, "cursor");
    res = th_key_text(resp, "resume");
    assert_int_equal(more, res != NULL);
    json_decref(resp);
    assert_true(++n < 1000);
  }
  free(cur);
  free(res);
  return found;
}

/* Asserts canonical equality of V with the JSON text WANT. */
#define th_assert_json(v, want)                                                \
  do {                                                                         \
    json_t *w_ = json_loads((want), JSON_DECODE_ANY, NULL);                    \
    char *a_ = tt_canon(v), *b_ = tt_canon(w_);                                \
    if (!a_ || !b_ || strcmp(a_, b_))                                          \
      fail_msg("json: got %s, want %s", a_ ? a_ : "(null)",                    \
               b_ ? b_ : "(null)");                                            \
    free(a_);                                                                  \
    free(b_);                                                                  \
    json_decref(w_);                                                           \
  } while (0)

#endif
