/* tether.h — the app API: a local replica that works offline and syncs with
 * a tether server.
 *
 * Conventions, everywhere in this header:
 *  - Every call that can fail returns an int: TETHER_OK (0) or a negative
 *    TETHER_E* code; tether_strerror() explains it, tether_err_name() names it.
 *  - Documents are JSON objects passed as UTF-8 text. Output JSON is
 *    canonical: keys sorted, compact, one line.
 *  - Strings a call returns through an out-parameter are owned by the caller
 *    and freed with tether_free(), unless the declaration says otherwise.
 *  - tether_close(NULL) and tether_free(NULL) are harmless no-ops.
 *  - A handle is used by one thread at a time.
 */
#ifndef TETHER_H
#define TETHER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TETHER_VERSION_MAJOR 0
#define TETHER_VERSION_MINOR 1
#define TETHER_VERSION_PATCH 0
#define TETHER_VERSION_STRING "0.1.0"
/* The wire protocol version, separate from the library version. */
#define TETHER_PROTOCOL_VERSION 1

/* Library version as "MAJOR.MINOR.PATCH". Static storage. */
const char *tether_version(void);

/* One table makes the enum, tether_strerror and tether_err_name.
 * Numbers are never reused; a retired code keeps its number. */
#define TETHER_ERRNO_MAP(X)                                                    \
  X(OK, 0, "success")                                                          \
  X(EINVAL, -1, "invalid argument")                                            \
  X(ENOMEM, -2, "out of memory")                                               \
  X(EJSON, -3, "malformed JSON")                                               \
  X(ENOTFOUND, -4, "not found")                                                \
  X(EIO, -5, "input/output error in the store")                                \
  X(ECORRUPT, -6, "stored record is corrupt")                                  \
  X(EFULL, -7, "store is full (map size reached or disk full)")                \
  X(EUNREACHABLE, -8, "server unreachable")                                    \
  X(EPROTO, -9, "unexpected response from the server")                         \
  X(EREJECTED, -10, "request rejected by the server")                          \
  X(EGAP, -11, "intent sequence gap")                                          \
  X(ECHAIN, -12, "intent hash chain broken")                                   \
  X(ETOOBIG, -13, "value or message too large")                                \
  X(EEXIST, -14, "already exists")                                             \
  X(ENOREPLICA, -15, "not a tether replica directory")                         \
  X(ETYPE, -16, "wrong JSON type")                                             \
  X(EREADONLY, -17, "store is read-only")                                      \
  X(EBUSY, -18, "resource busy")                                               \
  X(ESERVER, -19, "server error")                                              \
  X(EVERSION, -20, "unsupported protocol or format version")                   \
  X(ERETRY, -21, "transaction conflict, retry")                                \
  X(ECONFIG, -22, "invalid configuration")                                     \
  X(EUNAVAILABLE, -23, "backend unavailable")

typedef enum {
#define TETHER_ERR_ENUM_(name, num, msg) TETHER_##name = (num),
  TETHER_ERRNO_MAP(TETHER_ERR_ENUM_)
#undef TETHER_ERR_ENUM_
} tether_err;

/* Static strings; never NULL (unknown codes get "unknown error"). */
const char *tether_strerror(int err);
const char *tether_err_name(int err);

/* Frees memory the library returned to the caller. NULL is a no-op. */
void tether_free(void *p);

/* ---- replica lifecycle ------------------------------------------------- */

typedef struct tether tether; /* opaque replica handle */

/* Creates a new replica in DIR (created if missing) that syncs with
 * SERVER_URL (e.g. "http://127.0.0.1:8420"). Picks a random 128-bit replica
 * id. TETHER_EEXIST if DIR already holds a replica; DIR is left unchanged. */
int tether_init(const char *dir, const char *server_url);

/* Opens the replica in DIR. On success *out is a handle to release with
 * tether_close(); on failure *out is NULL and nothing needs closing.
 * TETHER_ENOREPLICA when DIR holds no replica. */
int tether_open(tether **out, const char *dir);

void tether_close(tether *t);

/* The replica id as 32 lowercase hex characters. Owned by the handle, valid
 * until tether_close(). */
const char *tether_replica_id(const tether *t);

/* Last error detail for this handle (e.g. the server's reason), or "".
 * Owned by the handle; valid until the next call on it. */
const char *tether_last_error(const tether *t);

/* ---- local writes: recorded as intents, visible at once, synced later --- */

/* Create or replace the whole document with JSON_OBJECT. */
int tether_put(tether *t, const char *coll, const char *id,
               const char *json_object);
/* Set one top-level field to JSON_VALUE (any JSON value). */
int tether_set(tether *t, const char *coll, const char *id, const char *field,
               const char *json_value);
int tether_unset(tether *t, const char *coll, const char *id,
                 const char *field);
/* Counter increment: concurrent increments add up. */
int tether_incr(tether *t, const char *coll, const char *id, const char *field,
                int64_t delta);
/* Set-valued field (JSON array used as a set): add or remove one element. */
int tether_add(tether *t, const char *coll, const char *id, const char *field,
               const char *json_element);
int tether_remove(tether *t, const char *coll, const char *id,
                  const char *field, const char *json_element);
/* Delete the document (a tombstone is kept and synced). */
int tether_delete(tether *t, const char *coll, const char *id);

/* Bulk writes: between tether_batch_begin and tether_batch_commit every
 * write above joins one local transaction, made durable once at commit
 * (one fsync instead of one per write — for imports and initial loads).
 * Reads inside the batch see its writes. If a write inside fails, that
 * write changes nothing and the batch goes on — except TETHER_EFULL: the
 * local store is full, the whole batch is lost (tether_batch_commit then
 * returns TETHER_EFULL) and what was committed before the batch is kept.
 * tether_batch_abort drops the whole batch. A batch left open at
 * tether_close is aborted. */
int tether_batch_begin(tether *t);
int tether_batch_commit(tether *t);
void tether_batch_abort(tether *t);

/* ---- reads (the optimistic view: confirmed state + pending intents) ---- */

/* *json_out: the document as canonical JSON; free with tether_free().
 * TETHER_ENOTFOUND (and *json_out NULL) when absent or deleted. */
int tether_get(tether *t, const char *coll, const char *id, char **json_out);

/* Calls CB once per live document of COLL in id order. JSON is canonical and
 * valid only during the call. A non-zero return from CB stops the walk and is
 * returned by tether_list. */
typedef int (*tether_list_cb)(void *ctx, const char *id, const char *json);
int tether_list(tether *t, const char *coll, tether_list_cb cb, void *ctx);

typedef enum {
  TETHER_SYNCED = 0,   /* no pending intent, no open conflict */
  TETHER_PENDING = 1,  /* local intents not yet acknowledged and pulled */
  TETHER_CONFLICT = 2, /* an open conflict waits for tether_resolve */
  TETHER_REJECTED = 3  /* the last intent on it was rejected and rolled back */
} tether_doc_status;

/* "synced", "pending", "conflict" or "rejected". Static storage. */
const char *tether_status_name(tether_doc_status s);

/* A document absent from the view with nothing pending or held on it is
 * TETHER_SYNCED too (nothing to sync); tether_get tells whether it
 * exists. */
int tether_status(tether *t, const char *coll, const char *id,
                  tether_doc_status *out);

/* Replica-wide counts for `tether status`. */
typedef struct {
  uint64_t pending_intents; /* in the outbox, not yet acknowledged */
  uint64_t conflicts;       /* open conflicts */
  uint64_t rejected;        /* rejected intents reported and not cleared */
  uint64_t documents;       /* live documents in the view */
} tether_stats;
int tether_get_stats(tether *t, tether_stats *out);

/* ---- conflicts --------------------------------------------------------- */

/* Calls CB once per open conflict. JSON is one canonical object
 * {"coll","id","field","base","theirs","ours","conflict"}, valid only during
 * the call. A non-zero return from CB stops the walk and is returned. */
typedef int (*tether_json_cb)(void *ctx, const char *json);
int tether_conflicts(tether *t, tether_json_cb cb, void *ctx);

/* Settles the open conflict on (coll, id, field) with JSON_VALUE; the
 * decision is an intent like any other. TETHER_ENOTFOUND if no open
 * conflict there. */
int tether_resolve(tether *t, const char *coll, const char *id,
                   const char *field, const char *json_value);
/* As tether_resolve, settling the conflict with the field absent (JSON
 * null is a value, not an absence). */
int tether_resolve_unset(tether *t, const char *coll, const char *id,
                         const char *field);

/* Calls CB once per intent outcome the server reported that the app has not
 * seen yet, oldest first: {"seq","coll","id","label","outcome","rule",
 * "conflict","reason"} (absent keys omitted). */
int tether_outcomes(tether *t, tether_json_cb cb, void *ctx);

/* ---- sync ---------------------------------------------------------------*/

typedef struct {
  const char *phase;   /* "push" or "pull"; static storage */
  uint64_t done;       /* intents pushed or changes pulled so far */
  uint64_t total;      /* intents to push (0 for pull: unknown) */
} tether_progress;
typedef void (*tether_progress_cb)(void *ctx, const tether_progress *p);

typedef struct {
  tether_progress_cb progress; /* may be NULL */
  void *progress_ctx;
  uint32_t timeout_ms;         /* per HTTP request; 0 = default (30 s) */
  uint32_t retries;            /* per request on network errors/5xx; 0 = default (4) */
} tether_sync_opts;

/* Pushes the outbox in seq order (batched), then pulls until caught up.
 * OPTS may be NULL. On TETHER_EUNREACHABLE local data is untouched and the
 * outbox is kept for the next sync. */
int tether_sync(tether *t, const tether_sync_opts *opts);

/* ---- inspection (tools and tests) --------------------------------------- */

/* The body of the first push request the next tether_sync would send, as
 * canonical JSON {"intents":[...],"replica":"...","v":1} (the oldest
 * unacknowledged intents, at most 2000). *json_out: free with tether_free().
 * TETHER_ENOTFOUND (and *json_out NULL) when the outbox is empty. Changes
 * nothing. */
int tether_outbox_peek(tether *t, char **json_out);

/* The server URL the replica syncs with. Owned by the handle, valid until
 * tether_close(). */
const char *tether_server_url(const tether *t);

#ifdef __cplusplus
}
#endif
#endif /* TETHER_H */
