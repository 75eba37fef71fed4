/* hlc.c — hybrid logical clock over the packed 48/16-bit representation.
 *
 * Because the logical counter sits in the low 16 bits, "previous + 1" on
 * the packed value is the classic HLC step, and a counter overflow carries
 * into the milliseconds: the result is still strictly larger, merely a
 * millisecond ahead of the wall clock. At the cap (TT_HLC_MAX, hlc.h) the
 * logical counter goes on counting up to 0xffff, then the value stays. */
#include <string.h>

#include "core/hlc.h"

/* Largest value issued: intents carry the HLC as a JSON integer, which
 * must be below 2^63 (intent.c), so the milliseconds stop at 2^47 - 1
 * (about the year 6430) rather than 2^48 - 1. */
#define HLC_MS_MAX ((UINT64_C(1) << 47) - 1)

static tt_hlc wall(uint64_t now_ms) {
  if (now_ms > HLC_MS_MAX)
    now_ms = HLC_MS_MAX;
  return TT_HLC_MAKE(now_ms, 0);
}

/* Past the top (TT_HLC_MAX) no strictly larger value exists, and wrapping
 * to 0, or going beyond what an intent can carry, would be far worse: it
 * saturates there. A value above the top (read from an older store, or a
 * peer not bound by this) counts as the top. */
static tt_hlc next_after(tt_hlc h) {
  return h >= TT_HLC_MAX ? TT_HLC_MAX : h + 1;
}

static tt_hlc capped(tt_hlc h) { return h > TT_HLC_MAX ? TT_HLC_MAX : h; }

tt_hlc tt_hlc_tick(tt_hlc_clock *c, uint64_t now_ms) {
  tt_hlc w = wall(now_ms);
  c->last = w > c->last ? w : next_after(c->last);
  return c->last;
}

tt_hlc tt_hlc_observe(tt_hlc_clock *c, tt_hlc remote, uint64_t now_ms) {
  tt_hlc m = c->last > remote ? c->last : remote;
  m = capped(m);
  tt_hlc w = wall(now_ms);
  c->last = w > m ? w : next_after(m);
  return c->last;
}

tt_hlc tt_hlc_clamp(tt_hlc remote, uint64_t server_now_ms,
                    uint64_t max_skew_ms) {
  uint64_t limit = server_now_ms + max_skew_ms;
  if (limit < server_now_ms || limit > HLC_MS_MAX)
    limit = HLC_MS_MAX;
  if (TT_HLC_MS(remote) > limit)
    return TT_HLC_MAKE(limit, 0);
  return remote;
}

int tt_hlc_cmp(tt_hlc a, const uint8_t a_origin[TT_ID_LEN], tt_hlc b,
               const uint8_t b_origin[TT_ID_LEN]) {
  static const uint8_t zero[TT_ID_LEN];
  if (a != b)
    return a < b ? -1 : 1;
  int r = memcmp(a_origin ? a_origin : zero, b_origin ? b_origin : zero,
                 TT_ID_LEN);
  return r < 0 ? -1 : r > 0 ? 1 : 0;
}
