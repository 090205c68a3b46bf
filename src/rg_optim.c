/* rg_optim.c -- optimizer steps. See rg_optim.h. */
#include "rg_optim.h"

#include <math.h>

void rg_sgd_step(rg_tape *t, const rg_index *idx, rg_index n, double lr, double momentum,
                 double *velocity) {
    double *value = t->value;
    const double *grad = t->grad;
    if (momentum == 0.0) {
        for (rg_index k = 0; k < n; k++) value[idx[k]] -= lr * grad[idx[k]];
        return;
    }
    for (rg_index k = 0; k < n; k++) {
        velocity[k] = momentum * velocity[k] + grad[idx[k]];
        value[idx[k]] -= lr * velocity[k];
    }
}

void rg_adam_step(rg_tape *t, const rg_index *idx, rg_index n, double lr, double b1, double b2,
                  double eps, double c1, double c2, double *m, double *v) {
    double *value = t->value;
    const double *grad = t->grad;
    for (rg_index k = 0; k < n; k++) {
        double g = grad[idx[k]];
        m[k] = b1 * m[k] + (1.0 - b1) * g;
        v[k] = b2 * v[k] + (1.0 - b2) * g * g;
        value[idx[k]] -= lr * (m[k] / c1) / (sqrt(v[k] / c2) + eps);
    }
}
