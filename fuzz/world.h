/* world.h — the fixed server state the push and pull targets start every
 * input from, and the seed generator builds its valid pushes against.
 *
 * Two partitions, a policy table with every policy, two replicas (A, B)
 * whose intents made documents, a counter, a held conflict (manual policy
 * on "notes") and a tombstone. Everything is deterministic (fixed ids,
 * clocks and "now"), so the same input always meets the same state and a
 * crash reproduces from its input alone. */
#ifndef TT_FUZZ_WORLD_H
#define TT_FUZZ_WORLD_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/intent.h"
#include "core/policy.h"
#include "core/util.h"
#include "fuzz_common.h"
#include "server/server.h"

#define W_PARTS 2
#define W_NOW 1700000000000ull /* the server's "now", ms */
#define W_HLC(off) ((W_NOW + (off)) << 16)

static const char W_CONFIG[] =
    "{\"collections\":{"
    "\"notes\":{\"policy\":\"manual\",\"fields\":{\"n\":{\"policy\":\"lww\"}}},"
    "\"tasks\":{\"policy\":\"lww\",\"fields\":{\"owner\":{\"policy\":"
    "\"server-wins\"}}},"
    "\"counters\":{\"policy\":\"client-wins\"}}}";

typedef struct {
  uint8_t id[TT_ID_LEN];
  char hex[2 * TT_ID_LEN + 1];
  uint64_t seq;              /* last seq made */
  uint8_t last[TT_HASH_LEN]; /* its hash */
} w_rep;

FF_UNUSED static void w_rep_init(w_rep *r, uint8_t fill) {
  memset(r, 0, sizeof *r);
  memset(r->id, fill, TT_ID_LEN);
  tt_hex_encode(r->id, TT_ID_LEN, r->hex);
}

/* The next intent of R in wire form, hashed and chained on R's last one;
 * OPS is the JSON text of the ops array, LABEL may be NULL. New
 * reference. */
FF_UNUSED static json_t *w_intent(w_rep *r, uint64_t hlc, const char *coll,
                                  const char *id, uint64_t base,
                                  const char *label, const char *ops) {
  char prev[2 * TT_HASH_LEN + 1], err[256];
  json_error_t je;
  json_t *jops = json_loads(ops, 0, &je), *j, *out;
  tt_intent in;

  if (!jops)
    FF_FAIL("world: ops JSON %s: %s", ops, je.text);
  tt_hex_encode(r->last, TT_HASH_LEN, prev);
  j = json_pack("{s:s,s:I,s:s,s:s,s:I,s:i,s:s,s:s,s:I,s:o}", "client",
                r->hex, "seq", (json_int_t)(r->seq + 1), "prev", prev, "hash",
                "0000000000000000000000000000000000000000000000000000000000000000",
                "hlc", (json_int_t)hlc, "schema", 0, "coll", coll, "id", id,
                "base", (json_int_t)base, "ops", jops);
  if (!j)
    FF_FAIL("world: json_pack");
  if (label)
    json_object_set_new(j, "label", json_string(label));
  if (tt_intent_from_json(j, &in, err, sizeof err))
    FF_FAIL("world: intent: %s", err);
  json_decref(j);
  if (tt_intent_compute_hash(&in, in.hash))
    FF_FAIL("world: hash");
  r->seq = in.seq;
  memcpy(r->last, in.hash, TT_HASH_LEN);
  out = tt_intent_to_json(&in, 1);
  tt_intent_clear(&in);
  if (!out)
    FF_FAIL("world: to_json");
  return out;
}

/* {"v":1,"replica":R,"intents":INTENTS}; steals INTENTS (an array). */
FF_UNUSED static json_t *w_req(const w_rep *r, json_t *intents) {
  return json_pack("{s:i,s:s,s:o}", "v", 1, "replica", r->hex, "intents",
                   intents);
}

typedef struct {
  tt_store *st;
  tt_policy_table *pol;
  tt_server *srv;
  w_rep a, b;
  char conflict[128]; /* the conflict B's first intent is held on */
  uint64_t v_n1, v_t1, v_c1, v_n2; /* document versions after the build */
  json_t *log; /* when set: every preamble request is appended to it */
} w_world;

FF_UNUSED static void w_server_open(w_world *w) {
  char err[256] = "";
  tt_server_opts o = {.partitions = W_PARTS, .pull_limit = 3};
  if (!w->pol && tt_policy_parse(W_CONFIG, strlen(W_CONFIG), &w->pol, err,
                                 sizeof err))
    FF_FAIL("world: policy: %s", err);
  if (tt_server_open(w->st, w->pol, &o, &w->srv, err, sizeof err))
    FF_FAIL("world: server open: %s", err);
}

/* One push of one intent; returns outcomes[0] as a new reference. */
static json_t *w_push1(w_world *w, w_rep *r, json_t *intent) {
  json_t *arr = json_array(), *req, *o;
  tt_push_job job = {0};
  json_array_append_new(arr, intent);
  req = w_req(r, arr);
  job.request = req;
  if (w->log)
    json_array_append(w->log, req);
  tt_server_push(w->srv, &job, 1, W_NOW);
  if (job.status != 200) {
    char *s = json_dumps(job.response, JSON_COMPACT);
    FF_FAIL("world: preamble push answered %d: %s", job.status, s);
  }
  o = json_incref(
      json_array_get(json_object_get(job.response, "outcomes"), 0));
  json_decref(job.response);
  json_decref(req);
  return o;
}

static uint64_t w_commit(json_t *o) {
  uint64_t c = (uint64_t)json_integer_value(json_object_get(o, "commit"));
  json_decref(o);
  return c;
}

/* On an empty store W->st: opens the server and pushes the preamble. */
FF_UNUSED static void w_build(w_world *w) {
  json_t *o;
  w_rep_init(&w->a, 0xa1);
  w_rep_init(&w->b, 0xb2);
  w->conflict[0] = 0;
  w_server_open(w);

  w->v_n1 = w_commit(w_push1(
      w, &w->a,
      w_intent(&w->a, W_HLC(1), "notes", "n1", 0, "create note",
               "[{\"kind\":\"create\",\"value\":{\"title\":\"A\",\"n\":1,"
               "\"tags\":[\"x\"]}}]")));
  uint64_t base_n1 = w->v_n1;
  w->v_n1 = w_commit(w_push1(
      w, &w->a,
      w_intent(&w->a, W_HLC(2), "notes", "n1", base_n1, NULL,
               "[{\"kind\":\"set\",\"field\":\"title\",\"value\":\"B\","
               "\"base_value\":\"A\"}]")));
  w->v_t1 = w_commit(w_push1(
      w, &w->a,
      w_intent(&w->a, W_HLC(3), "tasks", "t1", 0, NULL,
               "[{\"kind\":\"create\",\"value\":{\"owner\":\"ann\","
               "\"done\":false,\"n\":0}}]")));
  w->v_c1 = w_commit(w_push1(
      w, &w->a,
      w_intent(&w->a, W_HLC(4), "counters", "c1", 0, NULL,
               "[{\"kind\":\"create\",\"value\":{\"n\":5,\"s\":[1,2]}}]")));
  /* B saw n1 at its first version: its title write is concurrent with A's
   * and "notes" is manual, so the server holds a conflict. */
  o = w_push1(w, &w->b,
              w_intent(&w->b, W_HLC(5), "notes", "n1", base_n1, "retitle",
                       "[{\"kind\":\"set\",\"field\":\"title\",\"value\":"
                       "\"C\",\"base_value\":\"A\"}]"));
  if (strcmp(json_string_value(json_object_get(o, "outcome")), "conflict"))
    FF_FAIL("world: B's first intent should conflict");
  snprintf(w->conflict, sizeof w->conflict, "%s",
           json_string_value(
               json_object_get(json_object_get(o, "conflict"), "id")));
  json_decref(o);
  w->v_t1 = w_commit(w_push1(
      w, &w->b,
      w_intent(&w->b, W_HLC(6), "tasks", "t1", 0, NULL,
               "[{\"kind\":\"incr\",\"field\":\"n\",\"value\":3},"
               "{\"kind\":\"set\",\"field\":\"owner\",\"value\":\"bob\"}]")));
  w->v_n2 = w_commit(w_push1(
      w, &w->b,
      w_intent(&w->b, W_HLC(7), "notes", "n2", 0, NULL,
               "[{\"kind\":\"create\",\"value\":{\"body\":\"x\"}}]")));
  w->v_n2 = w_commit(w_push1(
      w, &w->b,
      w_intent(&w->b, W_HLC(8), "notes", "n2", w->v_n2, NULL,
               "[{\"kind\":\"delete\"}]")));
}

/* Back to the built state: wipe the store, reopen the server on it. */
FF_UNUSED static void w_reset(w_world *w) {
  tt_server_close(w->srv);
  w->srv = NULL;
  ff_wipe(w->st);
  w_build(w);
}

#endif
