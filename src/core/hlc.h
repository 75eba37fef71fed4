/* hlc.h — hybrid logical clock: Unix milliseconds << 16 | 16-bit logical
 * counter, in 63 bits (the milliseconds stop at 2^47 - 1: TT_HLC_MAX).
 * Ties between equal HLCs break on the origin (replica id). Time is always
 * passed in; nothing here reads a clock. */
#ifndef TT_CORE_HLC_H
#define TT_CORE_HLC_H

#include <stdint.h>

#include "util.h"

typedef uint64_t tt_hlc;

#define TT_HLC_MS(h) ((uint64_t)(h) >> 16)
#define TT_HLC_LOGICAL(h) ((uint16_t)((h) & 0xffffu))
#define TT_HLC_MAKE(ms, l) ((((uint64_t)(ms)) << 16) | (uint16_t)(l))

/* The largest HLC this clock issues: INT64_MAX, milliseconds 2^47 - 1
 * (about the year 6430) and logical 0xffff. Intents carry the HLC as a
 * JSON integer, which must be below 2^63, so a far-future wall clock must
 * never produce more: tick and observe cap the wall clock's milliseconds
 * at 2^47 - 1 (the logical counter still counts up from there, so values
 * stay strictly increasing until this maximum) and then stay at
 * TT_HLC_MAX. A clock or remote value above it counts as TT_HLC_MAX. */
#define TT_HLC_MAX ((tt_hlc)INT64_MAX)

typedef struct {
  tt_hlc last; /* largest HLC issued or observed */
} tt_hlc_clock;

/* Next HLC for a local event at wall time NOW_MS: strictly greater than
 * every HLC this clock issued or observed, even if the wall clock went
 * backwards — except at TT_HLC_MAX, where it stays. Never above
 * TT_HLC_MAX. */
tt_hlc tt_hlc_tick(tt_hlc_clock *c, uint64_t now_ms);

/* Merges a received HLC into the clock (receive event); returns the new
 * clock value, > both c->last and REMOTE (= TT_HLC_MAX once there). Never
 * above TT_HLC_MAX. */
tt_hlc tt_hlc_observe(tt_hlc_clock *c, tt_hlc remote, uint64_t now_ms);

/* The server's view of a client HLC: if REMOTE's milliseconds are more than
 * MAX_SKEW_MS ahead of SERVER_NOW_MS, returns TT_HLC_MAKE(SERVER_NOW_MS +
 * MAX_SKEW_MS, 0), otherwise REMOTE unchanged. A far-future clock can thus
 * never win last-writer-wins beyond the skew allowance. */
tt_hlc tt_hlc_clamp(tt_hlc remote, uint64_t server_now_ms,
                    uint64_t max_skew_ms);

/* Total order on (hlc, origin): <0, 0, >0. */
int tt_hlc_cmp(tt_hlc a, const uint8_t a_origin[TT_ID_LEN], tt_hlc b,
               const uint8_t b_origin[TT_ID_LEN]);

#endif
