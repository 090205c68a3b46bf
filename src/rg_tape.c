/* rg_tape.c -- buffer growth and the sweeps. See rg_tape.h for the contracts. */
#include "rg_tape.h"

#include <stdlib.h>
#include <string.h>

/* The one growth path: realloc *buf to count elements of size bytes, checking the multiplication.
 * On failure *buf is left as it was. */
static int grow(void **buf, size_t count, size_t size) {
    if (count > SIZE_MAX / size) return RG_EOVERFLOW;
    void *p = realloc(*buf, count * size);
    if (p == NULL) return RG_ENOMEM;
    *buf = p;
    return RG_OK;
}

int rg_tape_reserve(rg_tape *t, int64_t needed) {
    int64_t limit = t->limit > 0 ? t->limit : RG_MAX_NODES;
    if (needed <= t->capacity) return RG_OK;
    if (needed > limit) return RG_EOVERFLOW;
    int64_t cap = t->capacity > 0 ? t->capacity : 64;
    while (cap < needed) cap *= 2;
    if (cap > limit) cap = limit;
    /* A buffer that grew before a later one failed stays grown: harmless, capacity is unchanged. */
    int err;
    if ((err = grow((void **)&t->op, (size_t)cap, sizeof *t->op))) return err;
    if ((err = grow((void **)&t->lhs, (size_t)cap, sizeof *t->lhs))) return err;
    if ((err = grow((void **)&t->rhs, (size_t)cap, sizeof *t->rhs))) return err;
    if ((err = grow((void **)&t->value, (size_t)cap, sizeof *t->value))) return err;
    if ((err = grow((void **)&t->grad, (size_t)cap, sizeof *t->grad))) return err;
    if ((err = grow((void **)&t->stamp, (size_t)cap, sizeof *t->stamp))) return err;
    t->capacity = (rg_index)cap;
    return RG_OK;
}

void rg_tape_free(rg_tape *t) {
    free(t->op);
    free(t->lhs);
    free(t->rhs);
    free(t->value);
    free(t->grad);
    free(t->stamp);
    memset(t, 0, sizeof *t);
}

rg_index rg_cone(const rg_tape *t, rg_index output, uint8_t *mark, rg_index *cone) {
    /* Operands precede their users, so one descending pass marks every dependency. */
    mark[output] = 1;
    rg_index count = 0;
    for (rg_index i = output; i >= 0; i--) {
        if (!mark[i]) continue;
        count++;
        if (!rg_is_leaf(t->op[i])) {
            mark[t->lhs[i]] = 1;
            mark[t->rhs[i]] = 1;
        }
    }
    rg_index k = 0;
    for (rg_index i = 0; i <= output; i++)
        if (mark[i]) cone[k++] = i;
    return count;
}

rg_index rg_forward(rg_tape *t, const rg_index *cone, rg_index pos, rg_index n, rg_stamp epoch) {
    const rg_opcode *op = t->op;
    const rg_index *lhs = t->lhs, *rhs = t->rhs;
    double *value = t->value;
    rg_stamp *stamp = t->stamp;
    for (; pos < n; pos++) {
        rg_index i = cone[pos];
        int o = op[i];
        if (rg_is_leaf(o)) continue;
        if (o == RG_APPLY) return pos;
        value[i] = rg_value(o, value[lhs[i]], value[rhs[i]]);
        stamp[i] = epoch;
    }
    return n;
}

rg_index rg_level_order(const rg_tape *t, const rg_index *cone, rg_index n, rg_index *order) {
    rg_index output = cone[n - 1];
    int32_t *level = calloc((size_t)output + 1, sizeof *level); /* leaves, and the rest, start at 0 */
    rg_index *by_op = malloc((size_t)n * sizeof *by_op);
    rg_index count = RG_ENOMEM, top = 0;
    int64_t op_start[RG_NUM_OPS + 1] = {0};
    int64_t *level_start = NULL;
    if (level == NULL || by_op == NULL) goto out;
    count = 0;
    for (rg_index pos = 0; pos < n; pos++) {
        rg_index i = cone[pos];
        int o = t->op[i];
        if (rg_is_leaf(o)) continue;
        int32_t a = level[t->lhs[i]], b = level[t->rhs[i]];
        level[i] = (a > b ? a : b) + 1;
        if (level[i] > top) top = level[i];
        op_start[o + 1]++;
        count++;
    }
    /* Two stable counting sorts: by op, then by level, so nodes end up by level, then op, then index. */
    level_start = calloc((size_t)top + 2, sizeof *level_start);
    if (level_start == NULL) {
        count = RG_ENOMEM;
        goto out;
    }
    for (int o = 0; o < RG_NUM_OPS; o++) op_start[o + 1] += op_start[o];
    for (rg_index pos = 0; pos < n; pos++) {
        rg_index i = cone[pos];
        if (rg_is_leaf(t->op[i])) continue;
        by_op[op_start[t->op[i]]++] = i;
        level_start[level[i] + 1]++;
    }
    for (rg_index l = 0; l <= top; l++) level_start[l + 1] += level_start[l];
    for (rg_index k = 0; k < count; k++) order[level_start[level[by_op[k]]]++] = by_op[k];
out:
    free(level);
    free(by_op);
    free(level_start);
    return count;
}

rg_index rg_first_stale(const rg_tape *t, const rg_index *cone, rg_index n, rg_stamp epoch) {
    for (rg_index pos = 0; pos < n; pos++) {
        rg_index i = cone[pos];
        if (!rg_is_leaf(t->op[i]) && t->stamp[i] != epoch) return pos;
    }
    return -1;
}

void rg_reverse_begin(rg_tape *t, const rg_index *cone, rg_index n) {
    double *grad = t->grad;
    for (rg_index pos = 0; pos < n; pos++) grad[cone[pos]] = 0.0;
    grad[cone[n - 1]] = 1.0;
}

rg_index rg_reverse(rg_tape *t, const rg_index *cone, rg_index pos, rg_index stop) {
    for (; pos >= stop; pos--) {
        rg_index i = cone[pos];
        int o = t->op[i];
        if (rg_is_leaf(o)) continue;
        if (o == RG_APPLY) return pos;
        rg_reverse_node(t, i, o);
    }
    return stop - 1;
}

rg_index rg_tangent(const rg_tape *t, const rg_index *cone, rg_index pos, rg_index n, rg_index var,
                    double *tangent) {
    const rg_opcode *op = t->op;
    const rg_index *lhs = t->lhs, *rhs = t->rhs;
    const double *value = t->value;
    for (; pos < n; pos++) {
        rg_index i = cone[pos];
        int o = op[i];
        if (rg_is_leaf(o)) {
            tangent[i] = i == var ? 1.0 : 0.0;
            continue;
        }
        if (o == RG_APPLY) return pos;
        rg_index l = lhs[i], r = rhs[i];
        double da, db, dot = 0.0;
        rg_partials(o, value[l], value[r], value[i], &da, &db);
        /* Zero tangents contribute nothing, even where a partial is infinite, and zero partials
         * nothing where a tangent is. */
        if (tangent[l] != 0.0 && da != 0.0) dot += da * tangent[l];
        if (RG_OP_INFO[o].arity == 2 && tangent[r] != 0.0 && db != 0.0) dot += db * tangent[r];
        tangent[i] = dot;
    }
    return n;
}

rg_index rg_first_nonfinite(const double *x, int64_t width, const rg_index *cone, rg_index n,
                            int descending) {
    if (descending) {
        for (rg_index pos = n - 1; pos >= 0; pos--)
            if (rg_any_nonfinite(x + (int64_t)cone[pos] * width, width)) return pos;
    } else {
        for (rg_index pos = 0; pos < n; pos++)
            if (rg_any_nonfinite(x + (int64_t)cone[pos] * width, width)) return pos;
    }
    return -1;
}

rg_index rg_cone_runs(const rg_index *cone, const int32_t *at, rg_index n, rg_index *runs) {
    rg_index count = 0, prev = 0;
    for (rg_index k = 0; k < n; k++) {
        rg_index i = cone[at != NULL ? at[k] : k];
        if (k > 0 && i == prev + 1) {
            if (runs != NULL) runs[2 * count - 1] = i + 1;
        } else {
            if (runs != NULL) runs[2 * count] = i, runs[2 * count + 1] = i + 1;
            count++;
        }
        prev = i;
    }
    return count;
}

void rg_reset_stamps(rg_tape *t) {
    memset(t->stamp, 0, (size_t)t->size * sizeof *t->stamp);
}
