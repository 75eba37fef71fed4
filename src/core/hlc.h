/* hlc.h — hybrid logical clock: 48-bit Unix milliseconds << 16 | 16-bit
 * logical counter. Ties between equal HLCs break on the origin (replica id).
 * Time is always passed in; nothing here reads a clock. */
#ifndef TT_CORE_HLC_H
#define TT_CORE_HLC_H

#include <stdint.h>

#include "util.h"

typedef uint64_t tt_hlc;

#define TT_HLC_MS(h) ((uint64_t)(h) >> 16)
#define TT_HLC_LOGICAL(h) ((uint16_t)((h) & 0xffffu))
#define TT_HLC_MAKE(ms, l) ((((uint64_t)(ms)) << 16) | (uint16_t)(l))

typedef struct {
  tt_hlc last; /* largest HLC issued or observed */
} tt_hlc_clock;

/* Next HLC for a local event at wall time NOW_MS: strictly greater than
 * every HLC this clock issued or observed, even if the wall clock went
 * backwards. */
tt_hlc tt_hlc_tick(tt_hlc_clock *c, uint64_t now_ms);

/* Merges a received HLC into the clock (receive event); returns the new
 * clock value, > both c->last and REMOTE. */
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
