/* gen_corpus.c — writes the seed corpora of the fuzz targets into
 * OUT/<target>/ (OUT is normally fuzz/corpus). Run by hand when a format
 * changes; its output is committed. It owns the files named ok-*, bad-*
 * and seed-* there (removed first, then written again); the others are
 * inputs libFuzzer found and `-merge=1` kept, and stay.
 *
 * Names tell the replay test what must happen: "ok-*" must be accepted,
 * "bad-*" refused, "seed-*" only must not crash (fuzz_common.h).
 * Valid pushes carry real hashes (core/), chained on the state of
 * world.h; the stored records come from real stores built by world.h and
 * rworld.h. */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_common.h"
#include "net/codec.h"
#include "replica/internal.h"
#include "rworld.h"
#include "server/server_int.h"
#include "world.h"

static const char *OUT;
static size_t total_bytes, total_files;

/* ---- files ---------------------------------------------------------------- */

static void clear_dir(const char *target) {
  char path[1024];
  DIR *d;
  struct dirent *e;
  snprintf(path, sizeof path, "%s/%s", OUT, target);
  if (mkdir(path, 0755) && errno != EEXIST)
    FF_FAIL("mkdir %s", path);
  if (!(d = opendir(path)))
    FF_FAIL("opendir %s", path);
  while ((e = readdir(d))) {
    char f[2048];
    struct stat sb;
    const char *n = e->d_name;
    if (strncmp(n, "ok-", 3) && strncmp(n, "bad-", 4) && strncmp(n, "seed-", 5))
      continue;
    snprintf(f, sizeof f, "%s/%s", path, n);
    if (!stat(f, &sb) && S_ISREG(sb.st_mode))
      remove(f);
  }
  closedir(d);
}

static void put_bytes(const char *target, const char *name, const void *data,
                      size_t len) {
  char path[1024];
  FILE *f;
  snprintf(path, sizeof path, "%s/%s/%s", OUT, target, name);
  if (!(f = fopen(path, "wb")) || (len && fwrite(data, 1, len, f) != len) ||
      fclose(f))
    FF_FAIL("write %s", path);
  total_bytes += len;
  total_files++;
}

/* A byte selector then the bytes. */
static void put_sel(const char *target, const char *name, uint8_t sel,
                    const void *data, size_t len) {
  uint8_t *b = malloc(len + 1);
  b[0] = sel;
  if (len)
    memcpy(b + 1, data, len);
  put_bytes(target, name, b, len + 1);
  free(b);
}

static void put_text(const char *target, const char *name, const char *text) {
  put_bytes(target, name, text, strlen(text));
}

static void put_json(const char *target, const char *name, const json_t *j) {
  char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
  if (!s)
    FF_FAIL("dump %s", name);
  put_text(target, name, s);
  free(s);
}

static json_t *J(const char *text) {
  json_error_t e;
  json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
  if (!j)
    FF_FAIL("JSON %s: %s", text, e.text);
  return j;
}

/* An array of the given new references, NULL-terminated. */
static json_t *arr(json_t *first, ...) {
  json_t *a = json_array();
  va_list ap;
  va_start(ap, first);
  for (json_t *j = first; j; j = va_arg(ap, json_t *))
    json_array_append_new(a, j);
  va_end(ap);
  return a;
}

static char *repeat(char c, size_t n) {
  char *s = malloc(n + 1);
  memset(s, c, n);
  s[n] = 0;
  return s;
}

/* ---- push ----------------------------------------------------------------- */

static w_world W;
static json_t *intent_seeds; /* {"name": intent} for the intent corpus */
static json_t *push_bodies;  /* a few valid bodies, for the codec corpus */

static void keep_intents(const char *name, const json_t *req, int ok) {
  const json_t *ins = json_object_get(req, "intents");
  for (size_t i = 0; i < json_array_size(ins); i++) {
    char n[256];
    snprintf(n, sizeof n, "%s%s-%zu.json", ok ? "ok-" : "seed-", name, i);
    json_object_set(intent_seeds, n, json_array_get(ins, i));
  }
}

static void push_ok(const char *name, const w_rep *r, json_t *intents) {
  char n[256];
  json_t *req = w_req(r, intents);
  snprintf(n, sizeof n, "ok-%s.json", name);
  put_json("push", n, req);
  keep_intents(name, req, 1);
  if (json_array_size(push_bodies) < 3)
    json_array_append(push_bodies, req);
  json_decref(req);
}

static void push_bad(const char *name, json_t *req) {
  char n[256];
  snprintf(n, sizeof n, "bad-%s.json", name);
  put_json("push", n, req);
  json_decref(req);
}

/* A valid single-intent request of a copy of R0 with KEY of its intent
 * set to the JSON text VAL (deleted when VAL is NULL; no change when KEY
 * is NULL), for refusals that must come from validation. */
static json_t *mutated(const w_rep *r0, const char *key, const char *val) {
  w_rep r = *r0;
  json_t *in = w_intent(&r, W_HLC(50), "notes", "n1", W.v_n1, NULL,
                        "[{\"kind\":\"set\",\"field\":\"title\",\"value\":"
                        "\"Z\",\"base_value\":\"B\"}]");
  if (key && val)
    json_object_set_new(in, key, J(val));
  else if (key)
    json_object_del(in, key);
  return w_req(r0, arr(in, NULL));
}

static json_t *op_req(const w_rep *r0, const char *ops) {
  w_rep r = *r0;
  json_t *in = w_intent(&r, W_HLC(51), "notes", "n1", W.v_n1, NULL,
                        "[{\"kind\":\"unset\",\"field\":\"x\"}]");
  json_object_set_new(in, "ops", J(ops));
  return w_req(r0, arr(in, NULL));
}

static void gen_push(void) {
  w_rep a = W.a, b = W.b, c, x;
  json_t *log = W.log;
  char *big;

  w_rep_init(&c, 0xc4);
  clear_dir("push");

  x = a;
  push_ok("a5-set", &a,
          arr(w_intent(&x, W_HLC(10), "notes", "n1", W.v_n1, "edit",
                       "[{\"kind\":\"set\",\"field\":\"title\",\"value\":"
                       "\"D\",\"base_value\":\"B\"}]"),
              NULL));
  /* Intents of one request are made one statement at a time: the order
   * in which a call's arguments are evaluated is unspecified. */
  x = a;
  {
    json_t *i1 = w_intent(&x, W_HLC(10), "tasks", "t1", W.v_t1, NULL,
                          "[{\"kind\":\"incr\",\"field\":\"n\",\"value\":1}]");
    json_t *i2 = w_intent(&x, W_HLC(11), "tasks", "t1", 0, NULL,
                          "[{\"kind\":\"set\",\"field\":\"owner\",\"value\":"
                          "\"al\",\"base_value\":\"ann\"}]");
    push_ok("a5-6-batch", &a, arr(i1, i2, NULL));
  }
  x = a;
  push_ok("a5-revive-deleted-n2", &a,
          arr(w_intent(&x, W_HLC(12), "notes", "n2", 0, NULL,
                       "[{\"kind\":\"set\",\"field\":\"body\",\"value\":"
                       "\"y\"}]"),
              NULL));
  x = c;
  {
    json_t *e[7];
    e[0] = w_intent(&x, W_HLC(20), "notes", "c1", 0, "make",
                   "[{\"kind\":\"create\",\"value\":{\"a\":1,\"list\":[1]}}]");
    e[1] = w_intent(&x, W_HLC(21), "notes", "c1", 0, NULL,
                   "[{\"kind\":\"set\",\"field\":\"a\",\"value\":2,"
                   "\"base_value\":1}]");
    e[2] = w_intent(&x, W_HLC(22), "notes", "c1", 0, NULL,
                   "[{\"kind\":\"unset\",\"field\":\"a\",\"base_value\":2}]");
    e[3] = w_intent(&x, W_HLC(23), "counters", "c1", 0, NULL,
                   "[{\"kind\":\"incr\",\"field\":\"n\",\"value\":7}]");
    e[4] = w_intent(&x, W_HLC(24), "notes", "c1", 0, NULL,
                   "[{\"kind\":\"add\",\"field\":\"list\",\"value\":2}]");
    e[5] = w_intent(&x, W_HLC(25), "notes", "c1", 0, NULL,
                   "[{\"kind\":\"remove\",\"field\":\"list\",\"value\":1}]");
    e[6] = w_intent(&x, W_HLC(26), "notes", "c1", 0, NULL,
                   "[{\"kind\":\"delete\"}]");
    push_ok("c1-7-every-op", &c,
            arr(e[0], e[1], e[2], e[3], e[4], e[5], e[6], NULL));
  }
  {
    char ops[512];
    x = c;
    snprintf(ops, sizeof ops,
             "[{\"kind\":\"resolve\",\"field\":\"title\",\"value\":\"BC\","
             "\"conflict\":\"%s\"}]",
             W.conflict);
    push_ok("c1-resolve", &c,
            arr(w_intent(&x, W_HLC(27), "notes", "n1", W.v_n1, NULL, ops),
                NULL));
    x = b;
    snprintf(ops, sizeof ops,
             "[{\"kind\":\"resolve\",\"field\":\"title\",\"value\":null,"
             "\"unset\":true,\"conflict\":\"%s\"}]",
             W.conflict);
    push_ok("b3-resolve-unset", &b,
            arr(w_intent(&x, W_HLC(28), "notes", "n1", W.v_n1, NULL, ops),
                NULL));
  }
  /* Duplicates: A's preamble again, then a mix of old and new. */
  {
    json_t *dups = json_array();
    for (size_t i = 0; i < 4; i++)
      json_array_append(
          dups, json_array_get(
                    json_object_get(json_array_get(log, i), "intents"), 0));
    push_ok("a1-4-duplicates", &a, dups);
    x = a;
    json_t *mix = arr(
        json_incref(json_array_get(
            json_object_get(json_array_get(log, 2), "intents"), 0)),
        json_incref(json_array_get(
            json_object_get(json_array_get(log, 3), "intents"), 0)),
        w_intent(&x, W_HLC(30), "counters", "c1", W.v_c1, NULL,
                 "[{\"kind\":\"incr\",\"field\":\"n\",\"value\":-2}]"),
        NULL);
    push_ok("a3-5-dups-then-new", &a, mix);
  }
  {
    w_rep xa = a, xc = c;
    json_t *g = arr(
        w_req(&a, arr(w_intent(&xa, W_HLC(31), "notes", "n1", W.v_n1, NULL,
                               "[{\"kind\":\"set\",\"field\":\"n\","
                               "\"value\":9,\"base_value\":1}]"),
                      NULL)),
        w_req(&c, arr(w_intent(&xc, W_HLC(32), "tasks", "t9", 0, NULL,
                               "[{\"kind\":\"create\",\"value\":{}}]"),
                      NULL)),
        NULL);
    json_array_append(g, json_array_get(g, 0)); /* the same job twice */
    put_json("push", "ok-group-a5-c1-a5again.json", g);
    json_decref(g);
  }
  x = c;
  push_ok("c1-incr-on-string-rejected", &c,
          arr(w_intent(&x, W_HLC(33), "notes", "n1", 0, NULL,
                       "[{\"kind\":\"incr\",\"field\":\"title\","
                       "\"value\":1}]"),
              NULL));
  x = c;
  push_ok("c1-resolve-unknown-conflict", &c,
          arr(w_intent(&x, W_HLC(34), "notes", "n1", 0, NULL,
                       "[{\"kind\":\"resolve\",\"field\":\"title\","
                       "\"value\":1,\"conflict\":\"nope\"}]"),
              NULL));
  x = c;
  push_ok("c1-unicode", &c,
          arr(w_intent(&x, W_HLC(35), "n\xc3\xb6tes", "\xc3\xbc/\xc3\x9f \"q\"",
                       0, "",
                       "[{\"kind\":\"set\",\"field\":\"\xc3\xa9moji\","
                       "\"value\":\"\xf0\x9f\x98\x80\\u0001\\n\"}]"),
              NULL));
  x = c;
  push_ok("c1-values", &c,
          arr(w_intent(&x, W_HLC(36), "tasks", "t2", 0, NULL,
                       "[{\"kind\":\"create\",\"value\":{\"nested\":[1,2.5,"
                       "true,null,{\"x\":\"y\"}],\"neg\":-9223372036854775807,"
                       "\"big\":9223372036854775807,\"f\":-0.0001,"
                       "\"e\":1e300}}]"),
              NULL));
  {
    /* Many ops, and names at the 256-byte limit. */
    char *ops = malloc(64 * 50 + 16), *p = ops;
    p += sprintf(p, "[");
    for (int i = 0; i < 50; i++)
      p += sprintf(p, "%s{\"kind\":\"set\",\"field\":\"f%d\",\"value\":%d}",
                   i ? "," : "", i, i);
    sprintf(p, "]");
    x = c;
    push_ok("c1-50-ops", &c,
            arr(w_intent(&x, W_HLC(37), "tasks", "t3", 0, NULL, ops), NULL));
    free(ops);
    char *cn = repeat('c', TT_MAX_NAME), *in = repeat('i', TT_MAX_NAME),
         *fn = repeat('f', TT_MAX_NAME);
    char opsb[TT_MAX_NAME + 64];
    snprintf(opsb, sizeof opsb,
             "[{\"kind\":\"set\",\"field\":\"%s\",\"value\":1}]", fn);
    x = c;
    push_ok("c1-max-names", &c,
            arr(w_intent(&x, W_HLC(38), cn, in, 0, NULL, opsb), NULL));
    free(cn);
    free(in);
    free(fn);
  }
  x = c;
  {
    json_t *req = w_req(
        &c, arr(w_intent(&x, W_HLC(39), "counters", "c9", 0, NULL,
                         "[{\"kind\":\"incr\",\"field\":\"n\",\"value\":"
                         "9223372036854775807},{\"kind\":\"incr\","
                         "\"field\":\"n\",\"value\":1}]"),
                NULL));
    put_json("push", "seed-incr-overflow.json", req);
    json_decref(req);
  }
  x = c;
  {
    json_t *i1 = w_intent(&x, W_HLC(40), "tasks", "t1", 0, NULL,
                          "[{\"kind\":\"delete\"}]");
    json_t *i2 = w_intent(&x, W_HLC(41), "tasks", "t1", 0, NULL,
                          "[{\"kind\":\"create\",\"value\":{\"owner\":\"c\"}}]");
    push_ok("c1-2-delete-then-create", &c, arr(i1, i2, NULL));
  }
  x = c;
  push_ok("c1-far-future-hlc", &c,
          arr(w_intent(&x, (W_NOW + 86400000ull * 365) << 16, "notes", "n1",
                       0, NULL,
                       "[{\"kind\":\"set\",\"field\":\"n\",\"value\":3}]"),
              NULL));

  /* ---- refusals ---- */
  push_bad("hash-zero", mutated(&a, "hash",
                                "\"00000000000000000000000000000000000000000"
                                "00000000000000000000000\""));
  {
    w_rep g = a;
    json_t *skip = w_intent(&g, W_HLC(52), "notes", "n1", 0, NULL,
                            "[{\"kind\":\"set\",\"field\":\"n\",\"value\":1}]");
    json_decref(skip);
    push_bad("gap-seq6",
             w_req(&a, arr(w_intent(&g, W_HLC(53), "notes", "n1", 0, NULL,
                                    "[{\"kind\":\"set\",\"field\":\"n\","
                                    "\"value\":2}]"),
                           NULL)));
    g = a;
    g.last[0] ^= 1;
    push_bad("chain-wrong-prev",
             w_req(&a, arr(w_intent(&g, W_HLC(54), "notes", "n1", 0, NULL,
                                    "[{\"kind\":\"set\",\"field\":\"n\","
                                    "\"value\":2}]"),
                           NULL)));
    g = a;
    json_t *i5 = w_intent(&g, W_HLC(55), "notes", "n1", 0, NULL,
                          "[{\"kind\":\"set\",\"field\":\"n\",\"value\":2}]");
    g.last[3] ^= 0x40;
    json_t *i6 = w_intent(&g, W_HLC(56), "notes", "n1", 0, NULL,
                          "[{\"kind\":\"set\",\"field\":\"n\",\"value\":3}]");
    push_bad("chain-inside-request", w_req(&a, arr(i5, i6, NULL)));
    g = c;
    json_t *c1 = w_intent(&g, W_HLC(57), "notes", "q", 0, NULL,
                          "[{\"kind\":\"delete\"}]");
    json_t *c2 = w_intent(&g, W_HLC(58), "notes", "q", 0, NULL,
                          "[{\"kind\":\"delete\"}]");
    json_t *c3 = w_intent(&g, W_HLC(59), "notes", "q", 0, NULL,
                          "[{\"kind\":\"delete\"}]");
    json_decref(c2);
    push_bad("seq-not-contiguous", w_req(&c, arr(c1, c3, NULL)));
    g = a;
    push_bad("replica-mismatch",
             w_req(&c, arr(w_intent(&g, W_HLC(60), "notes", "n1", 0, NULL,
                                    "[{\"kind\":\"delete\"}]"),
                           NULL)));
  }
  {
    json_t *r = mutated(&a, NULL, NULL);
    json_object_set_new(r, "v", json_integer(2));
    push_bad("version-2", r);
    r = mutated(&a, NULL, NULL);
    json_object_del(r, "v");
    push_bad("version-missing", r);
    r = mutated(&a, NULL, NULL);
    json_object_set_new(r, "v", json_string("1"));
    push_bad("version-string", r);
    r = mutated(&a, NULL, NULL);
    json_object_set_new(r, "replica", json_string("a1a1"));
    push_bad("replica-short", r);
    r = mutated(&a, NULL, NULL);
    json_object_set_new(r, "replica",
                        json_string("zz" "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1"));
    push_bad("replica-not-hex", r);
    r = mutated(&a, NULL, NULL);
    json_object_del(r, "intents");
    push_bad("intents-missing", r);
    r = mutated(&a, NULL, NULL);
    json_object_set_new(r, "intents", json_array());
    push_bad("intents-empty", r);
    r = mutated(&a, NULL, NULL);
    json_object_set_new(r, "intents", json_object());
    push_bad("intents-object", r);
  }
  push_bad("seq-zero", mutated(&a, "seq", "0"));
  push_bad("seq-negative", mutated(&a, "seq", "-5"));
  push_bad("seq-string", mutated(&a, "seq", "\"5\""));
  push_bad("unknown-key", mutated(&a, "extra", "1"));
  push_bad("client-missing", mutated(&a, "client", NULL));
  push_bad("prev-short", mutated(&a, "prev", "\"abcd\""));
  push_bad("hlc-negative", mutated(&a, "hlc", "-1"));
  push_bad("hlc-float", mutated(&a, "hlc", "1.5"));
  push_bad("schema-too-big", mutated(&a, "schema", "4294967296"));
  push_bad("base-negative", mutated(&a, "base", "-1"));
  push_bad("coll-empty", mutated(&a, "coll", "\"\""));
  push_bad("id-with-nul", mutated(&a, "id", "\"n\\u0000x\""));
  {
    char *q = malloc(TT_MAX_LABEL + 8);
    big = repeat('x', TT_MAX_NAME + 1);
    snprintf(q, TT_MAX_LABEL + 8, "\"%s\"", big);
    push_bad("coll-over-max-name", mutated(&a, "coll", q));
    free(big);
    big = repeat('x', TT_MAX_LABEL + 1);
    snprintf(q, TT_MAX_LABEL + 8, "\"%s\"", big);
    push_bad("label-over-max", mutated(&a, "label", q));
    free(q);
  }
  push_bad("label-number", mutated(&a, "label", "7"));
  push_bad("ops-empty", mutated(&a, "ops", "[]"));
  push_bad("ops-object", mutated(&a, "ops", "{}"));
  push_bad("op-unknown-kind", op_req(&a, "[{\"kind\":\"rename\",\"field\":\"a\"}]"));
  push_bad("op-kind-missing", op_req(&a, "[{\"field\":\"a\"}]"));
  push_bad("op-not-object", op_req(&a, "[1]"));
  push_bad("op-unknown-key", op_req(&a, "[{\"kind\":\"unset\",\"field\":\"a\",\"x\":1}]"));
  push_bad("op-incr-float", op_req(&a, "[{\"kind\":\"incr\",\"field\":\"a\",\"value\":1.5}]"));
  push_bad("op-incr-no-value", op_req(&a, "[{\"kind\":\"incr\",\"field\":\"a\"}]"));
  push_bad("op-create-array", op_req(&a, "[{\"kind\":\"create\",\"value\":[1]}]"));
  push_bad("op-create-with-field", op_req(&a, "[{\"kind\":\"create\",\"field\":\"a\",\"value\":{}}]"));
  push_bad("op-delete-with-value", op_req(&a, "[{\"kind\":\"delete\",\"value\":1}]"));
  push_bad("op-set-no-field", op_req(&a, "[{\"kind\":\"set\",\"value\":1}]"));
  push_bad("op-field-empty", op_req(&a, "[{\"kind\":\"set\",\"field\":\"\",\"value\":1}]"));
  push_bad("op-resolve-no-conflict", op_req(&a, "[{\"kind\":\"resolve\",\"field\":\"a\",\"value\":1}]"));
  push_bad("op-resolve-unset-false", op_req(&a, "[{\"kind\":\"resolve\",\"field\":\"a\",\"value\":null,\"unset\":false,\"conflict\":\"c\"}]"));
  push_bad("op-resolve-unset-with-value", op_req(&a, "[{\"kind\":\"resolve\",\"field\":\"a\",\"value\":1,\"unset\":true,\"conflict\":\"c\"}]"));
  push_bad("op-unset-on-set", op_req(&a, "[{\"kind\":\"set\",\"field\":\"a\",\"value\":1,\"unset\":true}]"));
  push_bad("op-conflict-on-set", op_req(&a, "[{\"kind\":\"set\",\"field\":\"a\",\"value\":1,\"conflict\":\"c\"}]"));
  {
    /* 1025 ops: over TT_MAX_OPS. */
    size_t cap = 1025 * 40 + 4;
    char *ops = malloc(cap), *p = ops;
    p += sprintf(p, "[");
    for (int i = 0; i < 1025; i++)
      p += sprintf(p, "%s{\"kind\":\"unset\",\"field\":\"f\"}", i ? "," : "");
    sprintf(p, "]");
    push_bad("ops-1025", op_req(&a, ops));
    free(ops);
  }
  free(big);
  put_text("push", "bad-not-json.json", "{\"v\":1,\"replica\":");
  put_text("push", "bad-string.json", "\"push\"");
  put_text("push", "bad-array-of-numbers.json", "[1,2]");
  put_text("push", "bad-null.json", "null");
  {
    json_t *g = arr(mutated(&a, "seq", "0"), mutated(&c, "label", "\"x\""),
                    NULL);
    put_json("push", "bad-group-all-refused.json", g);
    json_decref(g);
  }
}

/* ---- pull ----------------------------------------------------------------- */

static void pull_file(const char *name, const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  put_text("pull", name, buf);
}

static void gen_pull(void) {
  const char *R = W.a.hex;
  json_t *req, *resp;
  int status;
  uint64_t head[W_PARTS];
  char resume_req[512] = "";

  clear_dir("pull");
  /* Walk every page to find the heads, keeping the first page's
   * continuation. */
  req = J("{\"v\":1,\"replica\":\"a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1\","
          "\"cursor\":[]}");
  for (int page = 0;; page++) {
    if (tt_server_pull(W.srv, req, &status, &resp) || status != 200)
      FF_FAIL("gen pull");
    const json_t *c = json_object_get(resp, "cursor");
    const json_t *r = json_object_get(resp, "resume");
    for (unsigned p = 0; p < W_PARTS; p++)
      head[p] = (uint64_t)json_integer_value(json_array_get(c, p));
    if (!json_is_true(json_object_get(resp, "more"))) {
      json_decref(resp);
      break;
    }
    if (page == 0)
      snprintf(resume_req, sizeof resume_req,
               "{\"v\":1,\"replica\":\"%s\",\"cursor\":[%lld,%lld],"
               "\"resume\":[%lld,%lld]}",
               R, (long long)json_integer_value(json_array_get(c, 0)),
               (long long)json_integer_value(json_array_get(c, 1)),
               (long long)json_integer_value(json_array_get(r, 0)),
               (long long)json_integer_value(json_array_get(r, 1)));
    json_object_set(req, "cursor", json_object_get(resp, "cursor"));
    json_object_set(req, "resume", json_object_get(resp, "resume"));
    json_decref(resp);
  }
  json_decref(req);

  pull_file("ok-bootstrap.json",
            "{\"v\":1,\"replica\":\"%s\",\"cursor\":[],\"limit\":5000,"
            "\"wait_ms\":0}", R);
  pull_file("ok-no-cursor.json", "{\"v\":1,\"replica\":\"%s\"}", R);
  pull_file("ok-limit-1.json",
            "{\"v\":1,\"replica\":\"%s\",\"cursor\":[],\"limit\":1}", R);
  pull_file("ok-limit-huge.json",
            "{\"v\":1,\"replica\":\"%s\",\"limit\":99999999}", R);
  pull_file("ok-mid.json", "{\"v\":1,\"replica\":\"%s\",\"cursor\":[1,1]}",
            R);
  pull_file("ok-head.json",
            "{\"v\":1,\"replica\":\"%s\",\"cursor\":[%llu,%llu]}", R,
            (unsigned long long)head[0], (unsigned long long)head[1]);
  pull_file("ok-wait.json",
            "{\"v\":1,\"replica\":\"%s\",\"cursor\":[0,0],\"wait_ms\":60000}",
            R);
  if (resume_req[0])
    put_text("pull", "ok-resume.json", resume_req);
  pull_file("ok-resume-at-head.json",
            "{\"v\":1,\"replica\":\"%s\",\"cursor\":[0,0],"
            "\"resume\":[%llu,%llu]}",
            R, (unsigned long long)head[0], (unsigned long long)head[1]);
  pull_file("bad-version.json", "{\"v\":0,\"replica\":\"%s\"}", R);
  pull_file("bad-replica-missing.json", "{\"v\":1,\"cursor\":[]}");
  pull_file("bad-cursor-one-partition.json",
            "{\"v\":1,\"replica\":\"%s\",\"cursor\":[0]}", R);
  pull_file("bad-cursor-three.json",
            "{\"v\":1,\"replica\":\"%s\",\"cursor\":[0,0,0]}", R);
  pull_file("bad-cursor-ahead.json",
            "{\"v\":1,\"replica\":\"%s\",\"cursor\":[%llu,0]}", R,
            (unsigned long long)head[0] + 1);
  pull_file("bad-cursor-negative.json",
            "{\"v\":1,\"replica\":\"%s\",\"cursor\":[-1,0]}", R);
  pull_file("bad-cursor-float.json",
            "{\"v\":1,\"replica\":\"%s\",\"cursor\":[1.0,0]}", R);
  pull_file("bad-cursor-string.json",
            "{\"v\":1,\"replica\":\"%s\",\"cursor\":\"[]\"}", R);
  pull_file("bad-limit-zero.json",
            "{\"v\":1,\"replica\":\"%s\",\"limit\":0}", R);
  pull_file("bad-limit-string.json",
            "{\"v\":1,\"replica\":\"%s\",\"limit\":\"5\"}", R);
  pull_file("bad-wait-negative.json",
            "{\"v\":1,\"replica\":\"%s\",\"wait_ms\":-1}", R);
  pull_file("bad-resume-below-cursor.json",
            "{\"v\":1,\"replica\":\"%s\",\"cursor\":[1,1],"
            "\"resume\":[0,1]}", R);
  pull_file("bad-resume-ahead.json",
            "{\"v\":1,\"replica\":\"%s\",\"cursor\":[0,0],"
            "\"resume\":[0,%llu]}", R, (unsigned long long)head[1] + 1);
  pull_file("bad-resume-short.json",
            "{\"v\":1,\"replica\":\"%s\",\"cursor\":[0,0],\"resume\":[0]}",
            R);
  pull_file("bad-not-object.json", "[{\"v\":1}]");
  pull_file("bad-not-json.json", "{\"v\":1,");
}

/* ---- intent, config ------------------------------------------------------- */

static void gen_intent(void) {
  const char *k;
  json_t *v;
  const char *pd = "\"0000000000000000000000000000000000000000000000000000000000000000\"";
  char buf[2048];

  clear_dir("intent");
  json_object_foreach(intent_seeds, k, v) put_json("intent", k, v);
  struct {
    const char *name, *key, *val;
  } bad[] = {
      {"bad-seq-zero.json", "seq", "0"},
      {"bad-unknown-key.json", "extra", "1"},
      {"bad-prev-short.json", "prev", "\"00\""},
      {"bad-prev-not-hex.json", "prev", "\"zz00000000000000000000000000000000000000000000000000000000000000\""},
      {"bad-client-upper-len.json", "client", "\"A1\""},
      {"bad-id-with-nul.json", "id", "\"a\\u0000b\""},
      {"bad-hlc-real.json", "hlc", "1e30"},
      {"bad-ops-not-array.json", "ops", "{\"kind\":\"delete\"}"},
      {"bad-ops-op-null.json", "ops", "[null]"},
      {"bad-ops-resolve-missing-field.json", "ops", "[{\"kind\":\"resolve\",\"value\":1,\"conflict\":\"c\"}]"},
      {"bad-ops-add-no-value.json", "ops", "[{\"kind\":\"add\",\"field\":\"a\"}]"},
      {"bad-ops-kind-number.json", "ops", "[{\"kind\":3}]"},
      {"bad-ops-kind-with-nul.json", "ops", "[{\"kind\":\"set\\u0000\",\"field\":\"a\",\"value\":1}]"},
      {"bad-label-object.json", "label", "{}"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    snprintf(buf, sizeof buf,
             "{\"client\":\"c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4\",\"seq\":1,"
             "\"prev\":%s,\"hash\":%s,\"hlc\":1,\"schema\":0,\"coll\":\"c\","
             "\"id\":\"i\",\"base\":0,\"ops\":[{\"kind\":\"delete\"}]}",
             pd, pd);
    json_t *j = J(buf);
    json_object_set_new(j, bad[i].key, J(bad[i].val));
    put_json("intent", bad[i].name, j);
    json_decref(j);
  }
  snprintf(buf, sizeof buf,
           "{\"client\":\"c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4\",\"seq\":1,"
           "\"prev\":%s,\"hash\":%s,\"hlc\":1,\"schema\":0,\"coll\":\"c\","
           "\"id\":\"i\",\"base\":0,\"ops\":[{\"kind\":\"delete\"}]}",
           pd, pd);
  put_text("intent", "seed-wrong-hash.json", buf);
  put_text("intent", "bad-array.json", "[]");
  put_text("intent", "bad-not-json.json", "{\"seq\":");
}

static void gen_config(void) {
  clear_dir("config");
  put_text("config", "ok-world.json", W_CONFIG);
  put_text("config", "ok-empty.json", "");
  put_text("config", "ok-empty-object.json", "{}");
  put_text("config", "ok-no-collections.json", "{\"collections\":{}}");
  put_text("config", "ok-every-policy.json",
           "{\"collections\":{\"a\":{\"policy\":\"lww\"},"
           "\"b\":{\"policy\":\"server-wins\"},\"c\":{\"policy\":"
           "\"client-wins\"},\"d\":{\"policy\":\"manual\",\"fields\":"
           "{\"x\":{\"policy\":\"lww\"},\"y\":{\"policy\":\"server-wins\"},"
           "\"z\":{\"policy\":\"client-wins\"}}},\"e\":{},"
           "\"f\":{\"fields\":{}}}}");
  put_text("config", "ok-unicode-names.json",
           "{\"collections\":{\"n\xc3\xb6tes\":{\"fields\":{\"\xc3\xa9\":"
           "{\"policy\":\"manual\"}}}}}");
  put_text("config", "bad-unknown-policy.json",
           "{\"collections\":{\"a\":{\"policy\":\"newest\"}}}");
  put_text("config", "bad-unknown-top-key.json",
           "{\"collections\":{},\"x\":1}");
  put_text("config", "bad-unknown-coll-key.json",
           "{\"collections\":{\"a\":{\"tier\":\"strict\"}}}");
  put_text("config", "bad-fields-array.json",
           "{\"collections\":{\"a\":{\"fields\":[]}}}");
  put_text("config", "bad-field-no-policy.json",
           "{\"collections\":{\"a\":{\"fields\":{\"f\":{}}}}}");
  put_text("config", "bad-field-extra-key.json",
           "{\"collections\":{\"a\":{\"fields\":{\"f\":{\"policy\":\"lww\","
           "\"x\":1}}}}}");
  put_text("config", "bad-policy-number.json",
           "{\"collections\":{\"a\":{\"policy\":1}}}");
  put_text("config", "bad-collections-array.json", "{\"collections\":[]}");
  put_text("config", "bad-empty-coll-name.json",
           "{\"collections\":{\"\":{}}}");
  put_text("config", "bad-duplicate-keys.json",
           "{\"collections\":{\"a\":{},\"a\":{}}}");
  put_text("config", "bad-array.json", "[]");
  put_text("config", "bad-not-json.json", "{\"collections\":");
  put_text("config", "bad-policy-case.json",
           "{\"collections\":{\"a\":{\"policy\":\"LWW\"}}}");
}

/* ---- stored records ------------------------------------------------------- */

typedef struct {
  const char *target;
  const char *prefix;
  int sel; /* -1: no selector byte */
  size_t max, n;
  int truncate; /* also write bad- copies cut by this many bytes (0: no) */
  size_t keep;  /* or cut to this length, when truncate < 0 */
  size_t klen;  /* only entries with keys of this length (0: all) */
} dump_ctx;

static int dump_cb(void *vctx, tt_bytes key, tt_bytes val) {
  dump_ctx *c = vctx;
  char name[128];
  if (c->klen && key.len != c->klen)
    return 0;
  if (c->n >= c->max)
    return 1;
  snprintf(name, sizeof name, "ok-%s-%zu", c->prefix, c->n);
  if (c->sel < 0)
    put_bytes(c->target, name, val.data, val.len);
  else
    put_sel(c->target, name, (uint8_t)c->sel, val.data, val.len);
  if (c->truncate) {
    size_t len = c->truncate > 0 ? val.len - (size_t)c->truncate : c->keep;
    snprintf(name, sizeof name, "bad-%s-%zu-cut", c->prefix, c->n);
    if (c->sel < 0)
      put_bytes(c->target, name, val.data, len);
    else
      put_sel(c->target, name, (uint8_t)c->sel, val.data, len);
  }
  c->n++;
  return 0;
}

static void dump_table(tt_store *st, tt_table tab, dump_ctx c) {
  tt_txn *t = NULL;
  tt_bytes all = {NULL, 0};
  if (tt_txn_begin(st, 0, 0, &t))
    FF_FAIL("begin");
  if (tt_scan(t, tab, all, dump_cb, &c) < 0)
    FF_FAIL("scan");
  tt_abort(t);
}

static void gen_doc(void) {
  clear_dir("doc");
  dump_table(W.st, TT_TABLE_DOCS, (dump_ctx){"doc", "doc", -1, 8, 0, 1, 0, 0});
  /* Corruptions of the first document. */
  tt_txn *t = NULL;
  struct {
    uint8_t b[4096];
    size_t n;
  } f = {{0}, 0};
  if (tt_txn_begin(W.st, 0, 0, &t))
    FF_FAIL("begin");
  {
    char dk[TT_SRV_DOCKEY_MAX];
    size_t kl = tt_srv_doc_key(dk, "notes", "n1");
    tt_bytes key = {dk, kl}, v;
    if (tt_get(t, TT_TABLE_DOCS, key, &v) || v.len > sizeof f.b)
      FF_FAIL("n1");
    memcpy(f.b, v.data, v.len);
    f.n = v.len;
  }
  tt_abort(t);
  uint8_t b[4096 + 1];
  memcpy(b, f.b, f.n);
  b[0] ^= 0xff;
  put_bytes("doc", "bad-magic", b, f.n);
  memcpy(b, f.b, f.n);
  b[2] = 99;
  put_bytes("doc", "bad-format-version", b, f.n);
  memcpy(b, f.b, f.n);
  b[3] = 0x80;
  put_bytes("doc", "bad-flags", b, f.n);
  memcpy(b, f.b, f.n);
  b[f.n] = 0;
  put_bytes("doc", "bad-trailing-byte", b, f.n + 1);
  put_bytes("doc", "bad-empty", b, 0);
  put_bytes("doc", "bad-header-only", f.b, 8);
}

static void put_rec(const char *name, uint8_t sel, const void *d, size_t n) {
  put_sel("records", name, sel, d, n);
}

static void gen_records(tt_store *rst) {
  clear_dir("records");
  dump_table(W.st, TT_TABLE_REPLICAS,
             (dump_ctx){"records", "srv-replica", 0, 2, 0, 1, 0, TT_ID_LEN});
  dump_table(W.st, TT_TABLE_REPLICAS,
             (dump_ctx){"records", "srv-dedupe", 13, 2, 0, 1, 0,
                        TT_SRV_DEDUPE_KEY_LEN});
  dump_table(W.st, TT_TABLE_OUTCOMES,
             (dump_ctx){"records", "srv-outcome", 1, 6, 0, 1, 0, 0});
  dump_table(W.st, TT_TABLE_CONFLICTS,
             (dump_ctx){"records", "srv-conflict", 2, 2, 0, 1, 0, 0});
  dump_table(W.st, TT_TABLE_AUDIT,
             (dump_ctx){"records", "srv-audit", 2, 2, 0, 1, 0, 0});
  dump_table(rst, TT_TABLE_DOCS,
             (dump_ctx){"records", "r-doc", 3, 4, 0, 1, 0, 0});
  dump_table(rst, TT_TABLE_VIEW,
             (dump_ctx){"records", "r-view", 4, 4, 0, 1, 0, 0});
  dump_table(rst, TT_TABLE_OUTBOX,
             (dump_ctx){"records", "r-outbox", 5, 3, 0, -1, 15, 0});
  put_rec("ok-r-cursor", 6, "[3,2]", 5);
  put_rec("ok-r-cursor-empty", 6, "[]", 2);
  put_rec("bad-r-cursor-negative", 6, "[-1]", 4);
  put_rec("bad-r-cursor-object", 6, "{}", 2);
  put_rec("bad-r-cursor-float", 6, "[1.5]", 5);
  put_rec("ok-r-dockey", 7, "notes\0n1", 8);
  put_rec("bad-r-dockey-no-sep", 7, "notes", 5);
  put_rec("bad-r-dockey-empty-coll", 7, "\0n1", 3);
  put_rec("bad-r-dockey-two-seps", 7, "a\0b\0c", 5);
  {
    tt_txn *t = NULL;
    tt_bytes v;
    tt_bytes k = {"chain", 5};
    if (tt_txn_begin(rst, 0, 0, &t) || tt_get(t, TT_TABLE_META, k, &v))
      FF_FAIL("chain");
    put_rec("ok-r-chain", 8, v.data, v.len);
    put_rec("bad-r-chain-cut", 8, v.data, v.len - 1);
    uint8_t bad[64];
    memcpy(bad, v.data, v.len);
    memset(bad, 0, 8); /* next_seq 0 */
    put_rec("bad-r-chain-next-zero", 8, bad, v.len);
    tt_bytes ck = {"cursor", 6};
    if (tt_get(t, TT_TABLE_META, ck, &v))
      FF_FAIL("cursor");
    put_rec("ok-r-meta-cursor", 10, v.data, v.len);
    put_rec("bad-r-meta-cursor-cut", 10, v.data, v.len - 1);
    tt_abort(t);
  }
  {
    uint8_t s[13] = {0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 5};
    put_rec("ok-r-status", 9, s, 13);
    put_rec("bad-r-status-cut", 9, s, 12);
    s[4] = 2;
    put_rec("bad-r-status-flag", 9, s, 13);
  }
  {
    uint8_t q[8] = {0, 0, 0, 0, 0, 0, 0, 9};
    put_rec("ok-srv-seq", 11, q, 8);
    put_rec("bad-srv-seq-cut", 11, q, 7);
  }
  put_rec("seed-view-pair", 12, "\0\0\0\0\0\0\0\0\x03{}\0{\"a\":1}", 20);
  put_rec("bad-srv-json-array", 2, "[1]", 3);
  put_rec("bad-srv-outcome-kind", 1,
          "\x01\x09\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 17);
}

/* ---- codec ---------------------------------------------------------------- */

static void gen_codec(void) {
  char *body, *z = NULL, *z2 = NULL;
  size_t len, zl, zl2;

  clear_dir("codec");
  body = json_dumps(json_array_get(push_bodies, 0), JSON_COMPACT);
  len = strlen(body);
  /* selector: low 2 bits the case, the rest the bound index
   * (0, 1, 64, 4096, 1 MiB). */
  put_sel("codec", "seed-identity-push-1mib", (4 << 2) | 0, body, len);
  put_sel("codec", "seed-identity-push-bound-64", (2 << 2) | 0, body, len);
  if (tt_codec_compress(body, len, &z, &zl))
    FF_FAIL("compress");
  put_sel("codec", "seed-zstd-push-1mib", (4 << 2) | 1, z, zl);
  put_sel("codec", "seed-zstd-push-bound-64", (2 << 2) | 1, z, zl);
  put_sel("codec", "seed-zstd-push-truncated", (4 << 2) | 1, z, zl / 2);
  {
    /* Two frames back to back, and a frame with a flipped byte. */
    char *two = malloc(2 * zl);
    memcpy(two, z, zl);
    memcpy(two + zl, z, zl);
    put_sel("codec", "seed-zstd-two-frames", (4 << 2) | 1, two, 2 * zl);
    memcpy(two, z, zl);
    two[zl / 2] ^= 0x55;
    put_sel("codec", "seed-zstd-flipped", (4 << 2) | 1, two, zl);
    free(two);
  }
  {
    /* Highly compressible: a small frame that expands past small bounds. */
    char *zeros = calloc(1, 200000);
    if (tt_codec_compress(zeros, 200000, &z2, &zl2))
      FF_FAIL("compress");
    put_sel("codec", "seed-zstd-bomb-bound-4096", (3 << 2) | 1, z2, zl2);
    free(zeros);
    free(z2);
  }
  {
    /* A skippable frame (magic 0x184D2A50, 4 bytes of payload). */
    static const uint8_t skip[] = {0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0,
                                   1,    2,    3,    4};
    put_sel("codec", "seed-zstd-skippable", (4 << 2) | 1, skip, sizeof skip);
  }
  put_sel("codec", "seed-zstd-empty", (4 << 2) | 1, "", 0);
  put_sel("codec", "seed-identity-not-object", (4 << 2) | 0, "[1,2]", 5);
  put_sel("codec", "seed-identity-dup-keys", (4 << 2) | 0,
          "{\"a\":1,\"a\":2}", 13);
  static const char *const hdrs[] = {"zstd", " ZSTD ", "identity", "",
                                     "gzip", "gzip, zstd;q=0.5",
                                     "zstd;q=0", "br;q=1, zstd ; q=0.001",
                                     "zstd,", ",,,"};
  for (size_t i = 0; i < sizeof hdrs / sizeof hdrs[0]; i++) {
    char name[64];
    snprintf(name, sizeof name, "seed-header-%zu", i);
    put_sel("codec", name, 2, hdrs[i], strlen(hdrs[i]));
  }
  put_sel("codec", "seed-roundtrip-push", 3, body, len);
  put_sel("codec", "seed-roundtrip-empty", 3, "", 0);
  free(z);
  free(body);
}

/* ---- replica responses ---------------------------------------------------- */

static void rr(const char *name, const char *text) {
  put_text("replica_resp", name, text);
}

static void gen_replica_resp(void) {
  clear_dir("replica_resp");
  rr("ok-push-every-outcome",
     "push 200\n{\"v\":1,\"acked\":6,\"outcomes\":["
     "{\"seq\":2,\"outcome\":\"merged\",\"rule\":\"counter\",\"p\":0,"
     "\"commit\":5},"
     "{\"seq\":3,\"outcome\":\"applied\",\"p\":1,\"commit\":3},"
     "{\"seq\":4,\"outcome\":\"conflict\",\"p\":1,\"commit\":2,\"conflict\":"
     "{\"id\":\"c3-4-0\",\"field\":\"_doc\",\"theirs\":{\"body\":\"x\"},"
     "\"ours\":null}},"
     "{\"seq\":5,\"outcome\":\"rejected\",\"reason\":\"not an array\"},"
     "{\"seq\":6,\"outcome\":\"applied\",\"p\":0,\"commit\":6}]}");
  rr("ok-push-partial",
     "push 200\n{\"v\":1,\"acked\":3,\"outcomes\":["
     "{\"seq\":2,\"outcome\":\"applied\",\"p\":0,\"commit\":5},"
     "{\"seq\":3,\"outcome\":\"applied\",\"p\":1,\"commit\":3}]}");
  rr("ok-push-duplicate-seq1",
     "push 200\n{\"v\":1,\"acked\":2,\"outcomes\":["
     "{\"seq\":1,\"outcome\":\"applied\",\"p\":0,\"commit\":4,"
     "\"duplicate\":true},"
     "{\"seq\":2,\"outcome\":\"applied\",\"p\":0,\"commit\":5}]}");
  rr("ok-push-out-of-range",
     "push 200\n{\"v\":1,\"acked\":99,\"outcomes\":["
     "{\"seq\":99,\"outcome\":\"applied\",\"p\":0,\"commit\":5}]}");
  rr("ok-push-no-outcomes", "push 200\n{\"v\":1,\"acked\":1,\"outcomes\":[]}");
  rr("ok-push-all-rejected",
     "push 200\n{\"v\":1,\"acked\":6,\"outcomes\":["
     "{\"seq\":2,\"outcome\":\"rejected\"},"
     "{\"seq\":3,\"outcome\":\"rejected\",\"reason\":\"r\"},"
     "{\"seq\":4,\"outcome\":\"rejected\",\"reason\":\"r\"},"
     "{\"seq\":5,\"outcome\":\"rejected\",\"reason\":\"r\"},"
     "{\"seq\":6,\"outcome\":\"rejected\",\"reason\":\"r\"}]}");
  rr("ok-push-conflict-on-field",
     "push 200\n{\"v\":1,\"acked\":6,\"outcomes\":["
     "{\"seq\":6,\"outcome\":\"conflict\",\"p\":0,\"commit\":3,\"conflict\":"
     "{\"id\":\"x-6-0\",\"field\":\"owner\",\"base\":\"ann\",\"theirs\":"
     "\"bob\",\"ours\":\"cy\"}}]}");
  rr("ok-push-duplicate-outcome",
     "push 200\n{\"v\":1,\"acked\":2,\"outcomes\":["
     "{\"seq\":2,\"outcome\":\"duplicate\",\"duplicate\":true}]}");
  rr("bad-push-409-gap",
     "push 409\n{\"v\":1,\"error\":\"gap\",\"expected\":2,\"message\":\"m\"}");
  rr("bad-push-409-chain",
     "push 409\n{\"v\":1,\"error\":\"chain\",\"message\":\"m\"}");
  rr("bad-push-400", "push 400\n{\"v\":1,\"error\":\"invalid\"}");
  rr("bad-push-413", "push 413\n{\"v\":1,\"error\":\"too_big\"}");
  rr("bad-push-500", "push 500\n{\"v\":1,\"error\":\"internal\"}");
  rr("bad-push-503", "push 503\n{\"v\":1,\"error\":\"unavailable\"}");
  rr("bad-push-507", "push 507\n{\"v\":1,\"error\":\"full\"}");
  rr("bad-push-302-no-body", "push 302\n");
  rr("bad-push-0", "push 0\n{}");
  rr("bad-push-not-json", "push 200\n{\"v\":1,\"outcomes\":[");
  rr("bad-push-array", "push 200\n[]");
  rr("bad-push-no-outcomes-key", "push 200\n{\"v\":1,\"acked\":3}");
  rr("bad-push-outcomes-object", "push 200\n{\"v\":1,\"outcomes\":{}}");
  rr("bad-push-outcome-number", "push 200\n{\"v\":1,\"outcomes\":[2]}");
  rr("bad-push-seq-missing",
     "push 200\n{\"v\":1,\"outcomes\":[{\"outcome\":\"applied\",\"p\":0,"
     "\"commit\":1}]}");
  rr("bad-push-seq-negative",
     "push 200\n{\"v\":1,\"outcomes\":[{\"seq\":-2,\"outcome\":\"applied\","
     "\"p\":0,\"commit\":1}]}");
  rr("bad-push-seq-string",
     "push 200\n{\"v\":1,\"outcomes\":[{\"seq\":\"2\",\"outcome\":"
     "\"applied\",\"p\":0,\"commit\":1}]}");
  rr("bad-push-unknown-outcome",
     "push 200\n{\"v\":1,\"outcomes\":[{\"seq\":2,\"outcome\":\"won\","
     "\"p\":0,\"commit\":1}]}");
  rr("bad-push-commit-missing",
     "push 200\n{\"v\":1,\"outcomes\":[{\"seq\":2,\"outcome\":\"applied\","
     "\"p\":0}]}");
  rr("bad-push-p-negative",
     "push 200\n{\"v\":1,\"outcomes\":[{\"seq\":2,\"outcome\":\"applied\","
     "\"p\":-1,\"commit\":1}]}");
  rr("bad-push-p-huge",
     "push 200\n{\"v\":1,\"outcomes\":[{\"seq\":2,\"outcome\":\"applied\","
     "\"p\":4294967296,\"commit\":1}]}");
  rr("bad-push-conflict-not-object",
     "push 200\n{\"v\":1,\"outcomes\":[{\"seq\":2,\"outcome\":\"conflict\","
     "\"p\":0,\"commit\":1,\"conflict\":\"x\"}]}");
  rr("bad-push-conflict-no-id",
     "push 200\n{\"v\":1,\"outcomes\":[{\"seq\":2,\"outcome\":\"conflict\","
     "\"p\":0,\"commit\":1,\"conflict\":{\"field\":\"n\"}}]}");
  rr("bad-push-conflict-empty-field",
     "push 200\n{\"v\":1,\"outcomes\":[{\"seq\":2,\"outcome\":\"conflict\","
     "\"p\":0,\"commit\":1,\"conflict\":{\"id\":\"k\",\"field\":\"\"}}]}");
  rr("bad-push-second-outcome-bad",
     "push 200\n{\"v\":1,\"outcomes\":[{\"seq\":2,\"outcome\":\"applied\","
     "\"p\":0,\"commit\":5},{\"seq\":3,\"outcome\":7}]}");

  rr("ok-pull-sweep-seq1",
     "pull 200\n{\"v\":1,\"cursor\":[4,2],\"more\":false,\"changes\":["
     "{\"coll\":\"notes\",\"id\":\"n1\",\"p\":0,\"version\":4,"
     "\"set\":{\"title\":\"B\"}}]}");
  rr("ok-pull-empty",
     "pull 200\n{\"v\":1,\"cursor\":[3,2],\"more\":false,\"changes\":[]}");
  rr("ok-pull-more",
     "pull 200\n{\"v\":1,\"cursor\":[3,2],\"more\":true,\"resume\":[4,2],"
     "\"changes\":[{\"coll\":\"notes\",\"id\":\"n1\",\"p\":0,\"version\":4,"
     "\"set\":{\"title\":\"Q\"}}]}");
  rr("ok-pull-new-doc",
     "pull 200\n{\"v\":1,\"cursor\":[3,3],\"more\":false,\"changes\":["
     "{\"coll\":\"notes\",\"id\":\"n9\",\"p\":1,\"version\":3,"
     "\"set\":{\"a\":[1,{\"b\":null}]}}]}");
  rr("ok-pull-delete-n1",
     "pull 200\n{\"v\":1,\"cursor\":[5,2],\"more\":false,\"changes\":["
     "{\"coll\":\"notes\",\"id\":\"n1\",\"p\":0,\"version\":5,"
     "\"deleted\":true}]}");
  rr("ok-pull-unset-n",
     "pull 200\n{\"v\":1,\"cursor\":[5,2],\"more\":false,\"changes\":["
     "{\"coll\":\"notes\",\"id\":\"n1\",\"p\":0,\"version\":5,"
     "\"unset\":[\"n\",\"tags\"],\"set\":{\"tags\":\"str\"}}]}");
  rr("ok-pull-type-change",
     "pull 200\n{\"v\":1,\"cursor\":[5,2],\"more\":false,\"changes\":["
     "{\"coll\":\"notes\",\"id\":\"n1\",\"p\":0,\"version\":5,"
     "\"set\":{\"n\":\"one\",\"tags\":{}}}]}");
  rr("ok-pull-no-p",
     "pull 200\n{\"v\":1,\"cursor\":[3,3],\"changes\":["
     "{\"coll\":\"tasks\",\"id\":\"t1\",\"version\":4,\"set\":{\"n\":1}}]}");
  rr("ok-pull-no-changes-key", "pull 200\n{\"v\":1,\"cursor\":[3,2]}");
  rr("ok-pull-revive-t0",
     "pull 200\n{\"v\":1,\"cursor\":[3,4],\"more\":false,\"changes\":["
     "{\"coll\":\"tasks\",\"id\":\"t0\",\"p\":1,\"version\":4,"
     "\"set\":{\"x\":1},\"deleted\":false}]}");
  rr("seed-pull-cursor-three", "pull 200\n{\"v\":1,\"cursor\":[3,2,7]}");
  rr("bad-pull-400-cursor",
     "pull 400\n{\"v\":1,\"error\":\"cursor\",\"message\":\"ahead\"}");
  rr("bad-pull-400", "pull 400\n{\"v\":1,\"error\":\"invalid\"}");
  rr("bad-pull-500", "pull 500\n{\"v\":1,\"error\":\"internal\"}");
  rr("bad-pull-503-no-body", "pull 503\n");
  rr("bad-pull-0", "pull 0\n{\"v\":1}");
  rr("bad-pull-not-json", "pull 200\n{\"v\":1,\"cursor\":[");
  rr("bad-pull-array", "pull 200\n[]");
  rr("bad-pull-no-cursor", "pull 200\n{\"v\":1,\"changes\":[]}");
  rr("bad-pull-cursor-string", "pull 200\n{\"v\":1,\"cursor\":\"[3,2]\"}");
  rr("bad-pull-cursor-negative", "pull 200\n{\"v\":1,\"cursor\":[-3,2]}");
  rr("bad-pull-cursor-float", "pull 200\n{\"v\":1,\"cursor\":[3.0,2]}");
  rr("bad-pull-changes-object",
     "pull 200\n{\"v\":1,\"cursor\":[3,2],\"changes\":{}}");
  rr("bad-pull-more-string",
     "pull 200\n{\"v\":1,\"cursor\":[3,2],\"more\":\"no\"}");
  rr("bad-pull-change-not-object",
     "pull 200\n{\"v\":1,\"cursor\":[3,2],\"changes\":[1]}");
  rr("bad-pull-change-no-coll",
     "pull 200\n{\"v\":1,\"cursor\":[3,2],\"changes\":[{\"id\":\"n1\","
     "\"version\":4}]}");
  rr("bad-pull-change-empty-id",
     "pull 200\n{\"v\":1,\"cursor\":[3,2],\"changes\":[{\"coll\":\"notes\","
     "\"id\":\"\",\"version\":4}]}");
  rr("bad-pull-change-version-negative",
     "pull 200\n{\"v\":1,\"cursor\":[3,2],\"changes\":[{\"coll\":\"notes\","
     "\"id\":\"n1\",\"version\":-4}]}");
  rr("bad-pull-change-version-missing",
     "pull 200\n{\"v\":1,\"cursor\":[3,2],\"changes\":[{\"coll\":\"notes\","
     "\"id\":\"n1\"}]}");
  rr("bad-pull-change-set-array",
     "pull 200\n{\"v\":1,\"cursor\":[3,2],\"changes\":[{\"coll\":\"notes\","
     "\"id\":\"n1\",\"version\":4,\"set\":[1]}]}");
  rr("bad-pull-change-unset-numbers",
     "pull 200\n{\"v\":1,\"cursor\":[3,2],\"changes\":[{\"coll\":\"notes\","
     "\"id\":\"n1\",\"version\":4,\"unset\":[1]}]}");
  rr("bad-pull-change-deleted-string",
     "pull 200\n{\"v\":1,\"cursor\":[3,2],\"changes\":[{\"coll\":\"notes\","
     "\"id\":\"n1\",\"version\":4,\"deleted\":\"yes\"}]}");
  rr("bad-pull-change-p-huge",
     "pull 200\n{\"v\":1,\"cursor\":[3,2],\"changes\":[{\"coll\":\"notes\","
     "\"id\":\"n1\",\"version\":4,\"p\":70000}]}");
  rr("bad-pull-change-field-empty",
     "pull 200\n{\"v\":1,\"cursor\":[3,2],\"changes\":[{\"coll\":\"notes\","
     "\"id\":\"n1\",\"version\":4,\"set\":{\"\":1}}]}");
  rr("bad-pull-second-change-bad",
     "pull 200\n{\"v\":1,\"cursor\":[4,2],\"changes\":[{\"coll\":\"notes\","
     "\"id\":\"n1\",\"p\":0,\"version\":4,\"set\":{\"title\":\"B\"}},"
     "{\"coll\":\"notes\",\"version\":4}]}");
}

/* ---- main ----------------------------------------------------------------- */

/* ---- the JSON reader -------------------------------------------------------- */

/* The flags byte (TT_JSON_ANY 1, TT_JSON_REJECT_DUPLICATES 2,
 * TT_JSON_ALLOW_NUL 4), then the text. No seed has a string that starts
 * with an escape: see fuzz/crashes-found/README.md. */
static void json_seed(const char *name, uint8_t flags, const char *text) {
  put_sel("json", name, flags, text, strlen(text));
}

static void gen_json(void) {
  clear_dir("json");
  json_seed("ok-object", 0,
            "{\"a\":[1,-2.5e-3,true,false,null],\"b\":{\"c\":\"x\\u00e9\\n\"}}");
  json_seed("ok-any-string", 1, "\"a\\uD83D\\uDE00 caf\xc3\xa9\\\"\\t\"");
  json_seed("ok-any-int-min", 1, "-9223372036854775808");
  json_seed("ok-duplicate-last-wins", 0, "{\"a\":1,\"a\":{\"b\":[]}}");
  json_seed("ok-allow-nul", 4, "[\"a\\u0000b\"]");
  json_seed("ok-white-space", 0, " \t\r\n[ 1 , { \"k\" : [ ] } ]\r\n");
  json_seed("ok-reals", 0, "[1e-400,-0.0,4.9e-324,1.7976931348623157e308]");
  json_seed("ok-utf8", 0,
            "[\"x\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf\xf0\x90\x80\x80"
            "\xf4\x8f\xbf\xbf\"]");
  {
    /* TT_JSON_MAX_DEPTH empty arrays; one more is refused. */
    char *open = repeat('[', 2049), *close = repeat(']', 2049), *t;
    size_t n = 2048;
    t = malloc(2 * n + 3);
    memcpy(t, open, n);
    memcpy(t + n, close, n);
    t[2 * n] = 0;
    json_seed("ok-depth-2048", 0, t);
    memcpy(t, open, n + 1);
    memcpy(t + n + 1, close, n + 1);
    t[2 * n + 2] = 0;
    json_seed("bad-depth-2049", 0, t);
    free(t);
    free(open);
    free(close);
  }
  json_seed("bad-scalar-without-any", 6, "1");
  json_seed("bad-duplicate-rejected", 2, "{\"a\":1,\"b\":2,\"a\":3}");
  json_seed("bad-nul-without-allow", 3, "[\"a\\u0000\"]");
  json_seed("bad-nul-in-key", 7, "{\"a\\u0000\":1}");
  json_seed("bad-lone-surrogate", 1, "\"a\\uD800\"");
  json_seed("bad-utf8-overlong", 0, "[\"\xc0\x80\"]");
  json_seed("bad-utf8-surrogate", 0, "[\"\xed\xa0\x80\"]");
  json_seed("bad-utf8-above-10ffff", 0, "[\"\xf4\x90\x80\x80\"]");
  json_seed("bad-too-big-integer", 1, "9223372036854775808");
  json_seed("bad-too-big-negative-integer", 1, "-9223372036854775809");
  json_seed("bad-real-overflow", 0, "[1e400]");
  json_seed("bad-leading-zero", 1, "01");
  json_seed("bad-trailing", 0, "[] x");
  json_seed("bad-truncated", 0, "{\"a\":[1,2");
  json_seed("bad-control-character", 0, "[\"a\x01\"]");
  json_seed("bad-empty", 7, "");
  /* json_loadb takes this one, skipping the NUL byte (fuzz_json.c). */
  put_sel("json", "bad-nul-after-number", 0, "[1\0]", 4);
}

int main(int argc, char **argv) {
  char wdir[64], rdir[64];
  tt_store *rst;
  tt_replica *r = NULL;
  json_t *req = NULL;

  if (argc != 2) {
    fprintf(stderr, "usage: %s OUT_DIR (normally fuzz/corpus)\n", argv[0]);
    return 2;
  }
  OUT = argv[1];
  if (mkdir(OUT, 0755) && errno != EEXIST)
    FF_FAIL("mkdir %s", OUT);
  intent_seeds = json_object();
  push_bodies = json_array();

  W.st = ff_store_new(wdir, "gen");
  W.log = json_array();
  w_build(&W);
  rst = ff_store_new(rdir, "genr");
  rw_build(rst, &r, &req);

  gen_push();
  gen_pull();
  gen_intent();
  gen_config();
  gen_doc();
  gen_records(rst);
  gen_codec();
  gen_replica_resp();
  gen_json();

  json_decref(req);
  tt_replica_close(r);
  tt_store_close(rst);
  ff_rmrf(rdir);
  tt_server_close(W.srv);
  tt_policy_free(W.pol);
  tt_store_close(W.st);
  ff_rmrf(wdir);
  json_decref(W.log);
  json_decref(intent_seeds);
  json_decref(push_bodies);
  printf("%zu files, %zu bytes\n", total_files, total_bytes);
  return 0;
}
