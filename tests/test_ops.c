/* Every op of the CPU backend table: its forward against a naive double-precision reference written
 * here, and its backward against central finite differences of that reference (h = 1e-5 in double:
 * truncation ~h^2, rounding ~1e-16/h, both far below the thresholds). A backward is checked as the
 * gradient of L = sum(w * forward(x)) for random w, passed as dout. Gradient buffers start at a nonzero
 * value to check that backwards accumulate (+=).
 * Thresholds, unless a check says otherwise: forward max error <= 1e-5 of the output's largest value
 * (float rounding over sums of <= 300 terms is ~1e-6 relative); backward <= 1e-4 of the gradient's
 * largest value (float backward ~1e-6, differences ~1e-9; a wrong term gives O(1)). */
// ctest-labels: cpu
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/tensor/backend.h"
#include "core/base/rng.h"
#include "tests/check.h"

static const gkd_backend *be;
static gkd_rng rng;

static const double FWD_TOL = 1e-5, BWD_TOL = 1e-4, FD_H = 1e-5, PRIOR = 0.5;

static float *frand(size_t n, float scale) {
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = scale * gkd_rng_normal(&rng);
    return x;
}

static float *ffill(size_t n, float value) {
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = value;
    return x;
}

static double *to_double(const float *x, size_t n) {
    double *d = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}

/* max |got - offset - want| <= tol * max |want| */
static void check_close(const char *what, const float *got, const double *want, size_t n, double tol,
                        double offset) {
    double err = 0, scale = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs(got[i] - offset - want[i]);
        if (e > err) err = e, at = i;
        scale = fmax(scale, fabs(want[i]));
    }
    CHECKF(scale > 0 && err <= tol * scale, "%s: max error %.3g at %zu (got %.8g want %.8g), scale %.3g",
           what, err, at, got[at] - offset, want[at], scale);
}

/* Central differences of f(ctx) with respect to x[0..n). */
typedef double (*scalar_fn)(void *ctx);
static double *finite_diff(scalar_fn f, void *ctx, double *x, size_t n) {
    double *g = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) {
        double x0 = x[i];
        x[i] = x0 + FD_H;
        double fp = f(ctx);
        x[i] = x0 - FD_H;
        double fm = f(ctx);
        x[i] = x0;
        g[i] = (fp - fm) / (2 * FD_H);
    }
    return g;
}

static double dot(const double *a, const double *w, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * w[i];
    return s;
}

/* ---------- matmul ---------- */

static void test_matmul_case(int ta, int tb, int M, int N, int K, float alpha, float beta) {
    int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 1, ldc = N + 2;
    float *a = frand((size_t)(ta ? K : M) * lda, 1), *b = frand((size_t)(tb ? N : K) * ldb, 1);
    float *c = frand((size_t)M * ldc, 1);
    double *want = malloc(sizeof(double) * M * ldc);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < ldc; j++) {
            if (j >= N) {
                want[i * ldc + j] = c[i * ldc + j]; /* padding columns must be untouched */
                continue;
            }
            double s = 0;
            for (int k = 0; k < K; k++)
                s += (double)(ta ? a[k * lda + i] : a[i * lda + k]) * (tb ? b[j * ldb + k] : b[k * ldb + j]);
            want[i * ldc + j] = alpha * s + beta * c[i * ldc + j];
        }
    be->matmul(ta, tb, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc);
    char what[96];
    snprintf(what, sizeof what, "matmul ta=%d tb=%d %dx%dx%d", ta, tb, M, N, K);
    /* sums of up to 300 products of unit normals: float rounding ~sqrt(K) 6e-8 relative to the scale */
    check_close(what, c, want, (size_t)M * ldc, FWD_TOL, 0);
    free(a), free(b), free(c), free(want);
}

static void test_matmul(void) {
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            test_matmul_case(ta, tb, 5, 7, 3, 1.0f, 0.0f);        /* small: one thread */
            test_matmul_case(ta, tb, 150, 70, 300, 0.5f, 1.0f);   /* split by rows */
            test_matmul_case(ta, tb, 40, 301, 250, -1.0f, 0.25f); /* split by columns */
        }
    /* batched, with a shared (stride 0) second operand */
    int M = 4, N = 5, K = 6, batch = 3;
    float *a = frand((size_t)batch * M * K, 1), *b = frand((size_t)K * N, 1),
          *c = frand((size_t)batch * M * N, 1);
    double *want = malloc(sizeof(double) * batch * M * N);
    for (int i = 0; i < batch; i++)
        for (int r = 0; r < M; r++)
            for (int j = 0; j < N; j++) {
                double s = 0;
                for (int k = 0; k < K; k++) s += (double)a[i * M * K + r * K + k] * b[k * N + j];
                want[(i * M + r) * N + j] = 2.0 * s + c[(i * M + r) * N + j];
            }
    be->matmul_batched(0, 0, M, N, K, 2.0f, a, K, (size_t)M * K, b, N, 0, 1.0f, c, N, (size_t)M * N, batch);
    check_close("matmul_batched", c, want, (size_t)batch * M * N, FWD_TOL, 0);
    free(a), free(b), free(c), free(want);
}

/* ---------- embedding ---------- */

static void test_embedding(void) {
    enum { N = 9, C = 12, V = 5 };
    int tokens[N] = {0, 3, 3, 1, 4, 0, 3, 2, 2};
    float *wte = frand(V * C, 1), *out = ffill(N * C, 7), *dout = frand(N * C, 1),
          *dwte = ffill(V * C, PRIOR);
    be->embedding_forward(out, tokens, wte, N, C);
    double want[N * C], dwant[V * C];
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) want[n * C + c] = wte[tokens[n] * C + c];
    check_close("embedding_forward", out, want, N * C, 0, 0); /* a copy: exact */
    /* the gradient of sum(dout * out) with respect to wte is linear: its differences are exact sums */
    memset(dwant, 0, sizeof dwant);
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) dwant[tokens[n] * C + c] += dout[n * C + c];
    be->embedding_backward(dwte, dout, tokens, N, C);
    check_close("embedding_backward", dwte, dwant, V * C, 1e-6, PRIOR);
    free(wte), free(out), free(dout), free(dwte);
}

/* ---------- rmsnorm ---------- */

typedef struct {
    int N, C;
    double eps, *x, *w, *dout;
} rms_ctx;

static void rms_ref(const rms_ctx *r, double *out) {
    for (int n = 0; n < r->N; n++) {
        double ms = 0;
        for (int c = 0; c < r->C; c++) ms += r->x[n * r->C + c] * r->x[n * r->C + c];
        double inv = 1.0 / sqrt(ms / r->C + r->eps);
        for (int c = 0; c < r->C; c++) out[n * r->C + c] = r->x[n * r->C + c] * inv * r->w[c];
    }
}

static double rms_loss(void *ctx) {
    rms_ctx *r = ctx;
    double *out = malloc(sizeof(double) * r->N * r->C);
    rms_ref(r, out);
    double l = dot(out, r->dout, (size_t)r->N * r->C);
    free(out);
    return l;
}

static void test_rmsnorm(void) {
    enum { N = 5, C = 24 };
    float eps = 1e-5f;
    float *x = frand(N * C, 1.5f), *w = frand(C, 1), *out = ffill(N * C, 0), *rstd = ffill(N, 0);
    float *dout = frand(N * C, 1), *dx = ffill(N * C, PRIOR), *dw = ffill(C, PRIOR);
    rms_ctx r = {N, C, eps, to_double(x, N * C), to_double(w, C), to_double(dout, N * C)};
    double want[N * C];
    rms_ref(&r, want);
    be->rmsnorm_forward(out, rstd, x, w, N, C, eps);
    check_close("rmsnorm_forward", out, want, N * C, FWD_TOL, 0);
    be->rmsnorm_backward(dx, dw, dout, x, w, rstd, N, C);
    double *gx = finite_diff(rms_loss, &r, r.x, N * C), *gw = finite_diff(rms_loss, &r, r.w, C);
    check_close("rmsnorm_backward dinp", dx, gx, N * C, BWD_TOL, PRIOR);
    check_close("rmsnorm_backward dweight", dw, gw, C, BWD_TOL, PRIOR);
    free(x), free(w), free(out), free(rstd), free(dout), free(dx), free(dw);
    free(r.x), free(r.w), free(r.dout), free(gx), free(gw);
}

/* ---------- rope ---------- */

typedef struct {
    int N, n_heads, D, ld;
    const int *pos;
    double theta, *x, *dout;
} rope_ctx;

/* Written as Hugging Face writes it: x cos + rotate_half(x) sin, rotate_half(x) = (-x2, x1). */
static void rope_ref(const rope_ctx *r, double *out) {
    int half = r->D / 2;
    memcpy(out, r->x, sizeof(double) * r->N * r->ld);
    for (int n = 0; n < r->N; n++)
        for (int h = 0; h < r->n_heads; h++) {
            const double *v = r->x + n * r->ld + h * r->D;
            for (int j = 0; j < r->D; j++) {
                double ang = r->pos[n] * pow(r->theta, -2.0 * (j % half) / r->D);
                double rot = j < half ? -v[j + half] : v[j - half];
                out[n * r->ld + h * r->D + j] = v[j] * cos(ang) + rot * sin(ang);
            }
        }
}

static double rope_loss(void *ctx) {
    rope_ctx *r = ctx;
    double *out = malloc(sizeof(double) * r->N * r->ld);
    rope_ref(r, out);
    double l = dot(out, r->dout, (size_t)r->N * r->ld);
    free(out);
    return l;
}

static void test_rope(void) {
    enum { N = 4, H = 3, D = 8, LD = H * D + 5, P = 64 };
    int pos[N] = {0, 1, 17, 63};
    double theta = 10000.0;
    float cos_tab[P * D / 2], sin_tab[P * D / 2];
    for (int p = 0; p < P; p++)
        for (int i = 0; i < D / 2; i++) {
            cos_tab[p * D / 2 + i] = (float)cos(p * pow(theta, -2.0 * i / D));
            sin_tab[p * D / 2 + i] = (float)sin(p * pow(theta, -2.0 * i / D));
        }
    float *x = frand(N * LD, 1), *dout = frand(N * LD, 1);
    for (int n = 0; n < N; n++)
        for (int j = H * D; j < LD; j++) dout[n * LD + j] = 0; /* columns past the heads are not rotated */
    rope_ctx r = {N, H, D, LD, pos, theta, to_double(x, N * LD), to_double(dout, N * LD)};
    double want[N * LD];
    rope_ref(&r, want);
    be->rope_forward(x, pos, cos_tab, sin_tab, N, H, D, LD);
    /* the float tables carry 6e-8 rounding of cos and sin; 1e-5 as for every forward */
    check_close("rope_forward", x, want, N * LD, FWD_TOL, 0);
    float *dx = malloc(sizeof(float) * N * LD);
    memcpy(dx, dout, sizeof(float) * N * LD);
    be->rope_backward(dx, pos, cos_tab, sin_tab, N, H, D, LD);
    double *g = finite_diff(rope_loss, &r, r.x, N * LD);
    for (int n = 0; n < N; n++)
        for (int j = H * D; j < LD; j++) g[n * LD + j] = 0; /* the backward leaves those columns alone */
    for (int n = 0; n < N; n++)
        for (int j = H * D; j < LD; j++) dx[n * LD + j] = 0;
    check_close("rope_backward", dx, g, N * LD, BWD_TOL, 0);
    free(x), free(dout), free(dx), free(r.x), free(r.dout), free(g);
}

/* ---------- attention ---------- */

typedef struct {
    gkd_attn_dims d;
    const int *pos0;
    double *q, *k, *v, *dout;
    size_t nq, nkv, nout;
} attn_ctx;

static void attn_ref(const attn_ctx *r, double *out) {
    const gkd_attn_dims *d = &r->d;
    int D = d->head_dim, group = d->n_heads / d->n_kv_heads;
    memset(out, 0, sizeof(double) * r->nout);
    for (int b = 0; b < d->B; b++)
        for (int h = 0; h < d->n_heads; h++)
            for (int t = 0; t < d->T; t++) {
                int p = (r->pos0 ? r->pos0[b] : 0) + t;
                const double *qt = r->q + b * d->bs_q + (size_t)t * d->ld_q + h * D;
                double s[64], mx = -1e300, sum = 0;
                for (int j = 0; j <= p; j++) {
                    const double *kj = r->k + b * d->bs_kv + (size_t)j * d->ld_kv + (h / group) * D;
                    s[j] = 0;
                    for (int i = 0; i < D; i++) s[j] += qt[i] * kj[i];
                    s[j] /= sqrt((double)D);
                    mx = fmax(mx, s[j]);
                }
                for (int j = 0; j <= p; j++) sum += (s[j] = exp(s[j] - mx));
                double *ot = out + b * d->bs_out + (size_t)t * d->ld_out + h * D;
                for (int j = 0; j <= p; j++)
                    for (int i = 0; i < D; i++)
                        ot[i] += s[j] / sum * r->v[b * d->bs_kv + (size_t)j * d->ld_kv + (h / group) * D + i];
            }
}

static double attn_loss(void *ctx) {
    attn_ctx *r = ctx;
    double *out = malloc(sizeof(double) * r->nout);
    attn_ref(r, out);
    double l = dot(out, r->dout, r->nout);
    free(out);
    return l;
}

/* Training layout: q, k, v interleaved in one (B,T,W) buffer, keys at the queries' own positions. */
static void test_attention_train(void) {
    enum { B = 2, T = 6, H = 4, KV = 2, D = 8, QD = H * D, W = (H + 2 * KV) * D };
    gkd_attn_dims d = {.B = B,
                       .T = T,
                       .n_heads = H,
                       .n_kv_heads = KV,
                       .head_dim = D,
                       .Tk = T,
                       .ld_q = W,
                       .ld_kv = W,
                       .ld_out = QD,
                       .bs_q = T * W,
                       .bs_kv = T * W,
                       .bs_out = T * QD};
    float *qkv = frand(B * T * W, 1), *out = ffill(B * T * QD, 0), *att = ffill(B * H * T * T, 0);
    float *dout = frand(B * T * QD, 1), *dqkv = ffill(B * T * W, PRIOR), *datt = ffill(B * H * T * T, 0);
    double *qkv_d = to_double(qkv, B * T * W);
    attn_ctx r = {
        d,         NULL,      qkv_d,     qkv_d + QD, qkv_d + QD + KV * D, to_double(dout, B * T * QD),
        B * T * W, B * T * W, B * T * QD};
    double *want = malloc(sizeof(double) * r.nout);
    attn_ref(&r, want);
    be->attention_forward(out, att, qkv, qkv + QD, qkv + QD + KV * D, NULL, &d);
    check_close("attention_forward (train)", out, want, r.nout, FWD_TOL, 0);
    be->attention_backward(dqkv, dqkv + QD, dqkv + QD + KV * D, datt, dout, att, qkv, qkv + QD,
                           qkv + QD + KV * D, NULL, &d);
    double *g = finite_diff(attn_loss, &r, qkv_d, B * T * W);
    check_close("attention_backward (train) dq,dk,dv", dqkv, g, B * T * W, BWD_TOL, PRIOR);
    free(qkv), free(out), free(att), free(dout), free(dqkv), free(datt), free(qkv_d), free(r.dout),
        free(want), free(g);
}

/* Cached layout: separate key/value buffers of Tk slots per row, queries starting at pos0[b]. */
static void test_attention_cached(void) {
    enum { B = 3, T = 2, H = 6, KV = 2, D = 4, QD = H * D, KVD = KV * D, TK = 9 };
    int pos0[B] = {0, 4, 7};
    gkd_attn_dims d = {.B = B,
                       .T = T,
                       .n_heads = H,
                       .n_kv_heads = KV,
                       .head_dim = D,
                       .Tk = TK,
                       .ld_q = QD,
                       .ld_kv = KVD,
                       .ld_out = QD,
                       .bs_q = T * QD,
                       .bs_kv = TK * KVD,
                       .bs_out = T * QD};
    float *q = frand(B * T * QD, 1), *k = frand(B * TK * KVD, 1), *v = frand(B * TK * KVD, 1);
    float *out = ffill(B * T * QD, 0), *att = ffill(B * H * T * TK, 0), *dout = frand(B * T * QD, 1);
    float *dq = ffill(B * T * QD, PRIOR), *dk = ffill(B * TK * KVD, PRIOR), *dv = ffill(B * TK * KVD, PRIOR);
    float *datt = ffill(B * H * T * TK, 0);
    attn_ctx r = {d,
                  pos0,
                  to_double(q, B * T * QD),
                  to_double(k, B * TK * KVD),
                  to_double(v, B * TK * KVD),
                  to_double(dout, B * T * QD),
                  B * T * QD,
                  B * TK * KVD,
                  B * T * QD};
    double *want = malloc(sizeof(double) * r.nout);
    attn_ref(&r, want);
    be->attention_forward(out, att, q, k, v, pos0, &d);
    check_close("attention_forward (cached)", out, want, r.nout, FWD_TOL, 0);
    be->attention_backward(dq, dk, dv, datt, dout, att, q, k, v, pos0, &d);
    double *gq = finite_diff(attn_loss, &r, r.q, r.nq), *gk = finite_diff(attn_loss, &r, r.k, r.nkv);
    double *gv = finite_diff(attn_loss, &r, r.v, r.nkv);
    check_close("attention_backward (cached) dq", dq, gq, r.nq, BWD_TOL, PRIOR);
    check_close("attention_backward (cached) dk", dk, gk, r.nkv, BWD_TOL, PRIOR);
    check_close("attention_backward (cached) dv", dv, gv, r.nkv, BWD_TOL, PRIOR);
    free(q), free(k), free(v), free(out), free(att), free(dout), free(dq), free(dk), free(dv), free(datt);
    free(r.q), free(r.k), free(r.v), free(r.dout), free(want), free(gq), free(gk), free(gv);
}

/* Big enough for the parallel path (work items on several threads, grouped heads sharing dk, dv): the
 * forward is checked in full, the backward on a sample of 80 coordinates. */
static void test_attention_parallel(void) {
    enum { B = 2, T = 40, H = 4, KV = 2, D = 16, QD = H * D, W = (H + 2 * KV) * D, SAMPLES = 80 };
    gkd_attn_dims d = {.B = B,
                       .T = T,
                       .n_heads = H,
                       .n_kv_heads = KV,
                       .head_dim = D,
                       .Tk = T,
                       .ld_q = W,
                       .ld_kv = W,
                       .ld_out = QD,
                       .bs_q = T * W,
                       .bs_kv = T * W,
                       .bs_out = T * QD};
    float *qkv = frand(B * T * W, 1), *out = ffill(B * T * QD, 0), *att = ffill(B * H * T * T, 0);
    float *dout = frand(B * T * QD, 1), *dqkv = ffill(B * T * W, 0), *datt = ffill(B * H * T * T, 0);
    double *qkv_d = to_double(qkv, B * T * W);
    attn_ctx r = {
        d,         NULL,      qkv_d,     qkv_d + QD, qkv_d + QD + KV * D, to_double(dout, B * T * QD),
        B * T * W, B * T * W, B * T * QD};
    double *want = malloc(sizeof(double) * r.nout);
    attn_ref(&r, want);
    be->attention_forward(out, att, qkv, qkv + QD, qkv + QD + KV * D, NULL, &d);
    check_close("attention_forward (parallel)", out, want, r.nout, FWD_TOL, 0);
    be->attention_backward(dqkv, dqkv + QD, dqkv + QD + KV * D, datt, dout, att, qkv, qkv + QD,
                           qkv + QD + KV * D, NULL, &d);
    float got[SAMPLES];
    double fd[SAMPLES];
    for (int i = 0; i < SAMPLES; i++) {
        size_t j = gkd_rng_below(&rng, B * T * W);
        double x0 = qkv_d[j];
        qkv_d[j] = x0 + FD_H;
        double lp = attn_loss(&r);
        qkv_d[j] = x0 - FD_H;
        double lm = attn_loss(&r);
        qkv_d[j] = x0;
        fd[i] = (lp - lm) / (2 * FD_H);
        got[i] = dqkv[j];
    }
    check_close("attention_backward (parallel), sampled", got, fd, SAMPLES, BWD_TOL, 0);
    free(qkv), free(out), free(att), free(dout), free(dqkv), free(datt), free(qkv_d), free(r.dout),
        free(want);
}

/* ---------- swiglu ---------- */

typedef struct {
    int N, F;
    double *gu, *dout;
} swiglu_ctx;

static void swiglu_ref(const swiglu_ctx *r, double *out) {
    for (int n = 0; n < r->N; n++)
        for (int i = 0; i < r->F; i++) {
            double g = r->gu[n * 2 * r->F + i], u = r->gu[n * 2 * r->F + r->F + i];
            out[n * r->F + i] = g / (1.0 + exp(-g)) * u;
        }
}

static double swiglu_loss(void *ctx) {
    swiglu_ctx *r = ctx;
    double *out = malloc(sizeof(double) * r->N * r->F);
    swiglu_ref(r, out);
    double l = dot(out, r->dout, (size_t)r->N * r->F);
    free(out);
    return l;
}

static void test_swiglu(void) {
    enum { N = 4, F = 10 };
    float *gu = frand(N * 2 * F, 2), *out = ffill(N * F, 0), *dout = frand(N * F, 1),
          *dgu = ffill(N * 2 * F, PRIOR);
    swiglu_ctx r = {N, F, to_double(gu, N * 2 * F), to_double(dout, N * F)};
    double want[N * F];
    swiglu_ref(&r, want);
    be->swiglu_forward(out, gu, gu + F, N, F, 2 * F);
    check_close("swiglu_forward", out, want, N * F, FWD_TOL, 0);
    be->swiglu_backward(dgu, dgu + F, dout, gu, gu + F, N, F, 2 * F);
    double *g = finite_diff(swiglu_loss, &r, r.gu, N * 2 * F);
    check_close("swiglu_backward", dgu, g, N * 2 * F, BWD_TOL, PRIOR);
    free(gu), free(out), free(dout), free(dgu), free(r.gu), free(r.dout), free(g);
}

/* ---------- residual ---------- */

static void test_residual(void) {
    enum { n = 50 };
    float *a = frand(n, 1), *b = frand(n, 1), *out = ffill(n, 0), *dout = frand(n, 1);
    float *da = ffill(n, PRIOR), *db = ffill(n, PRIOR);
    double want[n], dwant[n];
    for (int i = 0; i < n; i++) want[i] = (double)a[i] + b[i], dwant[i] = dout[i];
    be->residual_forward(out, a, b, n);
    check_close("residual_forward", out, want, n, 1e-7, 0); /* one rounded add */
    be->residual_forward(a, a, b, n);                       /* in place, as the model uses it */
    check_close("residual_forward in place", a, want, n, 1e-7, 0);
    be->residual_backward(da, db, dout, n);
    check_close("residual_backward da", da, dwant, n, 1e-7, PRIOR);
    check_close("residual_backward db", db, dwant, n, 1e-7, PRIOR);
    free(a), free(b), free(out), free(dout), free(da), free(db);
}

/* ---------- cross-entropy ---------- */

typedef struct {
    int N, V;
    const int *targets;
    const float *weights;
    double *logits;
} ce_ctx;

static double ce_loss_ref(void *ctx) {
    ce_ctx *r = ctx;
    double total = 0;
    for (int n = 0; n < r->N; n++) {
        if (r->weights[n] == 0.0f) continue;
        const double *x = r->logits + n * r->V;
        double mx = -1e300, s = 0;
        for (int i = 0; i < r->V; i++) mx = fmax(mx, x[i]);
        for (int i = 0; i < r->V; i++) s += exp(x[i] - mx);
        total += r->weights[n] * (mx + log(s) - x[r->targets[n]]);
    }
    return total;
}

static void test_crossentropy(void) {
    enum { N = 5, V = 11 };
    int targets[N] = {3, -1, 0, 10, 7};
    float weights[N] = {0.5f, 0.0f, 1.0f, 0.25f, 2.0f};
    float *logits = frand(N * V, 3), *loss = ffill(N, 9), *lse = ffill(N, 0), *dlogits = ffill(N * V, 9);
    ce_ctx r = {N, V, targets, weights, to_double(logits, N * V)};
    be->crossentropy_forward(loss, lse, logits, targets, weights, N, V);
    double want[N];
    for (int n = 0; n < N; n++) {
        float w1 = weights[n];
        float only[N] = {0};
        only[n] = w1;
        ce_ctx one = r;
        one.weights = only;
        want[n] = ce_loss_ref(&one);
    }
    check_close("crossentropy_forward", loss, want, N, FWD_TOL, 0);
    be->crossentropy_backward(dlogits, logits, lse, targets, weights, N, V);
    double *g = finite_diff(ce_loss_ref, &r, r.logits, N * V);
    check_close("crossentropy_backward", dlogits, g, N * V, BWD_TOL, 0);
    /* in place, as the model's chunked loss uses it */
    be->crossentropy_backward(logits, logits, lse, targets, weights, N, V);
    check_close("crossentropy_backward in place", logits, g, N * V, BWD_TOL, 0);
    free(logits), free(loss), free(lse), free(dlogits), free(r.logits), free(g);
}

/* ---------- adamw, sumsq, copies ---------- */

static void test_adamw(void) {
    enum { n = 40, steps = 4 };
    const double lr = 0.01, b1 = 0.9, b2 = 0.99, eps = 1e-8, wd = 0.1, gscale = 0.5;
    float *p = frand(n, 1), *m = ffill(n, 0), *v = ffill(n, 0);
    double *pr = to_double(p, n), mr[n] = {0}, vr[n] = {0};
    for (int t = 1; t <= steps; t++) {
        float *g = frand(n, 1);
        be->adamw_update(p, g, m, v, n, (float)lr, (float)b1, (float)b2, (float)eps, (float)wd, (float)gscale,
                         t);
        for (int i = 0; i < n; i++) {
            double gi = g[i] * gscale;
            pr[i] -= lr * wd * pr[i]; /* decoupled decay first, on the old value (PyTorch AdamW) */
            mr[i] = b1 * mr[i] + (1 - b1) * gi;
            vr[i] = b2 * vr[i] + (1 - b2) * gi * gi;
            pr[i] -= lr * (mr[i] / (1 - pow(b1, t))) / (sqrt(vr[i] / (1 - pow(b2, t))) + eps);
        }
        free(g);
    }
    /* 4 steps of O(lr) updates with float rounding ~1e-7 each */
    check_close("adamw_update param", p, pr, n, 1e-6, 0);
    check_close("adamw_update m", m, mr, n, 1e-6, 0);
    check_close("adamw_update v", v, vr, n, 1e-6, 0);
    free(p), free(m), free(v), free(pr);
}

/* A copy, so exact: every written float equals its source, every other cache float keeps its sentinel.
 * The sources sit inside wider rows (like k and v inside the fused qkv rows); each sequence starts at its
 * own position, the first at 0 and the second ending on the cache's last slot. */
static void kv_write_case(int B, int T, int KVD, int Tk) {
    const int ld_src = 2 * KVD + 5;
    const size_t N = (size_t)B * T, cache = (size_t)B * Tk * KVD;
    float *src = frand(N * ld_src, 1), *kc = ffill(cache, -7), *vc = ffill(cache, -9);
    float *want_k = ffill(cache, -7), *want_v = ffill(cache, -9);
    int *pos = malloc(N * sizeof(int));
    for (int b = 0; b < B; b++) {
        int p0 = b == 0 ? 0 : b == 1 ? Tk - T : (int)gkd_rng_below(&rng, (uint32_t)(Tk - T + 1));
        for (int t = 0; t < T; t++) {
            size_t n = (size_t)b * T + t, dst = ((size_t)b * Tk + p0 + t) * KVD;
            pos[n] = p0 + t;
            for (int c = 0; c < KVD; c++) {
                want_k[dst + c] = src[n * ld_src + 3 + c];
                want_v[dst + c] = src[n * ld_src + 3 + KVD + c];
            }
        }
    }
    be->kv_write(kc, vc, src + 3, src + 3 + KVD, ld_src, pos, B, T, KVD, (size_t)Tk * KVD);
    CHECKF(memcmp(kc, want_k, cache * sizeof(float)) == 0, "kv_write keys B=%d T=%d KVD=%d Tk=%d", B, T, KVD,
           Tk);
    CHECKF(memcmp(vc, want_v, cache * sizeof(float)) == 0, "kv_write values B=%d T=%d KVD=%d Tk=%d", B, T,
           KVD, Tk);
    free(src), free(kc), free(vc), free(want_k), free(want_v), free(pos);
}

static void test_kv_write(void) {
    kv_write_case(5, 1, 6, 9);
    kv_write_case(4, 3, 8, 11);
    kv_write_case(2, 9, 4, 9); /* T = Tk: both sequences fill their whole cache */
}

static void test_sumsq_and_copies(void) {
    enum { n = 100000 };
    float *x = frand(n, 1);
    double want = 0;
    for (int i = 0; i < n; i++) want += (double)x[i] * x[i];
    double got = be->sumsq(x, n);
    CHECKF(fabs(got - want) <= 1e-12 * want, "sumsq %.15g vs %.15g (double accumulation)", got, want);
    float src[4 * 5], dst[3 * 7];
    for (int i = 0; i < 20; i++) src[i] = (float)i;
    for (int i = 0; i < 21; i++) dst[i] = -1;
    be->copy_2d(dst, 7, src + 1, 5, 3, 4);
    int ok = 1;
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 7; c++) ok &= dst[r * 7 + c] == (c < 4 ? src[r * 5 + 1 + c] : -1.0f);
    CHECK(ok);
    float *dev = be->alloc(sizeof(float) * 8), back[8], host[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    be->copy_in(dev, host, sizeof host);
    be->copy_out(back, dev, sizeof back);
    CHECK(memcmp(back, host, sizeof host) == 0);
    be->zero(dev, sizeof host);
    be->copy_out(back, dev, sizeof back);
    CHECK(back[0] == 0 && back[7] == 0);
    be->free(dev);
    be->free(NULL);
    free(x);
}

int main(void) {
    be = gkd_backend_cpu();
    gkd_rng_init(&rng, 1234, GKD_RNG_STREAM_USER);
    test_matmul();
    test_embedding();
    test_rmsnorm();
    test_rope();
    test_attention_train();
    test_attention_cached();
    test_attention_parallel();
    test_swiglu();
    test_residual();
    test_crossentropy();
    test_adamw();
    test_kv_write();
    test_sumsq_and_copies();
    return check_exit();
}
