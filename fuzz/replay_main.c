/* replay_main.c — runs a fuzz target over files, without libFuzzer, so the
 * normal test run (and the sanitizer build) replays the committed corpora.
 *
 *   fuzz_replay_<name> PATH...   each PATH a file or a directory (its
 *                                regular files, in name order)
 *
 * Exits 0 when every input ran; a violated property aborts, as under
 * libFuzzer. Prints one line per target: how many inputs ran. */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Read by the targets (fuzz_common.h): the base name of the current file. */
const char *tt_fuzz_input_name;

#define REPLAY_MAX_INPUT (16u << 20)

static int run_file(const char *path) {
  FILE *f = fopen(path, "rb");
  uint8_t *buf = NULL;
  size_t n = 0;
  long len;
  const char *slash;

  if (!f) {
    fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
    return -1;
  }
  if (fseek(f, 0, SEEK_END) || (len = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) ||
      (size_t)len > REPLAY_MAX_INPUT) {
    fprintf(stderr, "replay: %s: unreadable or larger than %u bytes\n", path,
            REPLAY_MAX_INPUT);
    fclose(f);
    return -1;
  }
  /* An exact-size copy so that ASan catches a read past the input. */
  buf = malloc(len ? (size_t)len : 1);
  if (!buf || (len && fread(buf, 1, (size_t)len, f) != (size_t)len)) {
    fprintf(stderr, "replay: %s: read failed\n", path);
    free(buf);
    fclose(f);
    return -1;
  }
  n = (size_t)len;
  fclose(f);
  slash = strrchr(path, '/');
  tt_fuzz_input_name = slash ? slash + 1 : path;
  LLVMFuzzerTestOneInput(buf, n);
  tt_fuzz_input_name = NULL;
  free(buf);
  return 0;
}

static int cmp_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_dir(const char *dir, size_t *count) {
  DIR *d = opendir(dir);
  struct dirent *e;
  char **names = NULL;
  size_t n = 0, cap = 0;
  int rc = 0;

  if (!d) {
    fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
    return -1;
  }
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.')
      continue;
    if (n == cap) {
      cap = cap ? 2 * cap : 64;
      char **nn = realloc(names, cap * sizeof *names);
      if (!nn) {
        rc = -1;
        goto out;
      }
      names = nn;
    }
    if (!(names[n] = strdup(e->d_name))) {
      rc = -1;
      goto out;
    }
    n++;
  }
  qsort(names, n, sizeof *names, cmp_names);
  for (size_t i = 0; i < n && !rc; i++) {
    char path[4096];
    struct stat sb;
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    if (stat(path, &sb) || !S_ISREG(sb.st_mode))
      continue;
    rc = run_file(path);
    if (!rc)
      (*count)++;
  }
out:
  for (size_t i = 0; i < n; i++)
    free(names[i]);
  free(names);
  closedir(d);
  return rc;
}

int main(int argc, char **argv) {
  size_t count = 0;
  const char *name = strrchr(argv[0], '/');

  name = name ? name + 1 : argv[0];
  if (argc < 2) {
    fprintf(stderr, "usage: %s FILE_OR_DIR...\n", name);
    return 2;
  }
  for (int i = 1; i < argc; i++) {
    struct stat sb;
    if (stat(argv[i], &sb)) {
      fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
      return 1;
    }
    if (S_ISDIR(sb.st_mode) ? run_dir(argv[i], &count) : run_file(argv[i]))
      return 1;
    if (!S_ISDIR(sb.st_mode))
      count++;
  }
  if (count == 0) {
    fprintf(stderr, "%s: no input found\n", name);
    return 1;
  }
  printf("%s: %zu inputs replayed, no property violated\n", name, count);
  return 0;
}
