/* fuzz_common.h — what the fuzz targets share: a temporary store directory
 * removed at exit, a fingerprint of a whole store (to prove "changed
 * nothing"), wiping a store back to empty, and the replay harness's
 * expectations.
 *
 * A target that finds a violated property calls FF_FAIL: it prints why and
 * aborts, which libFuzzer records as a crash (with the input saved) and
 * which fails the replay test. */
#ifndef TT_FUZZ_COMMON_H
#define TT_FUZZ_COMMON_H

#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store/store.h"

#define FF_UNUSED __attribute__((unused))

/* Set by replay_main.c to the base name of the file being replayed; NULL
 * (weak, undefined) under libFuzzer. A committed seed named "ok-..." must
 * be accepted and one named "bad-..." refused: the corpus is also a
 * data-driven test. libFuzzer's own finds have hex names and no
 * expectation. */
extern const char *tt_fuzz_input_name __attribute__((weak));

typedef enum { FF_EXPECT_NONE = 0, FF_EXPECT_OK, FF_EXPECT_BAD } ff_expect;

FF_UNUSED static ff_expect ff_expectation(void) {
  const char *n = &tt_fuzz_input_name ? tt_fuzz_input_name : NULL;
  if (!n)
    return FF_EXPECT_NONE;
  if (!strncmp(n, "ok-", 3))
    return FF_EXPECT_OK;
  if (!strncmp(n, "bad-", 4))
    return FF_EXPECT_BAD;
  return FF_EXPECT_NONE;
}

FF_UNUSED static const char *ff_name(void) {
  const char *n = &tt_fuzz_input_name ? tt_fuzz_input_name : NULL;
  return n ? n : "(fuzz input)";
}

/* Directories made by ff_store_new, removed before an abort (which skips
 * atexit) so a failing run leaves nothing in /tmp. */
static char ff_dirs[4][64];

FF_UNUSED static void ff_rmrf(const char *dir);

FF_UNUSED static void ff_drop_dirs(void) {
  for (size_t i = 0; i < sizeof ff_dirs / sizeof ff_dirs[0]; i++)
    if (ff_dirs[i][0]) {
      ff_rmrf(ff_dirs[i]);
      ff_dirs[i][0] = 0;
    }
}

#define FF_FAIL(...)                                                           \
  do {                                                                         \
    fprintf(stderr, "FUZZ PROPERTY VIOLATED (%s:%d) in %s: ", __FILE__,        \
            __LINE__, ff_name());                                              \
    fprintf(stderr, __VA_ARGS__);                                              \
    fputc('\n', stderr);                                                       \
    ff_drop_dirs();                                                            \
    abort();                                                                   \
  } while (0)

#define FF_CHECK(cond, ...)                                                    \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "check failed: %s\n", #cond);                            \
      FF_FAIL(__VA_ARGS__);                                                    \
    }                                                                          \
  } while (0)

/* ---- temporary directories --------------------------------------------- */

static int ff_rm_one(const char *p, const struct stat *sb, int flag,
                     struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(p);
}

static void ff_rmrf(const char *dir) {
  nftw(dir, ff_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh LMDB store (no_sync: nothing here needs durability) in a new
 * directory under /tmp whose path goes to DIR (>= 64 bytes). */
FF_UNUSED static tt_store *ff_store_new(char *dir, const char *tag) {
  char err[256] = "";
  tt_store_opts o = {.map_size = 256u << 20, .no_sync = 1};
  tt_store *st = NULL;
  snprintf(dir, 64, "/tmp/tt_fuzz_%s_XXXXXX", tag);
  if (!mkdtemp(dir))
    FF_FAIL("mkdtemp %s failed", dir);
  for (size_t i = 0; i < sizeof ff_dirs / sizeof ff_dirs[0]; i++)
    if (!ff_dirs[i][0]) {
      snprintf(ff_dirs[i], sizeof ff_dirs[i], "%s", dir);
      break;
    }
  if (tt_store_open_lmdb(dir, &o, &st, err, sizeof err))
    FF_FAIL("store open %s: %s", dir, err);
  return st;
}

/* ---- fingerprint: every key and value of every table --------------------- */

typedef struct {
  uint64_t h;
  uint64_t n;
} ff_print;

static void ff_mix(ff_print *fp, const void *p, size_t len) {
  const uint8_t *b = p;
  uint64_t l = len;
  for (size_t i = 0; i < sizeof l; i++) {
    fp->h ^= (uint8_t)(l >> (8 * i));
    fp->h *= 1099511628211ull;
  }
  for (size_t i = 0; i < len; i++) {
    fp->h ^= b[i];
    fp->h *= 1099511628211ull;
  }
}

static int ff_print_cb(void *ctx, tt_bytes key, tt_bytes val) {
  ff_print *fp = ctx;
  ff_mix(fp, key.data, key.len);
  ff_mix(fp, val.data, val.len);
  fp->n++;
  return 0;
}

/* FNV-1a over (table, key, value) of every entry, in key order. */
FF_UNUSED static ff_print ff_fingerprint(tt_store *st) {
  ff_print fp = {14695981039346656037ull, 0};
  tt_txn *t = NULL;
  int rc = tt_txn_begin(st, 0, 0, &t);
  if (rc)
    FF_FAIL("fingerprint: begin: %s", tether_err_name(rc));
  for (int tab = 0; tab < TT_TABLE__COUNT; tab++) {
    uint8_t tb = (uint8_t)tab;
    tt_bytes from = {NULL, 0};
    ff_mix(&fp, &tb, 1);
    rc = tt_scan(t, (tt_table)tab, from, ff_print_cb, &fp);
    if (rc)
      FF_FAIL("fingerprint: scan: %s", tether_err_name(rc));
  }
  tt_abort(t);
  return fp;
}

FF_UNUSED static int ff_print_eq(ff_print a, ff_print b) {
  return a.h == b.h && a.n == b.n;
}

/* ---- wipe ---------------------------------------------------------------- */

static int ff_del_cb(void *ctx, tt_bytes key, tt_bytes val) {
  void **c = ctx;
  tt_txn *t = c[0];
  int tab = *(int *)c[1];
  (void)val;
  return tt_del(t, (tt_table)tab, key);
}

/* Deletes every entry of every table in one commit. */
FF_UNUSED static void ff_wipe(tt_store *st) {
  tt_txn *t = NULL;
  int rc = tt_txn_begin(st, 0, 1, &t);
  if (rc)
    FF_FAIL("wipe: begin: %s", tether_err_name(rc));
  for (int tab = 0; tab < TT_TABLE__COUNT; tab++) {
    void *c[2] = {t, &tab};
    tt_bytes from = {NULL, 0};
    rc = tt_scan(t, (tt_table)tab, from, ff_del_cb, c);
    if (rc)
      FF_FAIL("wipe: scan: %s", tether_err_name(rc));
  }
  rc = tt_commit(t);
  if (rc)
    FF_FAIL("wipe: commit: %s", tether_err_name(rc));
}

/* Parses the fuzz input as JSON (any value; NUL bytes allowed inside
 * strings like a real body). NULL when it is not JSON. */
#include <jansson.h>
FF_UNUSED static json_t *ff_json(const uint8_t *data, size_t size) {
  return json_loadb((const char *)data, size,
                    JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
}

#endif
