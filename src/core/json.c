/* json.c — strict JSON text to jansson values (see json.h for why).
 *
 * A recursive-descent reader over the bytes in place: strings without
 * escapes go straight from the input to json_stringn_nocheck, so the
 * common case copies each byte once; only strings with escapes and reals
 * pass through the scratch buffer. */
#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "core/util.h"
#include "tether.h"

typedef struct {
  const unsigned char *start, *p, *end;
  unsigned flags;
  int depth;
  int nomem;
  /* Something read so far is not as tt_canon writes it: white space, an
   * escape it would not write, keys out of its order, "-0", a real not in
   * its form. Streamed elements report it (tt_json_span.canonical). */
  int noncanon;
  tt_json_error *err;
  char *buf; /* scratch: decoded strings with escapes, real number text */
  size_t len, cap;
  /* tt_json_parse_streamed: the top-level member whose array elements go
   * to EACH; a non-zero return of EACH is kept in each_rc. */
  const char *stream_key;
  size_t stream_klen;
  tt_json_each_fn each;
  tt_json_each_text_fn each_text; /* tried first on every element, if set */
  void *each_ctx;
  int each_rc;
  /* tt_json_check_canonical: read and check only, build nothing (*out
   * is NULL, or one of jansson's true/false/null singletons, which need no
   * release). Duplicate keys are then not looked for: the canonical text
   * has none, its keys being strictly increasing. */
  int skip;
} parser;

/* Records the first error at AT; returns -1 so callers can `return fail()`. */
static int fail(parser *s, const unsigned char *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(parser *s, const unsigned char *at, const char *fmt, ...) {
  tt_json_error *e = s->err;
  if (!e)
    return -1;
  if (at > s->end)
    at = s->end;
  e->position = (size_t)(at - s->start);
  e->line = 1;
  e->column = 1;
  for (const unsigned char *q = s->start; q < at; q++) {
    if (*q == '\n') {
      e->line++;
      e->column = 1;
    } else {
      e->column++;
    }
  }
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e->text, sizeof e->text, fmt, ap);
  va_end(ap);
  return -1;
}

static int out_of_memory(parser *s) {
  s->nomem = 1;
  if (s->err)
    snprintf(s->err->text, sizeof s->err->text, "out of memory");
  return -1;
}

static int scratch_put(parser *s, const void *data, size_t n) {
  if (n == 0)
    return 0;
  if (s->cap - s->len < n) {
    size_t cap = s->cap ? s->cap : 256;
    while (cap - s->len < n) {
      if (cap > SIZE_MAX / 2)
        return out_of_memory(s);
      cap *= 2;
    }
    char *b = realloc(s->buf, cap);
    if (!b)
      return out_of_memory(s);
    s->buf = b;
    s->cap = cap;
  }
  memcpy(s->buf + s->len, data, n);
  s->len += n;
  return 0;
}

static void skip_space(parser *s) {
  const unsigned char *p = s->p, *end = s->end;
  while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
    p++;
  if (p != s->p)
    s->noncanon = 1;
  s->p = p;
}

/* Length of the well-formed UTF-8 sequence at P (lead byte >= 0x80), or 0:
 * no overlong forms, no surrogates, nothing above U+10FFFF. */
static size_t utf8_seq(const unsigned char *p, const unsigned char *end) {
  unsigned c = p[0];
  uint32_t cp;
  size_t n;
  if (c < 0xC2)
    return 0;
  if (c < 0xE0) {
    n = 2;
    cp = c & 0x1F;
  } else if (c < 0xF0) {
    n = 3;
    cp = c & 0x0F;
  } else if (c < 0xF5) {
    n = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if ((size_t)(end - p) < n)
    return 0;
  for (size_t i = 1; i < n; i++) {
    if ((p[i] & 0xC0) != 0x80)
      return 0;
    cp = (cp << 6) | (p[i] & 0x3F);
  }
  if (n == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF)))
    return 0;
  if (n == 4 && (cp < 0x10000 || cp > 0x10FFFF))
    return 0;
  return n;
}

static int hex4(const unsigned char *p, const unsigned char *end,
                uint32_t *out) {
  uint32_t v = 0;
  if (end - p < 4)
    return -1;
  for (int i = 0; i < 4; i++) {
    unsigned c = p[i];
    v <<= 4;
    if (c >= '0' && c <= '9')
      v |= c - '0';
    else if (c >= 'a' && c <= 'f')
      v |= c - 'a' + 10;
    else if (c >= 'A' && c <= 'F')
      v |= c - 'A' + 10;
    else
      return -1;
  }
  *out = v;
  return 0;
}

static int put_utf8(parser *s, uint32_t cp) {
  unsigned char u[4];
  size_t n;
  if (cp < 0x80) {
    u[0] = (unsigned char)cp;
    n = 1;
  } else if (cp < 0x800) {
    u[0] = (unsigned char)(0xC0 | (cp >> 6));
    u[1] = (unsigned char)(0x80 | (cp & 0x3F));
    n = 2;
  } else if (cp < 0x10000) {
    u[0] = (unsigned char)(0xE0 | (cp >> 12));
    u[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    u[2] = (unsigned char)(0x80 | (cp & 0x3F));
    n = 3;
  } else {
    u[0] = (unsigned char)(0xF0 | (cp >> 18));
    u[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    u[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    u[3] = (unsigned char)(0x80 | (cp & 0x3F));
    n = 4;
  }
  return scratch_put(s, u, n);
}

/* The rest of a string whose first escape is at P; BEGIN is just after
 * the opening quote. Decodes into the scratch buffer. */
static int string_escaped(parser *s, const unsigned char *begin,
                          const unsigned char *p, int allow_nul,
                          const char **str, size_t *len) {
  const unsigned char *end = s->end, *run = begin;
  s->len = 0;
  for (;;) {
    if (p >= end)
      return fail(s, begin - 1, "unterminated string");
    unsigned c = *p;
    if (c == '"')
      break;
    if (c < 0x20)
      return fail(s, p, "control character 0x%02x in string", c);
    if (c >= 0x80) {
      size_t n = utf8_seq(p, end);
      if (!n)
        return fail(s, p, "invalid UTF-8 in string");
      p += n;
      continue;
    }
    if (c != '\\') {
      p++;
      continue;
    }
    if (scratch_put(s, run, (size_t)(p - run)))
      return -1;
    if (end - p < 2)
      return fail(s, begin - 1, "unterminated string");
    char one;
    switch (p[1]) {
    case '"': one = '"'; break;
    case '\\': one = '\\'; break;
    case '/': one = '/'; s->noncanon = 1; break;
    case 'b': one = '\b'; break;
    case 'f': one = '\f'; break;
    case 'n': one = '\n'; break;
    case 'r': one = '\r'; break;
    case 't': one = '\t'; break;
    case 'u': {
      uint32_t cp, lo;
      /* tt_canon writes \u00XX for a few control characters only; any
       * \u counts as not canonical, which at worst costs a fast path. */
      s->noncanon = 1;
      if (hex4(p + 2, end, &cp))
        return fail(s, p, "invalid \\u escape");
      const unsigned char *esc = p;
      p += 6;
      if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (end - p < 6 || p[0] != '\\' || p[1] != 'u' ||
            hex4(p + 2, end, &lo) || lo < 0xDC00 || lo > 0xDFFF)
          return fail(s, esc, "invalid Unicode: lone surrogate \\u%04X",
                      (unsigned)cp);
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        p += 6;
      } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
        return fail(s, esc, "invalid Unicode: lone surrogate \\u%04X",
                    (unsigned)cp);
      } else if (cp == 0 && !allow_nul) {
        return fail(s, esc, "\\u0000 is not allowed here");
      }
      if (put_utf8(s, cp))
        return -1;
      run = p;
      continue;
    }
    default:
      return fail(s, p, "invalid escape '\\%c'",
                  p[1] >= 0x20 && p[1] < 0x7F ? p[1] : '?');
    }
    if (scratch_put(s, &one, 1))
      return -1;
    p += 2;
    run = p;
  }
  if (scratch_put(s, run, (size_t)(p - run)))
    return -1;
  s->p = p + 1;
  *str = s->buf;
  *len = s->len;
  return 0;
}

/* S->p is just after an opening quote. *STR points into the input (no
 * escapes) or into the scratch buffer (valid until the next string). */
static int string_span(parser *s, int allow_nul, const char **str,
                       size_t *len) {
  const unsigned char *begin = s->p, *p = begin, *end = s->end;
  for (;;) {
    p = tt_json_plain_end(p, end);
    if (p >= end)
      return fail(s, begin - 1, "unterminated string");
    unsigned c = *p;
    if (c == '"') {
      *str = (const char *)begin;
      *len = (size_t)(p - begin);
      s->p = p + 1;
      return 0;
    }
    if (c == '\\')
      return string_escaped(s, begin, p, allow_nul, str, len);
    if (c < 0x20)
      return fail(s, p, "control character 0x%02x in string", c);
    size_t n = utf8_seq(p, end);
    if (!n)
      return fail(s, p, "invalid UTF-8 in string");
    p += n;
  }
}

static int is_digit(const unsigned char *p, const unsigned char *end) {
  return p < end && *p >= '0' && *p <= '9';
}

static int number(parser *s, json_t **out) {
  const unsigned char *b = s->p, *p = b, *end = s->end;
  int neg = 0, real = 0;
  if (*p == '-') {
    neg = 1;
    p++;
  }
  if (!is_digit(p, end))
    return fail(s, b, "invalid number");
  if (*p == '0') {
    p++;
    if (is_digit(p, end))
      return fail(s, b, "invalid number: leading zero");
  } else {
    while (is_digit(p, end))
      p++;
  }
  if (p < end && *p == '.') {
    real = 1;
    p++;
    if (!is_digit(p, end))
      return fail(s, b, "invalid number: digit expected after '.'");
    while (is_digit(p, end))
      p++;
  }
  if (p < end && (*p == 'e' || *p == 'E')) {
    real = 1;
    p++;
    if (p < end && (*p == '+' || *p == '-'))
      p++;
    if (!is_digit(p, end))
      return fail(s, b, "invalid number: digit expected in exponent");
    while (is_digit(p, end))
      p++;
  }
  s->p = p;
  if (!real) {
    if (neg && p - b == 2 && b[1] == '0') /* "-0": tt_canon writes 0 */
      s->noncanon = 1;
    /* json_int_t is long long (jansson's default build). */
    const uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    uint64_t v = 0;
    for (const unsigned char *q = b + neg; q < p; q++) {
      unsigned d = *q - '0';
      if (v > (limit - d) / 10)
        return fail(s, b, neg ? "too big negative integer" : "too big integer");
      v = v * 10 + d;
    }
    json_int_t iv = neg ? (json_int_t)(0 - v) : (json_int_t)v;
    if (s->skip)
      return 0;
    if (!(*out = json_integer(iv)))
      return out_of_memory(s);
    return 0;
  }
  /* strtod reads the locale's decimal point, which may be longer than
   * one byte (U+066B in ps_AF): the text goes to it with that in place of
   * the '.'. */
  const char *point = localeconv()->decimal_point;
  const unsigned char *dot = memchr(b, '.', (size_t)(p - b));
  s->len = 0;
  if (dot && point && point[0] && strcmp(point, ".") != 0) {
    if (scratch_put(s, b, (size_t)(dot - b)) ||
        scratch_put(s, point, strlen(point)) ||
        scratch_put(s, dot + 1, (size_t)(p - dot - 1)))
      return -1;
  } else if (scratch_put(s, b, (size_t)(p - b))) {
    return -1;
  }
  if (scratch_put(s, "", 1))
    return -1;
  errno = 0;
  double d = strtod(s->buf, NULL);
  if (errno == ERANGE && isinf(d))
    return fail(s, b, "real number overflow");
  if (!s->noncanon) {
    char c[TT_CANON_REAL_MAX];
    size_t n = tt_canon_real_text(d, c);
    if (n != (size_t)(p - b) || memcmp(c, b, n) != 0)
      s->noncanon = 1;
  }
  if (s->skip)
    return 0;
  if (!(*out = json_real(d)))
    return out_of_memory(s);
  return 0;
}

static int value(parser *s, json_t **out);
static int array(parser *s, json_t **out, int stream);

static int literal(parser *s, const char *word, size_t n, json_t *v,
                   json_t **out) {
  if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
    return fail(s, s->p, "invalid token");
  s->p += n;
  *out = v;
  return 0;
}

static int object(parser *s, json_t **out) {
  json_t *o = s->skip ? NULL : json_object(), *v = NULL;
  char *keycopy = NULL;
  const char *prev = NULL; /* the key before, in the input */
  size_t prevlen = 0;
  if (!o && !s->skip)
    return out_of_memory(s);
  s->p++; /* '{' */
  skip_space(s);
  if (s->p < s->end && *s->p == '}') {
    s->p++;
    *out = o;
    return 0;
  }
  for (;;) {
    const char *key;
    size_t klen;
    if (s->p >= s->end || *s->p != '"') {
      fail(s, s->p, "string expected as object key");
      goto bad;
    }
    s->p++;
    if (string_span(s, 0, &key, &klen))
      goto bad;
    if (key == s->buf) {
      s->noncanon = 1; /* escaped keys are not compared: at worst slower */
      /* The value may reuse the scratch buffer. */
      if (!(keycopy = malloc(klen ? klen : 1))) {
        out_of_memory(s);
        goto bad;
      }
      memcpy(keycopy, key, klen);
      key = keycopy;
    } else if (!s->noncanon) {
      /* tt_canon sorts keys bytewise, a prefix first. */
      size_t m = prevlen < klen ? prevlen : klen;
      int c = prev ? memcmp(prev, key, m) : -1;
      if (c > 0 || (c == 0 && prevlen >= klen))
        s->noncanon = 1;
      prev = key;
      prevlen = klen;
    }
    if ((s->flags & TT_JSON_REJECT_DUPLICATES) && o &&
        json_object_getn(o, key, klen)) {
      fail(s, s->p, "duplicate object key \"%.*s\"",
           klen > 60 ? 60 : (int)klen, key);
      goto bad;
    }
    skip_space(s);
    if (s->p >= s->end || *s->p != ':') {
      fail(s, s->p, "':' expected after object key");
      goto bad;
    }
    s->p++;
    skip_space(s);
    if (s->each && s->depth == 1 && klen == s->stream_klen &&
        s->p < s->end && *s->p == '[' &&
        memcmp(key, s->stream_key, klen) == 0) {
      if (++s->depth > TT_JSON_MAX_DEPTH) {
        fail(s, s->p, "maximum nesting depth %d reached", TT_JSON_MAX_DEPTH);
        goto bad;
      }
      int rc = array(s, &v, 1);
      s->depth--;
      if (rc)
        goto bad;
    } else if (value(s, &v)) {
      goto bad;
    }
    if (o && json_object_setn_new_nocheck(o, key, klen, v)) {
      v = NULL; /* released by jansson */
      out_of_memory(s);
      goto bad;
    }
    v = NULL;
    free(keycopy);
    keycopy = NULL;
    skip_space(s);
    if (s->p < s->end && *s->p == ',') {
      s->p++;
      skip_space(s);
      continue;
    }
    if (s->p < s->end && *s->p == '}') {
      s->p++;
      *out = o;
      return 0;
    }
    fail(s, s->p, "',' or '}' expected");
    goto bad;
  }
bad:
  free(keycopy);
  json_decref(v);
  json_decref(o);
  return -1;
}

/* s->each_text on the element at s->p: 0 read (s->p moved past it), 1
 * not, -1 stopped. Out of line: array() recurses once per nesting level,
 * and this frame inside it made 2048 levels overflow the stack of an
 * instrumented (fuzzing) build. */
__attribute__((noinline)) static int element_text(parser *s) {
  size_t used = 0;
  int rc = s->each_text(s->each_ctx, (const char *)s->p,
                        (size_t)(s->end - s->p), s->flags, s->depth + 1, &used);
  if (rc < 0) {
    s->each_rc = rc;
    return fail(s, s->p, "stopped by the reader of the array");
  }
  if (rc == 0)
    s->p += used; /* its canonical text: nothing for noncanon */
  return rc == 0 ? 0 : 1;
}

/* When STREAM, elements go to s->each and A stays empty. */
static int array(parser *s, json_t **out, int stream) {
  json_t *a = s->skip ? NULL : json_array(), *v;
  if (!a && !s->skip)
    return out_of_memory(s);
  s->p++; /* '[' */
  skip_space(s);
  if (s->p < s->end && *s->p == ']') {
    s->p++;
    *out = a;
    return 0;
  }
  for (;;) {
    const unsigned char *elem = s->p;
    int outer_noncanon = s->noncanon;
    s->noncanon = 0;
    if (stream && s->each_text) {
      int rc = element_text(s);
      if (rc < 0)
        goto bad;
      if (rc == 0)
        goto next;
    }
    if (value(s, &v))
      goto bad;
    if (stream) {
      tt_json_span span = {(const char *)elem, (size_t)(s->p - elem),
                           !s->noncanon};
      int rc = s->each(s->each_ctx, v, &span);
      if (rc) {
        s->each_rc = rc;
        fail(s, s->p, "stopped by the reader of the array");
        goto bad;
      }
    } else if (a && json_array_append_new(a, v)) {
      out_of_memory(s);
      goto bad;
    }
  next:
    s->noncanon |= outer_noncanon;
    skip_space(s);
    if (s->p < s->end && *s->p == ',') {
      s->p++;
      skip_space(s);
      continue;
    }
    if (s->p < s->end && *s->p == ']') {
      s->p++;
      *out = a;
      return 0;
    }
    fail(s, s->p, "',' or ']' expected");
    goto bad;
  }
bad:
  json_decref(a);
  return -1;
}

/* S->p is at the first byte of a value (white space already skipped). */
static int value_at(parser *s, json_t **out);

/* Every value counts towards the depth, scalars too (as in jansson):
 * a scalar inside 2048 arrays is one level too deep. */
static int value(parser *s, json_t **out) {
  *out = NULL;
  if (++s->depth > TT_JSON_MAX_DEPTH) {
    s->depth--;
    return fail(s, s->p, "maximum nesting depth %d reached",
                TT_JSON_MAX_DEPTH);
  }
  int rc = value_at(s, out);
  s->depth--;
  return rc;
}

static int value_at(parser *s, json_t **out) {
  if (s->p >= s->end)
    return fail(s, s->p, "unexpected end of input");
  switch (*s->p) {
  case '{':
    return object(s, out);
  case '[':
    return array(s, out, 0);
  case '"': {
    const char *str;
    size_t len;
    s->p++;
    if (string_span(s, (s->flags & TT_JSON_ALLOW_NUL) != 0, &str, &len))
      return -1;
    if (s->skip)
      return 0;
    if (!(*out = json_stringn_nocheck(str, len)))
      return out_of_memory(s);
    return 0;
  }
  case 't':
    return literal(s, "true", 4, json_true(), out);
  case 'f':
    return literal(s, "false", 5, json_false(), out);
  case 'n':
    return literal(s, "null", 4, json_null(), out);
  default:
    if (*s->p == '-' || (*s->p >= '0' && *s->p <= '9'))
      return number(s, out);
    if (*s->p >= 0x20 && *s->p < 0x7F)
      return fail(s, s->p, "invalid token near '%c'", *s->p);
    return fail(s, s->p, "invalid byte 0x%02x", *s->p);
  }
}

static int run(parser *s, json_t **out) {
  json_t *v = NULL;
  int rc = 0;
  *out = NULL;
  if (s->err)
    memset(s->err, 0, sizeof *s->err);
  skip_space(s);
  if (!(s->flags & TT_JSON_ANY) &&
      (s->p >= s->end || (*s->p != '{' && *s->p != '['))) {
    fail(s, s->p, "'[' or '{' expected");
    rc = TETHER_EJSON;
  } else if (value(s, &v)) {
    rc = s->each_rc ? s->each_rc : s->nomem ? TETHER_ENOMEM : TETHER_EJSON;
  } else {
    skip_space(s);
    if (s->p != s->end) {
      fail(s, s->p, "end of input expected");
      json_decref(v);
      v = NULL;
      rc = TETHER_EJSON;
    }
  }
  free(s->buf);
  *out = v;
  return rc;
}

int tt_json_parse(const char *text, size_t len, unsigned flags, json_t **out,
                  tt_json_error *err) {
  parser s = {.start = (const unsigned char *)text,
              .p = (const unsigned char *)text,
              .end = (const unsigned char *)text + len,
              .flags = flags,
              .err = err};
  if (!text && len) {
    *out = NULL;
    return TETHER_EINVAL;
  }
  return run(&s, out);
}

int tt_json_parse_streamed(const char *text, size_t len, unsigned flags,
                           const char *key, tt_json_each_fn each, void *ctx,
                           json_t **out, tt_json_error *err) {
  return tt_json_parse_streamed_text(text, len, flags, key, NULL, each, ctx,
                                     out, err);
}

int tt_json_parse_streamed_text(const char *text, size_t len, unsigned flags,
                                const char *key, tt_json_each_text_fn each_text,
                                tt_json_each_fn each, void *ctx, json_t **out,
                                tt_json_error *err) {
  parser s = {.start = (const unsigned char *)text,
              .p = (const unsigned char *)text,
              .end = (const unsigned char *)text + len,
              .flags = flags & ~(unsigned)TT_JSON_ANY,
              .err = err,
              .stream_key = key,
              .stream_klen = key ? strlen(key) : 0,
              .each = key ? each : NULL,
              .each_text = key ? each_text : NULL,
              .each_ctx = ctx};
  if ((!text && len) || (key && !each)) {
    *out = NULL;
    return TETHER_EINVAL;
  }
  return run(&s, out);
}

int tt_json_check_canonical(const char *text, size_t len, unsigned flags) {
  parser s = {.start = (const unsigned char *)text,
              .p = (const unsigned char *)text,
              .end = (const unsigned char *)text + len,
              .flags = flags,
              .skip = 1};
  json_t *none = NULL;
  if (!text && len)
    return TETHER_EINVAL;
  int bad = value(&s, &none) || s.p != s.end || s.noncanon;
  free(s.buf);
  return bad ? (s.nomem ? TETHER_ENOMEM : TETHER_EJSON) : 0;
}

int tt_json_parse_prefix(const char *text, size_t len, unsigned flags,
                         int depth, json_t **out, size_t *used,
                         int *canonical) {
  parser s = {.start = (const unsigned char *)text,
              .p = (const unsigned char *)text,
              .end = (const unsigned char *)text + len,
              .flags = flags,
              .depth = depth};
  *out = NULL;
  if ((!text && len) || depth < 0)
    return TETHER_EINVAL;
  int rc = value(&s, out) ? (s.nomem ? TETHER_ENOMEM : TETHER_EJSON) : 0;
  free(s.buf);
  if (rc == 0) {
    *used = (size_t)(s.p - s.start);
    *canonical = !s.noncanon;
  }
  return rc;
}

json_t *tt_json_load(const char *text, size_t len, unsigned flags) {
  json_t *v;
  tt_json_parse(text, len, flags, &v, NULL);
  return v;
}
