/* world.c — the simulated world: one server and R replicas on real LMDB
 * stores in a temporary directory, a network that drops, duplicates,
 * delays, reorders and partitions, clocks that skew and jump, and crashes
 * of the server (mid group commit) and of replicas. Everything random comes
 * from the seed, so a seed replays exactly. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/util.h"
#include "sim.h"

struct sim_msg {
  sim_msg *next;
  uint64_t at, order;
  int kind; /* MSG_* */
  int rep;
  uint64_t epoch;
  int status;
  char *body;
};

enum { MSG_PUSH_REQ, MSG_PULL_REQ, MSG_PUSH_RESP, MSG_PULL_RESP };
enum { IDLE = 0, WAIT_PUSH = 1, WAIT_PULL = 2 };

#define PUSH_BATCH 4   /* small batches: many requests, many interleavings */
#define PULL_PAGE 3    /* small pages: paging is exercised on every pull */
#define REQ_TIMEOUT 3000

uint64_t sim_rand(sim_rng *r) {
  uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t sim_below(sim_rng *r, uint64_t n) { return n ? sim_rand(r) % n : 0; }

int sim_chance(sim_rng *r, unsigned permille) {
  return sim_below(r, 1000) < permille;
}

static void *xrealloc(void *p, size_t n) {
  void *q = realloc(p, n);
  if (!q) {
    fprintf(stderr, "tether-sim: out of memory\n");
    exit(3);
  }
  return q;
}

static char *xstrdup(const char *s) {
  char *d = strdup(s);
  if (!d) {
    fprintf(stderr, "tether-sim: out of memory\n");
    exit(3);
  }
  return d;
}

static char *dump(const json_t *j) {
  char *s = json_dumps(j, JSON_COMPACT);
  if (!s) {
    fprintf(stderr, "tether-sim: out of memory\n");
    exit(3);
  }
  return s;
}

/* ---- clocks ------------------------------------------------------------ */

static uint64_t rep_clock(const sim_world *w, const sim_replica *r) {
  int64_t t = (int64_t)w->now + r->skew_ms;
  return t < 0 ? 0 : (uint64_t)t;
}

/* ---- network ----------------------------------------------------------- */

static void send_msg(sim_world *w, int kind, int rep, uint64_t epoch,
                     int status, const char *body) {
  sim_replica *r = &w->rep[rep];
  int copies = 1;
  if (!w->quiet) {
    if (r->cut_until > w->now || sim_chance(&w->rng, 40)) {
      w->faults++;
      return; /* dropped (a response lost after the server committed too) */
    }
    if (sim_chance(&w->rng, 30)) {
      w->faults++;
      copies = 2; /* duplicated */
    }
  }
  for (int i = 0; i < copies; i++) {
    sim_msg *m = calloc(1, sizeof *m);
    if (!m)
      exit(3);
    m->kind = kind;
    m->rep = rep;
    m->epoch = epoch;
    m->status = status;
    m->body = xstrdup(body ? body : "");
    /* random delays reorder messages */
    m->at = w->now + 1 + (w->quiet ? 0 : sim_below(&w->rng, 400));
    m->order = w->msg_order++;
    m->next = w->msgs;
    w->msgs = m;
  }
}

static void free_msg(sim_msg *m) {
  free(m->body);
  free(m);
}

/* ---- opening and crashing ---------------------------------------------- */

static int open_replica(sim_world *w, int i, int create, char *err,
                        size_t len) {
  sim_replica *r = &w->rep[i];
  tt_store_opts so = {.map_size = 64u << 20, .no_sync = 1};
  int rc = tt_store_open_lmdb(r->dir, &so, &r->st, err, len);
  if (rc)
    return rc;
  if (create) {
    rc = tt_replica_create(r->st, r->id, "sim://server");
    if (rc) {
      tt_errf(err, len, "replica %d create: %s", i, tether_strerror(rc));
      return rc;
    }
  }
  rc = tt_replica_open(r->st, &r->r);
  if (rc)
    tt_errf(err, len, "replica %d open: %s", i, tether_strerror(rc));
  return rc;
}

static void close_replica(sim_replica *r) {
  tt_replica_close(r->r);
  r->r = NULL;
  tt_store_close(r->st);
  r->st = NULL;
}

/* Crashes the server at the point armed for this commit: before it (the
 * batch is lost, nothing may be acknowledged) or after it (the batch is
 * durable, the answers are lost). */
static int fault_hook(void *ctx, const char *point) {
  sim_world *w = ctx;
  if (!w->fault_armed || strcmp(point, w->fault_point) != 0)
    return 0;
  if (w->fault_skip) { /* a later partition's commit */
    w->fault_skip--;
    return 0;
  }
  w->fault_armed = 0;
  return 1;
}

static int open_server(sim_world *w, char *err, size_t len) {
  char dir[300];
  tt_store_opts so = {.map_size = 256u << 20, .no_sync = 1};
  tt_server_opts o = {.max_skew_ms = SIM_MAX_SKEW_MS,
                      .partitions = w->cfg.partitions,
                      .pull_limit = PULL_PAGE,
                      .fault = fault_hook,
                      .fault_ctx = w};
  snprintf(dir, sizeof dir, "%s/server", w->root);
  int rc = tt_store_open_lmdb(dir, &so, &w->sst, err, len);
  if (rc)
    return rc;
  return tt_server_open(w->sst, w->pol, &o, &w->srv, err, len);
}

static void close_server(sim_world *w) {
  tt_server_close(w->srv);
  w->srv = NULL;
  tt_store_close(w->sst);
  w->sst = NULL;
}

static int crash_server(sim_world *w) {
  char err[256];
  w->faults++;
  for (size_t i = 0; i < w->ninbox; i++)
    free(w->inbox[i].body);
  w->ninbox = 0; /* requests in flight inside the server die with it */
  close_server(w);
  if (open_server(w, err, sizeof err)) {
    sim_violation(w, "server restart failed: %s", err);
    return -1;
  }
  /* G1 at once: whatever a replica was told is acknowledged must have
   * survived the crash. */
  for (int i = 0; i < w->nrep; i++) {
    uint64_t last = 0;
    if (tt_server_replica_last_seq(w->srv, w->rep[i].id, &last) == 0 &&
        last < w->rep[i].acked_max)
      sim_violation(w,
                    "G1: replica %d was acknowledged up to seq %llu but the "
                    "restarted server has only %llu",
                    i, (unsigned long long)w->rep[i].acked_max,
                    (unsigned long long)last);
  }
  return 0;
}

static int crash_replica(sim_world *w, int i) {
  char err[256];
  sim_replica *r = &w->rep[i];
  w->faults++;
  close_replica(r);
  r->busy = IDLE;
  r->epoch++;
  free(r->busy_req);
  r->busy_req = NULL;
  if (open_replica(w, i, 0, err, sizeof err)) {
    sim_violation(w, "replica %d restart failed: %s", i, err);
    return -1;
  }
  return 0;
}

/* ---- the app: local writes --------------------------------------------- */

static json_t *rand_value(sim_world *w) {
  static const char *words[] = {"red", "green", "blue", "ink", "moss"};
  if (sim_chance(&w->rng, 500))
    return json_integer((json_int_t)sim_below(&w->rng, 10));
  return json_string(words[sim_below(&w->rng, 5)]);
}

static void record_made(sim_replica *r, const char *coll, const char *id,
                        int ctr, int64_t delta) {
  if (r->nmade == r->capmade) {
    r->capmade = r->capmade ? 2 * r->capmade : 64;
    r->made = xrealloc(r->made, r->capmade * sizeof *r->made);
  }
  sim_made *m = &r->made[r->nmade++];
  memset(m, 0, sizeof *m);
  snprintf(m->coll, sizeof m->coll, "%s", coll);
  snprintf(m->id, sizeof m->id, "%s", id);
  m->is_ctr_incr = ctr;
  m->delta = delta;
}

static int first_conflict_cb(void *ctx, const json_t *obj) {
  json_t **out = ctx;
  *out = json_deep_copy(obj);
  return 1;
}

static void local_write(sim_world *w, int i) {
  static const char *fields[] = {"a", "b", "c"};
  sim_replica *r = &w->rep[i];
  char id[16];
  const char *coll = "notes";
  uint64_t before = tt_replica_outbox_len(r->r), now = rep_clock(w, r);
  unsigned pick = (unsigned)sim_below(&w->rng, 100);
  int ctr = 0, rc = 0;
  int64_t delta = 0;
  json_t *v = NULL;

  snprintf(id, sizeof id, "n%u", (unsigned)sim_below(&w->rng, w->cfg.docs));
  if (pick < 30) {
    v = rand_value(w);
    rc = tt_replica_write(r->r, coll, id, TT_OP_SET,
                          fields[sim_below(&w->rng, 3)], v, NULL, now);
  } else if (pick < 35) {
    rc = tt_replica_write(r->r, coll, id, TT_OP_UNSET,
                          fields[sim_below(&w->rng, 3)], NULL, NULL, now);
  } else if (pick < 43) {
    v = json_integer((json_int_t)sim_below(&w->rng, 5) + 1);
    rc = tt_replica_write(r->r, coll, id, TT_OP_INCR, "k", v, NULL, now);
  } else if (pick < 45) {
    /* a type change under others' feet: their increments get rejected */
    v = json_string("text");
    rc = tt_replica_write(r->r, coll, id, TT_OP_SET, "k", v, NULL, now);
  } else if (pick < 55) {
    v = rand_value(w);
    rc = tt_replica_write(r->r, coll, id,
                          sim_chance(&w->rng, 600) ? TT_OP_ADD : TT_OP_REMOVE,
                          "tags", v, NULL, now);
  } else if (pick < 63) {
    v = json_object();
    json_object_set_new(v, fields[sim_below(&w->rng, 3)], rand_value(w));
    json_object_set_new(v, fields[sim_below(&w->rng, 3)], rand_value(w));
    rc = tt_replica_put(r->r, coll, id, v, "put", now);
  } else if (pick < 67) {
    rc = tt_replica_write(r->r, coll, id, TT_OP_DELETE, NULL, NULL, NULL, now);
  } else if (pick < 90) {
    coll = "ctr";
    snprintf(id, sizeof id, "c%u", (unsigned)sim_below(&w->rng, 2));
    delta = (int64_t)sim_below(&w->rng, 7) + 1;
    v = json_integer(delta);
    ctr = 1;
    rc = tt_replica_write(r->r, coll, id, TT_OP_INCR, "v", v, NULL, now);
  } else {
    json_t *c = NULL;
    tt_replica_conflicts(r->r, first_conflict_cb, &c);
    if (!c)
      return;
    const char *cc = json_string_value(json_object_get(c, "coll"));
    const char *ci = json_string_value(json_object_get(c, "id"));
    const char *cf = json_string_value(json_object_get(c, "field"));
    if (cc && ci && cf) {
      coll = cc;
      snprintf(id, sizeof id, "%s", ci);
      v = json_deep_copy(json_object_get(c, "theirs"));
      if (strcmp(cf, "_doc") == 0) {
        json_decref(v);
        v = NULL; /* settle a delete conflict by keeping it deleted */
      }
      rc = tt_replica_resolve(r->r, cc, ci, cf, v, now);
      char collbuf[16];
      snprintf(collbuf, sizeof collbuf, "%s", cc);
      json_decref(c);
      json_decref(v);
      if (rc == 0 && tt_replica_outbox_len(r->r) == before + 1)
        record_made(r, collbuf, id, 0, 0);
      w->ops++;
      return;
    }
    json_decref(c);
    return;
  }
  json_decref(v);
  w->ops++;
  if (rc && rc != TETHER_ETYPE && rc != TETHER_ENOTFOUND)
    sim_violation(w, "replica %d local write failed: %s", i,
                  tether_strerror(rc));
  if (rc == 0 && tt_replica_outbox_len(r->r) == before + 1)
    record_made(r, coll, id, ctr, delta);
}

static int take_cb(void *ctx, const json_t *obj) {
  sim_replica *r = ctx;
  if (r->nout == r->capout) {
    r->capout = r->capout ? 2 * r->capout : 64;
    r->out_seq = xrealloc(r->out_seq, r->capout * sizeof *r->out_seq);
    r->out_kind = xrealloc(r->out_kind, r->capout * sizeof *r->out_kind);
  }
  r->out_seq[r->nout] = (uint64_t)json_integer_value(json_object_get(obj, "seq"));
  snprintf(r->out_kind[r->nout], sizeof r->out_kind[0], "%s",
           json_string_value(json_object_get(obj, "outcome"))
               ? json_string_value(json_object_get(obj, "outcome"))
               : "?");
  r->nout++;
  return 0;
}

void sim_take_outcomes(sim_world *w, int i);
void sim_take_outcomes(sim_world *w, int i) {
  int rc = tt_replica_take_outcomes(w->rep[i].r, take_cb, &w->rep[i]);
  if (rc)
    sim_violation(w, "replica %d take_outcomes: %s", i, tether_strerror(rc));
}

/* ---- sync -------------------------------------------------------------- */

static void start_sync(sim_world *w, int i) {
  sim_replica *r = &w->rep[i];
  json_t *req = NULL;
  int rc = tt_replica_push_request(r->r, PUSH_BATCH, &req);
  int kind = MSG_PUSH_REQ;
  if (rc == TETHER_ENOTFOUND) {
    rc = tt_replica_pull_request(r->r, PULL_PAGE, 0, &req);
    kind = MSG_PULL_REQ;
  }
  if (rc) {
    sim_violation(w, "replica %d request: %s", i, tether_strerror(rc));
    return;
  }
  free(r->busy_req);
  r->busy_req = dump(req);
  json_decref(req);
  r->busy = kind == MSG_PUSH_REQ ? WAIT_PUSH : WAIT_PULL;
  r->busy_since = w->now;
  send_msg(w, kind, i, r->epoch, 0, r->busy_req);
}

static void mark_logged(sim_replica *r, uint64_t seq) {
  if (seq == 0)
    return;
  if (seq > r->caplogged) {
    size_t cap = r->caplogged ? r->caplogged : 64;
    while (cap < seq)
      cap *= 2;
    r->logged = xrealloc(r->logged, cap);
    memset(r->logged + r->caplogged, 0, cap - r->caplogged);
    r->caplogged = cap;
  }
  r->logged[seq - 1] = 1;
}

static int is_logged(const sim_replica *r, uint64_t seq) {
  return seq >= 1 && seq <= r->caplogged && r->logged[seq - 1];
}

/* Logs intent IN of replica REP as applied with outcome O (wire form). */
static void log_one(sim_world *w, int rep, const json_t *in, const json_t *o) {
  if (w->napplied == w->capapplied) {
    w->capapplied = w->capapplied ? 2 * w->capapplied : 256;
    w->applied = xrealloc(w->applied, w->capapplied * sizeof *w->applied);
  }
  sim_applied *a = &w->applied[w->napplied++];
  memset(a, 0, sizeof *a);
  a->rep = rep;
  a->seq = (uint64_t)json_integer_value(json_object_get(in, "seq"));
  a->base = (uint64_t)json_integer_value(json_object_get(in, "base"));
  a->commit = (uint64_t)json_integer_value(json_object_get(o, "commit"));
  snprintf(a->coll, sizeof a->coll, "%s",
           json_string_value(json_object_get(in, "coll")));
  snprintf(a->id, sizeof a->id, "%s",
           json_string_value(json_object_get(in, "id")));
  a->ops = json_incref(json_object_get(in, "ops"));
  const char *s = json_string_value(json_object_get(o, "outcome"));
  snprintf(a->outcome, sizeof a->outcome, "%s", s ? s : "?");
  s = json_string_value(json_object_get(o, "rule"));
  snprintf(a->rule, sizeof a->rule, "%s", s ? s : "");
  s = json_string_value(
      json_object_get(json_object_get(o, "conflict"), "field"));
  snprintf(a->cfield, sizeof a->cfield, "%s", s ? s : "");
  mark_logged(&w->rep[rep], a->seq);
}

static void log_applied(sim_world *w, int rep, const json_t *req,
                        const json_t *resp) {
  json_t *intents = json_object_get(req, "intents");
  json_t *outs = json_object_get(resp, "outcomes");
  for (size_t k = 0; k < json_array_size(outs); k++) {
    json_t *o = json_array_get(outs, k), *in = json_array_get(intents, k);
    if (json_is_true(json_object_get(o, "duplicate")) || !in)
      continue;
    log_one(w, rep, in, o);
  }
}

/* A crashed group commit may have applied intents of jobs that got no
 * 200 (with several partitions: those of the partitions committed before
 * the crash). They are applied, in this batch's place in server order, but
 * their retries will only ever be answered as duplicates: read what the
 * server stored for each intent of REQ never logged before. */
static void log_recovered(sim_world *w, int rep, const json_t *req) {
  json_t *intents = json_object_get(req, "intents");
  for (size_t k = 0; k < json_array_size(intents); k++) {
    json_t *in = json_array_get(intents, k), *o = NULL;
    uint64_t seq = (uint64_t)json_integer_value(json_object_get(in, "seq"));
    if (is_logged(&w->rep[rep], seq))
      continue;
    if (tt_server_outcome(w->srv, w->rep[rep].id, seq, &o) == 0)
      log_one(w, rep, in, o);
    json_decref(o);
  }
}

/* One group commit of everything queued at the server. */
static void server_commit(sim_world *w) {
  if (!w->ninbox)
    return;
  size_t n = w->ninbox;
  tt_push_job *jobs = calloc(n, sizeof *jobs);
  json_t **reqs = calloc(n, sizeof *reqs);
  if (!jobs || !reqs)
    exit(3);
  for (size_t k = 0; k < n; k++) {
    reqs[k] = json_loads(w->inbox[k].body, 0, NULL);
    jobs[k].request = reqs[k];
  }
  if (!w->quiet && sim_chance(&w->rng, 40)) {
    w->fault_armed = 1;
    w->fault_point = sim_chance(&w->rng, 500) ? "push:before-commit"
                                              : "push:after-commit";
    /* With several partitions, crash at any partition's commit, so that
     * crashes between partition commits happen. */
    w->fault_skip = w->cfg.partitions > 1
                        ? (unsigned)sim_below(&w->rng, w->cfg.partitions)
                        : 0;
  }
  int after = w->fault_armed && !strcmp(w->fault_point, "push:after-commit");
  int crashed_at_commit = w->fault_armed;
  unsigned skip = w->fault_skip;
  int rc = tt_server_push(w->srv, jobs, n, w->now);
  int crashed = crashed_at_commit && !w->fault_armed;
  w->fault_armed = 0;
  w->fault_skip = 0;
  if (w->now > w->max_now)
    w->max_now = w->now;

  if ((!rc && !crashed) || crashed) {
    json_t *bodies = json_array();
    for (size_t k = 0; k < n; k++)
      json_array_append_new(bodies, json_string(w->inbox[k].body));
    json_t *c = json_pack("{s:I,s:o}", "now", (json_int_t)w->now, "bodies",
                          bodies);
    if (crashed) {
      json_object_set_new(c, "crash", json_string(w->fault_point));
      json_object_set_new(c, "skip", json_integer(skip));
    }
    json_array_append_new(w->commits, c);
  }
  for (size_t k = 0; k < n; k++) {
    sim_inbox *ib = &w->inbox[k];
    /* After a crash only what the server had already answered reaches the
     * wire; a correct server answers nothing before the commit (with
     * several partitions, nothing before all of the job's partitions
     * committed: a 200 here is durable, or a planted bug). */
    if (jobs[k].status == 200)
      log_applied(w, ib->rep, reqs[k], jobs[k].response);
    else if (crashed)
      log_recovered(w, ib->rep, reqs[k]);
    if (!crashed || (!after && jobs[k].status == 200)) {
      char *body = jobs[k].response ? dump(jobs[k].response) : xstrdup("{}");
      send_msg(w, MSG_PUSH_RESP, ib->rep, ib->epoch, jobs[k].status, body);
      free(body);
    }
    json_decref(jobs[k].response);
    json_decref(reqs[k]);
    free(ib->body);
  }
  w->ninbox = 0;
  free(jobs);
  free(reqs);
  if (crashed)
    crash_server(w);
}

static void server_receive(sim_world *w, sim_msg *m) {
  if (m->kind == MSG_PUSH_REQ) {
    if (w->ninbox == w->capinbox) {
      w->capinbox = w->capinbox ? 2 * w->capinbox : 16;
      w->inbox = xrealloc(w->inbox, w->capinbox * sizeof *w->inbox);
    }
    w->inbox[w->ninbox].body = xstrdup(m->body);
    w->inbox[w->ninbox].rep = m->rep;
    w->inbox[w->ninbox].epoch = m->epoch;
    w->ninbox++;
    return;
  }
  json_t *req = json_loads(m->body, 0, NULL), *resp = NULL;
  int status = 0;
  tt_server_pull(w->srv, req, &status, &resp);
  char *body = resp ? dump(resp) : xstrdup("{}");
  send_msg(w, MSG_PULL_RESP, m->rep, m->epoch, status, body);
  free(body);
  json_decref(resp);
  json_decref(req);
}

static void replica_receive(sim_world *w, sim_msg *m) {
  sim_replica *r = &w->rep[m->rep];
  int want = m->kind == MSG_PUSH_RESP ? WAIT_PUSH : WAIT_PULL;
  if (m->epoch != r->epoch || r->busy != want)
    return; /* a stale or duplicated answer: the connection is gone */
  json_t *resp = json_loads(m->body, 0, NULL);
  json_t *req = json_loads(r->busy_req, 0, NULL);
  int rc;
  if (m->kind == MSG_PUSH_RESP) {
    rc = tt_replica_push_done(r->r, req, m->status, resp);
    if (rc == 0 && m->status == 200) {
      uint64_t acked = (uint64_t)json_integer_value(json_object_get(resp, "acked"));
      if (acked > r->acked_max)
        r->acked_max = acked;
    }
  } else {
    int more = 0;
    size_t n = 0;
    rc = tt_replica_pull_done(r->r, m->status, resp, &more, &n);
  }
  if (rc && m->status == 200)
    sim_violation(w, "replica %d could not take a 200 answer: %s (%s)",
                  m->rep, tether_strerror(rc),
                  tt_replica_last_error(r->r));
  json_decref(resp);
  json_decref(req);
  r->busy = IDLE;
  r->epoch++;
  free(r->busy_req);
  r->busy_req = NULL;
}

static void deliver_due(sim_world *w) {
  for (;;) {
    sim_msg **best = NULL;
    for (sim_msg **pp = &w->msgs; *pp; pp = &(*pp)->next)
      if ((*pp)->at <= w->now &&
          (!best || (*pp)->at < (*best)->at ||
           ((*pp)->at == (*best)->at && (*pp)->order < (*best)->order)))
        best = pp;
    if (!best)
      return;
    sim_msg *m = *best;
    *best = m->next;
    if (m->kind == MSG_PUSH_REQ || m->kind == MSG_PULL_REQ)
      server_receive(w, m);
    else
      replica_receive(w, m);
    free_msg(m);
  }
}

/* ---- the world --------------------------------------------------------- */

int sim_world_init(sim_world *w, const sim_cfg *cfg, char *err, size_t len) {
  static const tt_policy policies[] = {TT_POLICY_LWW, TT_POLICY_SERVER_WINS,
                                       TT_POLICY_CLIENT_WINS,
                                       TT_POLICY_MANUAL};
  char conf[256];
  memset(w, 0, sizeof *w);
  w->cfg = *cfg;
  w->rng.s = cfg->seed * 0x9e3779b97f4a7c15ull + 1;
  w->nrep = cfg->replicas;
  w->policy = policies[cfg->seed % 4];
  w->now = SIM_EPOCH_MS;
  w->commits = json_array();
  snprintf(conf, sizeof conf,
           "{\"collections\":{\"notes\":{\"policy\":\"%s\"},"
           "\"ctr\":{\"policy\":\"lww\"}}}",
           tt_policy_name(w->policy));
  int rc = tt_policy_parse(conf, strlen(conf), &w->pol, err, len);
  if (rc)
    return rc;
  snprintf(w->root, sizeof w->root, "/tmp/tether-sim-XXXXXX");
  if (!mkdtemp(w->root)) {
    tt_errf(err, len, "mkdtemp: cannot make a temporary directory in /tmp");
    return TETHER_EIO;
  }
  if ((rc = open_server(w, err, len)))
    return rc;
  for (int i = 0; i < w->nrep; i++) {
    sim_replica *r = &w->rep[i];
    for (int b = 0; b < 16; b++)
      r->id[b] = (uint8_t)sim_rand(&w->rng);
    tt_hex_encode(r->id, 16, r->hex);
    snprintf(r->dir, sizeof r->dir, "%s/r%d", w->root, i);
    /* skews of hours between replicas; sometimes one far in the future */
    r->skew_ms = (int64_t)sim_below(&w->rng, 6 * 3600 * 1000) - 3 * 3600 * 1000;
    if (i == 0 && sim_chance(&w->rng, 300))
      r->skew_ms = 10ll * 365 * 24 * 3600 * 1000;
    if ((rc = open_replica(w, i, 1, err, len)))
      return rc;
  }
  return 0;
}

static void rm_rf(const char *root) {
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
  if (system(cmd) != 0)
    fprintf(stderr, "tether-sim: could not remove %s\n", root);
}

void sim_world_free(sim_world *w) {
  while (w->msgs) {
    sim_msg *m = w->msgs;
    w->msgs = m->next;
    free_msg(m);
  }
  for (size_t i = 0; i < w->ninbox; i++)
    free(w->inbox[i].body);
  free(w->inbox);
  for (int i = 0; i < w->nrep; i++) {
    sim_replica *r = &w->rep[i];
    if (r->r || r->st)
      close_replica(r);
    free(r->busy_req);
    free(r->made);
    free(r->logged);
    free(r->out_seq);
    free(r->out_kind);
  }
  if (w->srv || w->sst)
    close_server(w);
  for (size_t i = 0; i < w->napplied; i++)
    json_decref(w->applied[i].ops);
  free(w->applied);
  json_decref(w->commits);
  tt_policy_free(w->pol);
  if (w->root[0])
    rm_rf(w->root);
}

int sim_world_run(sim_world *w) {
  uint64_t writes = 0;
  while (writes < (uint64_t)w->cfg.ops) {
    w->now += 1 + sim_below(&w->rng, 40);
    deliver_due(w);
    int i = (int)sim_below(&w->rng, (uint64_t)w->nrep);
    sim_replica *r = &w->rep[i];
    if (sim_chance(&w->rng, 450)) {
      local_write(w, i);
      writes++;
    }
    if (r->busy && w->now - r->busy_since > REQ_TIMEOUT) {
      r->busy = IDLE; /* the client gives up and retries later */
      r->epoch++;
    }
    if (!r->busy && sim_chance(&w->rng, 300))
      start_sync(w, i);
    if (sim_chance(&w->rng, 350))
      server_commit(w);
    if (sim_chance(&w->rng, 100))
      sim_take_outcomes(w, i);
    /* faults */
    if (sim_chance(&w->rng, 4) && crash_server(w))
      return -1;
    if (sim_chance(&w->rng, 6) && crash_replica(w, i))
      return -1;
    if (sim_chance(&w->rng, 5)) {
      w->faults++;
      r->cut_until = w->now + sim_below(&w->rng, 5000); /* heals later */
    }
    if (sim_chance(&w->rng, 3)) {
      w->faults++;
      r->skew_ms -= (int64_t)sim_below(&w->rng, 3600 * 1000); /* jumps back */
    }
  }
  return 0;
}

/* Faults off, partitions healed: every replica pushes everything and pulls
 * until nothing moves. */
int sim_world_drain(sim_world *w) {
  w->quiet = 1;
  for (int i = 0; i < w->nrep; i++) {
    w->rep[i].cut_until = 0;
    w->rep[i].busy = IDLE;
    w->rep[i].epoch++;
  }
  w->now += 10000;
  deliver_due(w); /* stale answers fall on the floor */
  server_commit(w);
  w->now += 10000;
  deliver_due(w);
  for (int round = 0; round < 50; round++) {
    int moved = 0;
    for (int i = 0; i < w->nrep; i++) {
      sim_replica *r = &w->rep[i];
      for (int guard = 0; guard < 100000; guard++) {
        uint64_t before = tt_replica_outbox_len(r->r);
        int was_push = before > 0;
        r->busy = IDLE;
        start_sync(w, i);
        w->now += 2;
        deliver_due(w);
        server_commit(w);
        w->now += 2;
        deliver_due(w);
        if (was_push) {
          moved = 1;
          if (tt_replica_outbox_len(r->r) == before) {
            sim_violation(w, "replica %d: push makes no progress (%s)", i,
                          tt_replica_last_error(r->r));
            return -1;
          }
          continue;
        }
        break; /* one pull page was taken; see below */
      }
      /* pull until a page brings nothing */
      for (int guard = 0; guard < 100000; guard++) {
        json_t *req = NULL, *resp = NULL;
        int status = 0, more = 0;
        size_t n = 0;
        if (tt_replica_pull_request(r->r, PULL_PAGE, 0, &req))
          return -1;
        tt_server_pull(w->srv, req, &status, &resp);
        int rc = tt_replica_pull_done(r->r, status, resp, &more, &n);
        json_decref(req);
        json_decref(resp);
        if (rc) {
          sim_violation(w, "replica %d pull in drain: %s (%s)", i,
                        tether_strerror(rc), tt_replica_last_error(r->r));
          return -1;
        }
        if (n)
          moved = 1;
        if (!more)
          break;
      }
      sim_take_outcomes(w, i);
    }
    if (!moved)
      return 0;
  }
  sim_violation(w, "no quiescence after 50 sync rounds");
  return -1;
}
