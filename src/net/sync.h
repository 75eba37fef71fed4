/* sync.h — the sync driver: moves a replica's messages over HTTP.
 * Pushes the outbox in batches until it is empty, then pulls pages until
 * the server says there is no more. The replica state machine decides what
 * every answer means; this only carries messages and reports progress. */
#ifndef TT_NET_SYNC_H
#define TT_NET_SYNC_H

#include <stddef.h>

#include "net/http_client.h"
#include "replica/replica.h"
#include "tether.h"

/* Intents per push request (PROTOCOL.md allows up to 10,000). The first
 * request of a sync carries the first TT_SYNC_PUSH_BATCH intents of the
 * outbox, which is what `tether outbox` shows. */
#define TT_SYNC_PUSH_BATCH 2000
/* Changes asked per pull page. */
#define TT_SYNC_PULL_LIMIT 5000

/* Runs one sync of R over C (both borrowed). OPTS may be NULL (progress
 * callback only is read here; timeouts and retries belong to C).
 * Returns 0 when the outbox is empty and the replica has caught up.
 * On error errbuf says what happened in one line:
 *   TETHER_EUNREACHABLE  the server could not be reached; the replica was
 *                        not changed by the failed request (the outbox is
 *                        kept; earlier completed steps of this sync stay)
 *   TETHER_EREJECTED / TETHER_ESERVER / TETHER_EGAP / ...
 *                        the server refused a request; the replica's
 *                        last_error has the server's reason
 *   TETHER_EPROTO        an answer the replica could not use */
int tt_sync_run(tt_replica *r, tt_http_client *c, const tether_sync_opts *opts,
                char *errbuf, size_t errlen);

#endif
