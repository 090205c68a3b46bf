/* rg_ops.h -- the op table: every built-in operation's code, name, arity, value and partial
 * derivatives, written once. The sweeps (rg_tape.c), the Python layer (labels, scalar functions) and
 * the other term kinds all read it from here.
 *
 * Node layout conventions (see rg_tape.h): a binary op reads lhs and rhs; a unary op stores its
 * operand in both lhs and rhs, so the sweeps can load both without a branch. RG_POWC is x ** c with
 * the exponent held by a constant node in rhs: it is not differentiated with respect to rhs.
 *
 * Conventions at kinks and edges (documented in the README):
 *   relu'(0) = 0, abs'(0) = 0;
 *   maximum/minimum propagate NaN like numpy's; on a tie each operand gets half the gradient;
 *   x ** c:  d/dx = 0 when c == 0 (so 0 ** 0 has no NaN gradient);
 *   x ** y:  d/dy = 0 when the value is 0 (so 0 ** y is smooth in y for y > 0).
 *
 * BATCH_SUM and BATCH_MEAN reduce over the samples of a batch (rg.sum, rg.mean): the batched sweeps
 * (rg_batch.c) give them one value for the whole batch. In a scalar sweep (one sample) both are the
 * identity, which is what the table says.
 */
#ifndef RG_OPS_H
#define RG_OPS_H

#include <math.h>
#include <stdint.h>

/* rg_value and rg_partials are inlined into every loop that calls them, with the op a constant, so
 * their switch folds away; left to GCC's size estimate they were not, once the table grew. */
#if defined(__GNUC__)
#define RG_ALWAYS_INLINE static inline __attribute__((always_inline))
#else
#define RG_ALWAYS_INLINE static inline
#endif

/* X(CODE, name, arity, infix): arity counts the differentiated operands (0 for leaves); infix is the
 * operator's symbol when the op is written between (or, for neg, before) its operands, else "".
 * RG_OP_LIST is every op; RG_ELEMENT_OPS those computed sample by sample, whose loops the batched
 * sweeps generate (the reductions have their own code there, and generating their loops too made
 * GCC stop inlining rg_partials into the others). */
#define RG_OP_LIST(X) RG_ELEMENT_OPS(X) RG_REDUCTION_OPS(X)
#define RG_REDUCTION_OPS(X)             \
    X(BATCH_SUM, "batch_sum", 1, "")  \
    X(BATCH_MEAN, "batch_mean", 1, "")
#define RG_ELEMENT_OPS(X)            \
    X(LEAF, "leaf", 0, "")           \
    X(CONST, "const", 0, "")         \
    X(APPLY, "apply", 1, "")         \
    X(NEG, "neg", 1, "-")            \
    X(SIN, "sin", 1, "")             \
    X(COS, "cos", 1, "")             \
    X(TAN, "tan", 1, "")             \
    X(EXP, "exp", 1, "")             \
    X(LOG, "log", 1, "")             \
    X(SQRT, "sqrt", 1, "")           \
    X(TANH, "tanh", 1, "")           \
    X(SIGMOID, "sigmoid", 1, "")     \
    X(RELU, "relu", 1, "")           \
    X(ABS, "abs", 1, "")             \
    X(SQUARE, "square", 1, "")       \
    X(POWC, "powc", 1, "**")         \
    X(ADD, "add", 2, "+")            \
    X(SUB, "sub", 2, "-")            \
    X(MUL, "mul", 2, "*")            \
    X(DIV, "div", 2, "/")            \
    X(POW, "pow", 2, "**")           \
    X(ATAN2, "atan2", 2, "")         \
    X(MAXIMUM, "maximum", 2, "")     \
    X(MINIMUM, "minimum", 2, "")

#define RG_ENUM_ENTRY(code, name, arity, infix) RG_##code,
enum rg_op { RG_OP_LIST(RG_ENUM_ENTRY) RG_NUM_OPS };
#undef RG_ENUM_ENTRY

typedef struct {
    const char *name;
    int arity;
    const char *infix;
} rg_op_info;

#define RG_INFO_ENTRY(code, name, arity, infix) {name, arity, infix},
static const rg_op_info RG_OP_INFO[RG_NUM_OPS] = {RG_OP_LIST(RG_INFO_ENTRY)};
#undef RG_INFO_ENTRY

/* Leaves (variables and constants) hold their value; every other op computes it. */
static inline int rg_is_leaf(int op) { return op <= RG_CONST; }

/* The reductions over a batch's samples. */
static inline int rg_is_reduction(int op) { return op == RG_BATCH_SUM || op == RG_BATCH_MEAN; }

static inline double rg_sigmoid(double a) {
    /* The two branches never overflow exp(). */
    if (a >= 0) return 1.0 / (1.0 + exp(-a));
    double e = exp(a);
    return e / (1.0 + e);
}

/* The value of a computing op from its operand values (b == a for unary ops). */
RG_ALWAYS_INLINE double rg_value(int op, double a, double b) {
    switch (op) {
        case RG_NEG: return -a;
        case RG_SIN: return sin(a);
        case RG_COS: return cos(a);
        case RG_TAN: return tan(a);
        case RG_EXP: return exp(a);
        case RG_LOG: return log(a);
        case RG_SQRT: return sqrt(a);
        case RG_TANH: return tanh(a);
        case RG_SIGMOID: return rg_sigmoid(a);
        case RG_RELU: return a <= 0 ? 0.0 : a; /* NaN stays NaN */
        case RG_ABS: return fabs(a);
        case RG_SQUARE: return a * a;
        case RG_POWC:
        case RG_POW: return pow(a, b);
        case RG_ADD: return a + b;
        case RG_SUB: return a - b;
        case RG_MUL: return a * b;
        case RG_DIV: return a / b;
        case RG_ATAN2: return atan2(a, b);
        case RG_MAXIMUM: return (a != a || b != b) ? a + b : (a > b ? a : b);
        case RG_MINIMUM: return (a != a || b != b) ? a + b : (a < b ? a : b);
        case RG_BATCH_SUM:
        case RG_BATCH_MEAN: return a;
        default: return NAN;
    }
}

/* Sets *da and *db to the partial derivatives of a computing op at operands a, b and value v.
 * For unary ops *db is 0 and must not be propagated (rhs aliases lhs or holds an exponent). */
RG_ALWAYS_INLINE void rg_partials(int op, double a, double b, double v, double *da, double *db) {
    double d = 0.0, e = 0.0;
    switch (op) {
        case RG_NEG: d = -1.0; break;
        case RG_SIN: d = cos(a); break;
        case RG_COS: d = -sin(a); break;
        case RG_TAN: d = 1.0 + v * v; break;
        case RG_EXP: d = v; break;
        case RG_LOG: d = 1.0 / a; break;
        case RG_SQRT: d = 0.5 / v; break;
        case RG_TANH: d = 1.0 - v * v; break;
        case RG_SIGMOID: d = v * (1.0 - v); break;
        case RG_RELU: d = a > 0 ? 1.0 : 0.0; break;
        case RG_ABS: d = a > 0 ? 1.0 : (a < 0 ? -1.0 : 0.0); break;
        case RG_SQUARE: d = 2.0 * a; break;
        case RG_POWC: d = b == 0 ? 0.0 : b * pow(a, b - 1.0); break;
        case RG_ADD: d = 1.0; e = 1.0; break;
        case RG_SUB: d = 1.0; e = -1.0; break;
        case RG_MUL: d = b; e = a; break;
        case RG_DIV: d = 1.0 / b; e = -v / b; break;
        case RG_POW:
            d = b == 0 ? 0.0 : b * pow(a, b - 1.0);
            e = v == 0 ? 0.0 : v * log(a);
            break;
        case RG_ATAN2: {
            double r = a * a + b * b;
            d = b / r;
            e = -a / r;
            break;
        }
        case RG_MAXIMUM:
        case RG_MINIMUM: {
            int a_wins = op == RG_MAXIMUM ? a > b : a < b;
            int b_wins = op == RG_MAXIMUM ? b > a : b < a;
            if (a_wins) d = 1.0;
            else if (b_wins) e = 1.0;
            else if (a == b) d = e = 0.5;
            else if (a != a) d = 1.0; /* NaN: the gradient goes to the NaN operand */
            else e = 1.0;
            break;
        }
        case RG_BATCH_SUM:
        case RG_BATCH_MEAN: d = 1.0; break;
        default: d = e = NAN;
    }
    *da = d;
    *db = e;
}

#endif /* RG_OPS_H */
