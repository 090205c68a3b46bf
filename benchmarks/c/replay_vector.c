/* Vector math in the bigdag replay (issue 19): would glibc's libmvec make the replay faster, with
 * the sweeps' shape of benchmarks/c/replay_floor.c (whose graph, sweeps and level order this file
 * includes)?
 *
 *   gcc -O2 -fopenmp-simd -ffast-math -mavx512f -mfma -o /tmp/replay_vector \
 *       benchmarks/c/replay_vector.c -lm -lmvec && /tmp/replay_vector 100000 200
 *
 * (-ffast-math and -fopenmp-simd let gcc call libmvec's _ZGVeN8v_sin and friends for the loops
 * below; it also applies to the libm sweeps here, so compare them with each other, not with
 * replay_floor.c's figures.) Printed, ns per node of N, medians:
 *   - "libm": the level-order forward sweep and the reverse sweep, with libm;
 *   - "vector": the same forward sweep computing each run of one transcendental op within a level
 *     (up to 8 nodes whose operands are computed) by one 8-lane libmvec call, and a reverse sweep
 *     whose sin and cos partials are computed beforehand by libmvec over all such nodes;
 *   - how many values and gradients differ from the libm sweeps', and by how much (relative).
 */
#define REPLAY_FLOOR_NO_MAIN
#pragma GCC diagnostic ignored "-Wunused-variable" /* replay_floor.c's main's own buffers */
#include "replay_floor.c"

/* y[k] = f(x[k]) for k < m: with -fopenmp-simd -ffast-math gcc makes these libmvec calls. */
__attribute__((noinline)) static void vsin(const double *restrict x, double *restrict y, long m) {
#pragma omp simd
    for (long k = 0; k < m; k++) y[k] = sin(x[k]);
}

__attribute__((noinline)) static void vcos(const double *restrict x, double *restrict y, long m) {
#pragma omp simd
    for (long k = 0; k < m; k++) y[k] = cos(x[k]);
}

__attribute__((noinline)) static void vtanh(const double *restrict x, double *restrict y, long m) {
#pragma omp simd
    for (long k = 0; k < m; k++) y[k] = tanh(x[k]);
}

enum { LANES = 8 };
static uint32_t *stamp, epoch; /* a node's value is this sweep's when its stamp is the epoch */

/* The waiting run of one transcendental op: its nodes and their operands, computed in one call. */
static struct { int op, count; int32_t node[LANES]; double in[LANES]; } run;

static void flush(void) {
    double out[LANES];
    if (run.count == 0) return;
    if (run.op == SIN) vsin(run.in, out, LANES);
    else if (run.op == COS) vcos(run.in, out, LANES);
    else vtanh(run.in, out, LANES);
    for (int q = 0; q < run.count; q++) {
        value[run.node[q]] = out[q];
        stamp[run.node[q]] = epoch;
    }
    run.count = 0;
}

static int ready(long i) { return op[i] == LEAF || stamp[i] == epoch; }

static void forward_vector(const int32_t *order) {
    epoch++;
    for (long pos = 0; pos < ncone; pos++) {
        long i = order[pos];
        int o = op[i];
        if (o <= MUL) {
            if (!ready(lhs[i]) || !ready(rhs[i])) flush(); /* an operand waits in the run */
            double a = value[lhs[i]], b = value[rhs[i]];
            value[i] = o == ADD ? a + b : o == SUB ? a - b : a * b;
            stamp[i] = epoch;
        } else {
            if (run.count && (run.op != o || !ready(lhs[i]) || run.count == LANES)) flush();
            run.op = o;
            run.in[run.count] = value[lhs[i]];
            run.node[run.count++] = (int32_t)i;
        }
    }
    flush();
}

/* The reverse sweep with sin's and cos's partials computed first, by vector math over all such
 * nodes of the cone (a partial does not depend on the adjoints), and read back in reverse. */
static double *sin_in, *cos_in, *sin_partial, *cos_partial;

static void reverse_vector(void) {
    long ns = 0, nc = 0;
    for (long pos = 0; pos < ncone; pos++) {
        long i = cone[pos];
        if (op[i] == SIN) sin_in[ns++] = value[lhs[i]];
        else if (op[i] == COS) cos_in[nc++] = value[lhs[i]];
    }
    vcos(sin_in, sin_partial, ns);
    vsin(cos_in, cos_partial, nc);
    memset(grad, 0, n * sizeof *grad);
    grad[n - 1] = 1.0;
    for (long pos = ncone - 1; pos >= 0; pos--) {
        long i = cone[pos];
        int o = op[i];
        double kept_partial = o == SIN ? sin_partial[--ns] : o == COS ? -cos_partial[--nc] : 0.0;
        double g = grad[i];
        if (g == 0.0) continue;
        double a = value[lhs[i]], b = value[rhs[i]], da, db = 0.0;
        switch (o) {
            case ADD: da = 1.0; db = 1.0; break;
            case SUB: da = 1.0; db = -1.0; break;
            case MUL: da = b; db = a; break;
            case SIN: case COS: da = kept_partial; break;
            default: da = 1.0 - value[i] * value[i];
        }
        if (da != 0.0) grad[lhs[i]] += g * da;
        if (o <= MUL && db != 0.0) grad[rhs[i]] += g * db;
    }
}

/* How many of the cone's x[] differ from reference[], and the largest relative difference. */
static long differ(const double *x, const double *reference, double *largest) {
    long count = 0;
    *largest = 0.0;
    for (long pos = 0; pos < ncone; pos++) {
        long i = cone[pos];
        if (x[i] == reference[i]) continue;
        count++;
        double d = fabs(x[i] - reference[i]) / fmax(fabs(reference[i]), 1e-300);
        if (d > *largest) *largest = d;
    }
    return count;
}

int main(int argc, char **argv) {
    int reps = setup(argc, argv);
    if (reps == 0) return 2;
    stamp = calloc(n, sizeof *stamp);
    sin_in = malloc(n * sizeof *sin_in);
    cos_in = malloc(n * sizeof *cos_in);
    sin_partial = malloc(n * sizeof *sin_partial);
    cos_partial = malloc(n * sizeof *cos_partial);
    double *ref_value = malloc(n * sizeof *ref_value), *ref_grad = malloc(n * sizeof *ref_grad);
    double *t_fwd = malloc(reps * sizeof(double)), *t_rev = malloc(reps * sizeof(double));
    double *t_vfwd = malloc(reps * sizeof(double)), *t_vrev = malloc(reps * sizeof(double));
    forward(0);
    reverse(0);
    memcpy(ref_value, value, n * sizeof *value);
    memcpy(ref_grad, grad, n * sizeof *grad);
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        forward_on(level_cone, 0);
        double t1 = now();
        reverse(0);
        double t2 = now();
        forward_vector(level_cone);
        double t3 = now();
        reverse_vector();
        double t4 = now();
        t_fwd[r] = t1 - t0;
        t_rev[r] = t2 - t1;
        t_vfwd[r] = t3 - t2;
        t_vrev[r] = t4 - t3;
    }
    double dv, dg, per_node = 1e9 / n;
    long nv = differ(value, ref_value, &dv), ng = differ(grad, ref_grad, &dg);
    double f = median(t_fwd, reps) * per_node, b = median(t_rev, reps) * per_node;
    double vf = median(t_vfwd, reps) * per_node, vb = median(t_vrev, reps) * per_node;
    printf("N = %ld, ns per node of N, medians of %d:\n"
           "  libm:   forward (level order) %.2f + reverse %.2f = %.2f\n"
           "  vector: forward (level order) %.2f + reverse %.2f = %.2f (x%.3f)\n"
           "  values that differ: %ld of %ld (largest by %.1e, relative); gradients: %ld (%.1e)\n",
           n, reps, f, b, f + b, vf, vb, vf + vb, (vf + vb) / (f + b), nv, ncone, dv, ng, dg);
    return 0;
}
