/* rg_vmath.h -- vector math for the batched forward sweep: exp, log, sin, cos and tanh over a row of
 * samples with glibc's libmvec (built in when setup.py finds it: RG_VECTOR_MATH).
 *
 * libmvec is within 4 ulp of libm (tests/test_vector_math.py measures it), so values computed with
 * it agree with a per-sample loop to that accuracy rather than bit for bit. Each value depends only
 * on its input, never on where it falls in a batch, a chunk or a thread's share.
 */
#ifndef RG_VMATH_H
#define RG_VMATH_H

#include <stdint.h>

#include "rg_ops.h"

/* The ops vector math computes, with their libm names, are RG_VMATH_LIST (rg_ops_gen.h): the rows
 * of rustograd_cy/_opspec.py with a `vmath` name. */

/* Whether op is one of them (inline, so other ops skip the call to rg_vmath). */
static inline int rg_vmath_op(int op) {
#define RG_VMATH_IS(code, f) op == RG_##code ||
    return RG_VMATH_LIST(RG_VMATH_IS) 0;
#undef RG_VMATH_IS
}

/* Switches vector math on or off (on by default when built in); returns whether it is on, which is
 * never when the library was built without it. */
int rg_set_vector_math(int on);
int rg_vector_math(void);

/* TESTS ONLY: use libmvec's entry points for `level` (0: SSE2, 1: AVX2, 2: AVX-512), or, with -1,
 * the widest the CPU has (the default). Returns 0, changing nothing, if the CPU lacks that level. */
int rg_vmath_force_level(int level);

/* When vector math is on and `op` is one of RG_VMATH_LIST: out[k] = op(in[k])
 * for k < n, and returns 1. Otherwise does nothing and returns 0. */
int rg_vmath(int op, double *out, const double *in, int64_t n);

#endif /* RG_VMATH_H */
