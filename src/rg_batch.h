/* rg_batch.h -- batched replay: the tape's nodes evaluated for B samples at once.
 *
 * A node is "varying" when it depends on a leaf set to an array (a "fixed" row of per-sample data),
 * or is an apply node; every other node is "uniform": it has one value for the whole batch. Uniform
 * nodes are computed once per sweep, as scalars in the tape's value[] and grad[] (a uniform node's
 * gradient is the sum over the batch of its per-sample gradients). Varying nodes have rows.
 *
 * Layout is node-major: row i (node i's B values) is value[i * size .. i * size + size), and the same
 * for grad. Rows are allocated for every node; a uniform node's row is written only when a caller
 * asks for it (rg_fill_uniform_rows).
 *
 * The sweeps loop op-outer, sample-inner: the op's switch sits outside a contiguous loop over the
 * samples [s0, s1), which the compiler vectorises for the arithmetic ops. They reuse rg_value and
 * rg_partials from rg_ops.h, so each sample's arithmetic is exactly the scalar sweep's: values equal
 * a per-sample loop's bit for bit. A uniform node's gradient is a sum over the samples formed in a
 * different order than a per-sample loop's (in 16 lanes, per chunk and thread), so it agrees with
 * that loop to rounding.
 *
 * Two ways to sweep: node by node (rg_forward_batch, rg_reverse_batch: the Python layer drives
 * these when apply() nodes or callbacks need it), or all in C by a cone's plan (rg_*_batch_all;
 * rg_plan.h), which fuses chains of sums and may leave their inner nodes' rows unwritten.
 */
#ifndef RG_BATCH_H
#define RG_BATCH_H

#include <stdint.h>

#include "rg_plan.h"
#include "rg_tape.h"

typedef struct {
    double *value;    /* node-major rows of `size` values */
    double *grad;     /* node-major rows of per-sample adjoints */
    uint8_t *fixed;   /* fixed[i]: row i holds per-sample data set by the caller (array leaves) */
    uint8_t *varying; /* varying[i]: node i has a row (see above); valid for i < classified */
    int64_t size;     /* samples per row, B; 0 when the tape is in scalar mode */
    rg_index rows;    /* rows allocated */
    rg_index classified; /* nodes whose varying[] is up to date; set to 0 when fixed[] changes */
    int64_t total;    /* the batch's B when value/grad are a chunk's rows of width `size` (a view, as
                       * rg_stream_batch's jobs sweep); 0: `size` is B */
    uint8_t streamed; /* value and grad hold no rows (NULL): rg_stream_batch sweeps the batch chunk
                       * by chunk; rg_batch_reserve then grows fixed[] and varying[] only */
    const int32_t *slot; /* a streamed chunk's view: node i's row is row slot[i] (rows that only a
                          * fused chain's inner node would have are one shared spare row); NULL:
                          * row i (the tape's own rows) */
    /* A streamed eval()'s value rows, all chunks of them, kept for the backprop() after it (rg_stream
     * retain and reuse); and the layout they were written in: rows per chunk, chunk, jobs. */
    double *retained;
    size_t retained_cap; /* doubles allocated */
    int64_t retained_rows, retained_chunk, retained_jobs;
    /* The streamed sweeps' own rows of a chunk per thread, kept from one sweep to the next (fresh
     * pages each sweep cost more than the sweep at a few thousand samples). */
    double *chunk_rows;
    size_t chunk_rows_cap; /* doubles allocated */
    double *gemm_work; /* the same for the dense groups' scratch space (rg_plan.h) */
    size_t gemm_work_cap;
} rg_batch;

/* What a sweep covers: the rows of varying nodes, the scalars of uniform nodes, or both. */
enum { RG_SWEEP_VARYING = 1, RG_SWEEP_UNIFORM = 2, RG_SWEEP_BOTH = 3 };

void rg_batch_free(rg_batch *b);

/* Grows to at least `rows` rows by doubling, keeping the contents; new rows are not fixed.
 * RG_OK, RG_ENOMEM or RG_EOVERFLOW; on failure the batch is unchanged. */
int rg_batch_reserve(rg_batch *b, int64_t rows);

/* Frees the rows (on: the batch is streamed, see rg_stream_batch) or allocates them for every
 * reserved node (off; gradients zeroed, values unset). RG_OK, RG_ENOMEM or RG_EOVERFLOW; on failure
 * the batch is unchanged. */
int rg_batch_set_streamed(rg_batch *b, int on);

/* Brings varying[] up to date for nodes [0, upto) (upto <= rows); cheap when it already is. */
void rg_batch_classify(const rg_tape *t, rg_batch *b, rg_index upto);

/* Forward sweep over cone[pos..n), node by node: with RG_SWEEP_UNIFORM, uniform nodes get their
 * value[]; with RG_SWEEP_VARYING, varying nodes get their rows on samples [s0, s1). Stops at an
 * apply node and returns its position (its row is left to the caller), or returns n. Stamps
 * nothing. */
rg_index rg_forward_batch(rg_tape *t, rg_batch *b, const rg_index *cone, rg_index pos,
                          rg_index n, int64_t s0, int64_t s1, int mode);

/* For each cone position, which of its operands' gradient rows its node is the first to reach in a
 * reverse sweep (bit 0: lhs, bit 1: rhs), written to first[pos]. A sweep given these stores there
 * rather than adding, so the rows need not be zeroed first. `mark` is scratch space of
 * cone[n - 1] + 1 zeroed bytes. */
void rg_first_reach(const rg_tape *t, const rg_index *cone, rg_index n, uint8_t *mark,
                    uint8_t *first);

/* With `zero`, zeroes the cone's varying gradient rows on [s0, s1) (needed by a sweep without
 * rg_first_reach's flags); then, if the output (cone[n - 1]) is varying, seeds its row with 1. */
void rg_reverse_begin_batch(rg_batch *b, const rg_index *cone, rg_index n, int64_t s0, int64_t s1,
                            int zero);

/* Zeroes the cone's uniform gradients (grad[]; the plan lists them) and, if the output is uniform,
 * seeds it with B (the derivative of the sum over the batch). */
void rg_reverse_begin_uniform(rg_tape *t, const rg_batch *b, const rg_plan *p,
                              const rg_index *cone, rg_index n);

/* Reverse sweep over cone positions pos, pos - 1, ..., stop, node by node, as rg_reverse per sample
 * (a zero adjoint or partial is not propagated). With RG_SWEEP_VARYING, varying nodes' rows on
 * [s0, s1) propagate to their operands' rows (stored where `first` says, else added: with
 * first == NULL, to zeroed rows), and to uniform operands' entries of `uniform_grad` (indexed by
 * node) as sums over those samples; `scratch` holds b->size doubles. With RG_SWEEP_UNIFORM, uniform
 * nodes propagate grad[] (uniform_grad must then be t->grad). Returns the position of the first
 * apply node met, or stop - 1 when done. */
rg_index rg_reverse_batch(rg_tape *t, rg_batch *b, const rg_index *cone, const uint8_t *first,
                          rg_index pos, rg_index stop, int64_t s0, int64_t s1,
                          double *uniform_grad, double *scratch, int mode);

/* Write the rows of the plan's inner nodes, which fused sweeps leave unwritten (rg_plan.h): their
 * values (from the chains' operands: call it while those rows are current) or their gradients (from
 * the tops' gradient rows). */
void rg_fill_inner_values(const rg_tape *t, const rg_plan *p, rg_batch *b);
void rg_fill_inner_grads(const rg_plan *p, rg_batch *b);

/* Tangent (forward-mode) sweep over cone[pos..n) for samples [s0, s1), as rg_tangent per sample, into
 * `tangent` (node-major rows of b->size, indexed by node). Reads every cone node's value row, so call
 * rg_fill_uniform_rows first. Returns the position of the first apply node met (its row is left to
 * the caller), or n. */
rg_index rg_tangent_batch(const rg_tape *t, const rg_batch *b, const rg_index *cone, rg_index pos,
                          rg_index n, rg_index var, double *tangent, int64_t s0, int64_t s1);

/* Writes each uniform cone node's value[] across its row. */
void rg_fill_uniform_rows(const rg_tape *t, rg_batch *b, const rg_index *cone, rg_index n);

/* The whole forward (or reverse, begins included, with rg_first_reach's flags) sweep of an
 * apply-free cone over all samples, by the cone's plan: uniform nodes once, varying rows in
 * cache-sized chunks, chains fused (leaving their inner nodes' rows unwritten), split across
 * `threads` threads when the batch is long enough. RG_OK, or RG_ENOMEM when memory for the sweep's
 * scratch space ran out (nothing is computed then). Threads that cannot be started leave their
 * share to the caller's. */
int rg_forward_batch_all(rg_tape *t, rg_batch *b, const rg_plan *plan, const rg_index *cone,
                         rg_index n, int threads);
int rg_reverse_batch_all(rg_tape *t, rg_batch *b, const rg_plan *plan, const rg_index *cone,
                         const uint8_t *first, rg_index n, int threads);

/* A BLAS dgemm, Fortran interface (column-major; every argument by pointer), as
 * scipy.linalg.cython_blas exports it. */
typedef void (*rg_dgemm_fn)(const char *transa, const char *transb, const int *m, const int *n,
                            const int *k, const double *alpha, const double *a, const int *lda,
                            const double *b, const int *ldb, const double *beta, double *c,
                            const int *ldc);

/* The dgemm the sweeps call for a plan's dense groups (rg_plan.h), or NULL for none (plans must
 * then be built without RG_PLAN_GEMM). Set it before any sweep that could use it, not during one. */
void rg_set_dgemm(rg_dgemm_fn f);

/* The BLAS's "set this thread's thread count, return the previous" (OpenBLAS's
 * openblas_set_num_threads_local), or NULL: the sweeps run their products on one BLAS thread each. */
typedef int (*rg_blas_threads_fn)(int threads);
void rg_set_blas_threads_fn(rg_blas_threads_fn f);
int rg_have_dgemm(void);

/* A node's B-long array, outside the rows: an array leaf's data, or a row kept for the caller. */
typedef struct {
    rg_index node;
    double *data;
} rg_stream_row;

/* What a streamed sweep reads and keeps, and (with `check`) the first non-finite entry it met. */
typedef struct {
    const rg_stream_row *inputs; /* the cone's array leaves: copied in a chunk at a time */
    const rg_stream_row *values; /* value rows kept: written a chunk at a time (forward only) */
    const rg_stream_row *grads;  /* gradient rows kept: written a chunk at a time (reverse only) */
    int32_t n_inputs, n_values, n_grads;
    int64_t chunk;     /* samples per chunk, or 0: the full sweep's chunk, capped so that one
                        * thread's rows take at most RG_STREAM_BYTES */
    int fill_inner;    /* a kept row may be a fused chain's inner node: write those each chunk */
    int check;         /* the anomaly check, as rg_first_nonfinite_batch on the full rows would: */
    rg_index bad_pos;  /* out: the cone position of the first node (values ascending, then
                        * gradients descending) with a NaN or infinity, or -1 */
    int64_t bad_sample; /* out: its first such sample (in the whole batch), or -1 for a uniform node */
    double bad_value;  /* out: that entry */
    int bad_grad;      /* out: it is a gradient (else a value) */
    int64_t chunk_used; /* out: the samples per chunk the sweep ran */
    /* A forward sweep keeps its value rows (in rg_batch.retained) when they take at most
     * `retain_bytes`, and says so in `retained`. A reverse sweep given `reuse` (the caller knows the
     * last streamed sweep was a forward one of this cone, with nothing changed since) reads them
     * instead of running each chunk forward again, when their layout is the one it would write; it
     * says so in `retained`. Values are then the same, so results are too. Not with `check`. */
    double retain_bytes;
    int reuse;
    int retained; /* out */
} rg_stream;

/* rg_forward_batch_all / rg_reverse_batch_all of a batch whose rows are not held (b->streamed,
 * b->size = B): the samples go chunk by chunk, each thread holding the rows of one chunk only
 * (values and gradients of the rows a chunk needs: see stream_slots in rg_batch.c), filled from
 * st->inputs. A reverse sweep runs each chunk forward and then back (unless it reuses the rows a
 * forward sweep retained: rg_stream), so the uniform nodes' values must be current (an eval()
 * first) and their gradients are summed over the chunks; its forward values are not kept. With the
 * full sweep's chunk, values and gradients equal the full sweep's bit for bit. A staged plan is not
 * streamed: RG_ESTAGED. Else RG_OK, or RG_ENOMEM (nothing computed). */
enum { RG_ESTAGED = -3 };
int rg_stream_batch(rg_tape *t, rg_batch *b, const rg_plan *plan, const rg_index *cone,
                    const uint8_t *first, rg_index n, int threads, rg_stream *st, int reverse);

/* Stamps the cone's computed nodes with `epoch` (a batch sweep stamps nothing itself). */
void rg_stamp_cone(rg_tape *t, const rg_index *cone, rg_index n, rg_stamp epoch);

/* rg_stamp_cone by the cone's runs (rg_cone_runs): each run's stamps filled in one loop. It stamps
 * the leaves too, which is harmless (a leaf is always current: no reader looks at a leaf's stamp)
 * and saves reading every node's op. */
void rg_stamp_runs(rg_tape *t, const rg_index *runs, rg_index n_runs, rg_stamp epoch);

/* Position of the first cone node (the last, with `descending`) with a NaN or infinite entry: in its
 * row of `rows` (width b->size) if it is varying, else in `scalars` (indexed by node). -1 if none. */
rg_index rg_first_nonfinite_batch(const rg_batch *b, const double *rows, const double *scalars,
                                  const rg_index *cone, rg_index n, int descending);

#endif /* RG_BATCH_H */
