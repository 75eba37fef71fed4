/* fieldnotes — a tiny offline-first notes app, written against tether.h only.
 *
 *   fieldnotes DIR SERVER_URL add "text with #tags"   prints the new note id
 *   fieldnotes DIR SERVER_URL list                    ID<TAB>STATUS<TAB>JSON
 *   fieldnotes DIR SERVER_URL sync                    push + pull
 *
 * DIR is the local replica; it is created on first use and synced with
 * SERVER_URL. Notes live in collection "notes" with fields
 *   text     the note as typed
 *   created  Unix time in milliseconds
 *   tags     the note's #hashtags, without '#', each once
 * Writing never needs the network: `add` works offline and `sync` catches up
 * whenever the server is reachable.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tether.h"

#define COLL "notes"
#define MAX_TEXT (64 * 1024)
#define MAX_TAGS 32
#define MAX_TAG_LEN 64

/* Growable text with a hard cap, as everything here is bounded. */
typedef struct {
  char *p;
  size_t len, cap, max;
} buf;

static int buf_putc(buf *b, char c) {
  if (b->len + 2 > b->cap) {
    size_t ncap = b->cap ? b->cap * 2 : 256;
    char *np;
    if (ncap > b->max)
      ncap = b->max;
    if (b->len + 2 > ncap)
      return TETHER_ETOOBIG;
    np = realloc(b->p, ncap);
    if (!np)
      return TETHER_ENOMEM;
    b->p = np;
    b->cap = ncap;
  }
  b->p[b->len++] = c;
  b->p[b->len] = '\0';
  return TETHER_OK;
}

static int buf_puts(buf *b, const char *s) {
  int rc = TETHER_OK;
  for (; *s && rc == TETHER_OK; s++)
    rc = buf_putc(b, *s);
  return rc;
}

/* Appends S[0..n) as a JSON string literal. Bytes >= 0x80 pass through:
 * the text is expected to be UTF-8 and the library validates it. */
static int buf_put_json_string(buf *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  int rc = buf_putc(b, '"');
  size_t i;
  for (i = 0; i < n && rc == TETHER_OK; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      rc = buf_putc(b, '\\');
      if (rc == TETHER_OK)
        rc = buf_putc(b, (char)c);
    } else if (c == '\n') {
      rc = buf_puts(b, "\\n");
    } else if (c == '\t') {
      rc = buf_puts(b, "\\t");
    } else if (c < 0x20) {
      char esc[7] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15], 0};
      rc = buf_puts(b, esc);
    } else {
      rc = buf_putc(b, (char)c);
    }
  }
  if (rc == TETHER_OK)
    rc = buf_putc(b, '"');
  return rc;
}

static int is_tag_char(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '_' || c == '-' || c >= 0x80;
}

/* Appends the JSON array of TEXT's distinct #tags, in order of appearance. */
static int buf_put_tags(buf *b, const char *text) {
  const char *seen[MAX_TAGS];
  size_t seen_len[MAX_TAGS];
  size_t ntags = 0, i, j;
  int rc = buf_putc(b, '[');
  for (i = 0; text[i] && rc == TETHER_OK; i++) {
    size_t len = 0;
    int dup = 0;
    if (text[i] != '#' || (i > 0 && is_tag_char((unsigned char)text[i - 1])))
      continue;
    while (is_tag_char((unsigned char)text[i + 1 + len]))
      len++;
    if (len == 0 || len > MAX_TAG_LEN)
      continue;
    for (j = 0; j < ntags; j++)
      if (seen_len[j] == len && memcmp(seen[j], text + i + 1, len) == 0)
        dup = 1;
    if (dup || ntags == MAX_TAGS)
      continue;
    seen[ntags] = text + i + 1;
    seen_len[ntags] = len;
    if (ntags++ > 0)
      rc = buf_putc(b, ',');
    if (rc == TETHER_OK)
      rc = buf_put_json_string(b, text + i + 1, len);
  }
  if (rc == TETHER_OK)
    rc = buf_putc(b, ']');
  return rc;
}

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Note ids sort by creation time and never collide across devices: time
 * in microseconds plus the start of this replica's id. */
static void make_id(tether *t, char *id, size_t n, unsigned attempt) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  snprintf(id, n, "note-%lld%06ld-%.8s-%u", (long long)ts.tv_sec,
           ts.tv_nsec / 1000, tether_replica_id(t), attempt);
}

static int cmd_add(tether *t, const char *text) {
  buf doc = {NULL, 0, 0, MAX_TEXT * 7 + 4096};
  char id[96], *existing = NULL;
  unsigned attempt;
  int rc;

  if (strlen(text) > MAX_TEXT) {
    fprintf(stderr, "fieldnotes: a note is at most %d bytes\n", MAX_TEXT);
    return TETHER_ETOOBIG;
  }
  for (attempt = 0;; attempt++) {
    make_id(t, id, sizeof id, attempt);
    rc = tether_get(t, COLL, id, &existing);
    tether_free(existing);
    existing = NULL;
    if (rc == TETHER_ENOTFOUND)
      break;
    if (rc != TETHER_OK)
      goto out;
    if (attempt == 100) {
      rc = TETHER_EEXIST;
      goto out;
    }
  }
  /* Keys in sorted order, so the JSON is already canonical. */
  rc = buf_puts(&doc, "{\"created\":");
  if (rc == TETHER_OK) {
    char num[32];
    snprintf(num, sizeof num, "%lld", now_ms());
    rc = buf_puts(&doc, num);
  }
  if (rc == TETHER_OK)
    rc = buf_puts(&doc, ",\"tags\":");
  if (rc == TETHER_OK)
    rc = buf_put_tags(&doc, text);
  if (rc == TETHER_OK)
    rc = buf_puts(&doc, ",\"text\":");
  if (rc == TETHER_OK)
    rc = buf_put_json_string(&doc, text, strlen(text));
  if (rc == TETHER_OK)
    rc = buf_putc(&doc, '}');
  if (rc == TETHER_OK)
    rc = tether_put(t, COLL, id, doc.p);
  if (rc == TETHER_OK)
    printf("%s\n", id);
out:
  free(doc.p);
  return rc;
}

static int print_note(void *ctx, const char *id, const char *json) {
  tether *t = ctx;
  tether_doc_status st;
  int rc = tether_status(t, COLL, id, &st);
  if (rc != TETHER_OK)
    return rc;
  printf("%s\t%s\t%s\n", id, tether_status_name(st), json);
  return 0;
}

static void print_progress(void *ctx, const tether_progress *p) {
  (void)ctx;
  if (p->total)
    fprintf(stderr, "\r%s %llu/%llu", p->phase, (unsigned long long)p->done,
            (unsigned long long)p->total);
  else
    fprintf(stderr, "\r%s %llu", p->phase, (unsigned long long)p->done);
}

static int cmd_sync(tether *t) {
  tether_sync_opts opts = {0};
  tether_stats st;
  int rc;

  opts.progress = isatty(2) ? print_progress : NULL;
  rc = tether_sync(t, &opts);
  if (opts.progress)
    fputc('\n', stderr);
  if (rc != TETHER_OK)
    return rc;
  rc = tether_get_stats(t, &st);
  if (rc != TETHER_OK)
    return rc;
  printf("synced: %llu notes, %llu pending, %llu conflicts\n",
         (unsigned long long)st.documents,
         (unsigned long long)st.pending_intents,
         (unsigned long long)st.conflicts);
  return TETHER_OK;
}

static int open_or_create(tether **t, const char *dir, const char *url) {
  int rc = tether_open(t, dir);
  if (rc != TETHER_ENOREPLICA)
    return rc;
  rc = tether_init(dir, url);
  if (rc != TETHER_OK)
    return rc;
  return tether_open(t, dir);
}

static int usage(void) {
  fprintf(stderr, "usage: fieldnotes DIR SERVER_URL add \"text\"\n"
                  "       fieldnotes DIR SERVER_URL list\n"
                  "       fieldnotes DIR SERVER_URL sync\n");
  return 2;
}

int main(int argc, char **argv) {
  tether *t = NULL;
  const char *cmd;
  int rc;

  if (argc < 4)
    return usage();
  cmd = argv[3];
  if (!((strcmp(cmd, "add") == 0 && argc == 5) ||
        (strcmp(cmd, "list") == 0 && argc == 4) ||
        (strcmp(cmd, "sync") == 0 && argc == 4)))
    return usage();

  rc = open_or_create(&t, argv[1], argv[2]);
  if (rc != TETHER_OK) {
    fprintf(stderr, "fieldnotes: %s: %s\n", argv[1], tether_strerror(rc));
    return 1;
  }
  if (strcmp(cmd, "add") == 0)
    rc = cmd_add(t, argv[4]);
  else if (strcmp(cmd, "list") == 0)
    rc = tether_list(t, COLL, print_note, t);
  else
    rc = cmd_sync(t);

  if (rc != TETHER_OK) {
    const char *detail = tether_last_error(t);
    fprintf(stderr, "fieldnotes: %s: %s%s%s\n", cmd, tether_strerror(rc),
            *detail ? ": " : "", detail);
  }
  tether_close(t);
  return rc == TETHER_OK ? 0 : 1;
}
