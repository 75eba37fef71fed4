/* sync.h — the sync driver: moves a replica's messages over HTTP.
 * Pushes the outbox in batches until it is empty, then pulls pages until
 * the server says there is no more. The replica state machine decides what
 * every answer means; this only carries messages and reports progress.
 *
 * Pull pages are pipelined: the request for page k+1 is built from page
 * k's answer and sent (on a second thread) while page k is applied, so
 * that server and replica work at the same time. Pushes are pipelined
 * too once the server has said "seen_ok": push k+1 is sent when push k's
 * answer has arrived and while that answer is being applied; its "seen"
 * tells the server which outcomes it may forget, since its first seq no
 * longer does (PROTOCOL.md). When the server has also said "ahead_ok",
 * two pushes are kept in flight on two connections: k+2 goes out "ahead"
 * before k+1 is answered, and the server holds it until k+1 has
 * committed, so it reads one push while it commits the other. Answers are
 * applied in order. An answer that arrives after the previous one failed
 * to apply is dropped: those intents are pushed again, and their kept
 * outcomes returned as duplicates. A push sent ahead that the server
 * stopped holding (409 gap) ends the pipelining for this sync. */
#ifndef TT_NET_SYNC_H
#define TT_NET_SYNC_H

#include <stddef.h>

#include "net/http_client.h"
#include "replica/replica.h"
#include "tether.h"

/* Intents per push request (PROTOCOL.md allows up to 10,000). Larger
 * pushes mean fewer round trips, server commits and disk writes, but each
 * side then holds bigger JSON trees and write transactions. On W1 at 100k
 * (BENCHMARKS.md, "After"), 5,000 cut server commits 2.5x and disk writes
 * by 13% against 2,000 with push time within this machine's noise, while
 * 10,000 pushed slower than 5,000 and doubled the server's peak heap.
 * The size stays bounded however large the intents: the replica stops a
 * request at TT_R_PUSH_MAX_BYTES (32 MiB), under the server's 64 MiB body
 * limit. The first request of a sync carries the first TT_SYNC_PUSH_BATCH
 * intents of the outbox, which is what `tether outbox` shows. */
#define TT_SYNC_PUSH_BATCH 5000
/* A push with at least this many intents is sure to be over the 4 KiB
 * compression threshold: worth a GET /v1/health first, to learn that the
 * server takes zstd, when this connection has not seen it yet. */
#define TT_SYNC_PROBE_INTENTS 32
/* Changes asked per pull page. */
#define TT_SYNC_PULL_LIMIT 5000

/* Runs one sync of R over C (both borrowed). OPTS may be NULL (progress
 * callback only is read here; timeouts and retries belong to C).
 * Returns 0 when the outbox is empty and the replica has caught up.
 * A pull answered 400 cursor re-bootstraps the replica
 * (tt_replica_rebootstrap) and pulls again from [], once per sync.
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
