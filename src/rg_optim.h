/* rg_optim.h -- parameter updates for the optimizers (rustograd_cy/optim.py): one C loop over the
 * parameters' node indices, reading gradients from the tape's buffers (or, when `grads` is not NULL,
 * grads[k] for the k-th parameter: gradients summed elsewhere, e.g. across Dask workers) and writing
 * values to the tape's buffers. */
#ifndef RG_OPTIM_H
#define RG_OPTIM_H

#include "rg_tape.h"

/* SGD with momentum (PyTorch's form): v = momentum * v + g; x -= lr * v. With momentum 0, x -= lr * g
 * and `velocity` is not touched (may be NULL). */
void rg_sgd_step(rg_tape *t, const rg_index *idx, rg_index n, double lr, double momentum,
                 double *velocity, const double *grads);

/* Adam (PyTorch's form): m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
 * x -= lr * (m / c1) / (sqrt(v / c2) + eps), where c1 = 1 - b1^step and c2 = 1 - b2^step. */
void rg_adam_step(rg_tape *t, const rg_index *idx, rg_index n, double lr, double b1, double b2,
                  double eps, double c1, double c2, double *m, double *v, const double *grads);

#endif /* RG_OPTIM_H */
