/* push.c — POST /v1/push as a group commit.
 *
 * The jobs of one call are handled in order inside ONE store transaction:
 * each job is validated completely against the state left by the jobs
 * before it (so two pushes of the same replica in one batch see each other),
 * and only a fully valid job writes anything. The transaction is committed
 * once, durably, and only then are the 200 answers filled; if the commit
 * fails nobody is acknowledged.
 *
 * Per new intent, everything commits together: the document, its single
 * changelog entry (the previous one is deleted: O(documents) changelog,
 * G7), conflict records, audit entries, the outcome record and the
 * replica's dedupe record (G1, G2, G3). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hlc.h"
#include "core/plant.h"
#include "server/server_int.h"

/* Outcome records below a push's first seq are pruned this many at a time
 * (the scan cannot delete under its own feet). */
#define PRUNE_CHUNK 1024

typedef struct {
  tt_server *s;
  tt_txn *t;
  uint64_t now_ms;
  /* working copies of the caches, published only after the commit */
  uint64_t *seq;
  uint64_t *audit_seq;
  uint32_t *audit_n;
  int dirty;       /* something was written */
  int docs_changed; /* a partition sequence moved */
  uint64_t n_out[TT_OUT__COUNT], n_dup, n_conc;
} batch;

typedef struct {
  uint8_t replica[TT_ID_LEN];
  tt_intent *in;
  size_t n;
  tt_srv_replica rec; /* dedupe state; advanced as intents are handled */
  json_t *outcomes;   /* the 200 answer's array, built while applying */
} jstate;

/* ---- errors ------------------------------------------------------------- */

/* Fills JOB with a 4xx/5xx body. Returns 1 (the job is settled), or
 * TETHER_ENOMEM when the body cannot be built. */
static int job_fail(tt_push_job *job, int status, json_t *body) {
  if (!body)
    return TETHER_ENOMEM;
  json_decref(job->response);
  job->status = status;
  job->response = body;
  return 1;
}

/* ---- validation --------------------------------------------------------- */

static int load_replica(tt_txn *t, const uint8_t id[TT_ID_LEN],
                        tt_srv_replica *out) {
  tt_bytes key = {id, TT_ID_LEN}, val;
  int rc = tt_get(t, TT_TABLE_REPLICAS, key, &val);
  if (rc == TETHER_ENOTFOUND) {
    memset(out, 0, sizeof *out);
    return 0;
  }
  if (rc)
    return rc;
  return tt_srv_replica_decode(val, out);
}

/* 0: JS holds a valid job, ready to apply. 1: JOB was answered with an
 * error and nothing may change for it. <0: a fatal error for the batch. */
static int validate(batch *b, tt_push_job *job, jstate *js) {
  static const uint8_t zero[TT_HASH_LEN];
  const json_t *req = job->request, *v, *rep, *arr;
  char err[200], hex[2 * TT_HASH_LEN + 1];
  size_t n, first_new;
  int rc;

  if (!json_is_object(req))
    return job_fail(job, 400,
                    tt_srv_error("json", "body is not a JSON object"));
  v = json_object_get(req, "v");
  if (!json_is_integer(v) || json_integer_value(v) != 1)
    return job_fail(job, 400,
                    tt_srv_error("version", "protocol version 1 expected"));
  rep = json_object_get(req, "replica");
  if (!json_is_string(rep) || json_string_length(rep) != 2 * TT_ID_LEN ||
      tt_hex_decode(json_string_value(rep), js->replica, TT_ID_LEN))
    return job_fail(job, 400,
                    tt_srv_error("invalid", "replica: 32 hex characters "
                                            "expected"));
  arr = json_object_get(req, "intents");
  if (!json_is_array(arr))
    return job_fail(job, 400,
                    tt_srv_error("invalid", "intents: array expected"));
  n = json_array_size(arr);
  if (n == 0)
    return job_fail(job, 400,
                    tt_srv_error("invalid", "intents: empty array"));
  if (n > TT_MAX_INTENTS)
    return job_fail(job, 413,
                    tt_srv_error("too_big", "intents: %zu is over the "
                                            "limit of %u per push",
                                 n, (unsigned)TT_MAX_INTENTS));
  js->in = calloc(n, sizeof *js->in);
  if (!js->in)
    return TETHER_ENOMEM;

  for (size_t i = 0; i < n; i++) {
    rc = tt_intent_from_json(json_array_get(arr, i), &js->in[i], err,
                             sizeof err);
    if (rc == TETHER_ENOMEM)
      return rc;
    if (rc) {
      /* ERR already names the intent ("intent seq N: key: why"). */
      js->n = i;
      if (rc == TETHER_ETOOBIG)
        return job_fail(job, 413, tt_srv_error("too_big", "%s", err));
      return job_fail(job, 400, tt_srv_error("invalid", "%s", err));
    }
    js->n = i + 1;
  }

  for (size_t i = 0; i < n; i++) {
    const tt_intent *in = &js->in[i];
    if (memcmp(in->client, js->replica, TT_ID_LEN) != 0) {
      tt_hex_encode(in->client, TT_ID_LEN, hex);
      return job_fail(job, 400,
                      tt_srv_error("replica",
                                   "intent seq %llu: client %s is not the "
                                   "pushing replica",
                                   (unsigned long long)in->seq, hex));
    }
    if (in->seq == 0 || (i > 0 && in->seq != js->in[i - 1].seq + 1))
      return job_fail(job, 400,
                      tt_srv_error("invalid",
                                   "intent seq %llu: seq not contiguous "
                                   "within the request",
                                   (unsigned long long)in->seq));
    rc = tt_intent_check_hash(in);
    if (rc == TETHER_ENOMEM)
      return rc;
    if (rc)
      return job_fail(job, 400,
                      tt_srv_error("hash",
                                   "intent seq %llu: hash is not the hash "
                                   "of its content",
                                   (unsigned long long)in->seq));
    if (i > 0 && memcmp(in->prev, js->in[i - 1].hash, TT_HASH_LEN) != 0)
      return job_fail(job, 409,
                      tt_srv_error("chain",
                                   "intent seq %llu: prev is not the hash "
                                   "of seq %llu",
                                   (unsigned long long)in->seq,
                                   (unsigned long long)(in->seq - 1)));
  }

  rc = load_replica(b->t, js->replica, &js->rec);
  if (rc == TETHER_ECORRUPT)
    return job_fail(job, 500,
                    tt_srv_error("internal", "the replica's dedupe record "
                                             "is corrupt"));
  if (rc)
    return rc;
  if (js->in[0].seq > js->rec.last_seq + 1) {
    json_t *body = tt_srv_error(
        "gap", "first intent seq %llu, expected %llu",
        (unsigned long long)js->in[0].seq,
        (unsigned long long)(js->rec.last_seq + 1));
    if (body && json_object_set_new_nocheck(
                    body, "expected",
                    json_integer((json_int_t)(js->rec.last_seq + 1)))) {
      json_decref(body);
      body = NULL;
    }
    return job_fail(job, 409, body);
  }
  /* in[0].seq <= last + 1 here, so this index is the first new intent (or
   * n when every intent is a duplicate). */
  first_new = (size_t)(js->rec.last_seq + 1 - js->in[0].seq);
  if (first_new < n &&
      memcmp(js->in[first_new].prev,
             js->rec.last_seq ? js->rec.last_hash : zero, TT_HASH_LEN) != 0)
    return job_fail(job, 409,
                    tt_srv_error("chain",
                                 "intent seq %llu: prev is not the hash of "
                                 "the last applied intent (seq %llu)",
                                 (unsigned long long)js->in[first_new].seq,
                                 (unsigned long long)js->rec.last_seq));
  return 0;
}

/* ---- writing ------------------------------------------------------------ */

static int put(batch *b, tt_table tab, const void *k, size_t kl,
               const void *v, size_t vl) {
  tt_bytes key = {k, kl}, val = {v, vl};
  b->dirty = 1;
  return tt_put(b->t, tab, key, val);
}

static int del(batch *b, tt_table tab, const void *k, size_t kl) {
  tt_bytes key = {k, kl};
  b->dirty = 1;
  return tt_del(b->t, tab, key);
}

static int put_json(batch *b, tt_table tab, const void *k, size_t kl,
                    const json_t *v) {
  char *buf = NULL;
  size_t len = 0;
  int rc = tt_srv_json_encode(v, &buf, &len);
  if (!rc)
    rc = put(b, tab, k, kl, buf, len);
  free(buf);
  return rc;
}

typedef struct {
  uint8_t replica[TT_ID_LEN];
  uint64_t below;
  uint64_t seqs[PRUNE_CHUNK];
  size_t n;
} prune_scan;

static int prune_cb(void *ctx, tt_bytes key, tt_bytes val) {
  prune_scan *ps = ctx;
  uint64_t sq;
  (void)val;
  if (key.len != TT_ID_LEN + 8 ||
      memcmp(key.data, ps->replica, TT_ID_LEN) != 0)
    return 1;
  sq = tt_be64_get((const uint8_t *)key.data + TT_ID_LEN);
  if (sq >= ps->below || ps->n == PRUNE_CHUNK)
    return 1;
  ps->seqs[ps->n++] = sq;
  return 0;
}

/* A replica pushing from seq S has durably taken every outcome below S, so
 * those records can go: the outcome table stays O(one push) per replica. */
static int prune_outcomes(batch *b, const uint8_t replica[TT_ID_LEN],
                          uint64_t below) {
  prune_scan *ps = malloc(sizeof *ps);
  uint8_t k[TT_ID_LEN + 8];
  int rc = 0;

  if (!ps)
    return TETHER_ENOMEM;
  memcpy(ps->replica, replica, TT_ID_LEN);
  ps->below = below;
  do {
    tt_bytes from = {k, sizeof k};
    ps->n = 0;
    tt_srv_outcome_key(k, replica, 0);
    rc = tt_scan(b->t, TT_TABLE_OUTCOMES, from, prune_cb, ps);
    if (rc < 0)
      goto out;
    rc = 0;
    for (size_t i = 0; i < ps->n && !rc; i++) {
      tt_srv_outcome_key(k, replica, ps->seqs[i]);
      rc = del(b, TT_TABLE_OUTCOMES, k, sizeof k);
    }
  } while (!rc && ps->n == PRUNE_CHUNK);
out:
  free(ps);
  return rc;
}

static int duplicate(batch *b, jstate *js, const tt_intent *in) {
  uint8_t k[TT_ID_LEN + 8];
  tt_bytes key = {k, sizeof k}, val;
  tt_srv_outcome o;
  json_t *conflict = NULL, *j = NULL;
  int rc;

  b->n_dup++;
  tt_srv_outcome_key(k, js->replica, in->seq);
  rc = tt_get(b->t, TT_TABLE_OUTCOMES, key, &val);
  if (rc && rc != TETHER_ENOTFOUND)
    return rc;
  if (!rc && tt_srv_outcome_decode(val, in->seq, &o, &conflict) == 0) {
    j = tt_srv_outcome_json(&o, 1);
  } else {
    /* Pruned (the replica said it had it) or unreadable: the effect
     * happened exactly once, which is all that can be said. */
    j = json_pack("{s:I,s:s,s:b}", "seq", (json_int_t)in->seq, "outcome",
                  "duplicate", "duplicate", 1);
  }
  json_decref(conflict);
  if (!j || json_array_append_new(js->outcomes, j))
    return TETHER_ENOMEM;
  return 0;
}

/* A resolve op may only settle an open conflict on the same coll/id/field.
 * On success rec[i] holds the conflict record of op i (others NULL). */
static int check_resolves(batch *b, const tt_intent *in, json_t **rec,
                          int *ok) {
  *ok = 1;
  for (size_t i = 0; i < in->nops; i++) {
    const tt_op *op = &in->ops[i];
    tt_bytes key, val;
    json_t *r = NULL;
    int rc;

    if (op->kind != TT_OP_RESOLVE)
      continue;
    if (!op->conflict || !op->field) {
      *ok = 0;
      return 0;
    }
    key.data = op->conflict;
    key.len = strlen(op->conflict);
    rc = tt_get(b->t, TT_TABLE_CONFLICTS, key, &val);
    if (rc == TETHER_ENOTFOUND) {
      *ok = 0;
      return 0;
    }
    if (rc)
      return rc;
    if (tt_srv_json_decode(val, &r)) {
      *ok = 0;
      return 0;
    }
    rec[i] = r;
    if (!json_is_string(json_object_get(r, "state")) ||
        strcmp(json_string_value(json_object_get(r, "state")), "open") ||
        !json_is_string(json_object_get(r, "coll")) ||
        strcmp(json_string_value(json_object_get(r, "coll")), in->coll) ||
        !json_is_string(json_object_get(r, "id")) ||
        strcmp(json_string_value(json_object_get(r, "id")), in->id) ||
        !json_is_string(json_object_get(r, "field")) ||
        strcmp(json_string_value(json_object_get(r, "field")), op->field)) {
      *ok = 0;
      return 0;
    }
  }
  return 0;
}

static int put_conflict(batch *b, const tt_intent *in, const char *rephex,
                        uint32_t p, uint64_t commit, const tt_conflict *c) {
  json_t *r = json_pack("{s:i,s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:I}", "v", 1,
                        "coll", in->coll, "id", in->id, "field",
                        c->field ? c->field : "", "state", "open", "replica",
                        rephex, "seq", (json_int_t)in->seq, "p",
                        (json_int_t)p, "commit", (json_int_t)commit);
  int rc = 0;

  if (!r)
    return TETHER_ENOMEM;
  if (!c->id) {
    json_decref(r);
    return TETHER_EINVAL;
  }
  if ((c->base && json_object_set_nocheck(r, "base", c->base)) ||
      (c->theirs && json_object_set_nocheck(r, "theirs", c->theirs)) ||
      (c->ours && json_object_set_nocheck(r, "ours", c->ours)))
    rc = TETHER_ENOMEM;
  if (!rc)
    rc = put_json(b, TT_TABLE_CONFLICTS, c->id, strlen(c->id), r);
  json_decref(r);
  return rc;
}

static int mark_resolved(batch *b, const tt_op *op, json_t *rec,
                         const char *rephex, uint64_t seq, uint64_t commit) {
  if (json_object_set_new_nocheck(rec, "state", json_string("resolved")) ||
      json_object_set_new_nocheck(rec, "resolved_by", json_string(rephex)) ||
      json_object_set_new_nocheck(rec, "resolved_seq",
                                  json_integer((json_int_t)seq)) ||
      json_object_set_new_nocheck(rec, "resolved_commit",
                                  json_integer((json_int_t)commit)))
    return TETHER_ENOMEM;
  return put_json(b, TT_TABLE_CONFLICTS, op->conflict, strlen(op->conflict),
                  rec);
}

/* ---- audit -------------------------------------------------------------- */

/* Which fields of IN met a concurrent write, told from the document as it
 * was before the merge. Descriptive only, for the audit trail: the decision
 * itself was made by tt_merge_intent, whose count (res->concurrent) says
 * how many entries to write. */
static int field_concurrent(const tt_doc *old, const tt_intent *in,
                            const char *name, const json_t *base_value) {
  const tt_field *f = tt_doc_field(old, name);
  if (old->deleted && old->del_stamp.seq > in->base &&
      memcmp(old->del_stamp.origin, in->client, TT_ID_LEN) != 0)
    return 1;
  if (!f || f->stamp.seq <= in->base ||
      memcmp(f->stamp.origin, in->client, TT_ID_LEN) == 0)
    return 0;
  return !tt_canon_equal(f->value, base_value);
}

typedef struct {
  const char *names[16];
  size_t n;
} cand_list;

static void cand_add(cand_list *cl, const char *name) {
  for (size_t i = 0; i < cl->n; i++)
    if (!strcmp(cl->names[i], name))
      return;
  if (cl->n < sizeof cl->names / sizeof cl->names[0])
    cl->names[cl->n++] = name;
}

static void find_concurrent(const tt_doc *old, const tt_intent *in,
                            cand_list *cl) {
  for (size_t i = 0; i < in->nops; i++) {
    const tt_op *op = &in->ops[i];
    switch (op->kind) {
    case TT_OP_SET:
    case TT_OP_UNSET:
    case TT_OP_INCR:
    case TT_OP_ADD:
    case TT_OP_REMOVE:
      if (op->field && field_concurrent(old, in, op->field, op->base_value))
        cand_add(cl, op->field);
      break;
    case TT_OP_CREATE: {
      const char *k;
      json_t *val;
      json_object_foreach(op->value, k, val) {
        if (field_concurrent(old, in, k, NULL))
          cand_add(cl, k);
      }
      for (size_t f = 0; f < old->nfields; f++)
        if (old->fields[f].value &&
            !json_object_get(op->value, old->fields[f].name) &&
            field_concurrent(old, in, old->fields[f].name,
                             old->fields[f].value))
          cand_add(cl, old->fields[f].name);
      break;
    }
    case TT_OP_DELETE:
      for (size_t f = 0; f < old->nfields; f++) {
        const tt_field *fl = &old->fields[f];
        if (fl->value && fl->stamp.seq > in->base &&
            memcmp(fl->stamp.origin, in->client, TT_ID_LEN) != 0) {
          cand_add(cl, "_doc");
          break;
        }
      }
      break;
    default:
      break;
    }
  }
}

static int audit_put(batch *b, uint32_t p, const json_t *entry) {
  uint8_t k[16];
  if (b->audit_seq[p] != b->seq[p]) {
    b->audit_seq[p] = b->seq[p];
    b->audit_n[p] = 0;
  }
  tt_srv_audit_key(k, p, b->seq[p], b->audit_n[p]++);
  return put_json(b, TT_TABLE_AUDIT, k, sizeof k, entry);
}

static int audit(batch *b, const tt_intent *in, const char *rephex,
                 uint32_t p, tt_bytes old_bytes, const tt_doc *now,
                 const tt_merge_result *res, uint64_t commit) {
  tt_doc old = {0};
  cand_list cl = {.n = 0};
  int rc = 0;

  if (old_bytes.len && tt_doc_decode(old_bytes.data, old_bytes.len, &old))
    memset(&old, 0, sizeof old);
  find_concurrent(&old, in, &cl);
  for (size_t i = 0; i < res->concurrent && !rc; i++) {
    const char *field = i < cl.n ? cl.names[i] : NULL;
    int doc = field && !strcmp(field, "_doc");
    tt_policy pol =
        tt_policy_lookup(b->s->pol, in->coll, doc ? NULL : field);
    const char *winner = "server";
    const char *cid = NULL;
    json_t *e;

    for (size_t c = 0; c < res->nconflicts; c++)
      if (field && res->conflicts[c].field &&
          !strcmp(res->conflicts[c].field, field))
        cid = res->conflicts[c].id;
    if (cid) {
      winner = "held";
    } else if (res->rule && (!strcmp(res->rule, "counter") ||
                             !strcmp(res->rule, "set"))) {
      winner = "merged";
    } else if (doc) {
      winner = res->changed && now->deleted ? "client" : "server";
    } else if (field && res->changed) {
      const tt_field *f = tt_doc_field(now, field);
      if (f && f->stamp.seq == commit &&
          !memcmp(f->stamp.origin, in->client, TT_ID_LEN))
        winner = "client";
    }
    e = json_pack("{s:s,s:s,s:s,s:I,s:I,s:s,s:s,s:s,s:I}", "coll", in->coll,
                  "id", in->id, "replica", rephex, "seq", (json_int_t)in->seq,
                  "hlc", (json_int_t)in->hlc, "policy", tt_policy_name(pol),
                  "outcome", tt_outcome_name(res->kind), "winner", winner,
                  "commit", (json_int_t)commit);
    if (!e ||
        (field && json_object_set_new_nocheck(e, "field", json_string(field))) ||
        (res->rule &&
         json_object_set_new_nocheck(e, "rule", json_string(res->rule))) ||
        (cid && json_object_set_new_nocheck(e, "conflict", json_string(cid))))
      rc = TETHER_ENOMEM;
    if (!rc)
      rc = audit_put(b, p, e);
    json_decref(e);
  }
  tt_doc_clear(&old);
  return rc;
}

/* ---- one new intent ----------------------------------------------------- */

static int apply_intent(batch *b, jstate *js, const tt_intent *in,
                        const char *rephex) {
  tt_server *s = b->s;
  char dk[TT_SRV_DOCKEY_MAX];
  size_t dkl = tt_srv_doc_key(dk, in->coll, in->id);
  uint32_t p = tt_server_partition_of(in->coll, in->id, s->nparts);
  tt_bytes key = {dk, dkl}, old = {NULL, 0};
  tt_doc doc = {0};
  tt_merge_result res = {0};
  json_t **resolves = NULL, *cjson = NULL, *oj = NULL;
  tt_srv_outcome o = {0};
  uint8_t *obuf = NULL;
  size_t olen = 0;
  uint64_t prev_version = 0, commit = 0;
  int rc, ok = 1;

  rc = tt_get(b->t, TT_TABLE_DOCS, key, &old);
  if (rc == TETHER_ENOTFOUND) {
    old.data = NULL;
    old.len = 0;
    rc = 0;
  }
  if (rc)
    goto out;
  if (old.len && tt_doc_decode(old.data, old.len, &doc)) {
    /* Never guess over a corrupt record: the intent cannot be merged, but
     * it must not wedge the replica's outbox either. */
    res.kind = TT_OUT_REJECTED;
    tt_errf(res.reason, sizeof res.reason, "stored document is corrupt");
    goto outcome;
  }
  prev_version = doc.version;

  for (size_t i = 0; i < in->nops; i++)
    if (in->ops[i].kind == TT_OP_RESOLVE) {
      resolves = calloc(in->nops, sizeof *resolves);
      if (!resolves) {
        rc = TETHER_ENOMEM;
        goto out;
      }
      rc = check_resolves(b, in, resolves, &ok);
      if (rc)
        goto out;
      break;
    }
  if (!ok) {
    res.kind = TT_OUT_REJECTED;
    tt_errf(res.reason, sizeof res.reason, "unknown conflict");
    goto outcome;
  }

  rc = tt_merge_intent(&doc, in,
                       TT_PLANTED("lww-ignores-clamp")
                           ? in->hlc
                           : tt_hlc_clamp(in->hlc, b->now_ms, s->max_skew_ms),
                       b->seq[p] + 1, s->pol, &res);
  if (rc)
    goto out;
  if (res.changed)
    b->seq[p]++;
  commit = res.changed ? b->seq[p] : prev_version;

  /* The old document bytes are still valid: nothing was written since the
   * get. Audit first, before any put. */
  if (res.concurrent) {
    b->n_conc += res.concurrent;
    rc = audit(b, in, rephex, p, old, &doc, &res, commit);
    if (rc)
      goto out;
  }

  if (res.changed) {
    char *enc = NULL;
    size_t elen = 0;
    uint8_t ck[12];

    rc = tt_doc_encode(&doc, &enc, &elen);
    if (!rc)
      rc = put(b, TT_TABLE_DOCS, dk, dkl, enc, elen);
    free(enc);
    if (rc)
      goto out;
    if (prev_version) {
      tt_srv_change_key(ck, p, prev_version);
      rc = del(b, TT_TABLE_CHANGES, ck, sizeof ck);
      if (rc)
        goto out;
    }
    tt_srv_change_key(ck, p, b->seq[p]);
    rc = put(b, TT_TABLE_CHANGES, ck, sizeof ck, dk, dkl);
    if (rc)
      goto out;
    b->docs_changed = 1;
  }
  for (size_t i = 0; i < res.nconflicts; i++) {
    rc = put_conflict(b, in, rephex, p, commit, &res.conflicts[i]);
    if (rc)
      goto out;
  }
  if (resolves && res.kind != TT_OUT_REJECTED)
    for (size_t i = 0; i < in->nops; i++)
      if (resolves[i]) {
        rc = mark_resolved(b, &in->ops[i], resolves[i], rephex, in->seq,
                           commit);
        if (rc)
          goto out;
      }

outcome:
  if (res.kind == TT_OUT_REJECTED) {
    commit = prev_version;
    o.reason = res.reason;
    o.reason_len = strlen(res.reason);
  }
  if (res.kind == TT_OUT_MERGED && res.rule) {
    o.rule = res.rule;
    o.rule_len = strlen(res.rule);
  }
  if (res.kind == TT_OUT_CONFLICT && res.nconflicts) {
    cjson = tt_srv_conflict_json(&res.conflicts[0]);
    if (!cjson) {
      rc = TETHER_ENOMEM;
      goto out;
    }
    o.conflict = cjson;
  }
  o.seq = in->seq;
  o.kind = res.kind;
  o.p = p;
  o.commit = commit;
  b->n_out[res.kind]++;
  rc = tt_srv_outcome_encode(&o, &obuf, &olen);
  if (!rc) {
    uint8_t okey[TT_ID_LEN + 8];
    tt_srv_outcome_key(okey, js->replica, in->seq);
    rc = put(b, TT_TABLE_OUTCOMES, okey, sizeof okey, obuf, olen);
  }
  if (rc)
    goto out;
  oj = tt_srv_outcome_json(&o, 0);
  if (!oj || json_array_append_new(js->outcomes, oj)) {
    rc = TETHER_ENOMEM;
    goto out;
  }
out:
  if (resolves) {
    for (size_t i = 0; i < in->nops; i++)
      json_decref(resolves[i]);
    free(resolves);
  }
  free(obuf);
  json_decref(cjson);
  tt_merge_result_clear(&res);
  tt_doc_clear(&doc);
  return rc;
}

static int apply_job(batch *b, jstate *js) {
  char rephex[2 * TT_ID_LEN + 1];
  uint64_t before = js->rec.last_seq;
  int rc;

  tt_hex_encode(js->replica, TT_ID_LEN, rephex);
  js->outcomes = json_array();
  if (!js->outcomes)
    return TETHER_ENOMEM;
  rc = prune_outcomes(b, js->replica, js->in[0].seq);
  for (size_t i = 0; i < js->n && !rc; i++) {
    const tt_intent *in = &js->in[i];
    if (in->seq <= js->rec.last_seq && !TT_PLANTED("skip-dedupe")) {
      rc = duplicate(b, js, in);
      continue;
    }
    rc = apply_intent(b, js, in, rephex);
    if (rc)
      break;
    /* A rejected intent consumes its seq too: the outbox moves on. */
    js->rec.last_seq = in->seq;
    memcpy(js->rec.last_hash, in->hash, TT_HASH_LEN);
  }
  if (!rc && js->rec.last_seq != before) {
    uint8_t rb[TT_SRV_REPLICA_LEN];
    tt_srv_replica_encode(&js->rec, rb);
    rc = put(b, TT_TABLE_REPLICAS, js->replica, TT_ID_LEN, rb, sizeof rb);
  }
  return rc;
}

static json_t *ok_body(jstate *js) {
  json_t *j = json_object();
  if (!j || json_object_set_new_nocheck(j, "v", json_integer(1)) ||
      json_object_set_new_nocheck(j, "acked",
                                  json_integer((json_int_t)js->rec.last_seq)) ||
      json_object_set_nocheck(j, "outcomes", js->outcomes)) {
    json_decref(j);
    return NULL;
  }
  return j;
}

/* Fills the 200 answer of every job not already answered. */
static void answer_ok(tt_push_job *jobs, jstate *js, size_t njobs) {
  for (size_t i = 0; i < njobs; i++) {
    if (jobs[i].status)
      continue;
    jobs[i].response = ok_body(&js[i]);
    /* Committed but the answer cannot be built: the replica retries and
     * gets duplicates with the same outcomes. */
    jobs[i].status = jobs[i].response ? 200 : 503;
    if (!jobs[i].response)
      jobs[i].response = tt_srv_error("unavailable", "out of memory");
  }
}

static void jstate_clear(jstate *js) {
  if (js->in) {
    for (size_t i = 0; i < js->n; i++)
      tt_intent_clear(&js->in[i]);
    free(js->in);
  }
  json_decref(js->outcomes);
  memset(js, 0, sizeof *js);
}

int tt_server_push(tt_server *s, tt_push_job *jobs, size_t njobs,
                   uint64_t now_ms) {
  batch b = {0};
  jstate *js = NULL;
  size_t nbad = 0;
  int rc = 0;

  if (!s || (!jobs && njobs))
    return TETHER_EINVAL;
  if (njobs == 0)
    return 0;
  for (size_t i = 0; i < njobs; i++) {
    jobs[i].status = 0;
    jobs[i].response = NULL;
  }
  if (s->stale) {
    rc = tt_srv_reload(s);
    if (rc)
      goto fail;
  }
  js = calloc(njobs, sizeof *js);
  b.seq = malloc(s->nparts * sizeof *b.seq);
  b.audit_seq = malloc(s->nparts * sizeof *b.audit_seq);
  b.audit_n = malloc(s->nparts * sizeof *b.audit_n);
  if (!js || !b.seq || !b.audit_seq || !b.audit_n) {
    rc = TETHER_ENOMEM;
    goto fail;
  }
  memcpy(b.seq, s->seq, s->nparts * sizeof *b.seq);
  memcpy(b.audit_seq, s->audit_seq, s->nparts * sizeof *b.audit_seq);
  memcpy(b.audit_n, s->audit_n, s->nparts * sizeof *b.audit_n);
  b.s = s;
  b.now_ms = now_ms;

  /* ONE write transaction for the whole group commit: the LMDB backend's
   * transactions span all partitions, so "partition 0" stands for all.
   * A Redis backend maps each partition to one hash slot and needs one
   * transaction per partition touched (jobs split by partition, one
   * MULTI/EXEC each) — a later issue. */
  rc = tt_txn_begin(s->st, 0, 1, &b.t);
  if (rc)
    goto fail;

  for (size_t i = 0; i < njobs; i++) {
    rc = validate(&b, &jobs[i], &js[i]);
    if (rc == 1) {
      nbad++;
      jstate_clear(&js[i]);
      rc = 0;
      continue;
    }
    if (rc)
      goto fail;
    rc = apply_job(&b, &js[i]);
    if (rc)
      goto fail;
  }

  if (b.dirty) {
    for (unsigned p = 0; p < s->nparts && !rc; p++)
      if (b.seq[p] != s->seq[p])
        rc = tt_srv_store_seq(b.t, p, b.seq[p]);
    if (rc)
      goto fail;
    if (TT_PLANTED("ack-before-commit"))
      answer_ok(jobs, js, njobs);
    if (s->fault && s->fault(s->fault_ctx, "push:before-commit")) {
      rc = TETHER_EUNAVAILABLE;
      goto fail;
    }
    rc = tt_commit(b.t);
    b.t = NULL;
    if (rc)
      goto fail;
  } else {
    tt_abort(b.t); /* all duplicates or all refused: nothing to make durable */
    b.t = NULL;
  }

  /* Durable: publish the caches, then acknowledge. */
  memcpy(s->seq, b.seq, s->nparts * sizeof *b.seq);
  memcpy(s->audit_seq, b.audit_seq, s->nparts * sizeof *b.audit_seq);
  memcpy(s->audit_n, b.audit_n, s->nparts * sizeof *b.audit_n);
  answer_ok(jobs, js, njobs);
  atomic_fetch_add_explicit(&s->applied, b.n_out[TT_OUT_APPLIED],
                            memory_order_relaxed);
  atomic_fetch_add_explicit(&s->merged, b.n_out[TT_OUT_MERGED],
                            memory_order_relaxed);
  atomic_fetch_add_explicit(&s->conflict, b.n_out[TT_OUT_CONFLICT],
                            memory_order_relaxed);
  atomic_fetch_add_explicit(&s->rejected, b.n_out[TT_OUT_REJECTED],
                            memory_order_relaxed);
  atomic_fetch_add_explicit(&s->duplicate, b.n_dup, memory_order_relaxed);
  atomic_fetch_add_explicit(&s->concurrent, b.n_conc, memory_order_relaxed);
  atomic_fetch_add_explicit(&s->bad_requests, nbad, memory_order_relaxed);
  if (b.docs_changed)
    atomic_fetch_add_explicit(&s->commits, 1, memory_order_release);
  /* Durable and answered, but the process dies before the answers leave:
   * the caller must drop them (the simulation logs them as applied). */
  if (b.dirty && s->fault && s->fault(s->fault_ctx, "push:after-commit"))
    rc = TETHER_EUNAVAILABLE;
  goto out;

fail:
  tt_abort(b.t);
  b.t = NULL;
  for (size_t i = 0; i < njobs; i++) {
    if (TT_PLANTED("ack-before-commit") && jobs[i].status == 200)
      continue;
    json_decref(jobs[i].response);
    if (rc == TETHER_EFULL) {
      jobs[i].status = 507;
      jobs[i].response =
          tt_srv_error("full", "the store is full; nothing was applied");
    } else {
      jobs[i].status = 503;
      jobs[i].response = tt_srv_error(
          "unavailable", "commit failed (%s); nothing was acknowledged",
          tether_err_name(rc));
    }
  }
  /* The store may have moved under the caches (or the working copies went
   * half-way): read them again before the next push. */
  tt_srv_reload(s);
out:
  atomic_fetch_add_explicit(&s->pushes, njobs, memory_order_relaxed);
  if (js)
    for (size_t i = 0; i < njobs; i++)
      jstate_clear(&js[i]);
  free(js);
  free(b.seq);
  free(b.audit_seq);
  free(b.audit_n);
  return rc;
}
