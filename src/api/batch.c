/* batch.c — tether_batch_*: bulk local writes in one transaction. Kept in
 * its own file so programs that never batch do not link it. */
#include "api/api_int.h"

int tether_batch_begin(tether *t) {
  if (t == NULL)
    return TETHER_EINVAL;
  t->err[0] = '\0';
  if (t->abort_batch) {
    tt_api_set_err(t, "a batch is already open on this handle");
    return TETHER_EBUSY;
  }
  int rc = tt_replica_batch_begin(t->r);
  if (rc == 0)
    t->abort_batch = tt_replica_batch_abort;
  return tt_api_from_replica(t, rc);
}

int tether_batch_commit(tether *t) {
  if (t == NULL)
    return TETHER_EINVAL;
  t->err[0] = '\0';
  if (!t->abort_batch) {
    tt_api_set_err(t, "no batch is open on this handle");
    return TETHER_EINVAL;
  }
  /* The batch is over whatever the commit says: on failure nothing of it
   * was applied (the store discards a failed transaction). */
  t->abort_batch = NULL;
  return tt_api_from_replica(t, tt_replica_batch_commit(t->r));
}

void tether_batch_abort(tether *t) {
  if (t == NULL || !t->abort_batch)
    return;
  t->abort_batch = NULL;
  tt_replica_batch_abort(t->r);
}

