/* sync.c — the push and pull messages (docs/PROTOCOL.md): building
 * requests from the outbox and cursor, and applying the server's answers
 * durably, each in one local transaction. */
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "core/merge.h"
#include "replica/internal.h"

#define MAX_WAIT_MS 60000u

/* ---- push request -------------------------------------------------------- */

/* The request body is spliced from the stored wire text of each intent:
 * parsing every intent into a tree only to print it again was most of the
 * cost of a push on the replica (BENCHMARKS.md, "Where the time goes"). */
typedef struct {
  uint64_t expect; /* next seq wanted: the request stays contiguous */
  size_t max;
  size_t n;
  tt_buf *body;
  int err;
} push_ctx;

/* Stored intents were written by this replica as JSON objects; anything
 * else is a damaged record, which must not leave as part of a request. */
static int looks_like_object(const char *s, size_t n) {
  return n >= 2 && s[0] == '{' && s[n - 1] == '}' && !memchr(s, 0, n);
}

static int push_cb(void *vctx, tt_bytes k, tt_bytes v) {
  push_ctx *c = vctx;
  if (c->n >= c->max) return 1;
  if (k.len != 8 || tt_be64_get(k.data) != c->expect) return 1;
  tt_robx o;
  if ((c->err = tt_r_obx_decode(v, &o))) return 2;
  if (c->n > 0 && c->body->len + o.json_len > TT_R_PUSH_MAX_BYTES) return 1;
  if (!looks_like_object(o.json, o.json_len)) {
    c->err = TETHER_ECORRUPT;
    return 2;
  }
  if ((c->n > 0 && tt_buf_add(c->body, ",", 1)) ||
      tt_buf_add(c->body, o.json, o.json_len)) {
    c->err = TETHER_ENOMEM;
    return 2;
  }
  c->n++;
  c->expect++;
  return 0;
}

void tt_push_body_clear(tt_push_body *b) {
  if (!b) return;
  free(b->text);
  memset(b, 0, sizeof *b);
}

int tt_replica_push_body(tt_replica *r, size_t max_intents, uint64_t from,
                         int ahead, tt_push_body *out) {
  if (!out) return TETHER_EINVAL;
  memset(out, 0, sizeof *out);
  if (!r) return TETHER_EINVAL;
  if (max_intents == 0 || max_intents > TT_MAX_INTENTS)
    max_intents = TT_MAX_INTENTS;
  tt_txn *t = NULL;
  tt_buf body = {0};
  push_ctx c = {0, max_intents, 0, &body, 0};
  int rc;
  /* Always a transaction of its own, never an open batch's: only intents
   * durably committed may leave. Were a batch's intent applied by the
   * server and the batch then aborted, its seq would be reused for another
   * intent and the chain would break for good. */
  if ((rc = tt_txn_begin(r->st, 0, 0, &t))) goto out;
  tt_rchain ch;
  if ((rc = tt_r_chain_load(t, &ch))) goto out;
  c.expect = ch.acked + 1;
  if (from > c.expect) c.expect = from;
  if (c.expect >= ch.next_seq) {
    rc = TETHER_ENOTFOUND;
    goto out;
  }
  static const char start[] = "{\"intents\":[";
  static const char start_ahead[] = "{\"ahead\":true,\"intents\":[";
  if ((rc = ahead ? tt_buf_add(&body, start_ahead, sizeof start_ahead - 1)
                  : tt_buf_add(&body, start, sizeof start - 1)))
    goto out;
  uint64_t lo = c.expect;
  uint8_t sk[8];
  tt_r_seqkey(sk, c.expect);
  rc = tt_scan(t, TT_TABLE_OUTBOX, (tt_bytes){sk, 8}, push_cb, &c);
  if (rc == 2) rc = c.err;
  if (rc < 0) goto out;
  rc = 0;
  if (c.n == 0) {
    /* Unacknowledged seqs exist but their records do not. */
    rc = TETHER_ECORRUPT;
    goto out;
  }
  /* "seen": the outcomes this replica has durably recorded (all seqs up
   * to it), so that the server keeps the others even when this push
   * starts past them (sent ahead of the previous push's outcomes). */
  char head[128];
  int hn = snprintf(head, sizeof head,
                "],\"replica\":\"%s\",\"seen\":%llu,\"v\":%d}", r->id_hex,
                (unsigned long long)ch.acked, TETHER_PROTOCOL_VERSION);
  if (tt_buf_add(&body, head, (size_t)hn) || tt_buf_add(&body, "", 1)) {
    rc = TETHER_ENOMEM;
    goto out;
  }
  out->text = (char *)body.data;
  out->len = body.len - 1;
  out->lo = lo;
  out->hi = c.expect - 1;
  out->n = c.n;
  body.data = NULL;
out:
  tt_abort(t);
  tt_buf_free(&body);
  return rc;
}

int tt_replica_push_request(tt_replica *r, size_t max_intents, json_t **req) {
  if (!req) return TETHER_EINVAL;
  *req = NULL;
  tt_push_body b;
  int rc = tt_replica_push_body(r, max_intents, 0, 0, &b);
  if (rc) return rc;
  json_t *o = tt_json_load(b.text, b.len, 0);
  tt_push_body_clear(&b);
  if (!json_is_object(o)) {
    json_decref(o);
    return TETHER_ECORRUPT; /* a stored intent is not valid JSON */
  }
  *req = o;
  return 0;
}

/* ---- push response ------------------------------------------------------- */

static int get_u64(const json_t *o, const char *k, uint64_t *out) {
  const json_t *v = json_object_get(o, k);
  if (!json_is_integer(v) || json_integer_value(v) < 0) return TETHER_EPROTO;
  *out = (uint64_t)json_integer_value(v);
  return 0;
}

/* Seq range of the intents in REQ, as built by tt_replica_push_request. */
static int req_range(const json_t *req, uint64_t *lo, uint64_t *hi) {
  const json_t *a = json_object_get(req, "intents");
  size_t n = json_array_size(a);
  if (n == 0) return TETHER_EINVAL;
  if (get_u64(json_array_get(a, 0), "seq", lo) ||
      get_u64(json_array_get(a, n - 1), "seq", hi) || *hi < *lo)
    return TETHER_EINVAL;
  return 0;
}

/* Records the conflict the server holds for one of our intents, once. */
static int store_conflict(tt_txn *t, const json_t *cf, const char *coll,
                          const char *id, const uint8_t *key, size_t klen) {
  const char *cid = json_string_value(json_object_get(cf, "id"));
  const char *field = json_string_value(json_object_get(cf, "field"));
  if (!cid || !field || !tt_name_valid(field) || cid[0] == 0 ||
      strlen(cid) > 2 * TT_MAX_NAME)
    return TETHER_EPROTO;
  tt_bytes ck = {cid, strlen(cid)}, v;
  int rc = tt_get(t, TT_TABLE_RCONFLICTS, ck, &v);
  if (rc == 0) return 0;
  if (rc != TETHER_ENOTFOUND) return rc;
  json_t *rec = json_pack("{s:s,s:s,s:s}", "coll", coll, "id", id, "field",
                          field);
  if (!rec) return TETHER_ENOMEM;
  static const char *const parts[] = {"base", "theirs", "ours"};
  for (size_t i = 0; i < 3; i++) {
    json_t *pv = json_object_get(cf, parts[i]);
    if (pv && !json_is_null(pv) && json_object_set(rec, parts[i], pv)) {
      json_decref(rec);
      return TETHER_ENOMEM;
    }
  }
  size_t len;
  char *text = tt_r_dump(rec, &len);
  json_decref(rec);
  if (!text) return TETHER_ENOMEM;
  rc = tt_put(t, TT_TABLE_RCONFLICTS, ck, (tt_bytes){text, len});
  free(text);
  if (rc) return rc;
  tt_rstatus st;
  if ((rc = tt_r_status_load(t, key, klen, &st))) return rc;
  st.nconflicts++;
  return tt_r_status_store(t, key, klen, &st);
}

/* A clean outcome ("clean": true): the server applied the intent, alone,
 * to the version it was written against. When this replica still holds
 * that version confirmed, the result is computed here with the value
 * rules the server used, stored as confirmed at COMMIT, and *DONE set; the
 * intent then needs no pull to confirm it, and the pulls that say "own"
 * will not bring it back. Otherwise (*DONE 0) it waits for a pull like
 * any acknowledged intent. JSON is the stored intent text, parsed before
 * anything is written. */
static int confirm_clean(tt_txn *t, const char *json, size_t json_len,
                         const uint8_t *key, size_t klen, uint64_t commit,
                         int *done) {
  tt_intent in = {0};
  tt_rdoc d = {0};
  json_t *next = NULL;
  *done = 0;
  json_t *ij = tt_json_load(json, json_len, 0);
  int rc = ij ? tt_intent_from_json(ij, &in, NULL, 0) : TETHER_ECORRUPT;
  json_decref(ij);
  if (rc) {
    rc = TETHER_ECORRUPT;
    goto out;
  }
  if ((rc = tt_r_doc_load(t, key, klen, &d))) goto out;
  if ((d.exists ? d.version : 0) != in.base || commit <= in.base) goto out;
  rc = tt_view_apply(d.deleted ? NULL : d.obj, &in, &next);
  if (rc == TETHER_ETYPE) {
    rc = 0; /* the server's rules say otherwise: let the pull decide */
    goto out;
  }
  if (rc) goto out;
  if ((rc = tt_r_doc_store(t, key, klen, commit, next == NULL, next)))
    goto out;
  *done = 1;
out:
  json_decref(next);
  tt_r_doc_clear(&d);
  tt_intent_clear(&in);
  return rc;
}

/* confirm_clean without reading the intent back. When the intent is its
 * document's only pending one, was written on BASE, the version confirmed
 * now, and the overlay differs from the confirmed record, the overlay IS
 * the confirmed state with this intent applied: a local write is refused
 * unless it fits, and the overlay is recomputed whenever the confirmed
 * state changes (so it could only lack the intent's effect by equalling the
 * confirmed record). Its text then becomes the confirmed record as it is,
 * at COMMIT. *DONE 0: not that case, and nothing written. */
static int confirm_from_overlay(tt_txn *t, const uint8_t *key, size_t klen,
                                uint64_t seq, uint64_t base, uint64_t commit,
                                int *done) {
  tt_bytes dv = {NULL, 0}, vv;
  uint64_t version = 0;
  int live = 0;
  *done = 0;
  if (commit <= base) return 0;
  int rc = tt_r_pending_only(t, key, klen, seq);
  if (rc <= 0) return rc;
  rc = tt_get_tmp(t, TT_TABLE_DOCS, (tt_bytes){key, klen}, &dv);
  if (rc == 0) {
    const uint8_t *d = dv.data;
    if (dv.len < 9 || d[0] > 1) return TETHER_ECORRUPT;
    live = d[0] == 0;
    version = tt_be64_get(d + 1);
  } else if (rc != TETHER_ENOTFOUND) {
    return rc;
  }
  if (version != base) return 0;
  rc = tt_get_tmp(t, TT_TABLE_VIEW, (tt_bytes){key, klen}, &vv);
  if (rc) return rc == TETHER_ENOTFOUND ? TETHER_ECORRUPT : rc;
  const uint8_t *o = vv.data;
  if (vv.len < 1 || o[0] > 1) return TETHER_ECORRUPT;
  int vlive = o[0] == 0;
  size_t tlen = vlive ? vv.len - 1 : 0;
  if (vlive == live &&
      (!live || (tlen == dv.len - 9 &&
                 memcmp(o + 1, (const uint8_t *)dv.data + 9, tlen) == 0)))
    return 0;
  uint8_t *rec = malloc(9 + tlen);
  if (!rec) return TETHER_ENOMEM;
  rec[0] = vlive ? 0 : 1;
  tt_be64_put(rec + 1, commit);
  memcpy(rec + 9, o + 1, tlen);
  rc = tt_put(t, TT_TABLE_DOCS, (tt_bytes){key, klen},
              (tt_bytes){rec, 9 + tlen});
  free(rec);
  if (rc == 0) *done = 1;
  return rc;
}

/* Appends the ROUTCOMES record of one intent to B: KIND, then the canonical
 * JSON {"coll","conflict","id","label","outcome","reason","rule","seq"}
 * (NULL members left out), written as text: there is one per intent
 * pushed. 0, TETHER_EINVAL (a string that is not UTF-8) or ENOMEM. */
static int outcome_record(tt_buf *b, uint8_t kind, const char *coll,
                          const char *conflict, const char *id,
                          const char *label, const char *outcome,
                          const char *reason, const char *rule, uint64_t seq) {
  const struct {
    const char *key, *val;
  } members[] = {{"coll", coll},       {"conflict", conflict},
                 {"id", id},           {"label", label},
                 {"outcome", outcome}, {"reason", reason},
                 {"rule", rule}};
  int rc;
  if (tt_buf_add(b, &kind, 1) || tt_buf_add(b, "{", 1)) return TETHER_ENOMEM;
  for (size_t i = 0; i < sizeof members / sizeof members[0]; i++) {
    if (!members[i].val) continue;
    if (tt_buf_add(b, "\"", 1) ||
        tt_buf_add(b, members[i].key, strlen(members[i].key)) ||
        tt_buf_add(b, "\":", 2))
      return TETHER_ENOMEM;
    if ((rc = tt_canon_str_buf(b, members[i].val, strlen(members[i].val))))
      return rc;
    if (tt_buf_add(b, ",", 1)) return TETHER_ENOMEM;
  }
  /* seq <= INT64_MAX: intents are refused past it. */
  return tt_buf_add(b, "\"seq\":", 6) || tt_buf_add_int(b, (int64_t)seq) ||
                 tt_buf_add(b, "}", 1)
             ? TETHER_ENOMEM
             : 0;
}

/* Applies one outcome of the response to an unacknowledged intent. */
static int apply_outcome(tt_replica *r, tt_txn *t, const json_t *oc,
                         uint64_t lo, uint64_t hi) {
  uint64_t seq, p = 0, commit = 0;
  tt_outcome_kind kind = TT_OUT_APPLIED;
  tt_bytes v;
  tt_robx o;
  uint8_t sk[8], key[TT_R_KEYMAX];
  char coll[TT_MAX_NAME + 1], id[TT_MAX_NAME + 1];
  char label[TT_MAX_LABEL + 1];
  int has_label, rc, clean = 0, from_overlay = 0;
  tt_buf b = {0};
  uint8_t *rec = NULL;
  size_t klen, len;

  if (!json_is_object(oc) || get_u64(oc, "seq", &seq)) return TETHER_EPROTO;
  const char *oname = json_string_value(json_object_get(oc, "outcome"));
  /* The server applied this intent once, earlier, and has forgotten its
   * outcome (PROTOCOL.md: it answers so only after checking that the
   * redelivered intent is the one it applied). For an intent we still
   * hold unacknowledged, that is its acknowledgement: ignoring it would
   * re-push it forever. Its effect, whatever it was, comes with the next
   * pull. */
  int forgotten = oname && strcmp(oname, "duplicate") == 0 &&
                  json_is_true(json_object_get(oc, "duplicate"));
  if (!forgotten && (!oname || tt_outcome_parse(oname, &kind)))
    return TETHER_EPROTO;
  if (seq < lo || seq > hi) return 0; /* not an intent we sent */
  tt_r_seqkey(sk, seq);
  rc = tt_get(t, TT_TABLE_OUTBOX, (tt_bytes){sk, 8}, &v);
  if (rc == TETHER_ENOTFOUND) return 0; /* already taken */
  if (rc) return rc;
  if ((rc = tt_r_obx_decode(v, &o))) return rc;
  if (o.state != TT_ROBX_PENDING) return 0;
  if (!forgotten && kind != TT_OUT_REJECTED &&
      (get_u64(oc, "p", &p) || get_u64(oc, "commit", &commit) ||
       p > UINT32_MAX))
    return TETHER_EPROTO;
  /* Copy what we need: the record's bytes may move on the next write. */
  klen = o.klen;
  memcpy(key, o.key, klen);
  has_label = o.label != NULL;
  if (has_label) {
    memcpy(label, o.label, o.label_len);
    label[o.label_len] = 0;
  }
  if ((rc = tt_r_dockey_split(key, klen, coll, id))) return rc;

  const json_t *conflict = NULL;
  const char *reason = NULL, *rule = NULL, *cid = NULL;
  if (forgotten) {
    /* Nothing more is known about it. */
  } else if (kind == TT_OUT_MERGED) {
    rule = json_string_value(json_object_get(oc, "rule"));
  } else if (kind == TT_OUT_CONFLICT) {
    conflict = json_object_get(oc, "conflict");
    cid = json_string_value(json_object_get(conflict, "id"));
    if (!json_is_object(conflict) || !cid) {
      rc = TETHER_EPROTO;
      goto out;
    }
  } else if (kind == TT_OUT_REJECTED) {
    reason = json_string_value(json_object_get(oc, "reason"));
    if (!reason) reason = "rejected";
  }

  if (forgotten) {
    /* No (p, commit) to wait for: it leaves the outbox now, and the view
     * shows the confirmed state until the pull that follows brings its
     * effect. That pull must not skip it as one of our own writes. */
    if ((rc = tt_r_own_hold(t, seq)) ||
        (rc = tt_r_obx_drop_pending(t, seq, key, klen)) ||
        (rc = tt_r_view_recompute(t, key, klen)))
      goto out;
  } else if (kind == TT_OUT_REJECTED) {
    if ((rc = tt_r_obx_drop_pending(t, seq, key, klen)) ||
        (rc = tt_r_view_recompute(t, key, klen)))
      goto out;
    rc = tt_r_has_pending_after(t, key, klen, seq);
    if (rc < 0) goto out;
    if (rc == 0) {
      tt_rstatus st;
      if ((rc = tt_r_status_load(t, key, klen, &st))) goto out;
      st.rejected = 1;
      st.rejected_seq = seq;
      if ((rc = tt_r_status_store(t, key, klen, &st))) goto out;
    }
    rc = 0;
    TT_R_ERR(r, "intent %llu on %s/%s rejected: %s", (unsigned long long)seq,
             coll, id, reason);
  } else if (kind == TT_OUT_APPLIED &&
             json_is_true(json_object_get(oc, "clean")) &&
             ((o.has_base &&
               ((rc = confirm_from_overlay(t, key, klen, seq, o.base, commit,
                                           &from_overlay)) ||
                from_overlay)) ||
              (rc = confirm_clean(t, o.json, o.json_len, key, klen, commit,
                                  &clean)) ||
              clean)) {
    /* From the overlay: no pending intent is left, nor its overlay. */
    if (rc || (rc = tt_r_obx_drop_pending(t, seq, key, klen)) ||
        (rc = from_overlay
                  ? tt_del(t, TT_TABLE_VIEW, (tt_bytes){key, klen})
                  : tt_r_view_recompute(t, key, klen)))
      goto out;
  } else {
    tt_robx n = o;
    n.state = TT_ROBX_ACKED;
    n.p = (uint32_t)p;
    n.commit = commit;
    uint8_t ik[TT_R_ACKIDX_LEN];
    tt_r_ackidx_key(ik, n.p, n.commit, seq);
    if ((rc = tt_r_obx_encode(&n, &rec, &len)) ||
        (rc = tt_put(t, TT_TABLE_OUTBOX, (tt_bytes){sk, 8},
                     (tt_bytes){rec, len})) ||
        (rc = tt_put(t, TT_TABLE_OUTBOX, (tt_bytes){ik, sizeof ik},
                     (tt_bytes){"", 0})))
      goto out;
    if (conflict && (rc = store_conflict(t, conflict, coll, id, key, klen)))
      goto out;
  }

  /* Kind byte first so counting rejections needs no JSON parse (a
   * forgotten duplicate counts as not rejected: TT_OUT_APPLIED). */
  rc = outcome_record(&b, (uint8_t)kind, coll, cid, id,
                      has_label ? label : NULL,
                      forgotten ? "duplicate" : tt_outcome_name(kind), reason,
                      rule, seq);
  if (rc == TETHER_EINVAL) rc = TETHER_EPROTO; /* not UTF-8 */
  if (!rc)
    rc = tt_put(t, TT_TABLE_ROUTCOMES, (tt_bytes){sk, 8},
                (tt_bytes){b.data, b.len});
out:
  tt_buf_free(&b);
  free(rec);
  return rc;
}

int tt_replica_push_done(tt_replica *r, const json_t *req, int status,
                         const json_t *resp) {
  if (!r) return TETHER_EINVAL;
  uint64_t lo = 0, hi = 0;
  /* A request of another shape becomes the empty range, refused below. */
  if (!json_is_object(req) || req_range(req, &lo, &hi)) lo = hi = 0;
  return tt_replica_push_done_range(r, lo, hi, status, resp);
}

int tt_replica_push_done_range(tt_replica *r, uint64_t lo, uint64_t hi,
                               int status, const json_t *resp) {
  if (!r) return TETHER_EINVAL;
  r->err[0] = 0;
  int rc = tt_r_no_batch(r, "push");
  if (rc) return rc;
  if (status != 200) return tt_r_http_error(r, "push", status, resp);
  if (lo == 0 || hi < lo) {
    TT_R_ERR(r, "push: not a request built by this replica");
    return TETHER_EINVAL;
  }
  const json_t *outs = json_object_get(resp, "outcomes");
  if (!json_is_object(resp) || !json_is_array(outs)) {
    TT_R_ERR(r, "push: response without outcomes");
    return TETHER_EPROTO;
  }
  tt_txn *t = NULL;
  if ((rc = tt_txn_begin(r->st, 0, 1, &t))) return rc;
  tt_rchain ch;
  if ((rc = tt_r_chain_load(t, &ch))) goto out;
  char keep[sizeof r->err];
  keep[0] = 0;
  for (size_t i = 0; i < json_array_size(outs); i++) {
    rc = apply_outcome(r, t, json_array_get(outs, i), lo, hi);
    if (rc == TETHER_EPROTO) {
      TT_R_ERR(r, "push: malformed outcome %zu", i);
      goto out;
    }
    if (rc) goto out;
    if (r->err[0] && !keep[0]) memcpy(keep, r->err, sizeof keep);
  }
  /* Advance the acknowledged prefix over intents that now have an outcome
   * (acked, or removed as rejected). */
  while (ch.acked + 1 < ch.next_seq) {
    uint8_t sk[8];
    tt_bytes v;
    tt_robx o;
    tt_r_seqkey(sk, ch.acked + 1);
    rc = tt_get(t, TT_TABLE_OUTBOX, (tt_bytes){sk, 8}, &v);
    if (rc == 0) {
      if ((rc = tt_r_obx_decode(v, &o))) goto out;
      if (o.state != TT_ROBX_ACKED) break;
    } else if (rc != TETHER_ENOTFOUND) {
      goto out;
    }
    ch.acked++;
  }
  rc = tt_r_chain_store(t, &ch);
  if (!rc) rc = tt_r_own_update(t, &ch);
  if (rc) goto out;
  rc = tt_commit(t);
  t = NULL;
  /* The first rejection is the one worth reporting. */
  if (rc == 0 && keep[0]) memcpy(r->err, keep, sizeof keep);
out:
  tt_abort(t);
  return rc;
}

/* ---- pull ---------------------------------------------------------------- */

/* {"v","replica","cursor":CURSOR,"wait_ms"[,"limit"][,"resume"]}. */
static int pull_req_build(tt_replica *r, json_t *cursor, json_t *resume,
                          size_t limit, uint64_t wait_ms, uint64_t own,
                          json_t **req) {
  if (wait_ms > MAX_WAIT_MS) wait_ms = MAX_WAIT_MS;
  json_t *o = json_pack("{s:i,s:s,s:O,s:I}", "v", TETHER_PROTOCOL_VERSION,
                        "replica", r->id_hex, "cursor", cursor, "wait_ms",
                        (json_int_t)wait_ms);
  if (!o ||
      (limit > 0 &&
       json_object_set_new(o, "limit", json_integer((json_int_t)limit))) ||
      (resume && json_object_set(o, "resume", resume)) ||
      (own && json_object_set_new(o, "own", json_integer((json_int_t)own)))) {
    json_decref(o);
    return TETHER_ENOMEM;
  }
  *req = o;
  return 0;
}

int tt_replica_pull_request(tt_replica *r, size_t limit, uint64_t wait_ms,
                            json_t **req) {
  if (!req) return TETHER_EINVAL;
  *req = NULL;
  if (!r) return TETHER_EINVAL;
  tt_txn *t = NULL;
  uint64_t *cur = NULL;
  size_t n = 0;
  json_t *a = NULL;
  int rc = tt_r_begin(r, 0, &t);
  if (rc) return rc;
  uint64_t own = 0;
  rc = tt_r_cursor_load(t, &cur, &n);
  if (!rc) rc = tt_r_own_load(t, &own);
  tt_r_end(r, t);
  if (rc) goto out;
  rc = TETHER_ENOMEM;
  if (!(a = json_array())) goto out;
  for (size_t i = 0; i < n; i++)
    if (json_array_append_new(a, json_integer((json_int_t)cur[i]))) goto out;
  rc = pull_req_build(r, a, r->resume, limit, wait_ms, own, req);
out:
  json_decref(a);
  free(cur);
  return rc;
}

int tt_replica_pull_next_request(tt_replica *r, const json_t *resp,
                                 size_t limit, json_t **req) {
  if (!req) return TETHER_EINVAL;
  *req = NULL;
  if (!r || !json_is_object(resp)) return TETHER_EINVAL;
  if (!json_is_true(json_object_get(resp, "more"))) return TETHER_ENOTFOUND;
  json_t *cursor = json_object_get(resp, "cursor");
  uint64_t *cur = NULL;
  size_t n = 0;
  /* Only a cursor pull_done would accept goes out again. */
  int rc = tt_r_cursor_parse(cursor, &cur, &n, TETHER_EPROTO);
  free(cur);
  if (rc) return rc;
  json_t *resume = json_object_get(resp, "resume");
  /* "own" as stored now: applying RESP can only raise it, and a lower one
   * only means fewer changes skipped. */
  uint64_t own = 0;
  tt_txn *t = NULL;
  if ((rc = tt_r_begin(r, 0, &t))) return rc;
  rc = tt_r_own_load(t, &own);
  tt_r_end(r, t);
  if (rc) return rc;
  return pull_req_build(r, cursor, json_is_array(resume) ? resume : NULL,
                        limit, 0, own, req);
}

/* A document touched by this pull: re-based after the page is applied. */
typedef struct {
  uint8_t *key;
  size_t klen;
  uint64_t version; /* confirmed version, when PAGED */
  uint32_t p;
  int paged; /* arrived in this page; else only an intent was swept */
} touched;

typedef struct {
  touched *v;
  size_t n, cap;
} touched_set;

static int touched_add(touched_set *s, const uint8_t *key, size_t klen,
                       uint64_t version, uint32_t p, int paged) {
  if (s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 64;
    touched *nv = realloc(s->v, cap * sizeof *nv);
    if (!nv) return TETHER_ENOMEM;
    s->v = nv;
    s->cap = cap;
  }
  uint8_t *k = malloc(klen);
  if (!k) return TETHER_ENOMEM;
  memcpy(k, key, klen);
  s->v[s->n++] = (touched){k, klen, version, p, paged};
  return 0;
}

static void touched_free(touched_set *s) {
  for (size_t i = 0; i < s->n; i++) free(s->v[i].key);
  free(s->v);
  memset(s, 0, sizeof *s);
}

static int touched_cmp(const void *a, const void *b) {
  const touched *x = a, *y = b;
  size_t m = x->klen < y->klen ? x->klen : y->klen;
  int c = memcmp(x->key, y->key, m);
  if (c) return c;
  if (x->klen != y->klen) return x->klen < y->klen ? -1 : 1;
  return y->paged - x->paged;
}

/* Applies one change to the confirmed documents. */
static int apply_change(tt_txn *t, const json_t *ch, touched_set *ts,
                        int track) {
  const char *coll = json_string_value(json_object_get(ch, "coll"));
  const char *id = json_string_value(json_object_get(ch, "id"));
  const json_t *set = json_object_get(ch, "set");
  const json_t *unset = json_object_get(ch, "unset");
  const json_t *del = json_object_get(ch, "deleted");
  uint64_t version, p = 0;
  if (!coll || !id || !tt_name_valid(coll) || !tt_name_valid(id) ||
      get_u64(ch, "version", &version) || (set && !json_is_object(set)) ||
      (unset && !json_is_array(unset)) || (del && !json_is_boolean(del)))
    return TETHER_EPROTO;
  if (json_object_get(ch, "p") &&
      (get_u64(ch, "p", &p) || p >= TT_R_MAX_PARTITIONS))
    return TETHER_EPROTO;
  const char *k;
  json_t *v;
  json_object_foreach((json_t *)set, k, v) {
    if (!tt_name_valid(k)) return TETHER_EPROTO;
  }
  for (size_t i = 0; i < json_array_size(unset); i++)
    if (!json_is_string(json_array_get(unset, i))) return TETHER_EPROTO;

  uint8_t key[TT_R_KEYMAX];
  size_t kl = tt_r_dockey(key, coll, id);
  tt_rdoc d;
  int rc = tt_r_doc_load(t, key, kl, &d);
  if (rc) return rc;
  /* A change older than what we hold comes from a slower pull that ran
   * alongside a newer one (two processes on one replica): applying it
   * would put old field values back over newer ones. The version is the
   * document's commit seq in its partition, so it only moves forward. */
  if (d.exists && version < d.version) {
    tt_r_doc_clear(&d);
    return 0;
  }
  if (json_is_true(del)) {
    rc = tt_r_doc_store(t, key, kl, version, 1, NULL);
  } else {
    json_t *obj = d.obj; /* absent or a tombstone: revived from empty */
    if (!obj && json_array_size(unset) == 0) {
      /* The common case of a document arriving whole: stored as sent. */
      json_t *empty = NULL;
      if (!set && !(empty = json_object())) return TETHER_ENOMEM;
      rc = tt_r_doc_store(t, key, kl, version, 0, set ? set : empty);
      json_decref(empty);
    } else {
      if (!obj && !(obj = d.obj = json_object())) return TETHER_ENOMEM;
      if (set && json_object_update(obj, (json_t *)set)) rc = TETHER_ENOMEM;
      for (size_t i = 0; !rc && i < json_array_size(unset); i++)
        json_object_del(obj, json_string_value(json_array_get(unset, i)));
      if (!rc) rc = tt_r_doc_store(t, key, kl, version, 0, obj);
    }
  }
  tt_r_doc_clear(&d);
  if (rc || !track) return rc;
  return touched_add(ts, key, kl, version, (uint32_t)p, 1);
}

typedef struct {
  uint64_t *v;
  size_t n, cap;
} seq_list;

static int seq_add(seq_list *l, uint64_t seq) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 64;
    uint64_t *nv = realloc(l->v, cap * sizeof *nv);
    if (!nv) return TETHER_ENOMEM;
    l->v = nv;
    l->cap = cap;
  }
  l->v[l->n++] = seq;
  return 0;
}

/* Walks the acked index one partition at a time: the entries of partition
 * P with commit <= cur[P] are covered by the cursor; the first one past it
 * ends P, and the scan restarts at the next partition present. */
typedef struct {
  uint64_t acked;
  const uint64_t *cur;
  size_t ncur;
  int started;
  uint32_t p;    /* partition being walked */
  int next_set;  /* stopped; restart at NEXT */
  uint64_t next; /* may be 2^32: nothing left */
  seq_list *drop;
  int err;
} idx_ctx;

static int idx_cb(void *vctx, tt_bytes k, tt_bytes v) {
  (void)v;
  idx_ctx *c = vctx;
  uint32_t p;
  uint64_t commit, seq;
  if (k.len == 8) return 0; /* a seq key below the start (not expected) */
  if (!tt_r_ackidx_parse(k, &p, &commit, &seq)) {
    c->err = TETHER_ECORRUPT;
    return 2;
  }
  if (!c->started) {
    c->started = 1;
    c->p = p;
  }
  if (p != c->p) {
    c->next_set = 1;
    c->next = p;
    return 1;
  }
  if (p >= c->ncur || commit > c->cur[p]) {
    c->next_set = 1;
    c->next = (uint64_t)p + 1;
    return 1;
  }
  /* As before the index: only intents inside the acknowledged prefix. */
  if (seq > c->acked) return 0;
  if ((c->err = seq_add(c->drop, seq))) return 2;
  return 0;
}

static int cursor_covered(tt_txn *t, uint64_t acked, const uint64_t *cur,
                          size_t ncur, seq_list *drop) {
  uint64_t from = 0;
  while (from <= UINT32_MAX) {
    uint8_t sk[5];
    sk[0] = TT_R_ACKIDX_TAG;
    tt_be32_put(sk + 1, (uint32_t)from);
    idx_ctx c = {acked, cur, ncur, 0, 0, 0, 0, drop, 0};
    int rc = tt_scan(t, TT_TABLE_OUTBOX, (tt_bytes){sk, 5}, idx_cb, &c);
    if (rc == 2) return c.err;
    if (rc < 0) return rc;
    if (!c.next_set) return 0;
    from = c.next;
  }
  return 0;
}

/* Acked intents of one document that arrived in this page at VERSION in
 * partition P: found through its PENDING entries. */
typedef struct {
  const uint8_t *key;
  size_t klen;
  uint64_t acked;
  seq_list *seqs;
  int err;
} docpend_ctx;

static int docpend_cb(void *vctx, tt_bytes k, tt_bytes v) {
  (void)v;
  docpend_ctx *c = vctx;
  if (k.len != c->klen + 9 || memcmp(k.data, c->key, c->klen) ||
      ((const uint8_t *)k.data)[c->klen] != 0)
    return 1;
  uint64_t seq = tt_be64_get((const uint8_t *)k.data + c->klen + 1);
  if (seq > c->acked) return 1; /* seqs ascend: the rest are unacked */
  if ((c->err = seq_add(c->seqs, seq))) return 2;
  return 0;
}

static int doc_covered(tt_txn *t, uint64_t acked, const touched *tp,
                       seq_list *drop) {
  uint8_t pk[TT_R_KEYMAX + 1];
  seq_list seqs = {0};
  int rc;
  if (tp->klen > TT_R_KEYMAX) return TETHER_ECORRUPT;
  memcpy(pk, tp->key, tp->klen);
  pk[tp->klen] = 0;
  docpend_ctx c = {tp->key, tp->klen, acked, &seqs, 0};
  rc = tt_scan(t, TT_TABLE_PENDING, (tt_bytes){pk, tp->klen + 1}, docpend_cb,
               &c);
  if (rc == 2) rc = c.err;
  if (rc < 0) goto out;
  rc = 0;
  for (size_t i = 0; i < seqs.n; i++) {
    uint8_t sk[8];
    tt_bytes v;
    tt_robx o;
    tt_r_seqkey(sk, seqs.v[i]);
    rc = tt_get_tmp(t, TT_TABLE_OUTBOX, (tt_bytes){sk, 8}, &v);
    if (rc == TETHER_ENOTFOUND) {
      rc = 0;
      continue;
    }
    if (rc || (rc = tt_r_obx_decode(v, &o))) goto out;
    if (o.state == TT_ROBX_ACKED && o.p == tp->p && o.commit <= tp->version &&
        (rc = seq_add(drop, seqs.v[i])))
      goto out;
  }
out:
  free(seqs.v);
  return rc;
}

/* Drops the intents in DROP from the outbox, noting their documents in TS
 * for the re-base. */
static int drop_seqs(tt_txn *t, const seq_list *drop, touched_set *ts) {
  for (size_t i = 0; i < drop->n; i++) {
    uint8_t sk[8], key[TT_R_KEYMAX];
    tt_bytes v;
    tt_robx o;
    int rc;
    tt_r_seqkey(sk, drop->v[i]);
    /* tmp: only the key is kept, copied before the next write */
    rc = tt_get_tmp(t, TT_TABLE_OUTBOX, (tt_bytes){sk, 8}, &v);
    if (rc == TETHER_ENOTFOUND) continue; /* listed twice */
    if (rc || (rc = tt_r_obx_decode(v, &o))) return rc;
    if (o.klen > TT_R_KEYMAX) return TETHER_ECORRUPT;
    size_t kl = o.klen;
    memcpy(key, o.key, kl);
    if ((rc = tt_r_obx_drop(t, drop->v[i], key, kl)) ||
        (rc = touched_add(ts, key, kl, 0, 0, 0)))
      return rc;
  }
  return 0;
}

static int pending_any_cb(void *ctx, tt_bytes k, tt_bytes v) {
  (void)ctx;
  (void)k;
  (void)v;
  return 1;
}

int tt_replica_pull_done(tt_replica *r, int status, const json_t *resp,
                         int *more, size_t *nchanges) {
  if (more) *more = 0;
  if (nchanges) *nchanges = 0;
  if (!r) return TETHER_EINVAL;
  r->err[0] = 0;
  r->cursor_refused = 0;
  int rc = tt_r_no_batch(r, "pull");
  if (rc) return rc;
  /* Paging position: only the answer to the page just asked for may set
   * it; on any failure the next pull starts again from the cursor, which
   * repeats pages but loses nothing (PROTOCOL.md). */
  json_decref(r->resume);
  r->resume = NULL;
  if (status == 400 && json_is_object(resp)) {
    const char *code = json_string_value(json_object_get(resp, "error"));
    if (code && strcmp(code, "cursor") == 0) {
      /* Refused like any error answer (nothing changes here); the caller
       * re-bootstraps with tt_replica_rebootstrap. */
      const char *msg = json_string_value(json_object_get(resp, "message"));
      TT_R_ERR(r, "pull: the server does not know this replica's cursor "
                  "(its data was reset or restored, or this replica is "
                  "older than its retention horizon)%s%s",
               msg ? ": " : "", msg ? msg : "");
      r->cursor_refused = 1;
      return TETHER_EPROTO;
    }
  }
  if (status != 200) return tt_r_http_error(r, "pull", status, resp);

  const json_t *changes = json_object_get(resp, "changes");
  const json_t *jmore = json_object_get(resp, "more");
  uint64_t *cur = NULL;
  size_t ncur = 0;
  touched_set ts = {0};
  seq_list sw = {0};
  tt_txn *t = NULL;
  char *ctext = NULL;
  if (!json_is_object(resp) || (changes && !json_is_array(changes)) ||
      (jmore && !json_is_boolean(jmore))) {
    TT_R_ERR(r, "pull: malformed response");
    return TETHER_EPROTO;
  }
  rc = tt_r_cursor_parse(json_object_get(resp, "cursor"), &cur, &ncur,
                         TETHER_EPROTO);
  if (rc) {
    if (rc == TETHER_EPROTO) TT_R_ERR(r, "pull: malformed cursor");
    return rc;
  }
  if ((rc = tt_txn_begin(r->st, 0, 1, &t))) goto out;
  tt_rchain ch;
  if ((rc = tt_r_chain_load(t, &ch))) goto out;
  /* With nothing pending (the bootstrap case) there is no view to re-base
   * and nothing to sweep: changes only touch confirmed documents. */
  rc = tt_scan(t, TT_TABLE_PENDING, (tt_bytes){NULL, 0}, pending_any_cb,
               NULL);
  if (rc < 0) goto out;
  int pending = rc == 1;
  size_t nch = json_array_size(changes);
  for (size_t i = 0; i < nch; i++) {
    rc = apply_change(t, json_array_get(changes, i), &ts, pending);
    if (rc == TETHER_EPROTO) TT_R_ERR(r, "pull: malformed change %zu", i);
    if (rc) goto out;
  }
  json_t *ca = json_object_get(resp, "cursor");
  size_t clen;
  if (!(ctext = tt_r_dump(ca, &clen))) {
    rc = TETHER_ENOMEM;
    goto out;
  }
  if ((rc = tt_put(t, TT_TABLE_META, (tt_bytes){"cursor", 6},
                   (tt_bytes){ctext, clen})))
    goto out;
  if (pending) {
    /* Acked intents whose effect the confirmed state now includes: the
     * cursor of their partition covers their commit (a range of the acked
     * index), or their document arrived in this page at a version at or
     * past it. Only those are read, never the whole outbox. */
    size_t npaged = ts.n;
    if ((rc = cursor_covered(t, ch.acked, cur, ncur, &sw)) ||
        (rc = drop_seqs(t, &sw, &ts)))
      goto out;
    sw.n = 0;
    for (size_t i = 0; i < npaged; i++)
      if ((rc = doc_covered(t, ch.acked, &ts.v[i], &sw))) goto out;
    if ((rc = drop_seqs(t, &sw, &ts))) goto out;
    if (ts.n) qsort(ts.v, ts.n, sizeof *ts.v, touched_cmp);
    for (size_t i = 0; i < ts.n; i++) {
      if (i > 0 && ts.v[i].klen == ts.v[i - 1].klen &&
          memcmp(ts.v[i].key, ts.v[i - 1].key, ts.v[i].klen) == 0)
        continue;
      if ((rc = tt_r_view_recompute(t, ts.v[i].key, ts.v[i].klen))) goto out;
    }
  }
  /* A caught-up pull has brought every change up to the server's head
   * with "own" held below any forgotten duplicate: the hold has done its
   * work. */
  if (!json_is_true(jmore) && (rc = tt_r_own_release(t))) goto out;
  if ((rc = tt_r_own_update(t, &ch))) goto out;
  rc = tt_commit(t);
  t = NULL;
  if (rc == 0) {
    if (more) *more = json_is_true(jmore);
    if (nchanges) *nchanges = nch;
    json_t *resume = json_object_get(resp, "resume");
    if (json_is_true(jmore) && json_is_array(resume))
      r->resume = json_incref(resume);
  }
out:
  tt_abort(t);
  touched_free(&ts);
  free(sw.v);
  free(cur);
  free(ctext);
  return rc;
}

/* ---- re-bootstrap ------------------------------------------------------- */

int tt_replica_cursor_refused(const tt_replica *r) {
  return r ? r->cursor_refused : 0;
}

typedef struct {
  uint64_t *seqs; /* acknowledged intents to drop */
  size_t n, cap;
  int err;
} acked_ctx;

static int acked_cb(void *vctx, tt_bytes k, tt_bytes v) {
  acked_ctx *c = vctx;
  tt_robx o;
  uint32_t ip;
  uint64_t icommit, iseq;
  if (k.len != 8) {
    /* The acked index follows the seq keys: every record has been seen. */
    if (tt_r_ackidx_parse(k, &ip, &icommit, &iseq)) return 1;
    c->err = TETHER_ECORRUPT;
    return 2;
  }
  if ((c->err = tt_r_obx_decode(v, &o))) return 2;
  if (o.state != TT_ROBX_ACKED) return 0;
  if (c->n == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 64;
    uint64_t *ns = realloc(c->seqs, cap * sizeof *ns);
    if (!ns) {
      c->err = TETHER_ENOMEM;
      return 2;
    }
    c->seqs = ns;
    c->cap = cap;
  }
  c->seqs[c->n++] = tt_be64_get(k.data);
  return 0;
}

static int del_doc_cb(void *vctx, tt_bytes k, tt_bytes v) {
  (void)v;
  return tt_del(vctx, TT_TABLE_DOCS, k);
}

static int keys_cb(void *vctx, tt_bytes k, tt_bytes v) {
  (void)v;
  touched_set *s = vctx;
  return touched_add(s, k.data, k.len, 0, 0, 0) ? 2 : 0;
}

int tt_replica_rebootstrap(tt_replica *r) {
  if (!r) return TETHER_EINVAL;
  r->err[0] = 0;
  int rc = tt_r_no_batch(r, "re-bootstrap");
  if (rc) return rc;
  tt_txn *t = NULL;
  acked_ctx ac = {0};
  touched_set views = {0};
  if ((rc = tt_txn_begin(r->st, 0, 1, &t))) goto out;
  /* Every confirmed document goes: the pull from [] brings the server's
   * whole state back, and a document the server no longer has must not
   * linger. Deleting the entry the scan hands over is allowed (store.h). */
  rc = tt_scan(t, TT_TABLE_DOCS, (tt_bytes){NULL, 0}, del_doc_cb, t);
  if (rc) goto out;
  /* Acknowledged intents only waited for a pull to cover their (p,
   * commit), positions in the history the server no longer honours; their
   * effect is in the server's state (or was lost with it), which the pull
   * brings. Unacknowledged intents all stay, to be pushed. */
  rc = tt_scan(t, TT_TABLE_OUTBOX, (tt_bytes){NULL, 0}, acked_cb, &ac);
  if (rc == 2) rc = ac.err;
  if (rc < 0) goto out;
  /* Overlays name every document that had an intent: each is replayed
   * again on the now empty confirmed state (or goes, with no intent left).
   * Collected before the drops, which do not touch VIEW. */
  rc = tt_scan(t, TT_TABLE_VIEW, (tt_bytes){NULL, 0}, keys_cb, &views);
  if (rc == 2) rc = TETHER_ENOMEM;
  if (rc < 0) goto out;
  for (size_t i = 0; i < ac.n; i++) {
    uint8_t sk[8], key[TT_R_KEYMAX];
    tt_bytes v;
    tt_robx o;
    tt_r_seqkey(sk, ac.seqs[i]);
    /* tmp: only the key is kept, copied before the next write */
    if ((rc = tt_get_tmp(t, TT_TABLE_OUTBOX, (tt_bytes){sk, 8}, &v)) ||
        (rc = tt_r_obx_decode(v, &o)))
      goto out;
    size_t kl = o.klen;
    memcpy(key, o.key, kl);
    if ((rc = tt_r_obx_drop(t, ac.seqs[i], key, kl))) goto out;
  }
  for (size_t i = 0; i < views.n; i++)
    if ((rc = tt_r_view_recompute(t, views.v[i].key, views.v[i].klen)))
      goto out;
  if ((rc = tt_put(t, TT_TABLE_META, (tt_bytes){"cursor", 6},
                   (tt_bytes){"[]", 2})))
    goto out;
  /* The confirmed state is empty now: nothing of ours may be skipped. */
  if ((rc = tt_r_own_reset(t))) goto out;
  rc = tt_commit(t);
  t = NULL;
  if (rc) goto out;
  json_decref(r->resume);
  r->resume = NULL;
  r->cursor_refused = 0;
out:
  tt_abort(t);
  free(ac.seqs);
  touched_free(&views);
  if (rc && !r->err[0])
    TT_R_ERR(r, "re-bootstrap: %s", tether_strerror(rc));
  return rc;
}
