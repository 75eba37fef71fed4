/* tether.c — the app API (include/tether.h) over an LMDB replica. This is
 * where the wall clock and randomness enter: the layers below take them as
 * arguments. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "api/api_int.h"
#include "core/util.h"
#include "net/http_client.h"
#include "net/sync.h"
#include "replica/replica.h"
#include "store/store.h"
#include "tether.h"

/* Replica stores are sparse files; the map size only bounds growth. */
#define REPLICA_MAP_SIZE ((uint64_t)4 << 30)


static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;
static int sodium_rc = 0;
static void sodium_setup(void) { sodium_rc = sodium_init() < 0 ? -1 : 0; }

void tt_api_set_err(tether *t, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(t->err, sizeof t->err, fmt, ap);
  va_end(ap);
}

int tt_api_from_replica(tether *t, int rc) {
  if (rc != 0 && t->err[0] == '\0') {
    const char *why = tt_replica_last_error(t->r);
    if (why && why[0])
      tt_api_set_err(t, "%s", why);
  }
  return rc;
}

/* Parses a JSON argument. WHAT names it in the error ("document", "value",
 * "element"). MUST_BE_OBJECT for whole documents. */
static int parse_arg(tether *t, const char *text, const char *what,
                     int must_be_object, json_t **out) {
  json_error_t e;
  *out = NULL;
  if (text == NULL) {
    tt_api_set_err(t, "%s: no JSON given", what);
    return TETHER_EINVAL;
  }
  json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &e);
  if (v == NULL) {
    tt_api_set_err(t, "%s is not valid JSON: %s (line %d, column %d, position %d)",
            what, e.text, e.line, e.column, e.position);
    return TETHER_EJSON;
  }
  if (must_be_object && !json_is_object(v)) {
    json_decref(v);
    tt_api_set_err(t, "%s must be a JSON object, like {\"title\":\"A\"}", what);
    return TETHER_ETYPE;
  }
  *out = v;
  return 0;
}

static int check_names(tether *t, const char *coll, const char *id,
                       const char *field, int need_field) {
  if (t == NULL)
    return TETHER_EINVAL;
  t->err[0] = '\0';
  if (coll == NULL || id == NULL || (need_field && field == NULL)) {
    tt_api_set_err(t, "missing collection, id or field");
    return TETHER_EINVAL;
  }
  return 0;
}

/* ---- lifecycle ---------------------------------------------------------- */

static int url_ok(const char *url) {
  return url && (strncmp(url, "http://", 7) == 0 ||
                 strncmp(url, "https://", 8) == 0) &&
         strlen(url) > 8 && strlen(url) < 1024;
}

int tether_init(const char *dir, const char *server_url) {
  int rc = 0;
  tt_store *st = NULL;
  char eb[256];
  if (dir == NULL || dir[0] == '\0' || !url_ok(server_url))
    return TETHER_EINVAL;
  pthread_once(&sodium_once, sodium_setup);
  if (sodium_rc != 0)
    return TETHER_EUNAVAILABLE;
  /* The store creates DIR and its missing parents, mode 0700. */
  tt_store_opts so = {.map_size = REPLICA_MAP_SIZE};
  rc = tt_store_open_lmdb(dir, &so, &st, eb, sizeof eb);
  if (rc != 0)
    return rc;
  uint8_t id[TT_ID_LEN];
  randombytes_buf(id, sizeof id);
  rc = tt_replica_create(st, id, server_url);
  tt_store_close(st);
  return rc;
}

int tether_open(tether **out, const char *dir) {
  int rc = 0;
  tether *t = NULL;
  char eb[256];
  struct stat sb;
  if (out == NULL)
    return TETHER_EINVAL;
  *out = NULL;
  if (dir == NULL || dir[0] == '\0')
    return TETHER_EINVAL;
  if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
    return TETHER_ENOREPLICA;
  /* Probe read-only first: opening read-write would create an empty store
   * in any directory the user mistyped. */
  tt_store *probe = NULL;
  tt_store_opts ro = {.map_size = REPLICA_MAP_SIZE, .read_only = 1};
  if (tt_store_open_lmdb(dir, &ro, &probe, eb, sizeof eb) != 0)
    return TETHER_ENOREPLICA;
  tt_store_close(probe);

  t = calloc(1, sizeof *t);
  if (t == NULL)
    return TETHER_ENOMEM;
  tt_store_opts so = {.map_size = REPLICA_MAP_SIZE};
  rc = tt_store_open_lmdb(dir, &so, &t->st, eb, sizeof eb);
  if (rc != 0)
    goto fail;
  rc = tt_replica_open(t->st, &t->r);
  if (rc != 0)
    goto fail;
  tt_hex_encode(tt_replica_id(t->r), TT_ID_LEN, t->id);
  *out = t;
  return 0;
fail:
  if (t->r)
    tt_replica_close(t->r);
  tt_store_close(t->st);
  free(t);
  return rc;
}

void tether_close(tether *t) {
  if (t == NULL)
    return;
  if (t->abort_batch)
    t->abort_batch(t->r);
  if (t->r)
    tt_replica_close(t->r);
  tt_store_close(t->st);
  free(t);
}

const char *tether_replica_id(const tether *t) { return t ? t->id : ""; }

const char *tether_last_error(const tether *t) { return t ? t->err : ""; }

const char *tether_server_url(const tether *t) {
  return t ? tt_replica_server_url(t->r) : "";
}

/* ---- writes ------------------------------------------------------------- */

int tether_put(tether *t, const char *coll, const char *id,
               const char *json_object) {
  int rc = check_names(t, coll, id, NULL, 0);
  if (rc != 0)
    return rc;
  json_t *v = NULL;
  rc = parse_arg(t, json_object, "document", 1, &v);
  if (rc != 0)
    return rc;
  rc = tt_replica_put(t->r, coll, id, v, NULL, now_ms());
  json_decref(v);
  return tt_api_from_replica(t, rc);
}

static int write_value(tether *t, const char *coll, const char *id,
                       tt_op_kind kind, const char *field, const char *json,
                       const char *what) {
  int rc = check_names(t, coll, id, field, 1);
  if (rc != 0)
    return rc;
  json_t *v = NULL;
  rc = parse_arg(t, json, what, 0, &v);
  if (rc != 0)
    return rc;
  rc = tt_replica_write(t->r, coll, id, kind, field, v, NULL, now_ms());
  json_decref(v);
  return tt_api_from_replica(t, rc);
}

int tether_set(tether *t, const char *coll, const char *id, const char *field,
               const char *json_value) {
  return write_value(t, coll, id, TT_OP_SET, field, json_value, "value");
}

int tether_unset(tether *t, const char *coll, const char *id,
                 const char *field) {
  int rc = check_names(t, coll, id, field, 1);
  if (rc != 0)
    return rc;
  rc = tt_replica_write(t->r, coll, id, TT_OP_UNSET, field, NULL, NULL,
                        now_ms());
  return tt_api_from_replica(t, rc);
}

int tether_incr(tether *t, const char *coll, const char *id, const char *field,
                int64_t delta) {
  int rc = check_names(t, coll, id, field, 1);
  if (rc != 0)
    return rc;
  json_t *v = json_integer((json_int_t)delta);
  if (v == NULL)
    return TETHER_ENOMEM;
  rc = tt_replica_write(t->r, coll, id, TT_OP_INCR, field, v, NULL, now_ms());
  json_decref(v);
  return tt_api_from_replica(t, rc);
}

int tether_add(tether *t, const char *coll, const char *id, const char *field,
               const char *json_element) {
  return write_value(t, coll, id, TT_OP_ADD, field, json_element, "element");
}

int tether_remove(tether *t, const char *coll, const char *id,
                  const char *field, const char *json_element) {
  return write_value(t, coll, id, TT_OP_REMOVE, field, json_element,
                     "element");
}

int tether_delete(tether *t, const char *coll, const char *id) {
  int rc = check_names(t, coll, id, NULL, 0);
  if (rc != 0)
    return rc;
  rc = tt_replica_write(t->r, coll, id, TT_OP_DELETE, NULL, NULL, NULL,
                        now_ms());
  return tt_api_from_replica(t, rc);
}

/* ---- reads -------------------------------------------------------------- */

int tether_get(tether *t, const char *coll, const char *id, char **json_out) {
  if (json_out == NULL)
    return TETHER_EINVAL;
  *json_out = NULL;
  int rc = check_names(t, coll, id, NULL, 0);
  if (rc != 0)
    return rc;
  json_t *doc = NULL;
  rc = tt_replica_get(t->r, coll, id, &doc);
  if (rc != 0)
    return tt_api_from_replica(t, rc);
  char *s = tt_canon(doc);
  json_decref(doc);
  if (s == NULL)
    return TETHER_ENOMEM;
  *json_out = s;
  return 0;
}

typedef struct {
  tether_list_cb cb;
  tether_json_cb jcb;
  void *ctx;
} cb_adapter;

static int list_adapter(void *ctx, const char *id, const json_t *doc) {
  cb_adapter *a = ctx;
  char *s = tt_canon(doc);
  if (s == NULL)
    return TETHER_ENOMEM;
  int rc = a->cb(a->ctx, id, s);
  free(s);
  return rc;
}

int tether_list(tether *t, const char *coll, tether_list_cb cb, void *ctx) {
  if (t == NULL || coll == NULL || cb == NULL)
    return TETHER_EINVAL;
  t->err[0] = '\0';
  cb_adapter a = {cb, NULL, ctx};
  return tt_api_from_replica(t, tt_replica_list(t->r, coll, list_adapter, &a));
}

const char *tether_status_name(tether_doc_status s) {
  switch (s) {
  case TETHER_SYNCED:
    return "synced";
  case TETHER_PENDING:
    return "pending";
  case TETHER_CONFLICT:
    return "conflict";
  case TETHER_REJECTED:
    return "rejected";
  }
  return "unknown";
}

int tether_status(tether *t, const char *coll, const char *id,
                  tether_doc_status *out) {
  int rc = check_names(t, coll, id, NULL, 0);
  if (rc != 0 || out == NULL)
    return rc ? rc : TETHER_EINVAL;
  return tt_api_from_replica(t, tt_replica_status(t->r, coll, id, out));
}

int tether_get_stats(tether *t, tether_stats *out) {
  if (t == NULL || out == NULL)
    return TETHER_EINVAL;
  t->err[0] = '\0';
  memset(out, 0, sizeof *out);
  return tt_api_from_replica(t, tt_replica_stats(t->r, out));
}

/* ---- conflicts and outcomes ---------------------------------------------- */

static int json_adapter(void *ctx, const json_t *obj) {
  cb_adapter *a = ctx;
  char *s = tt_canon(obj);
  if (s == NULL)
    return TETHER_ENOMEM;
  int rc = a->jcb(a->ctx, s);
  free(s);
  return rc;
}

int tether_conflicts(tether *t, tether_json_cb cb, void *ctx) {
  if (t == NULL || cb == NULL)
    return TETHER_EINVAL;
  t->err[0] = '\0';
  cb_adapter a = {NULL, cb, ctx};
  return tt_api_from_replica(t, tt_replica_conflicts(t->r, json_adapter, &a));
}

int tether_resolve(tether *t, const char *coll, const char *id,
                   const char *field, const char *json_value) {
  int rc = check_names(t, coll, id, field, 1);
  if (rc != 0)
    return rc;
  json_t *v = NULL;
  rc = parse_arg(t, json_value, "value", 0, &v);
  if (rc != 0)
    return rc;
  rc = tt_replica_resolve(t->r, coll, id, field, v, now_ms());
  json_decref(v);
  return tt_api_from_replica(t, rc);
}

int tether_resolve_unset(tether *t, const char *coll, const char *id,
                         const char *field) {
  int rc = check_names(t, coll, id, field, 1);
  if (rc != 0)
    return rc;
  return tt_api_from_replica(
      t, tt_replica_resolve(t->r, coll, id, field, NULL, now_ms()));
}

int tether_outcomes(tether *t, tether_json_cb cb, void *ctx) {
  if (t == NULL || cb == NULL)
    return TETHER_EINVAL;
  t->err[0] = '\0';
  cb_adapter a = {NULL, cb, ctx};
  return tt_api_from_replica(t, tt_replica_take_outcomes(t->r, json_adapter, &a));
}

/* ---- sync --------------------------------------------------------------- */

int tether_sync(tether *t, const tether_sync_opts *opts) {
  if (t == NULL)
    return TETHER_EINVAL;
  t->err[0] = '\0';
  tt_http_client_opts ho;
  memset(&ho, 0, sizeof ho);
  if (opts) {
    ho.timeout_ms = opts->timeout_ms;
    ho.retries = opts->retries;
  }
  tt_http_client *c = NULL;
  const char *url = tt_replica_server_url(t->r);
  int rc = tt_http_client_new(url, &ho, &c);
  if (rc != 0) {
    tt_api_set_err(t, "bad server URL \"%s\"", url ? url : "");
    return rc;
  }
  rc = tt_sync_run(t->r, c, opts, t->err, sizeof t->err);
  tt_http_client_free(c);
  if (rc != 0 && t->err[0] == '\0')
    tt_api_from_replica(t, rc);
  return rc;
}

int tether_outbox_peek(tether *t, char **json_out) {
  if (t == NULL || json_out == NULL)
    return TETHER_EINVAL;
  *json_out = NULL;
  t->err[0] = '\0';
  json_t *req = NULL;
  int rc = tt_replica_push_request(t->r, TT_SYNC_PUSH_BATCH, &req);
  if (rc != 0)
    return rc == TETHER_ENOTFOUND ? rc : tt_api_from_replica(t, rc);
  char *s = tt_canon(req);
  json_decref(req);
  if (s == NULL)
    return TETHER_ENOMEM;
  *json_out = s;
  return 0;
}
