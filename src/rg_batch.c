/* rg_batch.c -- batch rows and the batched sweeps. See rg_batch.h for the contracts. */
#include "rg_batch.h"

#include "rg_vmath.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* A chunk's value and gradient rows of the whole cone should fit in about this many bytes (L2). */
#define RG_BATCH_CACHE_BYTES (512 * 1024)
/* Samples per chunk at least: each node costs a fixed overhead per chunk, which outweighs the cache
 * misses of longer rows. (The MLP of examples/moons_mlp.py, 650 varying nodes, measured: a 100-sample
 * step 81 us in chunks of 64 vs 63 us in one; 1000 samples 0.9 ms in chunks of 64 vs 0.45 in one.) */
#define RG_BATCH_MIN_CHUNK 1024
/* Row loops x samples a thread must get before another thread is worth starting. A row loop is a
 * plan's step or a chain's link. (Measured on the MLP of examples/moons_mlp.py, 374 row loops: one
 * training step on 2 threads took 0.33 ms vs 0.17 on one at 500 samples, 0.61 vs 0.65 at 2000, 0.74
 * vs 1.40 at 4000.) */
#define RG_BATCH_MIN_THREAD_WORK (1 << 19)
/* ... and at least this many samples: each thread beyond the first sums its own share of every
 * uniform node's gradient, which costs as much as a wide model's uniform sweep. (Measured on the
 * 2-128-128-1 MLP of benchmarks/mlp_sizes.py, 85,000 nodes, half of them uniform: a training step
 * of 300 samples took 3.04 ms on one thread vs 3.76 on two, of 100 samples 1.83 vs 2.53; the
 * 2-64-64-1 MLP at 1000 samples 2.41 vs 1.82.) */
#define RG_BATCH_MIN_THREAD_SAMPLES 400
#define RG_BATCH_MAX_THREADS 64
/* A streamed sweep's rows (nodes up to the output x a chunk, values and gradients) per thread at
 * most, and its chunk at least (rg_stream_batch). */
#define RG_STREAM_BYTES (64 * 1024 * 1024)
#define RG_STREAM_MIN_CHUNK 64

void rg_batch_free(rg_batch *b) {
    free(b->retained);
    free(b->chunk_rows);
    free(b->gemm_work);
    free(b->value);
    free(b->grad);
    free(b->fixed);
    free(b->varying);
    memset(b, 0, sizeof *b);
}

int rg_batch_reserve(rg_batch *b, int64_t rows) {
    if (rows <= b->rows) return RG_OK;
    if (rows > RG_MAX_NODES) return RG_EOVERFLOW;
    int64_t cap = b->rows > 0 ? b->rows : 64;
    while (cap < rows) cap *= 2;
    if (cap > RG_MAX_NODES) cap = RG_MAX_NODES;
    if (b->size > 0 && (uint64_t)cap > SIZE_MAX / sizeof(double) / (uint64_t)b->size)
        return RG_EOVERFLOW;
    size_t cells = b->streamed ? 0 : (size_t)cap * (size_t)b->size; /* streamed: no rows */
    /* Allocate all four before replacing any, so a failure leaves the batch as it was. */
    double *value = cells > 0 ? malloc(cells * sizeof *value) : NULL;
    double *grad = cells > 0 ? malloc(cells * sizeof *grad) : NULL;
    uint8_t *fixed = calloc((size_t)cap, 1);
    uint8_t *varying = calloc((size_t)cap, 1);
    if ((cells > 0 && (value == NULL || grad == NULL)) || fixed == NULL || varying == NULL) {
        free(value);
        free(grad);
        free(fixed);
        free(varying);
        return RG_ENOMEM;
    }
    size_t old = b->streamed ? 0 : (size_t)b->rows * (size_t)b->size;
    if (old > 0) {
        memcpy(value, b->value, old * sizeof *value);
        memcpy(grad, b->grad, old * sizeof *grad);
    }
    if (cells > old) memset(grad + old, 0, (cells - old) * sizeof *grad);
    if (b->rows > 0) {
        memcpy(fixed, b->fixed, (size_t)b->rows);
        memcpy(varying, b->varying, (size_t)b->rows);
    }
    free(b->value);
    free(b->grad);
    free(b->fixed);
    free(b->varying);
    b->value = value;
    b->grad = grad;
    b->fixed = fixed;
    b->varying = varying;
    b->rows = (rg_index)cap;
    return RG_OK;
}

int rg_batch_set_streamed(rg_batch *b, int on) {
    free(b->retained); /* (either way: a layout of the old mode's) */
    free(b->chunk_rows);
    b->retained = b->chunk_rows = NULL;
    b->retained_cap = b->chunk_rows_cap = 0;
    if (on) {
        free(b->value);
        free(b->grad);
        b->value = b->grad = NULL;
        b->streamed = 1;
        return RG_OK;
    }
    if (!b->streamed) return RG_OK;
    if (b->size > 0 && (uint64_t)b->rows > SIZE_MAX / sizeof(double) / (uint64_t)b->size)
        return RG_EOVERFLOW;
    size_t cells = (size_t)b->rows * (size_t)b->size;
    double *value = cells > 0 ? malloc(cells * sizeof *value) : NULL;
    double *grad = cells > 0 ? calloc(cells, sizeof *grad) : NULL;
    if (cells > 0 && (value == NULL || grad == NULL)) {
        free(value);
        free(grad);
        return RG_ENOMEM;
    }
    b->value = value;
    b->grad = grad;
    b->streamed = 0;
    return RG_OK;
}

/* The batch's B (rows may be a chunk's: rg_batch.total). */
static inline int64_t batch_samples(const rg_batch *b) { return b->total > 0 ? b->total : b->size; }

/* Where node i's row starts in value[] or grad[] (a chunk's view maps nodes to rows: rg_batch.slot). */
static inline int64_t row_at(const rg_batch *b, rg_index i) {
    return (int64_t)(b->slot != NULL ? b->slot[i] : i) * b->size;
}

void rg_batch_classify(const rg_tape *t, rg_batch *b, rg_index upto) {
    uint8_t *varying = b->varying;
    for (rg_index i = b->classified; i < upto; i++) {
        int o = t->op[i];
        if (rg_is_leaf(o)) varying[i] = b->fixed[i];
        else if (rg_is_reduction(o)) varying[i] = 0; /* one number for the batch */
        else varying[i] = o == RG_APPLY || varying[t->lhs[i]] || varying[t->rhs[i]];
    }
    if (upto > b->classified) b->classified = upto;
}

/* The sweeps (with the kernels inlined into them) are compiled for three x86-64 levels (SSE2, AVX2,
 * AVX-512), picked at load time. -ffp-contract=off holds in each, so all three round every
 * operation alike. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define RG_KERNEL __attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4")))
#else
#define RG_KERNEL
#endif

/* Node i's operands, when i is varying: both have rows, or one of them is uniform (its scalar is
 * read for every sample). A unary op's operand is varying, since i is. */
enum { RG_ROWS, RG_UNIFORM_LHS, RG_UNIFORM_RHS };

static int operand_kind(const rg_batch *b, rg_index l, rg_index r) {
    return !b->varying[l] ? RG_UNIFORM_LHS : !b->varying[r] ? RG_UNIFORM_RHS : RG_ROWS;
}

/* An operand's values: its row, or its scalar (read for every sample through stride 0). */
static const double *operand(const rg_tape *t, const rg_batch *b, rg_index k) {
    return b->varying[k] ? b->value + row_at(b, k) : t->value + k;
}

/* One op over samples [s0, s1): the switch picks a loop, and inside it rg_value's switch folds away
 * (op is a constant there), leaving a plain loop the compiler can vectorise. The operands are read
 * at a[s * ia] and c[s * ic], where the strides are constants 1 (a row) or 0 (a uniform scalar),
 * folded in by inlining. v is node i's row, which never overlaps its operands. */
static inline __attribute__((always_inline)) void forward_loop(int op, double *restrict v,
                                                               const double *a, int64_t ia,
                                                               const double *c, int64_t ic,
                                                               int64_t s0, int64_t s1) {
    switch (op) {
#define RG_FORWARD_CASE(code, name, arity, infix)                                                  \
    case RG_##code:                                                                                \
        for (int64_t s = s0; s < s1; s++) v[s] = rg_value(RG_##code, a[s * ia], c[s * ic]);        \
        break;
        RG_ELEMENT_OPS(RG_FORWARD_CASE)
#undef RG_FORWARD_CASE
        default: break;
    }
}

static inline __attribute__((always_inline)) void forward_op(int op, int kind, double *restrict v,
                                                             const double *a, const double *c,
                                                             int64_t s0, int64_t s1) {
    if (kind == RG_ROWS && rg_vmath_op(op) && rg_vmath(op, v + s0, a + s0, s1 - s0)) return;
    if (kind == RG_ROWS) forward_loop(op, v, a, 1, c, 1, s0, s1);
    else if (kind == RG_UNIFORM_LHS) forward_loop(op, v, a, 0, c, 1, s0, s1);
    else forward_loop(op, v, a, 1, c, 0, s0, s1);
}

/* The adjoints of one op over samples [s0, s1): each operand gains g times its partial, except where
 * g or the partial is 0, as in the scalar sweep. Operands are read as in forward_loop. A term is
 * added to the operand's gradient row or, with `store_a` (`store_c`), stored as 0.0 + term, which
 * is what adding it to a zeroed row gives: in the row of an operand this node is the first to reach
 * in the sweep, or in a scratch row of a uniform operand's per-sample terms, to be summed. */
static inline __attribute__((always_inline)) void reverse_loop(
    int op, const double *restrict v, const double *a, int64_t ia, const double *c, int64_t ic,
    const double *restrict g, double *restrict ga, int store_a, double *restrict gc, int store_c,
    int64_t s0, int64_t s1) {
    switch (op) {
#define RG_REVERSE_CASE(code, name, arity, infix)                                                  \
    case RG_##code:                                                                                \
        for (int64_t s = s0; s < s1; s++) {                                                        \
            double da, db, gs = g[s];                                                              \
            rg_partials(RG_##code, a[s * ia], c[s * ic], v[s], &da, &db);                          \
            double pa = gs * da, pc = gs * db; /* computed unconditionally, so it if-converts */   \
            double ta = gs != 0.0 && da != 0.0 ? pa : 0.0;                                         \
            ga[s] = (store_a ? 0.0 : ga[s]) + ta;                                                  \
            if (arity == 2) {                                                                      \
                double tc = gs != 0.0 && db != 0.0 ? pc : 0.0;                                     \
                gc[s] = (store_c ? 0.0 : gc[s]) + tc;                                              \
            }                                                                                      \
        }                                                                                          \
        break;
        RG_ELEMENT_OPS(RG_REVERSE_CASE)
#undef RG_REVERSE_CASE
        default: break;
    }
}

/* x * x and friends: a binary op whose operands are one row. Without this case the compiler's alias
 * check sends such loops to scalar code; here both adds land in the same order as the scalar sweep's.
 * With `store`, the row starts from 0.0 (this node is the first to reach it). */
static inline __attribute__((always_inline)) void same_row_loop(
    int op, const double *restrict v, const double *restrict a, const double *restrict g,
    double *restrict ga, int store, int64_t s0, int64_t s1) {
    switch (op) {
#define RG_REVERSE_SAME_ROW_CASE(code, name, arity, infix)                                         \
    case RG_##code:                                                                                \
        for (int64_t s = s0; s < s1; s++) {                                                        \
            double da, db, gs = g[s];                                                              \
            rg_partials(RG_##code, a[s], a[s], v[s], &da, &db);                                    \
            double pa = gs * da, pc = gs * db, acc = store ? 0.0 : ga[s];                          \
            acc += gs != 0.0 && da != 0.0 ? pa : 0.0;                                              \
            acc += gs != 0.0 && db != 0.0 ? pc : 0.0;                                              \
            ga[s] = acc;                                                                           \
        }                                                                                          \
        break;
        RG_ELEMENT_OPS(RG_REVERSE_SAME_ROW_CASE)
#undef RG_REVERSE_SAME_ROW_CASE
        default: break;
    }
}

/* The sum of x[s0..s1) in 16 interleaved lanes (two GCC vectors of 8, taking blocks of 8 samples in
 * turn, so that their adds do not wait on each other; one vector add per 8 samples whatever the
 * ISA), each lane summed in sample order; then the two vectors, the lanes pairwise and the last
 * values in order: a fixed order. (The lanes are read as vector elements: through memory, a wide
 * store read back piecewise stalls.) */
typedef double rg_lanes __attribute__((vector_size(8 * sizeof(double))));

static inline double lane_sum(const double *x, int64_t s0, int64_t s1) {
    rg_lanes even = {0.0}, odd = {0.0}, next;
    int64_t s = s0;
    for (; s + 16 <= s1; s += 16) {
        memcpy(&next, x + s, sizeof next);
        even += next;
        memcpy(&next, x + s + 8, sizeof next);
        odd += next;
    }
    if (s + 8 <= s1) {
        memcpy(&next, x + s, sizeof next);
        even += next;
        s += 8;
    }
    double tail = 0.0;
    for (; s < s1; s++) tail += x[s];
    rg_lanes acc = even + odd;
    return (((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))) + tail;
}

/* Reductions over the batch (rg.sum, rg.mean): a reduction's value from its operand's uniform value
 * or from the sum of its operand's row, and the adjoint each sample of a row gets from its own. */
static inline double reduce_uniform(int o, double v, int64_t B) {
    return o == RG_BATCH_SUM ? v * (double)B : v;
}
static inline double reduce_total(int o, double total, int64_t B) {
    return o == RG_BATCH_SUM ? total : total / (double)B;
}
static inline double reduce_adjoint(int o, double g, int64_t B) {
    return o == RG_BATCH_SUM ? g : g / (double)B;
}

/* Reduction i's value, from its operand's row on [s0, s1) (all samples) or its uniform value. */
__attribute__((noinline)) static void reduce_forward(rg_tape *t, const rg_batch *b, rg_index i,
                                                     int o, int64_t s0, int64_t s1) {
    rg_index l = t->lhs[i];
    t->value[i] = b->varying[l] ? reduce_total(o, lane_sum(b->value + row_at(b, l), s0, s1),
                                               batch_samples(b))
                                : reduce_uniform(o, t->value[l], batch_samples(b));
}

/* Reduction i's reverse step: with RG_SWEEP_VARYING, a varying operand's row on [s0, s1) gains the
 * per-sample adjoint (stored with `store`; a zero adds +0, as a sum's pass_loop); with
 * RG_SWEEP_UNIFORM, a uniform operand gains the adjoint's sum over the batch. */
__attribute__((noinline)) static void reduce_reverse(rg_tape *t, rg_batch *b, rg_index i, int o,
                                                     int store, int64_t s0, int64_t s1, int mode) {
    const int64_t B = batch_samples(b);
    rg_index l = t->lhs[i];
    double g = t->grad[i];
    if (b->varying[l]) {
        if (!(mode & RG_SWEEP_VARYING)) return;
        double d = reduce_adjoint(o, g, B), *gl = b->grad + row_at(b, l);
        d = d != 0.0 ? d : 0.0;
        if (store)
            for (int64_t s = s0; s < s1; s++) gl[s] = 0.0 + d;
        else
            for (int64_t s = s0; s < s1; s++) gl[s] += d;
    } else if ((mode & RG_SWEEP_UNIFORM) && g != 0.0) {
        t->grad[l] += o == RG_BATCH_SUM ? g * (double)B : g;
    }
}

/* Varying node i's reverse step on [s0, s1), given its adjoint row g; a uniform operand's share goes
 * to uniform_grad[]. `first` says which operand rows this node reaches first (bit 0: lhs, bit 1:
 * rhs; see rg_first_reach), where it stores rather than adds. */
static inline __attribute__((always_inline)) void reverse_op(const rg_tape *t, rg_batch *b,
                                                             rg_index i, int o, int first,
                                                             int64_t s0, int64_t s1,
                                                             double *uniform_grad,
                                                             double *scratch, const double *g) {
    rg_index l = t->lhs[i], r = t->rhs[i];
    const double *v = b->value + row_at(b, i), *a = operand(t, b, l), *c = operand(t, b, r);
    double *ga = b->grad + row_at(b, l), *gc = b->grad + row_at(b, r);
    int binary = RG_OP_INFO[o].arity == 2;
    switch (operand_kind(b, l, r)) {
        /* Each store flag is a constant in its call, so every combination is its own loop. */
        case RG_ROWS:
            if (binary && l == r) {
                if (first & 1) same_row_loop(o, v, a, g, ga, 1, s0, s1);
                else same_row_loop(o, v, a, g, ga, 0, s0, s1);
            } else if ((first & 3) == 3) reverse_loop(o, v, a, 1, c, 1, g, ga, 1, gc, 1, s0, s1);
            else if (first & 1) reverse_loop(o, v, a, 1, c, 1, g, ga, 1, gc, 0, s0, s1);
            else if (first & 2) reverse_loop(o, v, a, 1, c, 1, g, ga, 0, gc, 1, s0, s1);
            else reverse_loop(o, v, a, 1, c, 1, g, ga, 0, gc, 0, s0, s1);
            break;
        case RG_UNIFORM_LHS:
            if (first & 2) reverse_loop(o, v, a, 0, c, 1, g, scratch, 1, gc, 1, s0, s1);
            else reverse_loop(o, v, a, 0, c, 1, g, scratch, 1, gc, 0, s0, s1);
            uniform_grad[l] += lane_sum(scratch, s0, s1);
            break;
        case RG_UNIFORM_RHS: /* a binary op, or powc (its exponent gets nothing) */
            if (first & 1) reverse_loop(o, v, a, 1, c, 0, g, ga, 1, scratch, 1, s0, s1);
            else reverse_loop(o, v, a, 1, c, 0, g, ga, 0, scratch, 1, s0, s1);
            if (binary) uniform_grad[r] += lane_sum(scratch, s0, s1);
            break;
    }
}

/* A chain's k-th term at sample s (rg_plan.h): w * x[s] or x[s] * w (in its MUL node's operand
 * order) for a scaled term, else the plain term's x[s * ix]. */
static inline __attribute__((always_inline)) double term_value(const double *x, int64_t ix,
                                                               double w, int scaled,
                                                               int scale_first, int64_t s) {
    return !scaled ? x[s * ix] : scale_first ? w * x[s] : x[s] * w;
}

/* A chain's sum on [s0, s1): v = a + term, or with `in_place` v = v + term (a unused). */
static inline __attribute__((always_inline)) void sum_loop(double *restrict v, const double *a,
                                                           int64_t ia, const double *x,
                                                           int64_t ix, double w, int scaled,
                                                           int scale_first, int in_place,
                                                           int64_t s0, int64_t s1) {
    if (in_place)
        for (int64_t s = s0; s < s1; s++) v[s] += term_value(x, ix, w, scaled, scale_first, s);
    else
        for (int64_t s = s0; s < s1; s++)
            v[s] = a[s * ia] + term_value(x, ix, w, scaled, scale_first, s);
}

/* Link L's sum into row v (see sum_loop), the strides and the kind of term made constants. */
static inline __attribute__((always_inline)) void sum_term(const rg_tape *t, const rg_batch *b,
                                                           const rg_link *L, double *v,
                                                           const double *a, int64_t ia,
                                                           int in_place, int64_t s0, int64_t s1) {
    const double *x = operand(t, b, L->term);
    if (L->product >= 0 && L->scale_first)
        sum_loop(v, a, ia, x, 1, t->value[L->scale], 1, 1, in_place, s0, s1);
    else if (L->product >= 0)
        sum_loop(v, a, ia, x, 1, t->value[L->scale], 1, 0, in_place, s0, s1);
    else if (b->varying[L->term])
        sum_loop(v, a, ia, x, 1, 0.0, 0, 0, in_place, s0, s1);
    else
        sum_loop(v, a, ia, x, 0, 0.0, 0, 0, in_place, s0, s1);
}

/* Chain c on [s0, s1), the first sum first, with the node-by-node sweep's arithmetic. The sums
 * accumulate in the top's row: the inner nodes' rows are left unwritten (rg_fill_inner_values). */
static inline __attribute__((always_inline)) void chain_forward(const rg_tape *t, rg_batch *b,
                                                                const rg_plan *p,
                                                                const rg_chain *c, int64_t s0,
                                                                int64_t s1) {
    const rg_link *L = p->links + c->first;
    double *v = b->value + row_at(b, L[c->count - 1].add);
    const double *base = operand(t, b, c->base);
    if (b->varying[c->base]) sum_term(t, b, &L[0], v, base, 1, 0, s0, s1);
    else sum_term(t, b, &L[0], v, base, 0, 0, s0, s1);
    for (int32_t k = 1; k < c->count; k++) sum_term(t, b, &L[k], v, NULL, 0, 1, s0, s1);
}

void rg_fill_inner_values(const rg_tape *t, const rg_plan *p, rg_batch *b) {
    const int64_t B = b->size;
    for (int32_t c = 0; c < p->n_chains; c++) {
        const rg_link *L = p->links + p->chains[c].first;
        if (!b->varying[L[0].add]) continue; /* a uniform chain: its numbers are all written */
        rg_index prev = p->chains[c].base;
        for (int32_t k = 0; k < p->chains[c].count; k++) {
            if (L[k].product >= 0) { /* its product's row, then the sum as a plain term of it */
                double *q = b->value + row_at(b, L[k].product), w = t->value[L[k].scale];
                const double *x = b->value + row_at(b, L[k].term);
                for (int64_t s = 0; s < B; s++) q[s] = term_value(x, 1, w, 1, L[k].scale_first, s);
                if (k < p->chains[c].count - 1) /* (the top's row is the sweep's) */
                    forward_op(RG_ADD, operand_kind(b, prev, L[k].product),
                               b->value + row_at(b, L[k].add), operand(t, b, prev), q, 0, B);
            } else if (k < p->chains[c].count - 1) {
                forward_op(RG_ADD, operand_kind(b, prev, L[k].term),
                           b->value + row_at(b, L[k].add), operand(t, b, prev),
                           operand(t, b, L[k].term), 0, B);
            }
            prev = L[k].add;
        }
    }
}

/* out = g where g is not 0, else +0 (added to out, or stored as 0.0 + that): what a sum's operand
 * gets, its partial being 1, in the node-by-node sweep. */
static inline __attribute__((always_inline)) void pass_loop(const double *restrict g,
                                                            double *restrict out, int store,
                                                            int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; s++) {
        double gs = g[s];
        out[s] = (store ? 0.0 : out[s]) + (gs != 0.0 ? gs : 0.0);
    }
}

/* A sum's adjoint row g passed on to its operand k: into k's row, or summed into uniform_grad[k]. */
static inline __attribute__((always_inline)) void pass_grad(const rg_batch *b, rg_index k,
                                                            const double *g, int store,
                                                            int64_t s0, int64_t s1,
                                                            double *uniform_grad,
                                                            double *scratch) {
    if (b->varying[k]) {
        double *gk = b->grad + row_at(b, k);
        if (store) pass_loop(g, gk, 1, s0, s1);
        else pass_loop(g, gk, 0, s0, s1);
    } else {
        pass_loop(g, scratch, 1, s0, s1);
        uniform_grad[k] += lane_sum(scratch, s0, s1);
    }
}

/* Chain c's reverse step on [s0, s1): the top's adjoint row goes, unchanged, through every inner
 * sum to each term (a scaled term's product passes it on times w to x, and x times it to w), last
 * term first, then to the base. */
static inline __attribute__((always_inline)) void chain_reverse(const rg_tape *t, rg_batch *b,
                                                                const rg_plan *p,
                                                                const rg_chain *c, int64_t s0,
                                                                int64_t s1, double *uniform_grad,
                                                                double *scratch) {
    const rg_link *L = p->links + c->first;
    const double *g = b->grad + row_at(b, L[c->count - 1].add);
    for (int32_t k = c->count - 1; k >= 0; k--) {
        if (L[k].product >= 0) {
            int first = L[k].store ? (L[k].scale_first ? 2 : 1) : 0;
            reverse_op(t, b, L[k].product, RG_MUL, first, s0, s1, uniform_grad, scratch, g);
        } else {
            pass_grad(b, L[k].term, g, L[k].store, s0, s1, uniform_grad, scratch);
        }
    }
    pass_grad(b, c->base, g, c->store_base, s0, s1, uniform_grad, scratch);
}

void rg_fill_inner_grads(const rg_plan *p, rg_batch *b) {
    const int64_t B = b->size;
    for (int32_t c = 0; c < p->n_chains; c++) {
        const rg_link *L = p->links + p->chains[c].first;
        int32_t count = p->chains[c].count;
        if (!b->varying[L[0].add]) continue; /* a uniform chain: its numbers are all written */
        const double *g = b->grad + row_at(b, L[count - 1].add);
        for (int32_t k = 0; k < count; k++) {
            if (k < count - 1) pass_loop(g, b->grad + row_at(b, L[k].add), 1, 0, B);
            if (L[k].product >= 0) pass_loop(g, b->grad + row_at(b, L[k].product), 1, 0, B);
        }
    }
}

/* One op's tangents over samples [s0, s1): zero operand tangents contribute nothing, even where a
 * partial is infinite (nor zero partials where a tangent is), and the sum is formed in the scalar
 * sweep's order. */
static void tangent_op(int op, double *restrict dt, const double *restrict v,
                       const double *restrict a, const double *restrict c,
                       const double *restrict ta, const double *restrict tc, int64_t s0, int64_t s1) {
    switch (op) {
#define RG_TANGENT_CASE(code, name, arity, infix)                                                  \
    case RG_##code:                                                                                \
        for (int64_t s = s0; s < s1; s++) {                                                        \
            double da, db, dot = 0.0;                                                              \
            rg_partials(RG_##code, a[s], c[s], v[s], &da, &db);                                    \
            double pa = da * ta[s], pc = db * tc[s];                                               \
            dot += ta[s] != 0.0 && da != 0.0 ? pa : 0.0;                                          \
            if (arity == 2) dot += tc[s] != 0.0 && db != 0.0 ? pc : 0.0;                           \
            dt[s] = dot;                                                                           \
        }                                                                                          \
        break;
        RG_ELEMENT_OPS(RG_TANGENT_CASE)
#undef RG_TANGENT_CASE
        default: break;
    }
}

rg_index rg_tangent_batch(const rg_tape *t, const rg_batch *b, const rg_index *cone, rg_index pos,
                          rg_index n, rg_index var, double *tangent, int64_t s0, int64_t s1) {
    const int64_t B = b->size;
    for (; pos < n; pos++) {
        rg_index i = cone[pos];
        int o = t->op[i];
        double *dt = tangent + (int64_t)i * B;
        if (rg_is_leaf(o)) {
            double x = i == var ? 1.0 : 0.0;
            for (int64_t s = s0; s < s1; s++) dt[s] = x;
            continue;
        }
        if (o == RG_APPLY) return pos;
        int64_t l = (int64_t)t->lhs[i] * B, r = (int64_t)t->rhs[i] * B;
        tangent_op(o, dt, b->value + (int64_t)i * B, b->value + l, b->value + r, tangent + l,
                   tangent + r, s0, s1);
    }
    return n;
}

void rg_fill_uniform_rows(const rg_tape *t, rg_batch *b, const rg_index *cone, rg_index n) {
    const int64_t B = b->size;
    for (rg_index pos = 0; pos < n; pos++) {
        rg_index i = cone[pos];
        if (b->varying[i]) continue;
        double x = t->value[i], *v = b->value + (int64_t)i * B;
        for (int64_t s = 0; s < B; s++) v[s] = x;
    }
}

RG_KERNEL rg_index rg_forward_batch(rg_tape *t, rg_batch *b, const rg_index *cone, rg_index pos,
                                    rg_index n, int64_t s0, int64_t s1, int mode) {
    for (; pos < n; pos++) {
        rg_index i = cone[pos];
        int o = t->op[i];
        if (rg_is_leaf(o)) continue; /* a uniform leaf's value is value[i]; a fixed one has its row */
        rg_index l = t->lhs[i], r = t->rhs[i];
        if (rg_is_reduction(o)) { /* of a row: summed over [s0, s1), which must be all samples */
            if (mode & RG_SWEEP_UNIFORM) reduce_forward(t, b, i, o, s0, s1);
            continue;
        }
        if (!b->varying[i]) {
            if (mode & RG_SWEEP_UNIFORM) t->value[i] = rg_value(o, t->value[l], t->value[r]);
            continue;
        }
        if (!(mode & RG_SWEEP_VARYING)) continue;
        if (o == RG_APPLY) return pos;
        forward_op(o, operand_kind(b, l, r), b->value + row_at(b, i), operand(t, b, l),
                   operand(t, b, r), s0, s1);
    }
    return n;
}

/* -- dense groups as matrix products (rg_plan.h) -------------------------------------------------- */

static rg_dgemm_fn gemm_fn; /* the BLAS dgemm, or NULL */

static rg_blas_threads_fn blas_threads_fn; /* the BLAS's per-thread thread count, or NULL */

void rg_set_dgemm(rg_dgemm_fn f) { gemm_fn = f; }

void rg_set_blas_threads_fn(rg_blas_threads_fn f) { blas_threads_fn = f; }

int rg_have_dgemm(void) { return gemm_fn != NULL; }

/* A job's scratch space for its groups: W and dW (max m x max n), and a chunk's x rows and y rows
 * (gathered or to be scattered, where the rows are not evenly spaced). */
typedef struct {
    double *w, *dw, *x, *y;
    rg_index *xs, *tops; /* a group's x rows and top rows (max n, max m) */
} rg_gemm_space;

/* The leading dimension of the rows of nodes r[0], r[1], ... as one row-major matrix, when they are
 * evenly spaced in value[] (and grad[]): d rows apart (d > 0), it is d * size; else 0 (also when
 * that does not fit an int). */
static int row_spacing(const rg_batch *b, const rg_index *r, int32_t count) {
    if (count < 2) return (int)(b->size <= INT32_MAX ? b->size : 0);
    int64_t d = row_at(b, r[1]) - row_at(b, r[0]);
    if (d <= 0 || d > INT32_MAX) return 0;
    for (int32_t k = 2; k < count; k++)
        if (row_at(b, r[k]) - row_at(b, r[k - 1]) != d) return 0;
    return (int)d;
}

/* A group's n x rows (the first chain's terms) on [s0, s1) as a matrix: in place, or gathered. */
static const double *group_x(const rg_batch *b, const rg_index *xs, int32_t n, int64_t s0,
                             int64_t nb, double *scratch, int *ld) {
    *ld = row_spacing(b, xs, n);
    if (*ld > 0) return b->value + row_at(b, xs[0]) + s0;
    for (int32_t k = 0; k < n; k++)
        memcpy(scratch + k * nb, b->value + row_at(b, xs[k]) + s0, (size_t)nb * sizeof *scratch);
    *ld = (int)nb;
    return scratch;
}

/* A group's x rows and tops into the job's space, and its weights W (m x n, row-major): in place
 * in value[] (their leading dimension in *ldw), or gathered into the job's space (*ldw = n). */
static const double *group_operands(const rg_tape *t, const rg_plan *p, const rg_group *G,
                                    const rg_gemm_space *gs, int *ldw) {
    for (int32_t o = 0; o < G->count; o++) {
        const rg_chain *c = &p->chains[p->group_chains[G->first + o]];
        const rg_link *L = p->links + c->first;
        if (G->w_ld == 0)
            for (int32_t k = 0; k < G->n; k++) gs->w[o * G->n + k] = t->value[L[k].scale];
        gs->tops[o] = L[c->count - 1].add;
        if (o == 0)
            for (int32_t k = 0; k < G->n; k++) gs->xs[k] = L[k].term;
    }
    *ldw = G->w_ld > 0 ? G->w_ld : G->n;
    return G->w_ld > 0 ? t->value + G->w0 : gs->w;
}

/* Group g's forward step on [s0, s1): Y = W X into scratch, then each top's row = b + Y. */
static void gemm_forward(const rg_tape *t, rg_batch *b, const rg_plan *p, int32_t g, int64_t s0,
                         int64_t s1, const rg_gemm_space *gs) {
    const rg_group *G = &p->groups[g];
    int m = G->count, n = G->n, nb = (int)(s1 - s0), ldx, ldw;
    const double one = 1.0, zero = 0.0;
    const double *W = group_operands(t, p, G, gs, &ldw);
    const double *X = group_x(b, gs->xs, n, s0, nb, gs->x, &ldx);
    gemm_fn("N", "N", &nb, &m, &n, &one, X, &ldx, W, &ldw, &zero, gs->y, &nb);
    for (int32_t o = 0; o < m; o++) {
        const double bias = t->value[p->chains[p->group_chains[G->first + o]].base];
        const double *y = gs->y + (int64_t)o * nb;
        double *v = b->value + row_at(b, gs->tops[o]) + s0;
        for (int64_t s = 0; s < nb; s++) v[s] = bias + y[s];
    }
}

/* Group g's reverse step on [s0, s1): db = sum(dY) and dW = dY X^T into uniform_grad (added by the
 * product itself where W lies in place), and dX = W^T dY stored into the x rows (no other node
 * reads them). */
static void gemm_reverse(const rg_tape *t, rg_batch *b, const rg_plan *p, int32_t g, int64_t s0,
                         int64_t s1, double *uniform_grad, const rg_gemm_space *gs) {
    const rg_group *G = &p->groups[g];
    int m = G->count, n = G->n, nb = (int)(s1 - s0), ldx, ldy, ldgx, ldw;
    const double one = 1.0, zero = 0.0;
    const double *W = group_operands(t, p, G, gs, &ldw);
    const int32_t *cs = p->group_chains + G->first;
    const double *dY; /* the tops' gradient rows */
    ldy = row_spacing(b, gs->tops, m);
    if (ldy > 0) {
        dY = b->grad + row_at(b, gs->tops[0]) + s0;
    } else {
        for (int32_t o = 0; o < m; o++)
            memcpy(gs->y + (int64_t)o * nb, b->grad + row_at(b, gs->tops[o]) + s0,
                   (size_t)nb * sizeof *gs->y);
        dY = gs->y;
        ldy = nb;
    }
    for (int32_t o = 0; o < m; o++)
        uniform_grad[p->chains[cs[o]].base] += lane_sum(dY + (int64_t)o * ldy, 0, nb);
    const double *X = group_x(b, gs->xs, n, s0, nb, gs->x, &ldx);
    if (G->w_ld > 0) {
        gemm_fn("T", "N", &n, &m, &nb, &one, X, &ldx, dY, &ldy, &one, uniform_grad + G->w0, &ldw);
    } else {
        gemm_fn("T", "N", &n, &m, &nb, &one, X, &ldx, dY, &ldy, &zero, gs->dw, &n);
        for (int32_t o = 0; o < m; o++) {
            const rg_link *L = p->links + p->chains[cs[o]].first;
            for (int32_t k = 0; k < n; k++) uniform_grad[L[k].scale] += gs->dw[o * n + k];
        }
    }
    ldgx = row_spacing(b, gs->xs, n);
    double *dX = ldgx > 0 ? b->grad + row_at(b, gs->xs[0]) + s0 : gs->x;
    if (ldgx == 0) ldgx = nb;
    gemm_fn("N", "T", &nb, &n, &m, &one, dY, &ldy, W, &ldw, &zero, dX, &ldgx);
    if (dX == gs->x)
        for (int32_t k = 0; k < n; k++)
            memcpy(b->grad + row_at(b, gs->xs[k]) + s0, gs->x + (int64_t)k * nb,
                   (size_t)nb * sizeof *gs->x);
}

/* The varying rows of an apply-free cone on [s0, s1), by the plan's steps (chains fused). A single
 * node is left to rg_forward_batch, so that its many loops are compiled once. */
RG_KERNEL static void planned_forward(rg_tape *t, rg_batch *b, const rg_plan *p,
                                      const rg_index *cone, int64_t s0, int64_t s1,
                                      double *totals, const rg_gemm_space *gs) {
    for (int32_t u = 0; u < p->n_steps; u++) {
        int32_t pos = p->steps[u], unit = p->unit[pos];
        if (unit >= 0 && p->chains[unit].group >= 0)
            gemm_forward(t, b, p, p->chains[unit].group, s0, s1, gs);
        else if (unit >= 0) chain_forward(t, b, p, &p->chains[unit], s0, s1);
        else if (unit <= RG_UNIT_REDUCE) /* a reduction of a row: this chunk's share of its sum */
            totals[RG_UNIT_REDUCE - unit] +=
                lane_sum(b->value + row_at(b, t->lhs[cone[pos]]), s0, s1);
        else rg_forward_batch(t, b, cone, pos, pos + 1, s0, s1, RG_SWEEP_VARYING);
    }
}

/* A chain of squares (rg_chain.squares) forward, by its strides: as the links would, without
 * reading them. */
static void squares_forward(double *value, const rg_chain *c, const rg_link *L) {
    rg_index a = L[0].add, q = L[0].product, w = L[0].term;
    double v = value[c->base];
    for (int32_t k = 0; k < c->count; k++, a += c->d_add, q += c->d_product, w += c->d_term) {
        double x = value[w], square = x * x;
        value[q] = square;
        value[a] = v = v + square;
    }
}

/* The uniform nodes' values, once, by the plan's uniform steps [from, to) (a chain's sum kept in a
 * register). */
static void uniform_forward(rg_tape *t, const rg_batch *b, const rg_plan *p, const rg_index *cone,
                            int32_t from, int32_t to) {
    for (int32_t u = from; u < to; u++) {
        int32_t pos = p->uniform_steps[u], unit = p->unit[pos];
        if (unit >= 0) {
            const rg_chain *c = &p->chains[unit];
            const rg_link *L = p->links + c->first;
            if (c->squares) {
                squares_forward(t->value, c, L);
                continue;
            }
            double *value = t->value, v = value[c->base];
            for (int32_t k = 0; k < c->count; k++) {
                double term = value[L[k].term];
                if (L[k].product >= 0) value[L[k].product] = term = value[L[k].scale] * term;
                value[L[k].add] = v = v + term;
            }
        } else {
            rg_index i = cone[pos];
            int o = t->op[i];
            t->value[i] = rg_is_reduction(o) ? reduce_uniform(o, t->value[t->lhs[i]], batch_samples(b))
                                             : rg_value(o, t->value[t->lhs[i]], t->value[t->rhs[i]]);
        }
    }
}

void rg_first_reach(const rg_tape *t, const rg_index *cone, rg_index n, uint8_t *mark,
                    uint8_t *first) {
    for (rg_index pos = n - 1; pos >= 0; pos--) {
        rg_index i = cone[pos], l = t->lhs[i], r = t->rhs[i];
        int o = t->op[i];
        first[pos] = 0;
        if (rg_is_leaf(o)) continue;
        if (!mark[l]) first[pos] |= 1;
        mark[l] = 1;
        if (RG_OP_INFO[o].arity == 2 && r != l) {
            if (!mark[r]) first[pos] |= 2;
            mark[r] = 1;
        }
    }
}

void rg_reverse_begin_batch(rg_batch *b, const rg_index *cone, rg_index n, int64_t s0, int64_t s1,
                            int zero) {
    for (rg_index pos = 0; zero && pos < n; pos++) {
        if (!b->varying[cone[pos]]) continue;
        double *g = b->grad + row_at(b, cone[pos]);
        memset(g + s0, 0, (size_t)(s1 - s0) * sizeof *g);
    }
    if (!b->varying[cone[n - 1]]) return;
    double *g = b->grad + row_at(b, cone[n - 1]);
    for (int64_t s = s0; s < s1; s++) g[s] = 1.0;
}

void rg_reverse_begin_uniform(rg_tape *t, const rg_batch *b, const rg_plan *p,
                              const rg_index *cone, rg_index n) {
    if (p->uniform_runs != NULL)
        for (int32_t k = 0; k < p->n_uniform_runs; k++)
            memset(t->grad + p->uniform_runs[2 * k], 0,
                   (size_t)(p->uniform_runs[2 * k + 1] - p->uniform_runs[2 * k]) * sizeof *t->grad);
    else
        for (int32_t u = 0; u < p->n_uniform; u++) t->grad[cone[p->uniform[u]]] = 0.0;
    if (!b->varying[cone[n - 1]]) t->grad[cone[n - 1]] = p->n_reductions > 0 ? 1.0 : (double)batch_samples(b);
}

RG_KERNEL rg_index rg_reverse_batch(rg_tape *t, rg_batch *b, const rg_index *cone,
                                    const uint8_t *first, rg_index pos, rg_index stop, int64_t s0,
                                    int64_t s1, double *uniform_grad, double *scratch, int mode) {
    for (; pos >= stop; pos--) {
        rg_index i = cone[pos];
        int o = t->op[i];
        if (rg_is_leaf(o)) continue;
        if (rg_is_reduction(o)) {
            reduce_reverse(t, b, i, o, first != NULL && (first[pos] & 1), s0, s1, mode);
            continue;
        }
        if (!b->varying[i]) {
            /* Its varying consumers come later in the cone, so its gradient is complete here. */
            if (mode & RG_SWEEP_UNIFORM) rg_reverse_node(t, i, o);
            continue;
        }
        if (!(mode & RG_SWEEP_VARYING)) continue;
        if (o == RG_APPLY) return pos;
        reverse_op(t, b, i, o, first == NULL ? 0 : first[pos], s0, s1, uniform_grad, scratch,
                   b->grad + row_at(b, i));
    }
    return stop - 1;
}

/* The reverse of planned_forward, with rg_first_reach's flags. */
RG_KERNEL static void planned_reverse(rg_tape *t, rg_batch *b, const rg_plan *p,
                                      const rg_index *cone, const uint8_t *first, int64_t s0,
                                      int64_t s1, double *uniform_grad, double *scratch,
                                      const rg_gemm_space *gs) {
    for (int32_t u = p->n_steps - 1; u >= 0; u--) {
        int32_t pos = p->steps[u], unit = p->unit[pos];
        if (unit >= 0 && p->chains[unit].group >= 0)
            gemm_reverse(t, b, p, p->chains[unit].group, s0, s1, uniform_grad, gs);
        else if (unit >= 0)
            chain_reverse(t, b, p, &p->chains[unit], s0, s1, uniform_grad, scratch);
        else if (unit <= RG_UNIT_REDUCE)
            reduce_reverse(t, b, cone[pos], t->op[cone[pos]], first[pos] & 1, s0, s1,
                           RG_SWEEP_VARYING);
        else
            rg_reverse_batch(t, b, cone, first, pos, pos, s0, s1, uniform_grad, scratch,
                             RG_SWEEP_VARYING);
    }
}

/* rg_reverse_node of a uniform MUL node m whose adjoint is g (the op made a constant, so that its
 * partials fold into the chain's loop). */
static inline __attribute__((always_inline)) void uniform_product_reverse(
    const double *value, double *grad, const rg_link *L, double g) {
    if (g == 0.0) return;
    rg_index l = L->scale, r = L->term; /* (the MUL's lhs and rhs) */
    double da, db;
    rg_partials(RG_MUL, value[l], value[r], value[L->product], &da, &db);
    if (l == r) { /* a square: both adds in a register, in the same order (no store to reload) */
        double sum = grad[l];
        if (da != 0.0) sum += g * da;
        if (db != 0.0) sum += g * db;
        grad[l] = sum;
        return;
    }
    if (da != 0.0) grad[l] += g * da;
    if (db != 0.0) grad[r] += g * db;
}

/* A chain of squares' reverse step (g: its top's adjoint, not 0), by its strides, with each
 * node's arithmetic of uniform_chain_reverse below. Every node it writes is written once, so
 * passes over the inner sums, the squares and the weights give the same numbers as one pass;
 * only the base may be a weight (the first), whose two contributions keep their order. */
static void squares_reverse(const double *restrict value, double *restrict grad, const rg_chain *c,
                            const rg_link *L, double g) {
    const int32_t n = c->count;
    const rg_index a = L[0].add, q = L[0].product, w = L[0].term;
    const rg_index da = c->d_add, dq = c->d_product, dw = c->d_term;
    for (int32_t k = 0; k < n - 1; k++) grad[a + k * da] = g; /* the inner sums */
    for (int32_t k = 0; k < n; k++) grad[q + k * dq] = g;     /* the squares */
    for (int32_t k = n - 1; k >= 0; k--) {                    /* each weight: x's two partials */
        if (k == 0) grad[c->base] += g;
        double x = value[w + k * dw], sum = grad[w + k * dw];
        if (x != 0.0) sum = (sum + g * x) + g * x;
        grad[w + k * dw] = sum;
    }
}

/* A uniform chain's reverse step: as each sum's rg_reverse_node, its operands gaining its adjoint
 * (a sum's partials are 1), which is the top's for every inner sum; a product's own step follows
 * its sum's (its adjoint is complete then: the sum is its only reader). */
static void uniform_chain_reverse(rg_tape *t, const rg_plan *p, const rg_chain *c) {
    const rg_link *L = p->links + c->first;
    const double *value = t->value;
    double *grad = t->grad;
    double g = grad[L[c->count - 1].add];
    if (g == 0.0) return; /* nothing is passed on, and the inner sums' adjoints stay 0 */
    if (c->squares) {
        squares_reverse(value, grad, c, L, g);
        return;
    }
    /* An inner sum's and a product's only reader in the cone is the chain, so each one's adjoint
     * is 0 + g = g (g is not 0): stored, not added, which spares reloading it. */
    for (int32_t k = c->count - 1; k >= 0; k--) {
        if (k > 0) grad[L[k - 1].add] = g;
        else grad[c->base] += g;
        if (L[k].product < 0) {
            grad[L[k].term] += g;
        } else {
            grad[L[k].product] = g;
            uniform_product_reverse(value, grad, &L[k], g);
        }
    }
}

/* The uniform nodes' gradients swept back by the plan's uniform steps to, to - 1, ..., from (those
 * depending on no reduction after the varying rows have added their sums). */
static void uniform_reverse(rg_tape *t, rg_batch *b, const rg_plan *p, const rg_index *cone,
                            int32_t from, int32_t to) {
    for (int32_t u = to - 1; u >= from; u--) {
        int32_t pos = p->uniform_steps[u], unit = p->unit[pos];
        int o = t->op[cone[pos]];
        if (unit >= 0) uniform_chain_reverse(t, p, &p->chains[unit]);
        else if (rg_is_reduction(o)) reduce_reverse(t, b, cone[pos], o, 0, 0, 0, RG_SWEEP_UNIFORM);
        else rg_reverse_node(t, cone[pos], o);
    }
}

typedef struct {
    rg_tape *t;
    rg_batch *b;
    const rg_plan *plan;
    const rg_index *cone;
    const uint8_t *first;
    rg_index n;
    int64_t s0, s1;
    int reverse;
    double *uniform_grad; /* this job's sums for uniform operands (indexed by node) */
    double *scratch;      /* b->size doubles (streamed: a chunk's) */
    double *totals;       /* this job's sums of the rows reduced (plan->n_row_reductions) */
    rg_gemm_space gemm;   /* its scratch space for dense groups */
    int64_t chunk;        /* samples per chunk */
    rg_stream *stream;    /* streamed (rg_stream_batch), else NULL */
    double *rows;         /* streamed: this job's value and gradient rows of a chunk */
    /* streamed with the check: the first bad value (lowest position) and gradient (highest) */
    rg_index vpos, gpos;
    int64_t vsample, gsample;
    double vvalue, gvalue;
    const int32_t *slot;  /* streamed: each node's row in `rows` (stream_slots) */
    int64_t n_rows;       /* streamed: rows per chunk in `rows`, values (and as many gradients) */
    double *retained;     /* streamed: value rows of every chunk (rg_stream.retain), else NULL */
    int reuse;            /* streamed reverse: `retained` holds this sweep's values already */
} rg_batch_job;

/* A buffer the batch keeps from one sweep to the next (rg_batch's retained, chunk_rows, gemm_work),
 * grown to at least `need` doubles if it is smaller (its contents are then lost). NULL if that
 * allocation failed: the buffer is then freed. */
static double *kept_buffer(double **buf, size_t *cap, size_t need) {
    if (*cap < need) {
        free(*buf);
        *buf = malloc(need * sizeof **buf);
        *cap = *buf != NULL ? need : 0;
    }
    return *buf;
}

/* Samples per chunk of a sweep over a cone of n nodes. */
static int64_t chunk_size(rg_index n) {
    int64_t chunk = RG_BATCH_CACHE_BYTES / (2 * (int64_t)sizeof(double) * (int64_t)n);
    return chunk < RG_BATCH_MIN_CHUNK ? RG_BATCH_MIN_CHUNK : chunk;
}

/* Samples per chunk of a streamed sweep: the full sweep's, unless one thread's rows (`rows` rows,
 * values and gradients) would then take more than RG_STREAM_BYTES. */
static int64_t stream_chunk(rg_index n, int64_t rows) {
    int64_t chunk = chunk_size(n), cap = RG_STREAM_BYTES / (2 * (int64_t)sizeof(double) * rows);
    if (cap < RG_STREAM_MIN_CHUNK) cap = RG_STREAM_MIN_CHUNK;
    return chunk < cap ? chunk : cap;
}

/* The rows of a streamed chunk (rg_batch.slot), for the nodes up to the output: one per varying cone
 * node in cone order, except for the inner sums and products of fused varying chains, which only
 * rg_fill_inner_values and rg_fill_inner_grads would write (unless `all`: they are to be written).
 * Those, and the nodes a chunk has no row for (uniform, outside the cone), share a spare row, the
 * last, which no sweep reads. A Linear layer's rows are then a few per output instead of two per
 * weight, and a layer's tops and its activations are each evenly spaced (products run in place).
 * Returns the number of rows, the spare included, or -1 (out of memory). */
static int64_t stream_slots(const rg_batch *b, const rg_plan *p, const rg_index *cone, rg_index n,
                            int all, int32_t **out) {
    const int64_t width = (int64_t)cone[n - 1] + 1;
    /* Kept in the plan, which only one sweep uses at a time (the tape is held), so its cache may
     * be written here. */
    rg_plan *cache = (rg_plan *)p;
    if (cache->stream_slot != NULL && cache->stream_all == all) {
        *out = cache->stream_slot;
        return cache->stream_rows;
    }
    enum { NONE = -1, INNER = -2 };
    int32_t *slot = malloc((size_t)width * sizeof *slot);
    if (slot == NULL) return -1;
    for (int64_t i = 0; i < width; i++) slot[i] = NONE;
    for (int32_t c = 0; !all && c < p->n_chains; c++) {
        const rg_link *L = p->links + p->chains[c].first;
        int32_t count = p->chains[c].count;
        if (!b->varying[L[0].add]) continue;
        for (int32_t k = 0; k < count; k++) {
            if (k < count - 1) slot[L[k].add] = INNER;
            if (L[k].product >= 0) slot[L[k].product] = INNER;
        }
    }
    int32_t rows = 0;
    for (rg_index pos = 0; pos < n; pos++) {
        rg_index i = cone[pos];
        if (b->varying[i] && slot[i] == NONE) slot[i] = rows++;
    }
    for (int64_t i = 0; i < width; i++)
        if (slot[i] < 0) slot[i] = rows;
    free(cache->stream_slot);
    cache->stream_slot = slot;
    cache->stream_rows = (int64_t)rows + 1;
    cache->stream_width = width;
    cache->stream_all = (uint8_t)all;
    *out = slot;
    return cache->stream_rows;
}

/* The first position in [from, to) (the last, with `descending`) of a varying cone node whose row
 * in `rows` (width b->size) holds a NaN or infinity; its first such sample in *sample. -1 if none. */
static rg_index first_bad_row(const rg_batch *b, const double *rows, const rg_index *cone,
                              rg_index from, rg_index to, int descending, int64_t *sample) {
    for (rg_index k = from; k < to; k++) {
        rg_index pos = descending ? to - 1 - (k - from) : k, i = cone[pos];
        if (!b->varying[i]) continue;
        const double *x = rows + row_at(b, i);
        if (!rg_any_nonfinite(x, b->size)) continue;
        int64_t s = 0;
        while (isfinite(x[s])) s++;
        *sample = s;
        return pos;
    }
    return -1;
}

/* A streamed job's chunks: each one's rows filled from the inputs, swept forward (and back), the
 * kept rows copied out and, with the check, scanned. */
static void run_stream_job(rg_batch_job *j) {
    const rg_stream *st = j->stream;
    const rg_index n = j->n;
    rg_batch view = *j->b;
    view.value = j->rows;
    view.grad = j->rows + j->n_rows * j->chunk;
    view.slot = j->slot;
    view.total = j->b->size;
    view.streamed = 0;
    for (int64_t s = j->s0; s < j->s1; s += j->chunk) {
        int64_t w = j->s1 - s < j->chunk ? j->s1 - s : j->chunk, bad;
        view.size = w; /* the rows' stride: this chunk's samples */
        if (j->retained != NULL) view.value = j->retained + s * j->n_rows; /* chunk-major */
        if (j->reuse) goto back;
        for (int32_t k = 0; k < st->n_inputs; k++)
            memcpy(view.value + row_at(&view, st->inputs[k].node), st->inputs[k].data + s,
                   (size_t)w * sizeof(double));
        planned_forward(j->t, &view, j->plan, j->cone, 0, w, j->totals, &j->gemm);
        if (st->fill_inner || st->check) rg_fill_inner_values(j->t, j->plan, &view);
        if (!j->reverse)
            for (int32_t k = 0; k < st->n_values; k++)
                memcpy(st->values[k].data + s, view.value + row_at(&view, st->values[k].node),
                       (size_t)w * sizeof(double));
        if (st->check && j->vpos > 0) {
            rg_index pos = first_bad_row(&view, view.value, j->cone, 0, j->vpos, 0, &bad);
            if (pos >= 0) {
                j->vpos = pos;
                j->vsample = s + bad;
                j->vvalue = view.value[row_at(&view, j->cone[pos]) + bad];
            }
        }
        if (!j->reverse) continue;
    back:
        rg_reverse_begin_batch(&view, j->cone, n, 0, w, 0);
        planned_reverse(j->t, &view, j->plan, j->cone, j->first, 0, w, j->uniform_grad, j->scratch,
                        &j->gemm);
        if (st->fill_inner || st->check) rg_fill_inner_grads(j->plan, &view);
        for (int32_t k = 0; k < st->n_grads; k++)
            memcpy(st->grads[k].data + s, view.grad + row_at(&view, st->grads[k].node),
                   (size_t)w * sizeof(double));
        if (st->check && j->gpos < n - 1) {
            rg_index pos = first_bad_row(&view, view.grad, j->cone, j->gpos + 1, n, 1, &bad);
            if (pos >= 0) {
                j->gpos = pos;
                j->gsample = s + bad;
                j->gvalue = view.grad[row_at(&view, j->cone[pos]) + bad];
            }
        }
    }
}

/* A job's samples, a cache-sized chunk at a time: the varying rows only. */
static void run_job(rg_batch_job *j) {
    const int64_t chunk = j->chunk;
    /* One BLAS thread per sweep thread: the products are chunk-sized, and the sweep's threads split
     * the samples already (a BLAS pool on top made a shared 2-core machine 4x slower). */
    int blas_before = j->plan->n_groups > 0 && blas_threads_fn != NULL ? blas_threads_fn(1) : 0;
    if (j->stream != NULL) {
        run_stream_job(j);
    } else {
        for (int64_t s = j->s0; s < j->s1; s += chunk) {
            int64_t e = j->s1 - s < chunk ? j->s1 : s + chunk;
            if (j->reverse) {
                rg_reverse_begin_batch(j->b, j->cone, j->n, s, e, 0);
                planned_reverse(j->t, j->b, j->plan, j->cone, j->first, s, e, j->uniform_grad,
                                j->scratch, &j->gemm);
            } else {
                planned_forward(j->t, j->b, j->plan, j->cone, s, e, j->totals, &j->gemm);
            }
        }
    }
    if (j->plan->n_groups > 0 && blas_threads_fn != NULL) blas_threads_fn(blas_before);
}

static void *thread_main(void *arg) {
    run_job(arg);
    return NULL;
}

/* A staged cone (rg_plan.h): node by node over all samples at once, in the calling thread. */
static int run_staged(rg_tape *t, rg_batch *b, const rg_plan *plan, const rg_index *cone,
                      const uint8_t *first, rg_index n, int reverse) {
    const int64_t B = b->size;
    if (!reverse) {
        rg_forward_batch(t, b, cone, 0, n, 0, B, RG_SWEEP_BOTH);
        return RG_OK;
    }
    double *scratch = malloc((size_t)B * sizeof *scratch);
    if (scratch == NULL) return RG_ENOMEM;
    rg_reverse_begin_uniform(t, b, plan, cone, n);
    rg_reverse_begin_batch(b, cone, n, 0, B, first == NULL);
    rg_reverse_batch(t, b, cone, first, n - 1, 0, 0, B, t->grad, scratch, RG_SWEEP_BOTH);
    free(scratch);
    return RG_OK;
}

/* The check's verdict over the jobs and the uniform nodes (rg_stream's bad_*): as a scan of full
 * rows, values first (lowest position; at a tie the lowest sample), then gradients (highest). */
static void stream_verdict(const rg_tape *t, const rg_batch *b, const rg_plan *plan,
                           const rg_index *cone, rg_index n, const rg_batch_job *jobs, int64_t k,
                           int reverse, rg_stream *st) {
    rg_index vpos = n, gpos = -1;
    int64_t vs = -1, gs = -1;
    double vv = 0.0, gv = 0.0;
    for (int64_t j = 0; j < k; j++) {
        if (jobs[j].vpos < vpos) vpos = jobs[j].vpos, vs = jobs[j].vsample, vv = jobs[j].vvalue;
        if (jobs[j].gpos > gpos) gpos = jobs[j].gpos, gs = jobs[j].gsample, gv = jobs[j].gvalue;
    }
    for (int32_t u = 0; u < plan->n_uniform; u++) {
        rg_index pos = plan->uniform[u], i = cone[pos];
        if (pos < vpos && !isfinite(t->value[i])) vpos = pos, vs = -1, vv = t->value[i];
        if (reverse && pos > gpos && !isfinite(t->grad[i])) gpos = pos, gs = -1, gv = t->grad[i];
    }
    (void)b;
    st->bad_pos = -1;
    if (vpos < n) st->bad_pos = vpos, st->bad_sample = vs, st->bad_value = vv, st->bad_grad = 0;
    else if (gpos >= 0) st->bad_pos = gpos, st->bad_sample = gs, st->bad_value = gv, st->bad_grad = 1;
}

/* Uniform nodes first (forward) or last (reverse), once, in the calling thread; in between the
 * varying rows, with the samples split into contiguous ranges, one per thread (the calling thread
 * runs the first). Each thread writes only its own samples of each row, so the threads never share
 * a cache line's worth of work except at range edges (ranges start at multiples of 8 samples), and
 * its own sums for uniform operands, added up in thread order at the end. The uniform nodes that
 * depend on a reduction of rows come after the rows (forward) or before them (reverse); each
 * thread sums its share of a reduced row, and these are added up in thread order too. Streamed
 * (st != NULL), each thread works in rows of its own of one chunk (run_stream_job). */
static int run_all(rg_tape *t, rg_batch *b, const rg_plan *plan, const rg_index *cone,
                   const uint8_t *first, rg_index n, int threads, int reverse, rg_stream *st) {
    if (plan->staged) {
        if (st != NULL) return RG_ESTAGED;
        return run_staged(t, b, plan, cone, first, n, reverse);
    }
    const int64_t B = b->size;
    const int rows = b->varying[cone[n - 1]] || plan->n_row_reductions > 0 ||
                     (st != NULL && st->n_grads > 0);
    const int64_t nr = plan->n_row_reductions;
    int64_t k = threads < 1 ? 1 : threads;
    int64_t by_work = B * (int64_t)(plan->n_steps + plan->n_links) / RG_BATCH_MIN_THREAD_WORK;
    if (k > by_work) k = by_work;
    if (k > B / RG_BATCH_MIN_THREAD_SAMPLES) k = B / RG_BATCH_MIN_THREAD_SAMPLES;
    if (k > RG_BATCH_MAX_THREADS) k = RG_BATCH_MAX_THREADS;
    if (k < 1) k = 1;
    const int64_t width = (int64_t)cone[n - 1] + 1; /* nodes a uniform sum may be indexed by */
    int64_t chunk = chunk_size(n), n_rows = 0;
    int32_t *slot = NULL; /* (the plan's) */
    if (st != NULL && rows) {
        n_rows = stream_slots(b, plan, cone, n, st->fill_inner || st->check, &slot);
        if (n_rows < 0) return RG_ENOMEM;
    }
    if (st != NULL) {
        chunk = st->chunk > 0 ? st->chunk : stream_chunk(n, n_rows > 0 ? n_rows : 1);
        if (chunk > B) chunk = B;
        st->chunk_used = chunk;
        st->bad_pos = -1;
    }
    /* Streamed: the value rows of every chunk kept from a forward sweep for the reverse one after it
     * (rg_stream), chunk-major: chunk [s, s + w) at retained + s * n_rows. */
    double *retained = NULL;
    int reuse = 0;
    if (st != NULL && rows && !st->check) {
        size_t need = (size_t)n_rows * (size_t)B;
        st->retained = 0;
        if (reverse) {
            reuse = st->reuse && b->retained != NULL && b->retained_rows == n_rows &&
                    b->retained_chunk == chunk && b->retained_jobs == k;
        } else if ((double)need * sizeof(double) <= st->retain_bytes) {
            retained = kept_buffer(&b->retained, &b->retained_cap, need); /* (NULL: not kept) */
        }
        if (reuse) retained = b->retained;
        b->retained_rows = retained != NULL ? n_rows : 0; /* written now, or read: valid after */
        b->retained_chunk = chunk;
        b->retained_jobs = k;
        st->retained = retained != NULL;
    }
    const int64_t span = st != NULL ? chunk : B; /* samples of a job's scratch row */
    /* Scratch space first, so running out of memory leaves everything as it was. */
    double *scratch = NULL, *sums = NULL, *totals = NULL, *own_rows = NULL;
    if (reverse && rows) {
        scratch = malloc((size_t)k * (size_t)span * sizeof *scratch);
        sums = k > 1 ? calloc((size_t)(k - 1) * (size_t)width, sizeof *sums) : NULL;
        if (scratch == NULL || (k > 1 && sums == NULL)) {
            free(scratch);
            free(sums);
            return RG_ENOMEM;
        }
    }
    if ((!reverse || st != NULL) && rows && nr > 0) { /* (streamed, the reverse's are not used) */
        totals = calloc((size_t)(k * nr), sizeof *totals);
        if (totals == NULL) {
            free(scratch);
            free(sums);
            return RG_ENOMEM;
        }
    }
    if (st != NULL && rows) {
        own_rows = kept_buffer(&b->chunk_rows, &b->chunk_rows_cap,
                               (size_t)k * 2 * (size_t)n_rows * (size_t)chunk);
        if (own_rows == NULL) {
            free(scratch);
            free(sums);
            free(totals);
            return RG_ENOMEM;
        }
    }
    /* per job: W, dW, x and y rows of a chunk, and room for the x and top row indices */
    const int64_t per_job = plan->n_groups > 0 ? 2 * (int64_t)plan->max_group_m * plan->max_group_n +
                                                     (plan->max_group_m + plan->max_group_n) *
                                                         (chunk + 1)
                                               : 0;
    double *gemm = NULL;
    if (rows && per_job > 0) {
        gemm = kept_buffer(&b->gemm_work, &b->gemm_work_cap, (size_t)(k * per_job));
        if (gemm == NULL) {
            free(scratch);
            free(sums);
            free(totals);
            return RG_ENOMEM;
        }
    }
    const int32_t pre = plan->n_pre_uniform_steps, all = plan->n_uniform_steps;
    if (reverse) {
        rg_reverse_begin_uniform(t, b, plan, cone, n);
        uniform_reverse(t, b, plan, cone, pre, all);
    } else {
        uniform_forward(t, b, plan, cone, 0, pre);
    }
    rg_batch_job jobs[RG_BATCH_MAX_THREADS];
    if (rows) {
        pthread_t tid[RG_BATCH_MAX_THREADS];
        int started[RG_BATCH_MAX_THREADS] = {0};
        int64_t per = (B / k + 7) & ~(int64_t)7;
        for (int64_t j = 0; j < k; j++) {
            int64_t s0 = j * per < B ? j * per : B;
            int64_t s1 = j == k - 1 || (j + 1) * per > B ? B : (j + 1) * per;
            double *own = j == 0 ? t->grad : sums == NULL ? NULL : sums + (j - 1) * width;
            rg_gemm_space gs = {NULL, NULL, NULL, NULL, NULL, NULL};
            if (gemm != NULL) {
                double *at = gemm + j * per_job;
                int64_t mn = (int64_t)plan->max_group_m * plan->max_group_n;
                int64_t gm = plan->max_group_m, gn = plan->max_group_n;
                double *x = at + 2 * mn, *y = x + gn * chunk, *idx = y + gm * chunk;
                gs = (rg_gemm_space){at, at + mn, x, y, (rg_index *)idx, (rg_index *)(idx + gn)};
            }
            jobs[j] = (rg_batch_job){t, b, plan, cone, first, n, s0, s1, reverse, own,
                                     scratch == NULL ? NULL : scratch + j * span,
                                     totals == NULL ? NULL : totals + j * nr, gs, chunk, st,
                                     own_rows == NULL ? NULL : own_rows + j * 2 * n_rows * chunk,
                                     n, -1, -1, -1, 0.0, 0.0, slot, n_rows, retained, reuse};
        }
        for (int64_t j = 1; j < k; j++)
            started[j] = pthread_create(&tid[j], NULL, thread_main, &jobs[j]) == 0;
        run_job(&jobs[0]);
        for (int64_t j = 1; j < k; j++) {
            if (started[j]) pthread_join(tid[j], NULL);
            else run_job(&jobs[j]); /* no thread: do its share here */
        }
        for (int64_t j = 1; reverse && j < k; j++)
            for (int32_t u = 0; u < plan->n_uniform; u++) {
                rg_index i = cone[plan->uniform[u]];
                t->grad[i] += sums[(j - 1) * width + i];
            }
        for (int32_t u = 0; totals != NULL && !reverse && u < plan->n_steps; u++) {
            int32_t unit = plan->unit[plan->steps[u]];
            if (unit > RG_UNIT_REDUCE) continue;
            int64_t r = RG_UNIT_REDUCE - unit;
            double total = 0.0;
            for (int64_t j = 0; j < k; j++) total += totals[j * nr + r];
            rg_index i = cone[plan->steps[u]];
            t->value[i] = reduce_total(t->op[i], total, B);
        }
    } else {
        k = 0; /* no rows: no jobs */
    }
    if (reverse) uniform_reverse(t, b, plan, cone, 0, pre);
    else uniform_forward(t, b, plan, cone, pre, all);
    if (st != NULL && st->check) stream_verdict(t, b, plan, cone, n, jobs, k, reverse, st);
    free(scratch);
    free(sums);
    free(totals);
    return RG_OK;
}

int rg_forward_batch_all(rg_tape *t, rg_batch *b, const rg_plan *plan, const rg_index *cone,
                         rg_index n, int threads) {
    return run_all(t, b, plan, cone, NULL, n, threads, 0, NULL);
}

int rg_reverse_batch_all(rg_tape *t, rg_batch *b, const rg_plan *plan, const rg_index *cone,
                         const uint8_t *first, rg_index n, int threads) {
    return run_all(t, b, plan, cone, first, n, threads, 1, NULL);
}

int rg_stream_batch(rg_tape *t, rg_batch *b, const rg_plan *plan, const rg_index *cone,
                    const uint8_t *first, rg_index n, int threads, rg_stream *st, int reverse) {
    return run_all(t, b, plan, cone, first, n, threads, reverse, st);
}

void rg_stamp_cone(rg_tape *t, const rg_index *cone, rg_index n, rg_stamp epoch) {
    for (rg_index pos = 0; pos < n; pos++) {
        rg_index i = cone[pos];
        if (!rg_is_leaf(t->op[i])) t->stamp[i] = epoch;
    }
}

void rg_stamp_runs(rg_tape *t, const rg_index *runs, rg_index n_runs, rg_stamp epoch) {
    rg_stamp *restrict stamp = t->stamp; /* (restrict: a store may not change a run's bounds) */
    for (rg_index k = 0; k < n_runs; k++) {
        const rg_index from = runs[2 * k], to = runs[2 * k + 1];
        for (rg_index i = from; i < to; i++) stamp[i] = epoch;
    }
}

rg_index rg_first_nonfinite_batch(const rg_batch *b, const double *rows, const double *scalars,
                                  const rg_index *cone, rg_index n, int descending) {
    for (rg_index k = 0; k < n; k++) {
        rg_index pos = descending ? n - 1 - k : k, i = cone[pos];
        if (b->varying[i] ? rg_any_nonfinite(rows + (int64_t)i * b->size, b->size)
                          : !isfinite(scalars[i]))
            return pos;
    }
    return -1;
}
