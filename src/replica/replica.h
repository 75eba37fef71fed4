/* replica.h — the client replica as a state machine over a local store:
 * local writes become intents in a durable outbox and show at once in the
 * optimistic view; sync messages are built and consumed here, sent by net/.
 * No sockets, no clock, no randomness: time and the new replica's id are
 * passed in. One thread at a time per replica. */
#ifndef TT_REPLICA_REPLICA_H
#define TT_REPLICA_REPLICA_H

#include <jansson.h>
#include <stdint.h>

#include "core/intent.h"
#include "store/store.h"
#include "tether.h"

typedef struct tt_replica tt_replica;

/* Writes a new replica's meta into ST (borrowed): its ID and SERVER_URL.
 * TETHER_EEXIST if ST already holds a replica (nothing changed). */
int tt_replica_create(tt_store *st, const uint8_t id[TT_ID_LEN],
                      const char *server_url);

/* Opens the replica held by ST (borrowed; must outlive it).
 * TETHER_ENOREPLICA if ST holds none. On failure *out is NULL. */
int tt_replica_open(tt_store *st, tt_replica **out);
void tt_replica_close(tt_replica *r);

const uint8_t *tt_replica_id(const tt_replica *r);
/* Owned by R, valid until close. */
const char *tt_replica_server_url(const tt_replica *r);
/* Last error detail (e.g. a rejection reason), or "". Owned by R. */
const char *tt_replica_last_error(const tt_replica *r);

/* ---- local writes ------------------------------------------------------
 * Each builds one intent (base = confirmed version; base_value from the
 * view for set, unset and resolve only: incr/add/remove always combine),
 * appends it to the outbox and updates the view, all in one durable
 * local commit; on any error nothing changed. VALUE arguments are borrowed.
 * NOW_MS is the wall clock, for the HLC. LABEL may be NULL. */
int tt_replica_put(tt_replica *r, const char *coll, const char *id,
                   const json_t *object, const char *label, uint64_t now_ms);
/* KIND one of SET, UNSET, INCR, ADD, REMOVE, DELETE (field NULL for
 * DELETE; value NULL for UNSET/DELETE). TETHER_ETYPE when the op does not
 * fit the current value (incr on a string). */
int tt_replica_write(tt_replica *r, const char *coll, const char *id,
                     tt_op_kind kind, const char *field, const json_t *value,
                     const char *label, uint64_t now_ms);
/* Settles the open conflict on (coll, id, field): VALUE NULL = unset.
 * TETHER_ENOTFOUND if there is none. */
int tt_replica_resolve(tt_replica *r, const char *coll, const char *id,
                       const char *field, const json_t *value,
                       uint64_t now_ms);

/* Batch: writes between begin and commit share one local write
 * transaction (one durable commit). A write that fails inside the batch
 * must fail before it writes anything, so the batch stays as it was
 * (a store error, e.g. TETHER_EFULL, poisons it: the commit then fails and
 * nothing of it applies). Reads, the pull request and take_outcomes inside
 * a batch see its writes. The push request never does: only durably
 * committed intents may leave (a pushed intent of an aborted batch would
 * break the hash chain for good). tt_replica_push_done and
 * tt_replica_pull_done return TETHER_EBUSY while a batch is open. Close
 * aborts an open batch. */
int tt_replica_batch_begin(tt_replica *r);
int tt_replica_batch_commit(tt_replica *r);
void tt_replica_batch_abort(tt_replica *r);

/* ---- reads ------------------------------------------------------------- */

/* *out: new reference to the optimistic document; TETHER_ENOTFOUND when
 * absent or deleted. */
int tt_replica_get(tt_replica *r, const char *coll, const char *id,
                   json_t **out);
/* Live documents of COLL in id order; DOC valid only during the call. */
typedef int (*tt_replica_doc_cb)(void *ctx, const char *id, const json_t *doc);
int tt_replica_list(tt_replica *r, const char *coll, tt_replica_doc_cb cb,
                    void *ctx);
int tt_replica_status(tt_replica *r, const char *coll, const char *id,
                      tether_doc_status *out);
int tt_replica_stats(tt_replica *r, tether_stats *out);
/* Each open conflict as {"conflict","coll","id","field","base","theirs",
 * "ours"} (absent values omitted); OBJ valid only during the call. */
typedef int (*tt_replica_json_cb)(void *ctx, const json_t *obj);
int tt_replica_conflicts(tt_replica *r, tt_replica_json_cb cb, void *ctx);
/* Outcomes reported by the server and not yet taken, oldest first; each
 * is removed once CB returned 0 for it. */
int tt_replica_take_outcomes(tt_replica *r, tt_replica_json_cb cb,
                             void *ctx);
/* Intents in the outbox not yet acknowledged. */
uint64_t tt_replica_outbox_len(tt_replica *r);

/* ---- sync messages (docs/PROTOCOL.md) -----------------------------------
 * Push: builds a request with up to MAX_INTENTS unacknowledged intents in
 * seq order; TETHER_ENOTFOUND (and *req NULL) when there is nothing to push.
 * The response (any HTTP status) is handed back to tt_replica_push_done:
 * 200 -> outcomes recorded durably, acknowledged intents leave the outbox,
 * rejected ones are rolled back from the view, and an intent answered
 * {"outcome":"duplicate","duplicate":true} (applied once, its outcome
 * forgotten) leaves the outbox with the outcome "duplicate"; any other
 * status changes nothing and returns an error with the server's reason in
 * last_error: 409 gap -> TETHER_EGAP, 409 chain -> TETHER_ECHAIN (the
 * server's record of this replica's intents does not match the outbox:
 * an operator must look), other 4xx -> TETHER_EREJECTED, 5xx ->
 * TETHER_ESERVER. */
int tt_replica_push_request(tt_replica *r, size_t max_intents, json_t **req);
int tt_replica_push_done(tt_replica *r, const json_t *req, int status,
                         const json_t *resp);

/* The same request as wire text, spliced from the stored intents without
 * parsing them (what sync sends). It starts at the first unacknowledged
 * seq, or at FROM when that is later (0 = no later start): a caller may
 * build the next request while the previous one is on the wire. AHEAD 1
 * marks it "ahead": true, sent before the previous one was answered
 * (PROTOCOL.md). TETHER_ENOTFOUND when nothing is left from there. */
typedef struct {
  char *text; /* malloc'd, NUL-terminated; tt_push_body_clear frees it */
  size_t len;
  uint64_t lo, hi; /* seq of the first and last intent carried */
  size_t n;
} tt_push_body;
int tt_replica_push_body(tt_replica *r, size_t max_intents, uint64_t from,
                         int ahead, tt_push_body *out);
void tt_push_body_clear(tt_push_body *b);
/* tt_replica_push_done for a request that carried seqs LO..HI. */
int tt_replica_push_done_range(tt_replica *r, uint64_t lo, uint64_t hi,
                               int status, const json_t *resp);

/* Pull: a request from the current cursor asking at most LIMIT changes,
 * waiting up to WAIT_MS on the server when there are none (0 = answer at
 * once). tt_replica_pull_done applies a 200 response durably (confirmed
 * documents, cursor, re-base of pending intents) and sets *more; a change
 * older than the confirmed version held is skipped. Any other status, or
 * an answer it cannot use, changes nothing and returns an error with the
 * reason in last_error; for 400 cursor (TETHER_EPROTO) it also sets
 * tt_replica_cursor_refused. */
int tt_replica_pull_request(tt_replica *r, size_t limit, uint64_t wait_ms,
                            json_t **req);
int tt_replica_pull_done(tt_replica *r, int status, const json_t *resp,
                         int *more, size_t *nchanges);
/* The request for the page after RESP (a 200 answer with "more"), built
 * from RESP itself so that it can be sent while RESP is being applied:
 * what tt_replica_pull_request will build once tt_replica_pull_done(RESP)
 * has succeeded, without waiting (wait_ms 0). If that pull_done fails, the
 * answer to this request must be dropped. TETHER_ENOTFOUND when RESP says
 * no more; TETHER_EPROTO for a cursor pull_done would refuse. */
int tt_replica_pull_next_request(tt_replica *r, const json_t *resp,
                                 size_t limit, json_t **req);
/* 1 if the last tt_replica_pull_done refused a 400 cursor answer: the
 * server does not know the cursor (its data was reset or restored, or the
 * replica is older than its retention horizon). The caller then calls
 * tt_replica_rebootstrap and pulls again. */
int tt_replica_cursor_refused(const tt_replica *r);
/* Starts over from the server's whole state, in one local transaction:
 * the cursor becomes [] (and the paging position is dropped), every
 * confirmed document is deleted (the pull from [] brings back those the
 * server still has), acknowledged intents waiting for a pull leave the
 * outbox, and every unacknowledged intent stays and is replayed on the
 * empty confirmed state. Conflicts, statuses and outcomes are kept. On
 * error nothing changed. TETHER_EBUSY while a batch is open. */
int tt_replica_rebootstrap(tt_replica *r);

#endif
