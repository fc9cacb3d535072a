// ctest-labels: cpu
/* The GKD + RL gradient estimator is unbiased for the objective it claims. Toy problem small enough to
 * enumerate: sequences of at most 3 tokens over a vocabulary of 4 whose token 3 ends a sequence (lengths
 * 1 to 3), a tabular student (logits per prefix: 1 + 4 + 16 = 21 contexts), a fixed tabular teacher, a
 * reward table. With samples drawn from q_T = softmax(student logits / T), the exact gradients of
 *   J     = sum_y q_T(y) [ (1 - alpha) r(y) - alpha (1/|y|) sum_t KL(P_t || Q_t) ]   (norm = sequence)
 *   J_tok = sum_y q_T(y) [ (1 - alpha) r(y) - alpha        sum_t KL(P_t || Q_t) ]   (norm = token)
 * (Q_t the student at temperature 1, as the divergence term uses it) are computed by enumeration and
 * central differences in double, independently of the C code. The estimator is the trainer's own code
 * path: gkd_pg_weights (baselines, advantages, per-position weights) and gkd_distill_loss_ex (REINFORCE
 * surrogate + differentiable divergence). The token norm's loss is a per-token mean over the batch, i.e.
 * the gradient of J_tok divided by the batch's mean length: multiplied back by it, its mean must match.
 * The mean over many batches must match the exact gradient within 5 standard errors per component.
 * Power checks show each case can fail: the GKD-style variant without the divergence's score-function
 * term, the surrogate at temperature 1 on samples drawn at 0.7 (what the trainer did before), and the
 * sequence weight divided by the output's length must all be detected as biased.
 * Then the advantages' scale: the reward's part is normalised before it is weighted, so the advantages
 * and the surrogate's weights are proportional to (1 - alpha). */
#include "core/tensor/backend.h"
#include "core/base/rng.h"
#include "rl/distill.h"
#include "rl/policy_gradient.h"
#include "tests/check.h"

#include <string.h>

enum { V = 4, EOS = 3, L = 3, CTX = 21, P = V * CTX, CODES = V * V * V };

static double theta[V][CTX], teacher[V][CTX], reward[CODES];

static int context_of(const int *y, int t) { /* prefix y[0..t) -> context id */
    if (t == 0) return 0;
    if (t == 1) return 1 + y[0];
    return 5 + y[0] * 4 + y[1];
}

static int code_of(const int *y, int len) { /* positions after the end count as 0 */
    int c = 0;
    for (int t = 0; t < L; t++) c = c * V + (t < len ? y[t] : 0);
    return c;
}

static void softmax_col(double w[V][CTX], int ctx, double inv_t, double *p) {
    double mx = -1e300, s = 0;
    for (int v = 0; v < V; v++) mx = fmax(mx, w[v][ctx] * inv_t);
    for (int v = 0; v < V; v++) s += exp(w[v][ctx] * inv_t - mx);
    for (int v = 0; v < V; v++) p[v] = exp(w[v][ctx] * inv_t - mx) / s;
}

typedef struct {
    double alpha, temperature;
    gkd_loss_norm norm;
} objective_def;

/* Sums over every sequence that starts with y[0..t) (probability logq so far, divergence sum D). */
static double objective_from(const objective_def *o, int *y, int t, double logq, double D) {
    double q[V], p[V], qs[V];
    int c = context_of(y, t);
    softmax_col(theta, c, 1.0 / o->temperature, qs);
    softmax_col(theta, c, 1.0, q);
    softmax_col(teacher, c, 1.0, p);
    double kl = 0, J = 0;
    for (int v = 0; v < V; v++) kl += p[v] * (log(p[v]) - log(q[v]));
    for (int v = 0; v < V; v++) {
        y[t] = v;
        int len = t + 1;
        if (v == EOS || len == L) {
            double d = o->norm == GKD_NORM_SEQUENCE ? (D + kl) / len : D + kl;
            J += exp(logq + log(qs[v])) * ((1 - o->alpha) * reward[code_of(y, len)] - o->alpha * d);
        } else {
            J += objective_from(o, y, len, logq + log(qs[v]), D + kl);
        }
    }
    return J;
}

static double objective(const objective_def *o) {
    int y[L];
    return objective_from(o, y, 0, 0.0, 0.0);
}

static void exact_gradient(const objective_def *o, double *g) {
    for (int v = 0; v < V; v++)
        for (int c = 0; c < CTX; c++) {
            double keep = theta[v][c], h = 1e-5;
            theta[v][c] = keep + h;
            double jp = objective(o);
            theta[v][c] = keep - h;
            double jm = objective(o);
            theta[v][c] = keep;
            g[v * CTX + c] = (jp - jm) / (2 * h);
        }
}

typedef struct {
    objective_def obj;
    gkd_baseline_kind baseline;
    int score_function;
    float surrogate_temperature; /* what the surrogate is told (the sampling temperature, unless testing) */
    int divide_by_length;        /* power check: sequence weights divided by the output's length */
} estimator_def;

/* Mean and standard error of the estimated gradient of J (or J_tok) over `batches` batches. */
static void estimate(const estimator_def *e, int batches, double *mean, double *se) {
    const gkd_backend *be = gkd_backend_cpu();
    enum { G = 2, K = 4, B = G * K, N = B * L };
    static float hs[N * CTX], Ws[V * CTX], Wt[V * CTX], dWs[V * CTX], mask[N], pgw[N], dhs[N * CTX];
    static int targets[N];
    double sum[P] = {0}, sumsq[P] = {0};
    for (int v = 0; v < V; v++)
        for (int c = 0; c < CTX; c++) {
            Ws[v * CTX + c] = (float)theta[v][c];
            Wt[v * CTX + c] = (float)teacher[v][c];
        }
    gkd_distill_workspace *ws = NULL;
    CHECK(gkd_distill_workspace_create(be, 16, V, CTX, CTX, &ws) == GKD_OK);
    gkd_divergence d;
    gkd_divergence_parse("forward_kl", &d);
    gkd_pg_baselines baselines;
    gkd_pg_baselines_init(&baselines, e->baseline, 0.9);
    gkd_pg_config pc = {
        .alpha = e->obj.alpha, .normalize = 0, .score_function = e->score_function, .norm = e->obj.norm};
    gkd_rng rng;
    gkd_rng_init(&rng, 2024, GKD_RNG_STREAM_USER);
    for (int it = 0; it < batches; it++) {
        double r[B], D[B], adv[B];
        int lens[B], positions = 0;
        memset(hs, 0, sizeof hs);
        memset(mask, 0, sizeof mask);
        memset(targets, 0, sizeof targets);
        for (int b = 0; b < B; b++) {
            int y[L], len = 0;
            for (int t = 0; t < L; t++) {
                double q[V];
                int c = context_of(y, t);
                softmax_col(theta, c, 1.0 / e->obj.temperature, q);
                double u = gkd_rng_uniform(&rng), acc = 0;
                y[t] = V - 1;
                for (int v = 0; v < V; v++) {
                    acc += q[v];
                    if (u <= acc) {
                        y[t] = v;
                        break;
                    }
                }
                hs[(b * L + t) * CTX + c] = 1.0f;
                targets[b * L + t] = y[t];
                mask[b * L + t] = 1.0f;
                len = t + 1;
                if (y[t] == EOS) break;
            }
            lens[b] = len;
            positions += len;
            r[b] = reward[code_of(y, len)];
        }
        gkd_distill_stats st;
        gkd_distill_extra probe = {.div_scale = 1.0f, .row_values = D};
        CHECK(gkd_distill_loss_ex(ws, &d, e->obj.norm, hs, Ws, hs, Wt, mask, B, L, 1.0f, &probe, NULL, NULL,
                                  &st) == GKD_OK);
        CHECK(gkd_pg_weights(&baselines, &pc, r, D, mask, G, K, L, adv, NULL, pgw) == GKD_OK);
        if (e->divide_by_length)
            for (int i = 0; i < N; i++) pgw[i] /= (float)lens[i / L];
        gkd_distill_extra ex = {.div_scale = (float)e->obj.alpha,
                                .targets = targets,
                                .pg_weight = pgw,
                                .pg_temperature = e->surrogate_temperature};
        memset(dWs, 0, sizeof dWs);
        CHECK(gkd_distill_loss_ex(ws, &d, e->obj.norm, hs, Ws, hs, Wt, mask, B, L, 1.0f, &ex, dhs, dWs,
                                  &st) == GKD_OK);
        /* the loss is -J (token norm: -J_tok / mean length): its gradient estimates -grad J */
        double unscale = e->obj.norm == GKD_NORM_TOKEN ? (double)positions / B : 1.0;
        for (int i = 0; i < P; i++) {
            double g = -(double)dWs[i] * unscale;
            sum[i] += g;
            sumsq[i] += g * g;
        }
    }
    for (int i = 0; i < P; i++) {
        mean[i] = sum[i] / batches;
        double var = sumsq[i] / batches - mean[i] * mean[i];
        se[i] = sqrt(fmax(var, 0) / batches);
    }
    gkd_distill_workspace_free(ws);
}

/* Largest |mean - exact| / se over the components (se floored so exact zeros do not divide by zero). */
static double worst_z(const double *mean, const double *se, const double *exact) {
    double z = 0;
    for (int i = 0; i < P; i++) z = fmax(z, fabs(mean[i] - exact[i]) / fmax(se[i], 1e-6));
    return z;
}

static double deviation(const estimator_def *e, int batches) {
    static double exact[P], mean[P], se[P];
    exact_gradient(&e->obj, exact);
    estimate(e, batches, mean, se);
    return worst_z(mean, se, exact);
}

/* Advantages and weights of one fixed batch at each alpha are (1 - alpha) times those at alpha 0, whatever
 * the normalisation, baseline and norm; with the divergence's score-function term the reward's part is. */
static void check_alpha_scaling(void) {
    enum { G = 3, K = 4, B = G * K, T = 5 };
    double r[B], div[B], zero[B] = {0};
    float mask[B * T];
    gkd_rng rng;
    gkd_rng_init(&rng, 9, GKD_RNG_STREAM_USER);
    for (int b = 0; b < B; b++) {
        r[b] = 0.02 * gkd_rng_uniform(&rng); /* a reward of a few hundredths, as the factual reward gives */
        div[b] = 1.0 + gkd_rng_uniform(&rng);
        int len = 1 + b % T;
        for (int t = 0; t < T; t++) mask[b * T + t] = t < len ? 1.0f : 0.0f;
    }
    const double alphas[] = {0.0, 0.5, 0.99, 0.999};
    for (int norm = 0; norm < 2; norm++)
        for (int kind = 0; kind < 3; kind++)
            for (int normalize = 0; normalize < 2; normalize++)
                for (int sf = 0; sf < 2; sf++) {
                    double adv0[B], adv[B], adv_div[B];
                    float w0[B * T], w[B * T];
                    for (int k = 0; k < 4; k++) {
                        gkd_pg_baselines bl;
                        gkd_pg_baselines_init(&bl, (gkd_baseline_kind)kind, 0.9);
                        gkd_pg_config pc = {.alpha = alphas[k],
                                            .normalize = normalize,
                                            .score_function = sf,
                                            .norm = (gkd_loss_norm)norm};
                        /* two batches, so that a moving average is in use in the second */
                        CHECK(gkd_pg_weights(&bl, &pc, r, div, mask, G, K, T, adv, NULL, w) == GKD_OK);
                        CHECK(gkd_pg_weights(&bl, &pc, r, div, mask, G, K, T, adv, NULL, w) == GKD_OK);
                        if (sf) { /* the divergence's part alone: the same call with a zero reward */
                            gkd_pg_baselines_init(&bl, (gkd_baseline_kind)kind, 0.9);
                            float wd[B * T];
                            CHECK(gkd_pg_weights(&bl, &pc, zero, div, mask, G, K, T, adv_div, NULL, wd) ==
                                  GKD_OK);
                            CHECK(gkd_pg_weights(&bl, &pc, zero, div, mask, G, K, T, adv_div, NULL, wd) ==
                                  GKD_OK);
                            for (int b = 0; b < B; b++) adv[b] -= adv_div[b];
                        }
                        if (k == 0) {
                            memcpy(adv0, adv, sizeof adv);
                            memcpy(w0, w, sizeof w);
                            double sd = 0;
                            for (int b = 0; b < B; b++) sd += adv0[b] * adv0[b];
                            CHECKF(sd > 0, "all advantages are 0 (norm %d, baseline %d)", norm, kind);
                            continue;
                        }
                        double worst = 0, scale = 1.0 - alphas[k];
                        for (int b = 0; b < B; b++)
                            worst =
                                fmax(worst, fabs(adv[b] - scale * adv0[b]) / (fabs(scale * adv0[b]) + 1e-15));
                        CHECKF(
                            worst < 1e-9,
                            "alpha %g (norm %d, baseline %d, normalize %d, score function %d): the reward's "
                            "advantages are not (1 - alpha) times those at alpha 0 (relative error %.3g)",
                            alphas[k], norm, kind, normalize, sf, worst);
                        if (sf) continue;
                        for (int i = 0; i < B * T; i++)
                            worst = fmax(worst, fabs(w[i] - scale * w0[i]) / (fabs(scale * w0[i]) + 1e-30));
                        CHECKF(worst < 1e-5,
                               "alpha %g: the surrogate's weights do not scale with 1 - alpha (%.3g)",
                               alphas[k], worst);
                    }
                }
    /* The weights: A / B per output position (sequence), A / output positions in the batch (token). */
    gkd_pg_baselines bl;
    gkd_pg_baselines_init(&bl, GKD_BASELINE_NONE, 0.9);
    double adv[B];
    float w[B * T];
    int positions = 0;
    for (int i = 0; i < B * T; i++) positions += mask[i] != 0.0f;
    for (int norm = 0; norm < 2; norm++) {
        gkd_pg_config pc = {.alpha = 0.25, .norm = (gkd_loss_norm)norm};
        CHECK(gkd_pg_weights(&bl, &pc, r, div, mask, G, K, T, adv, NULL, w) == GKD_OK);
        for (int i = 0; i < B * T; i++) {
            double want = mask[i] != 0.0f ? 0.75 * r[i / T] / (norm == GKD_NORM_TOKEN ? positions : B) : 0.0;
            CHECKF(fabs(w[i] - want) <= 1e-6 * fabs(want), "norm %d, position %d: weight %g, want %g", norm,
                   i, w[i], want);
        }
    }
}

int main(void) {
    gkd_rng rng;
    gkd_rng_init(&rng, 5, GKD_RNG_STREAM_USER);
    for (int v = 0; v < V; v++)
        for (int c = 0; c < CTX; c++) {
            theta[v][c] = 0.8 * gkd_rng_normal(&rng);
            teacher[v][c] = 1.5 * gkd_rng_normal(&rng);
        }
    for (int i = 0; i < CODES; i++) reward[i] = gkd_rng_uniform(&rng) * 2.0 - 0.5;
    const int batches = 6000;
    const objective_def seq0 = {0.0, 1.0, GKD_NORM_SEQUENCE}, seq = {0.5, 1.0, GKD_NORM_SEQUENCE},
                        tok = {0.5, 1.0, GKD_NORM_TOKEN}, warm = {0.5, 0.7, GKD_NORM_SEQUENCE},
                        warm_tok = {0.5, 0.7, GKD_NORM_TOKEN};
    struct {
        const char *what;
        estimator_def e;
        int biased;
    } cases[] = {
        {"alpha 0, group baseline", {seq0, GKD_BASELINE_GROUP, 1, 1.0f, 0}, 0},
        {"alpha 0.5, group baseline", {seq, GKD_BASELINE_GROUP, 1, 1.0f, 0}, 0},
        {"alpha 0.5, moving-average baseline", {seq, GKD_BASELINE_MOVING_AVERAGE, 1, 1.0f, 0}, 0},
        {"alpha 0.5, norm = token", {tok, GKD_BASELINE_GROUP, 1, 1.0f, 0}, 0},
        {"alpha 0.5, norm = token, moving average", {tok, GKD_BASELINE_MOVING_AVERAGE, 1, 1.0f, 0}, 0},
        {"alpha 0.5, sampled at temperature 0.7", {warm, GKD_BASELINE_GROUP, 1, 0.7f, 0}, 0},
        {"alpha 0.5, temperature 0.7, norm = token", {warm_tok, GKD_BASELINE_GROUP, 1, 0.7f, 0}, 0},
        /* Without the divergence's score-function term the estimator is the GKD convention (no gradient
         * through sampling): biased for J, and the test sees it. */
        {"no score-function term", {seq, GKD_BASELINE_GROUP, 0, 1.0f, 0}, 1},
        {"surrogate at temperature 1, samples at 0.7", {warm, GKD_BASELINE_GROUP, 1, 1.0f, 0}, 1},
        {"sequence weight divided by the length", {seq0, GKD_BASELINE_GROUP, 1, 1.0f, 1}, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        double z = deviation(&cases[i].e, batches);
        if (cases[i].biased)
            CHECKF(z > 8.0, "%s: the bias was not detected (worst deviation %.2f standard errors)",
                   cases[i].what, z);
        else
            CHECKF(z < 5.0, "%s: worst deviation %.2f standard errors", cases[i].what, z);
        fprintf(stderr, "%-45s worst deviation %5.1f standard errors%s\n", cases[i].what, z,
                cases[i].biased ? " (biased on purpose)" : "");
    }
    check_alpha_scaling();
    return check_exit();
}
