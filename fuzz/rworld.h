/* rworld.h — the fixed replica state fuzz_replica_resp starts every input
 * from (and the seed generator writes answers for).
 *
 * The replica pulled four confirmed documents (cursor [3,2]); then made
 * six local intents: seq 1 set notes/n1.title, 2 incr notes/n1.n
 * (labelled), 3 put notes/n3, 4 delete notes/n2, 5 add notes/n1.tags,
 * 6 set tasks/t1.owner. The server has acknowledged seq 1 (applied, p 0,
 * commit 4) but no pull has covered it yet, so it is still in the outbox
 * and in the view. The request to answer carries seq 2..6. */
#ifndef TT_FUZZ_RWORLD_H
#define TT_FUZZ_RWORLD_H

#include <jansson.h>
#include <string.h>

#include "fuzz_common.h"
#include "replica/replica.h"

#define RW_NOW 1700000000000ull

static const uint8_t RW_ID[TT_ID_LEN] = {0xc3, 0xc3, 0xc3, 0xc3, 0xc3, 0xc3,
                                         0xc3, 0xc3, 0xc3, 0xc3, 0xc3, 0xc3,
                                         0xc3, 0xc3, 0xc3, 0xc3};

static const char RW_BOOT[] =
    "{\"v\":1,\"cursor\":[3,2],\"more\":false,\"changes\":["
    "{\"coll\":\"notes\",\"id\":\"n1\",\"p\":0,\"version\":1,"
    "\"set\":{\"title\":\"A\",\"n\":1,\"tags\":[\"x\"]}},"
    "{\"coll\":\"notes\",\"id\":\"n2\",\"p\":1,\"version\":2,"
    "\"set\":{\"body\":\"x\"}},"
    "{\"coll\":\"tasks\",\"id\":\"t1\",\"p\":0,\"version\":3,"
    "\"set\":{\"owner\":\"ann\",\"n\":0}},"
    "{\"coll\":\"tasks\",\"id\":\"t0\",\"p\":1,\"version\":1,"
    "\"deleted\":true}]}";

static json_t *rw_j(const char *text) {
  json_error_t e;
  json_t *j = json_loads(text, JSON_DECODE_ANY, &e);
  if (!j)
    FF_FAIL("rworld: JSON %s: %s", text, e.text);
  return j;
}

static void rw_ok(int rc, tt_replica *r, const char *what) {
  if (rc)
    FF_FAIL("rworld: %s: %s (%s)", what, tether_err_name(rc),
            r ? tt_replica_last_error(r) : "");
}

static void rw_write(tt_replica *r, const char *coll, const char *id,
                     tt_op_kind k, const char *field, const char *value,
                     const char *label, uint64_t now) {
  json_t *v = value ? rw_j(value) : NULL;
  rw_ok(tt_replica_write(r, coll, id, k, field, v, label, now), r, "write");
  json_decref(v);
}

/* On an empty store ST: builds the state above; *R the open replica, *REQ
 * the push request (seq 2..6) to answer. */
FF_UNUSED static void rw_build(tt_store *st, tt_replica **r, json_t **req) {
  json_t *boot = rw_j(RW_BOOT), *first = NULL, *resp;
  int more = 0;
  size_t nch = 0;

  rw_ok(tt_replica_create(st, RW_ID, "http://127.0.0.1:8420"), NULL,
        "create");
  rw_ok(tt_replica_open(st, r), NULL, "open");
  rw_ok(tt_replica_pull_done(*r, 200, boot, &more, &nch), *r, "boot pull");
  json_decref(boot);
  rw_write(*r, "notes", "n1", TT_OP_SET, "title", "\"B\"", NULL, RW_NOW + 1);
  rw_write(*r, "notes", "n1", TT_OP_INCR, "n", "2", "bump", RW_NOW + 2);
  json_t *obj = rw_j("{\"body\":\"new\",\"n\":1}");
  rw_ok(tt_replica_put(*r, "notes", "n3", obj, NULL, RW_NOW + 3), *r, "put");
  json_decref(obj);
  rw_write(*r, "notes", "n2", TT_OP_DELETE, NULL, NULL, NULL, RW_NOW + 4);
  rw_write(*r, "notes", "n1", TT_OP_ADD, "tags", "\"y\"", NULL, RW_NOW + 5);
  rw_write(*r, "tasks", "t1", TT_OP_SET, "owner", "\"cy\"", NULL, RW_NOW + 6);

  rw_ok(tt_replica_push_request(*r, 1, &first), *r, "push request 1");
  resp = rw_j("{\"v\":1,\"acked\":1,\"outcomes\":[{\"seq\":1,\"outcome\":"
              "\"applied\",\"p\":0,\"commit\":4}]}");
  rw_ok(tt_replica_push_done(*r, first, 200, resp), *r, "ack seq 1");
  json_decref(resp);
  json_decref(first);
  rw_ok(tt_replica_push_request(*r, 0, req), *r, "push request");
  if (json_array_size(json_object_get(*req, "intents")) != 5)
    FF_FAIL("rworld: the request should carry seq 2..6");
}

#endif
