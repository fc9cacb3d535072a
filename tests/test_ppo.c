// ctest-labels: cpu
/* The PPO / GRPO estimators (rl/ppo.h) against exact computations on spaces small enough to enumerate:
 * sequences of length L = 2 over a vocabulary of V = 3 (9 outcomes), drawn from a tabular softmax
 * policy with one logit row per prefix (1 + 3 = 4 contexts). Each part checks a claim of ppo.h:
 * 1. At the rollout policy (ratio 1) with one epoch and one mini-batch, PPO's gradient is REINFORCE's
 *    (gkd_pg_weights) on the same samples and advantages, for both of its norms (acceptance 1). Power
 *    check: GRPO's per-sequence mean differs from it when lengths differ.
 * 2. The clipped surrogate's expectation over all 9 outcomes, against a direct min(rho A, clip A) in
 *    this file; its gradient against central differences wrt the new policy's logits; approx KL's
 *    expectation is exactly KL(old || new) of the sequence distributions.
 * 3. GRPO and Dr. GRPO advantages and the loss aggregations against values written out here; so are
 *    approx KL (k3, not k1), whitening, the critic-free advantage, GAE(gamma, lambda), the early stop.
 * 4. k1 and k3 are unbiased for KL(q || p) (k2 is not); as losses, k2's gradient is grad KL(q||p),
 *    k3's is grad KL(p||q), k1's is 0 (exact enumeration over a 5-way categorical).
 * 5. The dense reverse-KL reward with the reward-to-go: its score-function gradient equals
 *    -grad KL(q(y) || p_T(y)) exactly in expectation (acceptance 4). Power check: the per-token reward
 *    without the reward-to-go is detected as biased.
 * 6. Training: PPO (4 epochs, 2 mini-batches, clip 0.2) and GRPO / Dr. GRPO (G = 16) on a bandit with
 *    a k1 reference-KL penalty (beta) reach, within STEPS steps, the expected reward of the KL-regularised
 *    optimum q* ~ p_ref exp(R / beta) to within 0.03, and KL(q || p_ref) never exceeds its target
 *    (KL(q*) + 0.2 nats) (acceptance 2). */
#include "core/base/rng.h"
#include "rl/policy_gradient.h"
#include "rl/ppo.h"
#include "tests/check.h"

#include <string.h>

enum { V = 3, L = 2, CTX = 1 + V, NY = V * V };

typedef double table[CTX][V];

static int ctx_of(const int *y, int t) {
    return t == 0 ? 0 : 1 + y[0];
}

static void decode(int code, int *y) {
    y[0] = code / V;
    y[1] = code % V;
}

static double logprob(const table th, int c, int v) {
    double mx = -1e300, s = 0;
    for (int k = 0; k < V; k++) mx = fmax(mx, th[c][k]);
    for (int k = 0; k < V; k++) s += exp(th[c][k] - mx);
    return th[c][v] - mx - log(s);
}

static double seq_logprob(const table th, const int *y) {
    return logprob(th, ctx_of(y, 0), y[0]) + logprob(th, ctx_of(y, 1), y[1]);
}

/* dth += w * grad_theta log q(y_t | ctx): the softmax's score (onehot - q) in the context's row. */
static void add_score(const table th, const int *y, int t, double w, table dth) {
    int c = ctx_of(y, t);
    for (int k = 0; k < V; k++) dth[c][k] += w * ((k == y[t]) - exp(logprob(th, c, k)));
}

static void random_table(gkd_rng *rng, double scale, table th) {
    for (int c = 0; c < CTX; c++)
        for (int k = 0; k < V; k++) th[c][k] = scale * gkd_rng_normal(rng);
}

static double max_abs_diff(const double *a, const double *b, int n) {
    double m = 0;
    for (int i = 0; i < n; i++) m = fmax(m, fabs(a[i] - b[i]));
    return m;
}

/* Central differences of f over every logit of th. */
static void numeric_gradient(double (*f)(const table), table th, table g) {
    double *x = &th[0][0], *out = &g[0][0];
    for (int i = 0; i < CTX * V; i++) {
        double keep = x[i], h = 1e-5, fp, fm;
        x[i] = keep + h, fp = f(th);
        x[i] = keep - h, fm = f(th);
        x[i] = keep;
        out[i] = (fp - fm) / (2 * h);
    }
}

/* ---- 1. PPO at ratio 1 = REINFORCE ---- */
static void check_ppo_is_reinforce(gkd_rng *rng) {
    enum { G = 2, K = 3, B = G * K, T = 4, N = B * T };
    double rewards[B], zero[B] = {0}, adv[B], logp[N], adv_tok[N], loss[N], dlogp[N];
    float mask[N], pgw[N], w[N];
    for (int b = 0; b < B; b++) {
        rewards[b] = gkd_rng_normal(rng);
        for (int t = 0; t < T; t++) mask[b * T + t] = t <= b % T; /* lengths 1 to 4 */
    }
    for (int i = 0; i < N; i++) logp[i] = -1.0 - gkd_rng_uniform(rng);
    const gkd_loss_norm norms[2] = {GKD_NORM_SEQUENCE, GKD_NORM_TOKEN};
    const gkd_rl_agg aggs[2] = {GKD_RL_AGG_CONSTANT, GKD_RL_AGG_TOKEN_MEAN};
    for (int v = 0; v < 2; v++) {
        gkd_pg_baselines bl;
        gkd_pg_baselines_init(&bl, GKD_BASELINE_GROUP, 0.9);
        gkd_pg_config pc = {.alpha = 0.0, .normalize = 1, .score_function = 1, .norm = norms[v]};
        CHECK(gkd_pg_weights(&bl, &pc, rewards, zero, mask, G, K, T, adv, NULL, pgw) == GKD_OK);
        for (int i = 0; i < N; i++) adv_tok[i] = adv[i / T];
        gkd_ppo_stats st;
        CHECK(gkd_ppo_clip_loss(logp, logp, adv_tok, mask, N, 0.2, loss, dlogp, &st) == GKD_OK);
        CHECK(gkd_rl_token_weights(mask, B, T, aggs[v], 1.0, w) == GKD_OK);
        double worst = 0;
        for (int i = 0; i < N; i++) worst = fmax(worst, fabs(w[i] * dlogp[i] - (-pgw[i])));
        CHECKF(worst < 1e-6, "norm %d: PPO vs REINFORCE weight differs by %g", v, worst);
        CHECK(st.clip_fraction == 0.0 && fabs(st.ratio_mean - 1.0) < 1e-12 && fabs(st.approx_kl) < 1e-12);
        if (v == 0) { /* power: GRPO's per-sequence mean divides by each length, so it must differ */
            CHECK(gkd_rl_token_weights(mask, B, T, GKD_RL_AGG_SEQUENCE_MEAN, 1.0, w) == GKD_OK);
            worst = 0;
            for (int i = 0; i < N; i++) worst = fmax(worst, fabs(w[i] * dlogp[i] + pgw[i]));
            CHECKF(worst > 1e-3, "per-sequence mean not told apart from REINFORCE (%g)", worst);
        }
    }
}

/* ---- 2. the clipped surrogate by enumeration ---- */
static table old_th;
static double seq_adv[NY];
static const double EPS = 0.2;

/* The test's own E_{y~old}[sum_t -min(rho_t A, clip(rho_t) A)], written from the PPO paper. */
static double direct_clip_objective(const table th) {
    double J = 0;
    for (int code = 0; code < NY; code++) {
        int y[L];
        decode(code, y);
        double s = 0;
        for (int t = 0; t < L; t++) {
            int c = ctx_of(y, t);
            double rho = exp(logprob(th, c, y[t]) - logprob(old_th, c, y[t]));
            double rc = fmin(fmax(rho, 1 - EPS), 1 + EPS);
            s += -fmin(rho * seq_adv[code], rc * seq_adv[code]);
        }
        J += exp(seq_logprob(old_th, y)) * s;
    }
    return J;
}

static void check_clip_enumeration(gkd_rng *rng) {
    table new_th, grad = {{0}}, numeric;
    random_table(rng, 1.0, old_th);
    for (int c = 0; c < CTX; c++)
        for (int k = 0; k < V; k++) new_th[c][k] = old_th[c][k] + gkd_rng_normal(rng);
    for (int code = 0; code < NY; code++) seq_adv[code] = gkd_rng_normal(rng);
    double J = 0, clipfrac = 0, approx_kl = 0, exact_kl = 0;
    for (int code = 0; code < NY; code++) {
        int y[L];
        decode(code, y);
        double ln[L], lo[L], a[L] = {seq_adv[code], seq_adv[code]}, loss[L], d[L], qo;
        for (int t = 0; t < L; t++) {
            ln[t] = logprob(new_th, ctx_of(y, t), y[t]);
            lo[t] = logprob(old_th, ctx_of(y, t), y[t]);
        }
        gkd_ppo_stats st;
        CHECK(gkd_ppo_clip_loss(ln, lo, a, NULL, L, EPS, loss, d, &st) == GKD_OK);
        qo = exp(seq_logprob(old_th, y));
        J += qo * (loss[0] + loss[1]);
        clipfrac += qo * st.clip_fraction;
        approx_kl += qo * L * st.approx_kl;
        exact_kl += qo * (seq_logprob(old_th, y) - seq_logprob(new_th, y));
        for (int t = 0; t < L; t++) add_score(new_th, y, t, qo * d[t], grad);
    }
    double direct = direct_clip_objective(new_th);
    CHECKF(fabs(J - direct) < 1e-12, "clipped objective %.15g vs direct %.15g", J, direct);
    CHECKF(clipfrac > 0.01 && clipfrac < 0.99, "both branches of the min must occur: %g", clipfrac);
    CHECKF(fabs(approx_kl - exact_kl) < 1e-12, "E[approx kl] %.15g vs KL(old||new) %.15g", approx_kl,
           exact_kl);
    numeric_gradient(direct_clip_objective, new_th, numeric);
    double err = max_abs_diff(&grad[0][0], &numeric[0][0], CTX * V);
    CHECKF(err < 1e-7, "clipped surrogate gradient vs central differences: %g", err);
}

/* ---- 3. GRPO advantages and aggregations ---- */
static void check_grpo(void) {
    const double r[8] = {1, 0, 0, 1, 3, 1, 2, 2}, eps = 1e-4;
    double a[8], expect[8];
    /* group 1: mean 1/2, sample std sqrt(1/3); group 2: mean 2, sample std sqrt(2/3) */
    const double s1 = sqrt(1.0 / 3.0), s2 = sqrt(2.0 / 3.0);
    const double centred[8] = {0.5, -0.5, -0.5, 0.5, 1, -1, 0, 0};
    CHECK(gkd_grpo_advantages(r, 2, 4, 1, eps, a) == GKD_OK);
    for (int i = 0; i < 8; i++) expect[i] = centred[i] / ((i < 4 ? s1 : s2) + eps);
    CHECKF(max_abs_diff(a, expect, 8) < 1e-12, "grpo advantages off by %g", max_abs_diff(a, expect, 8));
    CHECK(gkd_grpo_advantages(r, 2, 4, 0, eps, a) == GKD_OK);
    CHECKF(max_abs_diff(a, centred, 8) < 1e-12, "dr grpo advantages off by %g", max_abs_diff(a, centred, 8));
    const double same[3] = {0.7, 0.7, 0.7};
    CHECK(gkd_grpo_advantages(same, 1, 3, 1, eps, a) == GKD_OK);
    CHECK(fabs(a[0]) < 1e-9 && fabs(a[1]) < 1e-9 && fabs(a[2]) < 1e-9); /* no std: no spread */
    CHECK(gkd_grpo_advantages(r, 8, 1, 1, eps, a) == GKD_ERR_ARG);
    /* rows of lengths 1 and 3 out of T = 4 */
    const float mask[8] = {1, 0, 0, 0, 1, 1, 1, 0};
    float w[8];
    CHECK(gkd_rl_token_weights(mask, 2, 4, GKD_RL_AGG_SEQUENCE_MEAN, 0, w) == GKD_OK);
    CHECK(fabsf(w[0] - 0.5f) < 1e-7f && fabsf(w[4] - 1.0f / 6) < 1e-7f && w[1] == 0 && w[7] == 0);
    CHECK(gkd_rl_token_weights(mask, 2, 4, GKD_RL_AGG_TOKEN_MEAN, 0, w) == GKD_OK);
    CHECK(fabsf(w[0] - 0.25f) < 1e-7f && fabsf(w[5] - 0.25f) < 1e-7f);
    CHECK(gkd_rl_token_weights(mask, 2, 4, GKD_RL_AGG_CONSTANT, 4, w) == GKD_OK);
    CHECK(fabsf(w[0] - 0.125f) < 1e-7f && fabsf(w[6] - 0.125f) < 1e-7f && w[3] == 0);
    CHECK(gkd_rl_token_weights(mask, 2, 4, GKD_RL_AGG_CONSTANT, 0, w) == GKD_ERR_ARG);
}

/* ---- 3b. the small pieces, against values written out here ---- */
static void check_small_pieces(void) {
    const double ln = -1.0, lo = -2.0, a = 1.0; /* rho = e: k3 = e - 1 - 1, a value k1 (-1) cannot give */
    double loss, d;
    gkd_ppo_stats st;
    CHECK(gkd_ppo_clip_loss(&ln, &lo, &a, NULL, 1, 0.2, &loss, &d, &st) == GKD_OK);
    CHECK(fabs(st.approx_kl - (exp(1.0) - 2.0)) < 1e-12 && st.clip_fraction == 1.0 && d == 0.0);
    CHECK(fabs(loss + 1.2) < 1e-12 && fabs(st.ratio_mean - exp(1.0)) < 1e-12);
    CHECK(gkd_ppo_clip_loss(&ln, &lo, &a, NULL, 1, 0.0, &loss, &d, &st) == GKD_OK); /* eps 0: no clip */
    CHECK(fabs(d + exp(1.0)) < 1e-12 && st.clip_fraction == 0.0);
    double x[5] = {1, 2, 3, 4, 100}, sd = sqrt(5.0 / 3.0);
    const float m[5] = {1, 1, 1, 1, 0};
    gkd_rl_whiten(x, m, 5, 1);
    CHECK(fabs(x[0] + 1.5 / sd) < 1e-12 && fabs(x[3] - 1.5 / sd) < 1e-12 && x[4] == 100);
    double y[4] = {1, 2, 3, 4};
    gkd_rl_whiten(y, NULL, 4, 0);
    CHECK(fabs(y[0] - (2.5 - 1.5 / sd)) < 1e-12);
    /* critic-free: row returns 3, 1 (T = 2; the second row's second token is off the mask) */
    const double r[4] = {1, 2, 1, 50};
    const float mk[4] = {1, 1, 1, 0};
    double adv[4];
    CHECK(gkd_rl_sequence_advantages(r, mk, 2, 2, adv) == GKD_OK);
    CHECK(fabs(adv[0] - 1 / sqrt(2.0)) < 1e-12 && fabs(adv[1] - 1 / sqrt(2.0)) < 1e-12);
    CHECK(fabs(adv[2] + 1 / sqrt(2.0)) < 1e-12 && adv[3] == 0.0);
    /* GAE on one row of 3: rewards (0, 0, 1), values (0.5, 0.6, 0.7), gamma 0.9, lambda 0.8 */
    const double rw[3] = {0, 0, 1}, val[3] = {0.5, 0.6, 0.7};
    double ga[3], ret[3];
    const double d2 = 1 - 0.7, d1 = 0.9 * 0.7 - 0.6, d0 = 0.9 * 0.6 - 0.5;
    const double a2 = d2, a1 = d1 + 0.72 * a2, a0 = d0 + 0.72 * a1;
    CHECK(gkd_rl_gae(rw, val, NULL, 1, 3, 0.9, 0.8, ga, ret) == GKD_OK);
    CHECK(fabs(ga[0] - a0) < 1e-12 && fabs(ga[1] - a1) < 1e-12 && fabs(ga[2] - a2) < 1e-12);
    CHECK(fabs(ret[0] - (a0 + 0.5)) < 1e-12);
    CHECK(gkd_ppo_should_stop(0.08, 0.05, 1.5) && !gkd_ppo_should_stop(0.07, 0.05, 1.5));
    CHECK(!gkd_ppo_should_stop(10.0, 0.0, 1.5));
}

/* ---- 4. k1, k2, k3 ---- */
enum { C5 = 5 };
static double cat_p[C5];

static void softmax5(const double *th, double *q) {
    double s = 0;
    for (int k = 0; k < C5; k++) s += exp(th[k]);
    for (int k = 0; k < C5; k++) q[k] = exp(th[k]) / s;
}

static double kl(const double *a, const double *b) { /* KL(a || b) */
    double s = 0;
    for (int k = 0; k < C5; k++) s += a[k] * log(a[k] / b[k]);
    return s;
}

static void check_kl_estimators(gkd_rng *rng) {
    double th[C5], q[C5], lq[C5], lp[C5], est[4][C5], d[4][C5];
    for (int k = 0; k < C5; k++) th[k] = gkd_rng_normal(rng), lp[k] = gkd_rng_normal(rng);
    softmax5(lp, cat_p);
    softmax5(th, q);
    for (int k = 0; k < C5; k++) lq[k] = log(q[k]), lp[k] = log(cat_p[k]);
    for (int e = 1; e <= 3; e++)
        CHECK(gkd_kl_estimate((gkd_kl_estimator)e, lq, lp, NULL, C5, est[e], d[e]) == GKD_OK);
    CHECK(gkd_kl_estimate((gkd_kl_estimator)4, lq, lp, NULL, C5, est[1], d[1]) == GKD_ERR_ARG);
    CHECK(gkd_kl_estimate(GKD_KL_K1, lq, lp, NULL, C5, est[1], d[1]) == GKD_OK);
    double mean[4] = {0}, g[4][C5] = {{0}}, exact = kl(q, cat_p);
    for (int e = 1; e <= 3; e++)
        for (int x = 0; x < C5; x++) {
            mean[e] += q[x] * est[e][x];
            for (int k = 0; k < C5; k++) g[e][k] += q[x] * d[e][x] * ((k == x) - q[k]); /* pathwise */
        }
    CHECKF(fabs(mean[1] - exact) < 1e-12, "k1 biased: %g vs %g", mean[1], exact);
    CHECKF(fabs(mean[3] - exact) < 1e-12, "k3 biased: %g vs %g", mean[3], exact);
    CHECKF(fabs(mean[2] - exact) > 1e-4, "k2 should be biased here: %g vs %g", mean[2], exact);
    double rev[C5], fwd[C5];
    for (int k = 0; k < C5; k++) { /* central differences of KL(q||p) and KL(p||q) in the logits */
        double keep = th[k], h = 1e-5, a[C5], b[C5];
        th[k] = keep + h, softmax5(th, a);
        th[k] = keep - h, softmax5(th, b);
        th[k] = keep;
        rev[k] = (kl(a, cat_p) - kl(b, cat_p)) / (2 * h);
        fwd[k] = (kl(cat_p, a) - kl(cat_p, b)) / (2 * h);
    }
    double zero[C5] = {0};
    CHECKF(max_abs_diff(g[1], zero, C5) < 1e-12, "k1 as a loss has zero expected gradient");
    CHECKF(max_abs_diff(g[2], rev, C5) < 1e-8, "k2 loss gradient vs grad KL(q||p): %g",
           max_abs_diff(g[2], rev, C5));
    CHECKF(max_abs_diff(g[3], fwd, C5) < 1e-8, "k3 loss gradient vs grad KL(p||q): %g",
           max_abs_diff(g[3], fwd, C5));
    for (int x = 0; x < C5; x++) { /* dlogq against differences of the estimate itself */
        for (int e = 1; e <= 3; e++) {
            double h = 1e-6, a = lq[x] + h, b = lq[x] - h, va, vb;
            CHECK(gkd_kl_estimate((gkd_kl_estimator)e, &a, &lp[x], NULL, 1, &va, NULL) == GKD_OK);
            CHECK(gkd_kl_estimate((gkd_kl_estimator)e, &b, &lp[x], NULL, 1, &vb, NULL) == GKD_OK);
            CHECKF(fabs((va - vb) / (2 * h) - d[e][x]) < 1e-6, "k%d dlogq at %d", e, x);
        }
    }
    double rw[C5] = {1, 1, 1, 1, 1};
    const float m5[C5] = {1, 0, 1, 1, 1};
    gkd_rl_kl_penalty(rw, est[3], m5, C5, 0.5);
    CHECK(rw[1] == 1.0 && fabs(rw[0] - (1 - 0.5 * est[3][0])) < 1e-15);
}

/* ---- 5. dense reverse-KL reward = reverse-KL gradient (acceptance 4) ---- */
static table student, teacher;

static double sequence_reverse_kl(const table th) { /* KL(q(y) || p_T(y)) over the 9 sequences */
    double s = 0;
    for (int code = 0; code < NY; code++) {
        int y[L];
        decode(code, y);
        s += exp(seq_logprob(th, y)) * (seq_logprob(th, y) - seq_logprob(teacher, y));
    }
    return s;
}

static double gkd_reverse_kl(const table th) { /* E_{y~q} sum_t KL(q(.|y<t) || p(.|y<t)) */
    double s = 0;
    for (int y0 = 0; y0 < V; y0++) { /* t = 0 is weighted once, each t = 1 context by q(y0) */
        int y[L] = {y0, 0};
        double w = exp(logprob(th, 0, y0));
        for (int k = 0; k < V; k++) {
            double lq = logprob(th, ctx_of(y, 1), k);
            s += w * exp(lq) * (lq - logprob(teacher, ctx_of(y, 1), k));
        }
        s += exp(logprob(th, 0, y0)) * (logprob(th, 0, y0) - logprob(teacher, 0, y0));
    }
    return s;
}

static void dense_reward_gradient(int reward_to_go, table g) {
    memset(g, 0, sizeof(table));
    const double zero[L] = {0};
    for (int code = 0; code < NY; code++) {
        int y[L];
        decode(code, y);
        double lq[L], lp[L], r[L], adv[L];
        for (int t = 0; t < L; t++) {
            lq[t] = logprob(student, ctx_of(y, t), y[t]);
            lp[t] = logprob(teacher, ctx_of(y, t), y[t]);
        }
        gkd_rl_reverse_kl_reward(lq, lp, NULL, L, r);
        if (reward_to_go)
            CHECK(gkd_rl_gae(r, zero, NULL, 1, L, 1.0, 1.0, adv, NULL) == GKD_OK);
        else
            memcpy(adv, r, sizeof adv);
        for (int t = 0; t < L; t++) add_score(student, y, t, exp(seq_logprob(student, y)) * adv[t], g);
    }
}

static void check_dense_reverse_kl(gkd_rng *rng) {
    table est, truth, biased;
    random_table(rng, 1.0, student);
    random_table(rng, 1.0, teacher);
    double a = sequence_reverse_kl(student), b = gkd_reverse_kl(student);
    CHECKF(fabs(a - b) < 1e-12, "sequence KL %.15g vs GKD per-token KL %.15g", a, b);
    dense_reward_gradient(1, est);
    numeric_gradient(sequence_reverse_kl, student, truth);
    for (int c = 0; c < CTX; c++)
        for (int k = 0; k < V; k++) truth[c][k] = -truth[c][k]; /* the reward is the negated KL */
    double err = max_abs_diff(&est[0][0], &truth[0][0], CTX * V);
    CHECKF(err < 1e-8, "dense reward gradient vs -grad reverse KL: %g", err);
    dense_reward_gradient(0, biased);
    err = max_abs_diff(&biased[0][0], &truth[0][0], CTX * V);
    CHECKF(err > 1e-3, "per-token reward without reward-to-go not told apart (%g)", err);
}

/* ---- 6. training on a bandit ---- */
enum { STEPS = 150, NB = 64, GROUP = 16 };
static table ref_th;
static double bandit_r[NY] = {0.1, 0.3, 0.0, 0.5, 1.0, 0.2, 0.0, 0.4, 0.6}; /* optimum: y = (1,1) */
static const double BETA = 0.1;

static void exact_reward_kl(const table th, double *er, double *kl_ref) {
    *er = *kl_ref = 0;
    for (int code = 0; code < NY; code++) {
        int y[L];
        decode(code, y);
        double lq = seq_logprob(th, y);
        *er += exp(lq) * bandit_r[code];
        *kl_ref += exp(lq) * (lq - seq_logprob(ref_th, y));
    }
}

static void optimum(double *er, double *kl_ref) { /* q* ~ p_ref exp(R / beta) */
    double z = 0, w[NY];
    for (int code = 0; code < NY; code++) {
        int y[L];
        decode(code, y);
        z += w[code] = exp(seq_logprob(ref_th, y) + bandit_r[code] / BETA);
    }
    *er = *kl_ref = 0;
    for (int code = 0; code < NY; code++) {
        int y[L];
        decode(code, y);
        double q = w[code] / z;
        *er += q * bandit_r[code];
        *kl_ref += q * (log(q) - seq_logprob(ref_th, y));
    }
}

static void sample(gkd_rng *rng, const table th, int *y) {
    for (int t = 0; t < L; t++) {
        double u = gkd_rng_uniform(rng), acc = 0;
        y[t] = V - 1;
        for (int k = 0; k < V; k++) {
            acc += exp(logprob(th, ctx_of(y, t), k));
            if (u < acc) {
                y[t] = k;
                break;
            }
        }
    }
}

typedef enum { TRAIN_PPO, TRAIN_GRPO, TRAIN_DR_GRPO } train_kind;

/* One rollout of n sequences: tokens, old log-probs, per-token advantages (n*L). */
static void rollout(gkd_rng *rng, train_kind kind, const table th, int n, int *ys, double *lold,
                    double *adv) {
    double r[NB * L], lref[NB * L], k1[NB * L], zero[NB * L] = {0}, seq[NB];
    for (int b = 0; b < n; b++) {
        sample(rng, th, ys + b * L);
        for (int t = 0; t < L; t++) {
            lold[b * L + t] = logprob(th, ctx_of(ys + b * L, t), ys[b * L + t]);
            lref[b * L + t] = logprob(ref_th, ctx_of(ys + b * L, t), ys[b * L + t]);
            r[b * L + t] = t == L - 1 ? bandit_r[ys[b * L] * V + ys[b * L + 1]] : 0.0;
        }
    }
    CHECK(gkd_kl_estimate(GKD_KL_K1, lold, lref, NULL, n * L, k1, NULL) == GKD_OK);
    gkd_rl_kl_penalty(r, k1, NULL, n * L, BETA);
    if (kind == TRAIN_PPO) { /* critic-free GAE: the reward-to-go, whitened over the batch's tokens */
        CHECK(gkd_rl_gae(r, zero, NULL, n, L, 1.0, 1.0, adv, NULL) == GKD_OK);
        gkd_rl_whiten(adv, NULL, n * L, 1);
        return;
    }
    for (int b = 0; b < n; b++) seq[b] = r[b * L] + r[b * L + 1];
    CHECK(gkd_grpo_advantages(seq, 1, n, kind == TRAIN_GRPO, 1e-4, seq) == GKD_OK);
    for (int i = 0; i < n * L; i++) adv[i] = seq[i / L];
}

/* Trains from the reference for STEPS steps; returns the first step at which E[R] is within 0.03 of
 * the optimum's, or -1; *max_kl is the largest KL(q || p_ref) seen, *final_er the last E[R]. */
static int train(train_kind kind, double target_er, double *max_kl, double *final_er) {
    gkd_rng rng;
    gkd_rng_init(&rng, 7 + kind, GKD_RNG_STREAM_USER);
    table th;
    memcpy(th, ref_th, sizeof th);
    int n = kind == TRAIN_PPO ? NB : GROUP, epochs = kind == TRAIN_PPO ? 4 : 2;
    int minibatches = kind == TRAIN_PPO ? 2 : 1, reached = -1;
    /* Dr. GRPO's advantages keep the reward's scale (here a spread of ~0.3, not 1): a larger step. */
    double lr = kind == TRAIN_PPO ? 0.3 : kind == TRAIN_GRPO ? 0.5 : 4.0;
    *max_kl = 0;
    for (int step = 0; step < STEPS; step++) {
        int ys[NB * L];
        double lold[NB * L], adv[NB * L], lnew[NB * L], loss[NB * L], d[NB * L];
        float w[NB * L];
        rollout(&rng, kind, th, n, ys, lold, adv);
        int mb = n / minibatches, stop = 0;
        for (int e = 0; e < epochs && !stop; e++)
            for (int m = 0; m < minibatches && !stop; m++) {
                int o = m * mb * L;
                for (int i = 0; i < mb * L; i++)
                    lnew[i] = logprob(th, ctx_of(ys + o + i / L * L, i % L), ys[o + i]);
                gkd_ppo_stats st;
                CHECK(gkd_ppo_clip_loss(lnew, lold + o, adv + o, NULL, mb * L, 0.2, loss, d, &st) == GKD_OK);
                gkd_rl_agg agg = kind == TRAIN_PPO    ? GKD_RL_AGG_TOKEN_MEAN
                                 : kind == TRAIN_GRPO ? GKD_RL_AGG_SEQUENCE_MEAN
                                                      : GKD_RL_AGG_CONSTANT;
                CHECK(gkd_rl_token_weights(NULL, mb, L, agg, L, w) == GKD_OK);
                table g = {{0}};
                for (int i = 0; i < mb * L; i++) add_score(th, ys + o + i / L * L, i % L, w[i] * d[i], g);
                for (int c = 0; c < CTX; c++)
                    for (int k = 0; k < V; k++) th[c][k] -= lr * g[c][k];
                stop = gkd_ppo_should_stop(st.approx_kl, 0.05, 1.5);
            }
        double er, klr;
        exact_reward_kl(th, &er, &klr);
        *max_kl = fmax(*max_kl, klr);
        if (er >= target_er - 0.03 && reached < 0) reached = step + 1;
        *final_er = er;
    }
    return reached;
}

static void check_training(gkd_rng *rng) {
    random_table(rng, 0.5, ref_th);
    double er_opt, kl_opt;
    optimum(&er_opt, &kl_opt);
    const char *names[3] = {"ppo", "grpo", "dr_grpo"};
    for (int kind = 0; kind < 3; kind++) {
        double max_kl, final_er;
        int steps = train((train_kind)kind, er_opt, &max_kl, &final_er);
        fprintf(stderr,
                "%s: E[R*] = %.3f, KL(q*||ref) = %.3f; reached in %d steps, final E[R] %.3f, max KL %.3f\n",
                names[kind], er_opt, kl_opt, steps, final_er, max_kl);
        CHECKF(fabs(final_er - er_opt) < 0.03, "%s drifted from the optimum: E[R] %g", names[kind], final_er);
        CHECKF(steps > 0, "%s did not reach E[R*] - 0.03 in %d steps", names[kind], STEPS);
        CHECKF(max_kl <= kl_opt + 0.2, "%s: reference KL %g over its target %g", names[kind], max_kl,
               kl_opt + 0.2);
    }
}

int main(void) {
    gkd_rng rng;
    gkd_rng_init(&rng, 16, GKD_RNG_STREAM_USER);
    check_ppo_is_reinforce(&rng);
    check_clip_enumeration(&rng);
    check_grpo();
    check_small_pieces();
    check_kl_estimators(&rng);
    check_dense_reverse_kl(&rng);
    check_training(&rng);
    return check_exit();
}
