/* main.c — tether-sim: runs the deterministic simulation over a range of
 * seeds and reports every invariant that broke, with the command that
 * replays it. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/plant.h"
#include "sim.h"

/* The bug planted for this run (NULL: none). Read by TT_PLANTED() in the
 * library code compiled into this binary only. */
const char *tt_plant = NULL;
const char *sim_plant_name = NULL;

static const char *const plants[] = {
    "skip-dedupe",    /* the server applies a redelivered intent again */
    "ack-before-commit", /* the server answers before its commit is durable */
    "ignore-base",    /* the merge engine never sees concurrency */
    "skip-pull-page", /* the server skips a change between pull pages */
    "lww-ignores-clamp", /* a far-future clock wins last-writer-wins */
    "skip-others-writes", /* a pull skips other replicas' clean writes as
                             if they were the puller's own */
    NULL};

int tt_planted(const char *name) {
  return tt_plant && strcmp(tt_plant, name) == 0;
}

static sim_cfg g_cfg;
static int g_seed_reported;

void sim_violation(sim_world *w, const char *fmt, ...) {
  va_list ap;
  w->violations++;
  if (w->violations > 20 && !w->cfg.verbose)
    return; /* the first ones say enough */
  fprintf(stdout, "violation: seed %llu: ", (unsigned long long)w->cfg.seed);
  va_start(ap, fmt);
  vfprintf(stdout, fmt, ap);
  va_end(ap);
  fputc('\n', stdout);
  if (!g_seed_reported) {
    g_seed_reported = 1;
    fprintf(stdout,
            "replay: tether-sim --seeds %llu-%llu --replicas %d --ops %d "
            "--partitions %u --docs %u%s%s\n",
            (unsigned long long)w->cfg.seed, (unsigned long long)w->cfg.seed,
            g_cfg.replicas, g_cfg.ops, g_cfg.partitions, g_cfg.docs,
            tt_plant ? " --plant " : "", tt_plant ? tt_plant : "");
  }
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: tether-sim --seeds A-B [--replicas N] [--ops N] "
          "[--partitions N] [--docs N] [--plant NAME] [--verbose]\n"
          "\n"
          "Runs the real server and replica state machines on real LMDB "
          "stores with a\n"
          "simulated network (drop, duplicate, reorder, delay, partitions, "
          "responses lost\n"
          "after commit), skewed and jumping clocks, and server/replica "
          "crashes, one world\n"
          "per seed, then checks convergence (G4), no acknowledged intent "
          "lost (G1),\n"
          "exactly-once counters (G2), per-replica order and outcome "
          "coverage (G3),\n"
          "field-level conflict rules (G5), replay determinism (G6) and the "
          "clock clamp.\n"
          "\n"
          "  --seeds A-B     seeds to run, inclusive (or a single seed A)\n"
          "  --replicas N    replicas per world (default 5, at most %d)\n"
          "  --ops N         local writes per world (default 200)\n"
          "  --partitions N  partitions of the server's store (default 1; "
          "with more,\n"
          "                  a group commit is one transaction per "
          "partition and\n"
          "                  server crashes fall between partition "
          "commits too)\n"
          "  --docs N        documents the note writes spread over (default 4:\n"
          "                  contention; more: writes that apply cleanly and\n"
          "                  are not echoed back to their writer)\n"
          "  --plant NAME    plant a known bug to prove the checkers catch it:\n"
          "                  skip-dedupe, ack-before-commit, ignore-base,\n"
          "                  skip-pull-page, lww-ignores-clamp,\n"
          "                  skip-others-writes\n"
          "  --verbose       print diffs and every violation\n"
          "\n"
          "Exit status: 0 when every invariant held for every seed, 1 "
          "otherwise, 2 on usage errors.\n"
          "Ends with: sim: S seeds, O ops, F faults, V violations\n",
          SIM_MAX_REPLICAS);
}

int main(int argc, char **argv) {
  unsigned long long a = 1, b = 100;
  int have_seeds = 0;
  g_cfg.replicas = 5;
  g_cfg.ops = 200;
  g_cfg.partitions = 1;
  g_cfg.docs = 4;
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    const char *val = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(arg, "--seeds") && val) {
      char *end;
      a = strtoull(val, &end, 10);
      b = a;
      if (*end == '-')
        b = strtoull(end + 1, &end, 10);
      if (*end || b < a) {
        fprintf(stderr, "tether-sim: --seeds wants A-B with A <= B, got '%s'\n", val);
        return 2;
      }
      have_seeds = 1;
      i++;
    } else if (!strcmp(arg, "--replicas") && val) {
      g_cfg.replicas = atoi(val);
      if (g_cfg.replicas < 1 || g_cfg.replicas > SIM_MAX_REPLICAS) {
        fprintf(stderr, "tether-sim: --replicas must be 1..%d\n", SIM_MAX_REPLICAS);
        return 2;
      }
      i++;
    } else if (!strcmp(arg, "--ops") && val) {
      g_cfg.ops = atoi(val);
      if (g_cfg.ops < 1) {
        fprintf(stderr, "tether-sim: --ops must be at least 1\n");
        return 2;
      }
      i++;
    } else if (!strcmp(arg, "--partitions") && val) {
      int np = atoi(val);
      if (np < 1 || np > 4096) {
        fprintf(stderr, "tether-sim: --partitions must be 1..4096\n");
        return 2;
      }
      g_cfg.partitions = (unsigned)np;
      i++;
    } else if (!strcmp(arg, "--docs") && val) {
      int nd = atoi(val);
      if (nd < 1 || nd > 100000) {
        fprintf(stderr, "tether-sim: --docs must be 1..100000\n");
        return 2;
      }
      g_cfg.docs = (unsigned)nd;
      i++;
    } else if (!strcmp(arg, "--plant") && val) {
      int ok = 0;
      for (int p = 0; plants[p]; p++)
        ok |= !strcmp(plants[p], val);
      if (!ok) {
        fprintf(stderr, "tether-sim: unknown plant '%s' (see --help)\n", val);
        return 2;
      }
      tt_plant = sim_plant_name = val;
      i++;
    } else if (!strcmp(arg, "--verbose")) {
      g_cfg.verbose = 1;
    } else {
      fprintf(stderr, "tether-sim: unknown or incomplete option '%s'\n", arg);
      usage(stderr);
      return 2;
    }
  }
  if (!have_seeds) {
    fprintf(stderr, "tether-sim: --seeds A-B is required\n");
    usage(stderr);
    return 2;
  }

  unsigned long long seeds = 0, ops = 0, faults = 0, violations = 0;
  for (unsigned long long s = a; s <= b; s++) {
    sim_world w;
    char err[256] = "";
    g_cfg.seed = s;
    g_seed_reported = 0;
    if (sim_world_init(&w, &g_cfg, err, sizeof err)) {
      fprintf(stdout, "violation: seed %llu: setup failed: %s\n", s, err);
      violations++;
      sim_world_free(&w);
      continue;
    }
    if (sim_world_run(&w) == 0 && sim_world_drain(&w) == 0)
      sim_check(&w);
    seeds++;
    ops += w.ops;
    faults += w.faults;
    violations += w.violations;
    if (g_cfg.verbose)
      fprintf(stderr, "seed %llu: %llu ops, %llu faults, %llu violations\n",
              s, (unsigned long long)w.ops, (unsigned long long)w.faults,
              (unsigned long long)w.violations);
    sim_world_free(&w);
  }
  printf("sim: %llu seeds, %llu ops, %llu faults, %llu violations\n", seeds,
         ops, faults, violations);
  return violations ? 1 : 0;
}
