/* api_sync.c — the public API end to end, in one process: an embedded
 * server (tether_server_start on port 0 in a temp dir) and replicas driven
 * through tether.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tether.h"
#include "tether_server.h"

typedef struct {
  char root[64];
  char data[96];
  char url[64];
  uint16_t port;
  tether_server *srv;
} env;

static int rm_one(const char *p, const struct stat *sb, int flag,
                  struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(p);
}

static void start_server(env *e, uint16_t port) {
  tether_server_opts o = {.data_dir = e->data, .host = "127.0.0.1",
                          .port = port};
  char err[256] = "";
  int rc = tether_server_start(&e->srv, &o, err, sizeof err);
  if (rc)
    print_error("server start: %s\n", err);
  assert_int_equal(rc, 0);
  e->port = tether_server_port(e->srv);
  assert_true(e->port != 0);
  snprintf(e->url, sizeof e->url, "http://127.0.0.1:%u", (unsigned)e->port);
}

static int setup(void **state) {
  env *e = calloc(1, sizeof *e);
  assert_non_null(e);
  strcpy(e->root, "/tmp/tt_api_XXXXXX");
  assert_non_null(mkdtemp(e->root));
  snprintf(e->data, sizeof e->data, "%s/server", e->root);
  start_server(e, 0);
  *state = e;
  return 0;
}

static int teardown(void **state) {
  env *e = *state;
  tether_server_stop(e->srv);
  nftw(e->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
  free(e);
  return 0;
}

static tether *new_replica(env *e, const char *name) {
  char dir[128];
  snprintf(dir, sizeof dir, "%s/%s", e->root, name);
  assert_int_equal(tether_init(dir, e->url), 0);
  tether *t = NULL;
  assert_int_equal(tether_open(&t, dir), 0);
  assert_non_null(t);
  assert_int_equal(strlen(tether_replica_id(t)), 32);
  assert_string_equal(tether_server_url(t), e->url);
  return t;
}

static void assert_doc(tether *t, const char *coll, const char *id,
                       const char *want) {
  char *got = NULL;
  int rc = tether_get(t, coll, id, &got);
  if (rc)
    print_error("get %s/%s: %s\n", coll, id, tether_strerror(rc));
  assert_int_equal(rc, 0);
  assert_string_equal(got, want);
  tether_free(got);
}

static int sync_ok(tether *t) {
  int rc = tether_sync(t, NULL);
  if (rc)
    print_error("sync: %s: %s\n", tether_strerror(rc), tether_last_error(t));
  return rc;
}

static void assert_status(tether *t, const char *coll, const char *id,
                          tether_doc_status want) {
  tether_doc_status s;
  assert_int_equal(tether_status(t, coll, id, &s), 0);
  assert_string_equal(tether_status_name(s), tether_status_name(want));
}

typedef struct {
  int calls;
  uint64_t last_push_done, push_total, pulled;
} prog;

static void on_progress(void *ctx, const tether_progress *p) {
  prog *g = ctx;
  g->calls++;
  if (strcmp(p->phase, "push") == 0) {
    g->last_push_done = p->done;
    g->push_total = p->total;
  } else {
    assert_string_equal(p->phase, "pull");
    g->pulled = p->done;
  }
}

static void test_different_fields_converge(void **state) {
  env *e = *state;
  tether *a = new_replica(e, "a");
  tether *b = new_replica(e, "b");
  assert_string_not_equal(tether_replica_id(a), tether_replica_id(b));

  assert_int_equal(tether_put(a, "notes", "n1", "{\"title\":\"A\",\"body\":\"x\"}"),
                   0);
  assert_status(a, "notes", "n1", TETHER_PENDING);
  prog g = {0};
  tether_sync_opts so = {.progress = on_progress, .progress_ctx = &g};
  assert_int_equal(tether_sync(a, &so), 0);
  assert_true(g.calls >= 2);
  assert_int_equal(g.push_total, 1);
  assert_int_equal(g.last_push_done, 1);
  assert_status(a, "notes", "n1", TETHER_SYNCED);

  assert_int_equal(sync_ok(b), 0);
  assert_doc(b, "notes", "n1", "{\"body\":\"x\",\"title\":\"A\"}");

  /* Offline edits of different fields on both sides. */
  assert_int_equal(tether_set(a, "notes", "n1", "title", "\"B\""), 0);
  assert_int_equal(tether_set(b, "notes", "n1", "body", "\"y\""), 0);
  assert_int_equal(tether_incr(a, "notes", "n1", "views", 2), 0);
  assert_int_equal(tether_incr(b, "notes", "n1", "views", 3), 0);
  assert_doc(a, "notes", "n1", "{\"body\":\"x\",\"title\":\"B\",\"views\":2}");
  assert_int_equal(sync_ok(a), 0);
  assert_int_equal(sync_ok(b), 0);
  assert_int_equal(sync_ok(a), 0);
  const char *want = "{\"body\":\"y\",\"title\":\"B\",\"views\":5}";
  assert_doc(a, "notes", "n1", want);
  assert_doc(b, "notes", "n1", want);
  assert_status(a, "notes", "n1", TETHER_SYNCED);
  assert_status(b, "notes", "n1", TETHER_SYNCED);

  tether_stats st;
  assert_int_equal(tether_get_stats(b, &st), 0);
  assert_int_equal(st.pending_intents, 0);
  assert_int_equal(st.conflicts, 0);
  assert_int_equal(st.documents, 1);

  /* A delete travels too. */
  assert_int_equal(tether_delete(b, "notes", "n1"), 0);
  assert_int_equal(sync_ok(b), 0);
  assert_int_equal(sync_ok(a), 0);
  char *got = (char *)1;
  assert_int_equal(tether_get(a, "notes", "n1", &got), TETHER_ENOTFOUND);
  assert_null(got);
  tether_close(a);
  tether_close(b);
}

static void test_unreachable_keeps_local_data(void **state) {
  env *e = *state;
  tether *a = new_replica(e, "a");
  assert_int_equal(tether_put(a, "notes", "n1", "{\"title\":\"A\"}"), 0);
  assert_int_equal(sync_ok(a), 0);

  tether_server_stop(e->srv);
  e->srv = NULL;

  assert_int_equal(tether_set(a, "notes", "n1", "title", "\"offline\""), 0);
  char *before = NULL;
  assert_int_equal(tether_outbox_peek(a, &before), 0);
  assert_non_null(strstr(before, "\"intents\":["));

  tether_sync_opts so = {.timeout_ms = 2000, .retries = 1};
  assert_int_equal(tether_sync(a, &so), TETHER_EUNREACHABLE);
  assert_non_null(strstr(tether_last_error(a), e->url));
  /* Nothing changed locally. */
  assert_doc(a, "notes", "n1", "{\"title\":\"offline\"}");
  assert_status(a, "notes", "n1", TETHER_PENDING);
  char *after = NULL;
  assert_int_equal(tether_outbox_peek(a, &after), 0);
  assert_string_equal(before, after);
  tether_free(before);
  tether_free(after);
  tether_stats st;
  assert_int_equal(tether_get_stats(a, &st), 0);
  assert_int_equal(st.pending_intents, 1);

  /* The server comes back on the same port and data: the kept outbox goes
   * through, and another replica sees it. */
  start_server(e, e->port);
  assert_int_equal(sync_ok(a), 0);
  assert_status(a, "notes", "n1", TETHER_SYNCED);
  char *none = (char *)1;
  assert_int_equal(tether_outbox_peek(a, &none), TETHER_ENOTFOUND);
  assert_null(none);
  tether *b = new_replica(e, "b");
  assert_int_equal(sync_ok(b), 0);
  assert_doc(b, "notes", "n1", "{\"title\":\"offline\"}");
  tether_close(a);
  tether_close(b);
}

typedef struct {
  int n;
  char first[256];
} collect;

static int collect_doc(void *ctx, const char *id, const char *json) {
  collect *c = ctx;
  if (c->n++ == 0)
    snprintf(c->first, sizeof c->first, "%s=%s", id, json);
  return 0;
}

static int collect_json(void *ctx, const char *json) {
  collect *c = ctx;
  if (c->n++ == 0)
    snprintf(c->first, sizeof c->first, "%s", json);
  return 0;
}

static void test_local_api(void **state) {
  env *e = *state;
  tether *a = new_replica(e, "a");
  /* Malformed JSON names the problem and its position. */
  assert_int_equal(tether_set(a, "c", "d", "f", "{bad"), TETHER_EJSON);
  assert_non_null(strstr(tether_last_error(a), "not valid JSON"));
  assert_non_null(strstr(tether_last_error(a), "column"));
  assert_int_equal(tether_put(a, "c", "d", "[1,2]"), TETHER_ETYPE);
  assert_int_equal(tether_put(a, "c", "d", ""), TETHER_EJSON);
  char *got = NULL;
  assert_int_equal(tether_get(a, "c", "d", &got), TETHER_ENOTFOUND);
  /* Scalars are values too (JSON_DECODE_ANY). */
  assert_int_equal(tether_set(a, "c", "d", "n", "42"), 0);
  assert_int_equal(tether_set(a, "c", "d", "s", "\"x\""), 0);
  assert_int_equal(tether_add(a, "c", "d", "tags", "\"red\""), 0);
  assert_int_equal(tether_add(a, "c", "d", "tags", "\"blue\""), 0);
  assert_int_equal(tether_remove(a, "c", "d", "tags", "\"red\""), 0);
  assert_int_equal(tether_unset(a, "c", "d", "s"), 0);
  assert_doc(a, "c", "d", "{\"n\":42,\"tags\":[\"blue\"]}");
  assert_int_equal(tether_incr(a, "c", "d", "tags", 1), TETHER_ETYPE);
  assert_int_equal(tether_put(a, "c", "b", "{}"), 0);

  collect c = {0};
  assert_int_equal(tether_list(a, "c", collect_doc, &c), 0);
  assert_int_equal(c.n, 2);
  assert_string_equal(c.first, "b={}");

  char *ob = NULL;
  assert_int_equal(tether_outbox_peek(a, &ob), 0);
  assert_non_null(strstr(ob, tether_replica_id(a)));
  assert_int_equal(strncmp(ob, "{\"intents\":[", 12), 0);
  tether_free(ob);

  assert_int_equal(sync_ok(a), 0);
  collect oc = {0};
  assert_int_equal(tether_outcomes(a, collect_json, &oc), 0);
  assert_true(oc.n >= 7);
  assert_non_null(strstr(oc.first, "\"outcome\":\"applied\""));
  collect oc2 = {0};
  assert_int_equal(tether_outcomes(a, collect_json, &oc2), 0);
  assert_int_equal(oc2.n, 0); /* each outcome is shown once */
  collect cc = {0};
  assert_int_equal(tether_conflicts(a, collect_json, &cc), 0);
  assert_int_equal(cc.n, 0);
  assert_int_equal(tether_resolve(a, "c", "d", "n", "1"), TETHER_ENOTFOUND);
  tether_close(a);
}

/* A held conflict settled with the field absent (tether_resolve takes a
 * JSON value, and null is one). */
static void test_resolve_unset(void **state) {
  env *e = *state;
  char cfg[128], data[128], err[256];
  snprintf(cfg, sizeof cfg, "%s/manual.json", e->root);
  snprintf(data, sizeof data, "%s/manual-srv", e->root);
  FILE *f = fopen(cfg, "w");
  assert_non_null(f);
  fputs("{\"collections\":{\"notes\":{\"policy\":\"manual\"}}}", f);
  fclose(f);
  tether_server_stop(e->srv);
  tether_server_opts o = {.data_dir = data, .host = "127.0.0.1", .port = 0,
                          .config_path = cfg};
  e->srv = NULL;
  assert_int_equal(tether_server_start(&e->srv, &o, err, sizeof err), 0);
  snprintf(e->url, sizeof e->url, "http://127.0.0.1:%u",
           (unsigned)tether_server_port(e->srv));

  tether *a = new_replica(e, "ua");
  tether *b = new_replica(e, "ub");
  assert_int_equal(tether_put(a, "notes", "n1", "{\"t\":\"base\",\"n\":0}"),
                   0);
  assert_int_equal(sync_ok(a), 0);
  assert_int_equal(sync_ok(b), 0);
  assert_int_equal(tether_set(a, "notes", "n1", "t", "\"A\""), 0);
  assert_int_equal(tether_set(b, "notes", "n1", "t", "\"B\""), 0);
  assert_int_equal(sync_ok(a), 0);
  assert_int_equal(sync_ok(b), 0);
  assert_status(b, "notes", "n1", TETHER_CONFLICT);

  assert_int_equal(tether_resolve_unset(b, "notes", "n1", "n"),
                   TETHER_ENOTFOUND);
  assert_int_equal(tether_resolve_unset(b, "notes", "n1", NULL),
                   TETHER_EINVAL);
  assert_int_equal(tether_resolve_unset(NULL, "notes", "n1", "t"),
                   TETHER_EINVAL);
  assert_int_equal(tether_resolve_unset(b, "notes", "n1", "t"), 0);
  assert_doc(b, "notes", "n1", "{\"n\":0}");
  collect cc = {0};
  assert_int_equal(tether_conflicts(b, collect_json, &cc), 0);
  assert_int_equal(cc.n, 0);
  assert_int_equal(sync_ok(b), 0);
  assert_int_equal(sync_ok(a), 0);
  assert_doc(a, "notes", "n1", "{\"n\":0}");
  assert_doc(b, "notes", "n1", "{\"n\":0}");
  assert_status(b, "notes", "n1", TETHER_SYNCED);
  tether_close(a);
  tether_close(b);
}

static void test_lifecycle_errors(void **state) {
  env *e = *state;
  char dir[128];
  snprintf(dir, sizeof dir, "%s/r", e->root);
  assert_int_equal(tether_init(dir, e->url), 0);
  assert_int_equal(tether_init(dir, e->url), TETHER_EEXIST);
  assert_int_equal(tether_init(dir, "not a url"), TETHER_EINVAL);

  /* Opening a directory that is not a replica leaves it empty. */
  char empty[128];
  snprintf(empty, sizeof empty, "%s/empty", e->root);
  assert_int_equal(mkdir(empty, 0700), 0);
  tether *t = (tether *)1;
  assert_int_equal(tether_open(&t, empty), TETHER_ENOREPLICA);
  assert_null(t);
  DIR *d = opendir(empty);
  struct dirent *de;
  int files = 0;
  while ((de = readdir(d)) != NULL)
    if (de->d_name[0] != '.')
      files++;
  closedir(d);
  assert_int_equal(files, 0);
  snprintf(empty, sizeof empty, "%s/missing", e->root);
  assert_int_equal(tether_open(&t, empty), TETHER_ENOREPLICA);
  assert_int_equal(access(empty, F_OK), -1);
  tether_close(NULL);
  tether_free(NULL);
}

static void test_server_config_errors(void **state) {
  env *e = *state;
  char cfg[128], data[128], err[256];
  snprintf(cfg, sizeof cfg, "%s/policy.json", e->root);
  snprintf(data, sizeof data, "%s/srv2", e->root);
  FILE *f = fopen(cfg, "w");
  assert_non_null(f);
  fputs("{\"collections\":{\"notes\":{\"policy\":\"sometimes\"}}}", f);
  fclose(f);
  tether_server_opts o = {.data_dir = data, .port = 0, .config_path = cfg};
  tether_server *s = (tether_server *)1;
  int rc = tether_server_start(&s, &o, err, sizeof err);
  assert_true(rc == TETHER_ECONFIG || rc == TETHER_EJSON);
  assert_null(s);
  assert_non_null(strstr(err, cfg)); /* names the file */

  char missing[160];
  snprintf(missing, sizeof missing, "%s/nope.json", e->root);
  o.config_path = missing;
  assert_int_equal(tether_server_start(&s, &o, err, sizeof err),
                   TETHER_ECONFIG);
  assert_non_null(strstr(err, missing));

  /* A good config starts; a taken port does not. */
  f = fopen(cfg, "w");
  fputs("{\"collections\":{\"notes\":{\"policy\":\"manual\"}}}", f);
  fclose(f);
  o.config_path = cfg;
  assert_int_equal(tether_server_start(&s, &o, err, sizeof err), 0);
  tether_server_stop(s);
  char data3[128];
  snprintf(data3, sizeof data3, "%s/srv3", e->root);
  tether_server_opts o2 = {.data_dir = data3, .host = "127.0.0.1",
                           .port = e->port};
  assert_true(tether_server_start(&s, &o2, err, sizeof err) != 0);
  assert_null(s);
  assert_true(strlen(err) > 0);
  tether_server_stop(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_different_fields_converge, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_unreachable_keeps_local_data, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_local_api, setup, teardown),
      cmocka_unit_test_setup_teardown(test_resolve_unset, setup, teardown),
      cmocka_unit_test_setup_teardown(test_lifecycle_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_server_config_errors, setup,
                                      teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
