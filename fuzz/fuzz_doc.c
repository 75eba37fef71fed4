/* fuzz_doc.c — bytes -> tt_doc_decode (the stored document record).
 *
 * Properties: never a crash, leak or UB; a refusal is ECORRUPT (EVERSION
 * for another format) with the document left cleared; an accepted record
 * holds sorted unique valid field names, no value in a deleted document,
 * and re-encodes to bytes that decode to the same document and encode to
 * the same bytes again. The view and the changes-since helpers accept
 * whatever the decoder accepted. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/doc.h"
#include "core/util.h"
#include "fuzz_common.h"

static void check_doc(const tt_doc *d) {
  for (size_t i = 0; i < d->nfields; i++) {
    const tt_field *f = &d->fields[i];
    FF_CHECK(tt_name_valid(f->name), "field %zu: bad name", i);
    if (i)
      FF_CHECK(strcmp(d->fields[i - 1].name, f->name) < 0,
               "fields not sorted/unique at %zu", i);
    if (d->deleted)
      FF_CHECK(f->value == NULL, "deleted document with a live field");
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ff_expect expect = ff_expectation();
  tt_doc d, d2, cp;
  char *e1 = NULL, *e2 = NULL;
  size_t l1 = 0, l2 = 0;
  int rc;

  rc = tt_doc_decode(data, size, &d);
  if (rc) {
    FF_CHECK(expect != FF_EXPECT_OK, "valid record refused: %s",
             tether_err_name(rc));
    FF_CHECK(rc == TETHER_ECORRUPT || rc == TETHER_EVERSION, "error %s",
             tether_err_name(rc));
    FF_CHECK(d.fields == NULL && d.nfields == 0, "refused doc not cleared");
    /* What the decoder refuses, the pull's text writer refuses too, and
     * leaves what it was given as it was. */
    tt_buf b = {0};
    FF_CHECK(tt_buf_add(&b, "x", 1) == 0, "buf");
    int trc = tt_doc_changes_text(data, size, 0, &b);
    FF_CHECK(trc == rc, "changes_text of a refused record: %s, decode %s",
             tether_err_name(trc), tether_err_name(rc));
    FF_CHECK(b.len == 1, "changes_text changed its buffer on error");
    tt_buf_free(&b);
    return 0;
  }
  FF_CHECK(expect != FF_EXPECT_BAD, "invalid record accepted");
  check_doc(&d);

  FF_CHECK(tt_doc_encode(&d, &e1, &l1) == 0, "encode failed");
  rc = tt_doc_decode(e1, l1, &d2);
  FF_CHECK(rc == 0, "re-encoded record refused: %s", tether_err_name(rc));
  FF_CHECK(tt_doc_encode(&d2, &e2, &l2) == 0, "encode 2 failed");
  FF_CHECK(l1 == l2 && !memcmp(e1, e2, l1), "encode is not stable");
  FF_CHECK(d2.version == d.version && d2.deleted == d.deleted &&
               d2.nfields == d.nfields,
           "round trip changed the header");
  for (size_t i = 0; i < d.nfields; i++)
    FF_CHECK(tt_canon_equal(d.fields[i].value, d2.fields[i].value) &&
                 !memcmp(&d.fields[i].stamp.origin, &d2.fields[i].stamp.origin,
                         TT_ID_LEN) &&
                 d.fields[i].stamp.seq == d2.fields[i].stamp.seq &&
                 d.fields[i].stamp.hlc == d2.fields[i].stamp.hlc,
             "round trip changed field %zu", i);

  FF_CHECK(tt_doc_copy(&cp, &d) == 0, "copy failed");
  free(e2);
  e2 = NULL;
  FF_CHECK(tt_doc_encode(&cp, &e2, &l2) == 0 && l2 == l1 &&
               !memcmp(e1, e2, l1),
           "copy encodes differently");

  json_t *view = tt_doc_view(&d);
  if (d.deleted)
    FF_CHECK(view == NULL, "deleted document has a view");
  else if (d.version)
    FF_CHECK(view != NULL, "no view of an accepted, written document");
  json_decref(view);
  uint64_t cursors[3] = {0, d.version ? d.version - 1 : 0, UINT64_MAX};
  for (int i = 0; i < 3; i++) {
    json_t *set = NULL, *unset = NULL;
    rc = tt_doc_changes_since(&d, cursors[i], &set, &unset);
    FF_CHECK(rc == 0, "changes_since of an accepted record failed: %s",
             tether_err_name(rc));
    FF_CHECK(json_is_object(set) && json_is_array(unset),
             "changes_since shapes");
    if (cursors[i] == UINT64_MAX)
      FF_CHECK(json_object_size(set) == 0 && json_array_size(unset) == 0,
               "changes past every stamp");
    /* The text a pull page is written from: the trees' canonical text. */
    tt_buf want = {0}, got = {0};
    if (json_object_size(set)) {
      FF_CHECK(tt_buf_add(&want, ",\"set\":", 7) == 0 &&
                   tt_canon_buf(&want, set, 0) == 0,
               "canon of set");
    }
    if (json_array_size(unset)) {
      FF_CHECK(tt_buf_add(&want, ",\"unset\":", 9) == 0 &&
                   tt_canon_buf(&want, unset, 0) == 0,
               "canon of unset");
    }
    FF_CHECK(tt_buf_add(&got, "x", 1) == 0, "buf");
    rc = tt_doc_changes_text(data, size, cursors[i], &got);
    FF_CHECK(rc == 0, "changes_text of an accepted record: %s",
             tether_err_name(rc));
    FF_CHECK(got.len == want.len + 1 &&
                 (want.len == 0 ||
                  memcmp(got.data + 1, want.data, want.len) == 0),
             "changes_text differs from changes_since:\n%.*s\n%.*s",
             (int)got.len - 1, (const char *)got.data + 1, (int)want.len,
             (const char *)want.data);
    tt_buf_free(&want);
    tt_buf_free(&got);
    json_decref(set);
    json_decref(unset);
  }
  free(e1);
  free(e2);
  tt_doc_clear(&d);
  tt_doc_clear(&d2);
  tt_doc_clear(&cp);
  return 0;
}
