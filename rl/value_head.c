/* PPO's value head (see value_head.h). */
#include "rl/value_head.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

gkd_status gkd_value_head_init(gkd_value_head *vh, int C) {
    memset(vh, 0, sizeof *vh);
    if (C < 1) return gkd_error_set(GKD_ERR_ARG, "value head: width must be positive");
    vh->C = C;
    vh->p = calloc((size_t)C + 1, sizeof *vh->p);
    vh->g = calloc((size_t)C + 1, sizeof *vh->g);
    vh->m = calloc((size_t)C + 1, sizeof *vh->m);
    vh->v = calloc((size_t)C + 1, sizeof *vh->v);
    if (!vh->p || !vh->g || !vh->m || !vh->v) {
        gkd_value_head_free(vh);
        return gkd_error_set(GKD_ERR_NOMEM, "out of memory (value head)");
    }
    return GKD_OK;
}

void gkd_value_head_free(gkd_value_head *vh) {
    free(vh->p);
    free(vh->g);
    free(vh->m);
    free(vh->v);
    memset(vh, 0, sizeof *vh);
}

static double value_of(const gkd_value_head *vh, const float *h) {
    double s = vh->p[vh->C];
    for (int c = 0; c < vh->C; c++) s += vh->p[c] * h[c];
    return s;
}

void gkd_value_head_forward(const gkd_value_head *vh, const float *h, const float *mask, int N, double *values) {
    for (int i = 0; i < N; i++) values[i] = mask[i] != 0.0f ? value_of(vh, h + (size_t)i * vh->C) : 0.0;
}

gkd_status gkd_value_head_loss(gkd_value_head *vh, const float *h, const float *mask, int N, const double *returns,
                               const double *old_values, double clip, double coef, float *dh, double *loss) {
    int C = vh->C, n = 0;
    for (int i = 0; i < N; i++) n += mask[i] != 0.0f;
    double total = 0;
    *loss = 0;
    if (n == 0) return GKD_OK;
    for (int i = 0; i < N; i++) {
        if (mask[i] == 0.0f) continue;
        const float *hi = h + (size_t)i * C;
        double v = value_of(vh, hi), r = returns[i];
        double vc = v;
        if (clip > 0) {
            double lo = old_values[i] - clip, hi_v = old_values[i] + clip;
            vc = v < lo ? lo : v > hi_v ? hi_v : v;
        }
        double l1 = 0.5 * (v - r) * (v - r), l2 = 0.5 * (vc - r) * (vc - r);
        /* The max picks the clipped branch only when it is larger; its derivative in v is 0 outside the
         * clip range (vc is constant there) and (vc - r) inside (where vc = v). */
        double d = l2 > l1 ? (vc == v ? v - r : 0.0) : v - r;
        total += l2 > l1 ? l2 : l1;
        double gv = coef * d / n;
        if (gv == 0.0) continue;
        for (int c = 0; c < C; c++) {
            vh->g[c] += gv * hi[c];
            if (dh) dh[(size_t)i * C + c] += (float)(gv * vh->p[c]);
        }
        vh->g[C] += gv;
    }
    *loss = total / n;
    return GKD_OK;
}

void gkd_value_head_step(gkd_value_head *vh, double lr, double beta1, double beta2, double eps, double weight_decay) {
    vh->t++;
    double bc1 = 1.0 - pow(beta1, (double)vh->t), bc2 = 1.0 - pow(beta2, (double)vh->t);
    for (int c = 0; c <= vh->C; c++) {
        double g = vh->g[c];
        vh->m[c] = beta1 * vh->m[c] + (1 - beta1) * g;
        vh->v[c] = beta2 * vh->v[c] + (1 - beta2) * g * g;
        if (c < vh->C) vh->p[c] -= lr * weight_decay * vh->p[c];
        vh->p[c] -= lr * (vh->m[c] / bc1) / (sqrt(vh->v[c] / bc2) + eps);
        vh->g[c] = 0.0;
    }
}

double gkd_explained_variance(const double *values, const double *returns, const float *mask, int N) {
    double n = 0, mr = 0, md = 0;
    for (int i = 0; i < N; i++)
        if (mask[i] != 0.0f) {
            n += 1;
            mr += returns[i];
            md += returns[i] - values[i];
        }
    if (n < 2) return 0.0;
    mr /= n;
    md /= n;
    double vr = 0, vd = 0;
    for (int i = 0; i < N; i++)
        if (mask[i] != 0.0f) {
            vr += (returns[i] - mr) * (returns[i] - mr);
            double d = returns[i] - values[i] - md;
            vd += d * d;
        }
    return vr > 0 ? 1.0 - vd / vr : 0.0;
}
