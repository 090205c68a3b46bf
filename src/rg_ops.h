/* rg_ops.h -- the op table: every built-in operation's code, name, arity, value and partial
 * derivatives. The rows are written once, in rustograd_cy/_opspec.py; src/opgen.py (run by setup.py)
 * generates rg_ops_gen.h from them: RG_OP_LIST, RG_ELEMENT_OPS, RG_REDUCTION_OPS, enum rg_op,
 * RG_VMATH_LIST, rg_op_<name>() (each op's value), rg_is_reduction(), rg_value() and rg_partials().
 * The sweeps (rg_tape.c, rg_batch.c), the Python layer and every term kind read it.
 *
 * Node layout conventions (see rg_tape.h): a binary op reads lhs and rhs; a unary op stores its
 * operand in both lhs and rhs, so the sweeps can load both without a branch. RG_POWC is x ** c with
 * the exponent held by a constant node in rhs: it is not differentiated with respect to rhs.
 *
 * Conventions at kinks and edges (the spec's Partial(..., zero_if=...) rows and step functions;
 * documented in docs/guarantees.md):
 *   relu'(0) = 0, abs'(0) = 0;
 *   maximum/minimum propagate NaN like numpy's; on a tie each operand gets half the gradient;
 *   x ** c:  d/dx = 0 when c == 0 (so 0 ** 0 has no NaN gradient);
 *   x ** y:  d/dy = 0 when the value is 0 (so 0 ** y is smooth in y for y > 0).
 *
 * BATCH_SUM and BATCH_MEAN (the spec's kind="reduction" rows) reduce over the samples of a batch
 * (rg.sum, rg.mean): the batched sweeps (rg_batch.c) give them one value for the whole batch, with
 * their own code there (RG_ELEMENT_OPS lists every other op, whose loops those sweeps generate). In
 * a scalar sweep (one sample) both are the identity, which is what the table says.
 */
#ifndef RG_OPS_H
#define RG_OPS_H

#include <math.h>
#include <stdint.h>

/* rg_value and rg_partials are inlined into every loop that calls them, with the op a constant, so
 * their switch folds away; left to GCC's size estimate they were not, once the table grew. */
#if defined(__GNUC__)
#define RG_ALWAYS_INLINE static inline __attribute__((always_inline))
#else
#define RG_ALWAYS_INLINE static inline
#endif

#include "rg_ops_gen.h"

typedef struct {
    const char *name;
    int arity; /* differentiated operands (0 for leaves) */
    const char *infix; /* the operator's symbol between (or, for neg, before) the operands, or "" */
} rg_op_info;

#define RG_INFO_ENTRY(code, name, arity, infix) {name, arity, infix},
static const rg_op_info RG_OP_INFO[RG_NUM_OPS] = {RG_OP_LIST(RG_INFO_ENTRY)};
#undef RG_INFO_ENTRY

/* Leaves (variables and constants) hold their value; every other op computes it. */
static inline int rg_is_leaf(int op) { return op <= RG_CONST; }

#endif /* RG_OPS_H */
