/* merge.h — the merge engine: the one place where the rules of
 * reconciliation live, for every backend and for the replica's view.
 *
 * Server side, per op of an intent I against the committed document D
 * (field entry F, stamp S):
 *   not concurrent  when F is absent, or S.seq <= I.base, or S.origin ==
 *                   I.client (the replica saw its own earlier write), or the
 *                   current value equals op.base_value (three-way: theirs ==
 *                   base, take ours)  -> apply; outcome "applied".
 *   concurrent      otherwise -> the field's policy:
 *     lww          apply iff (I.hlc, I.client) > (S.hlc, S.origin);
 *                  outcome merged(rule "lww") either way.
 *     server-wins  keep D; merged("server-wins").
 *     client-wins  apply; merged("client-wins").
 *     manual       keep D, record a conflict {base: op.base_value,
 *                  theirs: current value, ours: op's value};
 *                  outcome conflict(id).
 *   When the concurrent value already equals ours, it is "applied" (no-op).
 *   incr   always adds to the current integer (absent = 0): concurrent
 *          increments add; merged("counter") when concurrent. A non-integer
 *          current value -> the intent is rejected (nothing applied).
 *   add/remove  always merge on the current array treated as a set
 *          (absent = []): add appends if not present; remove deletes equal
 *          elements; merged("set") when concurrent. Non-array current
 *          value -> rejected.
 *   create = a set of every field of the value (base_value absent), plus an
 *          unset of live fields the value lacks, against the same rules;
 *          revives a tombstone.
 *   delete vs concurrent field writes (any live field with S.seq > I.base
 *          and origin != I.client): the collection policy (field NULL):
 *          lww: delete wins iff (I.hlc, I.client) > max stamp of those
 *          fields; server-wins keeps the document; client-wins deletes;
 *          manual keeps it and records a conflict on field "_doc"
 *          (theirs: the document, ours: null).
 *   a write to a tombstoned document whose deletion the replica did not see
 *          (del_stamp.seq > I.base) is concurrent with the delete: the
 *          field's policy compares against del_stamp (theirs = absent);
 *          winning revives the document with the written fields. A field
 *          tombstone the delete left (no value, stamp == del_stamp) stands
 *          for the delete, also after a revival: a write on it is
 *          concurrent iff the delete is, never "applied" by the three-way
 *          rule.
 *   resolve  always applies op.value (or unsets) — a person decided.
 * Any change stamps the written fields with (COMMIT_SEQ, HLC, I.client) and
 * sets D.version = COMMIT_SEQ. Ops apply in order; if one is rejected the
 * document is left exactly as it was on entry.
 *
 * An intent's outcome: rejected if any op was; else conflict if any op
 * conflicted (the first conflict's id); else merged (the first op's rule)
 * if any op merged; else applied.
 */
#ifndef TT_CORE_MERGE_H
#define TT_CORE_MERGE_H

#include <jansson.h>

#include "doc.h"
#include "intent.h"
#include "policy.h"

typedef enum {
  TT_OUT_APPLIED = 0,
  TT_OUT_MERGED,
  TT_OUT_CONFLICT,
  TT_OUT_REJECTED,
  TT_OUT__COUNT
} tt_outcome_kind;

/* "applied", "merged", "conflict", "rejected". Static storage. */
const char *tt_outcome_name(tt_outcome_kind k);
int tt_outcome_parse(const char *name, tt_outcome_kind *out);

typedef struct {
  char *id;       /* "<client hex>-<seq>-<op index>": unique, deterministic.
                     An op that records several (a create over fields each
                     changed concurrently) suffixes the 2nd, 3rd, ... with
                     ".1", ".2", ... (merge.c, R5). */
  char *field;    /* "_doc" for a delete conflict */
  json_t *base;   /* owned refs; NULL = absent */
  json_t *theirs;
  json_t *ours;
} tt_conflict;

typedef struct {
  tt_outcome_kind kind;
  const char *rule;      /* merged: "lww", "server-wins", "client-wins",
                            "counter", "set"; static; else NULL */
  char reason[160];      /* rejected: why, one line */
  int changed;           /* the document changed: commit it at COMMIT_SEQ */
  size_t concurrent;     /* same-field concurrent writes detected */
  char **concurrent_fields; /* [concurrent]: the field of each, in order
                               ("_doc" for a delete or an empty create
                               against a document-level write); owned */
  tt_conflict *conflicts;
  size_t nconflicts;
} tt_merge_result;

void tt_merge_result_clear(tt_merge_result *r);
void tt_conflict_clear(tt_conflict *c);

/* The field "_doc" is reserved for the whole document (merge.c, R6):
 * a resolve on it with "unset" deletes the document, with an object
 * replaces it; any other op on a field "_doc" is rejected. */
#define TT_DOC_FIELD "_doc"

/* Applies intent IN to DOC (in/out; a zeroed doc = never written) under
 * POLICIES. HLC is the intent's HLC after the server's clamp. Returns 0 with
 * *res filled (a rejection is an outcome, not an error), or TETHER_ENOMEM.
 * *res is overwritten (not freed) on entry; release it with
 * tt_merge_result_clear. On error DOC is unchanged and *res cleared. */
int tt_merge_intent(tt_doc *doc, const tt_intent *in, tt_hlc hlc,
                    uint64_t commit_seq, const tt_policy_table *policies,
                    tt_merge_result *res);

/* Replica side: applies IN's ops to a plain document VIEW (a JSON object,
 * or NULL when absent/deleted) as the author expects them to land, with the
 * same value rules (incr, set add/remove, create replaces, delete).
 * *out is a new reference or NULL when the result is absent.
 * TETHER_ETYPE when an op does not fit the current value (e.g. incr on a
 * string), and then *out is NULL and nothing changed. */
int tt_view_apply(const json_t *view, const tt_intent *in, json_t **out);

/* The value rules themselves, shared by both sides. Each returns a new
 * reference in *out, or TETHER_ETYPE. CUR may be NULL (absent). */
int tt_value_incr(const json_t *cur, const json_t *delta, json_t **out);
int tt_value_set_add(const json_t *cur, const json_t *elem, json_t **out);
int tt_value_set_remove(const json_t *cur, const json_t *elem, json_t **out);

#endif
