/* push.c — POST /v1/push as a group commit, one store transaction per
 * partition.
 *
 * A store transaction covers ONE partition (store.h): on Redis Cluster a
 * partition is one hash slot. So a group commit is:
 *
 *   1. Check every job's shape with no store at all (parse, sizes, replica,
 *      seq contiguity, hashes, the chain inside the request). A job that
 *      fails gets its 4xx and changes nothing.
 *   2. Read the HOME record of each replica involved (in its home
 *      partition h(R), server_int.h) and check, job by job, the gap and
 *      the chain against it and against the valid jobs before it: the first
 *      intent above home.last_seq must chain on home.last_hash, and an
 *      intent AT home.last_seq must have that hash (through the chain this
 *      vouches for every intent of the job below it). Otherwise 409
 *      "chain": a replica restored from a backup re-issuing other intents
 *      under old seqs must not be told they were applied. Intents below
 *      home.last_seq are judged by the dedupe records, and each outcome
 *      record keeps its intent's hash to compare with (step 3).
 *   3. Group the intents of the valid jobs by partition (job order, and so
 *      each replica's seq order, is kept within a partition) and run ONE
 *      write transaction per partition touched, in increasing partition
 *      order. In partition p, an intent whose seq is at or below its
 *      replica's DEDUPE record for p is a duplicate (its stored outcome is
 *      answered again); any other is merged and written together with its
 *      changelog entry (the previous one of the document deleted: an
 *      O(documents) changelog, G7), conflict records, audit entries,
 *      outcome record, the advanced dedupe record and p's commit sequence.
 *      Home records advance (only ever up) in the transaction of their home
 *      partition when it runs anyway, else in one of their own after the
 *      others. Whatever depends on one intent alone (merge, size limit,
 *      outcome) is settled before it writes anything. If a job fails on
 *      its own there (its answer cannot be built), or a duplicate's stored
 *      outcome has another hash (409 chain), its replica is dropped from
 *      the batch and the partition's transaction is redone without it;
 *      the other jobs go on. (With several partitions, partitions that
 *      committed before keep what they applied of it.)
 *   4. A job is answered 200 only when every partition holding its intents
 *      and its home update have committed.
 *
 * With one partition (the embedded default) all of it is ONE transaction
 * and one durable commit, and the home record doubles as the dedupe record.
 *
 * What holds with several partitions, and why:
 *   G1  an intent is acknowledged only after the transaction holding its
 *       effect committed.
 *   G2  exactly once, without cross-partition transactions: "applied in p"
 *       and "dedupe record of p moved past it" commit together, so however
 *       many times an intent is delivered, and whatever crashed between two
 *       partition commits, it is applied in its partition once.
 *   G3  per-replica order holds PER PARTITION: within p, a replica's
 *       intents are applied in seq order (a push is contiguous and starts
 *       at or below home.last_seq + 1, so nothing is skipped). Across
 *       partitions there is no order: a crash after partition 0 committed
 *       and before partition 1 did leaves seq 8 (in 0) applied and seq 7 (in
 *       1) not, until the replica's retry — every intent not acknowledged is
 *       resent — applies seq 7; pulls meanwhile may show 8 without 7. Gaps
 *       and broken chains are still found, from the home record.
 *   The same crash can leave the home record ahead of partitions that have
 *   not applied intents at or below it (when the home partition committed
 *   first). That is safe because the home record never decides a
 *   duplicate; it only means a replica that skipped unacknowledged intents
 *   (which a correct one never does) would not be told of a gap there.
 *
 * Several servers may run this on one store at once: nothing is cached,
 * every write transaction of p writes p's commit sequence (read at its
 * start), so two of them on p always conflict and the store serializes
 * them (LMDB: one writer; Redis: the watched key changed, TETHER_ERETRY,
 * and the transaction is redone from scratch). */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hlc.h"
#include "core/json.h"
#include "core/plant.h"
#include "server/server_int.h"

/* Outcome records below a push's first seq are pruned this many at a time
 * (the scan cannot delete under its own feet). */
#define PRUNE_CHUNK 1024

/* part_try's answer "redo this partition from scratch without the jobs of
 * the replicas just dropped" (r->dropped): one job's trouble must not fail
 * the others of the group commit. */
#define PART_REDO 1
/* Jobs failed on their own (out of memory building an answer, ...) before
 * the whole group commit is failed instead: each costs a redo of the
 * partition, and when memory is short for everyone there is no point. */
#define MAX_JOB_FAILURES 8

enum { HOME_ABSENT = 0, HOME_FOUND, HOME_CORRUPT };

/* One replica with valid-looking jobs in the batch. */
typedef struct {
  uint8_t id[TT_ID_LEN];
  unsigned home;
  int state;             /* HOME_*: what the home record read said */
  tt_srv_replica stored; /* the home record as read in step 2 */
  tt_srv_replica rec;    /* the chain head after the valid jobs so far */
  int home_write;        /* rec is above stored: the home record moves */
  int home_done;         /* that update committed */
  int bad;               /* a dedupe record of it is corrupt: no home update */
  int dropped;           /* a job of it failed or diverged in step 3: none
                            of its jobs runs any further, no home update */
  /* the partition transaction running now (gen == part.gen) */
  unsigned gen;
  uint64_t dd0, dd; /* its dedupe record there: as read, as advanced */
  int dd_bad;
} rstate;

typedef struct {
  uint8_t replica[TT_ID_LEN];
  char rephex[2 * TT_ID_LEN + 1];
  tt_intent *in;
  size_t n;
  /* [n] or NULL: 1 where the hash was already found right from the
   * intent's canonical text (tt_intent_hash_text), so check_intents need
   * not write the intent again to hash it */
  unsigned char *hash_ok;
  size_t rep;          /* index in batch.reps */
  int valid;           /* passed the checks so far: its intents will run */
  int ahead;           /* the request said "ahead": true (sent before the
                          answer to the replica's previous push) */
  int early;           /* answered 200 before its commit (planted bug) */
  int corrupt;         /* a dedupe record it needs is unreadable: 500 */
  int failed;          /* its own error in step 3 (TETHER_E*): 503 */
  uint64_t diverged;   /* seq of an intent that is not the one applied
                          under that seq: 409 chain; 0 = none */
  unsigned parts_left; /* partitions holding its intents, not committed */
  int needs_home;      /* its last seq is above the stored home record */
  uint64_t acked;
  /* Outcomes below this seq may be forgotten: the push's first seq, or
   * lower when the request says "seen" (PROTOCOL.md: the replica may send
   * a push before it has recorded the previous one's outcomes). */
  uint64_t prune_below;
  unsigned gen, mark;  /* partition transaction that pruned / counted it */
  /* [n]: each intent's outcome, as canonical text (malloc'd, out_len[i]
   * bytes), once its partition ran; the answer is written from these */
  char **out;
  size_t *out_len;
} jstate;

typedef struct {
  uint32_t job, idx;
} item;

typedef struct {
  tt_server *s;
  uint64_t now_ms;
  unsigned P;
  tt_push_job *jobs;
  jstate *js;
  size_t njobs;
  rstate *reps;
  size_t nreps;
  size_t *rorder, *hstart; /* reps by home partition: rorder[hstart[h]..] */
  item *items;
  size_t *pstart;   /* intents of partition p: items[pstart[p]..pstart[p+1]) */
  size_t *touched;  /* scratch: reps met in the partition running [nreps] */
  tt_txn *t0;       /* P == 1: THE transaction, opened to read the homes */
  unsigned gen;
  /* totals of the committed partitions */
  uint64_t n_out[TT_OUT__COUNT], n_dup, n_conc;
  int docs_changed;
  unsigned job_failures; /* jobs failed on their own so far */
} batch;

/* One partition's write transaction. */
typedef struct {
  batch *bt;
  tt_server *s;
  uint64_t now_ms;
  tt_txn *t;
  uint32_t p;
  unsigned gen;
  int fresh; /* T is batch.t0, where the home records were just read */
  uint64_t seq0, seq; /* p's commit sequence: as read, as advanced */
  uint64_t audit_seq;
  uint32_t audit_n;
  int audit_known;
  int dirty, docs_changed;
  uint64_t n_out[TT_OUT__COUNT], n_dup, n_conc;
} part;

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

/* ---- step 1: the shape of each job, no store ---------------------------- */

/* The envelope of a request: "v", "replica", "intents" (an array; N is
 * the number of its elements, which the streamed reader did not keep),
 * "seen" and "ahead". 0, 1 (JOB answered with a 4xx) or TETHER_ENOMEM. */
static int check_envelope(tt_push_job *job, jstate *js, const json_t *req,
                          size_t n, uint64_t *seen) {
  const json_t *v, *rep;
  if (!json_is_object(req))
    return job_fail(job, 400,
                    tt_srv_error("json", "body is not a JSON object"));
  v = json_object_get(req, "v");
  if (!json_is_integer(v) || json_integer_value(v) != TETHER_PROTOCOL_VERSION)
    return job_fail(job, 400,
                    tt_srv_error("version",
                                 "\"v\" must be %d, the protocol version "
                                 "this server speaks",
                                 TETHER_PROTOCOL_VERSION));
  rep = json_object_get(req, "replica");
  if (!json_is_string(rep) || json_string_length(rep) != 2 * TT_ID_LEN ||
      tt_hex_decode(json_string_value(rep), js->replica, TT_ID_LEN))
    return job_fail(job, 400,
                    tt_srv_error("invalid", "replica: 32 hex characters "
                                            "expected"));
  tt_hex_encode(js->replica, TT_ID_LEN, js->rephex);
  if (!json_is_array(json_object_get(req, "intents")))
    return job_fail(job, 400,
                    tt_srv_error("invalid", "intents: array expected"));
  if (n == 0)
    return job_fail(job, 400,
                    tt_srv_error("invalid", "intents: empty array"));
  if (n > TT_MAX_INTENTS)
    return job_fail(job, 413,
                    tt_srv_error("too_big", "intents: %zu is over the "
                                            "limit of %u per push",
                                 n, (unsigned)TT_MAX_INTENTS));
  const json_t *sj = json_object_get(req, "seen");
  if (sj && (!json_is_integer(sj) || json_integer_value(sj) < 0))
    return job_fail(job, 400,
                    tt_srv_error("invalid",
                                 "seen: non-negative integer expected"));
  *seen = sj ? (uint64_t)json_integer_value(sj) : UINT64_MAX;
  const json_t *aj = json_object_get(req, "ahead");
  if (aj && !json_is_boolean(aj))
    return job_fail(job, 400,
                    tt_srv_error("invalid", "ahead: true or false expected"));
  js->ahead = json_is_true(aj);
  return 0;
}

/* An intent that did not parse (ERR names it: "intent seq N: key: why"). */
static int intent_fail(tt_push_job *job, int rc, const char *err) {
  if (rc == TETHER_ENOMEM)
    return rc;
  if (rc == TETHER_ETOOBIG)
    return job_fail(job, 413, tt_srv_error("too_big", "%s", err));
  return job_fail(job, 400, tt_srv_error("invalid", "%s", err));
}

/* The intents of JS, parsed: they belong to the pushing replica, their seqs
 * follow each other, each hash is the hash of its content and each prev
 * the hash before it. 0, 1 (answered) or <0. */
static int check_intents(tt_push_job *job, jstate *js, uint64_t seen) {
  char hex[2 * TT_HASH_LEN + 1];
  size_t n = js->n;
  int rc;
  js->prune_below = js->in[0].seq;
  if (seen != UINT64_MAX && seen < js->prune_below - 1)
    js->prune_below = seen + 1;

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
    rc = js->hash_ok && js->hash_ok[i] ? 0 : tt_intent_check_hash(in);
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
  js->out = calloc(n, sizeof *js->out);
  js->out_len = calloc(n, sizeof *js->out_len);
  if (!js->out || !js->out_len)
    return TETHER_ENOMEM;
  return 0;
}

/* 0: JS holds a job fit to be checked against the store. 1: JOB was
 * answered with an error and nothing may change for it. <0: fatal. */
static int check_shape(tt_push_job *job, jstate *js) {
  const json_t *req = job->request;
  const json_t *arr = json_object_get(req, "intents");
  char err[200];
  uint64_t seen;
  size_t n = json_array_size(arr);
  int rc = check_envelope(job, js, req, n, &seen);
  if (rc)
    return rc;
  js->in = calloc(n, sizeof *js->in);
  if (!js->in)
    return TETHER_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    rc = tt_intent_from_json(json_array_get(arr, i), &js->in[i], err,
                             sizeof err);
    if (rc) {
      js->n = i;
      return intent_fail(job, rc, err);
    }
    js->n = i + 1;
  }
  return check_intents(job, js, seen);
}

/* ---- step 1 ahead of time: tt_server_push_prepare ------------------------ */

static void jstate_clear(jstate *js);

struct tt_push_prep {
  tt_push_job answer; /* status != 0: the body was refused, response says why */
  jstate js;          /* else the checked intents, until tt_server_push
                         takes them */
  /* The intents once tt_server_push has run them, freed by
   * tt_push_prep_free: in the thread that read them, that is, and not in
   * the committer's. glibc frees a block from another thread's arena under
   * that arena's lock, and a push is thousands of small blocks. */
  jstate spent;
};

typedef struct {
  jstate *js;
  size_t count, cap; /* elements seen; js->in's room */
  int rc;            /* the first intent that did not parse */
  char err[200];
} intent_reader;

/* Room in js->in for one more intent. */
static int reserve_intent(intent_reader *r) {
  jstate *js = r->js;
  if (js->n < r->cap)
    return 0;
  size_t cap = r->cap ? 2 * r->cap : 64;
  tt_intent *in = realloc(js->in, cap * sizeof *in);
  if (!in)
    return TETHER_ENOMEM;
  js->in = in;
  unsigned char *ok = realloc(js->hash_ok, cap);
  if (!ok)
    return TETHER_ENOMEM;
  js->hash_ok = ok;
  r->cap = cap;
  return 0;
}

static int hash_matches(const char *text, size_t len, const tt_intent *in) {
  uint8_t h[TT_HASH_LEN];
  return tt_intent_hash_text(text, len, h) == 0 &&
         sodium_memcmp(h, in->hash, TT_HASH_LEN) == 0;
}

/* The usual intent, canonical and valid, read straight off the text; any
 * other goes to read_intent as a tree (tt_json_each_text_fn). */
static int read_intent_text(void *ctx, const char *text, size_t avail,
                            unsigned flags, int depth, size_t *used) {
  intent_reader *r = ctx;
  jstate *js = r->js;
  if (r->rc || r->count >= TT_MAX_INTENTS)
    return 1; /* read_intent counts it and reads only its syntax */
  int rc = reserve_intent(r);
  if (rc)
    return rc;
  tt_intent *in = &js->in[js->n];
  rc = tt_intent_from_canonical(text, avail, flags, depth, in, used);
  if (rc)
    return rc;
  r->count++;
  js->hash_ok[js->n] = hash_matches(text, *used, in);
  js->n++;
  return 0;
}

static int read_intent(void *ctx, json_t *elem, const tt_json_span *span) {
  intent_reader *r = ctx;
  jstate *js = r->js;
  int rc = 0;
  r->count++;
  if (r->rc || r->count > TT_MAX_INTENTS)
    goto out; /* refused anyway; the rest is only read for its syntax */
  if ((rc = reserve_intent(r)))
    goto out;
  tt_intent *in = &js->in[js->n];
  rc = tt_intent_from_json_sized(elem, span->canonical ? span->len : 0, in,
                                 r->err, sizeof r->err);
  if (rc == 0) {
    /* A mismatch is left to check_intents, which refuses it the same way. */
    js->hash_ok[js->n] =
        span->canonical && hash_matches(span->text, span->len, in);
    js->n++;
  } else if (rc != TETHER_ENOMEM) {
    r->rc = rc;
    rc = 0;
  }
out:
  json_decref(elem);
  return rc;
}

int tt_server_push_prepare(const char *body, size_t len, tt_push_prep **out) {
  tt_push_prep *p = calloc(1, sizeof *p);
  json_t *req = NULL;
  tt_json_error jerr;
  uint64_t seen;
  int rc;
  *out = NULL;
  if (!p)
    return TETHER_ENOMEM;
  intent_reader r = {.js = &p->js};
  if (len == 0) {
    rc = job_fail(&p->answer, 400,
                  tt_srv_error("json", "empty body, expected a JSON object"));
    goto done;
  }
  rc = tt_json_parse_streamed_text(body, len, TT_JSON_REJECT_DUPLICATES,
                                   "intents", read_intent_text, read_intent,
                                   &r, &req, &jerr);
  if (rc == TETHER_EJSON) {
    rc = job_fail(&p->answer, 400,
                  tt_srv_error("json", "%s at line %d column %d", jerr.text,
                               jerr.line, jerr.column));
    goto done;
  }
  if (rc)
    goto done;
  if ((rc = check_envelope(&p->answer, &p->js, req, r.count, &seen)))
    goto done;
  if (r.rc) {
    rc = intent_fail(&p->answer, r.rc, r.err);
    goto done;
  }
  rc = check_intents(&p->answer, &p->js, seen);
done:
  json_decref(req);
  if (rc < 0) {
    tt_push_prep_free(p);
    return rc;
  }
  if (rc == 1)
    jstate_clear(&p->js);
  *out = p;
  return 0;
}

int tt_push_prep_ahead(const tt_push_prep *p) {
  return p && p->answer.status == 0 && p->js.ahead;
}

void tt_push_prep_free(tt_push_prep *p) {
  if (!p)
    return;
  json_decref(p->answer.response);
  jstate_clear(&p->js);
  jstate_clear(&p->spent);
  free(p);
}

/* Step 1 for one job: its own check, or what tt_server_push_prepare found
 * (the checked intents move into JS). */
static int shape_of(tt_push_job *job, jstate *js) {
  tt_push_prep *p = job->prep;
  if (!p)
    return check_shape(job, js);
  if (p->answer.status) {
    job->status = p->answer.status;
    job->response = json_incref(p->answer.response);
    return 1;
  }
  *js = p->js;
  memset(&p->js, 0, sizeof p->js);
  return 0;
}

/* ---- step 2: home records, gaps and chains ------------------------------ */

/* Gives each valid job its replica's index in b->reps, and orders the
 * replicas by home partition (b->rorder, b->hstart). */
static int index_replicas(batch *b) {
  size_t cap = 16, *slot = NULL;
  int rc = 0;

  while (cap < 2 * b->njobs)
    cap *= 2;
  slot = calloc(cap, sizeof *slot); /* rep index + 1; 0 = empty */
  b->reps = calloc(b->njobs, sizeof *b->reps);
  b->rorder = malloc(b->njobs * sizeof *b->rorder);
  b->hstart = calloc(b->P + 1, sizeof *b->hstart);
  b->touched = malloc(b->njobs * sizeof *b->touched);
  if (!slot || !b->reps || !b->rorder || !b->hstart || !b->touched) {
    rc = TETHER_ENOMEM;
    goto out;
  }
  for (size_t i = 0; i < b->njobs; i++) {
    jstate *js = &b->js[i];
    size_t h;
    if (!js->valid)
      continue;
    for (h = tt_srv_fnv1a(TT_SRV_FNV_INIT, js->replica, TT_ID_LEN) &
             (cap - 1);
         slot[h];
         h = (h + 1) & (cap - 1))
      if (!memcmp(b->reps[slot[h] - 1].id, js->replica, TT_ID_LEN))
        break;
    if (!slot[h]) {
      rstate *r = &b->reps[b->nreps];
      memcpy(r->id, js->replica, TT_ID_LEN);
      r->home = tt_server_home_of(r->id, b->P);
      slot[h] = ++b->nreps;
    }
    js->rep = slot[h] - 1;
  }
  /* counting sort by home partition */
  free(slot);
  slot = calloc(b->P, sizeof *slot);
  if (!slot) {
    rc = TETHER_ENOMEM;
    goto out;
  }
  for (size_t r = 0; r < b->nreps; r++)
    b->hstart[b->reps[r].home + 1]++;
  for (unsigned p = 0; p < b->P; p++)
    b->hstart[p + 1] += b->hstart[p];
  for (size_t r = 0; r < b->nreps; r++) {
    unsigned h = b->reps[r].home;
    b->rorder[b->hstart[h] + slot[h]++] = r;
  }
out:
  free(slot);
  return rc;
}

/* Sorts KEYS and drops repeats, then prefetches them: a backend gains
 * nothing from a key twice. */
static int cmp_bytes(const void *a, const void *b) {
  const tt_bytes *x = a, *y = b;
  size_t n = x->len < y->len ? x->len : y->len;
  int c = memcmp(x->data, y->data, n);
  if (c)
    return c;
  return x->len < y->len ? -1 : x->len > y->len;
}

static int prefetch_keys(tt_txn *t, tt_table tab, tt_bytes *keys, size_t n) {
  size_t m = 0;
  if (n == 0)
    return 0;
  qsort(keys, n, sizeof *keys, cmp_bytes);
  for (size_t i = 0; i < n; i++)
    if (m == 0 || cmp_bytes(&keys[m - 1], &keys[i]))
      keys[m++] = keys[i];
  return tt_prefetch(t, tab, keys, m);
}

static int read_home(tt_txn *t, rstate *r, tt_srv_replica *out, int *state) {
  tt_bytes key = {r->id, TT_ID_LEN}, val;
  int rc = tt_get(t, TT_TABLE_REPLICAS, key, &val);
  memset(out, 0, sizeof *out);
  *state = HOME_ABSENT; /* also on error: callers read it before rc */
  if (rc == TETHER_ENOTFOUND) {
    *state = HOME_ABSENT;
    return 0;
  }
  if (rc)
    return rc;
  *state = tt_srv_replica_decode(val, out) ? HOME_CORRUPT : HOME_FOUND;
  return 0;
}

/* Reads the home records of replicas rorder[from..to) in T. */
static int read_homes_in(batch *b, tt_txn *t, size_t from, size_t to) {
  int rc = 0;
  if (b->s->st->ops->prefetch) {
    tt_bytes *keys = malloc((to - from) * sizeof *keys);
    if (!keys)
      return TETHER_ENOMEM;
    for (size_t i = from; i < to; i++) {
      keys[i - from].data = b->reps[b->rorder[i]].id;
      keys[i - from].len = TT_ID_LEN;
    }
    rc = prefetch_keys(t, TT_TABLE_REPLICAS, keys, to - from);
    free(keys);
  }
  for (size_t i = from; i < to && !rc; i++) {
    rstate *r = &b->reps[b->rorder[i]];
    rc = read_home(t, r, &r->stored, &r->state);
    r->rec = r->stored;
  }
  return rc;
}

static int read_homes(batch *b) {
  tt_server *s = b->s;
  int rc = 0;

  if (b->P == 1) {
    /* The one transaction of the whole group commit starts here, so the
     * records read now are the ones it commits over. */
    rc = tt_txn_begin(s->st, 0, 1, &b->t0);
    if (!rc)
      rc = read_homes_in(b, b->t0, 0, b->nreps);
    return rc;
  }
  for (unsigned h = 0; h < b->P && !rc; h++) {
    tt_txn *t = NULL;
    if (b->hstart[h] == b->hstart[h + 1])
      continue;
    rc = tt_txn_begin(s->st, h, 0, &t);
    if (!rc)
      rc = read_homes_in(b, t, b->hstart[h], b->hstart[h + 1]);
    tt_abort(t);
  }
  return rc;
}

/* The 409 body of a push holding intent SEQ that is not the intent the
 * server applied under that seq (docs/PROTOCOL.md, push). */
static json_t *diverged_error(uint64_t seq) {
  return tt_srv_error("chain",
                      "intent seq %llu is not the intent this server applied "
                      "with that seq: the replica's history diverged from "
                      "what the server applied (restored from a backup?); "
                      "the push was refused",
                      (unsigned long long)seq);
}

/* JS starts past its replica's chain head + 1: intents before it are
 * missing (or, for a push sent ahead, not committed yet). */
static int gap_before(const batch *b, const jstate *js) {
  return js->in[0].seq > b->reps[js->rep].rec.last_seq + 1;
}

/* 0: JS is valid and advanced its replica's chain head. 1: JOB was
 * answered with an error. <0: fatal. */
static int check_chain(batch *b, tt_push_job *job, jstate *js) {
  static const uint8_t zero[TT_HASH_LEN];
  rstate *r = &b->reps[js->rep];
  const tt_intent *last = &js->in[js->n - 1];
  size_t first_new;

  if (r->state == HOME_CORRUPT)
    return job_fail(job, 500,
                    tt_srv_error("internal", "the replica's home record is "
                                             "corrupt"));
  if (gap_before(b, js)) {
    json_t *body = tt_srv_error(
        "gap", "first intent seq %llu, expected %llu",
        (unsigned long long)js->in[0].seq,
        (unsigned long long)(r->rec.last_seq + 1));
    if (body && json_object_set_new_nocheck(
                    body, "expected",
                    json_integer((json_int_t)(r->rec.last_seq + 1)))) {
      json_decref(body);
      body = NULL;
    }
    return job_fail(job, 409, body);
  }
  /* in[0].seq <= last + 1 here, so this index is the first new intent (or
   * n when every intent is at or below the head). */
  first_new = (size_t)(r->rec.last_seq + 1 - js->in[0].seq);
  if (first_new < js->n &&
      memcmp(js->in[first_new].prev,
             r->rec.last_seq ? r->rec.last_hash : zero, TT_HASH_LEN) != 0)
    return job_fail(job, 409,
                    tt_srv_error("chain",
                                 "intent seq %llu: prev is not the hash of "
                                 "the last applied intent (seq %llu)",
                                 (unsigned long long)js->in[first_new].seq,
                                 (unsigned long long)r->rec.last_seq));
  /* The intent at the head's seq, when the job holds it, must be the one
   * applied under that seq. Through the chain that vouches for every
   * intent of the job at or below the head too. A different one means
   * the replica's history diverged from the server's (restored from a
   * backup, it re-issues other intents under old seqs): answering them as
   * duplicates would tell its app that writes were applied that never
   * were. */
  if (r->rec.last_seq >= js->in[0].seq && r->rec.last_seq <= last->seq &&
      memcmp(js->in[r->rec.last_seq - js->in[0].seq].hash, r->rec.last_hash,
             TT_HASH_LEN) != 0)
    return job_fail(job, 409, diverged_error(r->rec.last_seq));
  if (last->seq > r->rec.last_seq) {
    /* A rejected intent consumes its seq too: the chain goes on. */
    r->rec.last_seq = last->seq;
    memcpy(r->rec.last_hash, last->hash, TT_HASH_LEN);
  }
  js->acked = r->rec.last_seq;
  js->needs_home = last->seq > r->stored.last_seq;
  return 0;
}

/* ---- step 3: intents by partition --------------------------------------- */

static int group(batch *b) {
  size_t n = 0, k = 0, *fill = NULL;
  uint32_t *pof = NULL, *mark = NULL;
  item *tmp = NULL;
  int rc = 0;

  for (size_t j = 0; j < b->njobs; j++)
    if (b->js[j].valid)
      n += b->js[j].n;
  b->pstart = calloc(b->P + 1, sizeof *b->pstart);
  tmp = malloc((n ? n : 1) * sizeof *tmp);
  if (!b->pstart || !tmp) {
    rc = TETHER_ENOMEM;
    goto out;
  }
  for (size_t j = 0; j < b->njobs; j++) {
    jstate *js = &b->js[j];
    if (!js->valid)
      continue;
    js->parts_left = b->P == 1;
    for (size_t i = 0; i < js->n; i++, k++) {
      tmp[k].job = (uint32_t)j;
      tmp[k].idx = (uint32_t)i;
    }
  }
  if (b->P == 1) {
    b->pstart[1] = n;
    b->items = tmp;
    tmp = NULL;
    goto out;
  }
  pof = malloc((n ? n : 1) * sizeof *pof);
  mark = calloc(b->P, sizeof *mark); /* job + 1 last counted in p */
  fill = calloc(b->P, sizeof *fill);
  b->items = malloc((n ? n : 1) * sizeof *b->items);
  if (!pof || !mark || !fill || !b->items) {
    rc = TETHER_ENOMEM;
    goto out;
  }
  for (k = 0; k < n; k++) {
    jstate *js = &b->js[tmp[k].job];
    const tt_intent *in = &js->in[tmp[k].idx];
    uint32_t p = (uint32_t)tt_server_partition_of(in->coll, in->id, b->P);
    pof[k] = p;
    b->pstart[p + 1]++;
    if (mark[p] != tmp[k].job + 1) {
      mark[p] = tmp[k].job + 1;
      js->parts_left++;
    }
  }
  for (unsigned p = 0; p < b->P; p++)
    b->pstart[p + 1] += b->pstart[p];
  for (k = 0; k < n; k++) /* stable: job order, then seq order */
    b->items[b->pstart[pof[k]] + fill[pof[k]]++] = tmp[k];
out:
  free(tmp);
  free(pof);
  free(mark);
  free(fill);
  return rc;
}

/* ---- writing ------------------------------------------------------------ */

static int put(part *b, tt_table tab, const void *k, size_t kl, const void *v,
               size_t vl) {
  tt_bytes key = {k, kl}, val = {v, vl};
  b->dirty = 1;
  return tt_put(b->t, tab, key, val);
}

static int del(part *b, tt_table tab, const void *k, size_t kl) {
  tt_bytes key = {k, kl};
  b->dirty = 1;
  return tt_del(b->t, tab, key);
}

static int put_json(part *b, tt_table tab, const void *k, size_t kl,
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
  uint32_t p;
  int filter; /* several partitions: skip records of other partitions */
  uint64_t seqs[PRUNE_CHUNK];
  size_t n;
  uint64_t next; /* where the next chunk's scan starts */
} prune_scan;

static int prune_cb(void *ctx, tt_bytes key, tt_bytes val) {
  prune_scan *ps = ctx;
  uint32_t p;
  uint64_t sq;
  if (key.len != TT_ID_LEN + 8 ||
      memcmp(key.data, ps->replica, TT_ID_LEN) != 0)
    return 1;
  sq = tt_be64_get((const uint8_t *)key.data + TT_ID_LEN);
  if (sq >= ps->below || ps->n == PRUNE_CHUNK)
    return 1;
  ps->next = sq + 1;
  /* On a store whose transactions see every partition (LMDB), records of
   * other partitions show up here; they are theirs to prune. */
  if (ps->filter && (tt_srv_outcome_partition(val, &p) || p != ps->p))
    return 0;
  ps->seqs[ps->n++] = sq;
  return 0;
}

/* A replica pushing from seq S has durably taken every outcome below S, so
 * this partition's records of those can go: the outcome table stays
 * O(one push) per replica and partition. */
static int prune_outcomes(part *b, const uint8_t replica[TT_ID_LEN],
                          uint64_t below) {
  prune_scan *ps = malloc(sizeof *ps);
  uint8_t k[TT_ID_LEN + 8];
  int rc = 0;

  if (!ps)
    return TETHER_ENOMEM;
  memcpy(ps->replica, replica, TT_ID_LEN);
  ps->below = below;
  ps->p = b->p;
  ps->filter = b->s->nparts > 1;
  ps->next = 0;
  do {
    tt_bytes from = {k, sizeof k};
    ps->n = 0;
    tt_srv_outcome_key(k, replica, ps->next);
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

/* Step 3 found that JS holds an intent (SEQ) other than the one applied
 * under its seq: the job is answered 409 and the partition is redone
 * without its replica's jobs, so nothing of it is written there. */
static int diverged(batch *bt, jstate *js, uint64_t seq) {
  js->diverged = seq;
  bt->reps[js->rep].dropped = 1;
  return PART_REDO;
}

/* Duplicate of an intent of JS's replica applied in this partition: its
 * stored outcome again. The record keeps the hash of the intent it is the
 * outcome of, and a resent intent must be that one (check_chain checks the
 * head; this, the intents below it whose records are still kept). */
/* Intent IDX's outcome is the text in T, which it takes. */
static void set_outcome(jstate *js, size_t idx, tt_buf *t) {
  free(js->out[idx]);
  js->out[idx] = (char *)t->data;
  js->out_len[idx] = t->len;
  memset(t, 0, sizeof *t);
}

static int duplicate(part *b, jstate *js, size_t idx) {
  const tt_intent *in = &js->in[idx];
  uint8_t k[TT_ID_LEN + 8];
  tt_bytes key = {k, sizeof k}, val;
  tt_srv_outcome o;
  json_t *conflict = NULL;
  tt_buf t = {0};
  int rc;

  b->n_dup++;
  tt_srv_outcome_key(k, js->replica, in->seq);
  rc = tt_get(b->t, TT_TABLE_OUTCOMES, key, &val);
  if (rc && rc != TETHER_ENOTFOUND)
    return rc;
  if (!rc && tt_srv_outcome_decode(val, in->seq, &o, &conflict) == 0) {
    if (o.hash && memcmp(o.hash, in->hash, TT_HASH_LEN) != 0) {
      json_decref(conflict);
      return diverged(b->bt, js, in->seq);
    }
    rc = tt_srv_outcome_text(&t, &o, 1);
  } else {
    /* Pruned (the replica said it had it) or unreadable: the effect
     * happened exactly once, which is all that can be said. */
    rc = tt_buf_add_str(&t, "{\"duplicate\":true,\"outcome\":\"duplicate\","
                            "\"seq\":") ||
                 tt_buf_add_int(&t, (int64_t)in->seq) || tt_buf_add(&t, "}", 1)
             ? TETHER_ENOMEM
             : 0;
  }
  json_decref(conflict);
  if (rc) {
    tt_buf_free(&t);
    return TETHER_ENOMEM;
  }
  set_outcome(js, idx, &t);
  return 0;
}

/* An intent new in this partition whose seq the replica's home record had
 * already passed. Usually the retry after a crash between two partition
 * commits; but if an outcome record of that seq is found (LMDB shows those
 * of every partition), it was applied elsewhere, and a different intent
 * under the same seq is a diverged history. 0 (go on), PART_REDO, or an
 * error. */
static int check_below_head(part *b, jstate *js, size_t idx) {
  const tt_intent *in = &js->in[idx];
  uint8_t k[TT_ID_LEN + 8];
  tt_bytes key = {k, sizeof k}, val;
  tt_srv_outcome o;
  json_t *conflict = NULL;
  int rc, differs = 0;

  tt_srv_outcome_key(k, js->replica, in->seq);
  rc = tt_get(b->t, TT_TABLE_OUTCOMES, key, &val);
  if (rc == TETHER_ENOTFOUND)
    return 0;
  if (rc)
    return rc;
  if (tt_srv_outcome_decode(val, in->seq, &o, &conflict) == 0)
    differs = o.hash && memcmp(o.hash, in->hash, TT_HASH_LEN) != 0;
  json_decref(conflict);
  return differs ? diverged(b->bt, js, in->seq) : 0;
}

/* A resolve op may only settle an open conflict on the same coll/id/field.
 * On success rec[i] holds the conflict record of op i (others NULL). */
static int check_resolves(part *b, const tt_intent *in, json_t **rec,
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

static int put_conflict(part *b, const tt_intent *in, const char *rephex,
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

static int mark_resolved(part *b, const tt_op *op, json_t *rec,
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

/* Audit keys are (p, seq, n): entries written by intents that changed
 * nothing share the partition's current seq, so n tells them apart. At a
 * seq first reached in this transaction n starts at 0 (nothing can be
 * stored there yet); at the seq the transaction started from, entries of
 * earlier commits may exist, and the next n is found in the store. */
typedef struct {
  uint8_t prefix[12];
  uint32_t next;
} audit_scan;

static int audit_cb(void *ctx, tt_bytes key, tt_bytes val) {
  audit_scan *a = ctx;
  (void)val;
  if (key.len != 16 || memcmp(key.data, a->prefix, 12) != 0)
    return 1;
  a->next = tt_be32_get((const uint8_t *)key.data + 12) + 1;
  return 0;
}

static int audit_put(part *b, uint32_t p, const json_t *entry) {
  uint8_t k[16];
  if (!b->audit_known || b->audit_seq != b->seq) {
    b->audit_seq = b->seq;
    b->audit_n = 0;
    b->audit_known = 1;
    if (b->seq == b->seq0) {
      audit_scan a = {.next = 0};
      tt_bytes from = {k, sizeof k};
      int rc;
      tt_srv_audit_key(k, p, b->seq, 0);
      memcpy(a.prefix, k, 12);
      rc = tt_scan(b->t, TT_TABLE_AUDIT, from, audit_cb, &a);
      if (rc < 0) {
        b->audit_known = 0;
        return rc;
      }
      b->audit_n = a.next;
    }
  }
  tt_srv_audit_key(k, p, b->seq, b->audit_n++);
  return put_json(b, TT_TABLE_AUDIT, k, sizeof k, entry);
}

/* One audit entry per same-field concurrent write the merge engine
 * detected; it names each field (res->concurrent_fields), so nothing of
 * the decision is worked out again here. */
static int audit(part *b, const tt_intent *in, const char *rephex,
                 uint32_t p, const tt_doc *now, const tt_merge_result *res,
                 uint64_t commit) {
  int rc = 0;

  for (size_t i = 0; i < res->concurrent && !rc; i++) {
    const char *field =
        res->concurrent_fields ? res->concurrent_fields[i] : NULL;
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
  return rc;
}

/* ---- one new intent ----------------------------------------------------- */

/* Turns RES into a rejection (nothing of the merge is kept). */
static void reject_res(tt_merge_result *res, const char *reason) {
  tt_merge_result_clear(res);
  res->kind = TT_OUT_REJECTED;
  tt_errf(res->reason, sizeof res->reason, "%s", reason);
}

/* Merges and writes one intent new in this partition. Everything that
 * depends on the intent alone (the merge, the document's encoding and
 * size, the outcome in stored and wire form) is settled before anything is
 * written, so a failure there is this intent's: a rejection when its
 * content is at fault, else an error that the caller turns into a failure
 * of this job only (part_try). */
static int apply_intent(part *b, jstate *js, size_t idx) {
  tt_server *s = b->s;
  const tt_intent *in = &js->in[idx];
  const char *rephex = js->rephex;
  char dk[TT_SRV_DOCKEY_MAX], *enc = NULL;
  size_t dkl = tt_srv_doc_key(dk, in->coll, in->id), elen = 0;
  uint32_t p = b->p;
  tt_bytes key = {dk, dkl}, old = {NULL, 0};
  tt_doc doc = {0};
  tt_merge_result res = {0};
  json_t **resolves = NULL, *cjson = NULL;
  tt_buf ot = {0}; /* the outcome's text */
  tt_srv_outcome o = {0};
  uint8_t *obuf = NULL;
  size_t olen = 0;
  uint64_t prev_version = 0, commit = 0;
  int rc, ok = 1;

  /* Decoded at once (tt_doc copies what it keeps), so LMDB needs no
   * private copy of a page this transaction already wrote. */
  rc = tt_get_tmp(b->t, TT_TABLE_DOCS, key, &old);
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
    reject_res(&res, "stored document is corrupt");
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
    reject_res(&res, "unknown conflict");
    goto outcome;
  }

  rc = tt_merge_intent(&doc, in,
                       TT_PLANTED("lww-ignores-clamp")
                           ? in->hlc
                           : tt_hlc_clamp(in->hlc, b->now_ms, s->max_skew_ms),
                       b->seq + 1, s->pol, &res);
  if (rc)
    goto out;
  if (res.changed) {
    rc = tt_doc_encode(&doc, &enc, &elen);
    if (rc)
      goto out;
    /* Replicas refuse records much over this (TT_MAX_DOC, util.h): a
     * document grown past it would fail every replica's pull for good. */
    if (elen > TT_MAX_DOC) {
      char why[64];
      tt_errf(why, sizeof why, "document over %zu bytes", (size_t)TT_MAX_DOC);
      reject_res(&res, why);
    }
  }

outcome:
  commit = res.changed ? b->seq + 1 : prev_version;
  if (res.kind == TT_OUT_REJECTED) {
    o.reason = res.reason;
    /* It goes into JSON: never let a cut character fail the answer. */
    o.reason_len = tt_utf8_prefix(res.reason, sizeof res.reason - 1);
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
  o.hash = in->hash;
  /* Nothing but this intent, on the version its replica saw: the replica
   * can compute the result with tt_view_apply (the same value rules) and
   * need not be sent it back. */
  o.clean = res.kind == TT_OUT_APPLIED && res.changed && !res.concurrent &&
            res.nconflicts == 0 && !resolves && prev_version == in->base;
  /* "push:outcome" (server.h): the test hook makes this answer fail. */
  if ((s->fault && s->fault(s->fault_ctx, "push:outcome")) ||
      tt_srv_outcome_text(&ot, &o, 0)) {
    rc = TETHER_ENOMEM;
    goto out;
  }
  rc = tt_srv_outcome_encode(&o, &obuf, &olen);
  if (rc)
    goto out;

  /* Writes. */
  if (res.changed)
    b->seq++;
  if (res.concurrent) {
    b->n_conc += res.concurrent;
    rc = audit(b, in, rephex, p, &doc, &res, commit);
    if (rc)
      goto out;
  }
  if (res.changed) {
    uint8_t ck[12];
    rc = put(b, TT_TABLE_DOCS, dk, dkl, enc, elen);
    if (rc)
      goto out;
    if (prev_version) {
      tt_srv_change_key(ck, p, prev_version);
      rc = del(b, TT_TABLE_CHANGES, ck, sizeof ck);
      if (rc)
        goto out;
    }
    tt_srv_change_key(ck, p, b->seq);
    uint8_t cv[TT_SRV_CHANGE_MAX];
    size_t cvl = tt_srv_change_encode(cv, dk, dkl, o.clean ? in->client : NULL,
                                      in->seq);
    rc = put(b, TT_TABLE_CHANGES, ck, sizeof ck, cv, cvl);
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
  {
    uint8_t okey[TT_ID_LEN + 8];
    tt_srv_outcome_key(okey, js->replica, in->seq);
    rc = put(b, TT_TABLE_OUTCOMES, okey, sizeof okey, obuf, olen);
    if (rc)
      goto out;
  }
  b->n_out[res.kind]++;
  set_outcome(js, idx, &ot);
out:
  if (resolves) {
    for (size_t i = 0; i < in->nops; i++)
      json_decref(resolves[i]);
    free(resolves);
  }
  free(enc);
  free(obuf);
  tt_buf_free(&ot);
  json_decref(cjson);
  tt_merge_result_clear(&res);
  tt_doc_clear(&doc);
  return rc;
}

/* ---- step 3: one partition's transaction -------------------------------- */

/* Loads R's dedupe state for the partition of B. */
static int load_dedupe(part *b, rstate *r) {
  int rc = 0;
  r->dd_bad = 0;
  r->dd = 0;
  if (b->s->nparts == 1) {
    /* The home record is the dedupe record (server_int.h). */
    tt_srv_replica h;
    int state;
    if (b->fresh) {
      r->dd = r->stored.last_seq;
    } else {
      rc = read_home(b->t, r, &h, &state);
      r->dd = h.last_seq;
      r->dd_bad = state == HOME_CORRUPT;
    }
  } else {
    uint8_t k[TT_SRV_DEDUPE_KEY_LEN];
    tt_bytes key = {k, sizeof k}, val;
    tt_srv_dedupe_key(k, r->id, b->p);
    rc = tt_get(b->t, TT_TABLE_REPLICAS, key, &val);
    if (rc == TETHER_ENOTFOUND)
      rc = 0;
    else if (!rc)
      r->dd_bad = tt_srv_dedupe_decode(val, &r->dd) != 0;
  }
  r->dd0 = r->dd;
  return rc;
}

/* Moves R's home record up to r->rec (never down: another server may have
 * moved it further). */
static int update_home(part *b, rstate *r) {
  tt_srv_replica cur;
  uint8_t rb[TT_SRV_REPLICA_LEN];
  int state, rc;

  if (b->fresh) {
    cur = r->stored;
    state = r->state;
  } else {
    rc = read_home(b->t, r, &cur, &state);
    if (rc)
      return rc;
  }
  if (state == HOME_CORRUPT)
    return TETHER_ECORRUPT;
  if (state == HOME_FOUND && cur.last_seq >= r->rec.last_seq)
    return 0;
  tt_srv_replica_encode(&r->rec, rb);
  return put(b, TT_TABLE_REPLICAS, r->id, TT_ID_LEN, rb, sizeof rb);
}

/* Tells a backend that fetches remotely every key this transaction will
 * read, so that it costs round trips per partition, not per intent. */
static int prefetch_part(part *b, const item *it, size_t n,
                         const size_t *homes, size_t nh) {
  batch *bt = b->bt;
  size_t arena = 0, nk = 0, ak = 0;
  uint8_t *mem = NULL, *w;
  tt_bytes *keys = NULL;
  uint8_t sk[TT_SRV_SEQ_KEY_LEN];
  tt_bytes seqk = {sk, sizeof sk};
  int rc;

  tt_srv_seq_key(sk, b->p);
  rc = tt_prefetch(b->t, TT_TABLE_META, &seqk, 1);
  if (rc)
    return rc;
  for (size_t i = 0; i < n; i++) {
    const tt_intent *in = &bt->js[it[i].job].in[it[i].idx];
    arena += strlen(in->coll) + 1 + strlen(in->id) + TT_ID_LEN + 8 +
             TT_SRV_DEDUPE_KEY_LEN;
    for (size_t o = 0; o < in->nops; o++)
      nk += in->ops[o].kind == TT_OP_RESOLVE && in->ops[o].conflict;
  }
  nk += n + nh + 1;
  mem = malloc(arena + 1);
  keys = malloc(nk * sizeof *keys);
  if (!mem || !keys) {
    rc = TETHER_ENOMEM;
    goto out;
  }
  /* documents */
  w = mem;
  ak = 0;
  for (size_t i = 0; i < n; i++) {
    const tt_intent *in = &bt->js[it[i].job].in[it[i].idx];
    keys[ak].data = w;
    keys[ak++].len = tt_srv_doc_key((char *)w, in->coll, in->id);
    w += keys[ak - 1].len;
  }
  if ((rc = prefetch_keys(b->t, TT_TABLE_DOCS, keys, ak)))
    goto out;
  /* outcomes (a duplicate's answer) */
  ak = 0;
  for (size_t i = 0; i < n; i++) {
    const jstate *js = &bt->js[it[i].job];
    tt_srv_outcome_key(w, js->replica, js->in[it[i].idx].seq);
    keys[ak].data = w;
    keys[ak++].len = TT_ID_LEN + 8;
    w += TT_ID_LEN + 8;
  }
  if ((rc = prefetch_keys(b->t, TT_TABLE_OUTCOMES, keys, ak)))
    goto out;
  /* dedupe records (one partition: the home records) and home records */
  ak = 0;
  for (size_t i = 0; i < n; i++) {
    const jstate *js = &bt->js[it[i].job];
    if (bt->P == 1) {
      keys[ak].data = js->replica;
      keys[ak++].len = TT_ID_LEN;
    } else {
      tt_srv_dedupe_key(w, js->replica, b->p);
      keys[ak].data = w;
      keys[ak++].len = TT_SRV_DEDUPE_KEY_LEN;
      w += TT_SRV_DEDUPE_KEY_LEN;
    }
  }
  for (size_t i = 0; i < nh; i++)
    if (bt->reps[homes[i]].home_write) {
      keys[ak].data = bt->reps[homes[i]].id;
      keys[ak++].len = TT_ID_LEN;
    }
  if ((rc = prefetch_keys(b->t, TT_TABLE_REPLICAS, keys, ak)))
    goto out;
  /* conflicts a resolve settles */
  ak = 0;
  for (size_t i = 0; i < n; i++) {
    const tt_intent *in = &bt->js[it[i].job].in[it[i].idx];
    for (size_t o = 0; o < in->nops; o++)
      if (in->ops[o].kind == TT_OP_RESOLVE && in->ops[o].conflict) {
        keys[ak].data = in->ops[o].conflict;
        keys[ak++].len = strlen(in->ops[o].conflict);
      }
  }
  rc = prefetch_keys(b->t, TT_TABLE_CONFLICTS, keys, ak);
out:
  free(mem);
  free(keys);
  return rc;
}

/* The 200 answer, as canonical text written from the outcomes' texts
 * (one malloc'd buffer; *LEN its length), or NULL on ENOMEM. */
static char *ok_text(const jstate *js, size_t *len) {
  static const char head[] = "{\"acked\":",
                    mid[] = ",\"ahead_ok\":true,\"outcomes\":[",
                    tail[] = "],\"seen_ok\":true,\"v\":1}";
  tt_buf b = {0};
  size_t need = sizeof head + TT_I64_TEXT_MAX + sizeof mid + sizeof tail;
  for (size_t i = 0; i < js->n; i++)
    need += js->out_len[i] + 1;
  b.data = malloc(need);
  if (!b.data)
    return NULL;
  b.cap = need;
  /* Sized once: the outcomes of a push are most of it. */
  int bad = tt_buf_add(&b, head, sizeof head - 1) ||
            tt_buf_add_int(&b, (int64_t)js->acked) ||
            tt_buf_add(&b, mid, sizeof mid - 1);
  int first = 1;
  for (size_t i = 0; i < js->n && !bad; i++) {
    if (!js->out[i])
      continue;
    bad = (!first && tt_buf_add(&b, ",", 1)) ||
          tt_buf_add(&b, js->out[i], js->out_len[i]);
    first = 0;
  }
  if (bad || tt_buf_add(&b, tail, sizeof tail - 1)) {
    tt_buf_free(&b);
    return NULL;
  }
  *len = b.len;
  return (char *)b.data;
}

/* Sets JOB's 200 answer: as text when it asked for text, else as a tree
 * read from that text. 0 or TETHER_ENOMEM (then nothing is set). */
static int ok_answer(tt_push_job *job, const jstate *js) {
  size_t len = 0;
  char *text = ok_text(js, &len);
  if (!text)
    return TETHER_ENOMEM;
  json_decref(job->response); /* the planted bug's premature answer */
  job->response = NULL;
  free(job->response_text);
  job->response_text = NULL;
  if (job->text_answer) {
    job->response_text = text;
    job->response_len = len;
    return 0;
  }
  json_t *tree = NULL;
  /* ALLOW_NUL: a conflict's values come from stored documents, which may
   * hold \u0000. */
  int rc = tt_json_parse(text, len, TT_JSON_ALLOW_NUL, &tree, NULL);
  free(text);
  if (rc)
    return TETHER_ENOMEM; /* the text is ours: only memory can fail */
  job->response = tree;
  return 0;
}

/* The planted bug "ack-before-commit": every valid job answered 200 now,
 * with whatever outcomes are known. */
static void answer_early(batch *b) {
  for (size_t i = 0; i < b->njobs; i++) {
    jstate *js = &b->js[i];
    if (!js->valid || b->jobs[i].status)
      continue;
    if (ok_answer(&b->jobs[i], js) == 0) {
      b->jobs[i].status = 200;
      js->early = 1;
    }
  }
}

static void drop_outcomes(batch *b, const item *it, size_t n) {
  for (size_t i = 0; i < n; i++) {
    jstate *js = &b->js[it[i].job];
    free(js->out[it[i].idx]);
    js->out[it[i].idx] = NULL;
    js->out_len[it[i].idx] = 0;
  }
}

/* An error of one intent that is its job's alone (its answer could not be
 * built, a key or value the backend refuses), as opposed to the store's
 * (unreachable, full, raced, corrupt), which stops the group commit. */
static int job_error(int rc) {
  return rc == TETHER_ENOMEM || rc == TETHER_ETOOBIG || rc == TETHER_EINVAL ||
         rc == TETHER_ETYPE;
}

/* One try of partition P's transaction: the intents IT[0..N) and the home
 * records of replicas HOMES[0..NH) (those of them that moved). Returns 0
 * once committed (or when there was nothing to write), PART_REDO when a
 * job failed or diverged on its own (its replica is dropped: redo
 * without it), TETHER_ERETRY when raced, TETHER_EUNAVAILABLE on a
 * simulated crash, or another error. */
static int part_try(batch *bt, uint32_t p, const item *it, size_t n,
                    const size_t *homes, size_t nh) {
  part pc = {.bt = bt, .s = bt->s, .now_ms = bt->now_ms, .p = p};
  part *b = &pc;
  size_t ntouched = 0;
  int rc;

  pc.gen = ++bt->gen;
  if (bt->t0) {
    pc.t = bt->t0; /* P == 1, first try: the homes were read in it */
    bt->t0 = NULL;
    pc.fresh = 1;
  } else {
    rc = tt_txn_begin(bt->s->st, p, 1, &pc.t);
    if (rc)
      return rc;
  }
  if (bt->s->st->ops->prefetch && (rc = prefetch_part(b, it, n, homes, nh)))
    goto out;
  rc = tt_srv_load_seq(pc.t, p, &pc.seq0);
  if (rc)
    goto out;
  pc.seq = pc.seq0;

  for (size_t k = 0; k < n; k++) {
    jstate *js = &bt->js[it[k].job];
    rstate *r = &bt->reps[js->rep];
    const tt_intent *in = &js->in[it[k].idx];

    if (js->corrupt || r->dropped)
      continue;
    if (r->gen != pc.gen) {
      r->gen = pc.gen;
      bt->touched[ntouched++] = js->rep;
      if ((rc = load_dedupe(b, r)))
        goto out;
    }
    if (r->dd_bad) {
      js->corrupt = 1;
      r->bad = 1;
      continue;
    }
    if (js->gen != pc.gen) {
      js->gen = pc.gen;
      if ((rc = prune_outcomes(b, js->replica, js->prune_below)))
        goto out;
    }
    if (in->seq <= r->dd && !TT_PLANTED("skip-dedupe")) {
      rc = duplicate(b, js, it[k].idx);
    } else {
      rc = in->seq <= r->stored.last_seq ? check_below_head(b, js, it[k].idx)
                                         : 0;
      if (!rc)
        rc = apply_intent(b, js, it[k].idx);
      if (in->seq > r->dd)
        r->dd = in->seq;
    }
    if (rc && job_error(rc) && bt->job_failures < MAX_JOB_FAILURES) {
      bt->job_failures++;
      js->failed = rc;
      r->dropped = 1;
      rc = PART_REDO;
    }
    if (rc)
      goto out;
  }
  if (bt->P > 1)
    for (size_t i = 0; i < ntouched; i++) {
      rstate *r = &bt->reps[bt->touched[i]];
      uint8_t k[TT_SRV_DEDUPE_KEY_LEN], v[TT_SRV_DEDUPE_LEN];
      if (r->dd == r->dd0 || r->dd_bad)
        continue;
      tt_srv_dedupe_key(k, r->id, p);
      tt_srv_dedupe_encode(r->dd, v);
      if ((rc = put(b, TT_TABLE_REPLICAS, k, sizeof k, v, sizeof v)))
        goto out;
    }
  for (size_t i = 0; i < nh; i++) {
    rstate *r = &bt->reps[homes[i]];
    if (r->home_write && !r->bad && !r->dropped && (rc = update_home(b, r)))
      goto out;
  }

  if (pc.dirty) {
    /* Always written, changed or not: on an optimistic backend the
     * sequence key (read above) is what makes two writers of p collide. */
    rc = tt_srv_store_seq(pc.t, p, pc.seq);
    if (rc)
      goto out;
    if (TT_PLANTED("ack-before-commit"))
      answer_early(bt);
    if (bt->s->fault && bt->s->fault(bt->s->fault_ctx, "push:before-commit")) {
      rc = TETHER_EUNAVAILABLE;
      goto out;
    }
    rc = tt_commit(pc.t);
    pc.t = NULL;
    if (rc)
      goto out;
  }
  /* Committed, or nothing to commit: this partition is done. */
  for (size_t k = 0; k < n; k++) {
    jstate *js = &bt->js[it[k].job];
    if (bt->reps[js->rep].dropped)
      continue; /* skipped here: not done */
    if (js->mark != pc.gen) {
      js->mark = pc.gen;
      js->parts_left--;
    }
  }
  for (size_t i = 0; i < nh; i++)
    if (!bt->reps[homes[i]].bad && !bt->reps[homes[i]].dropped)
      bt->reps[homes[i]].home_done = 1;
  for (int i = 0; i < TT_OUT__COUNT; i++)
    bt->n_out[i] += pc.n_out[i];
  bt->n_dup += pc.n_dup;
  bt->n_conc += pc.n_conc;
  bt->docs_changed |= pc.docs_changed;
  /* Durable, but the process dies before the answers leave: the caller
   * drops them (the simulation logs them as applied). */
  if (pc.dirty && bt->s->fault &&
      bt->s->fault(bt->s->fault_ctx, "push:after-commit"))
    rc = TETHER_EUNAVAILABLE;
out:
  tt_abort(pc.t);
  return rc;
}

static int run_part(batch *b, uint32_t p) {
  const item *it = b->items + b->pstart[p];
  size_t n = b->pstart[p + 1] - b->pstart[p];
  const size_t *homes = b->rorder + b->hstart[p];
  size_t nh = b->hstart[p + 1] - b->hstart[p];
  int rc;

  for (int tries = 1;;) {
    rc = part_try(b, p, it, n, homes, nh);
    /* A redo without a dropped replica is not a race: it does not count
     * against the tries (each drops one more replica, so they end). */
    if (rc != PART_REDO &&
        (rc != TETHER_ERETRY || tries++ == TT_SRV_MAX_TRIES))
      return rc;
    /* Another server moved a key this transaction read, or a job was
     * dropped: redo it all from what the store holds now. */
    drop_outcomes(b, it, n);
    for (size_t k = 0; k < n; k++) {
      b->js[it[k].job].corrupt = 0;
      b->reps[b->js[it[k].job].rep].bad = 0;
    }
  }
}

static int run_all(batch *b) {
  int rc = 0;
  /* Partitions holding intents, each with the home records living there;
   * then the home records of partitions that held no intent. */
  for (uint32_t p = 0; p < b->P && !rc; p++)
    if (b->pstart[p + 1] > b->pstart[p])
      rc = run_part(b, p);
  for (uint32_t p = 0; p < b->P && !rc; p++) {
    int moved = 0;
    if (b->pstart[p + 1] > b->pstart[p])
      continue;
    for (size_t i = b->hstart[p]; i < b->hstart[p + 1]; i++)
      moved |= b->reps[b->rorder[i]].home_write;
    if (moved)
      rc = run_part(b, p);
  }
  return rc;
}

/* ---- step 4: answers ---------------------------------------------------- */

static void answer(batch *b, int rc) {
  for (size_t i = 0; i < b->njobs; i++) {
    jstate *js = &b->js[i];
    tt_push_job *job = &b->jobs[i];
    json_t *body;
    int status;

    if (!js->valid && (job->status || job->deferred))
      continue; /* answered by its checks, or to be run again */
    if (!js->valid) {
      /* never reached: the batch stopped before (out of memory) */
      status = 503;
      body = tt_srv_error("unavailable", "commit failed (%s); this push "
                                         "was not acknowledged",
                          tether_err_name(rc ? rc : TETHER_ENOMEM));
    } else if (js->diverged) {
      status = 409;
      body = diverged_error(js->diverged);
    } else if (js->corrupt) {
      status = 500;
      body = tt_srv_error("internal", "a dedupe record of the replica is "
                                      "corrupt");
    } else if (js->parts_left == 0 &&
               (!js->needs_home || b->reps[js->rep].home_done)) {
      status = 200;
      body = NULL;
      /* Committed but the answer cannot be built: the replica retries and
       * gets duplicates with the same outcomes. */
      if (ok_answer(job, js) == 0) {
        job->status = status;
        continue;
      }
      status = 503;
      body = tt_srv_error("unavailable", "out of memory");
    } else if (js->early) {
      continue; /* the planted bug keeps its premature answer */
    } else if (js->failed) {
      status = 503;
      body = tt_srv_error("unavailable",
                          "this push could not be processed (%s); it was not "
                          "acknowledged",
                          tether_err_name(js->failed));
    } else if (b->reps[js->rep].dropped) {
      status = 503;
      body = tt_srv_error("unavailable",
                          "another push of this replica in the same group "
                          "commit failed; this push was not acknowledged");
    } else if (rc == TETHER_EFULL) {
      status = 507;
      body = tt_srv_error("full", "the store is full; this push was not "
                                  "acknowledged");
    } else {
      /* rc == 0 here only when the replica's home record could not move
       * (a dedupe record of it is corrupt) */
      status = 503;
      body = tt_srv_error("unavailable",
                          "commit failed (%s); this push was not "
                          "acknowledged",
                          tether_err_name(rc ? rc : TETHER_ECORRUPT));
    }
    json_decref(job->response);
    free(job->response_text);
    job->response_text = NULL;
    job->response_len = 0;
    job->status = status;
    job->response = body;
  }
}

static void jstate_clear(jstate *js) {
  if (js->in) {
    for (size_t i = 0; i < js->n; i++)
      tt_intent_clear(&js->in[i]);
    free(js->in);
  }
  free(js->hash_ok);
  if (js->out) {
    for (size_t i = 0; i < js->n; i++)
      free(js->out[i]);
    free(js->out);
  }
  free(js->out_len);
  memset(js, 0, sizeof *js);
}

int tt_server_push(tt_server *s, tt_push_job *jobs, size_t njobs,
                   uint64_t now_ms) {
  batch b = {.s = s, .now_ms = now_ms, .jobs = jobs, .njobs = njobs};
  size_t nbad = 0, nheld = 0;
  int rc = 0;

  if (!s || (!jobs && njobs))
    return TETHER_EINVAL;
  if (njobs == 0)
    return 0;
  b.P = s->nparts;
  for (size_t i = 0; i < njobs; i++) {
    jobs[i].status = 0;
    jobs[i].response = NULL;
    jobs[i].response_text = NULL;
    jobs[i].response_len = 0;
    jobs[i].deferred = 0;
  }
  b.js = calloc(njobs, sizeof *b.js);
  if (!b.js) {
    rc = TETHER_ENOMEM;
    for (size_t i = 0; i < njobs; i++) {
      jobs[i].status = 503;
      jobs[i].response = tt_srv_error("unavailable", "out of memory");
    }
    goto out;
  }

  /* 1. shapes */
  for (size_t i = 0; i < njobs && !rc; i++) {
    rc = shape_of(&jobs[i], &b.js[i]);
    if (rc == 1) {
      nbad++;
      jstate_clear(&b.js[i]);
      rc = 0;
    } else if (!rc) {
      b.js[i].valid = 1;
      b.js[i].parts_left = 1; /* not grouped yet */
    }
  }
  if (!rc)
    rc = index_replicas(&b);
  if (rc || b.nreps == 0)
    goto done;

  /* 2. homes, gaps, chains */
  rc = read_homes(&b);
  for (size_t i = 0; i < njobs && !rc; i++) {
    if (!b.js[i].valid)
      continue;
    if (jobs[i].may_wait && b.js[i].ahead && jobs[i].prep &&
        gap_before(&b, &b.js[i])) {
      /* Sent ahead: the push it follows has not committed yet. Its checked
       * intents go back into its prep, to be run again as they are. */
      jobs[i].prep->js = b.js[i];
      memset(&b.js[i], 0, sizeof b.js[i]);
      jobs[i].deferred = 1;
      continue;
    }
    rc = check_chain(&b, &jobs[i], &b.js[i]);
    if (rc == 1) {
      nbad++;
      b.js[i].valid = 0;
      rc = 0;
    }
  }
  if (rc)
    goto done;
  for (size_t r = 0; r < b.nreps; r++)
    b.reps[r].home_write = b.reps[r].rec.last_seq > b.reps[r].stored.last_seq;

  /* 3. one transaction per partition */
  rc = group(&b);
  if (!rc)
    rc = run_all(&b);
  for (size_t i = 0; i < njobs; i++)
    nbad += b.js[i].valid && b.js[i].diverged; /* answered 409 */

done:
  tt_abort(b.t0); /* P == 1 and stopped before the partition ran */
  b.t0 = NULL;
  /* 4. answers */
  answer(&b, rc);
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
out:
  /* A deferred job is not answered: it is counted when it is. */
  for (size_t i = 0; i < njobs; i++)
    nheld += jobs[i].deferred != 0;
  atomic_fetch_add_explicit(&s->pushes, njobs - nheld, memory_order_relaxed);
  atomic_fetch_add_explicit(&s->pushes_held, nheld, memory_order_relaxed);
  if (b.js) {
    for (size_t i = 0; i < njobs; i++) {
      tt_push_prep *p = jobs[i].prep;
      if (p && !jobs[i].deferred && p->spent.n == 0 && !p->spent.in) {
        p->spent = b.js[i];
        memset(&b.js[i], 0, sizeof b.js[i]);
      }
      jstate_clear(&b.js[i]);
    }
  }
  free(b.js);
  free(b.reps);
  free(b.rorder);
  free(b.hstart);
  free(b.touched);
  free(b.items);
  free(b.pstart);
  return rc;
}
