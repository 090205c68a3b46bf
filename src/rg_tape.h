/* rg_tape.h -- the tape: struct-of-arrays node buffers and the sweeps over them. Plain C99, no
 * Python.h: every function here may run without the GIL.
 *
 * Nodes are appended in creation order, so index order is a topological order and every sweep is a
 * loop over a cone: the ascending list of the nodes one output depends on (rg_cone). A sweep stops
 * at an RG_APPLY node (a Python callable) and returns its position; the caller runs the callable
 * with the GIL and resumes the sweep after it.
 */
#ifndef RG_TAPE_H
#define RG_TAPE_H

#include <stddef.h>
#include <stdint.h>

#include "rg_ops.h"

typedef int32_t rg_index;  /* node index; a tape holds at most RG_MAX_NODES nodes */
typedef uint8_t rg_opcode; /* an enum rg_op */
typedef uint32_t rg_stamp; /* the epoch a node's value was computed in; 0 = never */

#define RG_MAX_NODES INT32_MAX

enum { RG_OK = 0, RG_ENOMEM = -1, RG_EOVERFLOW = -2 };

typedef struct {
    rg_opcode *op;   /* op code of each node */
    rg_index *lhs;   /* first operand (unary ops: the operand) */
    rg_index *rhs;   /* second operand (unary ops: same as lhs; powc: the exponent's node) */
    double *value;   /* leaves: their value; others: the value computed by the last forward sweep */
    double *grad;    /* adjoint from the last reverse sweep */
    rg_stamp *stamp; /* epoch of value[i] for computed nodes; valid when equal to epoch */
    rg_index size;   /* nodes in use */
    rg_index capacity;
    rg_stamp epoch;  /* bumped whenever a leaf changes, so older values become stale */
    rg_index limit;  /* most nodes allowed; 0 means RG_MAX_NODES (tests lower it to reach the limit) */
} rg_tape;

/* Every buffer's bytes per node. */
#define RG_BYTES_PER_NODE                                                                       \
    (sizeof(rg_opcode) + 2 * sizeof(rg_index) + 2 * sizeof(double) + sizeof(rg_stamp))

/* Grows the buffers (by doubling) to hold at least `needed` nodes. RG_OK, RG_ENOMEM or
 * RG_EOVERFLOW (more than the tape's limit, at most RG_MAX_NODES); on failure the tape is unchanged. */
int rg_tape_reserve(rg_tape *t, int64_t needed);
void rg_tape_free(rg_tape *t);

/* Appends a node with no computed value; returns its index, or a negative error from reserve. */
static inline rg_index rg_tape_push(rg_tape *t, int op, rg_index lhs, rg_index rhs, double value) {
    if (t->size == t->capacity) {
        int err = rg_tape_reserve(t, (int64_t)t->size + 1);
        if (err) return err;
    }
    rg_index i = t->size++;
    t->op[i] = (rg_opcode)op;
    t->lhs[i] = lhs;
    t->rhs[i] = rhs;
    t->value[i] = value;
    t->grad[i] = 0.0;
    t->stamp[i] = 0;
    return i;
}

/* Writes into `cone` the ascending indices of the nodes `output` depends on, itself included, and
 * returns their count. `mark` is scratch space of output + 1 zeroed bytes. */
rg_index rg_cone(const rg_tape *t, rg_index output, uint8_t *mark, rg_index *cone);

/* Forward sweep over cone[pos..n): computes values and stamps them with `epoch`. Returns the
 * position of the first apply node met (its value is left to the caller), or n. */
rg_index rg_forward(rg_tape *t, const rg_index *cone, rg_index pos, rg_index n, rg_stamp epoch);

/* Writes into `order` the computing nodes of cone[0..n) (leaves left out) sorted by dependency
 * level (a node's level is one more than its operands' highest; leaves are 0), and within a level
 * by op code, each group in ascending index; returns their count, or RG_ENOMEM.
 * A forward sweep over `order` computes every node from the same operand values as one over the
 * cone, so the values are the same bit for bit; it is faster because runs of one op keep the
 * op's branch predicted and their independent libm calls overlap in the CPU. */
rg_index rg_level_order(const rg_tape *t, const rg_index *cone, rg_index n, rg_index *order);

/* Position of the first computed node in cone[0..n) whose value is not stamped `epoch`, or -1. */
rg_index rg_first_stale(const rg_tape *t, const rg_index *cone, rg_index n, rg_stamp epoch);

/* Zeroes the gradients of the cone's nodes and seeds the output (cone[n - 1]) with 1. */
void rg_reverse_begin(rg_tape *t, const rg_index *cone, rg_index n);

/* Reverse sweep over cone positions pos, pos - 1, ..., stop: adds each node's gradient times its
 * partials to its operands. Returns the position of the first apply node met (left to the caller),
 * or stop - 1 when done. A zero gradient or a zero partial is not propagated, so 0 * inf never
 * makes a NaN (rg_tangent does the same with zero tangents and partials). */
rg_index rg_reverse(rg_tape *t, const rg_index *cone, rg_index pos, rg_index stop);

/* One node's step of the reverse sweep: node i (computing op o, not apply) adds its gradient times
 * its partials to its operands, skipping a zero gradient and zero partials. */
static inline void rg_reverse_node(rg_tape *t, rg_index i, int o) {
    double g = t->grad[i];
    if (g == 0.0) return;
    rg_index l = t->lhs[i], r = t->rhs[i];
    double da, db;
    rg_partials(o, t->value[l], t->value[r], t->value[i], &da, &db);
    /* A zero partial contributes nothing either, even where the gradient is infinite. */
    if (da != 0.0) t->grad[l] += g * da;
    if (RG_OP_INFO[o].arity == 2 && db != 0.0) t->grad[r] += g * db;
}

/* Tangent (forward-mode) sweep over cone[pos..n) into `tangent` (indexed by node): leaves get 1 if
 * they are `var`, else 0. Returns the position of the first apply node met, or n. */
rg_index rg_tangent(const rg_tape *t, const rg_index *cone, rg_index pos, rg_index n, rg_index var,
                    double *tangent);

/* Whether any of x[0..count) is NaN or infinite. */
static inline int rg_any_nonfinite(const double *x, int64_t count) {
    for (int64_t k = 0; k < count; k++)
        if (!isfinite(x[k])) return 1;
    return 0;
}

/* Position of the first node of cone[0..n) (the last, with `descending`) whose entry in `x` (values,
 * gradients or tangents, indexed by node) is NaN or infinite, or -1. The anomaly check: run only
 * when it is enabled, after a sweep. */
rg_index rg_first_nonfinite(const double *x, int64_t width, const rg_index *cone, rg_index n,
                            int descending);

/* The runs of consecutive nodes among cone[at[0]], cone[at[1]], ..., cone[at[n - 1]] (ascending;
 * at == NULL: cone[0..n)): run k is nodes runs[2k] to runs[2k + 1] - 1. Writes them if `runs` is not
 * NULL; returns how many there are. */
rg_index rg_cone_runs(const rg_index *cone, const int32_t *at, rg_index n, rg_index *runs);

/* Whether `count` runs of n nodes are few enough to be worth keeping (a model's weights, or its
 * cone, are a few long runs). */
static inline int rg_runs_worth_keeping(rg_index count, rg_index n) {
    return count > 0 && count <= n / 8;
}

/* Clears every stamp (used when the epoch counter wraps around). */
void rg_reset_stamps(rg_tape *t);

#endif /* RG_TAPE_H */
