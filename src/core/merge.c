/* merge.c — the merge engine. The rules are written at the top of merge.h;
 * this file implements them and writes down how it reads the places where
 * they leave a choice. Each reading keeps G5: writes to different fields
 * never meet, and a write to a field another replica changed concurrently
 * always goes through that field's policy.
 *
 * READINGS
 *  R1 Concurrency with a document delete. A write to a tombstoned document
 *     is concurrent with the delete iff del_stamp.seq > I.base and
 *     del_stamp.origin != I.client (the replica saw, or made, the delete
 *     itself otherwise). The three-way shortcut (current == base_value) is
 *     NOT used against a delete: the delete changed the document's
 *     existence, not that field's value, so a replica that never saw the
 *     field does not thereby "agree" with the delete. This applies to every
 *     writing kind, incr/add/remove included: they "always merge" with
 *     other writes of the same field, but whether the document still
 *     exists is the policy's decision. Their "ours" in a conflict record is
 *     the value the op would produce on the absent field (delta, [elem],
 *     []). A write that would leave the field absent (unset; resolve to
 *     unset) on a tombstone is a no-op: it already equals ours.
 *  R2 Field tombstones left by a delete. Deleting a document sets every
 *     live field to absent with the delete's stamp, so that after a revival
 *     tt_doc_changes_since reports those fields as unset to a replica whose
 *     cursor predates the delete, and so that a later write from a replica
 *     that did not see the delete finds a concurrent stamp on the field.
 *     Such a tombstone (no value, stamp == del_stamp, also after a
 *     revival) is judged as the delete itself: concurrent iff R1 says so,
 *     never by the three-way shortcut. Otherwise the fields of a create
 *     after the one that revived the document would skip their policy.
 *  R3 No-op writes (the value already equals ours, concurrent or not)
 *     change nothing: no new stamp, no new version. A concurrent no-op is
 *     "applied" and is not counted in res->concurrent.
 *  R4 create on a live document: every field of the value is a set with
 *     base_value absent, in key order, then every live field the value
 *     lacks is an unset with base_value absent, in name order; each against
 *     its field's policy. create on a tombstone not concurrent with the
 *     delete (R1) revives the document with exactly the value; concurrent
 *     with it, each field goes through its policy against del_stamp (every
 *     one, also those after the field that revived the document, so that
 *     name order never matters) and the document revives iff at least one
 *     field is written. An empty create ({}) makes a never-written or
 *     (non-concurrently) deleted document an existing empty one; concurrent
 *     with a delete it asks the collection policy.
 *  R5 One op may record several conflicts (a create over fields that were
 *     each changed concurrently under "manual"). The first keeps the id
 *     "<client hex>-<seq>-<op index>"; the n-th after it gets ".<n>"
 *     appended, so ids stay unique and deterministic.
 *  R6 The pseudo-field "_doc" names the whole document: a delete conflict
 *     is recorded on it, and a resolve on "_doc" settles it: "unset"
 *     deletes the document, an object value replaces it (as a create that
 *     always applies), any other value is a rejection. Because of that,
 *     "_doc" is reserved: set/unset/incr/add/remove on it, and a create or
 *     "_doc" resolve whose object has a "_doc" key, are rejected; so is such
 *     an object with a key that is not a valid field name (empty, over
 *     TT_MAX_NAME bytes, or with a NUL), since it could not be stored.
 *     These are outcomes, not parse errors: a parse error fails the whole
 *     push, while a rejection consumes only that intent's seq.
 *  R7 Delete on a document that is already deleted, or was never written,
 *     is an applied no-op. Delete conflicts count once in res->concurrent.
 *  R8 A manual conflict's "ours" for a delete is absent (NULL), and
 *     "theirs" for a write against a delete is absent (NULL).
 *  R9 remove on an absent field yields [] (absent = []), written like any
 *     other value, on both the server and the replica's view.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/merge.h"
#include "core/plant.h"

#define DOC_FIELD TT_DOC_FIELD

static const char *const outcome_names[TT_OUT__COUNT] = {
    [TT_OUT_APPLIED] = "applied",
    [TT_OUT_MERGED] = "merged",
    [TT_OUT_CONFLICT] = "conflict",
    [TT_OUT_REJECTED] = "rejected",
};

const char *tt_outcome_name(tt_outcome_kind k) {
  if ((unsigned)k >= TT_OUT__COUNT)
    return "unknown";
  return outcome_names[k];
}

int tt_outcome_parse(const char *name, tt_outcome_kind *out) {
  if (!name)
    return TETHER_EINVAL;
  for (int k = 0; k < TT_OUT__COUNT; k++) {
    if (strcmp(name, outcome_names[k]) == 0) {
      if (out)
        *out = (tt_outcome_kind)k;
      return 0;
    }
  }
  return TETHER_EINVAL;
}

void tt_conflict_clear(tt_conflict *c) {
  if (!c)
    return;
  free(c->id);
  free(c->field);
  json_decref(c->base);
  json_decref(c->theirs);
  json_decref(c->ours);
  memset(c, 0, sizeof *c);
}

void tt_merge_result_clear(tt_merge_result *r) {
  if (!r)
    return;
  for (size_t i = 0; i < r->nconflicts; i++)
    tt_conflict_clear(&r->conflicts[i]);
  free(r->conflicts);
  if (r->concurrent_fields)
    for (size_t i = 0; i < r->concurrent; i++)
      free(r->concurrent_fields[i]);
  free(r->concurrent_fields);
  memset(r, 0, sizeof *r);
}

/* ---- value rules --------------------------------------------------------*/

int tt_value_incr(const json_t *cur, const json_t *delta, json_t **out) {
  json_int_t a = 0, r;
  *out = NULL;
  if (!json_is_integer(delta))
    return TETHER_ETYPE;
  if (cur) {
    if (!json_is_integer(cur))
      return TETHER_ETYPE;
    a = json_integer_value(cur);
  }
  if (__builtin_add_overflow(a, json_integer_value(delta), &r))
    return TETHER_ETYPE;
  return (*out = json_integer(r)) ? 0 : TETHER_ENOMEM;
}

static int array_index_of(const json_t *arr, const json_t *elem) {
  size_t n = json_array_size(arr);
  for (size_t i = 0; i < n; i++)
    if (tt_canon_equal(json_array_get(arr, i), elem))
      return (int)i;
  return -1;
}

int tt_value_set_add(const json_t *cur, const json_t *elem, json_t **out) {
  *out = NULL;
  if (!elem || (cur && !json_is_array(cur)))
    return TETHER_ETYPE;
  if (cur && array_index_of(cur, elem) >= 0) {
    *out = json_incref((json_t *)cur);
    return 0;
  }
  json_t *a = cur ? json_copy((json_t *)cur) : json_array();
  if (!a || json_array_append(a, (json_t *)elem) != 0) {
    json_decref(a);
    return TETHER_ENOMEM;
  }
  *out = a;
  return 0;
}

int tt_value_set_remove(const json_t *cur, const json_t *elem, json_t **out) {
  *out = NULL;
  if (!elem || (cur && !json_is_array(cur)))
    return TETHER_ETYPE;
  if (cur && array_index_of(cur, elem) < 0) {
    *out = json_incref((json_t *)cur);
    return 0;
  }
  json_t *a = json_array();
  if (!a)
    return TETHER_ENOMEM;
  size_t n = json_array_size(cur);
  for (size_t i = 0; i < n; i++) {
    json_t *e = json_array_get(cur, i);
    if (!tt_canon_equal(e, elem) && json_array_append(a, e) != 0) {
      json_decref(a);
      return TETHER_ENOMEM;
    }
  }
  *out = a;
  return 0;
}

/* ---- server-side merge --------------------------------------------------*/

typedef struct {
  tt_doc *w; /* the working copy; swapped into the caller's doc on success */
  const tt_intent *in;
  tt_hlc hlc;
  uint64_t commit_seq;
  const tt_policy_table *pol;
  tt_merge_result *res;
  size_t op_index;
  unsigned op_conflicts; /* conflicts recorded by the current op (R5) */
  int changed;
  int rejected;
  int vs_delete; /* a create concurrent with the delete is running (R4) */
} mctx;

typedef enum { DECIDE_APPLY, DECIDE_KEEP } decision;

/* Counts one same-field concurrent write, remembering its field. */
static int note_concurrent(mctx *m, const char *field) {
  tt_merge_result *r = m->res;
  char **nf = realloc(r->concurrent_fields,
                      (r->concurrent + 1) * sizeof *nf);
  if (!nf)
    return TETHER_ENOMEM;
  r->concurrent_fields = nf;
  if (!(nf[r->concurrent] = strdup(field)))
    return TETHER_ENOMEM;
  r->concurrent++;
  return 0;
}

static tt_stamp my_stamp(const mctx *m) {
  tt_stamp s;
  s.seq = m->commit_seq;
  s.hlc = m->hlc;
  memcpy(s.origin, m->in->client, TT_ID_LEN);
  return s;
}

/* The reason goes into a JSON answer and a stored record, so it must stay
 * UTF-8: client text in it is quoted with "%.*s" and tt_utf8_prefix, and
 * tt_errf never cuts the whole in the middle of a character. */
__attribute__((format(printf, 2, 3))) static void reject(mctx *m,
                                                         const char *fmt,
                                                         ...) {
  if (!m->rejected) {
    va_list ap;
    char *r = m->res->reason;
    size_t cap = sizeof m->res->reason;
    va_start(ap, fmt);
    int n = vsnprintf(r, cap, fmt, ap);
    va_end(ap);
    if (n < 0)
      r[0] = '\0';
    else if ((size_t)n >= cap)
      r[tt_utf8_prefix(r, cap - 1)] = '\0';
  }
  m->rejected = 1;
}

static void merged(mctx *m, const char *rule) {
  if (!m->res->rule)
    m->res->rule = rule;
}

static int is_mine(const mctx *m, const tt_stamp *s) {
  return memcmp(s->origin, m->in->client, TT_ID_LEN) == 0;
}

/* Marks the working document changed. The version moves at once (not
 * only at the end) so that later ops of the same intent see a document
 * that exists: create {} then delete must delete. */
static void touch(mctx *m) {
  m->changed = 1;
  m->w->version = m->commit_seq;
}

/* Stamped write of one field; VALUE is borrowed (NULL = unset). Writing a
 * value revives a tombstoned document. */
static int write_field(mctx *m, const char *name, json_t *value) {
  tt_field *f = tt_doc_field_upsert(m->w, name);
  if (!f)
    return TETHER_ENOMEM;
  json_decref(f->value);
  f->value = json_incref(value);
  f->stamp = my_stamp(m);
  if (value)
    m->w->deleted = 0;
  touch(m);
  return 0;
}

static int add_conflict(mctx *m, const char *field, const json_t *base,
                        const json_t *theirs, const json_t *ours) {
  char hex[2 * TT_ID_LEN + 1], id[128];
  tt_merge_result *r = m->res;
  tt_hex_encode(m->in->client, TT_ID_LEN, hex);
  if (m->op_conflicts == 0)
    snprintf(id, sizeof id, "%s-%llu-%zu", hex,
             (unsigned long long)m->in->seq, m->op_index);
  else
    snprintf(id, sizeof id, "%s-%llu-%zu.%u", hex,
             (unsigned long long)m->in->seq, m->op_index, m->op_conflicts);
  tt_conflict *nc = realloc(r->conflicts, (r->nconflicts + 1) * sizeof *nc);
  if (!nc)
    return TETHER_ENOMEM;
  r->conflicts = nc;
  tt_conflict *c = &nc[r->nconflicts];
  memset(c, 0, sizeof *c);
  c->id = strdup(id);
  c->field = strdup(field);
  if (!c->id || !c->field) {
    tt_conflict_clear(c);
    return TETHER_ENOMEM;
  }
  c->base = json_incref((json_t *)base);
  c->theirs = json_incref((json_t *)theirs);
  c->ours = json_incref((json_t *)ours);
  r->nconflicts++;
  m->op_conflicts++;
  return 0;
}

/* The policy's verdict on a concurrent write whose competitor has stamp S.
 * Records the rule or the conflict. */
static int decide(mctx *m, tt_policy p, const tt_stamp *s, const char *field,
                  const json_t *base, const json_t *theirs,
                  const json_t *ours, decision *d) {
  int rc = note_concurrent(m, field);
  if (rc)
    return rc;
  switch (p) {
  case TT_POLICY_SERVER_WINS:
    *d = DECIDE_KEEP;
    merged(m, "server-wins");
    return 0;
  case TT_POLICY_CLIENT_WINS:
    *d = DECIDE_APPLY;
    merged(m, "client-wins");
    return 0;
  case TT_POLICY_MANUAL:
    *d = DECIDE_KEEP;
    return add_conflict(m, field, base, theirs, ours);
  case TT_POLICY_LWW:
  default:
    *d = tt_hlc_cmp(m->hlc, m->in->client, s->hlc, s->origin) > 0
             ? DECIDE_APPLY
             : DECIDE_KEEP;
    merged(m, "lww");
    return 0;
  }
}

static int delete_concurrent(const mctx *m);

static int stamp_equal(const tt_stamp *a, const tt_stamp *b) {
  return a->seq == b->seq && a->hlc == b->hlc &&
         memcmp(a->origin, b->origin, TT_ID_LEN) == 0;
}

/* Is a write on field entry F (NULL = no entry) with BASE_VALUE concurrent
 * with the entry's last write? (merge.h; the document is live.) A field
 * tombstone left by the document's delete (R2: no value, the delete's
 * stamp) stands for the delete, so it is judged as the delete is (R1),
 * without the three-way shortcut: once one field of a create revived the
 * document, the next ones must still meet their policy, whatever the
 * order of their names. */
static int field_concurrent(const mctx *m, const tt_field *f,
                            const json_t *base_value) {
  if (!f || TT_PLANTED("ignore-base"))
    return 0;
  if (!f->value && stamp_equal(&f->stamp, &m->w->del_stamp))
    return delete_concurrent(m);
  if (f->stamp.seq <= m->in->base || is_mine(m, &f->stamp))
    return 0;
  return !tt_canon_equal(f->value, base_value);
}

/* R1: is a write on the tombstoned document concurrent with its delete? */
static int delete_concurrent(const mctx *m) {
  const tt_stamp *d = &m->w->del_stamp;
  return d->seq > m->in->base && !is_mine(m, d);
}

/* field := OURS (borrowed; NULL = absent) under the field's policy.
 * Used by set, unset and the parts of create. */
static int assign(mctx *m, const char *field, json_t *ours,
                  const json_t *base_value) {
  int rc;
  decision d;
  tt_policy p;
  /* VS_DELETE: the create's earlier fields may have revived the document
   * already; its other fields still meet the delete (R4). */
  if (m->w->deleted || m->vs_delete) {
    if (!ours)
      return 0; /* already absent (R1) */
    if (!delete_concurrent(m))
      return write_field(m, field, ours);
    p = tt_policy_lookup(m->pol, m->in->coll, field);
    if ((rc = decide(m, p, &m->w->del_stamp, field, base_value, NULL, ours,
                     &d)))
      return rc;
    return d == DECIDE_APPLY ? write_field(m, field, ours) : 0;
  }
  tt_field *f = tt_doc_field(m->w, field);
  json_t *cur = f ? f->value : NULL;
  if (tt_canon_equal(cur, ours))
    return 0; /* R3 */
  if (!field_concurrent(m, f, base_value))
    return write_field(m, field, ours);
  p = tt_policy_lookup(m->pol, m->in->coll, field);
  if ((rc = decide(m, p, &f->stamp, field, base_value, cur, ours, &d)))
    return rc;
  return d == DECIDE_APPLY ? write_field(m, field, ours) : 0;
}

/* incr / add / remove: always merge on the current value. */
static int combine(mctx *m, const tt_op *op) {
  int rc = 0;
  json_t *nv = NULL;
  const char *rule;
  int live = !m->w->deleted;
  tt_field *f = live ? tt_doc_field(m->w, op->field) : NULL;
  json_t *cur = f ? f->value : NULL;
  switch (op->kind) {
  case TT_OP_INCR:
    rc = tt_value_incr(cur, op->value, &nv);
    rule = "counter";
    break;
  case TT_OP_ADD:
    rc = tt_value_set_add(cur, op->value, &nv);
    rule = "set";
    break;
  default:
    rc = tt_value_set_remove(cur, op->value, &nv);
    rule = "set";
    break;
  }
  if (rc == TETHER_ETYPE) {
    int fl = (int)tt_utf8_prefix(op->field, 100);
    if (op->kind == TT_OP_INCR)
      reject(m, "incr on field '%.*s': not an integer or overflow", fl,
             op->field);
    else
      reject(m, "add/remove on field '%.*s': not an array", fl, op->field);
    return 0;
  }
  if (rc)
    return rc;
  if (!live) {
    rc = assign(m, op->field, nv, op->base_value);
  } else {
    if (field_concurrent(m, f, op->base_value)) {
      rc = note_concurrent(m, op->field);
      merged(m, rule);
    }
    if (!rc && !tt_canon_equal(cur, nv))
      rc = write_field(m, op->field, nv);
  }
  json_decref(nv);
  return rc;
}

static int never_written(const tt_doc *d) {
  return !d->deleted && d->version == 0 && d->nfields == 0;
}

static int do_delete(mctx *m) {
  tt_doc *w = m->w;
  tt_stamp st = my_stamp(m);
  for (size_t i = 0; i < w->nfields; i++) {
    if (w->fields[i].value) {
      json_decref(w->fields[i].value);
      w->fields[i].value = NULL;
      w->fields[i].stamp = st;
    }
  }
  w->deleted = 1;
  w->del_stamp = st;
  touch(m);
  return 0;
}

static int op_delete(mctx *m, const tt_op *op) {
  tt_doc *w = m->w;
  const tt_stamp *maxs = NULL;
  if (w->deleted || never_written(w))
    return 0; /* R7 */
  for (size_t i = 0; i < w->nfields; i++) {
    const tt_field *f = &w->fields[i];
    if (!f->value || f->stamp.seq <= m->in->base || is_mine(m, &f->stamp))
      continue;
    if (!maxs || tt_hlc_cmp(f->stamp.hlc, f->stamp.origin, maxs->hlc,
                            maxs->origin) > 0)
      maxs = &f->stamp;
  }
  if (!maxs)
    return do_delete(m);
  decision d;
  int rc;
  json_t *theirs = NULL;
  tt_policy p = tt_policy_lookup(m->pol, m->in->coll, NULL);
  if (p == TT_POLICY_MANUAL && !(theirs = tt_doc_view(w)))
    return TETHER_ENOMEM;
  tt_stamp ms = *maxs;
  rc = decide(m, p, &ms, DOC_FIELD, op->base_value, theirs, NULL, &d);
  json_decref(theirs);
  if (rc)
    return rc;
  return d == DECIDE_APPLY ? do_delete(m) : 0;
}

/* A whole-document value (create, resolve of "_doc") must have keys that
 * are valid field names: 1..TT_MAX_NAME bytes, no NUL (jansson can hold
 * one with JSON_ALLOW_NUL), and not the reserved "_doc". Returns a static
 * reason, or NULL when fine. */
static const char *bad_doc_value(const json_t *obj) {
  const char *k;
  json_t *v;
  if (!json_is_object(obj))
    return "needs an object value";
  json_object_foreach((json_t *)obj, k, v) {
    (void)v;
    size_t n = json_object_iter_key_len(json_object_key_to_iter(k));
    if (n == 0 || n > TT_MAX_NAME || strlen(k) != n)
      return "has an invalid field name";
    if (strcmp(k, DOC_FIELD) == 0)
      return "uses the reserved field name '_doc'";
  }
  return NULL;
}

static int cmp_str_ptr(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The keys of OBJ in strcmp order (json_object_foreach visits insertion
 * order; R4 wants an order that does not depend on how the object was
 * built, so that conflict ids are deterministic). *keys is malloc'd,
 * borrowed strings. */
static int sorted_keys(const json_t *obj, const char ***keys, size_t *n) {
  const char *k;
  json_t *v;
  size_t i = 0;
  *n = json_object_size(obj);
  *keys = NULL;
  if (*n == 0)
    return 0;
  if (!(*keys = malloc(*n * sizeof **keys)))
    return TETHER_ENOMEM;
  json_object_foreach((json_t *)obj, k, v) {
    (void)v;
    (*keys)[i++] = k;
  }
  qsort(*keys, *n, sizeof **keys, cmp_str_ptr);
  return 0;
}

/* Every field of VALUE set and every other live field unset. ALWAYS: as
 * writes that apply whatever the stamps say (resolve of "_doc", create on
 * a tombstone the replica saw); otherwise each part goes through assign. */
static int replace_all(mctx *m, const json_t *value, int always) {
  const char **keys;
  size_t n;
  int rc = sorted_keys(value, &keys, &n);
  if (rc)
    return rc;
  for (size_t i = 0; i < n && !rc; i++) {
    json_t *v = json_object_get(value, keys[i]);
    if (always) {
      tt_field *f = m->w->deleted ? NULL : tt_doc_field(m->w, keys[i]);
      if (!tt_canon_equal(f ? f->value : NULL, v))
        rc = write_field(m, keys[i], v);
    } else {
      rc = assign(m, keys[i], v, NULL);
    }
  }
  free(keys);
  /* Unsets only touch existing entries, so the array does not move. */
  for (size_t i = 0; i < m->w->nfields && !rc; i++) {
    tt_field *f = &m->w->fields[i];
    if (!f->value || json_object_get(value, f->name))
      continue;
    rc = always ? write_field(m, f->name, NULL)
                : assign(m, f->name, NULL, NULL);
  }
  return rc;
}

static int op_create(mctx *m, const tt_op *op) {
  tt_doc *w = m->w;
  int rc;
  const char *bad = bad_doc_value(op->value);
  if (bad) {
    reject(m, "create value %s", bad);
    return 0;
  }
  if (w->deleted) {
    if (!delete_concurrent(m)) {
      rc = replace_all(m, op->value, 1);
      if (!rc && w->deleted) { /* an empty create revives too (R4) */
        w->deleted = 0;
        touch(m);
      }
      return rc;
    }
    if (json_object_size(op->value) == 0) {
      decision d;
      tt_policy p = tt_policy_lookup(m->pol, m->in->coll, NULL);
      rc = decide(m, p, &w->del_stamp, DOC_FIELD, op->base_value, NULL,
                  op->value, &d);
      if (!rc && d == DECIDE_APPLY) {
        w->deleted = 0;
        touch(m);
      }
      return rc;
    }
    /* Each field against the delete, also those after the one that
     * revived the document: the outcome must not depend on the order of
     * the names. Writing any one revives. */
    m->vs_delete = 1;
    rc = replace_all(m, op->value, 0);
    m->vs_delete = 0;
    return rc;
  }
  if (never_written(w))
    touch(m); /* even {} makes the document exist (R4) */
  return replace_all(m, op->value, 0);
}

static int op_resolve(mctx *m, const tt_op *op) {
  if (strcmp(op->field, DOC_FIELD) == 0) {
    if (op->resolve_unset) {
      if (m->w->deleted || never_written(m->w))
        return 0;
      return do_delete(m);
    }
    const char *bad = bad_doc_value(op->value);
    if (bad) {
      reject(m, "resolve of the document %s", bad);
      return 0;
    }
    int rc = replace_all(m, op->value, 1);
    if (!rc && (m->w->deleted || never_written(m->w))) {
      m->w->deleted = 0;
      touch(m);
    }
    return rc;
  }
  json_t *ours = op->resolve_unset ? NULL : op->value;
  if (!ours && !op->resolve_unset) {
    reject(m, "%s: resolve needs a value or unset", "value");
    return 0;
  }
  tt_field *f = m->w->deleted ? NULL : tt_doc_field(m->w, op->field);
  if (tt_canon_equal(f ? f->value : NULL, ours))
    return 0;
  return write_field(m, op->field, ours);
}

static int apply_op(mctx *m, const tt_op *op) {
  int needs_field = op->kind != TT_OP_CREATE && op->kind != TT_OP_DELETE;
  if (needs_field && !tt_name_valid(op->field)) {
    reject(m, "op %s: missing or invalid field", tt_op_kind_name(op->kind));
    return 0;
  }
  if (needs_field && op->kind != TT_OP_RESOLVE &&
      strcmp(op->field, DOC_FIELD) == 0) {
    reject(m, "field name '%s' is reserved", DOC_FIELD);
    return 0;
  }
  switch (op->kind) {
  case TT_OP_SET:
    if (!op->value) {
      reject(m, "%s: set needs a value", "value");
      return 0;
    }
    return assign(m, op->field, op->value, op->base_value);
  case TT_OP_UNSET:
    return assign(m, op->field, NULL, op->base_value);
  case TT_OP_INCR:
  case TT_OP_ADD:
  case TT_OP_REMOVE:
    if (!op->value) {
      reject(m, "%s: op needs a value", "value");
      return 0;
    }
    return combine(m, op);
  case TT_OP_DELETE:
    return op_delete(m, op);
  case TT_OP_CREATE:
    return op_create(m, op);
  case TT_OP_RESOLVE:
    return op_resolve(m, op);
  default:
    reject(m, "unknown op kind %s", "");
    return 0;
  }
}

int tt_merge_intent(tt_doc *doc, const tt_intent *in, tt_hlc hlc,
                    uint64_t commit_seq, const tt_policy_table *policies,
                    tt_merge_result *res) {
  tt_doc w;
  mctx m;
  int rc;
  memset(res, 0, sizeof *res);
  /* Ops work on a copy (values shared, see tt_doc_copy) so that a
   * rejection anywhere leaves DOC exactly as it was. */
  if ((rc = tt_doc_copy(&w, doc)) != 0)
    return rc;
  memset(&m, 0, sizeof m);
  m.w = &w;
  m.in = in;
  m.hlc = hlc;
  m.commit_seq = commit_seq;
  m.pol = policies;
  m.res = res;
  for (size_t i = 0; i < in->nops && !m.rejected; i++) {
    m.op_index = i;
    m.op_conflicts = 0;
    if ((rc = apply_op(&m, &in->ops[i])) != 0)
      goto fail;
  }
  if (m.rejected) {
    char reason[sizeof res->reason];
    memcpy(reason, res->reason, sizeof reason);
    tt_merge_result_clear(res);
    memcpy(res->reason, reason, sizeof reason);
    res->kind = TT_OUT_REJECTED;
    tt_doc_clear(&w);
    return 0;
  }
  if (res->nconflicts) {
    res->kind = TT_OUT_CONFLICT;
    res->rule = NULL;
  } else if (res->rule) {
    res->kind = TT_OUT_MERGED;
  } else {
    res->kind = TT_OUT_APPLIED;
  }
  res->changed = m.changed;
  if (m.changed) {
    w.version = commit_seq;
    tt_doc_clear(doc);
    *doc = w;
  } else {
    tt_doc_clear(&w);
  }
  return 0;
fail:
  tt_doc_clear(&w);
  tt_merge_result_clear(res);
  return rc;
}

/* ---- replica-side view --------------------------------------------------*/

/* Sets KEY of *DOC (creating the object) to the new reference V. */
static int view_put(json_t **doc, const char *key, json_t *v) {
  if (!v)
    return TETHER_ENOMEM;
  if (!*doc && !(*doc = json_object())) {
    json_decref(v);
    return TETHER_ENOMEM;
  }
  return json_object_set_new(*doc, key, v) == 0 ? 0 : TETHER_ENOMEM;
}

static int view_op(json_t **doc, const tt_op *op) {
  int needs_field = op->kind != TT_OP_CREATE && op->kind != TT_OP_DELETE;
  json_t *nv = NULL;
  int rc;
  if (needs_field && !tt_name_valid(op->field))
    return TETHER_EINVAL;
  if (needs_field && op->kind != TT_OP_RESOLVE &&
      strcmp(op->field, DOC_FIELD) == 0)
    return TETHER_EINVAL;
  switch (op->kind) {
  case TT_OP_SET:
    if (!op->value)
      return TETHER_EINVAL;
    return view_put(doc, op->field, json_incref(op->value));
  case TT_OP_UNSET:
    if (*doc)
      json_object_del(*doc, op->field);
    return 0;
  case TT_OP_INCR:
  case TT_OP_ADD:
  case TT_OP_REMOVE: {
    json_t *cur = *doc ? json_object_get(*doc, op->field) : NULL;
    if (!op->value)
      return TETHER_EINVAL;
    rc = op->kind == TT_OP_INCR  ? tt_value_incr(cur, op->value, &nv)
         : op->kind == TT_OP_ADD ? tt_value_set_add(cur, op->value, &nv)
                                 : tt_value_set_remove(cur, op->value, &nv);
    if (rc)
      return rc;
    return view_put(doc, op->field, nv);
  }
  case TT_OP_DELETE:
    json_decref(*doc);
    *doc = NULL;
    return 0;
  case TT_OP_CREATE:
  case TT_OP_RESOLVE:
    if (op->kind == TT_OP_RESOLVE && strcmp(op->field, DOC_FIELD) != 0) {
      if (op->resolve_unset) {
        if (*doc)
          json_object_del(*doc, op->field);
        return 0;
      }
      if (!op->value)
        return TETHER_EINVAL;
      return view_put(doc, op->field, json_incref(op->value));
    }
    if (op->kind == TT_OP_RESOLVE && op->resolve_unset) {
      json_decref(*doc);
      *doc = NULL;
      return 0;
    }
    if (!json_is_object(op->value))
      return TETHER_ETYPE;
    if (bad_doc_value(op->value))
      return TETHER_EINVAL;
    if (!(nv = json_copy(op->value)))
      return TETHER_ENOMEM;
    json_decref(*doc);
    *doc = nv;
    return 0;
  default:
    return TETHER_EINVAL;
  }
}

int tt_view_apply(const json_t *view, const tt_intent *in, json_t **out) {
  int rc = 0;
  json_t *doc = NULL;
  *out = NULL;
  if (view) {
    if (!json_is_object(view))
      return TETHER_ETYPE;
    /* Shallow: values are replaced, never changed in place. */
    if (!(doc = json_copy((json_t *)view)))
      return TETHER_ENOMEM;
  }
  for (size_t i = 0; i < in->nops; i++)
    if ((rc = view_op(&doc, &in->ops[i])) != 0)
      goto out;
out:
  if (rc) {
    json_decref(doc);
    return rc;
  }
  *out = doc;
  return 0;
}
