/* plant.h — known bugs planted on purpose, to prove that the simulation's
 * checkers fail when a guarantee breaks (tests/sim, `tether-sim --plant`).
 *
 * Only the tether-sim build defines TT_PLANTS (it compiles the library
 * sources a second time); in the library and in the `tether` binary
 * TT_PLANTED() is the constant 0 and every planted branch is dead code. */
#ifndef TT_CORE_PLANT_H
#define TT_CORE_PLANT_H

#ifdef TT_PLANTS
/* Defined by tests/sim: 1 when NAME is the bug planted for this run. */
int tt_planted(const char *name);
#define TT_PLANTED(name) tt_planted(name)
#else
#define TT_PLANTED(name) 0
#endif

#endif
