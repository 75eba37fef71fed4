/* records.c — the server's stored keys and records.
 *
 * Hot records (replica home and dedupe records, outcomes) are small fixed
 * binary layouts so a push does not pay for JSON per intent; rare ones
 * (conflicts, audit) are compact JSON so an operator can read them. Every
 * decoder distrusts its input: a malformed record is TETHER_ECORRUPT, never
 * a crash. */
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "server/server_int.h"

/* Outcome record, all integers big-endian:
 *   u8 format, u8 kind (| OUTCOME_CLEAN), be32 p, be64 commit,
 *   [format 2 only: the intent's hash, TT_HASH_LEN bytes]
 *   u8 rule length, rule, be16 reason length, reason,
 *   the conflict as compact JSON (the rest, possibly empty).
 * Format 1 (no hash) is what stores written before the hash was kept
 * hold; it is still read, and written for an outcome without a hash. */
#define OUTCOME_FORMAT_NOHASH 1u
#define OUTCOME_FORMAT 2u
/* High bit of the kind byte: the outcome was clean (server_int.h). Records
 * written before it existed never have it set. */
#define OUTCOME_CLEAN 0x80u
#define REPLICA_FORMAT 1u
#define DEDUPE_FORMAT 1u
/* format, kind, be32 p, be64 commit, u8 rule length, be16 reason length */
#define OUTCOME_FIXED (1 + 1 + 4 + 8 + 1 + 2)

uint32_t tt_srv_fnv1a(uint32_t h, const void *data, size_t len) {
  const unsigned char *c = data;
  for (size_t i = 0; i < len; i++)
    h = (h ^ c[i]) * 16777619u;
  return h;
}

unsigned tt_server_partition_of(const char *coll, const char *id,
                                unsigned nparts) {
  uint32_t h;
  if (nparts <= 1)
    return 0;
  h = tt_srv_fnv1a(TT_SRV_FNV_INIT, coll, strlen(coll));
  /* the zero byte between, so ("ab","c") != ("a","bc") */
  h = tt_srv_fnv1a(h, "", 1);
  h = tt_srv_fnv1a(h, id, strlen(id));
  return h % nparts;
}

unsigned tt_server_home_of(const uint8_t id[TT_ID_LEN], unsigned nparts) {
  if (nparts <= 1)
    return 0;
  return tt_srv_fnv1a(TT_SRV_FNV_INIT, id, TT_ID_LEN) % nparts;
}

size_t tt_srv_doc_key(char *buf, const char *coll, const char *id) {
  size_t a = strlen(coll), b = strlen(id);
  /* Callers pass validated names (<= TT_MAX_NAME); clamp anyway so a bug
   * can never write past BUF. */
  if (a > TT_MAX_NAME)
    a = TT_MAX_NAME;
  if (b > TT_MAX_NAME)
    b = TT_MAX_NAME;
  memcpy(buf, coll, a);
  buf[a] = '\0';
  memcpy(buf + a + 1, id, b);
  return a + 1 + b;
}

void tt_srv_change_key(uint8_t out[12], uint32_t p, uint64_t seq) {
  tt_be32_put(out, p);
  tt_be64_put(out + 4, seq);
}

void tt_srv_outcome_key(uint8_t out[TT_ID_LEN + 8],
                        const uint8_t replica[TT_ID_LEN], uint64_t seq) {
  memcpy(out, replica, TT_ID_LEN);
  tt_be64_put(out + TT_ID_LEN, seq);
}

void tt_srv_dedupe_key(uint8_t out[TT_SRV_DEDUPE_KEY_LEN],
                       const uint8_t replica[TT_ID_LEN], uint32_t p) {
  memcpy(out, replica, TT_ID_LEN);
  tt_be32_put(out + TT_ID_LEN, p);
}

void tt_srv_audit_key(uint8_t out[16], uint32_t p, uint64_t seq, uint32_t n) {
  tt_be32_put(out, p);
  tt_be64_put(out + 4, seq);
  tt_be32_put(out + 12, n);
}

void tt_srv_replica_encode(const tt_srv_replica *r,
                           uint8_t out[TT_SRV_REPLICA_LEN]) {
  out[0] = REPLICA_FORMAT;
  tt_be64_put(out + 1, r->last_seq);
  memcpy(out + 9, r->last_hash, TT_HASH_LEN);
}

int tt_srv_replica_decode(tt_bytes b, tt_srv_replica *out) {
  const uint8_t *d = b.data;
  memset(out, 0, sizeof *out);
  if (b.len != TT_SRV_REPLICA_LEN || d[0] != REPLICA_FORMAT)
    return TETHER_ECORRUPT;
  out->last_seq = tt_be64_get(d + 1);
  memcpy(out->last_hash, d + 9, TT_HASH_LEN);
  return 0;
}

void tt_srv_dedupe_encode(uint64_t seq, uint8_t out[TT_SRV_DEDUPE_LEN]) {
  out[0] = DEDUPE_FORMAT;
  tt_be64_put(out + 1, seq);
}

int tt_srv_dedupe_decode(tt_bytes b, uint64_t *seq) {
  const uint8_t *d = b.data;
  *seq = 0;
  if (b.len != TT_SRV_DEDUPE_LEN || d[0] != DEDUPE_FORMAT)
    return TETHER_ECORRUPT;
  *seq = tt_be64_get(d + 1);
  return 0;
}

int tt_srv_json_encode(const json_t *v, char **buf, size_t *len) {
  if (!json_is_object(v) && !json_is_array(v))
    return TETHER_EINVAL;
  *buf = tt_canon_n(v, len);
  return *buf ? 0 : TETHER_ENOMEM;
}

int tt_srv_json_decode(tt_bytes b, json_t **out) {
  json_t *j = tt_json_load(b.data, b.len, TT_JSON_ANY);
  if (!j || !json_is_object(j)) {
    json_decref(j);
    *out = NULL;
    return TETHER_ECORRUPT;
  }
  *out = j;
  return 0;
}

int tt_srv_outcome_encode(const tt_srv_outcome *o, uint8_t **buf,
                          size_t *len) {
  size_t rl = o->rule ? o->rule_len : 0;
  size_t sl = o->reason ? o->reason_len : 0;
  char *ctxt = NULL;
  size_t cl = 0;
  uint8_t *b = NULL, *w;
  int rc = 0;

  if (rl > 255)
    rl = 255;
  if (sl > 0xffff)
    sl = 0xffff;
  if (o->conflict) {
    rc = tt_srv_json_encode(o->conflict, &ctxt, &cl);
    if (rc)
      goto out;
  }
  b = malloc(OUTCOME_FIXED + (o->hash ? TT_HASH_LEN : 0) + rl + sl + cl);
  if (!b) {
    rc = TETHER_ENOMEM;
    goto out;
  }
  w = b;
  *w++ = o->hash ? OUTCOME_FORMAT : OUTCOME_FORMAT_NOHASH;
  *w++ = (uint8_t)((unsigned)o->kind | (o->clean ? OUTCOME_CLEAN : 0u));
  tt_be32_put(w, o->p);
  w += 4;
  tt_be64_put(w, o->commit);
  w += 8;
  if (o->hash) {
    memcpy(w, o->hash, TT_HASH_LEN);
    w += TT_HASH_LEN;
  }
  *w++ = (uint8_t)rl;
  if (rl)
    memcpy(w, o->rule, rl);
  w += rl;
  *w++ = (uint8_t)(sl >> 8);
  *w++ = (uint8_t)sl;
  if (sl)
    memcpy(w, o->reason, sl);
  w += sl;
  if (cl)
    memcpy(w, ctxt, cl);
  w += cl;
  *buf = b;
  *len = (size_t)(w - b);
  b = NULL;
out:
  free(b);
  free(ctxt);
  return rc;
}

int tt_srv_outcome_decode(tt_bytes b, uint64_t seq, tt_srv_outcome *out,
                          json_t **conflict) {
  const uint8_t *d = b.data, *end = d + b.len;
  size_t rl, sl;
  int has_hash;

  memset(out, 0, sizeof *out);
  *conflict = NULL;
  if (b.len < OUTCOME_FIXED ||
      (d[0] != OUTCOME_FORMAT && d[0] != OUTCOME_FORMAT_NOHASH) ||
      (d[1] & ~OUTCOME_CLEAN) >= (uint8_t)TT_OUT__COUNT ||
      (d[0] == OUTCOME_FORMAT && b.len < OUTCOME_FIXED + TT_HASH_LEN))
    return TETHER_ECORRUPT;
  has_hash = d[0] == OUTCOME_FORMAT;
  out->seq = seq;
  out->kind = (tt_outcome_kind)(d[1] & ~OUTCOME_CLEAN);
  out->clean = (d[1] & OUTCOME_CLEAN) != 0;
  out->p = tt_be32_get(d + 2);
  out->commit = tt_be64_get(d + 6);
  d += 14;
  if (has_hash) {
    out->hash = d;
    d += TT_HASH_LEN;
  }
  rl = *d++;
  /* rule and reason go into JSON answers: they must be UTF-8 */
  if ((size_t)(end - d) < rl + 2 || !tt_utf8_valid(d, rl))
    return TETHER_ECORRUPT;
  if (rl) {
    out->rule = (const char *)d;
    out->rule_len = rl;
  }
  d += rl;
  sl = ((size_t)d[0] << 8) | d[1];
  d += 2;
  if ((size_t)(end - d) < sl || !tt_utf8_valid(d, sl))
    return TETHER_ECORRUPT;
  if (sl) {
    out->reason = (const char *)d;
    out->reason_len = sl;
  }
  d += sl;
  if (d < end) {
    tt_bytes cb = {d, (size_t)(end - d)};
    int rc = tt_srv_json_decode(cb, conflict);
    if (rc)
      return rc;
    out->conflict = *conflict;
  }
  return 0;
}

int tt_srv_outcome_partition(tt_bytes b, uint32_t *p) {
  const uint8_t *d = b.data;
  if (b.len < OUTCOME_FIXED ||
      (d[0] != OUTCOME_FORMAT && d[0] != OUTCOME_FORMAT_NOHASH))
    return TETHER_ECORRUPT;
  *p = tt_be32_get(d + 2);
  return 0;
}

static int set_new(json_t *o, const char *k, json_t *v) {
  if (!v)
    return -1;
  return json_object_set_new_nocheck(o, k, v);
}

/* Member NAME (no escapes needed) and the separator before it. */
static int put_key(tt_buf *b, int *first, const char *name) {
  if (!*first && tt_buf_add(b, ",", 1))
    return TETHER_ENOMEM;
  *first = 0;
  return tt_buf_add(b, "\"", 1) || tt_buf_add_str(b, name) ||
                 tt_buf_add(b, "\":", 2)
             ? TETHER_ENOMEM
             : 0;
}

int tt_srv_outcome_text(tt_buf *b, const tt_srv_outcome *o, int duplicate) {
  size_t start = b->len;
  int first = 1, rc = 0;
  const char *kind = tt_outcome_name(o->kind);
  /* The members in tt_canon's (bytewise) order. */
  if (tt_buf_add(b, "{", 1))
    rc = TETHER_ENOMEM;
  if (!rc && o->clean && !(rc = put_key(b, &first, "clean")))
    rc = tt_buf_add(b, "true", 4) ? TETHER_ENOMEM : 0;
  if (!rc && !(rc = put_key(b, &first, "commit")))
    rc = tt_buf_add_int(b, (int64_t)o->commit);
  if (!rc && o->conflict && !(rc = put_key(b, &first, "conflict")))
    rc = tt_canon_buf(b, o->conflict, 0);
  if (!rc && duplicate && !(rc = put_key(b, &first, "duplicate")))
    rc = tt_buf_add(b, "true", 4) ? TETHER_ENOMEM : 0;
  if (!rc && !(rc = put_key(b, &first, "outcome")))
    rc = tt_canon_str_buf(b, kind, strlen(kind));
  if (!rc && !(rc = put_key(b, &first, "p")))
    rc = tt_buf_add_int(b, o->p);
  if (!rc && o->reason && !(rc = put_key(b, &first, "reason")))
    rc = tt_canon_str_buf(b, o->reason, o->reason_len);
  if (!rc && o->rule && !(rc = put_key(b, &first, "rule")))
    rc = tt_canon_str_buf(b, o->rule, o->rule_len);
  if (!rc && !(rc = put_key(b, &first, "seq")))
    rc = tt_buf_add_int(b, (int64_t)o->seq);
  if (!rc && tt_buf_add(b, "}", 1))
    rc = TETHER_ENOMEM;
  if (rc)
    b->len = start;
  return rc;
}

/* Read from the text, so that the wire form is written in one place. */
json_t *tt_srv_outcome_json(const tt_srv_outcome *o, int duplicate) {
  tt_buf t = {0};
  json_t *j = NULL;
  /* ALLOW_NUL: a conflict's values come from stored documents. */
  if (tt_srv_outcome_text(&t, o, duplicate) == 0)
    tt_json_parse((const char *)t.data, t.len, TT_JSON_ALLOW_NUL, &j, NULL);
  tt_buf_free(&t);
  return j;
}

json_t *tt_srv_conflict_json(const tt_conflict *c) {
  json_t *j = json_object();
  int bad = 0;

  if (!j)
    return NULL;
  bad |= set_new(j, "id", json_string(c->id ? c->id : ""));
  bad |= set_new(j, "field", json_string(c->field ? c->field : ""));
  if (c->base)
    bad |= json_object_set_nocheck(j, "base", c->base);
  if (c->theirs)
    bad |= json_object_set_nocheck(j, "theirs", c->theirs);
  if (c->ours)
    bad |= json_object_set_nocheck(j, "ours", c->ours);
  if (bad) {
    json_decref(j);
    return NULL;
  }
  return j;
}

size_t tt_srv_change_encode(uint8_t out[TT_SRV_CHANGE_MAX], const char *dk,
                            size_t dkl, const uint8_t *replica, uint64_t seq) {
  memcpy(out, dk, dkl);
  if (!replica)
    return dkl;
  out[dkl] = 0;
  memcpy(out + dkl + 1, replica, TT_ID_LEN);
  tt_be64_put(out + dkl + 1 + TT_ID_LEN, seq);
  return dkl + TT_SRV_CHANGE_TAG_LEN;
}

int tt_srv_change_decode(tt_bytes val, size_t *klen, int *tagged,
                         uint8_t replica[TT_ID_LEN], uint64_t *seq) {
  const uint8_t *d = val.data;
  *klen = 0;
  *tagged = 0;
  if (val.len == 0 || val.len > TT_SRV_CHANGE_MAX)
    return TETHER_ECORRUPT;
  const uint8_t *sep = memchr(d, 0, val.len);
  if (!sep || sep == d)
    return TETHER_ECORRUPT;
  size_t rest = val.len - (size_t)(sep + 1 - d);
  const uint8_t *tag = memchr(sep + 1, 0, rest);
  if (!tag) {
    *klen = val.len;
    return *klen <= TT_SRV_DOCKEY_MAX ? 0 : TETHER_ECORRUPT;
  }
  if (tag == sep + 1 || (size_t)(d + val.len - tag) != TT_SRV_CHANGE_TAG_LEN)
    return TETHER_ECORRUPT;
  *klen = (size_t)(tag - d);
  *tagged = 1;
  memcpy(replica, tag + 1, TT_ID_LEN);
  *seq = tt_be64_get(tag + 1 + TT_ID_LEN);
  return 0;
}
