/* internal.h — what the replica's files share: the handle, stored record
 * layouts and helpers that read/write them inside a caller's transaction.
 *
 * Every replica operation runs in one store transaction on partition 0:
 * the replica's store is local and partition-agnostic.
 *
 * Stored layouts (all integers big-endian):
 *   META "format"  be32 TT_R_FORMAT
 *   META "id"      16 bytes replica id
 *   META "url"     server URL bytes (no NUL)
 *   META "chain"   be64 next_seq, 32 bytes head hash, be64 last HLC,
 *                  be64 acked (highest seq such that every seq <= it has an
 *                  outcome from the server)
 *   META "cursor"  JSON array text, one commit seq per partition
 *   META "own"     be64: every intent with seq <= it has its effect in the
 *                  confirmed state (absent = 0). Sent as the pull's "own",
 *                  so the server does not send this replica's own clean
 *                  writes back (PROTOCOL.md). Moves to "acked" whenever no
 *                  acknowledged intent is waiting for a pull; 0 again on
 *                  re-bootstrap, which empties the confirmed state.
 *   META "ownhold" be64: lowest seq acknowledged as a forgotten duplicate
 *                  since the last caught-up pull; "own" stays below it
 *                  until a pull has brought that intent's effect; 1
 *                  after a re-bootstrap, until its pull has caught up.
 *   DOCS  coll\0id         u8 flags (1 = deleted), be64 version, JSON object
 *                          text (empty when deleted)
 *   VIEW  coll\0id         u8 flags (1 = absent/deleted), JSON object text
 *   OUTBOX be64 seq        see tt_robx
 *   OUTBOX 0xFF, be32 p, be64 commit, be64 seq  -> empty: the acked index.
 *                          One entry per OUTBOX record in state ACKED (an
 *                          intent the server applied at (p, commit) whose
 *                          effect no pull has confirmed yet), so that a pull
 *                          finds what it may drop by a range scan per
 *                          partition instead of reading the whole outbox.
 *                          Seq keys are 8 bytes below 2^56, so they all sort
 *                          before the 21-byte index keys; an outbox scan
 *                          stops at the first key that is not 8 bytes long.
 *   PENDING coll\0id\0be64 seq  -> empty
 *   STATUS coll\0id        be32 open conflicts, u8 rejected, be64 seq of
 *                          the rejected intent
 *   RCONFLICTS conflict id -> JSON {coll,id,field,base,theirs,ours}
 *   ROUTCOMES be64 seq     u8 outcome kind (tt_outcome_kind; TT_OUT_APPLIED
 *                          for a forgotten duplicate, whose JSON says
 *                          "duplicate"), JSON outcome object text
 *
 * Invariant: a VIEW overlay exists iff PENDING holds an entry for the doc;
 * every PENDING entry has its OUTBOX record. */
#ifndef TT_REPLICA_INTERNAL_H
#define TT_REPLICA_INTERNAL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/hlc.h"
#include "core/util.h"
#include "replica/replica.h"
#include "store/store.h"

/* 2: OUTBOX holds the acked index. 3: outbox records may be of layout 2
 * (with the intent's base), which a format-2 build would read as corrupt.
 * Format 1 and 2 stores are migrated on open. */
#define TT_R_FORMAT 3u
#define TT_R_MAX_URL 2048
#define TT_R_MAX_PARTITIONS 65536u
/* coll \0 id \0 be64 seq, with room to spare. */
#define TT_R_KEYMAX (2 * TT_MAX_NAME + 16)
/* A push request stops growing once its intents reach this many bytes of
 * stored JSON (at least one intent is always sent), well under the server's
 * 64 MiB body limit. */
#define TT_R_PUSH_MAX_BYTES (32u << 20)
/* One intent's wire JSON: at most what one push carries, so no intent can
 * become unpushable. */
#define TT_R_MAX_INTENT_BYTES TT_R_PUSH_MAX_BYTES
/* Largest stored document or overlay record: 4 x the server's document
 * limit (TT_MAX_DOC, core/util.h), so that any document the server accepts
 * fits, with room for this record's own encoding. */
#define TT_R_MAX_RECORD (4 * TT_MAX_DOC)

struct tt_replica {
  tt_store *st;
  tt_txn *batch; /* open tt_replica_batch_begin transaction, or NULL */
  uint8_t id[TT_ID_LEN];
  char id_hex[2 * TT_ID_LEN + 1];
  char *url;
  json_t *resume; /* the last page's "resume" while paging, else NULL */
  int cursor_refused; /* the last pull answer was 400 cursor */
  char err[256];
};

#define TT_R_ERR(r, ...) tt_errf((r)->err, sizeof((r)->err), __VA_ARGS__)

typedef struct {
  uint64_t next_seq;
  uint8_t head[TT_HASH_LEN];
  tt_hlc hlc;
  uint64_t acked;
} tt_rchain;

/* Transactions. Inside a batch every call except the push request and the
 * sync answers runs in the batch's write transaction (so it sees the
 * batch's writes); tt_r_commit then commits nothing and tt_r_end leaves the
 * batch open. Outside a batch these are begin/commit/abort. */
int tt_r_begin(tt_replica *r, int write, tt_txn **t);
int tt_r_commit(tt_replica *r, tt_txn *t);
void tt_r_end(tt_replica *r, tt_txn *t);
/* TETHER_EBUSY (with r->err) when a batch is open. */
int tt_r_no_batch(tt_replica *r, const char *what);

int tt_r_chain_load(tt_txn *t, tt_rchain *c);
int tt_r_chain_store(tt_txn *t, const tt_rchain *c);

int tt_r_own_load(tt_txn *t, uint64_t *own);
/* Sets "own" to the acked prefix when no acknowledged intent waits for a
 * pull (nothing below it is missing from the confirmed state), but below
 * the hold, if any. */
int tt_r_own_update(tt_txn *t, const tt_rchain *c);
/* An intent acknowledged without its effect (a forgotten duplicate): "own"
 * stays below SEQ (lowered if need be) until tt_r_own_release, called
 * when a pull has caught up with the server. */
int tt_r_own_hold(tt_txn *t, uint64_t seq);
int tt_r_own_release(tt_txn *t);
/* "own" back to 0, held there until a pull has caught up (re-bootstrap:
 * the confirmed state is empty). */
int tt_r_own_reset(tt_txn *t);

/* *CUR: malloc'd array (free()), *N entries; empty cursor -> NULL, 0. */
int tt_r_cursor_load(tt_txn *t, uint64_t **cur, size_t *n);
/* Parses a cursor JSON array (defensive). ERR_CODE is returned on a bad
 * shape (ECORRUPT for stored, EPROTO for received). */
int tt_r_cursor_parse(const json_t *a, uint64_t **cur, size_t *n,
                      int err_code);

/* coll \0 id; returns the length (fits TT_R_KEYMAX for valid names). */
size_t tt_r_dockey(uint8_t *out, const char *coll, const char *id);
/* Splits a doc key into coll and id copies (NUL-terminated, caller's
 * buffers of TT_MAX_NAME+1). TETHER_ECORRUPT on a malformed key. */
int tt_r_dockey_split(const uint8_t *key, size_t klen, char *coll, char *id);

/* ---- confirmed documents ---------------------------------------------- */
typedef struct {
  int exists;
  int deleted;
  uint64_t version;
  json_t *obj; /* owned; NULL when absent or deleted */
} tt_rdoc;

int tt_r_doc_decode(tt_bytes val, tt_rdoc *out);
int tt_r_doc_load(tt_txn *t, const uint8_t *key, size_t klen, tt_rdoc *out);
/* Writes the record; OBJ NULL with DELETED set for a tombstone. */
int tt_r_doc_store(tt_txn *t, const uint8_t *key, size_t klen,
                   uint64_t version, int deleted, const json_t *obj);
void tt_r_doc_clear(tt_rdoc *d);

/* ---- optimistic view -------------------------------------------------- */
/* *HAS: 1 if an overlay exists; *OBJ new ref or NULL (absent/deleted). */
int tt_r_overlay_load(tt_txn *t, const uint8_t *key, size_t klen, int *has,
                      json_t **obj);
int tt_r_overlay_store(tt_txn *t, const uint8_t *key, size_t klen,
                       const json_t *obj);
int tt_r_overlay_decode(tt_bytes val, json_t **obj);
/* The optimistic document (overlay, else confirmed): *OBJ new ref or NULL;
 * CONF (may be NULL) receives the confirmed record. */
int tt_r_view_load(tt_txn *t, const uint8_t *key, size_t klen, json_t **obj,
                   tt_rdoc *conf);
/* Recomputes the overlay of one document from its confirmed state and its
 * remaining PENDING intents (those that no longer fit are skipped); with no
 * pending intent left the overlay is deleted. */
int tt_r_view_recompute(tt_txn *t, const uint8_t *key, size_t klen);
/* 1 if PENDING holds an entry for the doc, 0 if not, or an error. */
int tt_r_has_pending(tt_txn *t, const uint8_t *key, size_t klen);
/* 1 if SEQ is the doc's only pending intent, 0 if not, or an error. */
int tt_r_pending_only(tt_txn *t, const uint8_t *key, size_t klen,
                      uint64_t seq);
/* 1 if the doc has a pending intent with seq > AFTER. */
int tt_r_has_pending_after(tt_txn *t, const uint8_t *key, size_t klen,
                           uint64_t after);

/* ---- outbox ----------------------------------------------------------- */
enum { TT_ROBX_PENDING = 0, TT_ROBX_ACKED = 1 };

/* Outbox record: u8 layout version (1 or 2), u8 state, be32 p, be64
 * commit, [layout 2: be64 base, the document version the intent was
 * written on], be16 doc key length, doc key, be16 label length + 1 (0 = no
 * label), label, intent wire JSON (with hash). Pointers below point into
 * the decoded value. Written as layout 2; layout 1 records (older stores)
 * are read with has_base 0. */
typedef struct {
  int state;
  uint32_t p;
  uint64_t commit;
  uint64_t base;
  int has_base;
  const uint8_t *key;
  size_t klen;
  const char *label; /* NULL = none; not NUL-terminated */
  size_t label_len;
  const char *json;
  size_t json_len;
} tt_robx;

int tt_r_obx_decode(tt_bytes val, tt_robx *out);
/* *BUF malloc'd (free()). */
int tt_r_obx_encode(const tt_robx *o, uint8_t **buf, size_t *len);
void tt_r_seqkey(uint8_t out[8], uint64_t seq);
/* Removes intent SEQ (doc key KEY) from OUTBOX (with its acked index entry,
 * if any) and PENDING. */
int tt_r_obx_drop(tt_txn *t, uint64_t seq, const uint8_t *key, size_t klen);
/* tt_r_obx_drop for an intent the caller has just read as pending (it has
 * no ack index entry), without reading its record again. */
int tt_r_obx_drop_pending(tt_txn *t, uint64_t seq, const uint8_t *key,
                          size_t klen);

/* Acked index key (see the layout above). An acked intent is dropped from
 * the outbox once the confirmed state includes its effect: when the cursor
 * of its partition reaches its commit (cursor[p] >= commit), or when its
 * document arrives in a pull at a version >= commit. */
#define TT_R_ACKIDX_TAG 0xFFu
#define TT_R_ACKIDX_LEN 21
void tt_r_ackidx_key(uint8_t out[TT_R_ACKIDX_LEN], uint32_t p,
                     uint64_t commit, uint64_t seq);
/* Parses an OUTBOX key as an acked index key: 1 if it is one, else 0. */
int tt_r_ackidx_parse(tt_bytes k, uint32_t *p, uint64_t *commit,
                      uint64_t *seq);

/* ---- per-document status ---------------------------------------------- */
typedef struct {
  uint32_t nconflicts;
  int rejected;
  uint64_t rejected_seq;
} tt_rstatus;

int tt_r_status_load(tt_txn *t, const uint8_t *key, size_t klen,
                     tt_rstatus *s);
/* Deletes the record when everything is zero. */
int tt_r_status_store(tt_txn *t, const uint8_t *key, size_t klen,
                      const tt_rstatus *s);

/* ---- small helpers ---------------------------------------------------- */
/* Canonical size of V > TT_MAX_VALUE -> TETHER_ETOOBIG. */
int tt_r_value_size_ok(const json_t *v);
/* Compact JSON text of V, malloc'd (free()), or NULL on ENOMEM. */
char *tt_r_dump(const json_t *v, size_t *len);
/* Map an HTTP error response to a code, with the server's message in
 * r->err. */
int tt_r_http_error(tt_replica *r, const char *what, int status,
                    const json_t *resp);

#endif
