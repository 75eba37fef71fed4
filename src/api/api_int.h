/* api_int.h — the replica handle behind include/tether.h, shared by the
 * files of src/api/. */
#ifndef TT_API_API_INT_H
#define TT_API_API_INT_H

#include "core/util.h"
#include "replica/replica.h"
#include "store/store.h"
#include "tether.h"

struct tether {
  tt_store *st;
  tt_replica *r;
  char id[2 * TT_ID_LEN + 1];
  char err[512]; /* tether_last_error */
  /* Set while a tether_batch_begin is open: how tether_close aborts it.
   * A pointer, so that programs that never batch do not link batch.c. */
  void (*abort_batch)(tt_replica *r);
};

/* Formats the handle's last-error detail. */
void tt_api_set_err(tether *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* After a failed replica call: keeps the replica's reason as the handle's
 * detail unless one is set already. Returns RC. */
int tt_api_from_replica(tether *t, int rc);

#endif
