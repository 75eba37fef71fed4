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

int tt_doc_decode(const void *buf, size_t len, tt_doc *out) {
  int rc = TETHER_ECORRUPT;
  rbuf r = {buf, len};
  uint8_t m0, m1, fmt, flags;
  uint32_t n;
  memset(out, 0, sizeof *out);
  if (!buf || len < HEADER_LEN)
    goto out;
  if (rb_u8(&r, &m0) || rb_u8(&r, &m1) || rb_u8(&r, &fmt) ||
      rb_u8(&r, &flags))
    goto out;
  if (m0 != DOC_MAGIC0 || m1 != DOC_MAGIC1)
    goto out;
  if (fmt != DOC_FORMAT) {
    rc = TETHER_EVERSION;
    goto out;
  }
  if (flags & ~DOC_FLAG_DELETED)
    goto out;
  out->deleted = (flags & DOC_FLAG_DELETED) != 0;
  if (rb_u64(&r, &out->version) || rb_stamp(&r, &out->del_stamp) ||
      rb_u32(&r, &n))
    goto out;
  /* Bound the allocation by what the input can actually hold. */
  if (n > r.left / FIELD_MIN_LEN)
    goto out;
  if (n) {
    if (!(out->fields = calloc(n, sizeof *out->fields))) {
      rc = TETHER_ENOMEM;
      goto out;
    }
    out->cap = n;
  }
  for (uint32_t i = 0; i < n; i++) {
    tt_field *f = &out->fields[i];
    uint16_t nlen;
    uint8_t has;
    const uint8_t *name;
    if (rb_u16(&r, &nlen) || nlen == 0 || nlen > TT_MAX_NAME ||
        rb_take(&r, nlen, &name) || memchr(name, 0, nlen) ||
        !tt_utf8_valid(name, nlen))
      goto out;
    if (!(f->name = malloc((size_t)nlen + 1))) {
      rc = TETHER_ENOMEM;
      goto out;
    }
    memcpy(f->name, name, nlen);
    f->name[nlen] = '\0';
    out->nfields = i + 1;
    if (i > 0 && strcmp(out->fields[i - 1].name, f->name) >= 0)
      goto out;
    if (rb_u8(&r, &has) || has > 1 || rb_stamp(&r, &f->stamp))
      goto out;
    if (has) {
      uint32_t vlen;
      const uint8_t *vb;
      if (out->deleted || rb_u32(&r, &vlen) || vlen == 0 ||
          rb_take(&r, vlen, &vb))
        goto out;
      int prc = tt_json_parse((const char *)vb, vlen,
                              TT_JSON_ANY | TT_JSON_ALLOW_NUL, &f->value,
                              NULL);
      if (prc) {
        if (prc == TETHER_ENOMEM)
          rc = prc;
        goto out;
      }
    }
  }
  if (r.left != 0)
    goto out;
  rc = 0;
out:
  if (rc)
    tt_doc_clear(out);
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
