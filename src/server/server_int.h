/* server_int.h — what the files of server/ share: the handle, the stored
 * record encodings (records.c) and the error bodies. Not for other layers. */
#ifndef TT_SERVER_SERVER_INT_H
#define TT_SERVER_SERVER_INT_H

#include <jansson.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "core/merge.h"
#include "core/util.h"
#include "server/server.h"

/* Stored format of everything below; bumped on any incompatible change.
 * 2: per-partition dedupe records beside the replica's home record. A
 * format-1 store with ONE partition has the same layout (there the home
 * record is also the dedupe record) and is read as it is; a format-1 store
 * with several partitions is refused (its replicas have no per-partition
 * dedupe records, so duplicates would be applied again).
 * 3: changelog values may carry a tag and outcome kinds a clean bit
 * (records.c); format 1 (one partition) and 2 stores are read as they are
 * and marked 3 when opened, so that older builds refuse them. */
#define TT_SRV_FORMAT 3u
#define TT_SRV_MAX_PARTITIONS 4096u
#define TT_SRV_DEFAULT_SKEW 60000u
#define TT_SRV_DEFAULT_PULL 5000u
/* Tries of one partition's write transaction that the backend reports as
 * raced (TETHER_ERETRY: another server moved a key it read) before the
 * push is answered 503. No backoff: server/ has no clock, and a redo
 * re-reads everything, so it converges unless the partition is hot. */
#define TT_SRV_MAX_TRIES 20

/* coll \0 id: each name at most TT_MAX_NAME bytes. */
#define TT_SRV_DOCKEY_MAX (2 * TT_MAX_NAME + 1)

/* Nothing here caches store state: several tt_server handles (threads,
 * processes, machines) may share one store, and every value that decides
 * anything (partition sequences, dedupe and home records) is read inside
 * the transaction that depends on it. */
struct tt_server {
  tt_store *st;
  const tt_policy_table *pol;
  uint64_t max_skew_ms;
  unsigned nparts;
  size_t pull_limit;
  int (*fault)(void *ctx, const char *point);
  void *fault_ctx;

  /* Read by pull threads and /metrics while push runs. */
  _Atomic uint64_t commits, pushes, pulls;
  _Atomic uint64_t pushes_held; /* runs that deferred a push sent ahead */
  _Atomic uint64_t applied, merged, conflict, rejected, duplicate;
  _Atomic uint64_t concurrent, bad_requests;
};

/* ---- server.c ----------------------------------------------------------- */

/* Per-partition commit sequence as stored in meta (in partition p), read
 * within T. An absent key is 0. */
int tt_srv_load_seq(tt_txn *t, unsigned p, uint64_t *out);
int tt_srv_store_seq(tt_txn *t, unsigned p, uint64_t seq);
/* The meta key of partition p's sequence (for prefetch); returns its
 * length. */
#define TT_SRV_SEQ_KEY_LEN 14
size_t tt_srv_seq_key(uint8_t out[TT_SRV_SEQ_KEY_LEN], unsigned p);

/* {"v":1,"error":CODE,"message":...}: a new reference, NULL on ENOMEM. */
json_t *tt_srv_error(const char *code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- records.c: keys ----------------------------------------------------- */

/* coll \0 id into BUF (TT_SRV_DOCKEY_MAX bytes); returns the length. */
size_t tt_srv_doc_key(char *buf, const char *coll, const char *id);

/* A changelog entry's value: the document key, and for a change that is
 * the clean effect of one intent (tt_srv_outcome.clean) a tag naming it:
 *   coll \0 id [\0 replica id (16 bytes) be64 seq]
 * Names hold no NUL, so a second NUL can only start the tag. A pull whose
 * "own" covers the tag's seq skips the entry: that replica computed the
 * change itself. */
#define TT_SRV_CHANGE_TAG_LEN (1 + TT_ID_LEN + 8)
#define TT_SRV_CHANGE_MAX (TT_SRV_DOCKEY_MAX + TT_SRV_CHANGE_TAG_LEN)
/* Writes the value for document key DK (DKL bytes) into OUT, tagged with
 * REPLICA and SEQ unless REPLICA is NULL; returns its length. */
size_t tt_srv_change_encode(uint8_t out[TT_SRV_CHANGE_MAX], const char *dk,
                            size_t dkl, const uint8_t *replica, uint64_t seq);
/* Splits VAL into the document key (*KLEN bytes at its start) and, when
 * tagged, *TAGGED = 1 with the tag's replica id and seq. ECORRUPT on a
 * malformed value. */
int tt_srv_change_decode(tt_bytes val, size_t *klen, int *tagged,
                         uint8_t replica[TT_ID_LEN], uint64_t *seq);
void tt_srv_change_key(uint8_t out[12], uint32_t p, uint64_t seq);
void tt_srv_outcome_key(uint8_t out[TT_ID_LEN + 8],
                        const uint8_t replica[TT_ID_LEN], uint64_t seq);
void tt_srv_audit_key(uint8_t out[16], uint32_t p, uint64_t seq, uint32_t n);

/* ---- records.c: replica records ----------------------------------------- */

/* The HOME record: TT_TABLE_REPLICAS, key = the replica id (TT_ID_LEN
 * bytes), in the replica's home partition (tt_server_home_of). The head of
 * the replica's hash chain as far as the server has seen it: only used to
 * check the chain and find gaps, never to decide whether an intent is a
 * duplicate (that is the dedupe record's job). last_seq only grows. */
typedef struct {
  uint64_t last_seq;              /* 0 = nothing applied yet */
  uint8_t last_hash[TT_HASH_LEN]; /* all zero when last_seq == 0 */
} tt_srv_replica;

#define TT_SRV_REPLICA_LEN (1 + 8 + TT_HASH_LEN)
void tt_srv_replica_encode(const tt_srv_replica *r,
                           uint8_t out[TT_SRV_REPLICA_LEN]);
/* TETHER_ECORRUPT on a malformed record. */
int tt_srv_replica_decode(tt_bytes b, tt_srv_replica *out);

/* The DEDUPE record of a replica in partition p: TT_TABLE_REPLICAS, key =
 * replica id + be32 p, in partition p: the highest seq of that replica
 * applied in p. Written in the same transaction as what those intents
 * changed, so "seq <= it" is exactly "already applied here". With ONE
 * partition there is no such record: the home record is written in the
 * same transaction and always holds the same seq, so it serves as both. */
#define TT_SRV_DEDUPE_KEY_LEN (TT_ID_LEN + 4)
#define TT_SRV_DEDUPE_LEN (1 + 8)
void tt_srv_dedupe_key(uint8_t out[TT_SRV_DEDUPE_KEY_LEN],
                       const uint8_t replica[TT_ID_LEN], uint32_t p);
void tt_srv_dedupe_encode(uint64_t seq, uint8_t out[TT_SRV_DEDUPE_LEN]);
/* TETHER_ECORRUPT on a malformed record. */
int tt_srv_dedupe_decode(tt_bytes b, uint64_t *seq);

/* ---- records.c: outcome record ------------------------------------------ */

/* One intent's outcome as stored and answered. Strings and CONFLICT are
 * borrowed from wherever the outcome was built or decoded from. */
typedef struct {
  uint64_t seq;
  tt_outcome_kind kind;
  const char *rule; /* NULL = none */
  size_t rule_len;
  const char *reason; /* NULL = none */
  size_t reason_len;
  const json_t *conflict; /* {"id","field","base","theirs","ours"} or NULL */
  uint32_t p;
  uint64_t commit;
  /* TT_HASH_LEN bytes: the hash of the intent this is the outcome of, so a
   * resent intent can be told from a different one with the same seq (a
   * replica restored from a backup). NULL = not kept (records written
   * before it was; never in the wire form). */
  const uint8_t *hash;
  /* "clean": true on the wire (PROTOCOL.md), a bit of the kind byte in
   * the record: applied to exactly the version the intent was written
   * against, so the replica can compute the result itself and its pulls
   * need not send it back. */
  int clean;
} tt_srv_outcome;

/* Compact binary form; *buf malloc'd (free()). 0 or ENOMEM. */
int tt_srv_outcome_encode(const tt_srv_outcome *o, uint8_t **buf,
                          size_t *len);
/* Decodes B (must outlive *out's borrowed strings). *conflict receives a new
 * reference (or NULL) that the caller releases; o->conflict points to it.
 * TETHER_ECORRUPT on a malformed record. */
int tt_srv_outcome_decode(tt_bytes b, uint64_t seq, tt_srv_outcome *out,
                          json_t **conflict);
/* The partition an encoded outcome record says it lives in, without
 * decoding the rest. TETHER_ECORRUPT on a malformed record. */
int tt_srv_outcome_partition(tt_bytes b, uint32_t *p);
/* Appends the wire form (PROTOCOL.md) of O, as canonical text, to B: a
 * push answer holds one per intent. 0, TETHER_ENOMEM, or TETHER_EINVAL (a
 * rule or reason that is not UTF-8); B is as before on error. */
int tt_srv_outcome_text(tt_buf *b, const tt_srv_outcome *o, int duplicate);
/* The same as a tree: a new reference, or NULL when the text cannot be
 * written (ENOMEM, or a rule or reason that is not UTF-8). */
json_t *tt_srv_outcome_json(const tt_srv_outcome *o, int duplicate);

/* {"id","field","base","theirs","ours"} (absent values omitted) for the
 * outcome of the merge conflict C. New reference or NULL on ENOMEM. */
json_t *tt_srv_conflict_json(const tt_conflict *c);

/* ---- records.c: small JSON records (conflicts, audit) ------------------- */

/* Compact JSON text of V; *buf malloc'd (free()). 0 or ENOMEM. */
int tt_srv_json_encode(const json_t *v, char **buf, size_t *len);
/* A JSON object from B; TETHER_ECORRUPT when it is not one. */
int tt_srv_json_decode(tt_bytes b, json_t **out);

/* ---- hashing ------------------------------------------------------------ */

/* FNV-1a 32-bit over LEN bytes of DATA, continuing from H: start with
 * TT_SRV_FNV_INIT. The one FNV of server/: document partitions and replica
 * home partitions (server.h; both stable forever) and push's in-memory
 * replica table. */
#define TT_SRV_FNV_INIT 2166136261u
uint32_t tt_srv_fnv1a(uint32_t h, const void *data, size_t len);

#endif
