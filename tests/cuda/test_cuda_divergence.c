/* The divergence rows on the CUDA backend (rl/divergence_cuda.h) against the CPU rows (rl/divergence.c,
 * itself checked against a 40-digit reference in tests/test_divergence.c): every kind and convention,
 * the metrics, masked entries, peaked and near-equal rows, V = 49152 and V not a multiple of the block
 * size, top-k (the host fallback), the faults and their messages, repeatability; then the whole chunked
 * loss gkd_distill_loss_ex with a policy-gradient term on CUDA against the CPU.
 * Thresholds are named constants with their reasons. Exits 77 (skipped) where no CUDA device is present
 * or the backend cannot start. */
// ctest-labels: cuda
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/tensor/backend.h"
#include "core/tensor/backend_cuda.h"
#include "core/base/rng.h"
#include "rl/distill.h"
#include "rl/divergence.h"
#include "rl/divergence_cuda.h"
#include "tests/check.h"

/* Values and metrics: the same formulas in double on both sides; they differ by the order of the row
 * sums and by CUDA's libm (within 2 ulp of glibc's), which shifts log-probabilities by ~1e-16 of the
 * log-normaliser. A term's relative error is that shift over |log P - log Q|, so near-equal rows
 * (differences ~1e-3) reach ~1e-12; 1e-9 leaves three orders of margin, while a wrong term or entry
 * moves a value by far more than 1e-6. */
static const double VALUE_REL = 1e-9;
/* Gradients are float32 (rounding 6e-8 relative) of QG_v - Q_v Gbar, which cancels where G_v ~ Gbar:
 * there the double-level differences above show at the entry's size. Held to 1e-6 of the row's
 * largest entry plus 1e-5 relative (the CPU test's bar against the reference). */
static const double GRAD_ROW = 1e-6, GRAD_REL = 1e-5;
/* ... plus 1e-12 absolute: a row whose exact gradient is zero (tv where every live entry has the same sign
 * of Q - P, so G_v = Gbar) is rounding noise on both sides, and its largest entry with it (the H200's first
 * run, 2026-12-04: cpu 5.55e-17, gpu 0, failing a bar relative to that noise). Any entry that matters is
 * far above 1e-12, and the row bar above still holds them. */
static const double GRAD_ABS = 1e-12;
/* The whole loss: the logits come from fp32 matrix products (cuBLAS vs OpenBLAS, different summation
 * orders: ~1e-7 relative per logit), which moves values and gradients by ~1e-6 relative; 1e-4 as for
 * the backward ops in test_cuda_ops.c. */
static const double LOSS_REL = 1e-4, LOSS_GRAD_MAX = 1e-4;

static const gkd_backend *cpu, *gpu;
static gkd_divergence_cuda *dev;
static gkd_rng rng;

static float *dev_copy(const float *host, size_t n) {
    float *d = gpu->alloc(n * sizeof(float));
    if (!d) {
        fprintf(stderr, "device allocation of %zu floats failed: %s\n", n, gkd_error_message());
        exit(1);
    }
    if (host) gpu->copy_in(d, host, n * sizeof(float));
    return d;
}

static int close_rel(double got, double want, double tol) {
    if (got == want) return 1; /* equal infinities too */
    if (isnan(got) && isnan(want)) return 1;
    return fabs(got - want) <= tol * fabs(want);
}

/* The rows of d on both sides; returns the GPU's status and compares everything. */
static gkd_status compare_rows(const char *what, const gkd_divergence *d, const float *t, const float *s,
                               int N, int V, const float *scale) {
    size_t nv = (size_t)N * V;
    float *g_cpu = malloc(nv * sizeof(float)), *g_gpu = malloc(nv * sizeof(float));
    double *v_cpu = malloc(N * sizeof(double)), *v_gpu = malloc(N * sizeof(double));
    gkd_token_metrics *m_cpu = malloc(N * sizeof *m_cpu), *m_gpu = malloc(N * sizeof *m_gpu);
    gkd_status st_cpu = gkd_divergence_rows_ex(d, t, s, N, V, v_cpu, g_cpu, scale, m_cpu);
    char msg_cpu[512];
    snprintf(msg_cpu, sizeof msg_cpu, "%s", gkd_error_message());
    float *dt = dev_copy(t, nv), *ds = dev_copy(s, nv), *dg = dev_copy(NULL, nv);
    gkd_status st_gpu = gkd_divergence_cuda_rows(dev, d, dt, ds, N, V, v_gpu, dg, scale, m_gpu);
    CHECKF(st_gpu == st_cpu && (st_cpu == GKD_OK || strcmp(msg_cpu, gkd_error_message()) == 0),
           "%s: gpu %s (%s), cpu %s (%s)", what, gkd_status_name(st_gpu), gkd_error_message(),
           gkd_status_name(st_cpu), msg_cpu);
    gpu->copy_out(g_gpu, dg, nv * sizeof(float));
    for (int n = 0; n < N; n++) {
        CHECKF(close_rel(v_gpu[n], v_cpu[n], VALUE_REL), "%s row %d: value gpu %.17g cpu %.17g", what, n,
               v_gpu[n], v_cpu[n]);
        const double *mg = &m_gpu[n].forward_kl, *mc = &m_cpu[n].forward_kl;
        for (int k = 0; k < 5; k++)
            CHECKF(close_rel(mg[k], mc[k], VALUE_REL), "%s row %d metric %d: gpu %.17g cpu %.17g", what, n, k,
                   mg[k], mc[k]);
        double gmax = 0, worst = 0;
        int at = 0;
        for (int v = 0; v < V; v++) gmax = fmax(gmax, fabs(g_cpu[(size_t)n * V + v]));
        for (int v = 0; v < V; v++) {
            double want = g_cpu[(size_t)n * V + v], got = g_gpu[(size_t)n * V + v];
            double excess = fabs(got - want) - (GRAD_ABS + GRAD_ROW * gmax + GRAD_REL * fabs(want));
            if (!(excess <= 0) && (worst == 0 || excess > worst)) {
                worst = isnan(excess) ? INFINITY : excess;
                at = v;
            }
        }
        CHECKF(worst == 0, "%s row %d: gradient entry %d gpu %.9g cpu %.9g (row max %.3g)", what, n, at,
               g_gpu[(size_t)n * V + at], g_cpu[(size_t)n * V + at], gmax);
    }
    gpu->free(dt);
    gpu->free(ds);
    gpu->free(dg);
    free(g_cpu);
    free(g_gpu);
    free(v_cpu);
    free(v_gpu);
    free(m_cpu);
    free(m_gpu);
    return st_gpu;
}

static void fill(float *x, size_t n, float spread) {
    for (size_t i = 0; i < n; i++) x[i] = spread * gkd_rng_normal(&rng);
}

/* Rows: random, near-equal, peaked on both sides, masked on both sides and on the student's side alone
 * (finite for every kind but the forward-KL family, whose value is then +inf with a finite gradient). */
static void make_rows(float *t, float *s, int N, int V) {
    fill(t, (size_t)N * V, 2.0f);
    fill(s, (size_t)N * V, 2.0f);
    if (N < 4) return;
    for (int v = 0; v < V; v++) s[V + v] = t[V + v] + 1e-3f * gkd_rng_normal(&rng);
    t[2 * V + V / 3] = 50.0f;
    s[2 * V + V / 2] = 40.0f;
    for (int v = 0; v < V; v += 7) t[3 * V + v] = s[3 * V + v] = -INFINITY;
    s[3 * V + 1] = -INFINITY;
}

static void test_kinds(int N, int V) {
    float *t = malloc((size_t)N * V * sizeof(float)), *s = malloc((size_t)N * V * sizeof(float));
    make_rows(t, s, N, V);
    float *scale = malloc(N * sizeof(float));
    for (int n = 0; n < N; n++) scale[n] = n == N - 1 && N > 2 ? 0.0f : 0.5f + 0.25f * n;
    const char *jsds[] = {"jsd", "jsd_trl", "jsd_scaled"};
    const double betas[] = {0.0, 1e-6, 0.1, 0.5, 0.9, 1.0 - 1e-6, 1.0};
    char what[128];
    for (int i = 0; i < 3; i++)
        for (int b = 0; b < 7; b++) {
            gkd_divergence d;
            gkd_divergence_parse(jsds[i], &d);
            d.beta = betas[b];
            d.teacher_temperature = 0.7;
            snprintf(what, sizeof what, "%s beta %g V %d", jsds[i], betas[b], V);
            compare_rows(what, &d, t, s, N, V, scale);
        }
    const char *others[] = {"forward_kl", "tv", "skew_kl", "skew_reverse_kl"};
    const double skews[] = {0.0, 0.1, 0.5, 1.0};
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 4; k++) {
            gkd_divergence d;
            gkd_divergence_parse(others[i], &d);
            d.skew = skews[k];
            d.teacher_temperature = 1.3;
            snprintf(what, sizeof what, "%s skew %g V %d", others[i], skews[k], V);
            compare_rows(what, &d, t, s, N, V, NULL);
        }
    gkd_divergence d;
    gkd_divergence_parse("reverse_kl", &d);
    snprintf(what, sizeof what, "reverse_kl V %d", V);
    compare_rows(what, &d, t, s, N, V, scale);
    d.top_k = 16; /* the host fallback */
    snprintf(what, sizeof what, "reverse_kl top-16 V %d", V);
    compare_rows(what, &d, t, s, N, V, scale);
    free(t);
    free(s);
    free(scale);
}

static void test_faults(void) {
    enum { N = 5, V = 300 };
    static float t[N * V], s[N * V];
    make_rows(t, s, N, V);
    gkd_divergence d;
    gkd_divergence_parse("jsd", &d);
    t[4 * V + 17] = NAN;
    t[4 * V + 3] = INFINITY; /* the lowest bad entry is the one named */
    CHECK(compare_rows("teacher NaN", &d, t, s, N, V, NULL) == GKD_ERR_ARG);
    CHECKF(strstr(gkd_error_message(), "row 4, entry 3: teacher logit"), "message: %s", gkd_error_message());
    t[4 * V + 17] = t[4 * V + 3] = 0.0f;
    s[2 * V + 250] = NAN;
    for (int v = 0; v < V; v++) s[4 * V + v] = -INFINITY;
    CHECK(compare_rows("student NaN and a masked row", &d, t, s, N, V, NULL) == GKD_ERR_ARG);
    CHECKF(strstr(gkd_error_message(), "row 2, entry 250: student logit"), "message: %s",
           gkd_error_message());
    s[2 * V + 250] = 0.0f;
    CHECK(compare_rows("a masked row", &d, t, s, N, V, NULL) == GKD_ERR_ARG);
    CHECKF(strstr(gkd_error_message(), "row 4: every student logit is -inf"), "message: %s",
           gkd_error_message());
    make_rows(t, s, N, V);
    t[3 * V + 2] = -INFINITY; /* masked by the teacher alone: reverse KL's gradient is infinite */
    gkd_divergence_parse("reverse_kl", &d);
    CHECK(compare_rows("reverse KL, teacher mask", &d, t, s, N, V, NULL) == GKD_ERR_ARG);
    CHECKF(strstr(gkd_error_message(), "row 3: reverse_kl has an infinite gradient"), "message: %s",
           gkd_error_message());
    float scale[N] = {1, 1, 1, 0, 1}; /* no gradient asked for on row 3: its value is +inf, no error */
    CHECK(compare_rows("reverse KL, no gradient on the masked row", &d, t, s, N, V, scale) == GKD_OK);
}

/* Two runs give the same bits (fixed-order reductions, no atomics). */
static void test_repeat(void) {
    enum { N = 4, V = 49152 };
    float *t = malloc((size_t)N * V * sizeof(float)), *s = malloc((size_t)N * V * sizeof(float));
    make_rows(t, s, N, V);
    float *dt = dev_copy(t, (size_t)N * V), *ds = dev_copy(s, (size_t)N * V);
    float *g1 = dev_copy(NULL, (size_t)N * V), *g2 = dev_copy(NULL, (size_t)N * V);
    gkd_divergence d;
    gkd_divergence_parse("jsd", &d);
    d.beta = 0.9;
    double v1[N], v2[N];
    gkd_token_metrics m1[N], m2[N];
    CHECK(gkd_divergence_cuda_rows(dev, &d, dt, ds, N, V, v1, g1, NULL, m1) == GKD_OK);
    CHECK(gkd_divergence_cuda_rows(dev, &d, dt, ds, N, V, v2, g2, NULL, m2) == GKD_OK);
    float *h1 = malloc((size_t)N * V * sizeof(float)), *h2 = malloc((size_t)N * V * sizeof(float));
    gpu->copy_out(h1, g1, (size_t)N * V * sizeof(float));
    gpu->copy_out(h2, g2, (size_t)N * V * sizeof(float));
    CHECK(memcmp(v1, v2, sizeof v1) == 0 && memcmp(m1, m2, sizeof m1) == 0);
    CHECK(memcmp(h1, h2, (size_t)N * V * sizeof(float)) == 0);
    gpu->free(dt);
    gpu->free(ds);
    gpu->free(g1);
    gpu->free(g2);
    free(t);
    free(s);
    free(h1);
    free(h2);
}

/* The policy-gradient rows against the CPU's formula, written out here: nll = lse - z[y],
 * grad += w (softmax - onehot). */
static void test_pg_rows(void) {
    enum { N = 3, V = 1001 };
    static float z[N * V], g0[N * V], g_cpu[N * V], g_gpu[N * V];
    fill(z, N * V, 3.0f);
    fill(g0, N * V, 0.01f);
    int targets[N] = {0, 500, V - 1};
    float w[N] = {0.5f, 0.0f, -1.25f};
    memcpy(g_cpu, g0, sizeof g0);
    double nll_cpu[N], nll_gpu[N];
    for (int n = 0; n < N; n++) {
        const float *r = z + n * V;
        double mx = -INFINITY, sum = 0;
        for (int v = 0; v < V; v++) mx = fmax(mx, r[v]);
        for (int v = 0; v < V; v++) sum += exp((double)r[v] - mx);
        double lse = mx + log(sum);
        nll_cpu[n] = lse - r[targets[n]];
        if (w[n] != 0.0f) {
            for (int v = 0; v < V; v++) g_cpu[n * V + v] += (float)(w[n] * exp((double)r[v] - lse));
            g_cpu[n * V + targets[n]] -= w[n];
        }
    }
    float *dz = dev_copy(z, N * V), *dg = dev_copy(g0, N * V);
    CHECK(gkd_divergence_cuda_pg_rows(dev, dz, N, V, targets, w, dg, nll_gpu) == GKD_OK);
    gpu->copy_out(g_gpu, dg, sizeof g_gpu);
    for (int n = 0; n < N; n++) CHECKF(close_rel(nll_gpu[n], nll_cpu[n], VALUE_REL), "pg row %d nll", n);
    double worst = 0;
    for (int i = 0; i < N * V; i++)
        worst = fmax(worst, fabs(g_gpu[i] - g_cpu[i]) - GRAD_REL * fabs(g_cpu[i]));
    CHECKF(worst <= 1e-9, "pg gradient off by %g", worst);
    CHECK(memcmp(g_gpu + V, g0 + V, V * sizeof(float)) == 0); /* weight 0: untouched */
    targets[1] = V;
    CHECK(gkd_divergence_cuda_pg_rows(dev, dz, N, V, targets, w, dg, nll_gpu) == GKD_ERR_ARG);
    gpu->free(dz);
    gpu->free(dg);
}

static double max_rel(const float *got, const float *want, size_t n) {
    double err = 0, scale = 0;
    for (size_t i = 0; i < n; i++) {
        err = fmax(err, fabs((double)got[i] - want[i]));
        scale = fmax(scale, fabs((double)want[i]));
    }
    return scale > 0 ? err / scale : err;
}

/* gkd_distill_loss_ex on both backends, GKD + RL style: JSD(0.9) scaled by alpha plus a PG term. */
static void test_distill(void) {
    enum { B = 3, T = 9, V = 1003, Cs = 16, Ct = 24, N = B * T };
    static float hs[N * Cs], ht[N * Ct], Ws[V * Cs], Wt[V * Ct], mask[N], pgw[N];
    static float dhs_cpu[N * Cs], dhs_gpu[N * Cs], dW_cpu[V * Cs], dW_gpu[V * Cs];
    int targets[N];
    fill(hs, N * Cs, 1.0f);
    fill(ht, N * Ct, 1.0f);
    fill(Ws, V * Cs, 0.3f);
    fill(Wt, V * Ct, 0.3f);
    int lens[B] = {5, 1, 7};
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) mask[b * T + t] = t >= 1 && t < 1 + lens[b];
    for (int i = 0; i < N; i++) {
        targets[i] = (i * 37) % V;
        pgw[i] = mask[i] ? 0.2f * (float)((i % 3) - 1) : 0.0f;
    }
    fill(dW_cpu, V * Cs, 0.01f);
    memcpy(dW_gpu, dW_cpu, sizeof dW_cpu);
    gkd_divergence d;
    gkd_divergence_parse("jsd", &d);
    d.beta = 0.9;
    d.teacher_temperature = 0.8;
    double rows_cpu[B], rows_gpu[B];
    gkd_distill_extra ex_cpu = {
        .div_scale = 0.7f, .targets = targets, .pg_weight = pgw, .row_values = rows_cpu};
    gkd_distill_extra ex_gpu = ex_cpu;
    ex_gpu.row_values = rows_gpu;
    gkd_distill_stats s_cpu, s_gpu;
    gkd_distill_workspace *w_cpu = NULL, *w_gpu = NULL;
    CHECK(gkd_distill_workspace_create(cpu, 4, V, Cs, Ct, &w_cpu) == GKD_OK);
    CHECK(gkd_distill_workspace_create(gpu, 4, V, Cs, Ct, &w_gpu) == GKD_OK);
    CHECK(gkd_distill_loss_ex(w_cpu, &d, GKD_NORM_SEQUENCE, hs, Ws, ht, Wt, mask, B, T, 0.5f, &ex_cpu,
                              dhs_cpu, dW_cpu, &s_cpu) == GKD_OK);
    float *d_hs = dev_copy(hs, N * Cs), *d_ht = dev_copy(ht, N * Ct), *d_Ws = dev_copy(Ws, V * Cs);
    float *d_Wt = dev_copy(Wt, V * Ct), *d_dhs = dev_copy(NULL, N * Cs), *d_dW = dev_copy(dW_gpu, V * Cs);
    gkd_status st = gkd_distill_loss_ex(w_gpu, &d, GKD_NORM_SEQUENCE, d_hs, d_Ws, d_ht, d_Wt, mask, B, T,
                                        0.5f, &ex_gpu, d_dhs, d_dW, &s_gpu);
    CHECKF(st == GKD_OK, "distill on cuda: %s", gkd_error_message());
    gpu->copy_out(dhs_gpu, d_dhs, sizeof dhs_gpu);
    gpu->copy_out(dW_gpu, d_dW, sizeof dW_gpu);
    const double got[] = {s_gpu.loss,
                          s_gpu.divergence,
                          s_gpu.forward_kl,
                          s_gpu.reverse_kl,
                          s_gpu.jsd_half,
                          s_gpu.teacher_entropy,
                          s_gpu.student_entropy,
                          rows_gpu[0],
                          rows_gpu[1],
                          rows_gpu[2]};
    const double want[] = {s_cpu.loss,
                           s_cpu.divergence,
                           s_cpu.forward_kl,
                           s_cpu.reverse_kl,
                           s_cpu.jsd_half,
                           s_cpu.teacher_entropy,
                           s_cpu.student_entropy,
                           rows_cpu[0],
                           rows_cpu[1],
                           rows_cpu[2]};
    for (int i = 0; i < 10; i++)
        CHECKF(close_rel(got[i], want[i], LOSS_REL), "distill number %d: gpu %.10g cpu %.10g", i, got[i],
               want[i]);
    CHECK(s_gpu.positions == s_cpu.positions && s_cpu.positions == 13);
    CHECK(fabs(s_cpu.loss - 0.7 * s_cpu.divergence) > 1e-6); /* the PG term counts */
    double e_dhs = max_rel(dhs_gpu, dhs_cpu, N * Cs), e_dW = max_rel(dW_gpu, dW_cpu, V * Cs);
    CHECKF(e_dhs <= LOSS_GRAD_MAX && e_dW <= LOSS_GRAD_MAX, "distill gradients: dhs %.3g, dWs %.3g", e_dhs,
           e_dW);
    gkd_distill_workspace_free(w_cpu);
    gkd_distill_workspace_free(w_gpu);
    gpu->free(d_hs);
    gpu->free(d_ht);
    gpu->free(d_Ws);
    gpu->free(d_Wt);
    gpu->free(d_dhs);
    gpu->free(d_dW);
}

int main(void) {
    if (gkd_backend_cuda_device_count() == 0) check_skip("no CUDA device");
    gpu = gkd_backend_cuda();
    if (!gpu) check_skip("the CUDA backend did not start");
    cpu = gkd_backend_cpu();
    gkd_rng_init(&rng, 4321, GKD_RNG_STREAM_USER);
    size_t base = gkd_backend_cuda_memory_in_use();
    CHECK(gkd_divergence_cuda_create(64, &dev) == GKD_OK);
    test_kinds(6, 1000);
    test_kinds(5, 257); /* one entry past the block size */
    test_kinds(4, 5);   /* fewer entries than threads */
    test_kinds(4, 49152);
    test_faults();
    test_repeat();
    test_pg_rows();
    gkd_divergence_cuda_free(dev);
    test_distill();
    CHECKF(gkd_backend_cuda_memory_in_use() == base, "%zu bytes still allocated",
           gkd_backend_cuda_memory_in_use() - base);
    CHECK(gkd_backend_cuda_sync() == GKD_OK);
    CHECKF(gkd_backend_cuda_last_error() == NULL, "CUDA error: %s", gkd_backend_cuda_last_error());
    return check_exit();
}
