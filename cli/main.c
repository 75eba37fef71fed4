/* main.c — the tether command: an ordinary client of include/tether.h and
 * include/tether_server.h. Argument parsing and output formatting only.
 *
 * Exit status: 0 success; 1 the command failed (not found, server
 * unreachable, refused, ...); 2 bad usage (unknown command or option, wrong
 * argument count, malformed JSON argument). */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "tether.h"
#include "tether_server.h"

#define EXIT_FAIL 1
#define EXIT_USAGE 2

static const char *prog = "tether";

static void errmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void errmsg(const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "%s: ", prog);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

/* ---- command table ------------------------------------------------------ */

typedef struct {
  int progress; /* sync --progress */
  int unset;    /* resolve --unset */
} cmd_opts;

/* The server's largest partition count (TT_SRV_MAX_PARTITIONS in
 * src/server/server_int.h): refused here with a usage error rather than
 * by the server at start. */
#define MAX_PARTITIONS 4096

typedef int (*cmd_fn)(tether *t, const char *name, char **args, int nargs,
                      const cmd_opts *o);

typedef struct {
  const char *name;
  int min_args, max_args;
  const char *args;    /* usage after the command name */
  const char *summary; /* one line for the overview */
  const char *help;    /* the rest of `tether CMD --help` */
  cmd_fn fn;           /* NULL: handled specially (serve, init, version) */
} command;

static int cmd_put(tether *, const char *, char **, int, const cmd_opts *);
static int cmd_set(tether *, const char *, char **, int, const cmd_opts *);
static int cmd_unset(tether *, const char *, char **, int, const cmd_opts *);
static int cmd_incr(tether *, const char *, char **, int, const cmd_opts *);
static int cmd_add(tether *, const char *, char **, int, const cmd_opts *);
static int cmd_del(tether *, const char *, char **, int, const cmd_opts *);
static int cmd_get(tether *, const char *, char **, int, const cmd_opts *);
static int cmd_ls(tether *, const char *, char **, int, const cmd_opts *);
static int cmd_sync(tether *, const char *, char **, int, const cmd_opts *);
static int cmd_status(tether *, const char *, char **, int, const cmd_opts *);
static int cmd_conflicts(tether *, const char *, char **, int,
                         const cmd_opts *);
static int cmd_resolve(tether *, const char *, char **, int, const cmd_opts *);
static int cmd_outcomes(tether *, const char *, char **, int,
                        const cmd_opts *);
static int cmd_outbox(tether *, const char *, char **, int, const cmd_opts *);

static const command commands[] = {
    {"serve", 0, 0,
     "[--data DIR | --backend URL] [OPTION...]",
     "run the sync server",
     "Runs the reconciliation server until SIGTERM or SIGINT.\n"
     "\n"
     "  --data DIR          store directory (default ./tether-data)\n"
     "  --backend URL       keep the state in Redis instead of --data:\n"
     "                      redis://HOST:PORT[/DB] (one redis-server) or\n"
     "                      redis-cluster://HOST:PORT[,HOST:PORT...] (seed\n"
     "                      nodes of a Redis Cluster); several servers may\n"
     "                      share one. Add ?wait=N&wait_ms=MS to wait for N\n"
     "                      replicas after each commit (docs/REDIS.md).\n"
     "                      Default: lmdb (the embedded store at --data)\n"
     "  --partitions N      partitions of a new store, 1 to 4096 (default\n"
     "                      1; an existing store keeps its count); on a\n"
     "                      cluster, more partitions spread over more nodes\n"
     "  --listen HOST:PORT  address to listen on (default 127.0.0.1:8420;\n"
     "                      port 0 picks a free port)\n"
     "  --config FILE       conflict policy file (JSON; default: all lww)\n"
     "\n"
     "Prints \"listening on http://HOST:PORT\" on stdout once it accepts\n"
     "requests; logs go to stderr.\n",
     NULL},
    {"init", 0, 0, "--replica DIR --server URL", "create a replica",
     "Creates a new replica in DIR (created if missing) that syncs with the\n"
     "server at URL, e.g. http://127.0.0.1:8420.\n",
     NULL},
    {"put", 3, 3, "COLL ID JSON", "create or replace a document",
     "Creates or replaces document ID of collection COLL with JSON, which\n"
     "must be an object, e.g. '{\"title\":\"A\"}'.\n",
     cmd_put},
    {"set", 4, 4, "COLL ID FIELD JSON", "set one field",
     "Sets top-level FIELD of the document to the JSON value, e.g. '\"B\"',\n"
     "'3' or '[1,2]'. Creates the document if absent.\n",
     cmd_set},
    {"unset", 3, 3, "COLL ID FIELD", "remove one field",
     "Removes top-level FIELD from the document.\n", cmd_unset},
    {"incr", 4, 4, "COLL ID FIELD N", "add N to a counter field",
     "Adds the integer N (may be negative) to counter FIELD (absent = 0).\n"
     "Concurrent increments from several replicas add up.\n",
     cmd_incr},
    {"add", 4, 4, "COLL ID FIELD JSON", "add an element to a set field",
     "Adds the JSON element to FIELD, an array used as a set.\n", cmd_add},
    {"remove", 4, 4, "COLL ID FIELD JSON",
     "remove an element from a set field",
     "Removes the JSON element from FIELD, an array used as a set.\n",
     cmd_add},
    {"del", 2, 2, "COLL ID", "delete a document",
     "Deletes the document (a tombstone is kept and synced).\n", cmd_del},
    {"get", 2, 2, "COLL ID", "print a document",
     "Prints the document as canonical JSON (sorted keys, compact, one\n"
     "line), including local changes not yet synced. Exits 1 if absent.\n",
     cmd_get},
    {"ls", 1, 1, "COLL", "list the documents of a collection",
     "Prints one line per live document of COLL, sorted by id:\n"
     "ID<TAB>canonical JSON.\n",
     cmd_ls},
    {"sync", 0, 0, "[--progress]", "push local changes, pull remote ones",
     "Pushes the outbox to the server, then pulls until caught up.\n"
     "When the server cannot be reached nothing changes locally and the\n"
     "command exits non-zero; run it again later.\n"
     "\n"
     "  --progress  report progress on stderr (default: when stderr is a\n"
     "              terminal)\n",
     cmd_sync},
    {"status", 0, 2, "[COLL ID]", "sync status",
     "With COLL ID: prints one word, synced, pending, conflict or rejected;\n"
     "exits 1 if the replica has no such document (absent, or deleted and\n"
     "synced). Without: prints the replica's counts, one \"name: value\" per\n"
     "line.\n",
     cmd_status},
    {"conflicts", 0, 0, "", "list open conflicts",
     "Prints one JSON object per open conflict, with coll, id, field, base,\n"
     "theirs and ours. Settle one with `tether resolve`.\n",
     cmd_conflicts},
    {"resolve", 3, 4, "COLL ID FIELD (JSON | --unset)", "settle a conflict",
     "Settles the open conflict on FIELD of the document with the JSON\n"
     "value, or with --unset, by leaving the field absent (null is a\n"
     "value); the decision syncs like any other change.\n"
     "\n"
     "  --unset  settle with FIELD absent instead of a value\n",
     cmd_resolve},
    {"outcomes", 0, 0, "", "print new intent outcomes",
     "Prints one JSON object per outcome the server reported since the last\n"
     "`tether outcomes` (applied, merged, conflict or rejected), oldest\n"
     "first. Each is shown once.\n",
     cmd_outcomes},
    {"outbox", 0, 0, "", "print the next push request",
     "Prints, as one JSON line, the exact body of the first push request the\n"
     "next sync would send. Prints nothing when the outbox is empty.\n",
     cmd_outbox},
    {"version", 0, 0, "", "print the version",
     "Prints the library and protocol versions.\n", NULL},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static const command *find_command(const char *name) {
  for (size_t i = 0; i < NCOMMANDS; i++)
    if (strcmp(commands[i].name, name) == 0)
      return &commands[i];
  return NULL;
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: tether [--replica DIR] COMMAND [ARGS...]\n"
          "       tether COMMAND --help\n"
          "\n"
          "tether keeps a local replica that works offline and syncs with a\n"
          "tether server.\n"
          "\n"
          "commands:\n");
  for (size_t i = 0; i < NCOMMANDS; i++) {
    char left[64];
    snprintf(left, sizeof left, "%s %s", commands[i].name, commands[i].args);
    if (strlen(left) > 28)
      fprintf(f, "  %s\n  %-28s  %s\n", left, "", commands[i].summary);
    else
      fprintf(f, "  %-28s  %s\n", left, commands[i].summary);
  }
  fprintf(f, "\n"
             "The replica is --replica DIR, or $TETHER_REPLICA.\n"
             "Exit status: 0 ok, 1 failed, 2 bad usage.\n");
}

static void command_help(FILE *f, const command *c) {
  fprintf(f, "usage: tether %s%s%s%s\n\n%s", c->fn ? "[--replica DIR] " : "",
          c->name, c->args[0] ? " " : "", c->args, c->help);
}

static int usage_error(const command *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int usage_error(const command *c, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "%s: %s%s", prog, c ? c->name : "", c ? ": " : "");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  if (c)
    fprintf(stderr, "usage: tether %s%s%s%s\n(see `tether %s --help`)\n",
            c->fn ? "[--replica DIR] " : "", c->name, c->args[0] ? " " : "",
            c->args, c->name);
  else
    usage(stderr);
  return EXIT_USAGE;
}

/* ---- reporting library errors -------------------------------------------- */

/* Prints `tether: CMD: why` for RC and returns the exit status. WHAT is the
 * JSON argument's text for TETHER_EJSON, or what was not found (may be
 * NULL). */
static int report(tether *t, const char *cmd, int rc, const char *what) {
  const char *detail = t ? tether_last_error(t) : "";
  const char *sep = detail[0] ? ": " : "";
  switch (rc) {
  case TETHER_EJSON:
    /* WHAT is the argument's text: show it, shortened, so the user sees
     * which one (the shell may have eaten quotes). */
    errmsg("%s: malformed JSON argument '%.60s%s': %s", cmd, what ? what : "",
           what && strlen(what) > 60 ? "..." : "",
           detail[0] ? detail : tether_strerror(rc));
    return EXIT_USAGE;
  case TETHER_EINVAL:
  case TETHER_ETOOBIG:
    errmsg("%s: %s%s%s", cmd, tether_strerror(rc), sep, detail);
    return EXIT_USAGE;
  case TETHER_ENOTFOUND:
    errmsg("%s: %s: not found", cmd, what ? what : "document");
    return EXIT_FAIL;
  case TETHER_EUNREACHABLE:
    errmsg("%s: server unreachable%s%s; local changes are kept: start the "
           "server or check its URL, then run `tether sync` again",
           cmd, sep, detail);
    return EXIT_FAIL;
  case TETHER_EFULL:
    errmsg("%s: %s%s%s; free disk space", cmd, tether_strerror(rc), sep,
           detail);
    return EXIT_FAIL;
  case TETHER_EBUSY:
    errmsg("%s: %s%s%s; is another tether process using this replica?", cmd,
           tether_strerror(rc), sep, detail);
    return EXIT_FAIL;
  default:
    errmsg("%s: %s%s%s", cmd, tether_strerror(rc), sep, detail);
    return EXIT_FAIL;
  }
}

/* ---- replica commands ---------------------------------------------------- */

static int cmd_put(tether *t, const char *n, char **a, int na,
                   const cmd_opts *o) {
  (void)na;
  (void)o;
  int rc = tether_put(t, a[0], a[1], a[2]);
  if (rc == TETHER_ETYPE) {
    errmsg("%s: JSON argument '%.60s': %s", n, a[2], tether_last_error(t));
    return EXIT_USAGE;
  }
  return rc ? report(t, n, rc, a[2]) : 0;
}

static int cmd_set(tether *t, const char *n, char **a, int na,
                   const cmd_opts *o) {
  (void)na;
  (void)o;
  int rc = tether_set(t, a[0], a[1], a[2], a[3]);
  return rc ? report(t, n, rc, a[3]) : 0;
}

static int cmd_unset(tether *t, const char *n, char **a, int na,
                     const cmd_opts *o) {
  (void)na;
  (void)o;
  int rc = tether_unset(t, a[0], a[1], a[2]);
  return rc ? report(t, n, rc, NULL) : 0;
}

static int cmd_incr(tether *t, const char *n, char **a, int na,
                    const cmd_opts *o) {
  (void)na;
  (void)o;
  char *end = NULL;
  errno = 0;
  long long v = strtoll(a[3], &end, 10);
  if (a[3][0] == '\0' || *end != '\0' || errno == ERANGE) {
    errmsg("%s: N must be an integer, got \"%s\"", n, a[3]);
    return EXIT_USAGE;
  }
  int rc = tether_incr(t, a[0], a[1], a[2], (int64_t)v);
  if (rc == TETHER_ETYPE) {
    errmsg("%s: %s/%s field %s is not an integer counter%s%s", n, a[0], a[1],
           a[2], tether_last_error(t)[0] ? ": " : "", tether_last_error(t));
    return EXIT_FAIL;
  }
  return rc ? report(t, n, rc, NULL) : 0;
}

static int cmd_add(tether *t, const char *n, char **a, int na,
                   const cmd_opts *o) {
  (void)na;
  (void)o;
  int rc = strcmp(n, "add") == 0 ? tether_add(t, a[0], a[1], a[2], a[3])
                                 : tether_remove(t, a[0], a[1], a[2], a[3]);
  if (rc == TETHER_ETYPE) {
    errmsg("%s: %s/%s field %s is not an array used as a set%s%s", n, a[0],
           a[1], a[2], tether_last_error(t)[0] ? ": " : "",
           tether_last_error(t));
    return EXIT_FAIL;
  }
  return rc ? report(t, n, rc, a[3]) : 0;
}

static int cmd_del(tether *t, const char *n, char **a, int na,
                   const cmd_opts *o) {
  (void)na;
  (void)o;
  int rc = tether_delete(t, a[0], a[1]);
  return rc ? report(t, n, rc, NULL) : 0;
}

static int cmd_get(tether *t, const char *n, char **a, int na,
                   const cmd_opts *o) {
  (void)na;
  (void)o;
  char *json = NULL;
  int rc = tether_get(t, a[0], a[1], &json);
  if (rc == TETHER_ENOTFOUND) {
    errmsg("%s: %s/%s: not found", n, a[0], a[1]);
    return EXIT_FAIL;
  }
  if (rc)
    return report(t, n, rc, NULL);
  printf("%s\n", json);
  tether_free(json);
  return 0;
}

static int print_doc(void *ctx, const char *id, const char *json) {
  (void)ctx;
  printf("%s\t%s\n", id, json);
  return 0;
}

static int cmd_ls(tether *t, const char *n, char **a, int na,
                  const cmd_opts *o) {
  (void)na;
  (void)o;
  int rc = tether_list(t, a[0], print_doc, NULL);
  return rc ? report(t, n, rc, NULL) : 0;
}

typedef struct {
  int tty;
  int printed;
} progress_state;

static void on_progress(void *ctx, const tether_progress *p) {
  progress_state *s = ctx;
  /* A terminal gets one line rewritten in place; a log one line each. */
  if (s->tty)
    fputc('\r', stderr);
  if (p->total)
    fprintf(stderr, "%s: %" PRIu64 "/%" PRIu64 " intents", p->phase, p->done,
            p->total);
  else
    fprintf(stderr, "%s: %" PRIu64 " changes", p->phase, p->done);
  fputs(s->tty ? "\033[K" : "\n", stderr);
  fflush(stderr);
  s->printed = 1;
}

static int cmd_sync(tether *t, const char *n, char **a, int na,
                    const cmd_opts *o) {
  (void)a;
  (void)na;
  progress_state ps = {isatty(STDERR_FILENO), 0};
  tether_sync_opts so;
  memset(&so, 0, sizeof so);
  if (o->progress || ps.tty) {
    so.progress = on_progress;
    so.progress_ctx = &ps;
  }
  int rc = tether_sync(t, &so);
  if (ps.printed && ps.tty)
    fputc('\n', stderr);
  if (rc)
    return report(t, n, rc, NULL);
  tether_stats st;
  if (tether_get_stats(t, &st) == 0) {
    if (st.conflicts)
      errmsg("%s: %" PRIu64 " open conflict%s; see `tether conflicts`", n,
             st.conflicts, st.conflicts == 1 ? "" : "s");
    if (st.rejected)
      errmsg("%s: %" PRIu64 " intent%s rejected by the server; see `tether "
             "outcomes`",
             n, st.rejected, st.rejected == 1 ? " was" : "s were");
  }
  return 0;
}

static int cmd_status(tether *t, const char *n, char **a, int na,
                      const cmd_opts *o) {
  (void)o;
  if (na == 1)
    return usage_error(find_command(n), "give both COLL and ID, or neither");
  if (na == 2) {
    tether_doc_status s;
    int rc = tether_status(t, a[0], a[1], &s);
    if (rc == 0 && s == TETHER_SYNCED) {
      /* Nothing pending or held: "synced" is only true of a document
       * that exists. */
      char *json = NULL;
      rc = tether_get(t, a[0], a[1], &json);
      tether_free(json);
    }
    if (rc == TETHER_ENOTFOUND) {
      errmsg("%s: %s/%s: no such document", n, a[0], a[1]);
      return EXIT_FAIL;
    }
    if (rc)
      return report(t, n, rc, NULL);
    printf("%s\n", tether_status_name(s));
    return 0;
  }
  tether_stats st;
  int rc = tether_get_stats(t, &st);
  if (rc)
    return report(t, n, rc, NULL);
  printf("replica: %s\n"
         "server: %s\n"
         "pending: %" PRIu64 "\n"
         "conflicts: %" PRIu64 "\n"
         "rejected: %" PRIu64 "\n"
         "documents: %" PRIu64 "\n",
         tether_replica_id(t), tether_server_url(t), st.pending_intents,
         st.conflicts, st.rejected, st.documents);
  return 0;
}

static int print_json_line(void *ctx, const char *json) {
  (void)ctx;
  printf("%s\n", json);
  return 0;
}

static int cmd_conflicts(tether *t, const char *n, char **a, int na,
                         const cmd_opts *o) {
  (void)a;
  (void)na;
  (void)o;
  int rc = tether_conflicts(t, print_json_line, NULL);
  return rc ? report(t, n, rc, NULL) : 0;
}

static int cmd_resolve(tether *t, const char *n, char **a, int na,
                       const cmd_opts *o) {
  if (o->unset != (na == 3))
    return usage_error(find_command(n), o->unset
                                            ? "give no JSON with --unset"
                                            : "missing JSON (or --unset)");
  int rc = o->unset ? tether_resolve_unset(t, a[0], a[1], a[2])
                    : tether_resolve(t, a[0], a[1], a[2], a[3]);
  if (rc == TETHER_ENOTFOUND) {
    errmsg("%s: no open conflict on %s/%s field %s; list them with `tether "
           "conflicts`",
           n, a[0], a[1], a[2]);
    return EXIT_FAIL;
  }
  return rc ? report(t, n, rc, o->unset ? NULL : a[3]) : 0;
}

static int cmd_outcomes(tether *t, const char *n, char **a, int na,
                        const cmd_opts *o) {
  (void)a;
  (void)na;
  (void)o;
  /* Flush per line: an outcome counts as seen once the callback returns. */
  int rc = tether_outcomes(t, print_json_line, NULL);
  return rc ? report(t, n, rc, NULL) : 0;
}

static int cmd_outbox(tether *t, const char *n, char **a, int na,
                      const cmd_opts *o) {
  (void)a;
  (void)na;
  (void)o;
  char *json = NULL;
  int rc = tether_outbox_peek(t, &json);
  if (rc == TETHER_ENOTFOUND)
    return 0;
  if (rc)
    return report(t, n, rc, NULL);
  printf("%s\n", json);
  tether_free(json);
  return 0;
}

/* ---- serve ----------------------------------------------------------------- */

static void log_stderr(void *ctx, const char *level, const char *msg) {
  (void)ctx;
  /* One fprintf per line keeps lines from different threads whole. */
  fprintf(stderr, "%s: %s: %s\n", prog, level, msg);
}

/* "HOST:PORT", "[V6]:PORT" or ":PORT". HOST is written into HOSTBUF. */
static int parse_listen(const char *s, char *hostbuf, size_t hostlen,
                        uint16_t *port) {
  const char *colon = strrchr(s, ':');
  if (colon == NULL)
    return -1;
  size_t hl = (size_t)(colon - s);
  const char *h = s;
  if (hl >= 2 && s[0] == '[' && s[hl - 1] == ']') {
    h = s + 1;
    hl -= 2;
  } else if (memchr(s, ':', hl) != NULL) {
    return -1; /* a bare IPv6 address needs brackets */
  }
  if (hl >= hostlen)
    return -1;
  memcpy(hostbuf, h, hl);
  hostbuf[hl] = '\0';
  if (hl == 0)
    snprintf(hostbuf, hostlen, "127.0.0.1");
  char *end = NULL;
  errno = 0;
  unsigned long p = strtoul(colon + 1, &end, 10);
  if (colon[1] == '\0' || *end != '\0' || errno || p > 65535)
    return -1;
  *port = (uint16_t)p;
  return 0;
}

/* The server builds and frees a few MiB of JSON per push and pull page.
 * With glibc's defaults every large free trims the heap or unmaps a
 * chunk, and the next request faults the pages back in: a quarter of the
 * server's CPU on W3 (BENCHMARKS.md). Keeping up to 256 MiB of freed heap,
 * and serving chunks up to 32 MiB from it, costs that much address space
 * at most and only after a peak that needed it. Fast bins off: freeing a
 * request's tree coalesces into chunks over 64 KiB, and each such free
 * makes glibc consolidate every fast bin again (malloc_consolidate was 6%
 * of the server's CPU on W1); the per-thread cache still serves the small
 * sizes. */
static void tune_malloc_for_serving(void) {
#ifdef __GLIBC__
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_MXFAST, 0);
#endif
}

static int do_serve(const command *c, char **args, int nargs) {
  const char *data = "./tether-data", *listen = "127.0.0.1:8420",
             *config = NULL, *backend = NULL, *partitions = NULL;
  for (int i = 0; i < nargs; i++) {
    const char *opt = args[i];
    const char **dst = NULL;
    if (strcmp(opt, "--data") == 0)
      dst = &data;
    else if (strcmp(opt, "--backend") == 0)
      dst = &backend;
    else if (strcmp(opt, "--partitions") == 0)
      dst = &partitions;
    else if (strcmp(opt, "--listen") == 0)
      dst = &listen;
    else if (strcmp(opt, "--config") == 0)
      dst = &config;
    else
      return usage_error(c, "unknown argument \"%s\"", opt);
    if (i + 1 >= nargs)
      return usage_error(c, "%s needs a value", opt);
    *dst = args[++i];
  }
  char host[256];
  uint16_t port = 0;
  if (parse_listen(listen, host, sizeof host, &port) != 0)
    return usage_error(c, "--listen \"%s\" is not HOST:PORT", listen);
  unsigned nparts = 0;
  if (partitions != NULL) {
    char *end = NULL;
    errno = 0;
    unsigned long n = strtoul(partitions, &end, 10);
    if (partitions[0] < '1' || partitions[0] > '9' || *end != '\0' ||
        errno || n > MAX_PARTITIONS)
      return usage_error(c, "--partitions \"%s\" is not a number from 1 "
                            "to %d (the server's maximum)",
                         partitions, MAX_PARTITIONS);
    nparts = (unsigned)n;
  }

  /* Block the stop signals in every thread (the server's threads inherit
   * the mask) and take them synchronously below. */
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, NULL);
  signal(SIGPIPE, SIG_IGN);
  /* Every connected replica holds a descriptor (long-polls hold theirs for
   * up to a minute): take the hard limit, not the usual soft 1024. */
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }

  tether_server_opts so;
  memset(&so, 0, sizeof so);
  so.data_dir = data;
  so.backend = backend;
  so.partitions = nparts;
  so.host = host;
  so.port = port;
  so.config_path = config;
  so.log = log_stderr;
  char err[512] = "";
  tether_server *s = NULL;
  tune_malloc_for_serving();
  int rc = tether_server_start(&s, &so, err, sizeof err);
  if (rc) {
    errmsg("serve: %s%s%s", err[0] ? err : tether_strerror(rc),
           rc == TETHER_EUNAVAILABLE ? "; pick another --listen address" : "",
           rc == TETHER_ECONFIG || rc == TETHER_EJSON ? "; fix the file" : "");
    return EXIT_FAIL;
  }
  int v6 = strchr(host, ':') != NULL;
  printf("listening on http://%s%s%s:%u\n", v6 ? "[" : "", host, v6 ? "]" : "",
         (unsigned)tether_server_port(s));
  fflush(stdout);

  int sig = 0;
  while (sigwait(&stop, &sig) != 0)
    ;
  fprintf(stderr, "%s: info: %s received, stopping\n", prog,
          sig == SIGINT ? "SIGINT" : "SIGTERM");
  tether_server_stop(s);
  return 0;
}

/* ---- init ------------------------------------------------------------------ */

static int do_init(const command *c, const char *replica, char **args,
                   int nargs) {
  const char *server = NULL;
  for (int i = 0; i < nargs; i++) {
    const char *opt = args[i];
    if (strcmp(opt, "--replica") == 0 || strcmp(opt, "--server") == 0) {
      if (i + 1 >= nargs)
        return usage_error(c, "%s needs a value", opt);
      if (opt[2] == 'r')
        replica = args[++i];
      else
        server = args[++i];
    } else {
      return usage_error(c, "unknown argument \"%s\"", opt);
    }
  }
  if (replica == NULL || replica[0] == '\0')
    return usage_error(c, "--replica DIR is required");
  if (server == NULL || server[0] == '\0')
    return usage_error(c, "--server URL is required");
  if (strncmp(server, "http://", 7) != 0 && strncmp(server, "https://", 8) != 0)
    return usage_error(c, "--server \"%s\" is not an http:// URL", server);
  int rc = tether_init(replica, server);
  if (rc == TETHER_EEXIST) {
    errmsg("init: %s already holds a replica; use it with --replica %s, or "
           "pick another directory",
           replica, replica);
    return EXIT_FAIL;
  }
  if (rc) {
    errmsg("init: %s: %s; check that the directory can be created and "
           "written",
           replica, tether_strerror(rc));
    return EXIT_FAIL;
  }
  tether *t = NULL;
  if (tether_open(&t, replica) == 0) {
    printf("initialized replica %s in %s (server %s)\n", tether_replica_id(t),
           replica, server);
    tether_close(t);
  }
  return 0;
}

/* ---- main -------------------------------------------------------------------- */

static int is_help(const char *a) {
  return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0;
}

int main(int argc, char **argv) {
  const char *replica = NULL;
  int i = 1;

  /* Global options, before the command. */
  for (; i < argc; i++) {
    if (is_help(argv[i])) {
      usage(stdout);
      return 0;
    }
    if (strcmp(argv[i], "--version") == 0) {
      printf("tether %s (protocol %d)\n", tether_version(),
             TETHER_PROTOCOL_VERSION);
      return 0;
    }
    if (strcmp(argv[i], "--replica") == 0) {
      if (i + 1 >= argc)
        return usage_error(NULL, "--replica needs a directory");
      replica = argv[++i];
    } else if (strncmp(argv[i], "--replica=", 10) == 0) {
      replica = argv[i] + 10;
    } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
      return usage_error(NULL, "unknown option \"%s\"", argv[i]);
    } else {
      break;
    }
  }
  if (i >= argc)
    return usage_error(NULL, "no command given");

  const char *name = argv[i++];
  if (strcmp(name, "help") == 0) {
    if (i < argc) {
      const command *c = find_command(argv[i]);
      if (c == NULL)
        return usage_error(NULL, "unknown command \"%s\"", argv[i]);
      command_help(stdout, c);
      return 0;
    }
    usage(stdout);
    return 0;
  }
  const command *c = find_command(name);
  if (c == NULL)
    return usage_error(NULL, "unknown command \"%s\"", name);

  /* The rest: the command's own options and its positional arguments. A
   * lone "-5" is a positional (incr takes negative numbers); "--" ends the
   * options. */
  char **pos = calloc((size_t)argc + 1, sizeof *pos);
  if (pos == NULL) {
    errmsg("out of memory");
    return EXIT_FAIL;
  }
  int npos = 0, rc = 0;
  cmd_opts o = {0};
  int raw = c->fn == NULL; /* serve/init/version parse their own options */
  for (int only_pos = 0; i < argc; i++) {
    const char *a = argv[i];
    if (!only_pos && is_help(a)) {
      command_help(stdout, c);
      goto done;
    }
    if (raw) {
      pos[npos++] = argv[i];
      continue;
    }
    if (!only_pos && strcmp(a, "--") == 0) {
      only_pos = 1;
    } else if (!only_pos && strcmp(a, "--replica") == 0) {
      if (i + 1 >= argc) {
        rc = usage_error(c, "--replica needs a directory");
        goto done;
      }
      replica = argv[++i];
    } else if (!only_pos && strncmp(a, "--replica=", 10) == 0) {
      replica = a + 10;
    } else if (!only_pos && strcmp(c->name, "sync") == 0 &&
               strcmp(a, "--progress") == 0) {
      o.progress = 1;
    } else if (!only_pos && strcmp(c->name, "resolve") == 0 &&
               strcmp(a, "--unset") == 0) {
      o.unset = 1;
    } else if (!only_pos && a[0] == '-' && a[1] == '-') {
      rc = usage_error(c, "unknown option \"%s\"", a);
      goto done;
    } else {
      pos[npos++] = argv[i];
    }
  }

  if (strcmp(c->name, "version") == 0) {
    if (npos) {
      rc = usage_error(c, "takes no arguments");
      goto done;
    }
    printf("tether %s (protocol %d)\n", tether_version(),
           TETHER_PROTOCOL_VERSION);
    goto done;
  }
  if (strcmp(c->name, "serve") == 0) {
    rc = do_serve(c, pos, npos);
    goto done;
  }
  if (strcmp(c->name, "init") == 0) {
    rc = do_init(c, replica, pos, npos);
    goto done;
  }

  if (npos < c->min_args || npos > c->max_args) {
    rc = usage_error(c, "%s arguments", npos < c->min_args ? "missing"
                                                            : "too many");
    goto done;
  }
  if (replica == NULL || replica[0] == '\0')
    replica = getenv("TETHER_REPLICA");
  if (replica == NULL || replica[0] == '\0') {
    rc = usage_error(c, "no replica: pass --replica DIR or set "
                        "TETHER_REPLICA");
    goto done;
  }
  tether *t = NULL;
  int orc = tether_open(&t, replica);
  if (orc == TETHER_ENOREPLICA) {
    errmsg("%s: %s is not a tether replica; create one with `tether init "
           "--replica %s --server URL`",
           c->name, replica, replica);
    rc = EXIT_FAIL;
    goto done;
  }
  if (orc) {
    errmsg("%s: cannot open replica %s: %s", c->name, replica,
           tether_strerror(orc));
    rc = EXIT_FAIL;
    goto done;
  }
  rc = c->fn(t, c->name, pos, npos, &o);
  tether_close(t);

done:
  free(pos);
  if (fflush(stdout) != 0 || ferror(stdout)) {
    errmsg("cannot write the output: %s", strerror(errno));
    if (rc == 0)
      rc = EXIT_FAIL;
  }
  return rc;
}
