/* rg_optim.c -- optimizer steps. See rg_optim.h. */
#include "rg_optim.h"

#include <math.h>

/* The k-th parameter's gradient: from the tape, or from the caller's array. */
#define RG_GRAD(k) (grads != NULL ? grads[k] : t->grad[idx[k]])

void rg_sgd_step(rg_tape *t, const rg_index *idx, rg_index n, double lr, double momentum,
                 double *velocity, const double *grads) {
    double *value = t->value;
    if (momentum == 0.0) {
        for (rg_index k = 0; k < n; k++) value[idx[k]] -= lr * RG_GRAD(k);
        return;
    }
    for (rg_index k = 0; k < n; k++) {
        velocity[k] = momentum * velocity[k] + RG_GRAD(k);
        value[idx[k]] -= lr * velocity[k];
    }
}

void rg_adam_step(rg_tape *t, const rg_index *idx, rg_index n, double lr, double b1, double b2,
                  double eps, double c1, double c2, double *m, double *v, const double *grads) {
    double *value = t->value;
    for (rg_index k = 0; k < n; k++) {
        double g = RG_GRAD(k);
        m[k] = b1 * m[k] + (1.0 - b1) * g;
        v[k] = b2 * v[k] + (1.0 - b2) * g * g;
        value[idx[k]] -= lr * (m[k] / c1) / (sqrt(v[k] / c2) + eps);
    }
}
