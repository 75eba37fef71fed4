/* pull.c — POST /v1/pull: the changes since a cursor, partition by
 * partition.
 *
 * The changelog holds one entry per document, at its current version
 * (push.c deletes the previous one), so walking TT_TABLE_CHANGES from
 * cursor[p] + 1 visits each document changed since the cursor exactly once,
 * in commit order. Only fields written after the cursor are sent.
 *
 * Paging: when the limit cuts partition p at changelog position X, the
 * cursor may NOT move to X. A document whose entry lies beyond X can have
 * fields written in (cursor, X] (its entry moved when it changed again);
 * a replica at X would never get them. So a cut partition keeps its
 * cursor, and the scan position travels separately as "resume": the next
 * page scans from resume[p] + 1 but still sends fields newer than
 * cursor[p]. A partition scanned to its end moves its cursor to its head.
 * Losing "resume" (a crash) only repeats pages.
 *
 * Each partition is read in a read transaction of its own (a transaction
 * covers one partition, store.h), so one answer is not a snapshot across
 * partitions: it may show a group commit's partition 0 and not yet its
 * partition 1. Per partition the cursor stays exact. Nor is a partition's
 * read a snapshot on every backend (Redis reads key by key): a push may
 * commit in p while it is scanned. Nothing is skipped even so, because a
 * commit moves a document's single changelog entry only forward, to a seq
 * above the head H read first, and atomically with the document:
 *   - the scan walks keys upward, so an entry that moves ahead of the scan
 *     position is met again further on (or by the next page or pull, as
 *     the cursor never passes H). This needs a backend's scan to meet the
 *     keys added past its position while it runs, also when the entry it
 *     was about to give vanished under it (the commit that moved it added
 *     the new entry at the same time);
 *   - a document read newer than the entry that led to it has moved past H
 *     after the entry was read. Its new entry may lie beyond what the scan
 *     saw, and the cursor will pass the old one, so it is sent here, as it
 *     is now (its version, fields newer than the cursor), and again from
 *     its new entry by a later pull; met again in this answer, it is not
 *     repeated;
 *   - entries above H met by the scan are sent, and sent again by the next
 *     pull (the cursor moves to H only): a repeat, never a gap.
 *
 * Round trips: a partition's entries for the page are collected by the
 * scan first and their documents then fetched with one tt_prefetch, so a
 * page costs a few round trips on a remote backend, not one per document.
 *
 * Long-poll waiting lives in net/; wait_ms is only checked here. */
#include <stdlib.h>
#include <string.h>

#include "core/plant.h"
#include "core/json.h"
#include "server/server_int.h"

/* A changelog entry collected by the scan: its seq and its document key
 * (at OFF in the key buffer). */
typedef struct {
  uint64_t seq;
  size_t off, len;
} pull_ent;

typedef struct {
  tt_txn *t;
  uint32_t p;
  uint64_t cursor; /* the replica's position in partition p */
  uint64_t last;   /* last seq included */
  uint64_t next;   /* the first seq left out by the limit */
  size_t count, limit;
  /* The pulling replica and its "own": entries tagged with its id and a
   * seq <= own are skipped (server_int.h, the changelog value). */
  uint8_t replica[TT_ID_LEN];
  uint64_t own;
  size_t skipped;
  /* the page's changes as canonical text, comma-separated (written from
   * the stored records: nothing is built as a tree) */
  tt_buf changes;
  size_t nchanges;
  /* partition p's entries of this page, before their documents are read;
   * at most LIMIT of them, each key at most TT_SRV_DOCKEY_MAX bytes */
  pull_ent *ents;
  size_t nents, entcap;
  char *kbuf;
  size_t klen, kcap;
  tt_bytes *keys; /* for the prefetch, ENTCAP of them */
  /* versions sent ahead of the entry that led to them (see the top); an
   * entry at one of these seqs has been sent already */
  uint64_t *ahead;
  size_t nahead, aheadcap;
  int rc; /* error from inside the callback */
} pull_scan;

enum { STOP_PARTITION = 1, STOP_LIMIT = 2, STOP_ERROR = 3 };

/* A skipped entry costs a page this fraction of a sent change: it is only
 * a key read, but a page must stay bounded in work as well as in size. */
#define SKIP_WEIGHT 8

static int sent_ahead(const pull_scan *ps, uint64_t version) {
  for (size_t i = 0; i < ps->nahead; i++)
    if (ps->ahead[i] == version)
      return 1;
  return 0;
}

/* 0: the change was added; 1: skipped (sent already); <0: error. */
static int add_change(pull_scan *ps, uint64_t seq, tt_bytes dockey) {
  const char *k = dockey.data, *sep = memchr(k, '\0', dockey.len);
  tt_bytes val;
  tt_buf *b = &ps->changes;
  size_t start = b->len;
  uint64_t version = 0;
  int deleted = 0, rc;

  if (!sep)
    return TETHER_ECORRUPT;
  rc = tt_get(ps->t, TT_TABLE_DOCS, dockey, &val);
  if (rc == TETHER_ENOTFOUND)
    rc = TETHER_ECORRUPT; /* a changelog entry always has its document */
  if (rc)
    goto out;
  rc = tt_doc_peek(val.data, val.len, &version, &deleted);
  if (rc)
    goto out;
  if (version < seq) {
    rc = TETHER_ECORRUPT;
    goto out;
  }
  if (sent_ahead(ps, version)) {
    rc = 1;
    goto out;
  }
  if (version > seq) {
    /* moved on after its entry was read: see the top. Bounded: each is
     * one entry of this page. */
    if (ps->nahead == ps->aheadcap) {
      size_t cap = ps->aheadcap ? 2 * ps->aheadcap : 16;
      uint64_t *a = realloc(ps->ahead, cap * sizeof *a);
      if (!a) {
        rc = TETHER_ENOMEM;
        goto out;
      }
      ps->ahead = a;
      ps->aheadcap = cap;
    }
    ps->ahead[ps->nahead++] = version;
  }
  /* {"coll","deleted","id","p","set","unset","version"}: tt_canon's
   * order. A key that is not UTF-8 cannot have been stored: corrupt. */
  if ((b->len > 0 && (rc = tt_buf_add_str(b, ","))) ||
      (rc = tt_buf_add_str(b, "{\"coll\":")) ||
      (rc = tt_canon_str_buf(b, k, (size_t)(sep - k))) ||
      (deleted && (rc = tt_buf_add_str(b, ",\"deleted\":true"))) ||
      (rc = tt_buf_add_str(b, ",\"id\":")) ||
      (rc = tt_canon_str_buf(b, sep + 1, dockey.len - (size_t)(sep - k) - 1)) ||
      (rc = tt_buf_add_str(b, ",\"p\":")) ||
      (rc = tt_buf_add_int(b, ps->p)) ||
      (rc = tt_doc_changes_text(val.data, val.len, ps->cursor, b)) ||
      (rc = tt_buf_add_str(b, ",\"version\":")) ||
      (rc = tt_buf_add_int(b, (int64_t)version)) ||
      (rc = tt_buf_add_str(b, "}"))) {
    if (rc == TETHER_EINVAL)
      rc = TETHER_ECORRUPT;
    b->len = start;
    goto out;
  }
  ps->nchanges++;
out:
  return rc;
}

/* Collects the entry: its document is read later, with the page's. */
static int scan_cb(void *ctx, tt_bytes key, tt_bytes val) {
  pull_scan *ps = ctx;
  uint64_t seq;

  if (key.len != 12 || tt_be32_get(key.data) != ps->p)
    return STOP_PARTITION;
  seq = tt_be64_get((const uint8_t *)key.data + 4);
  if (ps->count + ps->nents + ps->skipped / SKIP_WEIGHT >= ps->limit) {
    ps->next = seq;
    return STOP_LIMIT; /* one more entry exists: "more" */
  }
  size_t klen;
  int tagged;
  uint8_t writer[TT_ID_LEN];
  uint64_t wseq = 0;
  if (tt_srv_change_decode(val, &klen, &tagged, writer, &wseq)) {
    ps->rc = TETHER_ECORRUPT;
    return STOP_ERROR;
  }
  if (tagged && wseq <= ps->own &&
      (memcmp(writer, ps->replica, TT_ID_LEN) == 0 ||
       TT_PLANTED("skip-others-writes"))) {
    ps->skipped++;
    ps->last = seq;
    return 0;
  }
  val.len = klen;
  if (ps->nents == ps->entcap) {
    size_t cap = ps->entcap ? 2 * ps->entcap : 64;
    pull_ent *e;
    tt_bytes *b;
    if (cap > ps->limit)
      cap = ps->limit;
    e = realloc(ps->ents, cap * sizeof *e);
    if (e)
      ps->ents = e;
    b = e ? realloc(ps->keys, cap * sizeof *b) : NULL;
    if (!b) {
      ps->rc = TETHER_ENOMEM;
      return STOP_ERROR;
    }
    ps->keys = b;
    ps->entcap = cap;
  }
  if (ps->kcap - ps->klen < val.len) {
    size_t cap = ps->kcap ? 2 * ps->kcap : 4096;
    char *kb;
    while (cap - ps->klen < val.len)
      cap *= 2;
    kb = realloc(ps->kbuf, cap);
    if (!kb) {
      ps->rc = TETHER_ENOMEM;
      return STOP_ERROR;
    }
    ps->kbuf = kb;
    ps->kcap = cap;
  }
  memcpy(ps->kbuf + ps->klen, val.data, val.len);
  ps->ents[ps->nents++] = (pull_ent){seq, ps->klen, val.len};
  ps->klen += val.len;
  ps->last = seq;
  return 0;
}

/* The documents of the collected entries: one prefetch, then each change. */
static int add_collected(pull_scan *ps) {
  int rc;

  for (size_t i = 0; i < ps->nents; i++)
    ps->keys[i] = (tt_bytes){ps->kbuf + ps->ents[i].off, ps->ents[i].len};
  rc = tt_prefetch(ps->t, TT_TABLE_DOCS, ps->keys, ps->nents);
  for (size_t i = 0; !rc && i < ps->nents; i++) {
    rc = add_change(ps, ps->ents[i].seq, ps->keys[i]);
    if (rc == 0)
      ps->count++;
    if (rc > 0)
      rc = 0;
  }
  ps->nents = 0;
  ps->klen = 0;
  return rc;
}

static int answer(int *status, json_t **response, int st, json_t *body) {
  *status = st;
  *response = body;
  return body ? 0 : TETHER_ENOMEM;
}

/* [V[0],...,V[P-1]]: one position per partition. */
static int positions_text(tt_buf *b, const uint64_t *v, unsigned P) {
  int bad = tt_buf_add(b, "[", 1);
  for (unsigned p = 0; p < P && !bad; p++)
    bad = (p && tt_buf_add(b, ",", 1)) || tt_buf_add_int(b, (int64_t)v[p]);
  return bad || tt_buf_add(b, "]", 1) ? TETHER_ENOMEM : 0;
}

/* The 200 answer's text: {"changes":[CHANGES],"cursor":[...],"more":B,
 * "resume":[...] (when MORE),"v":1}. */
static int body_text(const pull_scan *ps, const uint64_t *cursor,
                     const uint64_t *from, unsigned P, int more, tt_buf *b) {
  if (tt_buf_add_str(b, "{\"changes\":[") ||
      tt_buf_add(b, ps->changes.data, ps->changes.len) ||
      tt_buf_add_str(b, "],\"cursor\":") || positions_text(b, cursor, P) ||
      tt_buf_add_str(b, more ? ",\"more\":true" : ",\"more\":false") ||
      (more && (tt_buf_add_str(b, ",\"resume\":") ||
                positions_text(b, from, P))) ||
      tt_buf_add_str(b, ",\"v\":1}"))
    return TETHER_ENOMEM;
  return 0;
}

int tt_server_pull(tt_server *s, const json_t *request, int *status,
                   json_t **response) {
  tt_pull_answer a = {0};
  int rc = tt_server_pull_answer(s, request, &a);
  *status = a.status;
  *response = a.response;
  return rc;
}

int tt_server_pull_answer(tt_server *s, const json_t *request,
                          tt_pull_answer *pa) {
  int *status = &pa->status;
  json_t **response = &pa->response;
  pa->body = NULL;
  pa->body_len = 0;
  pa->empty = 0;
  const json_t *v, *rep, *cur, *res, *lim, *wait;
  uint8_t rid[TT_ID_LEN];
  uint64_t *cursor = NULL, *from = NULL, *head = NULL;
  size_t limit;
  pull_scan ps = {0};
  tt_txn *t = NULL;
  json_t *body = NULL;
  int rc = 0, more = 0, bad = 1;
  unsigned P;

  *status = 500;
  *response = NULL;
  if (!s)
    return TETHER_EINVAL;
  P = s->nparts;
  if (!json_is_object(request)) {
    rc = answer(status, response, 400,
                tt_srv_error("json", "body is not a JSON object"));
    goto out;
  }
  v = json_object_get(request, "v");
  if (!json_is_integer(v) || json_integer_value(v) != 1) {
    rc = answer(status, response, 400,
                tt_srv_error("version", "protocol version 1 expected"));
    goto out;
  }
  rep = json_object_get(request, "replica");
  if (!json_is_string(rep) || json_string_length(rep) != 2 * TT_ID_LEN ||
      tt_hex_decode(json_string_value(rep), rid, TT_ID_LEN)) {
    rc = answer(status, response, 400,
                tt_srv_error("invalid", "replica: 32 hex characters "
                                        "expected"));
    goto out;
  }
  cursor = calloc(P, sizeof *cursor);
  from = calloc(P, sizeof *from);
  head = calloc(P, sizeof *head);
  if (!cursor || !from || !head) {
    rc = TETHER_ENOMEM;
    goto fail;
  }
  cur = json_object_get(request, "cursor");
  if (cur && !json_is_array(cur)) {
    rc = answer(status, response, 400,
                tt_srv_error("invalid", "cursor: array expected"));
    goto out;
  }
  if (json_array_size(cur) != 0 && json_array_size(cur) != P) {
    rc = answer(status, response, 400,
                tt_srv_error("cursor",
                             "cursor has %zu partitions, the server %u",
                             json_array_size(cur), P));
    goto out;
  }
  for (size_t i = 0; i < json_array_size(cur); i++) {
    json_t *e = json_array_get(cur, i);
    if (!json_is_integer(e) || json_integer_value(e) < 0) {
      rc = answer(status, response, 400,
                  tt_srv_error("invalid",
                               "cursor[%zu]: non-negative integer expected",
                               i));
      goto out;
    }
    cursor[i] = (uint64_t)json_integer_value(e);
  }
  memcpy(from, cursor, P * sizeof *from);
  res = json_object_get(request, "resume");
  if (res && (!json_is_array(res) || json_array_size(res) != P)) {
    rc = answer(status, response, 400,
                tt_srv_error("cursor", "resume: array of %u integers "
                                       "expected", P));
    goto out;
  }
  for (size_t i = 0; i < json_array_size(res); i++) {
    json_t *e = json_array_get(res, i);
    if (!json_is_integer(e) || json_integer_value(e) < 0 ||
        (uint64_t)json_integer_value(e) < cursor[i]) {
      rc = answer(status, response, 400,
                  tt_srv_error("cursor",
                               "resume[%zu]: an integer not below "
                               "cursor[%zu] expected",
                               i, i));
      goto out;
    }
    from[i] = (uint64_t)json_integer_value(e);
  }
  lim = json_object_get(request, "limit");
  limit = s->pull_limit;
  if (lim) {
    if (!json_is_integer(lim) || json_integer_value(lim) < 1) {
      rc = answer(status, response, 400,
                  tt_srv_error("invalid", "limit: positive integer expected"));
      goto out;
    }
    /* Above the page size is not an error: the page size is the most. */
    if ((uint64_t)json_integer_value(lim) < limit)
      limit = (size_t)json_integer_value(lim);
  }
  wait = json_object_get(request, "wait_ms");
  if (wait && (!json_is_integer(wait) || json_integer_value(wait) < 0)) {
    rc = answer(status, response, 400,
                tt_srv_error("invalid",
                             "wait_ms: non-negative integer expected"));
    goto out;
  }
  const json_t *jown = json_object_get(request, "own");
  if (jown && (!json_is_integer(jown) || json_integer_value(jown) < 0)) {
    rc = answer(status, response, 400,
                tt_srv_error("invalid", "own: non-negative integer expected"));
    goto out;
  }
  bad = 0;

  ps.limit = limit;
  memcpy(ps.replica, rid, TT_ID_LEN);
  ps.own = jown ? (uint64_t)json_integer_value(jown) : 0;
  for (unsigned p = 0; p < P; p++) {
    uint8_t key[12];
    tt_bytes fb = {key, sizeof key};

    rc = tt_txn_begin(s->st, p, 0, &t);
    if (!rc)
      rc = tt_srv_load_seq(t, p, &head[p]);
    if (rc)
      goto fail;
    if (from[p] > head[p]) {
      bad = 1;
      rc = answer(status, response, 400,
                  tt_srv_error("cursor",
                               "%s[%u] = %llu is ahead of the server "
                               "(%llu); bootstrap again with []",
                               cursor[p] > head[p] ? "cursor" : "resume", p,
                               (unsigned long long)from[p],
                               (unsigned long long)head[p]));
      goto out;
    }
    if (more) {
      /* a page is full: this partition waits for the next one, but a
       * cursor ahead of the server must still be refused */
    } else if (from[p] == head[p]) {
      cursor[p] = from[p] = head[p]; /* nothing left in this partition */
    } else {
      ps.t = t;
      ps.p = p;
      ps.cursor = cursor[p];
      ps.last = from[p];
      ps.nahead = 0; /* seqs are per partition */
      tt_srv_change_key(key, p, from[p] + 1);
      rc = tt_scan(t, TT_TABLE_CHANGES, fb, scan_cb, &ps);
      if (rc == STOP_ERROR) {
        rc = ps.rc;
        goto fail;
      }
      if (rc < 0)
        goto fail;
      int stop = rc;
      rc = add_collected(&ps);
      if (rc)
        goto fail;
      if (stop == STOP_LIMIT) {
        more = 1; /* cut: the cursor stays, the position travels in resume */
        from[p] = TT_PLANTED("skip-pull-page") ? ps.next : ps.last;
      } else {
        cursor[p] = from[p] = head[p]; /* the rest of the partition is here */
      }
      rc = 0;
    }
    tt_abort(t);
    t = NULL;
  }

  {
    tt_buf b = {0};
    rc = body_text(&ps, cursor, from, P, more, &b);
    if (rc) {
      tt_buf_free(&b);
      goto fail;
    }
    if (pa->text) {
      pa->body = (char *)b.data;
      pa->body_len = b.len;
    } else {
      /* The text is ours: only memory can fail to read it. */
      /* ALLOW_NUL: a stored value may hold \u0000 (tt_doc_decode's
       * flags). */
      rc = tt_json_parse((const char *)b.data, b.len, TT_JSON_ALLOW_NUL,
                         &body, NULL);
      tt_buf_free(&b);
      if (rc) {
        rc = TETHER_ENOMEM;
        goto fail;
      }
    }
  }
  pa->empty = ps.nchanges == 0 && !more;
  *status = 200;
  *response = body;
  body = NULL;
  goto out;

fail:
  if (rc == TETHER_ECORRUPT)
    answer(status, response, 500,
           tt_srv_error("internal", "a stored record is corrupt"));
  else
    answer(status, response, 503,
           tt_srv_error("unavailable", "cannot read the store: %s",
                        tether_err_name(rc)));
out:
  tt_abort(t);
  json_decref(body);
  tt_buf_free(&ps.changes);
  free(ps.ents);
  free(ps.kbuf);
  free(ps.keys);
  free(ps.ahead);
  free(cursor);
  free(from);
  free(head);
  atomic_fetch_add_explicit(&s->pulls, 1, memory_order_relaxed);
  if (bad)
    atomic_fetch_add_explicit(&s->bad_requests, 1, memory_order_relaxed);
  return rc;
}
