/* doc.h — a stored document: top-level fields, each with the stamp of its
 * last write, plus a tombstone when deleted. The merge unit is the field. */
#ifndef TT_CORE_DOC_H
#define TT_CORE_DOC_H

#include <jansson.h>
#include <stdint.h>

#include "hlc.h"
#include "util.h"

typedef struct {
  uint64_t seq;                /* partition commit sequence of the write */
  tt_hlc hlc;                  /* (clamped) HLC of the intent that wrote it */
  uint8_t origin[TT_ID_LEN];   /* replica that wrote it */
} tt_stamp;

typedef struct {
  char *name;
  json_t *value;  /* owned reference; NULL = unset (a field tombstone) */
  tt_stamp stamp;
} tt_field;

typedef struct {
  uint64_t version;   /* seq of the last commit that changed it; 0 = never */
  int deleted;        /* tombstone: no live fields */
  tt_stamp del_stamp; /* valid when deleted (and kept after a revival for
                         comparison until overwritten) */
  tt_field *fields;   /* sorted by name (strcmp), unique */
  size_t nfields;
  size_t cap;
} tt_doc;

/* A zeroed tt_doc is a valid empty, never-written document. */
void tt_doc_clear(tt_doc *d);
/* Copies the entries; the JSON values are shared (new references), so a
 * field's value is never modified in place: replace it instead.
 * 0 or TETHER_ENOMEM (then *dst is cleared). */
int tt_doc_copy(tt_doc *dst, const tt_doc *src);

/* Field lookup; NULL if there is no entry (live or tombstone). */
tt_field *tt_doc_field(const tt_doc *d, const char *name);
/* Finds or inserts the entry for NAME (value NULL, zero stamp when new).
 * NULL on ENOMEM. */
tt_field *tt_doc_field_upsert(tt_doc *d, const char *name);

/* Live fields as a new JSON object (caller owns); NULL if deleted or never
 * written. */
json_t *tt_doc_view(const tt_doc *d);

/* Stored form. tt_doc_encode returns malloc'd bytes in *buf (free()).
 * tt_doc_decode never trusts its input: any malformed record is
 * TETHER_ECORRUPT and *out is left cleared. */
/* The format is described at the top of doc.c; a record of another format
 * version decodes to TETHER_EVERSION. */
int tt_doc_encode(const tt_doc *d, char **buf, size_t *len);
int tt_doc_decode(const void *buf, size_t len, tt_doc *out);

/* The VERSION and DELETED flag of a stored record, from its header only.
 * 0, TETHER_ECORRUPT or TETHER_EVERSION. */
int tt_doc_peek(const void *buf, size_t len, uint64_t *version,
                int *deleted);
/* tt_doc_changes_since, written as text from the stored record without
 * building the document: appends to OUT the members `,"set":{...}` and
 * `,"unset":[...]` (each only when not empty, nothing for a deleted
 * document), their canonical text. Every check of tt_doc_decode is made
 * (TETHER_ECORRUPT, TETHER_EVERSION), and each value is checked to be the
 * canonical text it is stored as before it is copied. TETHER_ENOMEM. On
 * error OUT is as before. */
int tt_doc_changes_text(const void *buf, size_t len, uint64_t cursor_seq,
                        tt_buf *out);

/* What a replica at cursor CURSOR_SEQ (for this document's partition) lacks:
 * *set = object of live fields with stamp.seq > CURSOR_SEQ, *unset = array
 * of names of field tombstones with stamp.seq > CURSOR_SEQ. Both new
 * references (caller owns). For a deleted document both are empty. */
int tt_doc_changes_since(const tt_doc *d, uint64_t cursor_seq, json_t **set,
                         json_t **unset);

#endif
