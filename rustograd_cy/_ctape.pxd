# Declarations of the C99 core in src/ (the op table and the tape): the project's own type names
# live here, so the Cython modules never spell int32_t for a node index.
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t

cdef extern from "rg_ops.h" nogil:
    # The codes the engine itself names (leaves, apply() nodes, the two powers); every op's code is
    # its row's position in rustograd_cy/_opspec.py, which the generated methods use.
    cdef enum rg_op:
        RG_LEAF, RG_CONST, RG_APPLY, RG_POWC, RG_POW, RG_NUM_OPS

    ctypedef struct rg_op_info:
        const char *name
        int arity
        const char *infix

    const rg_op_info RG_OP_INFO[]
    bint rg_is_leaf(int op)
    bint rg_is_reduction(int op)
    double rg_value(int op, double a, double b)
    void rg_partials(int op, double a, double b, double v, double *da, double *db)

cdef extern from "rg_tape.h" nogil:
    ctypedef int32_t rg_index
    ctypedef uint8_t rg_opcode
    ctypedef uint32_t rg_stamp
    enum:
        RG_MAX_NODES
        RG_OK
        RG_ENOMEM
        RG_EOVERFLOW
        RG_BYTES_PER_NODE

    ctypedef struct rg_tape:
        rg_opcode *op
        rg_index *lhs
        rg_index *rhs
        double *value
        double *grad
        rg_stamp *stamp
        rg_index size
        rg_index capacity
        rg_stamp epoch
        rg_index limit

    int rg_tape_reserve(rg_tape *t, int64_t needed)
    void rg_tape_free(rg_tape *t)
    rg_index rg_tape_push(rg_tape *t, int op, rg_index lhs, rg_index rhs, double value)
    rg_index rg_cone(const rg_tape *t, rg_index output, uint8_t *mark, rg_index *cone)
    rg_index rg_forward(rg_tape *t, const rg_index *cone, rg_index pos, rg_index n, rg_stamp epoch)
    rg_index rg_level_order(const rg_tape *t, const rg_index *cone, rg_index n, rg_index *order)
    rg_index rg_first_stale(const rg_tape *t, const rg_index *cone, rg_index n, rg_stamp epoch)
    void rg_reverse_begin(rg_tape *t, const rg_index *cone, rg_index n)
    rg_index rg_reverse(rg_tape *t, const rg_index *cone, rg_index pos, rg_index stop)
    rg_index rg_tangent(const rg_tape *t, const rg_index *cone, rg_index pos, rg_index n,
                        rg_index var, double *tangent)
    rg_index rg_first_nonfinite(const double *x, int64_t width, const rg_index *cone, rg_index n,
                                int descending)
    void rg_reset_stamps(rg_tape *t)
    rg_index rg_cone_runs(const rg_index *cone, const int32_t *at, rg_index n, rg_index *runs)
    bint rg_runs_worth_keeping(rg_index count, rg_index n)

cdef extern from "rg_plan.h" nogil:
    ctypedef struct rg_group:
        int32_t w_ld

    ctypedef struct rg_chain:
        uint8_t squares

    ctypedef struct rg_plan:
        int32_t n_steps, n_uniform, n_chains, n_links, n_reductions, n_groups, n_group_chains
        int32_t n_uniform_steps, n_uniform_runs
        rg_group *groups
        rg_chain *chains
        uint8_t staged

    enum: RG_PLAN_FUSE, RG_PLAN_GEMM

    int rg_plan_build(rg_plan *p, const rg_tape *t, const uint8_t *varying, const rg_index *cone,
                      rg_index n, int flags)
    void rg_plan_free(rg_plan *p)
    size_t rg_plan_bytes(const rg_plan *p, rg_index n)

cdef extern from "rg_batch.h" nogil:
    ctypedef struct rg_batch:
        double *value
        double *grad
        uint8_t *fixed
        uint8_t *varying
        int64_t size
        rg_index rows
        rg_index classified
        int64_t total
        uint8_t streamed
        size_t retained_cap
        size_t chunk_rows_cap
        size_t gemm_work_cap

    ctypedef struct rg_stream_row:
        rg_index node
        double *data

    ctypedef struct rg_stream:
        const rg_stream_row *inputs
        const rg_stream_row *values
        const rg_stream_row *grads
        int32_t n_inputs, n_values, n_grads
        int64_t chunk
        int fill_inner
        int check
        rg_index bad_pos
        int64_t bad_sample
        double bad_value
        int bad_grad
        int64_t chunk_used
        double retain_bytes
        int reuse
        int retained

    enum: RG_ESTAGED

    enum: RG_SWEEP_VARYING, RG_SWEEP_UNIFORM, RG_SWEEP_BOTH

    void rg_batch_free(rg_batch *b)
    int rg_batch_set_streamed(rg_batch *b, int on)
    int rg_stream_batch(rg_tape *t, rg_batch *b, const rg_plan *plan, const rg_index *cone,
                        const uint8_t *first, rg_index n, int threads, rg_stream *st, int reverse)
    int rg_batch_reserve(rg_batch *b, int64_t rows)
    void rg_batch_classify(const rg_tape *t, rg_batch *b, rg_index upto)
    rg_index rg_forward_batch(rg_tape *t, rg_batch *b, const rg_index *cone, rg_index pos,
                              rg_index n, int64_t s0, int64_t s1, int mode)
    void rg_first_reach(const rg_tape *t, const rg_index *cone, rg_index n, uint8_t *mark,
                        uint8_t *first)
    void rg_reverse_begin_batch(rg_batch *b, const rg_index *cone, rg_index n, int64_t s0, int64_t s1,
                                int zero)
    void rg_reverse_begin_uniform(rg_tape *t, const rg_batch *b, const rg_plan *p,
                                  const rg_index *cone, rg_index n)
    rg_index rg_reverse_batch(rg_tape *t, rg_batch *b, const rg_index *cone, const uint8_t *first,
                              rg_index pos, rg_index stop, int64_t s0, int64_t s1,
                              double *uniform_grad, double *scratch, int mode)
    void rg_fill_inner_values(const rg_tape *t, const rg_plan *p, rg_batch *b)
    void rg_fill_inner_grads(const rg_plan *p, rg_batch *b)
    rg_index rg_tangent_batch(const rg_tape *t, const rg_batch *b, const rg_index *cone, rg_index pos,
                              rg_index n, rg_index var, double *tangent, int64_t s0, int64_t s1)
    void rg_fill_uniform_rows(const rg_tape *t, rg_batch *b, const rg_index *cone, rg_index n)
    int rg_forward_batch_all(rg_tape *t, rg_batch *b, const rg_plan *plan, const rg_index *cone,
                             rg_index n, int threads)
    int rg_reverse_batch_all(rg_tape *t, rg_batch *b, const rg_plan *plan, const rg_index *cone,
                             const uint8_t *first, rg_index n, int threads)
    void rg_stamp_cone(rg_tape *t, const rg_index *cone, rg_index n, rg_stamp epoch)
    void rg_stamp_runs(rg_tape *t, const rg_index *runs, rg_index n_runs, rg_stamp epoch)
    ctypedef void (*rg_dgemm_fn)(const char *, const char *, const int *, const int *, const int *,
                                 const double *, const double *, const int *, const double *,
                                 const int *, const double *, double *, const int *)
    void rg_set_dgemm(rg_dgemm_fn f)
    ctypedef int (*rg_blas_threads_fn)(int)
    void rg_set_blas_threads_fn(rg_blas_threads_fn f)
    int rg_have_dgemm()
    rg_index rg_first_nonfinite_batch(const rg_batch *b, const double *rows, const double *scalars,
                                      const rg_index *cone, rg_index n, int descending)

cdef extern from "rg_vmath.h" nogil:
    int rg_set_vector_math(int on)
    int rg_vector_math()
    int rg_vmath_force_level(int level)
