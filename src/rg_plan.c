/* rg_plan.c -- finding a cone's fusable sums. See rg_plan.h for what they are. */
#include "rg_plan.h"

#include <stdlib.h>
#include <string.h>

/* Passes of the order check before giving up on fusing anything (each pass that finds the order
 * changed unfuses at least one chain; real graphs need one or two). */
#define RG_PLAN_MAX_PASSES 32

typedef struct {
    const rg_tape *t;
    const uint8_t *varying;
    const rg_index *cone;
    rg_index n;
    uint8_t *uses;       /* per node: its uses in the cone, counted up to 2 */
    uint8_t *inner_add;  /* per node: an ADD used only as the lhs of a chain's next ADD */
    int32_t *pos_of;     /* per node of the cone: its position */
    int32_t *member;     /* per position: the candidate chain the node belongs to, or -1 */
    int32_t *last;       /* per node: position of the latest contribution to its row, or -1 */
    int32_t *last_chain; /* per node: the chain that made that contribution, or -1 */
    uint8_t *broken;     /* per candidate chain: not to be fused after all */
    uint8_t *reduced;    /* per node: a reduction over the batch, or depending on one */
    rg_chain *chains;
    rg_link *links;
    int32_t n_chains, n_links;
} search;

/* An ADD node that can be one of a chain's sums. */
static int chainable(const search *s, rg_index m) {
    return s->t->op[m] == RG_ADD && s->t->lhs[m] != s->t->rhs[m];
}

/* Fills in link L for sum node `add`: its term, scaled (see rg_plan.h) or plain. */
static int make_link(const search *s, rg_index add, rg_link *L) {
    const rg_tape *t = s->t;
    rg_index m = t->rhs[add], l = t->lhs[m], r = t->rhs[m];
    *L = (rg_link){add, m, -1, -1, 0, 0};
    if (t->op[m] != RG_MUL || s->uses[m] != 1) return 0;
    if (!s->varying[add]) { /* a uniform chain's product of numbers (a penalty's w * w): l * r */
        L->product = m;
        L->scale_first = 1;
        L->scale = l;
        L->term = r;
        return 1;
    }
    if (!s->varying[m] || l == r || s->varying[l] == s->varying[r]) return 0;
    L->product = m;
    L->scale_first = !s->varying[l];
    L->scale = L->scale_first ? l : r;
    L->term = L->scale_first ? r : l;
    return 1;
}

/* Adds the chain whose top is `top` as a candidate, if it fuses at least two nodes. */
static void add_chain(search *s, rg_index top) {
    const rg_tape *t = s->t;
    int32_t first = s->n_links, count = 0, fused = 0;
    for (rg_index a = top;; a = t->lhs[a]) { /* top down, so the links come out reversed */
        fused += 1 + make_link(s, a, &s->links[first + count]);
        count++;
        if (!s->inner_add[t->lhs[a]]) break;
    }
    if (fused < 2) return;
    for (int32_t k = 0; k < count / 2; k++) { /* a1 first */
        rg_link tmp = s->links[first + k];
        s->links[first + k] = s->links[first + count - 1 - k];
        s->links[first + count - 1 - k] = tmp;
    }
    int32_t c = s->n_chains++;
    s->chains[c] = (rg_chain){t->lhs[s->links[first].add], 0, first, count, -1, 0, 0, 0, 0};
    s->n_links += count;
    for (int32_t k = first; k < first + count; k++) {
        s->member[s->pos_of[s->links[k].add]] = c;
        if (s->links[k].product >= 0) s->member[s->pos_of[s->links[k].product]] = c;
    }
}

/* One contribution to row x, made by the node at `pos` (of chain c, or -1), in the fused sweep's
 * order: it must come after every later position's. Notes whether it is the row's first. */
static int contribute(search *s, int32_t pos, rg_index x, int32_t c, uint8_t *store) {
    if (!s->varying[x]) return 0; /* a uniform operand's share is summed: order is not kept there */
    int32_t before = s->last[x], changed = before >= 0 && pos > before;
    if (changed) {
        if (c >= 0) s->broken[c] = 1;
        if (s->last_chain[x] >= 0) s->broken[s->last_chain[x]] = 1;
    }
    if (store != NULL) *store = before < 0;
    s->last[x] = pos;
    s->last_chain[x] = c;
    return changed;
}

/* Walks the cone as the fused reverse sweep would (each unbroken chain at its top: terms last to
 * first, then the base) and breaks the chains that change some row's order of contributions.
 * Records which contributions are their row's first. Returns how many changes it found. */
static int check_order(search *s) {
    const rg_tape *t = s->t;
    rg_index output = s->cone[s->n - 1];
    int changes = 0;
    memset(s->last, 0xff, ((size_t)output + 1) * sizeof *s->last);
    memset(s->last_chain, 0xff, ((size_t)output + 1) * sizeof *s->last_chain);
    for (rg_index pos = s->n - 1; pos >= 0; pos--) {
        rg_index m = s->cone[pos];
        int o = t->op[m];
        if (rg_is_reduction(o) && s->varying[t->lhs[m]]) { /* passes its adjoint to its row */
            changes += contribute(s, pos, t->lhs[m], -1, NULL);
            continue;
        }
        if (rg_is_leaf(o) || !s->varying[m]) continue;
        int32_t c = s->member[pos];
        if (c >= 0 && s->broken[c]) c = -1;
        if (c < 0) {
            changes += contribute(s, pos, t->lhs[m], -1, NULL);
            if (RG_OP_INFO[o].arity == 2 && t->rhs[m] != t->lhs[m])
                changes += contribute(s, pos, t->rhs[m], -1, NULL);
            continue;
        }
        rg_chain *ch = &s->chains[c];
        rg_link *links = s->links + ch->first;
        if (m != links[ch->count - 1].add) continue; /* inner: done at the top */
        for (int32_t k = ch->count - 1; k >= 0; k--) {
            rg_index by = links[k].product >= 0 ? links[k].product : links[k].add;
            changes += contribute(s, s->pos_of[by], links[k].term, c, &links[k].store);
        }
        changes += contribute(s, s->pos_of[links[0].add], ch->base, c, &ch->store_base);
    }
    return changes;
}

/* Whether chains a and b of the plan read the same terms in the same order. */
static int same_terms(const rg_plan *p, int32_t a, int32_t b) {
    const rg_chain *ca = &p->chains[a], *cb = &p->chains[b];
    if (ca->count != cb->count) return 0;
    for (int32_t k = 0; k < ca->count; k++)
        if (p->links[ca->first + k].term != p->links[cb->first + k].term) return 0;
    return 1;
}

/* Whether the plan's chain c may be in a dense group (rg_plan.h): varying, uniform base, every
 * link scaled, its terms distinct (`seen`: per node scratch, stamped with c + 1). */
static int groupable(const search *s, const rg_plan *p, int32_t c, int32_t *seen) {
    const rg_chain *ch = &p->chains[c];
    const rg_link *L = p->links + ch->first;
    if (!s->varying[L[0].add] || s->varying[ch->base]) return 0;
    for (int32_t k = 0; k < ch->count; k++) {
        if (L[k].product < 0 || seen[L[k].term] == c + 1) return 0;
        seen[L[k].term] = c + 1;
    }
    return 1;
}

/* Group G's w0 and w_ld (rg_group): whether its weights lie as a row-major matrix in value[]. */
static void weight_layout(const rg_plan *p, rg_group *G) {
    const rg_link *first = p->links + p->chains[p->group_chains[G->first]].first;
    int64_t w0 = first[0].scale, ld = G->n;
    if (G->count > 1) ld = (int64_t)p->links[p->chains[p->group_chains[G->first + 1]].first].scale - w0;
    G->w0 = (rg_index)w0;
    G->w_ld = 0;
    if (ld < G->n || ld > INT32_MAX) return; /* (rows overlapping, or out of order) */
    for (int32_t o = 0; o < G->count; o++) {
        const rg_link *L = p->links + p->chains[p->group_chains[G->first + o]].first;
        for (int32_t k = 0; k < G->n; k++)
            if (L[k].scale != w0 + o * ld + k) return;
    }
    G->w_ld = (int32_t)ld;
}

/* Finds the dense groups among the plan's chains; the tops of all but a group's first chain become
 * inner units. `uses` counts each node's uses in the cone (up to any number). */
static int find_groups(const search *s, rg_plan *p) {
    const rg_index width = s->cone[s->n - 1] + 1;
    int32_t nc = p->n_chains;
    int32_t *seen = calloc((size_t)width, sizeof *seen);
    int32_t *uses = calloc((size_t)width, sizeof *uses);
    int32_t *head = malloc((size_t)width * sizeof *head); /* per first term: a list of chains */
    int32_t *next = malloc((size_t)(nc > 0 ? nc : 1) * sizeof *next);
    int32_t *members = malloc((size_t)(nc > 0 ? nc : 1) * sizeof *members);
    p->groups = malloc((size_t)(nc > 0 ? nc : 1) * sizeof *p->groups);
    p->group_chains = malloc((size_t)(nc > 0 ? nc : 1) * sizeof *p->group_chains);
    int err = RG_ENOMEM;
    if (seen == NULL || uses == NULL || head == NULL || next == NULL || members == NULL ||
        p->groups == NULL || p->group_chains == NULL)
        goto done;
    err = RG_OK;
    for (rg_index pos = 0; pos < s->n; pos++) {
        rg_index m = s->cone[pos];
        int o = s->t->op[m];
        if (rg_is_leaf(o)) continue;
        uses[s->t->lhs[m]]++;
        if (RG_OP_INFO[o].arity == 2) uses[s->t->rhs[m]]++;
    }
    for (rg_index i = 0; i < width; i++) head[i] = -1;
    for (int32_t c = nc - 1; c >= 0; c--) { /* lists in ascending chain order (ascending tops) */
        next[c] = -2; /* not in a list */
        if (!groupable(s, p, c, seen)) continue;
        rg_index x1 = p->links[p->chains[c].first].term;
        next[c] = head[x1];
        head[x1] = c;
    }
    for (int32_t c = 0; c < nc; c++) {
        rg_index x1 = p->links[p->chains[c].first].term;
        if (p->chains[c].group >= 0 || next[c] == -2) continue;
        int32_t m = 0;
        for (int32_t d = head[x1]; d >= 0; d = next[d])
            if (p->chains[d].group < 0 && same_terms(p, c, d)) members[m++] = d;
        if (m < 2) continue;
        const rg_link *L = p->links + p->chains[c].first;
        int ok = 1; /* no node but the group's products reads its rows */
        for (int32_t k = 0; ok && k < p->chains[c].count; k++) ok = uses[L[k].term] == m;
        if (!ok) continue;
        int32_t g = p->n_groups++;
        p->groups[g] = (rg_group){p->n_group_chains, m, p->chains[c].count, -1, 0};
        for (int32_t j = 0; j < m; j++) {
            int32_t d = members[j];
            p->chains[d].group = g;
            p->group_chains[p->n_group_chains++] = d;
            if (j > 0) p->unit[s->pos_of[p->links[p->chains[d].first + p->chains[d].count - 1].add]] =
                           RG_UNIT_INNER;
        }
        weight_layout(p, &p->groups[g]);
        if (m > p->max_group_m) p->max_group_m = m;
        if (p->chains[c].count > p->max_group_n) p->max_group_n = p->chains[c].count;
    }
done:
    free(seen);
    free(uses);
    free(head);
    free(next);
    free(members);
    return err;
}

/* The plan's uniform_runs, if they are worth keeping. */
static int uniform_runs(const search *s, rg_plan *p) {
    rg_index count = rg_cone_runs(s->cone, p->uniform, p->n_uniform, NULL);
    if (!rg_runs_worth_keeping(count, p->n_uniform)) return RG_OK;
    p->uniform_runs = malloc(2 * (size_t)count * sizeof *p->uniform_runs);
    if (p->uniform_runs == NULL) return RG_ENOMEM;
    p->n_uniform_runs = rg_cone_runs(s->cone, p->uniform, p->n_uniform, p->uniform_runs);
    return RG_OK;
}

/* Chain c's squares and strides (rg_chain), if it is a uniform chain of squares at constant
 * strides. */
static void find_strides(const search *s, rg_chain *c, const rg_link *L) {
    if (c->count < 2 || s->varying[L[0].add]) return;
    rg_index d_add = L[1].add - L[0].add, d_product = L[1].product - L[0].product;
    rg_index d_term = L[1].term - L[0].term;
    if (d_term == 0) return;
    for (int32_t k = 0; k < c->count; k++)
        if (L[k].product < 0 || L[k].scale != L[k].term ||
            L[k].add != L[0].add + (int64_t)k * d_add ||
            L[k].product != L[0].product + (int64_t)k * d_product ||
            L[k].term != L[0].term + (int64_t)k * d_term)
            return;
    c->squares = 1;
    c->d_add = d_add;
    c->d_product = d_product;
    c->d_term = d_term;
}

/* The plan: the unbroken candidates, and the lists of steps. */
static int make_plan(search *s, rg_plan *p, int gemm) {
    int32_t kept = 0, kept_links = 0;
    for (int32_t c = 0; c < s->n_chains; c++)
        if (!s->broken[c]) kept++, kept_links += s->chains[c].count;
    p->unit = malloc((size_t)s->n * sizeof *p->unit);
    p->steps = malloc((size_t)s->n * sizeof *p->steps);
    p->uniform = malloc((size_t)s->n * sizeof *p->uniform);
    p->uniform_steps = malloc((size_t)s->n * sizeof *p->uniform_steps);
    p->chains = malloc((size_t)(kept > 0 ? kept : 1) * sizeof *p->chains);
    p->links = malloc((size_t)(kept_links > 0 ? kept_links : 1) * sizeof *p->links);
    if (p->unit == NULL || p->steps == NULL || p->uniform == NULL || p->uniform_steps == NULL ||
        p->chains == NULL || p->links == NULL)
        return RG_ENOMEM;
    for (rg_index pos = 0; pos < s->n; pos++) p->unit[pos] = RG_UNIT_NODE;
    for (int32_t c = 0; c < s->n_chains; c++) {
        if (s->broken[c]) continue;
        rg_chain ch = s->chains[c];
        const rg_link *links = s->links + ch.first;
        ch.first = p->n_links;
        memcpy(p->links + p->n_links, links, (size_t)ch.count * sizeof *links);
        p->n_links += ch.count;
        for (int32_t k = 0; k < ch.count; k++) {
            p->unit[s->pos_of[links[k].add]] = RG_UNIT_INNER;
            if (links[k].product >= 0) p->unit[s->pos_of[links[k].product]] = RG_UNIT_INNER;
        }
        p->unit[s->pos_of[links[ch.count - 1].add]] = p->n_chains;
        find_strides(s, &ch, links);
        p->chains[p->n_chains++] = ch;
    }
    if (gemm && find_groups(s, p) != RG_OK) return RG_ENOMEM;
    for (rg_index pos = 0; pos < s->n; pos++) {
        rg_index m = s->cone[pos];
        int o = s->t->op[m];
        if (!s->varying[m]) p->uniform[p->n_uniform++] = pos;
        if (rg_is_reduction(o)) p->n_reductions++;
        if (s->varying[m] && s->reduced[m]) p->staged = 1;
        if (rg_is_leaf(o) || p->unit[pos] == RG_UNIT_INNER) continue;
        if (rg_is_reduction(o) && s->varying[s->t->lhs[m]]) {
            p->unit[pos] = RG_UNIT_REDUCE - p->n_row_reductions++;
            p->steps[p->n_steps++] = pos;
        } else if (s->varying[m]) {
            p->steps[p->n_steps++] = pos;
        } else if (!s->reduced[m]) {
            p->uniform_steps[p->n_uniform_steps++] = pos;
        }
    }
    if (uniform_runs(s, p) != RG_OK) return RG_ENOMEM;
    p->n_pre_uniform_steps = p->n_uniform_steps;
    for (rg_index pos = 0; pos < s->n; pos++) { /* then the uniform steps after a reduction */
        rg_index m = s->cone[pos];
        int o = s->t->op[m];
        if (rg_is_leaf(o) || p->unit[pos] == RG_UNIT_INNER || s->varying[m] || !s->reduced[m])
            continue;
        if (rg_is_reduction(o) && s->varying[s->t->lhs[m]]) continue;
        p->uniform_steps[p->n_uniform_steps++] = pos;
    }
    return RG_OK;
}

int rg_plan_build(rg_plan *p, const rg_tape *t, const uint8_t *varying, const rg_index *cone,
                  rg_index n, int flags) {
    int fuse = flags & RG_PLAN_FUSE;
    memset(p, 0, sizeof *p);
    size_t width = (size_t)cone[n - 1] + 1;
    search s = {t, varying, cone, n};
    s.uses = calloc(width, 1);
    s.inner_add = calloc(width, 1);
    s.pos_of = malloc(width * sizeof *s.pos_of);
    s.member = malloc((size_t)n * sizeof *s.member);
    s.last = malloc(width * sizeof *s.last);
    s.last_chain = malloc(width * sizeof *s.last_chain);
    s.broken = calloc((size_t)n, 1);
    s.reduced = calloc(width, 1);
    s.chains = malloc((size_t)n * sizeof *s.chains);
    s.links = malloc((size_t)n * sizeof *s.links);
    int err = RG_ENOMEM;
    if (s.uses == NULL || s.inner_add == NULL || s.pos_of == NULL || s.member == NULL ||
        s.last == NULL || s.last_chain == NULL || s.broken == NULL || s.chains == NULL ||
        s.links == NULL || s.reduced == NULL)
        goto done;
    for (rg_index pos = 0; pos < n; pos++) {
        rg_index m = cone[pos];
        int o = t->op[m];
        s.pos_of[m] = pos;
        s.member[pos] = -1;
        if (rg_is_leaf(o)) continue;
        if (s.uses[t->lhs[m]] < 2) s.uses[t->lhs[m]]++;
        if (RG_OP_INFO[o].arity == 2 && s.uses[t->rhs[m]] < 2) s.uses[t->rhs[m]]++;
    }
    int staged = 0;
    for (rg_index pos = 0; pos < n; pos++) {
        rg_index m = cone[pos];
        int o = t->op[m];
        if (rg_is_leaf(o)) continue;
        s.reduced[m] = rg_is_reduction(o) || s.reduced[t->lhs[m]] ||
                       (RG_OP_INFO[o].arity == 2 && s.reduced[t->rhs[m]]);
        if (varying[m] && s.reduced[m]) staged = 1;
    }
    if (staged) fuse = 0; /* swept node by node (rg_plan.h) */
    for (rg_index pos = 0; pos < n; pos++) {
        rg_index m = cone[pos];
        rg_index l = t->lhs[m];
        if (chainable(&s, m) && chainable(&s, l) && s.uses[l] == 1 && varying[l] == varying[m])
            s.inner_add[l] = 1;
    }
    for (rg_index pos = 0; fuse && pos < n; pos++)
        if (chainable(&s, cone[pos]) && !s.inner_add[cone[pos]]) add_chain(&s, cone[pos]);
    int passes = 0;
    while (s.n_chains > 0 && check_order(&s) > 0)
        if (++passes == RG_PLAN_MAX_PASSES) memset(s.broken, 1, (size_t)s.n_chains);
    err = make_plan(&s, p, fuse && (flags & RG_PLAN_GEMM));
done:
    free(s.uses);
    free(s.inner_add);
    free(s.pos_of);
    free(s.member);
    free(s.last);
    free(s.last_chain);
    free(s.broken);
    free(s.chains);
    free(s.links);
    free(s.reduced);
    if (err) rg_plan_free(p);
    return err;
}

void rg_plan_free(rg_plan *p) {
    free(p->unit);
    free(p->steps);
    free(p->uniform);
    free(p->uniform_steps);
    free(p->uniform_runs);
    free(p->chains);
    free(p->links);
    free(p->groups);
    free(p->group_chains);
    free(p->stream_slot);
    memset(p, 0, sizeof *p);
}

size_t rg_plan_bytes(const rg_plan *p, rg_index n) {
    if (p->unit == NULL) return 0;
    return (size_t)n * sizeof *p->unit +
           (size_t)(p->n_steps + p->n_uniform + p->n_uniform_steps) * sizeof *p->steps +
           2 * (size_t)p->n_uniform_runs * sizeof *p->uniform_runs +
           (size_t)p->n_chains * sizeof *p->chains + (size_t)p->n_links * sizeof *p->links +
           (size_t)p->n_groups * sizeof *p->groups +
           (size_t)p->n_group_chains * sizeof *p->group_chains +
           (p->stream_slot != NULL ? (size_t)p->stream_width * sizeof *p->stream_slot : 0);
}
