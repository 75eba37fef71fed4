/* core_hlc.c — hybrid logical clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/hlc.h"

static const uint8_t A[TT_ID_LEN] = {1};
static const uint8_t B[TT_ID_LEN] = {2};

static void test_pack(void **state) {
  (void)state;
  tt_hlc h = TT_HLC_MAKE(1700000000000ull, 7);
  assert_true(TT_HLC_MS(h) == 1700000000000ull);
  assert_int_equal(TT_HLC_LOGICAL(h), 7);
}

static void test_tick_monotonic(void **state) {
  (void)state;
  tt_hlc_clock c = {0};
  tt_hlc a = tt_hlc_tick(&c, 1000);
  assert_true(a == TT_HLC_MAKE(1000, 0));
  tt_hlc b = tt_hlc_tick(&c, 1000); /* same ms: logical counter */
  assert_true(b == TT_HLC_MAKE(1000, 1));
  tt_hlc d = tt_hlc_tick(&c, 500); /* clock went backwards */
  assert_true(d > b);
  assert_true(TT_HLC_MS(d) == 1000);
  tt_hlc e = tt_hlc_tick(&c, 2000); /* wall clock ahead: back to it */
  assert_true(e == TT_HLC_MAKE(2000, 0));
  assert_true(c.last == e);
}

static void test_tick_overflow_carries(void **state) {
  (void)state;
  tt_hlc_clock c = {TT_HLC_MAKE(1000, 0xffff)};
  tt_hlc h = tt_hlc_tick(&c, 1000);
  assert_true(h > TT_HLC_MAKE(1000, 0xffff));
  assert_true(h == TT_HLC_MAKE(1001, 0));
  /* Saturation at the very top instead of wrapping to 0; a clock loaded
   * with a value beyond the top comes back to it. */
  tt_hlc_clock top = {TT_HLC_MAX};
  assert_true(tt_hlc_tick(&top, 5) == TT_HLC_MAX);
  tt_hlc_clock over = {UINT64_MAX};
  assert_true(tt_hlc_tick(&over, 5) == TT_HLC_MAX);
}

/* A wall clock far in the future must not produce an HLC that an intent
 * cannot carry (a JSON integer below 2^63): the replica's outbox would be
 * refused forever. The milliseconds stop at 2^47 - 1; the logical counter
 * still counts there, then the value stays at the maximum. */
static void test_far_future_fits_63_bits(void **state) {
  (void)state;
  const uint64_t cap_ms = (UINT64_C(1) << 47) - 1;
  assert_true(TT_HLC_MAX == (tt_hlc)INT64_MAX);
  assert_true(TT_HLC_MAX == TT_HLC_MAKE(cap_ms, 0xffff));

  tt_hlc_clock c = {0};
  tt_hlc h = tt_hlc_tick(&c, UINT64_C(1) << 47); /* just past the cap */
  assert_true(h <= (tt_hlc)INT64_MAX);
  assert_true(h == TT_HLC_MAKE(cap_ms, 0));
  tt_hlc prev = h;
  h = tt_hlc_tick(&c, UINT64_MAX); /* wall clock absurdly far ahead */
  assert_true(h > prev && h <= (tt_hlc)INT64_MAX);
  assert_true(h == TT_HLC_MAKE(cap_ms, 1));
  /* the counter goes on up to the maximum, strictly increasing */
  for (prev = h; prev < TT_HLC_MAX; prev = h) {
    h = tt_hlc_tick(&c, UINT64_C(1) << 50);
    assert_true(h == prev + 1);
  }
  assert_true(h == TT_HLC_MAX);
  assert_true(tt_hlc_tick(&c, UINT64_MAX) == TT_HLC_MAX);
  assert_true(tt_hlc_tick(&c, 1000) == TT_HLC_MAX);

  /* observe: a remote beyond 63 bits, or a far-future wall, is capped */
  tt_hlc_clock o = {TT_HLC_MAKE(1000, 0)};
  h = tt_hlc_observe(&o, UINT64_MAX, 2000);
  assert_true(h == TT_HLC_MAX);
  tt_hlc_clock o2 = {TT_HLC_MAKE(1000, 0)};
  h = tt_hlc_observe(&o2, TT_HLC_MAKE(5, 0), UINT64_MAX);
  assert_true(h == TT_HLC_MAKE(cap_ms, 0));
  h = tt_hlc_observe(&o2, TT_HLC_MAKE(cap_ms, 7), UINT64_MAX);
  assert_true(h == TT_HLC_MAKE(cap_ms, 8));
  /* the server's clamp never yields more either */
  assert_true(tt_hlc_clamp(UINT64_MAX, UINT64_MAX, 0) <= (tt_hlc)INT64_MAX);
}

static void test_tick_many_same_ms(void **state) {
  (void)state;
  tt_hlc_clock c = {0};
  tt_hlc prev = 0;
  for (int i = 0; i < 70000; i++) {
    tt_hlc h = tt_hlc_tick(&c, 42);
    assert_true(h > prev);
    prev = h;
  }
  assert_true(TT_HLC_MS(prev) == 43); /* 65536 per ms, then carried */
}

static void test_observe(void **state) {
  (void)state;
  tt_hlc_clock c = {TT_HLC_MAKE(1000, 3)};
  /* Remote ahead of both the clock and the wall. */
  tt_hlc r = TT_HLC_MAKE(5000, 9);
  tt_hlc h = tt_hlc_observe(&c, r, 2000);
  assert_true(h > r);
  assert_true(h == TT_HLC_MAKE(5000, 10));
  /* Wall ahead of everything: the wall wins. */
  h = tt_hlc_observe(&c, TT_HLC_MAKE(10, 0), 9000);
  assert_true(h == TT_HLC_MAKE(9000, 0));
  /* Remote behind: still strictly beyond last. */
  tt_hlc before = c.last;
  h = tt_hlc_observe(&c, TT_HLC_MAKE(1, 1), 1);
  assert_true(h > before);
  /* A later tick stays above what was observed. */
  assert_true(tt_hlc_tick(&c, 0) > h);
}

static void test_clamp(void **state) {
  (void)state;
  tt_hlc ok = TT_HLC_MAKE(1000 + 60000, 5);
  assert_true(tt_hlc_clamp(ok, 1000, 60000) == ok);
  tt_hlc far = TT_HLC_MAKE(1000 + 60001, 5);
  assert_true(tt_hlc_clamp(far, 1000, 60000) == TT_HLC_MAKE(61000, 0));
  tt_hlc past = TT_HLC_MAKE(10, 1);
  assert_true(tt_hlc_clamp(past, 1000, 60000) == past);
  /* No overflow with a huge skew allowance. */
  assert_true(tt_hlc_clamp(far, 1000, UINT64_MAX) == far);
}

static void test_cmp(void **state) {
  (void)state;
  assert_true(tt_hlc_cmp(5, A, 6, A) < 0);
  assert_true(tt_hlc_cmp(6, A, 5, B) > 0);
  assert_true(tt_hlc_cmp(5, A, 5, B) < 0); /* tie: origin decides */
  assert_true(tt_hlc_cmp(5, B, 5, A) > 0);
  assert_int_equal(tt_hlc_cmp(5, A, 5, A), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pack),
      cmocka_unit_test(test_tick_monotonic),
      cmocka_unit_test(test_tick_overflow_carries),
      cmocka_unit_test(test_tick_many_same_ms),
      cmocka_unit_test(test_far_future_fits_63_bits),
      cmocka_unit_test(test_observe),
      cmocka_unit_test(test_clamp),
      cmocka_unit_test(test_cmp),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
