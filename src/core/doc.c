/* doc.c — the stamped document and its stored form.
 *
 * Stored form, version 1 (all integers big-endian):
 *   "TD" u8:format(=1) u8:flags (bit 0 = deleted; other bits 0)
 *   u64:version  stamp:del_stamp  u32:nfields
 *   nfields x { u16:name_len (1..TT_MAX_NAME) name
 *               u8:has_value (0|1) stamp
 *               [u32:value_len value (canonical JSON), when has_value] }
 *   stamp = u64:seq u64:hlc 16 bytes:origin
 * Field names are strictly increasing (strcmp), contain no NUL, and a
 * deleted document has no live field. The record must be consumed exactly:
 * every length is checked against what remains before it is used, so any
 * truncation or trailing garbage is TETHER_ECORRUPT.
 */
#include <stdlib.h>
#include <string.h>

#include "core/doc.h"
#include "core/json.h"

#define DOC_MAGIC0 'T'
#define DOC_MAGIC1 'D'
#define DOC_FORMAT 1
#define DOC_FLAG_DELETED 0x01
#define STAMP_LEN (8 + 8 + TT_ID_LEN)
#define HEADER_LEN (4 + 8 + STAMP_LEN + 4)
#define FIELD_MIN_LEN (2 + 1 + 1 + STAMP_LEN)

void tt_doc_clear(tt_doc *d) {
  if (!d)
    return;
  for (size_t i = 0; i < d->nfields; i++) {
    free(d->fields[i].name);
    json_decref(d->fields[i].value);
  }
  free(d->fields);
  memset(d, 0, sizeof *d);
}

int tt_doc_copy(tt_doc *dst, const tt_doc *src) {
  memset(dst, 0, sizeof *dst);
  dst->version = src->version;
  dst->deleted = src->deleted;
  dst->del_stamp = src->del_stamp;
  if (src->nfields == 0)
    return 0;
  if (!(dst->fields = calloc(src->nfields, sizeof *dst->fields)))
    return TETHER_ENOMEM;
  dst->cap = src->nfields;
  for (size_t i = 0; i < src->nfields; i++) {
    tt_field *f = &dst->fields[i];
    if (!(f->name = strdup(src->fields[i].name))) {
      tt_doc_clear(dst);
      return TETHER_ENOMEM;
    }
    f->value = json_incref(src->fields[i].value);
    f->stamp = src->fields[i].stamp;
    dst->nfields = i + 1;
  }
  return 0;
}

/* Index of NAME, or -(insertion point) - 1. */
static long find(const tt_doc *d, const char *name) {
  size_t lo = 0, hi = d->nfields;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(d->fields[mid].name, name);
    if (c == 0)
      return (long)mid;
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return -(long)lo - 1;
}

tt_field *tt_doc_field(const tt_doc *d, const char *name) {
  if (!d || !name)
    return NULL;
  long i = find(d, name);
  return i >= 0 ? &d->fields[i] : NULL;
}

tt_field *tt_doc_field_upsert(tt_doc *d, const char *name) {
  long i = find(d, name);
  if (i >= 0)
    return &d->fields[i];
  size_t at = (size_t)(-(i + 1));
  if (d->nfields == d->cap) {
    size_t ncap = d->cap ? d->cap * 2 : 8;
    tt_field *nf = realloc(d->fields, ncap * sizeof *nf);
    if (!nf)
      return NULL;
    d->fields = nf;
    d->cap = ncap;
  }
  char *copy = strdup(name);
  if (!copy)
    return NULL;
  memmove(&d->fields[at + 1], &d->fields[at],
          (d->nfields - at) * sizeof *d->fields);
  memset(&d->fields[at], 0, sizeof *d->fields);
  d->fields[at].name = copy;
  d->nfields++;
  return &d->fields[at];
}

json_t *tt_doc_view(const tt_doc *d) {
  if (!d || d->deleted || (d->version == 0 && d->nfields == 0))
    return NULL;
  json_t *o = json_object();
  if (!o)
    return NULL;
  for (size_t i = 0; i < d->nfields; i++) {
    const tt_field *f = &d->fields[i];
    if (f->value && json_object_set(o, f->name, f->value) != 0) {
      json_decref(o);
      return NULL;
    }
  }
  return o;
}

/* ---- encoding -----------------------------------------------------------*/

typedef struct {
  char *buf;
  size_t len, cap;
  int err;
} wbuf;

static int wb_reserve(wbuf *w, size_t n) {
  if (w->err)
    return -1;
  if (n <= w->cap - w->len)
    return 0;
  size_t ncap = w->cap ? w->cap : 256;
  while (ncap - w->len < n) {
    if (ncap > SIZE_MAX / 2) {
      w->err = TETHER_ETOOBIG;
      return -1;
    }
    ncap *= 2;
  }
  char *nb = realloc(w->buf, ncap);
  if (!nb) {
    w->err = TETHER_ENOMEM;
    return -1;
  }
  w->buf = nb;
  w->cap = ncap;
  return 0;
}

static void wb_put(wbuf *w, const void *p, size_t n) {
  if (wb_reserve(w, n) == 0) {
    memcpy(w->buf + w->len, p, n);
    w->len += n;
  }
}

static void wb_u8(wbuf *w, uint8_t v) { wb_put(w, &v, 1); }
static void wb_u16(wbuf *w, uint16_t v) {
  uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
  wb_put(w, b, 2);
}
static void wb_u32(wbuf *w, uint32_t v) {
  uint8_t b[4];
  tt_be32_put(b, v);
  wb_put(w, b, 4);
}
static void wb_u64(wbuf *w, uint64_t v) {
  uint8_t b[8];
  tt_be64_put(b, v);
  wb_put(w, b, 8);
}
static void wb_stamp(wbuf *w, const tt_stamp *s) {
  wb_u64(w, s->seq);
  wb_u64(w, s->hlc);
  wb_put(w, s->origin, TT_ID_LEN);
}

static int wb_json_cb(const char *buf, size_t size, void *data) {
  wbuf *w = data;
  wb_put(w, buf, size);
  return w->err ? -1 : 0;
}

int tt_doc_encode(const tt_doc *d, char **buf, size_t *len) {
  wbuf w = {0};
  *buf = NULL;
  *len = 0;
  if (d->nfields > UINT32_MAX)
    return TETHER_ETOOBIG;
  wb_u8(&w, DOC_MAGIC0);
  wb_u8(&w, DOC_MAGIC1);
  wb_u8(&w, DOC_FORMAT);
  wb_u8(&w, d->deleted ? DOC_FLAG_DELETED : 0);
  wb_u64(&w, d->version);
  wb_stamp(&w, &d->del_stamp);
  wb_u32(&w, (uint32_t)d->nfields);
  for (size_t i = 0; i < d->nfields && !w.err; i++) {
    const tt_field *f = &d->fields[i];
    size_t nlen = strlen(f->name);
    if (nlen == 0 || nlen > TT_MAX_NAME) {
      w.err = TETHER_EINVAL;
      break;
    }
    wb_u16(&w, (uint16_t)nlen);
    wb_put(&w, f->name, nlen);
    wb_u8(&w, f->value ? 1 : 0);
    wb_stamp(&w, &f->stamp);
    if (f->value) {
      /* The length is patched in after streaming the value. */
      size_t at = w.len;
      wb_u32(&w, 0);
      if (w.err)
        break;
      if (tt_canon_dump(f->value, wb_json_cb, &w) != 0 && !w.err)
        w.err = TETHER_ENOMEM;
      if (w.err)
        break;
      size_t vlen = w.len - at - 4;
      if (vlen > UINT32_MAX) {
        w.err = TETHER_ETOOBIG;
        break;
      }
      tt_be32_put((uint8_t *)w.buf + at, (uint32_t)vlen);
    }
  }
  if (w.err) {
    free(w.buf);
    return w.err;
  }
  *buf = w.buf;
  *len = w.len;
  return 0;
}

/* ---- decoding -----------------------------------------------------------*/

typedef struct {
  const uint8_t *p;
  size_t left;
} rbuf;

static int rb_take(rbuf *r, size_t n, const uint8_t **out) {
  if (n > r->left)
    return -1;
  *out = r->p;
  r->p += n;
  r->left -= n;
  return 0;
}

static int rb_u8(rbuf *r, uint8_t *v) {
  const uint8_t *b;
  if (rb_take(r, 1, &b))
    return -1;
  *v = b[0];
  return 0;
}
static int rb_u16(rbuf *r, uint16_t *v) {
  const uint8_t *b;
  if (rb_take(r, 2, &b))
    return -1;
  *v = (uint16_t)(b[0] << 8 | b[1]);
  return 0;
}
static int rb_u32(rbuf *r, uint32_t *v) {
  const uint8_t *b;
  if (rb_take(r, 4, &b))
    return -1;
  *v = tt_be32_get(b);
  return 0;
}
static int rb_u64(rbuf *r, uint64_t *v) {
  const uint8_t *b;
  if (rb_take(r, 8, &b))
    return -1;
  *v = tt_be64_get(b);
  return 0;
}
static int rb_stamp(rbuf *r, tt_stamp *s) {
  const uint8_t *b;
  if (rb_u64(r, &s->seq) || rb_u64(r, &s->hlc) || rb_take(r, TT_ID_LEN, &b))
    return -1;
  memcpy(s->origin, b, TT_ID_LEN);
  return 0;
}

/* A stored record read field by field, with every check of the format:
 * tt_doc_decode builds the document from it, tt_doc_changes_text writes a
 * pull's change from it without building one. */
typedef struct {
  rbuf r;
  uint32_t n, i; /* fields in the record, read so far */
  int deleted;
  const uint8_t *prev; /* the name before */
  uint16_t prevlen;
} doc_reader;

typedef struct {
  const uint8_t *name;
  uint16_t nlen;
  int has;
  tt_stamp stamp;
  const uint8_t *value; /* canonical JSON text, VLEN bytes, when HAS */
  uint32_t vlen;
} doc_rfield;

/* The header. 0, TETHER_ECORRUPT or TETHER_EVERSION. */
static int doc_open(doc_reader *d, const void *buf, size_t len,
                    uint64_t *version, tt_stamp *del_stamp) {
  uint8_t m0, m1, fmt, flags;
  memset(d, 0, sizeof *d);
  d->r = (rbuf){buf, len};
  if (!buf || len < HEADER_LEN)
    return TETHER_ECORRUPT;
  if (rb_u8(&d->r, &m0) || rb_u8(&d->r, &m1) || rb_u8(&d->r, &fmt) ||
      rb_u8(&d->r, &flags) || m0 != DOC_MAGIC0 || m1 != DOC_MAGIC1)
    return TETHER_ECORRUPT;
  if (fmt != DOC_FORMAT)
    return TETHER_EVERSION;
  if (flags & ~DOC_FLAG_DELETED)
    return TETHER_ECORRUPT;
  d->deleted = (flags & DOC_FLAG_DELETED) != 0;
  if (rb_u64(&d->r, version) || rb_stamp(&d->r, del_stamp) ||
      rb_u32(&d->r, &d->n))
    return TETHER_ECORRUPT;
  /* Bound what a caller allocates by what the input can actually hold. */
  if (d->n > d->r.left / FIELD_MIN_LEN)
    return TETHER_ECORRUPT;
  return 0;
}

/* The next field: 1 with *F, 0 at the end (the record consumed exactly),
 * or TETHER_ECORRUPT. Names come strictly increasing (strcmp's order, as
 * they hold no NUL). */
static int doc_next(doc_reader *d, doc_rfield *f) {
  if (d->i == d->n)
    return d->r.left == 0 ? 0 : TETHER_ECORRUPT;
  uint8_t has;
  if (rb_u16(&d->r, &f->nlen) || f->nlen == 0 || f->nlen > TT_MAX_NAME ||
      rb_take(&d->r, f->nlen, &f->name) || memchr(f->name, 0, f->nlen) ||
      !tt_utf8_valid(f->name, f->nlen))
    return TETHER_ECORRUPT;
  if (d->i > 0) {
    size_t m = d->prevlen < f->nlen ? d->prevlen : f->nlen;
    int c = memcmp(d->prev, f->name, m);
    if (c > 0 || (c == 0 && d->prevlen >= f->nlen))
      return TETHER_ECORRUPT;
  }
  d->prev = f->name;
  d->prevlen = f->nlen;
  if (rb_u8(&d->r, &has) || has > 1 || rb_stamp(&d->r, &f->stamp))
    return TETHER_ECORRUPT;
  f->has = has;
  f->value = NULL;
  f->vlen = 0;
  if (has && (d->deleted || rb_u32(&d->r, &f->vlen) || f->vlen == 0 ||
              rb_take(&d->r, f->vlen, &f->value)))
    return TETHER_ECORRUPT;
  d->i++;
  return 1;
}

int tt_doc_decode(const void *buf, size_t len, tt_doc *out) {
  doc_reader d;
  doc_rfield f;
  memset(out, 0, sizeof *out);
  int rc = doc_open(&d, buf, len, &out->version, &out->del_stamp);
  out->deleted = d.deleted;
  if (!rc && d.n) {
    if ((out->fields = calloc(d.n, sizeof *out->fields)))
      out->cap = d.n;
    else
      rc = TETHER_ENOMEM;
  }
  while (!rc && (rc = doc_next(&d, &f)) == 1) {
    rc = 0;
    tt_field *o = &out->fields[out->nfields];
    if (!(o->name = malloc((size_t)f.nlen + 1))) {
      rc = TETHER_ENOMEM;
      break;
    }
    memcpy(o->name, f.name, f.nlen);
    o->name[f.nlen] = '\0';
    o->stamp = f.stamp;
    out->nfields++;
    if (f.has) {
      int prc = tt_json_parse((const char *)f.value, f.vlen,
                              TT_JSON_ANY | TT_JSON_ALLOW_NUL, &o->value,
                              NULL);
      if (prc) {
        rc = prc == TETHER_ENOMEM ? prc : TETHER_ECORRUPT;
        break;
      }
    }
  }
  if (rc)
    tt_doc_clear(out);
  return rc;
}

int tt_doc_peek(const void *buf, size_t len, uint64_t *version,
                int *deleted) {
  doc_reader d;
  tt_stamp del;
  int rc = doc_open(&d, buf, len, version, &del);
  *deleted = d.deleted;
  return rc;
}

/* Appends VALUE (a stored field value) as canonical text: as it is when
 * the reader vouches for it, else through a tree (a \u escape, say). B
 * NULL: only checks that it is a value tt_doc_decode accepts. */
static int put_value(tt_buf *b, const uint8_t *value, uint32_t vlen) {
  const unsigned flags = TT_JSON_ANY | TT_JSON_ALLOW_NUL;
  int rc = tt_json_check_canonical((const char *)value, vlen, flags);
  if (rc == 0)
    return b && tt_buf_add(b, value, vlen) ? TETHER_ENOMEM : 0;
  if (rc == TETHER_ENOMEM)
    return rc;
  json_t *v = NULL;
  rc = tt_json_parse((const char *)value, vlen, flags, &v, NULL);
  if (rc)
    return rc == TETHER_ENOMEM ? rc : TETHER_ECORRUPT;
  rc = b ? tt_canon_buf(b, v, 0) : 0;
  json_decref(v);
  return rc == TETHER_ENOMEM ? rc : rc ? TETHER_ECORRUPT : 0;
}

int tt_doc_changes_text(const void *buf, size_t len, uint64_t cursor_seq,
                        tt_buf *out) {
  doc_reader d;
  doc_rfield f;
  uint64_t version;
  tt_stamp del;
  tt_buf unset = {0};
  size_t start = out->len;
  int nset = 0, rc = doc_open(&d, buf, len, &version, &del);
  while (!rc && (rc = doc_next(&d, &f)) == 1) {
    rc = 0;
    if (d.deleted || f.stamp.seq <= cursor_seq) {
      /* Not sent, but checked: the record is refused as tt_doc_decode
       * refuses it. */
      if (f.has)
        rc = put_value(NULL, f.value, f.vlen);
      continue;
    }
    static const char open_set[] = ",\"set\":{", open_unset[] = ",\"unset\":[";
    tt_buf *b = f.has ? out : &unset;
    int first = f.has ? nset++ == 0 : unset.len == 0;
    const char *sep = !first ? "," : f.has ? open_set : open_unset;
    size_t seplen = !first ? 1
                    : f.has ? sizeof open_set - 1
                            : sizeof open_unset - 1;
    if (tt_buf_add(b, sep, seplen))
      rc = TETHER_ENOMEM;
    if (!rc)
      rc = tt_canon_str_buf(b, (const char *)f.name, f.nlen);
    if (!rc && f.has)
      rc = tt_buf_add(out, ":", 1) ? TETHER_ENOMEM
                                   : put_value(out, f.value, f.vlen);
    if (rc == TETHER_EINVAL)
      rc = TETHER_ECORRUPT;
  }
  if (!rc && nset && tt_buf_add(out, "}", 1))
    rc = TETHER_ENOMEM;
  if (!rc && unset.len &&
      (tt_buf_add(out, unset.data, unset.len) || tt_buf_add(out, "]", 1)))
    rc = TETHER_ENOMEM;
  tt_buf_free(&unset);
  if (rc)
    out->len = start;
  return rc;
}

/* ---- changes ------------------------------------------------------------*/

int tt_doc_changes_since(const tt_doc *d, uint64_t cursor_seq, json_t **set,
                         json_t **unset) {
  json_t *s = json_object(), *u = json_array();
  *set = NULL;
  *unset = NULL;
  if (!s || !u)
    goto nomem;
  if (!d->deleted) {
    for (size_t i = 0; i < d->nfields; i++) {
      const tt_field *f = &d->fields[i];
      if (f->stamp.seq <= cursor_seq)
        continue;
      if (f->value) {
        if (json_object_set(s, f->name, f->value) != 0)
          goto nomem;
      } else if (json_array_append_new(u, json_string(f->name)) != 0) {
        goto nomem;
      }
    }
  }
  *set = s;
  *unset = u;
  return 0;
nomem:
  json_decref(s);
  json_decref(u);
  return TETHER_ENOMEM;
}
