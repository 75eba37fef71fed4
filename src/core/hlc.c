/* hlc.c — hybrid logical clock over the packed 48/16-bit representation.
 *
 * Because the logical counter sits in the low 16 bits, "previous + 1" on
 * the packed value is the classic HLC step, and a counter overflow carries
 * into the milliseconds: the result is still strictly larger, merely a
 * millisecond ahead of the wall clock. */
#include <string.h>

#include "core/hlc.h"

#define HLC_MS_MAX ((UINT64_C(1) << 48) - 1)

static tt_hlc wall(uint64_t now_ms) {
  if (now_ms > HLC_MS_MAX)
    now_ms = HLC_MS_MAX;
  return TT_HLC_MAKE(now_ms, 0);
}

/* The packed value saturates at UINT64_MAX (the year 10889): past that no
 * strictly larger value exists, and wrapping to 0 would be far worse. */
static tt_hlc next_after(tt_hlc h) { return h == UINT64_MAX ? h : h + 1; }

tt_hlc tt_hlc_tick(tt_hlc_clock *c, uint64_t now_ms) {
  tt_hlc w = wall(now_ms);
  c->last = w > c->last ? w : next_after(c->last);
  return c->last;
}

tt_hlc tt_hlc_observe(tt_hlc_clock *c, tt_hlc remote, uint64_t now_ms) {
  tt_hlc m = c->last > remote ? c->last : remote;
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
