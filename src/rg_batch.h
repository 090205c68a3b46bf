/* rg_batch.h -- batched replay: the tape's nodes evaluated for B samples at once.
 *
 * Layout is node-major: row i (node i's B values) is value[i * size .. i * size + size), and the same
 * for grad. Every node of a swept cone has a row. Leaves whose row holds per-sample data ("fixed"
 * rows, set from an array) keep it; every other leaf and constant is broadcast from the scalar tape's
 * value[] into its row by the forward sweep, so a scalar leaf can change without touching the batch.
 *
 * The sweeps loop op-outer, sample-inner: the op's switch sits outside a contiguous loop over the
 * samples [s0, s1), which the compiler vectorises for the arithmetic ops. They reuse rg_value and
 * rg_partials from rg_ops.h, so each sample's arithmetic is exactly the scalar sweep's.
 */
#ifndef RG_BATCH_H
#define RG_BATCH_H

#include <stdint.h>

#include "rg_tape.h"

typedef struct {
    double *value;  /* node-major rows of `size` values */
    double *grad;   /* node-major rows of per-sample adjoints */
    uint8_t *fixed; /* fixed[i]: row i holds per-sample data set by the caller (array leaves) */
    int64_t size;   /* samples per row, B; 0 when the tape is in scalar mode */
    rg_index rows;  /* rows allocated */
} rg_batch;

void rg_batch_free(rg_batch *b);

/* Grows to at least `rows` rows by doubling, keeping the contents; new rows are not fixed.
 * RG_OK, RG_ENOMEM or RG_EOVERFLOW; on failure the batch is unchanged. */
int rg_batch_reserve(rg_batch *b, int64_t rows);

/* Forward sweep over cone[pos..n) for samples [s0, s1): leaves that are not fixed and constants get
 * their scalar value broadcast, other nodes are computed. Stops at an apply node and returns its
 * position (its row is left to the caller), or returns n. Stamps nothing. */
rg_index rg_forward_batch(const rg_tape *t, rg_batch *b, const rg_index *cone, rg_index pos,
                          rg_index n, int64_t s0, int64_t s1);

/* Zeroes the cone's gradient rows on [s0, s1) and seeds the output's (cone[n - 1]) with 1. */
void rg_reverse_begin_batch(rg_batch *b, const rg_index *cone, rg_index n, int64_t s0, int64_t s1);

/* Reverse sweep over cone positions pos, pos - 1, ..., stop for samples [s0, s1): as rg_reverse,
 * per sample (a zero adjoint is not propagated). Returns the position of the first apply node met,
 * or stop - 1 when done. */
rg_index rg_reverse_batch(const rg_tape *t, rg_batch *b, const rg_index *cone, rg_index pos,
                          rg_index stop, int64_t s0, int64_t s1);

/* Tangent (forward-mode) sweep over cone[pos..n) for samples [s0, s1), as rg_tangent per sample, into
 * `tangent` (node-major rows of b->size, indexed by node). Returns the position of the first apply
 * node met (its row is left to the caller), or n. */
rg_index rg_tangent_batch(const rg_tape *t, const rg_batch *b, const rg_index *cone, rg_index pos,
                          rg_index n, rg_index var, double *tangent, int64_t s0, int64_t s1);

/* The whole forward (or reverse, begin included) sweep of an apply-free cone over all samples, in
 * cache-sized chunks, split across `threads` threads when the batch is long enough. RG_OK, or
 * RG_ENOMEM if threads could not be started (the sweep then runs in the calling thread). */
int rg_forward_batch_all(const rg_tape *t, rg_batch *b, const rg_index *cone, rg_index n,
                         int threads);
int rg_reverse_batch_all(const rg_tape *t, rg_batch *b, const rg_index *cone, rg_index n,
                         int threads);

/* Stamps the cone's computed nodes with `epoch` (a batch sweep stamps nothing itself). */
void rg_stamp_cone(rg_tape *t, const rg_index *cone, rg_index n, rg_stamp epoch);

/* For each leaf and constant of the cone, t->grad[i] = the sum of its gradient row, summed in sample
 * order (so the result does not depend on how the samples were split). */
void rg_sum_leaf_grads(rg_tape *t, const rg_batch *b, const rg_index *cone, rg_index n);

#endif /* RG_BATCH_H */
