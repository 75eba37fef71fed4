/* bulkload — applies a stream of writes to a replica in one process,
 * written against tether.h only. Useful to import data, or to build a large
 * offline workload fast (one open instead of one process per write).
 *
 *   bulkload DIR [SERVER_URL] < OPS
 *
 * DIR is created as a replica of SERVER_URL when it holds none. OPS has one
 * write per line, fields separated by one space; the last field is the rest
 * of the line, so JSON may contain spaces:
 *
 *   put COLL ID JSON_OBJECT         set COLL ID FIELD JSON
 *   unset COLL ID FIELD             incr COLL ID FIELD N
 *   add COLL ID FIELD JSON          remove COLL ID FIELD JSON
 *   del COLL ID
 *
 * Empty lines and lines starting with '#' are skipped. Stops at the first
 * failing line, naming it; the writes before it stay recorded. Prints the
 * number of writes applied.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tether.h"

#define MAX_LINE ((size_t)4 * 1024 * 1024)
#define MAX_ARGS 4

/* Splits LINE in place into exactly N fields; the last takes the rest. */
static int split(char *line, char **f, int n) {
  int i;
  for (i = 0; i < n - 1; i++) {
    char *sp = strchr(line, ' ');
    if (!sp)
      return TETHER_EINVAL;
    *sp = '\0';
    f[i] = line;
    line = sp + 1;
  }
  f[n - 1] = line;
  return *line ? TETHER_OK : TETHER_EINVAL;
}

static int parse_i64(const char *s, int64_t *out) {
  char *end;
  long long v;
  errno = 0;
  v = strtoll(s, &end, 10);
  if (errno || end == s || *end)
    return TETHER_EINVAL;
  *out = (int64_t)v;
  return TETHER_OK;
}

static int apply(tether *t, char *line) {
  char *f[MAX_ARGS + 1];
  char *sp = strchr(line, ' ');
  const char *op = line;
  int64_t n;
  int rc;

  if (!sp)
    return TETHER_EINVAL;
  *sp = '\0';
  line = sp + 1;
  if (strcmp(op, "put") == 0) {
    rc = split(line, f, 3);
    return rc ? rc : tether_put(t, f[0], f[1], f[2]);
  }
  if (strcmp(op, "set") == 0) {
    rc = split(line, f, 4);
    return rc ? rc : tether_set(t, f[0], f[1], f[2], f[3]);
  }
  if (strcmp(op, "unset") == 0) {
    rc = split(line, f, 3);
    return rc ? rc : tether_unset(t, f[0], f[1], f[2]);
  }
  if (strcmp(op, "incr") == 0) {
    rc = split(line, f, 4);
    if (rc == TETHER_OK)
      rc = parse_i64(f[3], &n);
    return rc ? rc : tether_incr(t, f[0], f[1], f[2], n);
  }
  if (strcmp(op, "add") == 0) {
    rc = split(line, f, 4);
    return rc ? rc : tether_add(t, f[0], f[1], f[2], f[3]);
  }
  if (strcmp(op, "remove") == 0) {
    rc = split(line, f, 4);
    return rc ? rc : tether_remove(t, f[0], f[1], f[2], f[3]);
  }
  if (strcmp(op, "del") == 0) {
    rc = split(line, f, 2);
    return rc ? rc : tether_delete(t, f[0], f[1]);
  }
  return TETHER_EINVAL;
}

int main(int argc, char **argv) {
  tether *t = NULL;
  char *line = NULL;
  size_t cap = 0;
  unsigned long long lineno = 0, applied = 0;
  ssize_t len;
  int rc, status = 1;

  if (argc < 2 || argc > 3) {
    fprintf(stderr, "usage: bulkload DIR [SERVER_URL] < OPS\n");
    return 2;
  }
  rc = tether_open(&t, argv[1]);
  if (rc == TETHER_ENOREPLICA && argc == 3) {
    rc = tether_init(argv[1], argv[2]);
    if (rc == TETHER_OK)
      rc = tether_open(&t, argv[1]);
  }
  if (rc != TETHER_OK) {
    fprintf(stderr, "bulkload: %s: %s\n", argv[1], tether_strerror(rc));
    goto out;
  }
  while ((len = getline(&line, &cap, stdin)) >= 0) {
    lineno++;
    if ((size_t)len > MAX_LINE) {
      fprintf(stderr, "bulkload: line %llu: longer than %zu bytes\n", lineno,
              MAX_LINE);
      goto out;
    }
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
      line[--len] = '\0';
    if (len == 0 || line[0] == '#')
      continue;
    rc = apply(t, line);
    if (rc != TETHER_OK) {
      const char *detail = tether_last_error(t);
      fprintf(stderr, "bulkload: line %llu: %s: %s%s%s\n", lineno,
              tether_err_name(rc), tether_strerror(rc), *detail ? ": " : "",
              detail);
      goto out;
    }
    applied++;
  }
  if (ferror(stdin)) {
    fprintf(stderr, "bulkload: reading input: %s\n", strerror(errno));
    goto out;
  }
  status = 0;
out:
  printf("%llu writes applied\n", applied);
  free(line);
  tether_close(t);
  return status;
}
