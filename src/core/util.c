/* util.c — hex, canonical JSON, names, big-endian helpers.
 *
 * CANONICAL JSON (what tt_canon writes, what intent hashes are computed
 * over; another implementation must produce the same bytes):
 *  - No whitespace at all: separators are "," and ":" with nothing around.
 *  - Object keys sorted by byte-wise comparison of their UTF-8 encoding
 *    (strcmp order, i.e. Unicode code point order); keys are unique.
 *  - Strings are UTF-8, escaped only where JSON requires: '"' -> \",
 *    '\\' -> \\, the control characters U+0008/0C/0A/0D/09 as \b \f \n \r
 *    \t, any other character below U+0020 as \u00XX with UPPERCASE hex
 *    (\u001F). "/", U+007F and all non-ASCII characters are written raw.
 *  - Integers (JSON numbers without fraction or exponent) are written in
 *    decimal, no "+" or leading zeros; range of int64.
 *  - Reals: C printf "%.17g"; then a "+" and leading zeros of the exponent
 *    are dropped (1e300 -> "1.0000000000000001e300", 1e-7 ->
 *    "9.9999999999999995e-8"), 0.1 -> "0.10000000000000001", and ".0"
 *    is appended when the text has neither "." nor "e" (1.0 -> "1.0").
 *    An integer never equals a real; -0.0 is "-0.0".
 *  - true, false, null as such.
 * This is exactly jansson's json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS |
 * JSON_ENCODE_ANY) without JSON_ENSURE_ASCII, JSON_ESCAPE_SLASH or a
 * JSON_REAL_PRECISION.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

void tt_hex_encode(const uint8_t *in, size_t len, char *out) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < len; i++) {
    out[2 * i] = digits[in[i] >> 4];
    out[2 * i + 1] = digits[in[i] & 0x0f];
  }
  out[2 * len] = '\0';
}

/* Every intent carries three hashes as hex, and every push and pull
 * reads them: one load per digit instead of three range tests. */
const uint8_t tt_hex_lower_digit[256] = {
    ['0'] = 1,  ['1'] = 2,  ['2'] = 3,  ['3'] = 4,  ['4'] = 5,  ['5'] = 6,
    ['6'] = 7,  ['7'] = 8,  ['8'] = 9,  ['9'] = 10, ['a'] = 11, ['b'] = 12,
    ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16};

static int hex_nibble(char c) {
  uint8_t d = tt_hex_lower_digit[(uint8_t)c];
  if (d)
    return d - 1;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* Reads no further than the first non-hex character, so a short string
 * (its NUL is not hex) is safe. Characters after the 2*len are not looked
 * at: callers that need an exact length check strlen themselves. */
int tt_hex_decode(const char *hex, uint8_t *out, size_t len) {
  if (!hex || (!out && len))
    return TETHER_EINVAL;
  for (size_t i = 0; i < len; i++) {
    int hi = hex_nibble(hex[2 * i]);
    if (hi < 0)
      return TETHER_EINVAL;
    int lo = hex_nibble(hex[2 * i + 1]);
    if (lo < 0)
      return TETHER_EINVAL;
    out[i] = (uint8_t)(hi << 4 | lo);
  }
  return 0;
}

/* The canonical writer walks the tree itself instead of calling
 * json_dump_callback with those flags: every intent hash, stored
 * document and wire body goes through it, and jansson's dumper (a
 * callback per token, an allocated and qsorted key array per object) was
 * the largest single cost of a push on both sides (BENCHMARKS.md). It
 * writes the bytes jansson would, which tests/unit/core_canon.c checks
 * against jansson itself. */
typedef struct {
  tt_buf *buf;             /* append here, or */
  json_dump_callback_t cb; /* stream here through STAGE, or neither: count */
  void *ctx;
  size_t total, max;       /* bytes so far; past MAX -> TETHER_ETOOBIG */
  int err;
  size_t used;
  char stage[4096];
} canon_sink;

static void sink_init(canon_sink *s, tt_buf *buf, json_dump_callback_t cb,
                      void *ctx, size_t max) {
  s->buf = buf;
  s->cb = cb;
  s->ctx = ctx;
  s->total = 0;
  s->max = max;
  s->err = 0;
  s->used = 0;
}

static int sink_flush(canon_sink *s) {
  if (s->cb && s->used && !s->err && s->cb(s->stage, s->used, s->ctx) != 0)
    s->err = TETHER_ENOMEM;
  s->used = 0;
  return s->err;
}

static int sink_put(canon_sink *s, const char *p, size_t n) {
  if (s->err) return s->err;
  if (n > s->max - s->total) return s->err = TETHER_ETOOBIG;
  s->total += n;
  if (s->buf) {
    if (tt_buf_add(s->buf, p, n)) s->err = TETHER_ENOMEM;
  } else if (s->cb) {
    if (n > sizeof s->stage - s->used) {
      if (sink_flush(s)) return s->err;
      if (n >= sizeof s->stage) {
        if (s->cb(p, n, s->ctx) != 0) s->err = TETHER_ENOMEM;
        return s->err;
      }
    }
    memcpy(s->stage + s->used, p, n);
    s->used += n;
  }
  return s->err;
}

static size_t utf8_char(const uint8_t *p, const uint8_t *end);

static int canon_string(canon_sink *s, const char *str, size_t len) {
  static const char hexd[] = "0123456789ABCDEF";
  const uint8_t *p = (const uint8_t *)str, *end = p + len, *run = p;
  sink_put(s, "\"", 1);
  while ((p = tt_json_plain_end(p, end)) < end) {
    uint8_t c = *p;
    if (c >= 0x80) {
      size_t n = utf8_char(p, end);
      if (n == 0) return s->err ? s->err : (s->err = TETHER_EINVAL);
      p += n;
      continue;
    }
    sink_put(s, (const char *)run, (size_t)(p - run));
    char esc[6] = {'\\', 0, '0', '0', hexd[c >> 4], hexd[c & 15]};
    size_t en = 2;
    switch (c) {
    case '"': esc[1] = '"'; break;
    case '\\': esc[1] = '\\'; break;
    case '\b': esc[1] = 'b'; break;
    case '\f': esc[1] = 'f'; break;
    case '\n': esc[1] = 'n'; break;
    case '\r': esc[1] = 'r'; break;
    case '\t': esc[1] = 't'; break;
    default: esc[1] = 'u'; en = 6; break;
    }
    sink_put(s, esc, en);
    run = ++p;
  }
  sink_put(s, (const char *)run, (size_t)(p - run));
  return sink_put(s, "\"", 1);
}

size_t tt_i64_text(int64_t v, char out[TT_I64_TEXT_MAX]) {
  char rev[TT_I64_TEXT_MAX];
  /* The magnitude as unsigned: -INT64_MIN does not fit an int64_t. */
  uint64_t m = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
  size_t n = 0, len = 0;
  do {
    rev[n++] = (char)('0' + m % 10);
    m /= 10;
  } while (m);
  if (v < 0)
    out[len++] = '-';
  while (n)
    out[len++] = rev[--n];
  return len;
}

/* jansson's jsonp_dtostr at precision 17, in the "C" locale. */
size_t tt_canon_real_text(double d, char out[TT_CANON_REAL_MAX]) {
  char *b = out;
  int n = snprintf(b, TT_CANON_REAL_MAX - 3, "%.17g", d);
  if (n < 0 || (size_t)n >= TT_CANON_REAL_MAX - 3) return 0;
  size_t len = (size_t)n;
  if (!memchr(b, '.', len) && !memchr(b, 'e', len)) {
    b[len++] = '.';
    b[len++] = '0';
    b[len] = 0;
  }
  char *e = memchr(b, 'e', len);
  if (e) {
    char *start = e + 1, *stop = e + 2;
    if (*start == '-') start++;
    while (*stop == '0') stop++;
    if (stop != start) {
      memmove(start, stop, len - (size_t)(stop - b) + 1);
      len -= (size_t)(stop - start);
    }
  }
  return len;
}

static int canon_real(canon_sink *s, double d) {
  char b[TT_CANON_REAL_MAX];
  size_t len = tt_canon_real_text(d, b);
  if (!len) return s->err = TETHER_EINVAL;
  return sink_put(s, b, len);
}

typedef struct {
  const char *key;
  size_t len;
  json_t *val;
} canon_member;

static int member_cmp(const canon_member *a, const canon_member *b) {
  size_t n = a->len < b->len ? a->len : b->len;
  int c = memcmp(a->key, b->key, n);
  if (c) return c;
  return a->len < b->len ? -1 : a->len > b->len;
}

static int member_qcmp(const void *a, const void *b) {
  return member_cmp(a, b);
}

static int canon_value(canon_sink *s, const json_t *v);

static int canon_object(canon_sink *s, const json_t *v) {
  size_t n = json_object_size(v);
  if (n == 0) return sink_put(s, "{}", 2);
  canon_member local[16];
  canon_member *m = n <= 16 ? local : malloc(n * sizeof *m);
  if (!m) return s->err = TETHER_ENOMEM;
  size_t i = 0;
  for (void *it = json_object_iter((json_t *)v); it && i < n;
       it = json_object_iter_next((json_t *)v, it), i++) {
    m[i].key = json_object_iter_key(it);
    m[i].len = json_object_iter_key_len(it);
    m[i].val = json_object_iter_value(it);
  }
  n = i;
  if (n <= 16) {
    /* Insertion sort: documents and intents have a handful of keys. */
    for (size_t a = 1; a < n; a++) {
      canon_member x = m[a];
      size_t b = a;
      while (b > 0 && member_cmp(&m[b - 1], &x) > 0) {
        m[b] = m[b - 1];
        b--;
      }
      m[b] = x;
    }
  } else {
    qsort(m, n, sizeof *m, member_qcmp);
  }
  sink_put(s, "{", 1);
  for (i = 0; i < n && !s->err; i++) {
    if (i) sink_put(s, ",", 1);
    canon_string(s, m[i].key, m[i].len);
    sink_put(s, ":", 1);
    canon_value(s, m[i].val);
  }
  if (m != local) free(m);
  return sink_put(s, "}", 1);
}

static int canon_value(canon_sink *s, const json_t *v) {
  if (s->err) return s->err;
  switch (json_typeof(v)) {
  case JSON_OBJECT:
    return canon_object(s, v);
  case JSON_ARRAY: {
    size_t n = json_array_size(v);
    sink_put(s, "[", 1);
    for (size_t i = 0; i < n && !s->err; i++) {
      if (i) sink_put(s, ",", 1);
      canon_value(s, json_array_get(v, i));
    }
    return sink_put(s, "]", 1);
  }
  case JSON_STRING:
    return canon_string(s, json_string_value(v), json_string_length(v));
  case JSON_INTEGER: {
    char b[TT_I64_TEXT_MAX];
    return sink_put(s, b, tt_i64_text(json_integer_value(v), b));
  }
  case JSON_REAL:
    return canon_real(s, json_real_value(v));
  case JSON_TRUE:
    return sink_put(s, "true", 4);
  case JSON_FALSE:
    return sink_put(s, "false", 5);
  case JSON_NULL:
    return sink_put(s, "null", 4);
  }
  return s->err = TETHER_EINVAL;
}

int tt_canon_buf(tt_buf *b, const json_t *v, size_t max) {
  if (!b || !v) return TETHER_EINVAL;
  canon_sink s;
  sink_init(&s, b, NULL, NULL, max ? max : SIZE_MAX);
  size_t keep = b->len;
  int rc = canon_value(&s, v);
  if (rc) b->len = keep;
  return rc;
}

int tt_canon_str_buf(tt_buf *b, const char *str, size_t len) {
  if (!b || (!str && len)) return TETHER_EINVAL;
  if (!tt_utf8_valid(str, len)) return TETHER_EINVAL;
  canon_sink s;
  sink_init(&s, b, NULL, NULL, SIZE_MAX);
  size_t keep = b->len;
  int rc = canon_string(&s, str, len);
  if (rc) b->len = keep;
  return rc;
}

char *tt_canon_n(const json_t *v, size_t *len) {
  if (!v)
    return NULL;
  tt_buf b = {0};
  if (tt_canon_buf(&b, v, 0) || tt_buf_add(&b, "", 1)) {
    tt_buf_free(&b);
    return NULL;
  }
  if (len)
    *len = b.len - 1;
  return (char *)b.data;
}

char *tt_canon(const json_t *v) { return tt_canon_n(v, NULL); }

int tt_canon_len(const json_t *v, size_t max, size_t *out) {
  if (!v)
    return TETHER_EINVAL;
  canon_sink s;
  sink_init(&s, NULL, NULL, NULL, max);
  int rc = canon_value(&s, v);
  if (rc == TETHER_EINVAL)
    rc = TETHER_ENOMEM; /* what jansson's dumper said for bad UTF-8 */
  if (rc)
    return rc;
  if (out)
    *out = s.total;
  return 0;
}

int tt_canon_dump(const json_t *v, json_dump_callback_t cb, void *ctx) {
  if (!v || !cb)
    return TETHER_EINVAL;
  canon_sink s;
  sink_init(&s, NULL, cb, ctx, SIZE_MAX);
  int rc = canon_value(&s, v);
  if (rc == 0)
    rc = sink_flush(&s);
  return rc == 0 ? 0 : TETHER_ENOMEM;
}

/* Equality of canonical forms, without building them: reals are equal
 * when their bits are (%.17g round-trips a double exactly, so -0.0 and 0.0
 * differ), an integer never equals a real, strings compare by length and
 * bytes (embedded NULs included). */
int tt_canon_equal(const json_t *a, const json_t *b) {
  if (a == b)
    return 1;
  if (!a || !b)
    return 0;
  if (json_typeof(a) != json_typeof(b))
    return 0;
  switch (json_typeof(a)) {
  case JSON_OBJECT: {
    if (json_object_size(a) != json_object_size(b))
      return 0;
    for (void *iter = json_object_iter((json_t *)a); iter;
         iter = json_object_iter_next((json_t *)a, iter)) {
      const char *key = json_object_iter_key(iter);
      size_t klen = json_object_iter_key_len(iter);
      json_t *va = json_object_iter_value(iter);
      json_t *vb = json_object_getn(b, key, klen);
      if (!vb || !tt_canon_equal(va, vb))
        return 0;
    }
    return 1;
  }
  case JSON_ARRAY: {
    size_t n = json_array_size(a);
    if (n != json_array_size(b))
      return 0;
    for (size_t i = 0; i < n; i++)
      if (!tt_canon_equal(json_array_get(a, i), json_array_get(b, i)))
        return 0;
    return 1;
  }
  case JSON_STRING: {
    size_t n = json_string_length(a);
    return n == json_string_length(b) &&
           memcmp(json_string_value(a), json_string_value(b), n) == 0;
  }
  case JSON_INTEGER:
    return json_integer_value(a) == json_integer_value(b);
  case JSON_REAL: {
    double x = json_real_value(a), y = json_real_value(b);
    return memcmp(&x, &y, sizeof x) == 0;
  }
  case JSON_TRUE:
  case JSON_FALSE:
  case JSON_NULL:
    return 1;
  }
  return 0;
}

/* Length of the well-formed UTF-8 character at P (END bounds it), or 0
 * when there is none: a stray continuation byte, a cut sequence, an
 * overlong form, a surrogate, or something above U+10FFFF. */
static size_t utf8_char(const uint8_t *p, const uint8_t *end) {
  static const uint32_t min[4] = {0, 0x80, 0x800, 0x10000};
  uint8_t c = *p;
  size_t n;
  uint32_t cp;
  if (c < 0x80)
    return 1;
  else if ((c & 0xe0) == 0xc0)
    n = 1, cp = c & 0x1f;
  else if ((c & 0xf0) == 0xe0)
    n = 2, cp = c & 0x0f;
  else if ((c & 0xf8) == 0xf0)
    n = 3, cp = c & 0x07;
  else
    return 0;
  if ((size_t)(end - p) <= n)
    return 0;
  for (size_t i = 1; i <= n; i++) {
    if ((p[i] & 0xc0) != 0x80)
      return 0;
    cp = (cp << 6) | (p[i] & 0x3f);
  }
  if (cp < min[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
    return 0;
  return n + 1;
}

int tt_utf8_valid(const void *s, size_t len) {
  const uint8_t *p = s, *end = p + len;
  while (p < end) {
    size_t n = utf8_char(p, end);
    if (n == 0)
      return 0;
    p += n;
  }
  return 1;
}

size_t tt_utf8_prefix(const char *s, size_t max) {
  if (!s)
    return 0;
  const uint8_t *b = (const uint8_t *)s, *p = b;
  const uint8_t *end = b + strnlen(s, max);
  while (p < end) {
    size_t n = utf8_char(p, end);
    if (n == 0)
      break;
    p += n;
  }
  return (size_t)(p - b);
}

int tt_name_valid(const char *s) {
  if (!s)
    return 0;
  size_t n = strnlen(s, TT_MAX_NAME + 1);
  return n >= 1 && n <= TT_MAX_NAME;
}

void tt_errf(char *errbuf, size_t errlen, const char *fmt, ...) {
  if (!errbuf || errlen == 0)
    return;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(errbuf, errlen, fmt, ap);
  va_end(ap);
  if (n < 0)
    errbuf[0] = '\0';
  else if ((size_t)n >= errlen) /* cut: never in the middle of a character */
    errbuf[tt_utf8_prefix(errbuf, errlen - 1)] = '\0';
}

void tt_be64_put(uint8_t out[8], uint64_t v) {
  for (int i = 7; i >= 0; i--) {
    out[i] = (uint8_t)(v & 0xff);
    v >>= 8;
  }
}

uint64_t tt_be64_get(const uint8_t in[8]) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = v << 8 | in[i];
  return v;
}

void tt_be32_put(uint8_t out[4], uint32_t v) {
  out[0] = (uint8_t)(v >> 24);
  out[1] = (uint8_t)(v >> 16);
  out[2] = (uint8_t)(v >> 8);
  out[3] = (uint8_t)v;
}

uint32_t tt_be32_get(const uint8_t in[4]) {
  return (uint32_t)in[0] << 24 | (uint32_t)in[1] << 16 |
         (uint32_t)in[2] << 8 | (uint32_t)in[3];
}

int tt_buf_add(tt_buf *b, const void *p, size_t len) {
  if (len > SIZE_MAX - b->len) return TETHER_ENOMEM;
  if (b->len + len > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + len) {
      if (cap > SIZE_MAX / 2) return TETHER_ENOMEM;
      cap *= 2;
    }
    uint8_t *n = realloc(b->data, cap);
    if (!n) return TETHER_ENOMEM;
    b->data = n;
    b->cap = cap;
  }
  if (len) memcpy(b->data + b->len, p, len);
  b->len += len;
  return 0;
}

int tt_buf_add_str(tt_buf *b, const char *s) {
  return tt_buf_add(b, s, strlen(s));
}

int tt_buf_add_int(tt_buf *b, int64_t v) {
  char num[TT_I64_TEXT_MAX];
  return tt_buf_add(b, num, tt_i64_text(v, num));
}

void tt_buf_free(tt_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}
