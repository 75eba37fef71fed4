/* sim.h — the deterministic simulation: the real server and replica state
 * machines on real LMDB stores, with a simulated network, simulated clocks
 * and injected faults, all driven by one seed. What the world records is
 * what the checkers (check.c) judge. */
#ifndef TT_SIM_H
#define TT_SIM_H

#include <jansson.h>
#include <stdint.h>

#include "core/policy.h"
#include "replica/replica.h"
#include "server/server.h"
#include "store/store.h"

#define SIM_MAX_REPLICAS 32
#define SIM_MAX_SKEW_MS 60000u
#define SIM_EPOCH_MS 1767225600000ull /* 2026-01-01, the simulated "now" */

typedef struct {
  uint64_t seed;
  int replicas;
  int ops;
  unsigned partitions; /* of the server's store (1 = the embedded default) */
  unsigned docs;       /* documents the note writes spread over (default 4) */
  int verbose;
} sim_cfg;

/* splitmix64: tiny, seedable, the only source of randomness here. */
typedef struct {
  uint64_t s;
} sim_rng;
uint64_t sim_rand(sim_rng *r);
/* Uniform in [0, n). */
uint64_t sim_below(sim_rng *r, uint64_t n);
/* 1 with probability PERMILLE / 1000. */
int sim_chance(sim_rng *r, unsigned permille);

/* One intent as the world saw it made: for the counter checker (G2) and the
 * outcome-coverage checker. */
typedef struct {
  char coll[16], id[16];
  int is_ctr_incr;
  int64_t delta;
} sim_made;

/* One intent as the server applied it, in server order (for G5). */
typedef struct {
  int rep;
  uint64_t seq, base, commit;
  char coll[16], id[16];
  json_t *ops;      /* the wire ops array (owned reference) */
  char outcome[16]; /* applied, merged, conflict, rejected */
  char rule[16];
  char cfield[64];  /* conflict field */
} sim_applied;

typedef struct sim_msg sim_msg;

typedef struct {
  char dir[320];
  tt_store *st;
  tt_replica *r;
  uint8_t id[16];
  char hex[33];
  int64_t skew_ms;
  int busy;               /* 0 idle, 1 waiting for push, 2 waiting for pull */
  uint64_t epoch;         /* bumped on crash/timeout: stale answers drop */
  uint64_t busy_since;
  char *busy_req;         /* the request text in flight */
  uint64_t cut_until;     /* partitioned from the server until then */
  uint64_t acked_max;     /* highest "acked" this replica was told */
  /* what the world saw it make, by seq - 1 */
  sim_made *made;
  size_t nmade, capmade;
  /* seqs the world logged as applied (w->applied), by seq - 1 */
  unsigned char *logged;
  size_t caplogged;
  /* outcomes the app took, in the order taken */
  uint64_t *out_seq;
  char (*out_kind)[16];
  size_t nout, capout;
} sim_replica;

typedef struct {
  char *body;   /* request text */
  int rep;
  uint64_t epoch;
} sim_inbox;

typedef struct {
  sim_cfg cfg;
  sim_rng rng;
  char root[256];
  tt_policy policy; /* the policy of collection "notes" this seed */
  tt_policy_table *pol;

  uint64_t now;       /* simulated server wall clock, ms */
  uint64_t max_now;   /* largest server time a commit saw */
  tt_store *sst;
  tt_server *srv;
  int fault_armed;    /* crash at a commit point of the next group commit */
  const char *fault_point;
  unsigned fault_skip; /* ... after passing that point this many times (one
                          partition transaction each) */

  sim_replica rep[SIM_MAX_REPLICAS];
  int nrep;

  sim_msg *msgs;      /* in flight, unordered */
  uint64_t msg_order;
  sim_inbox *inbox;   /* push requests waiting for the next group commit */
  size_t ninbox, capinbox;

  /* committed group commits, for the determinism replay (G6) */
  json_t *commits;    /* array of {"now":N,"bodies":[text...]}, plus
                         "crash":POINT,"skip":K when the server crashed in
                         it (with several partitions a crash can fall
                         between two partition commits) */
  sim_applied *applied;
  size_t napplied, capapplied;

  uint64_t ops, faults, violations;
  int quiet;          /* faults off: the final drain */
} sim_world;

/* Reports one violation: prints it with the seed and the replay command. */
void sim_violation(sim_world *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* world.c */
int sim_world_init(sim_world *w, const sim_cfg *cfg, char *err, size_t len);
void sim_world_free(sim_world *w);
int sim_world_run(sim_world *w);   /* the faulty phase */
int sim_world_drain(sim_world *w); /* faults off, sync until quiet */

/* check.c: every checker; returns the number of violations found. */
int sim_check(sim_world *w);

extern const char *sim_plant_name; /* set by main from --plant */

#endif
