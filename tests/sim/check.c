/* check.c — the checkers, run after the world has drained. Each guarantee
 * of DESIGN.md that the simulation can observe is judged here against what
 * the world recorded, never against what the engine says of itself. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/doc.h"
#include "core/util.h"
#include "sim.h"

/* ---- a growable text buffer -------------------------------------------- */

typedef struct {
  char *s;
  size_t len, cap;
} buf;

static void bput(buf *b, const char *s, size_t n) {
  if (b->len + n + 1 > b->cap) {
    b->cap = (b->len + n + 1) * 2;
    b->s = realloc(b->s, b->cap);
    if (!b->s)
      exit(3);
  }
  memcpy(b->s + b->len, s, n);
  b->len += n;
  b->s[b->len] = 0;
}

static void bputs(buf *b, const char *s) { bput(b, s, strlen(s)); }

/* ---- server state, read straight from its store ------------------------ */

typedef struct {
  sim_world *w;
  buf out;
  int bad;
} server_dump;

static int server_doc_cb(void *ctx, tt_bytes key, tt_bytes val) {
  server_dump *d = ctx;
  tt_doc doc = {0};
  const char *k = key.data;
  size_t clen = strnlen(k, key.len);
  uint64_t limit = d->w->max_now + SIM_MAX_SKEW_MS;

  if (clen >= key.len || tt_doc_decode(val.data, val.len, &doc)) {
    sim_violation(d->w, "server document record unreadable");
    d->bad = 1;
    return 0;
  }
  /* The clamp: no stamp may claim a time beyond what the server allowed. */
  for (size_t i = 0; i < doc.nfields; i++)
    if (TT_HLC_MS(doc.fields[i].stamp.hlc) > limit)
      sim_violation(d->w,
                    "clamp: %.*s/%.*s field %s stamped %llu ms, beyond "
                    "server time + max skew %llu",
                    (int)clen, k, (int)(key.len - clen - 1), k + clen + 1,
                    doc.fields[i].name,
                    (unsigned long long)TT_HLC_MS(doc.fields[i].stamp.hlc),
                    (unsigned long long)limit);
  json_t *view = tt_doc_view(&doc);
  if (view) {
    char *c = tt_canon(view);
    bput(&d->out, k, clen);
    bputs(&d->out, "\t");
    bput(&d->out, k + clen + 1, key.len - clen - 1);
    bputs(&d->out, "\t");
    bputs(&d->out, c);
    bputs(&d->out, "\n");
    free(c);
    json_decref(view);
  }
  tt_doc_clear(&doc);
  return 0;
}

static char *dump_server(sim_world *w) {
  server_dump d = {.w = w};
  tt_txn *t = NULL;
  tt_bytes from = {NULL, 0};
  bputs(&d.out, "");
  if (tt_txn_begin(w->sst, 0, 0, &t) == 0) {
    tt_scan(t, TT_TABLE_DOCS, from, server_doc_cb, &d);
    tt_abort(t);
  } else {
    sim_violation(w, "cannot read the server store");
  }
  return d.out.s;
}

typedef struct {
  buf *out;
  const char *coll;
} list_ctx;

static int replica_doc_cb(void *ctx, const char *id, const json_t *doc) {
  list_ctx *l = ctx;
  char *c = tt_canon(doc);
  bputs(l->out, l->coll);
  bputs(l->out, "\t");
  bputs(l->out, id);
  bputs(l->out, "\t");
  bputs(l->out, c);
  bputs(l->out, "\n");
  free(c);
  return 0;
}

static char *dump_replica(sim_world *w, int i) {
  static const char *colls[] = {"ctr", "notes"}; /* store key order */
  buf out = {0};
  bputs(&out, "");
  for (int c = 0; c < 2; c++) {
    list_ctx l = {&out, colls[c]};
    int rc = tt_replica_list(w->rep[i].r, colls[c], replica_doc_cb, &l);
    if (rc)
      sim_violation(w, "replica %d list %s: %s", i, colls[c],
                    tether_strerror(rc));
  }
  return out.s;
}

/* ---- G4 convergence, G1 nothing lost, G3 order, G2 exactly once -------- */

static void check_convergence(sim_world *w, const char *server) {
  for (int i = 0; i < w->nrep; i++) {
    char *mine = dump_replica(w, i);
    if (strcmp(mine, server) != 0) {
      sim_violation(w, "G4: replica %d differs from the server", i);
      if (w->cfg.verbose)
        fprintf(stderr, "--- server\n%s--- replica %d\n%s", server, i, mine);
    }
    free(mine);
    if (tt_replica_outbox_len(w->rep[i].r) != 0)
      sim_violation(w, "replica %d still has %llu intents in its outbox", i,
                    (unsigned long long)tt_replica_outbox_len(w->rep[i].r));
  }
}

static void check_outcomes(sim_world *w) {
  for (int i = 0; i < w->nrep; i++) {
    sim_replica *r = &w->rep[i];
    uint64_t last = 0;
    if (tt_server_replica_last_seq(w->srv, r->id, &last))
      sim_violation(w, "server has no dedupe record for replica %d", i);
    if (last != r->nmade)
      sim_violation(w,
                    "G1: replica %d made %zu intents, the server applied %llu",
                    i, r->nmade, (unsigned long long)last);
    if (r->nout != r->nmade)
      sim_violation(w,
                    "replica %d made %zu intents but was told %zu outcomes",
                    i, r->nmade, r->nout);
    for (size_t k = 0; k < r->nout; k++)
      if (r->out_seq[k] != k + 1) {
        sim_violation(w,
                      "G3: replica %d outcome #%zu is for seq %llu, expected "
                      "%zu (order or coverage broken)",
                      i, k + 1, (unsigned long long)r->out_seq[k], k + 1);
        break;
      }
  }
  /* what the server decided is what each replica was told */
  for (size_t k = 0; k < w->napplied; k++) {
    sim_applied *a = &w->applied[k];
    sim_replica *r = &w->rep[a->rep];
    if (a->seq >= 1 && a->seq <= r->nout &&
        strcmp(r->out_kind[a->seq - 1], a->outcome) != 0)
      sim_violation(w,
                    "replica %d seq %llu: server decided %s, replica was "
                    "told %s",
                    a->rep, (unsigned long long)a->seq, a->outcome,
                    r->out_kind[a->seq - 1]);
  }
}

static void check_counters(sim_world *w) {
  static const char *ids[] = {"c0", "c1"};
  for (int c = 0; c < 2; c++) {
    int64_t expect = 0;
    for (int i = 0; i < w->nrep; i++) {
      sim_replica *r = &w->rep[i];
      for (size_t k = 0; k < r->nmade && k < r->nout; k++)
        if (r->made[k].is_ctr_incr && strcmp(r->made[k].id, ids[c]) == 0 &&
            strcmp(r->out_kind[k], "rejected") != 0)
          expect += r->made[k].delta;
    }
    json_t *doc = NULL;
    int64_t got = 0;
    if (tt_replica_get(w->rep[0].r, "ctr", ids[c], &doc) == 0) {
      got = json_integer_value(json_object_get(doc, "v"));
      json_decref(doc);
    }
    if (got != expect)
      sim_violation(w,
                    "G2: counter ctr/%s is %lld, the acknowledged increments "
                    "sum to %lld",
                    ids[c], (long long)got, (long long)expect);
  }
}

/* ---- G5: field-level conflict rules, judged in the server's order ------ */

typedef struct {
  char key[128]; /* coll/id/field */
  int known;    /* value below is the field's current value */
  int rep;
  uint64_t commit;
  char *value;  /* canonical text, NULL = absent */
} field_state;

typedef struct {
  char key[128];
  int rep;
  uint64_t commit;
} touch;

typedef struct {
  field_state *f;
  size_t nf, capf;
  touch *t;
  size_t nt, capt;
} g5_state;

static field_state *field_get(g5_state *g, const char *key) {
  for (size_t i = 0; i < g->nf; i++)
    if (strcmp(g->f[i].key, key) == 0)
      return &g->f[i];
  if (g->nf == g->capf) {
    g->capf = g->capf ? 2 * g->capf : 64;
    g->f = realloc(g->f, g->capf * sizeof *g->f);
    if (!g->f)
      exit(3);
  }
  field_state *f = &g->f[g->nf++];
  memset(f, 0, sizeof *f);
  snprintf(f->key, sizeof f->key, "%s", key);
  return f;
}

static void field_forget_doc(g5_state *g, const char *prefix) {
  size_t n = strlen(prefix);
  for (size_t i = 0; i < g->nf; i++)
    if (strncmp(g->f[i].key, prefix, n) == 0)
      g->f[i].known = 0;
}

static void add_touch(g5_state *g, const char *key, int rep, uint64_t commit) {
  if (g->nt == g->capt) {
    g->capt = g->capt ? 2 * g->capt : 256;
    g->t = realloc(g->t, g->capt * sizeof *g->t);
    if (!g->t)
      exit(3);
  }
  touch *t = &g->t[g->nt++];
  snprintf(t->key, sizeof t->key, "%s", key);
  t->rep = rep;
  t->commit = commit;
}

/* Did another replica write KEY (or delete its document, PREFIX "_doc")
 * at a commit the intent had not seen? */
static int touched_by_other(const g5_state *g, const char *prefix,
                            const char *key, int rep, uint64_t base) {
  char doc[128];
  snprintf(doc, sizeof doc, "%s_doc", prefix);
  for (size_t i = 0; i < g->nt; i++)
    if (g->t[i].rep != rep && g->t[i].commit > base &&
        (strcmp(g->t[i].key, key) == 0 || strcmp(g->t[i].key, doc) == 0))
      return 1;
  return 0;
}

static char *canon_or_null(const json_t *v) { return v ? tt_canon(v) : NULL; }

static int same_text(const char *a, const char *b) {
  return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void check_fields(sim_world *w) {
  g5_state g = {0};
  char key[128], prefix[40];
  for (size_t k = 0; k < w->napplied; k++) {
    sim_applied *a = &w->applied[k];
    int applied = strcmp(a->outcome, "applied") == 0;
    int rejected = strcmp(a->outcome, "rejected") == 0;
    int merged_by_policy =
        strcmp(a->outcome, "merged") == 0 &&
        (!strcmp(a->rule, "lww") || !strcmp(a->rule, "server-wins") ||
         !strcmp(a->rule, "client-wins"));
    if (rejected)
      continue;
    snprintf(prefix, sizeof prefix, "%s/%s/", a->coll, a->id);
    /* the document's version before this intent: an intent whose commit
     * does not pass it changed nothing (its commit is the current one) */
    char vkey[sizeof key];
    snprintf(vkey, sizeof vkey, "%s#version", prefix);
    /* Looked up again at the end: field_get may move the array. */
    int changed = a->commit > field_get(&g, vkey)->commit;

    /* Different fields never conflict: a conflict or a policy decision
     * needs another replica's write to that field the intent had not seen. */
    if (strcmp(a->outcome, "conflict") == 0 && strcmp(a->cfield, "_doc")) {
      snprintf(key, sizeof key, "%s%s", prefix, a->cfield);
      if (!touched_by_other(&g, prefix, key, a->rep, a->base))
        sim_violation(w,
                      "G5: replica %d seq %llu got a conflict on %s though "
                      "no other replica wrote it since base %llu",
                      a->rep, (unsigned long long)a->seq, key,
                      (unsigned long long)a->base);
    }
    if (merged_by_policy && json_array_size(a->ops) == 1) {
      json_t *op = json_array_get(a->ops, 0);
      const char *kind = json_string_value(json_object_get(op, "kind"));
      const char *f = json_string_value(json_object_get(op, "field"));
      if (f && kind && (!strcmp(kind, "set") || !strcmp(kind, "unset"))) {
        snprintf(key, sizeof key, "%s%s", prefix, f);
        if (!touched_by_other(&g, prefix, key, a->rep, a->base))
          sim_violation(w,
                        "G5: replica %d seq %llu merged(%s) on %s without "
                        "any concurrent write",
                        a->rep, (unsigned long long)a->seq, a->rule, key);
      }
    }

    for (size_t o = 0; o < json_array_size(a->ops); o++) {
      json_t *op = json_array_get(a->ops, o);
      const char *kind = json_string_value(json_object_get(op, "kind"));
      const char *f = json_string_value(json_object_get(op, "field"));
      if (!kind)
        continue;
      int whole = f && !strcmp(f, "_doc"); /* resolve of a delete conflict */
      if (!strcmp(kind, "create") || !strcmp(kind, "delete") || whole) {
        field_forget_doc(&g, prefix);
        json_t *obj = json_object_get(op, "value");
        const char *name;
        json_t *val;
        json_object_foreach(obj, name, val) {
          snprintf(key, sizeof key, "%s%s", prefix, name);
          field_get(&g, key)->known = 0;
          add_touch(&g, key, a->rep, a->commit);
        }
        /* a delete removes every field; a create unsets the ones its
         * value lacks */
        if (!strcmp(kind, "delete") || whole) {
          snprintf(key, sizeof key, "%s_doc", prefix);
          add_touch(&g, key, a->rep, a->commit);
        }
        for (size_t i = 0; i < g.nf; i++)
          if (!strncmp(g.f[i].key, prefix, strlen(prefix)))
            add_touch(&g, g.f[i].key, a->rep, a->commit);
        continue;
      }
      if (!f)
        continue;
      snprintf(key, sizeof key, "%s%s", prefix, f);
      field_state *fs = field_get(&g, key);
      int is_write = !strcmp(kind, "set") || !strcmp(kind, "unset");
      if (is_write && applied && fs->known && fs->rep >= 0 && fs->rep != a->rep &&
          fs->commit > a->base) {
        char *base = canon_or_null(json_object_get(op, "base_value"));
        char *ours = strcmp(kind, "unset")
                         ? canon_or_null(json_object_get(op, "value"))
                         : NULL;
        /* three-way: theirs == base takes ours; ours == theirs is a no-op */
        if (!same_text(base, fs->value) && !same_text(ours, fs->value))
          sim_violation(w,
                        "G5: replica %d seq %llu overwrote %s as 'applied' "
                        "though replica %d wrote it at commit %llu after "
                        "base %llu (undetected concurrent write)",
                        a->rep, (unsigned long long)a->seq, key, fs->rep,
                        (unsigned long long)fs->commit,
                        (unsigned long long)a->base);
        free(base);
        free(ours);
      }
      add_touch(&g, key, a->rep, a->commit);
      if (!changed)
        continue; /* the intent moved nothing: the field keeps its writer */
      int sets = applied && (is_write || !strcmp(kind, "resolve"));
      char *nv = NULL;
      if (sets && strcmp(kind, "unset") &&
          !json_is_true(json_object_get(op, "unset")))
        nv = canon_or_null(json_object_get(op, "value"));
      if (sets && fs->known && same_text(nv, fs->value)) {
        free(nv); /* this op was a no-op inside a larger intent */
        continue;
      }
      free(fs->value);
      fs->value = NULL;
      if (sets) {
        /* Known value; the writer is certain when the value moved or the
         * intent had only this op to change the document with. */
        fs->rep = fs->known || json_array_size(a->ops) == 1 ? a->rep : -1;
        fs->known = 1;
        fs->commit = a->commit;
        fs->value = nv;
      } else {
        fs->known = 0;
      }
    }
    if (changed)
      field_get(&g, vkey)->commit = a->commit;
  }
  for (size_t i = 0; i < g.nf; i++)
    free(g.f[i].value);
  free(g.f);
  free(g.t);
}

/* ---- G6: replaying the server's committed order gives the same state --- */

typedef struct {
  buf out;
} raw_dump;

static int raw_cb(void *ctx, tt_bytes key, tt_bytes val) {
  raw_dump *d = ctx;
  char hex[9];
  snprintf(hex, sizeof hex, "%08zx", key.len);
  bputs(&d->out, hex);
  bput(&d->out, key.data, key.len);
  snprintf(hex, sizeof hex, "%08zx", val.len);
  bputs(&d->out, hex);
  bput(&d->out, val.data, val.len);
  return 0;
}

static char *raw_tables(tt_store *st) {
  static const tt_table tabs[] = {TT_TABLE_DOCS, TT_TABLE_CHANGES,
                                  TT_TABLE_CONFLICTS};
  raw_dump d = {0};
  tt_txn *t = NULL;
  tt_bytes from = {NULL, 0};
  bputs(&d.out, "");
  if (tt_txn_begin(st, 0, 0, &t))
    return d.out.s;
  for (size_t i = 0; i < sizeof tabs / sizeof tabs[0]; i++) {
    tt_scan(t, tabs[i], from, raw_cb, &d);
    bputs(&d.out, "|");
  }
  tt_abort(t);
  return d.out.s;
}

/* The replay crashes where the world's server crashed: at the same commit
 * point of the same partition transaction. */
typedef struct {
  const char *point;
  unsigned skip;
} replay_fault;

static int replay_hook(void *ctx, const char *point) {
  replay_fault *f = ctx;
  if (!f->point || strcmp(point, f->point) != 0)
    return 0;
  if (f->skip) {
    f->skip--;
    return 0;
  }
  f->point = NULL;
  return 1;
}

static void check_replay(sim_world *w) {
  char dir[300], err[256];
  tt_store *st = NULL;
  tt_server *srv = NULL;
  tt_store_opts so = {.map_size = 256u << 20, .no_sync = 1};
  replay_fault rf = {0};
  tt_server_opts o = {.max_skew_ms = SIM_MAX_SKEW_MS,
                      .partitions = w->cfg.partitions,
                      .fault = replay_hook,
                      .fault_ctx = &rf};
  snprintf(dir, sizeof dir, "%s/replay", w->root);
  if (tt_store_open_lmdb(dir, &so, &st, err, sizeof err) ||
      tt_server_open(st, w->pol, &o, &srv, err, sizeof err)) {
    sim_violation(w, "replay store: %s", err);
    tt_store_close(st);
    return;
  }
  for (size_t c = 0; c < json_array_size(w->commits); c++) {
    json_t *commit = json_array_get(w->commits, c);
    json_t *bodies = json_object_get(commit, "bodies");
    size_t n = json_array_size(bodies);
    tt_push_job *jobs = calloc(n ? n : 1, sizeof *jobs);
    json_t **reqs = calloc(n ? n : 1, sizeof *reqs);
    if (!jobs || !reqs)
      exit(3);
    for (size_t k = 0; k < n; k++) {
      reqs[k] = json_loads(json_string_value(json_array_get(bodies, k)), 0,
                           NULL);
      jobs[k].request = reqs[k];
    }
    rf.point = json_string_value(json_object_get(commit, "crash"));
    rf.skip = (unsigned)json_integer_value(json_object_get(commit, "skip"));
    int crash = rf.point != NULL;
    int prc = tt_server_push(srv, jobs, n,
                             (uint64_t)json_integer_value(
                                 json_object_get(commit, "now")));
    if (crash && (prc != TETHER_EUNAVAILABLE || rf.point))
      sim_violation(w, "G6: replayed commit %zu did not crash where the "
                       "world's did",
                    c);
    else if (!crash && prc)
      sim_violation(w, "G6: replayed commit %zu failed", c);
    rf.point = NULL;
    for (size_t k = 0; k < n; k++) {
      json_decref(jobs[k].response);
      json_decref(reqs[k]);
    }
    free(jobs);
    free(reqs);
    if (crash) { /* restarted, as the world's server was */
      tt_server_close(srv);
      srv = NULL;
      if (tt_server_open(st, w->pol, &o, &srv, err, sizeof err)) {
        sim_violation(w, "replay reopen: %s", err);
        tt_store_close(st);
        return;
      }
    }
  }
  char *a = raw_tables(w->sst), *b = raw_tables(st);
  if (strcmp(a, b) != 0)
    sim_violation(w,
                  "G6: replaying the server's %zu committed batches in order "
                  "gives a different state",
                  json_array_size(w->commits));
  free(a);
  free(b);
  tt_server_close(srv);
  tt_store_close(st);
}

static void print_log(sim_world *w) {
  const char *doc = getenv("SIM_TRACE_DOC"); /* e.g. notes/n0 */
  for (size_t k = 0; doc && k < w->napplied; k++) {
    sim_applied *a = &w->applied[k];
    char d[40];
    snprintf(d, sizeof d, "%s/%s", a->coll, a->id);
    if (strcmp(d, doc))
      continue;
    char *ops = json_dumps(a->ops, JSON_COMPACT);
    fprintf(stderr, "rep %d seq %llu base %llu -> %s %s commit %llu %s\n",
            a->rep, (unsigned long long)a->seq, (unsigned long long)a->base,
            a->outcome, a->rule, (unsigned long long)a->commit, ops);
    free(ops);
  }
}

int sim_check(sim_world *w) {
  uint64_t before = w->violations;
  if (w->cfg.verbose)
    print_log(w);
  char *server = dump_server(w);
  check_convergence(w, server);
  free(server);
  check_outcomes(w);
  check_counters(w);
  check_fields(w);
  check_replay(w);
  return (int)(w->violations - before);
}
