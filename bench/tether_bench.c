/* tether_bench — measures the workloads of WORKLOADS.md (W1, W2, W3).
 *
 * Every run is a fresh world: a temp dir, a `tether serve` started as a
 * separate process on a free loopback port, and replicas that talk to it over
 * HTTP through the public API (tether.h). Each replica role runs in a forked
 * child so its peak RSS belongs to it alone. Nothing is made less durable
 * than shipped.
 *
 * stdout: exactly one JSON line per run. stderr: progress and, at the end,
 * median/min/max across runs.
 *
 * With --backend redis://… or redis-cluster://… the server keeps its state
 * in that Redis instead. The bench then talks to Redis itself only through
 * `redis-cli` (a child process, like the server): FLUSHALL on every master
 * before each run, and INFO around each measured phase for the Redis side
 * of the cost (commands per document, Redis CPU, AOF bytes).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include "tether.h"

#define COLL "docs"
#define MAX_RUNS 100
#define MAX_METRICS 160
#define MAX_SYNC_CALLS 20 /* a sync loop that needs more is not converging */

/* ---- options ------------------------------------------------------------ */

typedef struct {
  const char *workload;
  uint64_t n;
  int runs;
  const char *tether_bin;
  int keep;
  uint64_t batch;
  uint32_t timeout_ms;
  const char *tmpbase;
  int quiet;
  const char *backend;   /* NULL: LMDB at the server's --data */
  uint32_t partitions;   /* 0: the server's default */
} options;

static options g_opt;
static char g_tether_path[PATH_MAX];

/* ---- time, memory -------------------------------------------------------- */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Reads "KEY:   123 kB" from /proc/PID/status; -1 when unavailable. */
static long proc_status_kb(pid_t pid, const char *key) {
  char path[64], line[256];
  long v = -1;
  size_t klen = strlen(key);
  if (pid > 0)
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
  else
    snprintf(path, sizeof path, "/proc/self/status");
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
      v = strtol(line + klen + 1, NULL, 10);
      break;
    }
  }
  fclose(f);
  return v;
}

/* User+system CPU seconds of PID so far (from /proc/PID/stat); NaN if gone. */
static double proc_cpu_s(pid_t pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f) return NAN;
  size_t k = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[k] = '\0';
  /* comm may hold spaces: fields count from the last ')' */
  char *p = strrchr(buf, ')');
  if (!p) return NAN;
  unsigned long long ut = 0, st = 0;
  if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
             &ut, &st) != 2)
    return NAN;
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* Bytes PID caused to be written to storage (/proc/PID/io write_bytes). */
static double proc_write_bytes(pid_t pid) {
  char path[64], line[256];
  double v = NAN;
  snprintf(path, sizeof path, "/proc/%d/io", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f) return NAN;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "write_bytes:", 12) == 0) v = strtod(line + 12, NULL);
  fclose(f);
  return v;
}

/* CPU seconds (user+system, all threads) used by this process so far. */
static double self_cpu_s(void) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0) return NAN;
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* Seconds PID's live threads spent waiting for a core (runqueue), summed
 * from /proc/PID/task/TID/schedstat; NaN if unavailable. On a shared
 * machine this separates "waiting for CPU" from waiting for disk or peer. */
static double proc_runq_wait_s(pid_t pid) {
  char path[96];
  snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
  DIR *d = opendir(path);
  if (!d) return NAN;
  double sum = 0;
  int any = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    char sp[160];
    snprintf(sp, sizeof sp, "/proc/%d/task/%.20s/schedstat", (int)pid, e->d_name);
    FILE *f = fopen(sp, "r");
    if (!f) continue;
    unsigned long long run = 0, wait = 0;
    if (fscanf(f, "%llu %llu", &run, &wait) == 2) {
      sum += (double)wait / 1e9;
      any = 1;
    }
    fclose(f);
  }
  closedir(d);
  return any ? sum : NAN;
}

/* ---- results: named numbers, printed as one JSON line -------------------- */

typedef struct {
  char name[40];
  double v;
  int is_int; /* print as an integer; 2 = boolean */
} metric;

/* POD so a child can hand it to the parent through a pipe. */
typedef struct {
  int ok;
  char error[512];
  int nm;
  metric m[MAX_METRICS];
} result;

static void res_set(result *r, const char *name, double v, int is_int) {
  for (int i = 0; i < r->nm; i++) {
    if (strcmp(r->m[i].name, name) == 0) {
      r->m[i].v = v;
      r->m[i].is_int = is_int;
      return;
    }
  }
  if (r->nm >= MAX_METRICS) return;
  /* names are literals of the driver; a longer one is cut, not overflowed */
  size_t len = strnlen(name, sizeof r->m[0].name - 1);
  memcpy(r->m[r->nm].name, name, len);
  r->m[r->nm].name[len] = '\0';
  r->m[r->nm].v = v;
  r->m[r->nm].is_int = is_int;
  r->nm++;
}
static void res_f(result *r, const char *name, double v) { res_set(r, name, v, 0); }
static void res_i(result *r, const char *name, double v) { res_set(r, name, v, 1); }
static void res_b(result *r, const char *name, int v) { res_set(r, name, v ? 1 : 0, 2); }

static const metric *res_get(const result *r, const char *name) {
  for (int i = 0; i < r->nm; i++)
    if (strcmp(r->m[i].name, name) == 0) return &r->m[i];
  return NULL;
}

/* Appends to r->error (first error first) and marks the run failed. */
static void res_fail(result *r, const char *fmt, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  r->ok = 0;
  size_t len = strlen(r->error);
  if (len + 3 < sizeof r->error)
    snprintf(r->error + len, sizeof r->error - len, "%s%s", len ? "; " : "", buf);
}

static void res_merge(result *dst, const result *src, const char *prefix) {
  char name[64];
  for (int i = 0; i < src->nm; i++) {
    snprintf(name, sizeof name, "%s%s", prefix, src->m[i].name);
    res_set(dst, name, src->m[i].v, src->m[i].is_int);
  }
  if (!src->ok) res_fail(dst, "%s%s", prefix, src->error[0] ? src->error : "failed");
}

/* Moves the named figures to the front, in that order, so the headline
 * figures of a workload lead its JSON line and its summary. */
static void res_front(result *r, const char *const *names) {
  int at = 0;
  for (; *names; names++) {
    for (int i = at; i < r->nm; i++) {
      if (strcmp(r->m[i].name, *names) == 0) {
        metric m = r->m[i];
        memmove(&r->m[at + 1], &r->m[at], (size_t)(i - at) * sizeof m);
        r->m[at++] = m;
        break;
      }
    }
  }
}

static void json_escape_print(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
    else if (c < 0x20) fprintf(f, "\\u%04x", c);
    else fputc(c, f);
  }
  fputc('"', f);
}

static void res_print_json(FILE *f, const char *workload, uint64_t n, int run,
                           const result *r) {
  fprintf(f, "{\"workload\":\"%s\",\"n\":%llu,\"run\":%d,\"ok\":%s", workload,
          (unsigned long long)n, run, r->ok ? "true" : "false");
  if (g_opt.backend) {
    /* the password, if any, stays out of the results */
    const char *at = strrchr(g_opt.backend, '@'), *sch = strstr(g_opt.backend, "://");
    fputs(",\"backend\":", f);
    if (at && sch && sch < at) {
      char masked[512];
      snprintf(masked, sizeof masked, "%.*s***%s", (int)(sch + 3 - g_opt.backend),
               g_opt.backend, at);
      json_escape_print(f, masked);
    } else {
      json_escape_print(f, g_opt.backend);
    }
  }
  if (g_opt.partitions) fprintf(f, ",\"partitions\":%u", (unsigned)g_opt.partitions);
  for (int i = 0; i < r->nm; i++) {
    const metric *m = &r->m[i];
    fprintf(f, ",\"%s\":", m->name);
    if (m->is_int == 2) fputs(m->v != 0 ? "true" : "false", f);
    else if (isnan(m->v)) fputs("null", f); /* NaN: not measured */
    else if (m->is_int) fprintf(f, "%.0f", m->v);
    else fprintf(f, "%.4f", m->v);
  }
  if (!r->ok) {
    fputs(",\"error\":", f);
    json_escape_print(f, r->error[0] ? r->error : "failed");
  }
  fputs("}\n", f);
  fflush(f);
}

/* ---- progress to stderr --------------------------------------------------- */

static void logf_(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fflush(stderr);
}

typedef struct {
  const char *label;
  double t0;        /* when the sync call started */
  double last_print;
  double t_push_end; /* last push callback seen; 0 if none */
  double t_first_pull;
  uint64_t pulled;   /* highest pull "done" seen */
  uint64_t pushed;
  uint64_t calls;
} progress_ctx;

static void on_progress(void *vctx, const tether_progress *p) {
  progress_ctx *c = vctx;
  double t = now_s();
  int is_pull = p->phase && strcmp(p->phase, "pull") == 0;
  c->calls++;
  if (is_pull) {
    if (c->t_first_pull == 0) c->t_first_pull = t;
    if (p->done > c->pulled) c->pulled = p->done;
  } else {
    c->t_push_end = t;
    if (p->done > c->pushed) c->pushed = p->done;
  }
  if (g_opt.quiet) return;
  if (t - c->last_print >= 1.0 ||
      (!is_pull && p->total && p->done == p->total)) {
    double el = t - c->t0, pel = t - c->t_first_pull;
    if (is_pull)
      logf_("  [%s] pull: %llu changes (%.1f s, %.0f/s since the pull began)\n",
            c->label, (unsigned long long)p->done, el,
            pel > 0 ? (double)p->done / pel : 0.0);
    else
      logf_("  [%s] push: %llu/%llu intents (%.1f s)\n", c->label,
            (unsigned long long)p->done, (unsigned long long)p->total, el);
    c->last_print = t;
  }
}

/* Syncs until the outbox is empty (every intent acknowledged durably) or an
 * error. Records the wall time and the push/pull split in R under PREFIX. */
static int sync_until_done(tether *t, const char *label, result *r,
                           const char *prefix, double *seconds) {
  progress_ctx pc;
  memset(&pc, 0, sizeof pc);
  pc.label = label;
  tether_sync_opts so;
  memset(&so, 0, sizeof so);
  so.progress = on_progress;
  so.progress_ctx = &pc;
  so.timeout_ms = g_opt.timeout_ms;
  int rc = 0, calls = 0;
  char name[64];
  double t0 = now_s(), c0 = self_cpu_s(), q0 = proc_runq_wait_s(getpid());
  pc.t0 = t0;
  pc.last_print = t0;
  for (;;) {
    calls++;
    rc = tether_sync(t, &so);
    if (rc) {
      res_fail(r, "%s: tether_sync: %s (%s)", label, tether_err_name(rc),
               tether_last_error(t));
      break;
    }
    tether_stats st;
    rc = tether_get_stats(t, &st);
    if (rc) {
      res_fail(r, "%s: tether_get_stats: %s", label, tether_err_name(rc));
      break;
    }
    if (st.pending_intents == 0) break;
    if (calls >= MAX_SYNC_CALLS) {
      res_fail(r, "%s: %llu intents still pending after %d syncs", label,
               (unsigned long long)st.pending_intents, calls);
      rc = TETHER_EPROTO;
      break;
    }
  }
  double t1 = now_s();
  *seconds = t1 - t0;
  snprintf(name, sizeof name, "%ssync_calls", prefix);
  res_i(r, name, calls);
  /* CPU this replica spent in the sync; the rest of the wall time is the
   * server, the disks (fsync) and waiting for a core */
  snprintf(name, sizeof name, "%ssync_cpu_s", prefix);
  res_f(r, name, self_cpu_s() - c0);
  snprintf(name, sizeof name, "%ssync_runq_wait_s", prefix);
  res_f(r, name, proc_runq_wait_s(getpid()) - q0);
  if (pc.t_push_end > 0) {
    snprintf(name, sizeof name, "%spush_s", prefix);
    res_f(r, name, pc.t_push_end - t0);
    snprintf(name, sizeof name, "%spull_s", prefix);
    res_f(r, name, t1 - pc.t_push_end);
  }
  snprintf(name, sizeof name, "%sprogress_calls", prefix);
  res_i(r, name, (double)pc.calls);
  return rc;
}

/* ---- the document ---------------------------------------------------------*/

static const char LOREM[] =
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod "
    "tempor incididunt ut labore et dolore magna aliqua ut enim ad minim veni"
    "am quis nostrud exercitation ullamco laboris nisi ut aliquip ex ea commod"
    "o consequat duis aute irure dolor in reprehenderit in voluptate velit ess";
static const char *TAGS[] = {"red", "green", "blue", "work", "home",
                             "urgent", "later"};

static void doc_id(char *buf, size_t cap, uint64_t i) {
  snprintf(buf, cap, "doc-%llu", (unsigned long long)i);
}

/* About 200 bytes: title 16 chars, body 120 chars, n, done, two tags. */
static void doc_json(char *buf, size_t cap, uint64_t i) {
  char body[121];
  int head = snprintf(body, sizeof body, "doc %010llu ", (unsigned long long)i);
  size_t off = (size_t)((i * 7) % 120);
  memcpy(body + head, LOREM + off, (size_t)(120 - head));
  body[120] = '\0';
  snprintf(buf, cap,
           "{\"title\":\"title-%010llu\",\"body\":\"%s\",\"n\":%llu,"
           "\"done\":%s,\"tags\":[\"%s\",\"%s\"]}",
           (unsigned long long)i, body, (unsigned long long)i,
           (i % 2) ? "true" : "false", TAGS[i % 7], TAGS[(i / 7 + 3) % 7]);
}

/* W3 edits: A retitles (still 16 chars), B renumbers. */
static void w3_title(char *buf, size_t cap, uint64_t i) {
  snprintf(buf, cap, "edit-A-%09llu", (unsigned long long)i);
}
static int64_t w3_n(uint64_t i) { return 1000000000LL + (int64_t)i; }

/* ---- replica roles (each runs in a forked child) -------------------------- */

typedef struct {
  const char *dir;   /* replica dir */
  const char *dir2;  /* second replica (W3) */
  const char *url;
  uint64_t n;
  const char *label;
} role_args;

static int open_new_replica(const char *dir, const char *url, tether **out,
                            result *r) {
  int rc = tether_init(dir, url);
  if (rc) {
    res_fail(r, "tether_init(%s): %s", dir, tether_err_name(rc));
    return rc;
  }
  rc = tether_open(out, dir);
  if (rc) res_fail(r, "tether_open(%s): %s", dir, tether_err_name(rc));
  return rc;
}

/* Writes N items in batches of g_opt.batch; WRITE does one item. */
typedef int (*write_fn)(tether *t, uint64_t i, void *ctx);

static int batched_writes(tether *t, uint64_t n, write_fn fn, void *ctx,
                          const char *label, const char *key, result *r,
                          double *seconds) {
  int rc = 0;
  uint64_t failed = 0;
  double t0 = now_s(), last = t0, c0 = self_cpu_s();
  for (uint64_t i = 0; i < n && !rc;) {
    rc = tether_batch_begin(t);
    if (rc) {
      res_fail(r, "%s: tether_batch_begin: %s", label, tether_err_name(rc));
      break;
    }
    uint64_t end = i + g_opt.batch < n ? i + g_opt.batch : n;
    for (; i < end; i++) {
      int wrc = fn(t, i, ctx);
      if (wrc) {
        if (!failed)
          res_fail(r, "%s: write %llu: %s (%s)", label, (unsigned long long)i,
                   tether_err_name(wrc), tether_last_error(t));
        failed++;
      }
    }
    rc = tether_batch_commit(t);
    if (rc) {
      res_fail(r, "%s: tether_batch_commit: %s", label, tether_err_name(rc));
      break;
    }
    double now = now_s();
    if (!g_opt.quiet && now - last >= 1.0) {
      logf_("  [%s] local writes: %llu/%llu (%.0f/s)\n", label,
            (unsigned long long)i, (unsigned long long)n,
            (double)i / (now - t0));
      last = now;
    }
  }
  *seconds = now_s() - t0;
  {
    char name[64];
    snprintf(name, sizeof name, "%s_cpu_s", key);
    res_f(r, name, self_cpu_s() - c0);
  }
  if (failed) {
    char name[64];
    snprintf(name, sizeof name, "failed_writes");
    res_i(r, name, (double)failed);
    if (!rc) rc = TETHER_EIO;
  }
  return rc;
}

static int write_create(tether *t, uint64_t i, void *ctx) {
  (void)ctx;
  char id[32], json[512];
  doc_id(id, sizeof id, i);
  doc_json(json, sizeof json, i);
  return tether_put(t, COLL, id, json);
}

static int write_title(tether *t, uint64_t i, void *ctx) {
  (void)ctx;
  char id[32], val[40], title[24];
  doc_id(id, sizeof id, i);
  w3_title(title, sizeof title, i);
  snprintf(val, sizeof val, "\"%s\"", title);
  return tether_set(t, COLL, id, "title", val);
}

static int write_n(tether *t, uint64_t i, void *ctx) {
  (void)ctx;
  char id[32], val[32];
  doc_id(id, sizeof id, i);
  snprintf(val, sizeof val, "%lld", (long long)w3_n(i));
  return tether_set(t, COLL, id, "n", val);
}

static void res_peak_rss_self(result *r) {
  res_i(r, "replica_peak_rss_kb", (double)proc_status_kb(0, "VmHWM"));
}

/* W1 role: create N docs offline, then sync until the server has them. */
static int role_load(void *varg, result *r) {
  role_args *a = varg;
  tether *t = NULL;
  double create_s = 0, sync_s = 0;
  int rc = open_new_replica(a->dir, a->url, &t, r);
  if (rc) goto out;
  logf_("  [%s] creating %llu docs offline (batches of %llu)\n", a->label,
        (unsigned long long)a->n, (unsigned long long)g_opt.batch);
  rc = batched_writes(t, a->n, write_create, NULL, a->label, "create", r,
                      &create_s);
  res_f(r, "create_s", create_s);
  res_f(r, "create_docs_per_s", create_s > 0 ? (double)a->n / create_s : 0);
  if (rc) goto out;
  tether_stats st;
  if (tether_get_stats(t, &st) == 0)
    res_i(r, "outbox_before", (double)st.pending_intents);
  logf_("  [%s] created in %.2f s (%.0f docs/s); syncing\n", a->label,
        create_s, (double)a->n / create_s);
  rc = sync_until_done(t, a->label, r, "", &sync_s);
  res_f(r, "sync_s", sync_s);
  res_f(r, "docs_per_s", sync_s > 0 ? (double)a->n / sync_s : 0);
  res_f(r, "create_sync_docs_per_s",
        create_s + sync_s > 0 ? (double)a->n / (create_s + sync_s) : 0);
  if (rc) goto out;
  rc = tether_get_stats(t, &st);
  if (rc) {
    res_fail(r, "tether_get_stats: %s", tether_err_name(rc));
    goto out;
  }
  res_i(r, "replica_documents", (double)st.documents);
  res_i(r, "replica_conflicts", (double)st.conflicts);
  res_i(r, "replica_rejected", (double)st.rejected);
  if (st.documents != a->n) {
    res_fail(r, "replica sees %llu documents, expected %llu",
             (unsigned long long)st.documents, (unsigned long long)a->n);
    rc = TETHER_EPROTO;
  }
  logf_("  [%s] synced in %.2f s (%.0f docs/s)\n", a->label, sync_s,
        (double)a->n / sync_s);
out:
  tether_close(t);
  res_peak_rss_self(r);
  return rc;
}

/* W2 role: a new replica pulls everything. */
static int role_pull(void *varg, result *r) {
  role_args *a = varg;
  tether *t = NULL;
  double sync_s = 0;
  int rc = open_new_replica(a->dir, a->url, &t, r);
  if (rc) goto out;
  logf_("  [%s] initial sync of a new replica\n", a->label);
  rc = sync_until_done(t, a->label, r, "", &sync_s);
  res_f(r, "seconds", sync_s);
  res_f(r, "docs_per_s", sync_s > 0 ? (double)a->n / sync_s : 0);
  if (rc) goto out;
  tether_stats st;
  rc = tether_get_stats(t, &st);
  if (rc) {
    res_fail(r, "tether_get_stats: %s", tether_err_name(rc));
    goto out;
  }
  res_i(r, "replica_documents", (double)st.documents);
  if (st.documents != a->n) {
    res_fail(r, "new replica has %llu documents, expected %llu",
             (unsigned long long)st.documents, (unsigned long long)a->n);
    rc = TETHER_EPROTO;
  }
  logf_("  [%s] pulled %llu docs in %.2f s (%.0f docs/s)\n", a->label,
        (unsigned long long)st.documents, sync_s, (double)a->n / sync_s);
out:
  tether_close(t);
  res_peak_rss_self(r);
  return rc;
}

/* W3 verification state for one replica's tether_list walk. */
typedef struct {
  crypto_generichash_state h;
  uint64_t docs;
  uint64_t missing_title; /* A's edit not visible */
  uint64_t missing_n;     /* B's edit not visible */
  uint64_t missing_any;   /* docs with at least one edit missing */
  uint64_t bad_json;
  uint64_t unexpected_id;
} verify_ctx;

static int verify_cb(void *vctx, const char *id, const char *json) {
  verify_ctx *v = vctx;
  crypto_generichash_update(&v->h, (const unsigned char *)id, strlen(id) + 1);
  crypto_generichash_update(&v->h, (const unsigned char *)json, strlen(json) + 1);
  v->docs++;
  char *endp = NULL;
  if (strncmp(id, "doc-", 4) != 0) {
    v->unexpected_id++;
    return 0;
  }
  unsigned long long i = strtoull(id + 4, &endp, 10);
  if (!endp || *endp) {
    v->unexpected_id++;
    return 0;
  }
  json_error_t jerr;
  json_t *o = json_loads(json, 0, &jerr);
  if (!o || !json_is_object(o)) {
    v->bad_json++;
    json_decref(o);
    return 0;
  }
  char want_title[24];
  w3_title(want_title, sizeof want_title, i);
  json_t *title = json_object_get(o, "title");
  json_t *n = json_object_get(o, "n");
  int miss_t = !json_is_string(title) || strcmp(json_string_value(title), want_title) != 0;
  int miss_n = !json_is_integer(n) || json_integer_value(n) != w3_n(i);
  v->missing_title += (uint64_t)miss_t;
  v->missing_n += (uint64_t)miss_n;
  v->missing_any += (uint64_t)(miss_t || miss_n);
  json_decref(o);
  return 0;
}

static int count_cb(void *ctx, const char *json) {
  (void)json;
  (*(uint64_t *)ctx)++;
  return 0;
}

typedef struct {
  uint64_t applied, merged, conflict, rejected, other;
} outcome_counts;

static int outcome_cb(void *vctx, const char *json) {
  outcome_counts *c = vctx;
  json_t *o = json_loads(json, 0, NULL);
  const char *s = o ? json_string_value(json_object_get(o, "outcome")) : NULL;
  if (!s) c->other++;
  else if (!strcmp(s, "applied")) c->applied++;
  else if (!strcmp(s, "merged")) c->merged++;
  else if (!strcmp(s, "conflict")) c->conflict++;
  else if (!strcmp(s, "rejected")) c->rejected++;
  else c->other++;
  json_decref(o);
  return 0;
}

static int verify_replica(tether *t, const char *name, uint64_t n,
                          unsigned char digest[crypto_generichash_BYTES],
                          result *r) {
  verify_ctx v;
  char key[64];
  memset(&v, 0, sizeof v);
  crypto_generichash_init(&v.h, NULL, 0, crypto_generichash_BYTES);
  int rc = tether_list(t, COLL, verify_cb, &v);
  if (rc) {
    res_fail(r, "%s: tether_list: %s", name, tether_err_name(rc));
    return rc;
  }
  crypto_generichash_final(&v.h, digest, crypto_generichash_BYTES);
  uint64_t conflicts = 0;
  rc = tether_conflicts(t, count_cb, &conflicts);
  if (rc) {
    res_fail(r, "%s: tether_conflicts: %s", name, tether_err_name(rc));
    return rc;
  }
  outcome_counts oc;
  memset(&oc, 0, sizeof oc);
  rc = tether_outcomes(t, outcome_cb, &oc);
  if (rc) {
    res_fail(r, "%s: tether_outcomes: %s", name, tether_err_name(rc));
    return rc;
  }
  tether_stats st;
  memset(&st, 0, sizeof st);
  rc = tether_get_stats(t, &st);
  if (rc) {
    res_fail(r, "%s: tether_get_stats: %s", name, tether_err_name(rc));
    return rc;
  }
#define PUT(field, val)                                   \
  do {                                                    \
    snprintf(key, sizeof key, "%s_" field, name);         \
    res_i(r, key, (double)(val));                         \
  } while (0)
  PUT("documents", v.docs);
  PUT("missing_title", v.missing_title);
  PUT("missing_n", v.missing_n);
  PUT("missing_edits", v.missing_any);
  PUT("conflicts", conflicts);
  PUT("stats_conflicts", st.conflicts);
  PUT("pending", st.pending_intents);
  PUT("rejected", st.rejected);
  PUT("outcome_conflict", oc.conflict);
  PUT("outcome_rejected", oc.rejected);
  PUT("outcome_merged", oc.merged);
#undef PUT
  if (v.docs != n || v.bad_json || v.unexpected_id)
    res_fail(r, "%s: %llu docs listed (expected %llu), %llu bad json, %llu "
             "unexpected ids", name, (unsigned long long)v.docs,
             (unsigned long long)n, (unsigned long long)v.bad_json,
             (unsigned long long)v.unexpected_id);
  if (v.missing_any)
    res_fail(r, "%s: %llu docs miss an edit (title %llu, n %llu)", name,
             (unsigned long long)v.missing_any,
             (unsigned long long)v.missing_title, (unsigned long long)v.missing_n);
  if (conflicts || st.conflicts || oc.conflict)
    res_fail(r, "%s: %llu conflicts (stats %llu, outcomes %llu)", name,
             (unsigned long long)conflicts, (unsigned long long)st.conflicts,
             (unsigned long long)oc.conflict);
  logf_("  [%s] verify: %llu docs, missing edits %llu (title %llu, n %llu), "
        "conflicts %llu, pending %llu\n", name, (unsigned long long)v.docs,
        (unsigned long long)v.missing_any, (unsigned long long)v.missing_title,
        (unsigned long long)v.missing_n, (unsigned long long)conflicts,
        (unsigned long long)st.pending_intents);
  return 0;
}

/* W3 role: A and B (already in sync) edit different fields offline, then
 * sync A, B, A until quiet; then verify both. */
static int role_w3(void *varg, result *r) {
  role_args *a = varg;
  tether *ta = NULL, *tb = NULL;
  double wa = 0, wb = 0;
  int rc = tether_open(&ta, a->dir);
  if (rc) {
    res_fail(r, "tether_open(A): %s", tether_err_name(rc));
    goto out;
  }
  rc = tether_open(&tb, a->dir2);
  if (rc) {
    res_fail(r, "tether_open(B): %s", tether_err_name(rc));
    goto out;
  }
  logf_("  [W3] offline: A sets title, B sets n, on %llu docs\n",
        (unsigned long long)a->n);
  rc = batched_writes(ta, a->n, write_title, NULL, "A", "a_local_write", r, &wa);
  res_f(r, "a_local_write_s", wa);
  if (rc) goto out;
  rc = batched_writes(tb, a->n, write_n, NULL, "B", "b_local_write", r, &wb);
  res_f(r, "b_local_write_s", wb);
  if (rc) goto out;
  logf_("  [W3] local writes: A %.2f s, B %.2f s; syncing A, B, A\n", wa, wb);

  double t0 = now_s();
  int rounds = 0;
  double s1 = 0, s2 = 0, s3 = 0;
  for (;;) {
    rounds++;
    double d;
    if ((rc = sync_until_done(ta, "A", r, "a1_", &d))) goto out;
    s1 += d;
    if ((rc = sync_until_done(tb, "B", r, "b_", &d))) goto out;
    s2 += d;
    if ((rc = sync_until_done(ta, "A", r, "a2_", &d))) goto out;
    s3 += d;
    tether_stats sa, sb;
    if ((rc = tether_get_stats(ta, &sa)) || (rc = tether_get_stats(tb, &sb))) {
      res_fail(r, "tether_get_stats: %s", tether_err_name(rc));
      goto out;
    }
    if (sa.pending_intents == 0 && sb.pending_intents == 0) break;
    if (rounds >= 5) {
      res_fail(r, "not quiet after %d rounds", rounds);
      rc = TETHER_EPROTO;
      goto out;
    }
  }
  double conv = now_s() - t0;
  res_f(r, "seconds", conv);
  res_i(r, "rounds", rounds);
  res_f(r, "sync_a1_s", s1);
  res_f(r, "sync_b_s", s2);
  res_f(r, "sync_a2_s", s3);
  logf_("  [W3] converged in %.2f s (A %.2f, B %.2f, A %.2f; %d round%s)\n",
        conv, s1, s2, s3, rounds, rounds > 1 ? "s" : "");

  unsigned char da[crypto_generichash_BYTES], db[crypto_generichash_BYTES];
  if ((rc = verify_replica(ta, "a", a->n, da, r))) goto out;
  if ((rc = verify_replica(tb, "b", a->n, db, r))) goto out;
  int same = memcmp(da, db, sizeof da) == 0;
  res_b(r, "identical", same);
  if (!same) res_fail(r, "A and B tether_list output differ");
  const metric *ma = res_get(r, "a_missing_edits"), *mb = res_get(r, "b_missing_edits");
  const metric *ca = res_get(r, "a_conflicts"), *cb = res_get(r, "b_conflicts");
  res_i(r, "missing_edits", (ma ? ma->v : 0) + (mb ? mb->v : 0));
  res_i(r, "conflicts", (ca ? ca->v : 0) + (cb ? cb->v : 0));
out:
  tether_close(ta);
  tether_close(tb);
  return rc;
}

/* ---- child processes ------------------------------------------------------ */

static volatile sig_atomic_t g_server_pid = 0;
static volatile sig_atomic_t g_child_pid = 0;
/* peak RssAnon (kB) seen by the last run_child; -1 when never read */
static long g_peak_child_anon_kb = -1, g_peak_server_anon_kb = -1;

static void on_signal(int sig) {
  if (g_child_pid > 0) kill((pid_t)g_child_pid, SIGTERM);
  if (g_server_pid > 0) kill((pid_t)g_server_pid, SIGTERM);
  static const char msg[] = "tether_bench: interrupted; temp dir left behind\n";
  ssize_t w = write(2, msg, sizeof msg - 1);
  (void)w;
  _exit(128 + sig);
}

static int write_full(int fd, const void *buf, size_t len) {
  size_t put = 0;
  while (put < len) {
    ssize_t k = write(fd, (const char *)buf + put, len - put);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return -1;
    put += (size_t)k;
  }
  return 0;
}

/* Runs FN in a forked child; its result comes back through a pipe and its
 * peak RSS through wait4. */
static void run_child(int (*fn)(void *, result *), void *arg, result *out,
                      long *maxrss_kb, double *cpu_s) {
  int p[2];
  memset(out, 0, sizeof *out);
  out->ok = 1;
  *maxrss_kb = -1;
  if (pipe(p) != 0) {
    res_fail(out, "pipe: %s", strerror(errno));
    return;
  }
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) {
    res_fail(out, "fork: %s", strerror(errno));
    close(p[0]);
    close(p[1]);
    return;
  }
  if (pid == 0) {
    close(p[0]);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    result *r = calloc(1, sizeof *r);
    if (!r) _exit(3);
    r->ok = 1;
    int rc = fn(arg, r);
    if (rc && r->ok) res_fail(r, "%s", tether_err_name(rc));
    int wrc = write_full(p[1], r, sizeof *r);
    fflush(NULL);
    _exit(wrc ? 2 : (rc ? 1 : 0));
  }
  g_child_pid = pid;
  close(p[1]);
  /* While the child works, sample anonymous RSS of it and of the server:
   * VmHWM also counts the LMDB map's file pages, which the kernel can drop,
   * so the heap's own peak is reported beside it. */
  g_peak_child_anon_kb = g_peak_server_anon_kb = -1;
  size_t got_bytes = 0;
  int got = 0;
  for (;;) {
    struct pollfd pfd = {p[0], POLLIN, 0};
    int pr = poll(&pfd, 1, 50);
    long a = proc_status_kb(pid, "RssAnon");
    if (a > g_peak_child_anon_kb) g_peak_child_anon_kb = a;
    if (g_server_pid > 0) {
      a = proc_status_kb((pid_t)g_server_pid, "RssAnon");
      if (a > g_peak_server_anon_kb) g_peak_server_anon_kb = a;
    }
    if (pr < 0 && errno == EINTR) continue;
    if (pr <= 0) continue;
    ssize_t k = read(p[0], (char *)out + got_bytes, sizeof *out - got_bytes);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) {
      got = -1;
      break;
    }
    got_bytes += (size_t)k;
    if (got_bytes == sizeof *out) break;
  }
  close(p[0]);
  int status = 0;
  struct rusage ru;
  memset(&ru, 0, sizeof ru);
  while (wait4(pid, &status, 0, &ru) < 0 && errno == EINTR) {
  }
  g_child_pid = 0;
  *maxrss_kb = ru.ru_maxrss;
  *cpu_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
  if (got != 0) {
    memset(out, 0, sizeof *out);
    if (WIFSIGNALED(status))
      res_fail(out, "child killed by signal %d", WTERMSIG(status));
    else
      res_fail(out, "child exited %d without a result",
               WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  }
}

/* ---- the server process ---------------------------------------------------- */

typedef struct {
  pid_t pid;
  int port;
  char url[64];
  char log[PATH_MAX];
} server_proc;

static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = 0;
  socklen_t len = sizeof sa;
  int port = -1;
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
      getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
    port = ntohs(sa.sin_port);
  close(fd);
  return port;
}

static int file_contains(const char *path, const char *needle) {
  char buf[8192];
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  size_t k = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[k] = '\0';
  return strstr(buf, needle) != NULL;
}

static void print_log_tail(const char *path) {
  char buf[2048];
  FILE *f = fopen(path, "r");
  if (!f) return;
  fseek(f, 0, SEEK_END);
  long sz = ftell(f);
  fseek(f, sz > (long)sizeof buf - 1 ? sz - (long)sizeof buf + 1 : 0, SEEK_SET);
  size_t k = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[k] = '\0';
  logf_("  --- server log tail (%s) ---\n%s\n  ---\n", path, buf);
}

static int server_start(server_proc *s, const char *datadir, const char *log,
                        result *r) {
  memset(s, 0, sizeof *s);
  snprintf(s->log, sizeof s->log, "%s", log);
  for (int attempt = 0; attempt < 3; attempt++) {
    s->port = free_port();
    if (s->port <= 0) {
      res_fail(r, "no free port");
      return -1;
    }
    char listen[32];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", s->port);
    snprintf(s->url, sizeof s->url, "http://127.0.0.1:%d", s->port);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
      res_fail(r, "fork: %s", strerror(errno));
      return -1;
    }
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      signal(SIGINT, SIG_IGN); /* the bench stops it with SIGTERM */
      signal(SIGTERM, SIG_DFL);
      int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
      }
      int nul = open("/dev/null", O_RDONLY);
      if (nul >= 0) {
        dup2(nul, 0);
        close(nul);
      }
      const char *argv[12];
      char parts[16];
      int k = 0;
      argv[k++] = "tether";
      argv[k++] = "serve";
      if (g_opt.backend) {
        argv[k++] = "--backend";
        argv[k++] = g_opt.backend;
      } else {
        argv[k++] = "--data";
        argv[k++] = datadir;
      }
      if (g_opt.partitions) {
        snprintf(parts, sizeof parts, "%u", (unsigned)g_opt.partitions);
        argv[k++] = "--partitions";
        argv[k++] = parts;
      }
      argv[k++] = "--listen";
      argv[k++] = listen;
      argv[k] = NULL;
      execv(g_tether_path, (char *const *)argv);
      fprintf(stderr, "exec %s: %s\n", g_tether_path, strerror(errno));
      _exit(127);
    }
    s->pid = pid;
    g_server_pid = pid;
    double t0 = now_s();
    while (now_s() - t0 < 30.0) {
      int st;
      if (waitpid(pid, &st, WNOHANG) == pid) {
        s->pid = 0;
        g_server_pid = 0;
        break;
      }
      if (file_contains(log, "listening on http://")) return 0;
      usleep(10000);
    }
    if (s->pid) {
      kill(s->pid, SIGKILL);
      waitpid(s->pid, NULL, 0);
      s->pid = 0;
      g_server_pid = 0;
      res_fail(r, "tether serve did not print 'listening on' within 30 s");
      print_log_tail(log);
      return -1;
    }
    logf_("  tether serve exited at start (attempt %d)\n", attempt + 1);
    print_log_tail(log);
  }
  res_fail(r, "tether serve would not start (see %s)", log);
  return -1;
}

/* Stops the server with SIGTERM; returns its peak RSS in kB (VmHWM read
 * just before the signal, else wait4's ru_maxrss). */
static long server_stop(server_proc *s, result *r) {
  if (!s->pid) return -1;
  long hwm = proc_status_kb(s->pid, "VmHWM");
  kill(s->pid, SIGTERM);
  int st = 0;
  struct rusage ru;
  memset(&ru, 0, sizeof ru);
  double t0 = now_s();
  pid_t w = 0;
  while ((w = wait4(s->pid, &st, WNOHANG, &ru)) == 0 && now_s() - t0 < 20.0)
    usleep(10000);
  if (w == 0) {
    res_fail(r, "tether serve ignored SIGTERM for 20 s; killed");
    kill(s->pid, SIGKILL);
    wait4(s->pid, &st, 0, &ru);
  } else if (w == s->pid && !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
    logf_("  note: tether serve exit status %d (signal %d)\n",
          WIFEXITED(st) ? WEXITSTATUS(st) : -1,
          WIFSIGNALED(st) ? WTERMSIG(st) : 0);
  }
  s->pid = 0;
  g_server_pid = 0;
  return hwm > 0 ? hwm : ru.ru_maxrss;
}

/* GET PATH from the server over a plain socket (keeps libcurl out of this
 * process, which forks). Returns the body in BUF (NUL-terminated). */
static int http_get(int port, const char *path, char *buf, size_t cap) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  struct timeval tv = {10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = htons((uint16_t)port);
  int rc = -1;
  size_t got = 0;
  char req[256];
  int len = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                     "Connection: close\r\n\r\n", path, port);
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) goto out;
  if (write_full(fd, req, (size_t)len) != 0) goto out;
  for (;;) {
    if (got + 1 >= cap) break;
    ssize_t k = read(fd, buf + got, cap - 1 - got);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) break;
    got += (size_t)k;
  }
  buf[got] = '\0';
  rc = strstr(buf, "\r\n\r\n") ? 0 : -1;
out:
  close(fd);
  return rc;
}

/* Sum of every sample of metric NAME (any labels); NaN when absent. */
static double metric_sum(const char *text, const char *name) {
  double sum = 0;
  int found = 0;
  size_t nlen = strlen(name);
  const char *body = strstr(text, "\r\n\r\n");
  const char *p = body ? body + 4 : text;
  while (*p) {
    const char *eol = strchr(p, '\n');
    if (!eol) eol = p + strlen(p);
    if (*p != '#' && (size_t)(eol - p) > nlen && strncmp(p, name, nlen) == 0 &&
        (p[nlen] == ' ' || p[nlen] == '{')) {
      const char *v = eol;
      while (v > p && v[-1] != ' ') v--;
      sum += strtod(v, NULL);
      found = 1;
    }
    p = *eol ? eol + 1 : eol;
  }
  return found ? sum : NAN;
}

typedef struct {
  double req_bytes, resp_bytes, pushes, pulls, commits, conflicts,
      concurrent, rejected, lo_bytes, cpu_s, disk_write;
} server_metrics;

/* Loopback bytes from /proc/net/dev: a fallback byte count if the server
 * lacks its own counters (includes TCP/IP headers and any other loopback
 * traffic on the machine). */
static double lo_tx_bytes(void) {
  char line[512];
  double v = NAN;
  FILE *f = fopen("/proc/net/dev", "r");
  if (!f) return v;
  while (fgets(line, sizeof line, f)) {
    char *c = strchr(line, ':');
    if (!c) continue;
    char *nm = line;
    while (*nm == ' ') nm++;
    if (strncmp(nm, "lo:", 3) != 0) continue;
    unsigned long long rx[8], tx;
    if (sscanf(c + 1, "%llu %llu %llu %llu %llu %llu %llu %llu %llu", &rx[0],
               &rx[1], &rx[2], &rx[3], &rx[4], &rx[5], &rx[6], &rx[7], &tx) == 9)
      v = (double)tx;
  }
  fclose(f);
  return v;
}

static void server_metrics_read(const server_proc *s, server_metrics *m) {
  static char buf[1 << 16];
  double nan = NAN;
  m->lo_bytes = lo_tx_bytes();
  m->cpu_s = proc_cpu_s(s->pid);
  m->disk_write = proc_write_bytes(s->pid);
  if (http_get(s->port, "/metrics", buf, sizeof buf) != 0) {
    m->req_bytes = m->resp_bytes = m->pushes = m->pulls = m->commits =
        m->conflicts = m->concurrent = m->rejected = nan;
    return;
  }
  m->req_bytes = metric_sum(buf, "tether_http_request_bytes_total");
  m->resp_bytes = metric_sum(buf, "tether_http_response_bytes_total");
  m->pushes = metric_sum(buf, "tether_pushes_total");
  m->pulls = metric_sum(buf, "tether_pulls_total");
  m->commits = metric_sum(buf, "tether_commits_total");
  m->concurrent = metric_sum(buf, "tether_concurrent_writes_total");
  /* outcome-labelled samples */
  m->conflicts = NAN;
  m->rejected = NAN;
  const char *p = buf;
  while ((p = strstr(p, "tether_intents_total{")) != NULL) {
    const char *eol = strchr(p, '\n');
    if (!eol) eol = p + strlen(p);
    const char *v = eol;
    while (v > p && v[-1] != ' ') v--;
    double x = strtod(v, NULL);
    if (strstr(p, "outcome=\"conflict\"") && strstr(p, "outcome=\"conflict\"") < eol)
      m->conflicts = x;
    else if (strstr(p, "outcome=\"rejected\"") && strstr(p, "outcome=\"rejected\"") < eol)
      m->rejected = x;
    p = eol;
  }
}

/* ---- disk footprint ------------------------------------------------------ */

static uint64_t g_du_bytes;
static int du_cb(const char *path, const struct stat *sb, int flag,
                 struct FTW *ftw) {
  (void)path;
  (void)ftw;
  if (flag == FTW_F) g_du_bytes += (uint64_t)sb->st_blocks * 512u;
  return 0;
}
static double du(const char *dir) {
  g_du_bytes = 0;
  if (nftw(dir, du_cb, 16, FTW_PHYS) != 0) return NAN;
  return (double)g_du_bytes;
}

static int rm_cb(const char *path, const struct stat *sb, int flag,
                 struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  remove(path);
  return 0;
}
static void rm_rf(const char *dir) { nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS); }

static void put_delta(result *r, const char *name, double after, double before) {
  double d = after - before; /* NaN propagates: not measured */
  res_i(r, name, d);
}

/* ---- Redis, when the server keeps its state there --------------------------
 *
 * Reached through `redis-cli` ($TETHER_REDIS_CLI, default redis-cli) rather
 * than a client library: this process forks, and the figures it takes are a
 * few INFO replies per phase, outside every timed interval. */

#define MAX_RNODES 64
#define MAX_RCMDS 128

typedef struct {
  char host[256];
  int port;
} rnode;

static struct {
  int cluster;
  char user[128], pass[256];
  int db; /* -1: none given */
  int nnodes;
  rnode nodes[MAX_RNODES]; /* every master (single: the one server) */
} g_redis;

/* Runs redis-cli on NODE with the words of CMD (NULL-terminated); its
 * stdout (cut at CAP-1 bytes) in OUT. 0 when it ran and exited 0. */
static int rcli(const rnode *node, const char *const *cmd, char *out,
                size_t cap) {
  const char *argv[40];
  char port[16];
  int k = 0, p[2], rc = -1;
  const char *bin = getenv("TETHER_REDIS_CLI");
  if (!bin || !*bin) bin = "redis-cli";
  snprintf(port, sizeof port, "%d", node->port);
  argv[k++] = bin;
  argv[k++] = "-h";
  argv[k++] = node->host;
  argv[k++] = "-p";
  argv[k++] = port;
  if (g_redis.user[0]) {
    argv[k++] = "--user";
    argv[k++] = g_redis.user;
  }
  if (g_redis.pass[0]) {
    argv[k++] = "-a";
    argv[k++] = g_redis.pass;
    argv[k++] = "--no-auth-warning";
  }
  while (*cmd && k < (int)(sizeof argv / sizeof argv[0]) - 1) argv[k++] = *cmd++;
  argv[k] = NULL;
  out[0] = '\0';
  if (pipe(p) != 0) return -1;
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) {
    close(p[0]);
    close(p[1]);
    return -1;
  }
  if (pid == 0) {
    close(p[0]);
    dup2(p[1], 1);
    close(p[1]);
    int nul = open("/dev/null", O_RDWR);
    if (nul >= 0) {
      dup2(nul, 0);
      dup2(nul, 2);
      close(nul);
    }
    execvp(bin, (char *const *)argv);
    _exit(127);
  }
  close(p[1]);
  size_t got = 0;
  double t0 = now_s();
  for (;;) {
    struct pollfd pfd = {p[0], POLLIN, 0};
    int pr = poll(&pfd, 1, 1000);
    if (pr < 0 && errno == EINTR) continue;
    /* redis-cli has no timeout of its own; FLUSHALL of a big keyspace and
     * a connect to an unreachable host both fit in this */
    if (now_s() - t0 > 120.0) {
      kill(pid, SIGKILL);
      break;
    }
    if (pr == 0) continue;
    char tmp[4096];
    ssize_t n = read(p[0], tmp, sizeof tmp);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    size_t take = (size_t)n < cap - 1 - got ? (size_t)n : cap - 1 - got;
    memcpy(out + got, tmp, take);
    got += take; /* the rest is drained and dropped */
  }
  out[got] = '\0';
  close(p[0]);
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0) rc = 0;
  return rc;
}

/* "HOST[:PORT]" or "[V6]:PORT" of length LEN into N. */
static int rnode_parse(const char *s, size_t len, rnode *n) {
  const char *end = s + len, *colon = NULL;
  size_t hl;
  if (len && s[0] == '[') {
    const char *rb = memchr(s, ']', len);
    if (!rb) return -1;
    hl = (size_t)(rb - s - 1);
    if (hl == 0 || hl >= sizeof n->host) return -1;
    memcpy(n->host, s + 1, hl);
    colon = rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
    if (rb + 1 < end && !colon) return -1;
  } else {
    colon = memchr(s, ':', len);
    hl = colon ? (size_t)(colon - s) : len;
    if (hl == 0 || hl >= sizeof n->host) return -1;
    memcpy(n->host, s, hl);
  }
  n->host[hl] = '\0';
  n->port = 6379;
  if (colon) {
    char num[8];
    size_t pl = (size_t)(end - colon - 1);
    if (pl == 0 || pl >= sizeof num) return -1;
    memcpy(num, colon + 1, pl);
    num[pl] = '\0';
    char *e = NULL;
    long v = strtol(num, &e, 10);
    if (*e || v <= 0 || v > 65535) return -1;
    n->port = (int)v;
  }
  return 0;
}

/* Parses --backend (the forms of docs/REDIS.md) into g_redis.nodes: the
 * server itself, or the cluster's seeds (replaced by its masters later). */
static int redis_parse_url(const char *url) {
  const char *rest;
  memset(&g_redis, 0, sizeof g_redis);
  g_redis.db = -1;
  if (!strncmp(url, "redis://", 8)) rest = url + 8;
  else if (!strncmp(url, "redis-cluster://", 16)) {
    rest = url + 16;
    g_redis.cluster = 1;
  } else
    return -1;
  size_t len = strcspn(rest, "?");
  const char *at = NULL;
  for (const char *q = rest; q < rest + len; q++)
    if (*q == '@') at = q;
  if (at) {
    const char *colon = memchr(rest, ':', (size_t)(at - rest));
    size_t ul = colon ? (size_t)(colon - rest) : 0;
    size_t pl = colon ? (size_t)(at - colon - 1) : (size_t)(at - rest);
    const char *ps = colon ? colon + 1 : rest;
    if (ul >= sizeof g_redis.user || pl >= sizeof g_redis.pass) return -1;
    memcpy(g_redis.user, rest, ul);
    g_redis.user[ul] = '\0';
    memcpy(g_redis.pass, ps, pl);
    g_redis.pass[pl] = '\0';
    len -= (size_t)(at + 1 - rest);
    rest = at + 1;
  }
  const char *slash = memchr(rest, '/', len);
  if (slash) {
    if (g_redis.cluster) return -1;
    char *e = NULL;
    long db = strtol(slash + 1, &e, 10);
    if (e != rest + len || db < 0 || slash + 1 == e) return -1;
    g_redis.db = (int)db;
    len = (size_t)(slash - rest);
  }
  while (len) {
    const char *comma = memchr(rest, ',', len);
    size_t l = comma ? (size_t)(comma - rest) : len;
    if (g_redis.nnodes == MAX_RNODES ||
        rnode_parse(rest, l, &g_redis.nodes[g_redis.nnodes]) != 0)
      return -1;
    g_redis.nnodes++;
    if (!comma) break;
    if (!g_redis.cluster) return -1;
    len -= l + 1;
    rest = comma + 1;
  }
  return g_redis.nnodes ? 0 : -1;
}

/* For a cluster, replaces the seeds by every master that CLUSTER NODES
 * (asked of the first seed that answers) lists as reachable. */
static int redis_discover(void) {
  static char buf[1 << 16];
  static const char *const cmd[] = {"CLUSTER", "NODES", NULL};
  if (!g_redis.cluster) {
    static const char *const ping[] = {"PING", NULL};
    if (rcli(&g_redis.nodes[0], ping, buf, sizeof buf) != 0 ||
        strncmp(buf, "PONG", 4) != 0) {
      logf_("tether_bench: redis %s:%d does not answer PING%s%s\n",
            g_redis.nodes[0].host, g_redis.nodes[0].port, buf[0] ? ": " : "",
            buf);
      return -1;
    }
    return 0;
  }
  int i;
  for (i = 0; i < g_redis.nnodes; i++)
    if (rcli(&g_redis.nodes[i], cmd, buf, sizeof buf) == 0 &&
        strstr(buf, "master"))
      break;
  if (i == g_redis.nnodes) {
    logf_("tether_bench: no seed of %s answers CLUSTER NODES\n", g_opt.backend);
    return -1;
  }
  int n = 0;
  rnode found[MAX_RNODES];
  for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
    /* <id> <ip:port@cport[,hostname]> <flags> ... */
    char addr[300], flags[200];
    if (sscanf(line, "%*s %299s %199s", addr, flags) != 2) continue;
    if (!strstr(flags, "master") || strstr(flags, "fail") ||
        strstr(flags, "noaddr") || strstr(flags, "handshake"))
      continue;
    char *atp = strchr(addr, '@');
    if (atp) *atp = '\0';
    char *colon = strrchr(addr, ':');
    if (!colon || n == MAX_RNODES) continue;
    *colon = '\0';
    size_t al = strlen(addr);
    if (al >= sizeof found[0].host) continue;
    memcpy(found[n].host, addr, al + 1);
    found[n].port = atoi(colon + 1);
    n++;
  }
  if (!n) {
    logf_("tether_bench: CLUSTER NODES lists no reachable master\n");
    return -1;
  }
  memcpy(g_redis.nodes, found, sizeof found[0] * (size_t)n);
  g_redis.nnodes = n;
  return 0;
}

/* Waits (at most 60 s) until no AOF rewrite runs or is scheduled on NODE. */
static int redis_wait_rewrite(const rnode *node) {
  static char buf[8192];
  static const char *const cmd[] = {"INFO", "persistence", NULL};
  double t0 = now_s();
  while (now_s() - t0 < 60.0) {
    if (rcli(node, cmd, buf, sizeof buf) != 0) return -1;
    if (strstr(buf, "aof_rewrite_in_progress:0") &&
        strstr(buf, "aof_rewrite_scheduled:0"))
      return 0;
    usleep(100000);
  }
  return -1;
}

/* Empties every master before a run (FLUSHALL: every database of it), then
 * rewrites its AOF so that each run starts from the same small file rather
 * than inheriting the previous run's, whose size decides when Redis's own
 * automatic rewrite fires. */
static int redis_flush(result *r) {
  static char buf[4096];
  static const char *const flush[] = {"FLUSHALL", NULL};
  static const char *const rewrite[] = {"BGREWRITEAOF", NULL};
  static const char *const dbsize[] = {"DBSIZE", NULL};
  double t0 = now_s();
  for (int i = 0; i < g_redis.nnodes; i++) {
    const rnode *n = &g_redis.nodes[i];
    if (redis_wait_rewrite(n) != 0 || rcli(n, flush, buf, sizeof buf) != 0 ||
        strncmp(buf, "OK", 2) != 0) {
      res_fail(r, "FLUSHALL on redis %s:%d: %.200s", n->host, n->port, buf);
      return -1;
    }
    if (rcli(n, rewrite, buf, sizeof buf) != 0 || redis_wait_rewrite(n) != 0) {
      res_fail(r, "BGREWRITEAOF on redis %s:%d: %.200s", n->host, n->port, buf);
      return -1;
    }
    if (rcli(n, dbsize, buf, sizeof buf) != 0 || strtol(buf, NULL, 10) != 0) {
      res_fail(r, "redis %s:%d not empty after FLUSHALL (DBSIZE %.40s)",
               n->host, n->port, buf);
      return -1;
    }
  }
  logf_("  redis: FLUSHALL + BGREWRITEAOF on %d node%s (%.2f s)\n",
        g_redis.nnodes, g_redis.nnodes == 1 ? "" : "s", now_s() - t0);
  return 0;
}

/* Counters of every master, summed. */
typedef struct {
  int ok;
  int ncmd;
  char cmd[MAX_RCMDS][32];
  double calls[MAX_RCMDS], usec[MAX_RCMDS];
  double cpu_s, aof_rewrites, used_memory, aof_size, disk_write, keys;
} redis_snap;

static double info_field(const char *text, const char *key) {
  size_t kl = strlen(key);
  for (const char *p = text; p && *p;) {
    if (!strncmp(p, key, kl) && p[kl] == ':') return strtod(p + kl + 1, NULL);
    p = strchr(p, '\n');
    if (p) p++;
  }
  return NAN;
}

static void redis_snap_read(redis_snap *s) {
  static char buf[1 << 16];
  static const char *const cmd[] = {"INFO", "server", "cpu", "memory",
                                    "persistence", "keyspace", "commandstats",
                                    NULL};
  memset(s, 0, sizeof *s);
  s->ok = 1;
  for (int i = 0; i < g_redis.nnodes; i++) {
    if (rcli(&g_redis.nodes[i], cmd, buf, sizeof buf) != 0 ||
        !strstr(buf, "# Commandstats")) {
      s->ok = 0;
      return;
    }
    s->cpu_s += info_field(buf, "used_cpu_sys") + info_field(buf, "used_cpu_user");
    s->aof_rewrites += info_field(buf, "aof_rewrites");
    s->used_memory += info_field(buf, "used_memory");
    s->aof_size += info_field(buf, "aof_current_size");
    double pid = info_field(buf, "process_id");
    /* the node runs here (loopback) and is readable: its storage writes */
    s->disk_write += isnan(pid) ? NAN : proc_write_bytes((pid_t)pid);
    /* dbN:keys=K,expires=…: every database */
    for (char *p = strstr(buf, "\ndb"); p; p = strstr(p + 1, "\ndb")) {
      char *kp = strstr(p, ":keys=");
      char *eol = strchr(p + 1, '\n');
      if (kp && (!eol || kp < eol)) s->keys += strtod(kp + 6, NULL);
    }
    for (char *p = strstr(buf, "cmdstat_"); p; p = strstr(p, "cmdstat_")) {
      char name[32];
      double calls = 0, usec = 0;
      p += 8;
      size_t nl = strcspn(p, ":");
      if (nl >= sizeof name) continue;
      memcpy(name, p, nl);
      name[nl] = '\0';
      if (sscanf(p + nl, ":calls=%lf,usec=%lf", &calls, &usec) != 2) continue;
      int j;
      for (j = 0; j < s->ncmd; j++)
        if (!strcmp(s->cmd[j], name)) break;
      if (j == s->ncmd) {
        if (s->ncmd == MAX_RCMDS) continue;
        snprintf(s->cmd[s->ncmd++], sizeof s->cmd[0], "%s", name);
      }
      s->calls[j] += calls;
      s->usec[j] += usec;
    }
  }
}

/* The Redis side of a phase of N documents. INFO itself (the bench's own
 * snapshots) is left out of the command counts. */
static void put_redis_phase(result *r, const redis_snap *a, const redis_snap *b,
                            uint64_t n) {
  if (!a->ok || !b->ok) {
    res_fail(r, "redis INFO failed");
    return;
  }
  double calls = 0, usec = 0;
  for (int j = 0; j < b->ncmd; j++) {
    if (!strcmp(b->cmd[j], "info")) continue;
    /* EXEC's time includes the commands it ran, which count their own */
    int in_exec = !strcmp(b->cmd[j], "exec");
    double c0 = 0, u0 = 0;
    for (int i = 0; i < a->ncmd; i++)
      if (!strcmp(a->cmd[i], b->cmd[j])) {
        c0 = a->calls[i];
        u0 = a->usec[i];
      }
    calls += b->calls[j] - c0;
    if (!in_exec) usec += b->usec[j] - u0;
  }
  res_i(r, "redis_calls", calls);
  res_f(r, "redis_calls_per_doc", calls / (double)n);
  res_f(r, "redis_cmd_s", usec / 1e6);
  res_f(r, "redis_cpu_s", b->cpu_s - a->cpu_s);
  put_delta(r, "redis_disk_write_bytes", b->disk_write, a->disk_write);
  put_delta(r, "redis_aof_rewrites", b->aof_rewrites, a->aof_rewrites);
  put_delta(r, "redis_used_memory_bytes", b->used_memory, a->used_memory);
  res_i(r, "redis_aof_bytes", b->aof_size);
  put_delta(r, "redis_keys", b->keys, a->keys);
  /* per command: calls (rc_) and seconds executing (rt_) */
  for (int j = 0; j < b->ncmd; j++) {
    char name[48];
    double c0 = 0, u0 = 0;
    if (!strcmp(b->cmd[j], "info")) continue;
    for (int i = 0; i < a->ncmd; i++)
      if (!strcmp(a->cmd[i], b->cmd[j])) {
        c0 = a->calls[i];
        u0 = a->usec[i];
      }
    if (b->calls[j] - c0 <= 0) continue;
    snprintf(name, sizeof name, "rc_%s", b->cmd[j]);
    res_i(r, name, b->calls[j] - c0);
    snprintf(name, sizeof name, "rt_%s", b->cmd[j]);
    res_f(r, name, (b->usec[j] - u0) / 1e6);
  }
}

/* ---- one run of a workload ------------------------------------------------- */

typedef struct {
  char root[1024]; /* short enough that every path below fits */
  char server_dir[PATH_MAX];
  char log[PATH_MAX];
  char a_dir[PATH_MAX];
  char b_dir[PATH_MAX];
  server_proc srv;
} world;

static int world_make(world *w, const char *workload, int run, result *r) {
  memset(w, 0, sizeof *w);
  snprintf(w->root, sizeof w->root, "%s/tether-bench-%s-%d-XXXXXX",
           g_opt.tmpbase, workload, run);
  if (!mkdtemp(w->root)) {
    res_fail(r, "mkdtemp under %s: %s", g_opt.tmpbase, strerror(errno));
    return -1;
  }
  snprintf(w->server_dir, sizeof w->server_dir, "%s/server", w->root);
  snprintf(w->log, sizeof w->log, "%s/server.log", w->root);
  snprintf(w->a_dir, sizeof w->a_dir, "%s/replica-a", w->root);
  snprintf(w->b_dir, sizeof w->b_dir, "%s/replica-b", w->root);
  if (mkdir(w->server_dir, 0755) != 0) {
    res_fail(r, "mkdir %s: %s", w->server_dir, strerror(errno));
    return -1;
  }
  logf_("  dir %s\n", w->root);
  /* every run starts from an empty store, on Redis as on LMDB */
  if (g_opt.backend && redis_flush(r) != 0) return -1;
  return server_start(&w->srv, w->server_dir, w->log, r);
}

static void world_end(world *w, result *r) {
  long rss = server_stop(&w->srv, r);
  if (rss > 0) res_i(r, "server_peak_rss_kb", (double)rss);
  if (!w->root[0]) return;
  if (g_opt.keep || !r->ok)
    logf_("  kept %s%s\n", w->root, r->ok ? "" : " (run failed: server.log inside)");
  else
    rm_rf(w->root);
}

/* Peak anonymous RSS of the child just run (as CHILD_KEY) and of the server
 * (kept as the maximum over the phases of the run). */
static void put_anon_peaks(result *r, const char *child_key) {
  if (child_key && g_peak_child_anon_kb > 0)
    res_i(r, child_key, (double)g_peak_child_anon_kb);
  const metric *m = res_get(r, "server_peak_anon_kb");
  if (g_peak_server_anon_kb > 0 && (!m || m->v < (double)g_peak_server_anon_kb))
    res_i(r, "server_peak_anon_kb", (double)g_peak_server_anon_kb);
}

/* Server-side cost of one phase: CPU and storage writes. */
static void put_server_phase(result *r, const server_metrics *m0,
                             const server_metrics *m1) {
  res_f(r, "server_cpu_s", m1->cpu_s - m0->cpu_s);
  put_delta(r, "server_disk_write_bytes", m1->disk_write, m0->disk_write);
}

/* The W1 load (shared by every workload). Fills R with its figures. */
static int do_load(world *w, uint64_t n, result *r, const char *label) {
  role_args a = {w->a_dir, NULL, w->srv.url, n, label};
  result c;
  long rss;
  server_metrics m0, m1;
  static redis_snap rs0, rs1;
  if (g_opt.backend) redis_snap_read(&rs0);
  server_metrics_read(&w->srv, &m0);
  double cpu = NAN;
  run_child(role_load, &a, &c, &rss, &cpu);
  server_metrics_read(&w->srv, &m1);
  if (g_opt.backend) redis_snap_read(&rs1);
  res_merge(r, &c, "");
  if (g_opt.backend) put_redis_phase(r, &rs0, &rs1, n);
  put_anon_peaks(r, "replica_peak_anon_kb");
  if (rss > 0) res_i(r, "replica_maxrss_kb", (double)rss);
  res_f(r, "replica_cpu_s", cpu);
  put_server_phase(r, &m0, &m1);
  put_delta(r, "bytes_sent", m1.req_bytes, m0.req_bytes);
  put_delta(r, "bytes_received", m1.resp_bytes, m0.resp_bytes);
  put_delta(r, "lo_bytes", m1.lo_bytes, m0.lo_bytes);
  put_delta(r, "server_pushes", m1.pushes, m0.pushes);
  put_delta(r, "server_pulls", m1.pulls, m0.pulls);
  put_delta(r, "server_commits", m1.commits, m0.commits);
  return c.ok ? 0 : -1;
}

static void run_w1(uint64_t n, int run, result *r) {
  world w;
  if (world_make(&w, "W1", run, r) == 0 && do_load(&w, n, r, "W1") == 0) {
    /* on Redis: redis_used_memory_bytes and redis_aof_bytes instead */
    if (!g_opt.backend) res_i(r, "server_store_bytes", du(w.server_dir));
    res_i(r, "replica_store_bytes", du(w.a_dir));
  }
  world_end(&w, r);
}

static void run_w2(uint64_t n, int run, result *r) {
  world w;
  result load;
  memset(&load, 0, sizeof load);
  load.ok = 1;
  if (world_make(&w, "W2", run, r) != 0) goto out;
  if (do_load(&w, n, &load, "load") != 0) {
    res_merge(r, &load, "load_");
    goto out;
  }
  const metric *lm = res_get(&load, "docs_per_s");
  if (lm) res_f(r, "load_docs_per_s", lm->v);
  {
    role_args a = {w.b_dir, NULL, w.srv.url, n, "W2"};
    result c;
    long rss;
    server_metrics m0, m1;
    static redis_snap rs0, rs1;
    if (g_opt.backend) redis_snap_read(&rs0);
    server_metrics_read(&w.srv, &m0);
    double cpu = NAN;
    run_child(role_pull, &a, &c, &rss, &cpu);
    server_metrics_read(&w.srv, &m1);
    if (g_opt.backend) redis_snap_read(&rs1);
    res_merge(r, &c, "");
    if (g_opt.backend) put_redis_phase(r, &rs0, &rs1, n);
    put_anon_peaks(r, "replica_peak_anon_kb");
    if (rss > 0) res_i(r, "replica_maxrss_kb", (double)rss);
    res_f(r, "replica_cpu_s", cpu);
    put_server_phase(r, &m0, &m1);
    put_delta(r, "bytes_received", m1.resp_bytes, m0.resp_bytes);
    put_delta(r, "bytes_sent", m1.req_bytes, m0.req_bytes);
    put_delta(r, "lo_bytes", m1.lo_bytes, m0.lo_bytes);
    put_delta(r, "server_pulls", m1.pulls, m0.pulls);
    if (c.ok) res_i(r, "replica_store_bytes", du(w.b_dir));
  }
out:
  world_end(&w, r);
}

static void run_w3(uint64_t n, int run, result *r) {
  world w;
  result load;
  memset(&load, 0, sizeof load);
  load.ok = 1;
  if (world_make(&w, "W3", run, r) != 0) goto out;
  if (do_load(&w, n, &load, "load A") != 0) {
    res_merge(r, &load, "load_");
    goto out;
  }
  {
    role_args b = {w.b_dir, NULL, w.srv.url, n, "load B"};
    result c;
    long rss;
    double cpu;
    run_child(role_pull, &b, &c, &rss, &cpu);
    if (!c.ok) {
      res_merge(r, &c, "loadb_");
      goto out;
    }
  }
  {
    role_args a = {w.a_dir, w.b_dir, w.srv.url, n, "W3"};
    result c;
    long rss;
    server_metrics m0, m1;
    static redis_snap rs0, rs1;
    if (g_opt.backend) redis_snap_read(&rs0);
    server_metrics_read(&w.srv, &m0);
    double cpu = NAN;
    run_child(role_w3, &a, &c, &rss, &cpu);
    server_metrics_read(&w.srv, &m1);
    if (g_opt.backend) redis_snap_read(&rs1);
    res_merge(r, &c, "");
    if (g_opt.backend) put_redis_phase(r, &rs0, &rs1, n);
    put_anon_peaks(r, "replicas_peak_anon_kb");
    res_f(r, "replicas_cpu_s", cpu);
    put_server_phase(r, &m0, &m1);
    put_delta(r, "server_conflicts", m1.conflicts, m0.conflicts);
    put_delta(r, "server_rejected", m1.rejected, m0.rejected);
    put_delta(r, "server_concurrent_writes", m1.concurrent, m0.concurrent);
    put_delta(r, "bytes_sent", m1.req_bytes, m0.req_bytes);
    put_delta(r, "bytes_received", m1.resp_bytes, m0.resp_bytes);
    put_delta(r, "lo_bytes", m1.lo_bytes, m0.lo_bytes);
    const metric *sc = res_get(r, "server_conflicts");
    if (sc && !isnan(sc->v) && sc->v != 0)
      res_fail(r, "server recorded %.0f conflicts", sc->v);
  }
out:
  world_end(&w, r);
}

/* ---- summary --------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void print_summary(const char *workload, uint64_t n, result *rs, int k) {
  int ok = 0;
  for (int i = 0; i < k; i++) ok += rs[i].ok;
  logf_("\n== %s, n=%llu: %d run%s, %d ok ==\n", workload, (unsigned long long)n,
        k, k == 1 ? "" : "s", ok);
  logf_("%-34s %14s %14s %14s\n", "figure", "median", "min", "max");
  /* names in order of first appearance across runs */
  char names[MAX_METRICS * 2][40];
  int nn = 0;
  for (int i = 0; i < k; i++) {
    for (int j = 0; j < rs[i].nm; j++) {
      int seen = 0;
      for (int q = 0; q < nn; q++)
        if (!strcmp(names[q], rs[i].m[j].name)) seen = 1;
      if (!seen && nn < MAX_METRICS * 2)
        snprintf(names[nn++], sizeof names[0], "%s", rs[i].m[j].name);
    }
  }
  double vals[MAX_RUNS];
  for (int q = 0; q < nn; q++) {
    int c = 0, is_int = 0;
    for (int i = 0; i < k; i++) {
      const metric *m = res_get(&rs[i], names[q]);
      if (m && !isnan(m->v)) {
        vals[c++] = m->v;
        is_int = m->is_int;
      }
    }
    if (!c) {
      logf_("%-34s %14s\n", names[q], "n/a");
      continue;
    }
    qsort(vals, (size_t)c, sizeof vals[0], cmp_double);
    double med = c % 2 ? vals[c / 2] : (vals[c / 2 - 1] + vals[c / 2]) / 2;
    if (is_int)
      logf_("%-34s %14.0f %14.0f %14.0f\n", names[q], med, vals[0], vals[c - 1]);
    else
      logf_("%-34s %14.3f %14.3f %14.3f\n", names[q], med, vals[0], vals[c - 1]);
  }
  for (int i = 0; i < k; i++)
    if (!rs[i].ok) logf_("run %d failed: %s\n", i + 1, rs[i].error);
}

/* ---- main ------------------------------------------------------------------ */

static void usage(FILE *f) {
  fprintf(f,
"usage: tether_bench --workload W1|W2|W3 [options]\n"
"\n"
"Measures a workload of WORKLOADS.md. Each run starts a fresh `tether serve`\n"
"(a separate process on a free 127.0.0.1 port, data in a new temp dir, or\n"
"in an emptied Redis with --backend) and drives replicas through tether.h\n"
"in forked child processes, over HTTP. Durability is as shipped (on Redis:\n"
"as its appendonly/appendfsync settings make it).\n"
"\n"
"  W1  push-bulk: one replica creates N docs offline (batched local writes),\n"
"      then syncs until the outbox is empty. docs/s for the sync and for\n"
"      create+sync, local create rate, bytes sent, server peak RSS.\n"
"  W2  initial sync: after a W1 load, a new replica pulls all N docs.\n"
"      docs/s, bytes received, replica peak RSS; progress on stderr.\n"
"  W3  different fields: two replicas in sync on N docs; offline, A sets\n"
"      title, B sets n on every doc; sync A, B, A until quiet. Wall time to\n"
"      converge; missing edits and conflicts (both must be 0); checks that\n"
"      both replicas list byte-identical documents.\n"
"\n"
"options:\n"
"  -w, --workload W      W1, W2 or W3 (required)\n"
"  -n, --n N             documents (default 100000)\n"
"  -r, --runs K          runs (default 3, at most %d)\n"
"  -t, --tether PATH     the tether binary (default: `tether` next to this\n"
"                        program, else found on PATH)\n"
"  -b, --batch B         local writes per tether_batch_begin/commit\n"
"                        (default 10000)\n"
"      --timeout-ms MS   per-request sync timeout (default: library default)\n"
"      --tmpdir DIR      where run dirs are made (default $TMPDIR or /tmp)\n"
"      --backend URL     run the server as `tether serve --backend URL`:\n"
"                        redis://HOST:PORT[/DB] or\n"
"                        redis-cluster://HOST:PORT[,HOST:PORT...]\n"
"                        (docs/REDIS.md). Before EVERY run the bench sends\n"
"                        FLUSHALL to the server or to every master of the\n"
"                        cluster, erasing all its databases, then\n"
"                        BGREWRITEAOF; use a Redis that holds nothing else.\n"
"                        Each phase then also reports Redis's side, from\n"
"                        INFO before and after it, summed over the masters:\n"
"                        commands (redis_calls, per document; rc_<command>\n"
"                        calls and rt_<command> seconds executing), CPU,\n"
"                        disk writes, memory, keys, AOF size. Uses\n"
"                        redis-cli ($TETHER_REDIS_CLI, default redis-cli).\n"
"                        Default: LMDB in the run's dir.\n"
"      --partitions N    run the server with --partitions N (a new store's\n"
"                        partition count; default: the server's)\n"
"  -k, --keep            keep each run's dir (server data, replicas, log)\n"
"  -q, --quiet           less progress on stderr\n"
"  -h, --help            this text\n"
"\n"
"stdout: one JSON line per run, e.g.\n"
"  {\"workload\":\"W1\",\"n\":100000,\"run\":1,\"ok\":true,\"docs_per_s\":...}\n""With --backend it also holds \"backend\" (any password shown as ***) and,\n"
"with --partitions, \"partitions\".\n"
"stderr: progress, then median/min/max of every figure across runs.\n"
"Bytes come from the server's tether_http_{request,response}_bytes_total\n"
"(null if it lacks them; lo_bytes is the loopback delta, a rough fallback).\n"
"Exit status: 0 if every run passed its checks, 1 otherwise, 2 on bad usage.\n",
          MAX_RUNS);
}

static int find_tether(const char *given, const char *argv0) {
  if (given) {
    if (!realpath(given, g_tether_path)) return -1;
    return access(g_tether_path, X_OK);
  }
  char self[PATH_MAX];
  ssize_t k = readlink("/proc/self/exe", self, sizeof self - 1);
  if (k > 0) {
    self[k] = '\0';
    snprintf(g_tether_path, sizeof g_tether_path, "%s/tether", dirname(self));
    if (access(g_tether_path, X_OK) == 0) return 0;
  }
  (void)argv0;
  const char *path = getenv("PATH");
  if (!path) return -1;
  char *dup = strdup(path), *save = NULL;
  int rc = -1;
  for (char *d = strtok_r(dup, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
    snprintf(g_tether_path, sizeof g_tether_path, "%s/tether", d);
    if (access(g_tether_path, X_OK) == 0) {
      rc = 0;
      break;
    }
  }
  free(dup);
  return rc;
}

static int parse_u64(const char *s, uint64_t *out) {
  char *end = NULL;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || !end || *end || s[0] == '-' || end == s) return -1;
  *out = v;
  return 0;
}

int main(int argc, char **argv) {
  static const struct option longopts[] = {
      {"workload", required_argument, NULL, 'w'},
      {"n", required_argument, NULL, 'n'},
      {"runs", required_argument, NULL, 'r'},
      {"tether", required_argument, NULL, 't'},
      {"batch", required_argument, NULL, 'b'},
      {"timeout-ms", required_argument, NULL, 'T'},
      {"tmpdir", required_argument, NULL, 'D'},
      {"backend", required_argument, NULL, 'B'},
      {"partitions", required_argument, NULL, 'P'},
      {"keep", no_argument, NULL, 'k'},
      {"quiet", no_argument, NULL, 'q'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  g_opt.n = 100000;
  g_opt.runs = 3;
  g_opt.batch = 10000;
  g_opt.tmpbase = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
  int c;
  uint64_t v;
  while ((c = getopt_long(argc, argv, "w:n:r:t:b:kqh", longopts, NULL)) != -1) {
    switch (c) {
    case 'w': g_opt.workload = optarg; break;
    case 'n':
      if (parse_u64(optarg, &g_opt.n) || g_opt.n == 0) goto bad;
      break;
    case 'r':
      if (parse_u64(optarg, &v) || v == 0 || v > MAX_RUNS) goto bad;
      g_opt.runs = (int)v;
      break;
    case 't': g_opt.tether_bin = optarg; break;
    case 'b':
      if (parse_u64(optarg, &g_opt.batch) || g_opt.batch == 0) goto bad;
      break;
    case 'T':
      if (parse_u64(optarg, &v) || v > UINT32_MAX) goto bad;
      g_opt.timeout_ms = (uint32_t)v;
      break;
    case 'D': g_opt.tmpbase = optarg; break;
    case 'B': g_opt.backend = optarg; break;
    case 'P':
      if (parse_u64(optarg, &v) || v == 0 || v > 65536) goto bad;
      g_opt.partitions = (uint32_t)v;
      break;
    case 'k': g_opt.keep = 1; break;
    case 'q': g_opt.quiet = 1; break;
    case 'h': usage(stdout); return 0;
    default: goto bad;
    }
  }
  if (optind != argc || !g_opt.workload) goto bad;
  void (*run_fn)(uint64_t, int, result *) = NULL;
  if (!strcmp(g_opt.workload, "W1") || !strcmp(g_opt.workload, "w1")) run_fn = run_w1;
  else if (!strcmp(g_opt.workload, "W2") || !strcmp(g_opt.workload, "w2")) run_fn = run_w2;
  else if (!strcmp(g_opt.workload, "W3") || !strcmp(g_opt.workload, "w3")) run_fn = run_w3;
  else goto bad;
  const char *wname = run_fn == run_w1 ? "W1" : run_fn == run_w2 ? "W2" : "W3";
  static const char *const h1[] = {
      "docs_per_s", "create_sync_docs_per_s", "create_docs_per_s",
      "server_peak_rss_kb", "server_peak_anon_kb", "bytes_sent", "sync_s",
      "create_s", "redis_calls_per_doc", NULL};
  static const char *const h2[] = {
      "docs_per_s", "seconds", "bytes_received", "replica_peak_rss_kb",
      "replica_peak_anon_kb", "server_peak_rss_kb", NULL};
  static const char *const h3[] = {
      "seconds", "missing_edits", "conflicts", "identical",
      "server_conflicts", NULL};
  const char *const *headline = run_fn == run_w1 ? h1 : run_fn == run_w2 ? h2 : h3;

  if (find_tether(g_opt.tether_bin, argv[0]) != 0) {
    fprintf(stderr, "tether_bench: cannot find an executable tether binary%s%s "
            "(use --tether PATH)\n", g_opt.tether_bin ? ": " : "",
            g_opt.tether_bin ? g_opt.tether_bin : "");
    return 2;
  }
  if (g_opt.backend) {
    if (redis_parse_url(g_opt.backend) != 0) {
      fprintf(stderr, "tether_bench: --backend \"%s\" is not redis://HOST:PORT[/DB] "
              "or redis-cluster://HOST:PORT[,HOST:PORT...]\n", g_opt.backend);
      return 2;
    }
    if (redis_discover() != 0) return 1;
  }
  if (sodium_init() < 0) {
    fprintf(stderr, "tether_bench: sodium_init failed\n");
    return 1;
  }
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  signal(SIGPIPE, SIG_IGN);

  static result rs[MAX_RUNS];
  int all_ok = 1;
  logf_("tether_bench %s n=%llu runs=%d batch=%llu tether=%s (library %s)\n",
        wname, (unsigned long long)g_opt.n, g_opt.runs,
        (unsigned long long)g_opt.batch, g_tether_path, tether_version());
  if (g_opt.backend) {
    logf_("backend %s, partitions %u (0: the server's default); %s:",
          g_redis.cluster ? "redis-cluster" : "redis", (unsigned)g_opt.partitions,
          g_redis.cluster ? "masters" : "server");
    for (int i = 0; i < g_redis.nnodes; i++)
      logf_(" %s:%d", g_redis.nodes[i].host, g_redis.nodes[i].port);
    logf_("\n");
  }
  for (int run = 1; run <= g_opt.runs; run++) {
    result *r = &rs[run - 1];
    memset(r, 0, sizeof *r);
    r->ok = 1;
    logf_("%s run %d/%d\n", wname, run, g_opt.runs);
    double t0 = now_s(), la[1] = {NAN};
    /* the machine is shared: the load at the start says how much to trust
     * a run's timings */
    getloadavg(la, 1);
    run_fn(g_opt.n, run, r);
    res_f(r, "run_wall_s", now_s() - t0);
    res_f(r, "loadavg_1m", la[0]);
    res_front(r, headline);
    res_print_json(stdout, wname, g_opt.n, run, r);
    if (!r->ok) {
      all_ok = 0;
      logf_("  run %d FAILED: %s\n", run, r->error);
    }
  }
  print_summary(wname, g_opt.n, rs, g_opt.runs);
  return all_ok ? 0 : 1;
bad:
  usage(stderr);
  return 2;
}
