/* rg_batch.c -- batch rows and the batched sweeps. See rg_batch.h for the contracts. */
#include "rg_batch.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* A chunk's value and gradient rows of the whole cone should fit in about this many bytes (L2). */
#define RG_BATCH_CACHE_BYTES (512 * 1024)
/* Samples per chunk at least, so a big cone still runs loops long enough to vectorise well. */
#define RG_BATCH_MIN_CHUNK 64
/* Node-samples a thread must get before another thread is worth starting (~tens of microseconds). */
#define RG_BATCH_MIN_THREAD_WORK (1 << 17)
#define RG_BATCH_MAX_THREADS 64

void rg_batch_free(rg_batch *b) {
    free(b->value);
    free(b->grad);
    free(b->fixed);
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
    size_t cells = (size_t)cap * (size_t)b->size;
    /* Allocate all three before replacing any, so a failure leaves the batch as it was. */
    double *value = malloc(cells * sizeof *value);
    double *grad = malloc(cells * sizeof *grad);
    uint8_t *fixed = calloc((size_t)cap, 1);
    if ((cells > 0 && (value == NULL || grad == NULL)) || fixed == NULL) {
        free(value);
        free(grad);
        free(fixed);
        return RG_ENOMEM;
    }
    size_t old = (size_t)b->rows * (size_t)b->size;
    if (old > 0) {
        memcpy(value, b->value, old * sizeof *value);
        memcpy(grad, b->grad, old * sizeof *grad);
    }
    memset(grad + old, 0, (cells - old) * sizeof *grad);
    if (b->rows > 0) memcpy(fixed, b->fixed, (size_t)b->rows);
    free(b->value);
    free(b->grad);
    free(b->fixed);
    b->value = value;
    b->grad = grad;
    b->fixed = fixed;
    b->rows = (rg_index)cap;
    return RG_OK;
}

/* One op over samples [s0, s1): the switch picks a loop, and inside it rg_value's switch folds away
 * (op is a constant there), leaving a plain loop the compiler can vectorise. v is node i's row, which
 * never overlaps its operands' rows; a and c may be the same row (unary ops, x * x). */
static void forward_op(int op, double *restrict v, const double *a, const double *c, int64_t s0,
                       int64_t s1) {
    switch (op) {
#define RG_FORWARD_CASE(code, name, arity, infix)                                                  \
    case RG_##code:                                                                                \
        for (int64_t s = s0; s < s1; s++) v[s] = rg_value(RG_##code, a[s], c[s]);                  \
        break;
        RG_OP_LIST(RG_FORWARD_CASE)
#undef RG_FORWARD_CASE
        default: break;
    }
}

/* The adjoints of one op over samples [s0, s1): ga (and for binary ops gc, which may be the same
 * row) gain g times the partials, except where g or the partial is 0, as in the scalar sweep. */
static void reverse_op(int op, const double *restrict v, const double *restrict a,
                       const double *restrict c, const double *restrict g, double *ga, double *gc,
                       int64_t s0, int64_t s1) {
    /* x * x and friends: both operands are one row. Without this case the compiler's alias check
     * sends such loops to scalar code; here both adds land in the same order as the scalar sweep's. */
    if (ga == gc && RG_OP_INFO[op].arity == 2) {
        switch (op) {
#define RG_REVERSE_SAME_ROW_CASE(code, name, arity, infix)                                         \
    case RG_##code:                                                                                \
        for (int64_t s = s0; s < s1; s++) {                                                        \
            double da, db, gs = g[s];                                                              \
            rg_partials(RG_##code, a[s], c[s], v[s], &da, &db);                                    \
            double pa = gs * da, pc = gs * db, acc = ga[s];                                        \
            acc += gs != 0.0 && da != 0.0 ? pa : 0.0;                                              \
            acc += gs != 0.0 && db != 0.0 ? pc : 0.0;                                              \
            ga[s] = acc;                                                                           \
        }                                                                                          \
        break;
            RG_OP_LIST(RG_REVERSE_SAME_ROW_CASE)
#undef RG_REVERSE_SAME_ROW_CASE
            default: break;
        }
        return;
    }
    switch (op) {
#define RG_REVERSE_CASE(code, name, arity, infix)                                                  \
    case RG_##code:                                                                                \
        for (int64_t s = s0; s < s1; s++) {                                                        \
            double da, db, gs = g[s];                                                              \
            rg_partials(RG_##code, a[s], c[s], v[s], &da, &db);                                    \
            double pa = gs * da, pc = gs * db; /* computed unconditionally, so it if-converts */   \
            ga[s] += gs != 0.0 && da != 0.0 ? pa : 0.0;                                            \
            if (arity == 2) gc[s] += gs != 0.0 && db != 0.0 ? pc : 0.0;                            \
        }                                                                                          \
        break;
        RG_OP_LIST(RG_REVERSE_CASE)
#undef RG_REVERSE_CASE
        default: break;
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
        RG_OP_LIST(RG_TANGENT_CASE)
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

rg_index rg_forward_batch(const rg_tape *t, rg_batch *b, const rg_index *cone, rg_index pos,
                          rg_index n, int64_t s0, int64_t s1) {
    const int64_t B = b->size;
    double *value = b->value;
    for (; pos < n; pos++) {
        rg_index i = cone[pos];
        int o = t->op[i];
        double *v = value + (int64_t)i * B;
        if (rg_is_leaf(o)) {
            if (!b->fixed[i]) {
                double x = t->value[i];
                for (int64_t s = s0; s < s1; s++) v[s] = x;
            }
            continue;
        }
        if (o == RG_APPLY) return pos;
        forward_op(o, v, value + (int64_t)t->lhs[i] * B, value + (int64_t)t->rhs[i] * B, s0, s1);
    }
    return n;
}

void rg_reverse_begin_batch(rg_batch *b, const rg_index *cone, rg_index n, int64_t s0, int64_t s1) {
    const int64_t B = b->size;
    for (rg_index pos = 0; pos < n; pos++) {
        double *g = b->grad + (int64_t)cone[pos] * B;
        memset(g + s0, 0, (size_t)(s1 - s0) * sizeof *g);
    }
    double *g = b->grad + (int64_t)cone[n - 1] * B;
    for (int64_t s = s0; s < s1; s++) g[s] = 1.0;
}

rg_index rg_reverse_batch(const rg_tape *t, rg_batch *b, const rg_index *cone, rg_index pos,
                          rg_index stop, int64_t s0, int64_t s1) {
    const int64_t B = b->size;
    const double *value = b->value;
    double *grad = b->grad;
    for (; pos >= stop; pos--) {
        rg_index i = cone[pos];
        int o = t->op[i];
        if (rg_is_leaf(o)) continue;
        if (o == RG_APPLY) return pos;
        int64_t l = (int64_t)t->lhs[i] * B, r = (int64_t)t->rhs[i] * B;
        reverse_op(o, value + (int64_t)i * B, value + l, value + r, grad + (int64_t)i * B,
                   grad + l, grad + r, s0, s1);
    }
    return stop - 1;
}

typedef struct {
    const rg_tape *t;
    rg_batch *b;
    const rg_index *cone;
    rg_index n;
    int64_t s0, s1;
    int reverse;
} rg_batch_job;

/* A job's samples, a cache-sized chunk at a time. */
static void run_job(const rg_batch_job *j) {
    int64_t chunk = RG_BATCH_CACHE_BYTES / (2 * (int64_t)sizeof(double) * (int64_t)j->n);
    if (chunk < RG_BATCH_MIN_CHUNK) chunk = RG_BATCH_MIN_CHUNK;
    for (int64_t s = j->s0; s < j->s1; s += chunk) {
        int64_t e = j->s1 - s < chunk ? j->s1 : s + chunk;
        if (j->reverse) {
            rg_reverse_begin_batch(j->b, j->cone, j->n, s, e);
            rg_reverse_batch(j->t, j->b, j->cone, j->n - 1, 0, s, e);
        } else {
            rg_forward_batch(j->t, j->b, j->cone, 0, j->n, s, e);
        }
    }
}

static void *thread_main(void *arg) {
    run_job(arg);
    return NULL;
}

/* Splits the samples into contiguous ranges, one per thread; the calling thread runs the first.
 * Each thread writes only its own samples of each row, so the threads never share a cache line's
 * worth of work except at range edges (ranges start at multiples of 8 samples). */
static int run_all(const rg_tape *t, rg_batch *b, const rg_index *cone, rg_index n, int threads,
                   int reverse) {
    const int64_t B = b->size;
    int64_t k = threads < 1 ? 1 : threads;
    int64_t by_work = (B * (int64_t)n) / RG_BATCH_MIN_THREAD_WORK;
    if (k > by_work) k = by_work;
    if (k > B / 8) k = B / 8;
    if (k > RG_BATCH_MAX_THREADS) k = RG_BATCH_MAX_THREADS;
    if (k < 1) k = 1;
    rg_batch_job jobs[RG_BATCH_MAX_THREADS];
    pthread_t tid[RG_BATCH_MAX_THREADS];
    int started[RG_BATCH_MAX_THREADS] = {0};
    int64_t per = (B / k + 7) & ~(int64_t)7;
    for (int64_t j = 0; j < k; j++) {
        int64_t s0 = j * per < B ? j * per : B;
        int64_t s1 = j == k - 1 || (j + 1) * per > B ? B : (j + 1) * per;
        jobs[j] = (rg_batch_job){t, b, cone, n, s0, s1, reverse};
    }
    int err = RG_OK;
    for (int64_t j = 1; j < k; j++) {
        started[j] = pthread_create(&tid[j], NULL, thread_main, &jobs[j]) == 0;
        if (!started[j]) err = RG_ENOMEM;
    }
    run_job(&jobs[0]);
    for (int64_t j = 1; j < k; j++) {
        if (started[j]) pthread_join(tid[j], NULL);
        else run_job(&jobs[j]); /* no thread: do its share here */
    }
    return err;
}

int rg_forward_batch_all(const rg_tape *t, rg_batch *b, const rg_index *cone, rg_index n,
                         int threads) {
    return run_all(t, b, cone, n, threads, 0);
}

int rg_reverse_batch_all(const rg_tape *t, rg_batch *b, const rg_index *cone, rg_index n,
                         int threads) {
    return run_all(t, b, cone, n, threads, 1);
}

void rg_stamp_cone(rg_tape *t, const rg_index *cone, rg_index n, rg_stamp epoch) {
    for (rg_index pos = 0; pos < n; pos++) {
        rg_index i = cone[pos];
        if (!rg_is_leaf(t->op[i])) t->stamp[i] = epoch;
    }
}

void rg_sum_leaf_grads(rg_tape *t, const rg_batch *b, const rg_index *cone, rg_index n) {
    const int64_t B = b->size;
    for (rg_index pos = 0; pos < n; pos++) {
        rg_index i = cone[pos];
        if (!rg_is_leaf(t->op[i])) continue;
        const double *g = b->grad + (int64_t)i * B;
        double sum = 0.0;
        for (int64_t s = 0; s < B; s++) sum += g[s];
        t->grad[i] = sum;
    }
}
