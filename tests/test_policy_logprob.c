// ctest-labels: cpu
/* rl/policy_logprob.h and rl/value_head.h against direct computations and central differences:
 * - log softmax(h W^T / T)[target] and the entropy match a direct double-precision evaluation on every
 *   masked position (0 elsewhere), with chunks smaller than the batch;
 * - with a weight callback g(pos, logp) the added dh and dW are the gradient of sum_pos g * logp for
 *   weights held constant: checked against central differences of that sum in every entry of h and W,
 *   at temperature 1.3, and the callback sees each masked position once with its log-prob;
 * - dh and dW are added to (not overwritten);
 * - the clipped value loss's gradient in the head's parameters and in h matches central differences,
 *   with rows on both branches of the clip; explained variance matches its formula; the head's AdamW
 *   update matches a hand-written one. */
#include "core/base/rng.h"
#include "rl/policy_logprob.h"
#include "rl/value_head.h"
#include "tests/check.h"

#include <string.h>

enum { B = 3, T = 4, C = 5, V = 7, N = B * T };

static float h[N * C], W[V * C];
static int targets[N];
static float mask[N] = {0, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 0};
static double gweights[N];

static double direct_logp(const float *hh, const float *ww, int pos, double temp, double *entropy) {
    double z[V], mx = -INFINITY, sum = 0;
    for (int v = 0; v < V; v++) {
        z[v] = 0;
        for (int c = 0; c < C; c++) z[v] += (double)hh[pos * C + c] * ww[v * C + c];
        z[v] /= temp;
        if (z[v] > mx) mx = z[v];
    }
    for (int v = 0; v < V; v++) sum += exp(z[v] - mx);
    double lse = mx + log(sum), ent = 0;
    for (int v = 0; v < V; v++) ent -= exp(z[v] - lse) * (z[v] - lse);
    if (entropy) *entropy = ent;
    return z[targets[pos]] - lse;
}

static double objective(const float *hh, const float *ww, double temp) {
    double s = 0;
    for (int i = 0; i < N; i++)
        if (mask[i] != 0.0f) s += gweights[i] * direct_logp(hh, ww, i, temp, NULL);
    return s;
}

typedef struct {
    int calls[N];
    double seen[N];
} cb_log;

static double weight_cb(void *ctx, int pos, double logp, int *failed) {
    (void)failed;
    cb_log *l = ctx;
    l->calls[pos]++;
    l->seen[pos] = logp;
    return gweights[pos];
}

static void check_logprobs(void) {
    gkd_rng rng;
    gkd_rng_init(&rng, 3, GKD_RNG_STREAM_USER);
    for (int i = 0; i < N * C; i++) h[i] = 2.0f * gkd_rng_uniform(&rng) - 1.0f;
    for (int i = 0; i < V * C; i++) W[i] = 2.0f * gkd_rng_uniform(&rng) - 1.0f;
    for (int i = 0; i < N; i++) {
        targets[i] = (int)(gkd_rng_uniform(&rng) * V) % V;
        gweights[i] = 2.0 * gkd_rng_uniform(&rng) - 1.0;
    }
    const double temp = 1.3;
    gkd_policy_workspace *ws = NULL;
    CHECK(gkd_policy_workspace_create(gkd_backend_cpu(), 4, V, C, &ws) == GKD_OK); /* 8 positions: 2 chunks */
    double logp[N], ent[N];
    float dh[N * C], dW[V * C];
    for (int i = 0; i < N * C; i++) dh[i] = 0.25f;
    for (int i = 0; i < V * C; i++) dW[i] = -0.5f;
    cb_log log;
    memset(&log, 0, sizeof log);
    CHECKF(gkd_policy_logprobs(ws, h, W, targets, mask, B, T, temp, weight_cb, &log, 1.0f, logp, ent, dh, dW) ==
               GKD_OK, "%s", gkd_error_message());
    for (int i = 0; i < N; i++) {
        double e, want = mask[i] != 0.0f ? direct_logp(h, W, i, temp, &e) : 0.0;
        if (mask[i] == 0.0f) e = 0.0;
        CHECKF(fabs(logp[i] - want) < 1e-5, "logp[%d] %.8g, direct %.8g", i, logp[i], want);
        CHECKF(fabs(ent[i] - e) < 1e-5, "entropy[%d] %.8g, direct %.8g", i, ent[i], e);
        CHECKF(log.calls[i] == (mask[i] != 0.0f), "position %d: %d callbacks", i, log.calls[i]);
        if (mask[i] != 0.0f) CHECKF(fabs(log.seen[i] - want) < 1e-5, "callback saw %.8g at %d", log.seen[i], i);
    }
    /* Central differences of sum g * logp (g constant), in double around the float inputs. */
    const float step = 1e-2f;
    double worst = 0;
    for (int i = 0; i < N * C; i++) {
        float keep = h[i];
        h[i] = keep + step;
        double up = objective(h, W, temp);
        h[i] = keep - step;
        double down = objective(h, W, temp);
        h[i] = keep;
        double num = (up - down) / (2 * step), got = dh[i] - 0.25;
        if (fabs(num - got) > worst) worst = fabs(num - got);
    }
    CHECKF(worst < 2e-4, "dh differs from central differences by %.3g", worst);
    worst = 0;
    for (int i = 0; i < V * C; i++) {
        float keep = W[i];
        W[i] = keep + step;
        double up = objective(h, W, temp);
        W[i] = keep - step;
        double down = objective(h, W, temp);
        W[i] = keep;
        double num = (up - down) / (2 * step), got = dW[i] + 0.5;
        if (fabs(num - got) > worst) worst = fabs(num - got);
    }
    CHECKF(worst < 2e-4, "dW differs from central differences by %.3g", worst);
    /* Masked-off rows get no gradient. */
    for (int i = 0; i < N; i++)
        if (mask[i] == 0.0f)
            for (int c = 0; c < C; c++) CHECK(dh[i * C + c] == 0.25f);
    /* Bad input is refused. */
    targets[1] = V;
    CHECK(gkd_policy_logprobs(ws, h, W, targets, mask, B, T, temp, NULL, NULL, 1.0f, logp, NULL, NULL, NULL) ==
          GKD_ERR_ARG);
    targets[1] = 0;
    CHECK(gkd_policy_logprobs(ws, h, W, targets, mask, B, T, 0.0, NULL, NULL, 1.0f, logp, NULL, NULL, NULL) ==
          GKD_ERR_ARG);
    gkd_policy_workspace_free(ws);
}

/* ---- the value head ---- */

static gkd_value_head vh;
static double returns_[N], old_values[N];

static double value_loss_of(const float *hh) {
    double loss = 0;
    gkd_value_head tmp = vh; /* the same parameters; the gradient goes to a scratch block */
    double g[C + 1];
    tmp.g = g;
    gkd_value_head_loss(&tmp, hh, mask, N, returns_, old_values, 0.3, 1.0, NULL, &loss);
    return loss;
}

static void check_value_head(void) {
    gkd_rng rng;
    gkd_rng_init(&rng, 5, GKD_RNG_STREAM_USER);
    CHECK(gkd_value_head_init(&vh, C) == GKD_OK);
    for (int c = 0; c <= C; c++) vh.p[c] = 2.0 * gkd_rng_uniform(&rng) - 1.0;
    double values[N];
    gkd_value_head_forward(&vh, h, mask, N, values);
    int clipped = 0, inside = 0;
    for (int i = 0; i < N; i++) {
        /* old values near the current ones (some inside the 0.3 band, some outside), returns away */
        old_values[i] = values[i] + (i % 2 ? 0.1 : 0.9) * (i % 3 ? 1 : -1);
        returns_[i] = values[i] + 2.0 * gkd_rng_uniform(&rng) - 1.0;
        if (mask[i] != 0.0f && fabs(values[i] - old_values[i]) > 0.3) clipped++;
        else if (mask[i] != 0.0f) inside++;
        double direct = vh.p[C];
        for (int c = 0; c < C; c++) direct += vh.p[c] * h[i * C + c];
        CHECKF(fabs(values[i] - (mask[i] != 0.0f ? direct : 0.0)) < 1e-12, "value %d", i);
    }
    CHECKF(clipped > 0 && inside > 0, "rows on both sides of the clip (%d, %d)", clipped, inside);
    float dh[N * C];
    memset(dh, 0, sizeof dh);
    double loss;
    const double coef = 0.7;
    CHECK(gkd_value_head_loss(&vh, h, mask, N, returns_, old_values, 0.3, coef, dh, &loss) == GKD_OK);
    CHECKF(fabs(loss - value_loss_of(h)) < 1e-12, "loss %g", loss);
    /* parameters */
    const double eps = 1e-6;
    double worst = 0;
    for (int c = 0; c <= C; c++) {
        double keep = vh.p[c];
        vh.p[c] = keep + eps;
        double up = value_loss_of(h);
        vh.p[c] = keep - eps;
        double down = value_loss_of(h);
        vh.p[c] = keep;
        double num = coef * (up - down) / (2 * eps);
        if (fabs(num - vh.g[c]) > worst) worst = fabs(num - vh.g[c]);
    }
    CHECKF(worst < 1e-6, "value head parameter gradient off by %.3g", worst);
    worst = 0;
    for (int i = 0; i < N * C; i++) {
        float keep = h[i];
        h[i] = keep + 1e-3f;
        double up = value_loss_of(h);
        h[i] = keep - 1e-3f;
        double down = value_loss_of(h);
        h[i] = keep;
        double num = coef * (up - down) / 2e-3;
        if (fabs(num - dh[i]) > worst) worst = fabs(num - dh[i]);
    }
    CHECKF(worst < 1e-4, "value head dh off by %.3g", worst);
    /* AdamW, by hand for the first update (bias-corrected moments: m / (1 - b1) / sqrt(v / (1 - b2)) = sign). */
    double before[C + 1], g[C + 1];
    memcpy(before, vh.p, sizeof before);
    memcpy(g, vh.g, sizeof g);
    gkd_value_head_step(&vh, 0.01, 0.9, 0.95, 1e-8, 0.1);
    for (int c = 0; c <= C; c++) {
        double want = before[c] - (c < C ? 0.01 * 0.1 * before[c] : 0.0) - 0.01 * g[c] / (fabs(g[c]) + 1e-8);
        CHECKF(fabs(vh.p[c] - want) < 1e-9, "AdamW parameter %d: %.12g, want %.12g", c, vh.p[c], want);
        CHECK(vh.g[c] == 0.0);
    }
    /* explained variance */
    double ev = gkd_explained_variance(values, returns_, mask, N), mr = 0, md = 0, vr = 0, vd = 0, n = 0;
    for (int i = 0; i < N; i++)
        if (mask[i] != 0.0f) n++, mr += returns_[i], md += returns_[i] - values[i];
    mr /= n, md /= n;
    for (int i = 0; i < N; i++)
        if (mask[i] != 0.0f) {
            vr += (returns_[i] - mr) * (returns_[i] - mr);
            vd += (returns_[i] - values[i] - md) * (returns_[i] - values[i] - md);
        }
    CHECKF(fabs(ev - (1 - vd / vr)) < 1e-12, "explained variance %g", ev);
    CHECKF(fabs(gkd_explained_variance(returns_, returns_, mask, N) - 1.0) < 1e-12, "perfect values explain all");
    gkd_value_head_free(&vh);
}

int main(void) {
    check_logprobs();
    check_value_head();
    return check_exit();
}
