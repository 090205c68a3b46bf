/* The libm floor of the bigdag replay (issue 19), in plain C, ns per node of N (medians):
 *
 *   gcc -O2 -o /tmp/replay_floor benchmarks/c/replay_floor.c -lm && /tmp/replay_floor 100000 200
 *
 * bigdag (benchmarks/bigdag.py: the same LCG, ops and operands) is built into arrays laid out as
 * the tape's (op, lhs, rhs, value, grad), and the output's cone is marked. Printed:
 *   - "forward libm": the libm calls of one forward sweep of the cone (sin, cos, tanh of each such
 *     node's operand), timed alone over the operands a sweep computes, with no other work;
 *   - "reverse libm": the reverse sweep's libm calls (cos for sin's partial, sin for cos's);
 *   - "sweep, partials by libm": a forward and a reverse sweep of the cone as the tape's sweeps do
 *     them (a switch per node, the reverse computing sin's and cos's partials with libm);
 *   - "sweep, kept partials": the same with sin and cos computed by one sincos() in the forward
 *     sweep, which keeps the partial (one double per such node, in cone order) for the reverse;
 *   - "sweep, level-order forward": the forward sweep visits the cone by dependency level and, within
 *     a level, by op (as the tape's replays do: rg_level_order in src/rg_tape.c), the reverse sweep
 *     as before.
 * The sweeps' gradients are checked equal bit for bit (glibc's sincos gives sin's and cos's bits;
 * the level order computes each node from the same operands).
 * A replay sweeps only the cone, so these compare with the replay's ns per node of N. Also printed:
 * how many of the cone's adjoints are exactly 0 (a reverse step skips those, partial and all) or
 * subnormal (slow arithmetic), which differs much between sizes of this random graph. */
#define _GNU_SOURCE
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { ADD, SUB, MUL, SIN, COS, TANH, LEAF };
enum { LEAVES = 16, WINDOW = 64 };

static long n, ncone, ntrans;
static uint8_t *op;
static int32_t *lhs, *rhs, *cone, *level_cone;
static double *value, *grad, *kept, *operand;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *t, int count) {
    qsort(t, count, sizeof *t, by_value);
    return t[count / 2];
}

static void build(void) {
    static const uint8_t OPS[8] = {ADD, SUB, MUL, SIN, COS, TANH, SIN, COS};
    uint64_t s = 42;
    for (long i = 0; i < LEAVES; i++) {
        op[i] = LEAF;
        lhs[i] = rhs[i] = 0;
        value[i] = sin(i + 1.0);
    }
    for (long i = LEAVES; i < n; i++) {
        uint64_t draw[3];
        for (int k = 0; k < 3; k++) {
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            draw[k] = s >> 33;
        }
        long w = i < WINDOW ? i : WINDOW;
        op[i] = OPS[draw[0] % 8];
        lhs[i] = (int32_t)(i - 1 - draw[1] % w);
        rhs[i] = (int32_t)(i - 1 - draw[2] % w);
    }
    char *in = calloc(n, 1);
    in[n - 1] = 1;
    for (long i = n - 1; i >= LEAVES; i--)
        if (in[i]) {
            in[lhs[i]] = 1;
            if (op[i] <= MUL) in[rhs[i]] = 1;
        }
    for (long i = LEAVES; i < n; i++)
        if (in[i]) cone[ncone++] = (int32_t)i;
    free(in);
}

/* level_cone: the cone by (dependency level, op, index), by two stable counting sorts. */
static void make_level_cone(void) {
    int32_t *level = calloc(n, sizeof *level), *by_op = malloc(ncone * sizeof *by_op), top = 0;
    long op_start[LEAF + 2] = {0};
    for (long pos = 0; pos < ncone; pos++) {
        long i = cone[pos];
        int32_t a = level[lhs[i]], b = op[i] <= MUL ? level[rhs[i]] : 0;
        level[i] = (a > b ? a : b) + 1;
        if (level[i] > top) top = level[i];
        op_start[op[i] + 1]++;
    }
    long *level_start = calloc(top + 2, sizeof *level_start);
    for (int o = 0; o <= LEAF; o++) op_start[o + 1] += op_start[o];
    for (long pos = 0; pos < ncone; pos++) {
        by_op[op_start[op[cone[pos]]]++] = cone[pos];
        level_start[level[cone[pos]] + 1]++;
    }
    for (int32_t l = 0; l <= top; l++) level_start[l + 1] += level_start[l];
    for (long k = 0; k < ncone; k++) level_cone[level_start[level[by_op[k]]]++] = by_op[k];
    free(level);
    free(by_op);
    free(level_start);
}

static void forward_on(const int32_t *order, int keep) {
    long k = 0;
    for (long pos = 0; pos < ncone; pos++) {
        long i = order[pos];
        double a = value[lhs[i]], b = value[rhs[i]], v, d;
        switch (op[i]) {
            case ADD: v = a + b; break;
            case SUB: v = a - b; break;
            case MUL: v = a * b; break;
            case SIN: if (keep) { sincos(a, &v, &d); kept[k++] = d; } else v = sin(a); break;
            case COS: if (keep) { sincos(a, &d, &v); kept[k++] = -d; } else v = cos(a); break;
            default: v = tanh(a);
        }
        value[i] = v;
    }
}

static void forward(int keep) { forward_on(cone, keep); }

static void reverse(int keep) {
    long k = 0;
    for (long pos = 0; pos < ncone; pos++) k += op[cone[pos]] == SIN || op[cone[pos]] == COS;
    memset(grad, 0, n * sizeof *grad);
    grad[n - 1] = 1.0;
    for (long pos = ncone - 1; pos >= 0; pos--) {
        long i = cone[pos];
        int o = op[i];
        double kd = keep && (o == SIN || o == COS) ? kept[--k] : 0.0;
        double g = grad[i];
        if (g == 0.0) continue;
        double a = value[lhs[i]], b = value[rhs[i]], da, db = 0.0;
        switch (o) {
            case ADD: da = 1.0; db = 1.0; break;
            case SUB: da = 1.0; db = -1.0; break;
            case MUL: da = b; db = a; break;
            case SIN: da = keep ? kd : cos(a); break;
            case COS: da = keep ? kd : -sin(a); break;
            default: da = 1.0 - value[i] * value[i];
        }
        if (da != 0.0) grad[lhs[i]] += g * da;
        if (o <= MUL && db != 0.0) grad[rhs[i]] += g * db;
    }
}

/* Reads N and REPEATS from the command line, allocates the graph's buffers, builds the graph and
 * its level-order cone; returns REPEATS, or 0 after printing what is wrong with the arguments. */
static int setup(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s N REPEATS\n", argv[0]);
        return 0;
    }
    n = atol(argv[1]);
    int reps = atoi(argv[2]);
    if (n <= LEAVES || reps < 1) {
        fprintf(stderr, "N must exceed %d and REPEATS be positive\n", LEAVES);
        return 0;
    }
    op = malloc(n);
    lhs = malloc(n * sizeof *lhs);
    rhs = malloc(n * sizeof *rhs);
    cone = malloc(n * sizeof *cone);
    level_cone = malloc(n * sizeof *level_cone);
    value = malloc(n * sizeof *value);
    grad = malloc(n * sizeof *grad);
    kept = malloc(n * sizeof *kept);
    build();
    make_level_cone();
    return reps;
}

#ifndef REPLAY_FLOOR_NO_MAIN /* replay_vector.c includes this file for its graph and sweeps */
int main(int argc, char **argv) {
    int reps = setup(argc, argv);
    if (reps == 0) return 2;
    operand = malloc(n * sizeof *operand);
    uint8_t *kind = malloc(n);
    double *reference = malloc(LEAVES * sizeof *reference);
    double *t_fwd = malloc(reps * sizeof(double)), *t_rev = malloc(reps * sizeof(double));
    double *t_libm = malloc(reps * sizeof(double)), *t_kept = malloc(reps * sizeof(double));
    double *t_level = malloc(reps * sizeof(double));
    forward(0);
    for (long pos = 0; pos < ncone; pos++) {
        long i = cone[pos];
        if (op[i] >= SIN) {
            operand[ntrans] = value[lhs[i]];
            kind[ntrans++] = op[i];
        }
    }
    volatile double sink = 0.0;
    for (int r = 0; r < reps; r++) {
        double acc = 0.0, t0 = now();
        for (long k = 0; k < ntrans; k++)
            acc += kind[k] == SIN ? sin(operand[k]) : kind[k] == COS ? cos(operand[k]) : tanh(operand[k]);
        double t1 = now();
        for (long k = 0; k < ntrans; k++)
            acc += kind[k] == SIN ? cos(operand[k]) : kind[k] == COS ? sin(operand[k]) : 0.0;
        double t2 = now();
        forward(0);
        reverse(0);
        double t3 = now();
        memcpy(reference, grad, LEAVES * sizeof *reference);
        forward(1);
        reverse(1);
        double t4 = now();
        if (memcmp(reference, grad, LEAVES * sizeof *reference) != 0) {
            puts("the kept partials changed the gradients");
            return 1;
        }
        forward_on(level_cone, 0);
        reverse(0);
        double t5 = now();
        if (memcmp(reference, grad, LEAVES * sizeof *reference) != 0) {
            puts("the level order changed the gradients");
            return 1;
        }
        t_level[r] = t5 - t4;
        sink += acc;
        t_fwd[r] = t1 - t0;
        t_rev[r] = t2 - t1;
        t_libm[r] = t3 - t2;
        t_kept[r] = t4 - t3;
    }
    long zero = 0, subnormal = 0;
    for (long pos = 0; pos < ncone; pos++) {
        double g = fabs(grad[cone[pos]]);
        zero += g == 0.0;
        subnormal += g != 0.0 && g < 2.2250738585072014e-308;
    }
    double per_node = 1e9 / n;
    double libm = median(t_libm, reps), kept_sweep = median(t_kept, reps);
    double level_sweep = median(t_level, reps);
    printf("N = %ld (cone %ld nodes, %ld of them sin, cos or tanh), ns per node of N, medians of %d:\n"
           "  forward libm %.2f, reverse libm %.2f\n"
           "  sweep, partials by libm %.2f; sweep, kept partials %.2f (x%.3f); "
           "sweep, level-order forward %.2f (x%.3f)\n"
           "  adjoints exactly 0: %ld of the cone's %ld; subnormal: %ld\n",
           n, ncone, ntrans, reps, median(t_fwd, reps) * per_node, median(t_rev, reps) * per_node,
           libm * per_node, kept_sweep * per_node, kept_sweep / libm, level_sweep * per_node,
           level_sweep / libm, zero, ncone, subnormal);
    return 0;
}
#endif
