/* rg_plan.h -- how the batched C sweeps run a cone: which nodes they visit, and the fused sums.
 *
 * A plan lists the cone's uniform nodes (computed once per sweep, as numbers) and the steps of the
 * varying part (rows), so that neither sweep walks past the other's nodes.
 *
 * A linear layer's outputs are chains of additions, ((b + w1 * x1) + w2 * x2) + ..., one node per
 * product and one per sum. Swept node by node, each costs a dispatch, and a row written and read
 * back, per sweep. The plan finds these chains so that the sweeps run each as one loop per term:
 *
 * - A chain is a run of ADD nodes a1, ..., an (n >= 1), all varying or all uniform, each a(k-1)
 *   being a(k)'s lhs and used by nothing else in the cone; a1's lhs is the chain's base, a(k)'s rhs
 *   its k-th term. a1, ..., a(n-1) are "inner" nodes; an is the chain's top.
 * - In a varying chain, a term is "scaled" when it is a varying MUL node used by nothing else, with
 *   one uniform operand (the scale w) and one varying (x): the MUL node is inner too, and the chain
 *   computes w * x itself. In a uniform chain, any MUL term used by nothing else is scaled (scale
 *   its lhs, term its rhs, which may be the same node: a penalty's w * w). Any other term is
 *   "plain".
 * - A chain of one plain term is not worth fusing and is left alone.
 *
 * The sweeps run a chain at its top's place in the cone, with the node-by-node sweep's arithmetic in
 * its order, so values are bit-identical. A varying chain sums into its top's row; the reverse sweep
 * passes the top's adjoint row straight to the terms, last to first, then to the base, adding to each
 * operand row in the node-by-node sweep's order: a chain that would change that order (another node
 * between its nodes adds to a row it adds to) is not fused. So per-sample gradients are bit-identical
 * too. The rows of a varying chain's inner nodes are left unwritten: rg_fill_inner_values and
 * rg_fill_inner_grads (rg_batch.h) write them when they are to be read (each inner gradient is the
 * top's, zeros made +0). A uniform chain (a penalty summing squares of weights) works on numbers and
 * writes them all, its products too, each product's reverse step right after its sum's; it only
 * saves the per-node dispatch and keeps the adjoint in a register instead of passing it through
 * memory. (Uniform gradients are sums whose order no sweep keeps, as above.)
 *
 * Reductions over the batch (rg.sum, rg.mean) are uniform nodes that read a row. The uniform nodes
 * are swept in two parts: those that depend on no reduction before the varying rows (forward; after
 * them in reverse), the others after (forward; before them in reverse); a reduction of a row is
 * summed chunk by chunk in the varying sweep, and in reverse passes its adjoint to every sample there.
 */
#ifndef RG_PLAN_H
#define RG_PLAN_H

#include <stdint.h>

#include "rg_tape.h"

typedef struct {
    rg_index add;     /* a(k) */
    rg_index term;    /* its term; for a scaled term, x (a uniform chain's: the MUL's rhs) */
    rg_index scale;   /* a scaled term's w (a uniform chain's: the MUL's lhs), else -1 */
    rg_index product; /* a scaled term's MUL node, else -1 */
    uint8_t scale_first; /* the MUL node computes w * x (else x * w) */
    uint8_t store;    /* the term's row is first reached here in the reverse sweep: stored, not added */
} rg_link;

typedef struct {
    rg_index base;
    uint8_t store_base; /* the base's row is first reached here */
    int32_t first, count; /* its links, a1 first: links[first .. first + count) */
    int32_t group;        /* the dense group it belongs to (below), or -1 */
    /* A uniform chain of squares (every link's product w * w) whose sums, squares and weights each
     * lie at a constant stride (a penalty over a model's weights, summed in one loop): link k's
     * nodes are link 0's plus k times d_add, d_product, d_term (d_term != 0, so the weights are
     * distinct). The sweeps then run it by those strides, its reverse step in vector loops. */
    uint8_t squares;
    rg_index d_add, d_product, d_term;
} rg_chain;

/* A dense group: m >= 2 varying chains (a Linear layer's outputs) whose links are all scaled, read
 * the same n distinct rows x1..xn in the same order, and have uniform bases; no other node of the
 * cone reads those rows. Its chains' sums are one matrix product, Y = W X + b, run by a BLAS dgemm
 * at its first chain's top (the other tops' units are RG_UNIT_INNER); in reverse, at the same
 * place, dX = W^T dY is stored into the x rows, dW = dY X^T and db = sum(dY) summed over the
 * samples. Such groups are made only with RG_PLAN_GEMM, and they sum in another order than the
 * chains (results agree to rounding, not bit for bit). */
typedef struct {
    int32_t first, count; /* its chains, by ascending top: group_chains[first .. first + count) */
    int32_t n;            /* terms per chain */
    /* Where its weights lie as one row-major matrix in the tape's value[] and grad[] (W[o][k], the
     * scale of chain o's k-th link, at w0 + o * w_ld + k; a Linear layer's weights made row by
     * row): the products then read W and add dW there in place. w_ld = 0: they do not, and are
     * gathered. */
    rg_index w0;
    int32_t w_ld;
} rg_group;

/* What the sweep does at a cone position. RG_UNIT_REDUCE - r (r >= 0): the r-th reduction over the
 * batch (rg.sum, rg.mean) of a varying operand, summed chunk by chunk in the varying sweep. */
enum { RG_UNIT_NODE = -1, RG_UNIT_INNER = -2, RG_UNIT_REDUCE = -3 }; /* else: the index of the chain
                                                                      whose top is here */

typedef struct {
    int32_t *unit;          /* per cone position: RG_UNIT_NODE, RG_UNIT_INNER or a chain index */
    int32_t *steps;         /* ascending positions of the varying computed nodes, not inner ones */
    int32_t *uniform;       /* ascending positions of the uniform nodes, leaves included */
    rg_index *uniform_runs; /* the same nodes as runs of consecutive ones (run k: nodes
                             * uniform_runs[2k] .. uniform_runs[2k + 1] - 1), where they are few
                             * enough to be worth keeping (a model's weights), else NULL */
    int32_t n_uniform_runs;
    int32_t *uniform_steps; /* positions of the uniform computed nodes, not inner ones, nor row
                             * reductions: first the n_pre_uniform_steps that depend on no
                             * reduction, then the rest, each part ascending */
    rg_chain *chains;
    rg_link *links;
    rg_group *groups;
    int32_t *group_chains;
    int32_t n_steps, n_uniform, n_uniform_steps, n_chains, n_links;
    int32_t n_groups, n_group_chains, max_group_m, max_group_n;
    int32_t n_pre_uniform_steps;
    int32_t n_reductions;     /* reductions in the cone: the output is then a number for the batch */
    int32_t n_row_reductions; /* those of a varying operand (in steps[], unit RG_UNIT_REDUCE - r) */
    uint8_t staged;           /* a varying node depends on a reduction (x - rg.mean(x)): the sweeps
                               * then run node by node over all samples at once, and nothing is fused */
    /* Made by the first streamed sweep of the cone, and kept (rg_batch.c's stream_slots): each
     * node's row in a chunk, indexed by node up to the output, and how many rows; with
     * stream_all, every varying node has one. */
    int32_t *stream_slot;
    int64_t stream_rows, stream_width;
    uint8_t stream_all;
} rg_plan;

/* rg_plan_build's flags: fuse chains; lower dense groups of them to matrix products. */
enum { RG_PLAN_FUSE = 1, RG_PLAN_GEMM = 2 };

/* Plans an apply-free cone, given which nodes vary (rg_batch's varying[], covering the cone);
 * `flags` as above (0: nothing fused). RG_OK, or RG_ENOMEM (the plan is then empty). */
int rg_plan_build(rg_plan *p, const rg_tape *t, const uint8_t *varying, const rg_index *cone,
                  rg_index n, int flags);
void rg_plan_free(rg_plan *p);

/* Bytes the plan holds for a cone of n nodes. */
size_t rg_plan_bytes(const rg_plan *p, rg_index n);

#endif /* RG_PLAN_H */
