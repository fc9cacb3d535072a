/* The CUDA backend's host-side planning (core/tensor/backend_cuda_internal.h), checked without a GPU: how
 * attention is split into cuBLAS calls and row-kernel launches, and the byte formatting of its messages.
 * The products are driven through gkd_cuda_attn_product exactly as the CUDA backend drives them, but with
 * the CPU backend's matmul_batched, and the row launches are replayed on the host with the kernels' row
 * numbering; the result must match the CPU backend's own attention. So every pointer, stride, leading
 * dimension and key count that the GPU will be handed is checked here, and only the kernels' insides are
 * left for the GPU tests (tests/cuda/test_cuda_ops.c). */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/tensor/backend.h"
#include "core/tensor/backend_cuda_internal.h"
#include "core/base/rng.h"
#include "tests/check.h"

static const gkd_backend *cpu;
static gkd_rng rng;

/* The emulation calls the same OpenBLAS sgemm on the same matrices, split differently across threads; the
 * softmax below is the CPU's formula. Differences are roundings. */
static const double TOL_MAX = 1e-5;

static float *frand(size_t n) {
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = gkd_rng_normal(&rng);
    return x;
}

static float *ffill(size_t n, float value) {
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = value;
    return x;
}

static void compare(const char *what, const float *got, const float *want, size_t n) {
    double err = 0, scale = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - want[i]);
        if (!(e <= err)) err = e, at = i; /* NaN counts as the largest error */
        scale = fmax(scale, fabs((double)want[i]));
    }
    CHECKF(err <= TOL_MAX * scale, "%s: max error %.3g at %zu (got %.9g want %.9g), scale %.3g", what, err,
           at, got[at], want[at], scale);
}

/* ---------- format_bytes ---------- */

static void test_format_bytes(void) {
    char buf[32];
    gkd_cuda_format_bytes(buf, sizeof buf, 512);
    CHECKF(strcmp(buf, "512 bytes") == 0, "%s", buf);
    gkd_cuda_format_bytes(buf, sizeof buf, (size_t)3 << 20);
    CHECKF(strcmp(buf, "3.00 MiB") == 0, "%s", buf);
    gkd_cuda_format_bytes(buf, sizeof buf, (size_t)3 << 29);
    CHECKF(strcmp(buf, "1.50 GiB") == 0, "%s", buf);
    gkd_cuda_format_bytes(buf, sizeof buf, (size_t)1 << 50);
    CHECKF(strcmp(buf, "1048576.00 GiB") == 0, "%s", buf);
}

/* ---------- plans ---------- */

static gkd_attn_dims dims(int B, int T, int H, int KV, int D, int Tk) {
    gkd_attn_dims d = {.B = B, .T = T, .n_heads = H, .n_kv_heads = KV, .head_dim = D, .Tk = Tk};
    return d;
}

/* Row launches must cover every sequence, stay within one grid, and take pos0 values only up to the
 * kernel argument's capacity when they differ. */
static void check_launch_limits(const char *what, const gkd_attn_dims *d, const gkd_cuda_attn_plan *p) {
    CHECKF(p->seqs_per_launch >= 1 && p->seqs_per_launch <= d->B, "%s: %d sequences per launch", what,
           p->seqs_per_launch);
    CHECKF((long long)p->seqs_per_launch * d->n_heads * d->T <= INT_MAX, "%s: %lld rows in one launch", what,
           (long long)p->seqs_per_launch * d->n_heads * d->T);
    if (!p->uniform)
        CHECKF(p->seqs_per_launch <= GKD_CUDA_POS_CHUNK, "%s: %d pos0 values", what, p->seqs_per_launch);
}

static void test_plans(void) {
    /* issue 3's training shape: pos0 NULL, 12 heads over 16 sequences: one call per head, one launch */
    gkd_attn_dims d = dims(16, 1024, 12, 12, 64, 1024);
    gkd_cuda_attn_plan p = gkd_cuda_attn_plan_make(&d, NULL);
    CHECK(p.uniform && p.p0 == 0 && p.per_head);
    CHECKF(p.calls == 12, "calls %d", p.calls);
    CHECK(p.seqs_per_launch == 16);
    check_launch_limits("training", &d, &p);

    /* fewer sequences than heads: the per-sequence path takes fewer calls */
    d = dims(2, 1024, 12, 12, 64, 1024);
    p = gkd_cuda_attn_plan_make(&d, NULL);
    CHECK(p.uniform && !p.per_head && p.calls == 2);

    /* grouped heads: 2 sequences x 2 heads per group = 4 = n_heads: ties go per head */
    d = dims(2, 24, 4, 2, 8, 24);
    p = gkd_cuda_attn_plan_make(&d, NULL);
    CHECK(p.per_head && p.calls == 4);

    /* decoding with distinct positions: per sequence, pos0 values in chunks */
    int pos0[300];
    for (int b = 0; b < 300; b++) pos0[b] = b % 7;
    d = dims(300, 1, 12, 4, 64, 512);
    p = gkd_cuda_attn_plan_make(&d, pos0);
    CHECK(!p.uniform && !p.per_head && p.calls == 300 * 3);
    CHECK(p.seqs_per_launch == GKD_CUDA_POS_CHUNK);
    check_launch_limits("decoding", &d, &p);

    /* the same start everywhere (a prefill of equal prompts) is uniform even with pos0 given */
    for (int b = 0; b < 300; b++) pos0[b] = 5;
    p = gkd_cuda_attn_plan_make(&d, pos0);
    CHECK(p.uniform && p.p0 == 5 && p.per_head && p.calls == 12 && p.seqs_per_launch == 300);

    /* batches past GKD_CUDA_MAX_BATCH count as several calls */
    d = dims(2 * GKD_CUDA_MAX_BATCH + 1, 16, 4, 4, 8, 16);
    p = gkd_cuda_attn_plan_make(&d, NULL);
    CHECK(p.per_head && p.calls == 4 * 3);
    CHECK(gkd_cuda_batch_calls(1) == 1 && gkd_cuda_batch_calls(GKD_CUDA_MAX_BATCH) == 1 &&
          gkd_cuda_batch_calls(GKD_CUDA_MAX_BATCH + 1) == 2);

    /* rows of one launch stay within a grid's 2^31 - 1 blocks */
    d = dims(64, 1 << 20, 64, 8, 64, 1 << 20);
    p = gkd_cuda_attn_plan_make(&d, NULL);
    CHECKF(p.seqs_per_launch == INT_MAX / (64 << 20), "%d", p.seqs_per_launch);
    check_launch_limits("long sequences", &d, &p);
    d = dims(1000, 4096, 32, 8, 128, 4096);
    p = gkd_cuda_attn_plan_make(&d, NULL);
    check_launch_limits("many long sequences", &d, &p);
}

/* ---------- attention through the CUDA backend's call sequence ---------- */

static int n_calls;

static void counting_matmul_batched(int ta, int tb, int M, int N, int K, float alpha, const float *a, int lda,
                                    size_t sa, const float *b, int ldb, size_t sb, float beta, float *c,
                                    int ldc, size_t sc, int batch) {
    n_calls += gkd_cuda_batch_calls(batch); /* as the CUDA backend splits it */
    cpu->matmul_batched(ta, tb, M, N, K, alpha, a, lda, sa, b, ldb, sb, beta, c, ldc, sc, batch);
}

/* The grid path (gkd_cuda_matmul_grid_fn) on the CPU: each (sequence, head) entry's product by itself,
 * at the operand addresses the CUDA backend's pointer kernel computes; one call counted. */
static int use_grid, n_grid_calls;

static void counting_matmul_grid(int ta, int tb, int M, int N, int K, float alpha, gkd_cuda_attn_operand A,
                                 gkd_cuda_attn_operand B, float beta, gkd_cuda_attn_operand C, int n_seqs,
                                 int n_heads, int group) {
    n_grid_calls++;
    for (int i = 0; i < n_seqs * n_heads; i++) {
        int b = i / n_heads, h = i % n_heads;
        const float *a = A.base + (size_t)b * A.bs + (size_t)(A.kv ? h / group : h) * A.hs;
        const float *bb = B.base + (size_t)b * B.bs + (size_t)(B.kv ? h / group : h) * B.hs;
        float *c = (float *)C.base + (size_t)b * C.bs + (size_t)(C.kv ? h / group : h) * C.hs;
        cpu->matmul(ta, tb, M, N, K, alpha, a, A.ld, bb, B.ld, beta, c, C.ld);
    }
}

/* The row kernels' launches replayed: launch after launch of plan->seqs_per_launch sequences, row r of a
 * launch at (b0 + r / (H T), (r / T) % H, r % T), each row visited once. */
static void replay_rows(int backward, float *att, float *datt, const int *pos0, const gkd_attn_dims *d,
                        const gkd_cuda_attn_plan *p, unsigned char *seen) {
    const int H = d->n_heads, T = d->T;
    memset(seen, 0, (size_t)d->B * H * T);
    for (int b0 = 0; b0 < d->B; b0 += p->seqs_per_launch) {
        int nb = d->B - b0 < p->seqs_per_launch ? d->B - b0 : p->seqs_per_launch;
        for (size_t r = 0; r < (size_t)nb * H * T; r++) {
            int t = (int)(r % T), h = (int)(r / T % H), b = b0 + (int)(r / T / H);
            int p0 = p->uniform ? p->p0 : pos0[b], n_seen = p0 + t + 1, n_keys = p0 + T;
            size_t off = (((size_t)b * H + h) * T + t) * d->Tk;
            seen[((size_t)b * H + h) * T + t]++;
            float *a = att + off;
            if (!backward) {
                float mx = -INFINITY, sum = 0.0f;
                for (int j = 0; j < n_seen; j++) mx = a[j] > mx ? a[j] : mx;
                for (int j = 0; j < n_seen; j++) sum += a[j] = expf(a[j] - mx);
                for (int j = 0; j < n_seen; j++) a[j] *= 1.0f / sum;
                for (int j = n_seen; j < n_keys; j++) a[j] = 0.0f;
            } else {
                float *da = datt + off, dot = 0.0f;
                for (int j = 0; j < n_seen; j++) dot += a[j] * da[j];
                for (int j = 0; j < n_seen; j++) da[j] = a[j] * (da[j] - dot);
                for (int j = n_seen; j < n_keys; j++) da[j] = 0.0f;
            }
        }
    }
    size_t once = 0, n = (size_t)d->B * H * T;
    while (once < n && seen[once] == 1) once++;
    CHECKF(once == n, "row %zu visited %d times", once, once < n ? seen[once] : 0);
}

/* The row passes, replayed on the host (user: the replay's arguments). */
typedef struct {
    float *att, *datt;
    const int *pos0;
    const gkd_attn_dims *d;
    const gkd_cuda_attn_plan *p;
    unsigned char *seen;
} replay_args;

static void replay_cb(int backward, void *user) {
    replay_args *r = user;
    replay_rows(backward, r->att, backward ? r->datt : NULL, r->pos0, r->d, r->p, r->seen);
}

/* backend_cuda.cu's attention_forward and _backward on the GEMM path: the very functions it calls
 * (gkd_cuda_attention_gemm_forward/_backward), with the CPU's products and the row kernels replayed. */
static void emulated_attention(float *out, float *att, float *dq, float *dk, float *dv, float *datt,
                               const float *dout, const float *q, const float *k, const float *v,
                               const int *pos0, const gkd_attn_dims *d, unsigned char *seen) {
    const gkd_cuda_attn_plan p = gkd_cuda_attn_plan_make(d, pos0);
    replay_args r = {att, datt, pos0, d, &p, seen};
    gkd_cuda_matmul_grid_fn grid = use_grid ? counting_matmul_grid : NULL;
    /* with the grid: one call per product where every sequence sees the same keys, except dk and dv of
     * grouped heads (two heads would add into one matrix within a call), which keep the plan's calls */
    const int group = d->n_heads / d->n_kv_heads, gridded = use_grid && p.uniform;
    const int kv_grid = gridded && group == 1;
    n_calls = n_grid_calls = 0;
    gkd_cuda_attention_gemm_forward(counting_matmul_batched, grid, replay_cb, &r, out, att, q, k, v, pos0, d,
                                    &p);
    CHECKF(n_calls == (gridded ? 0 : 2 * p.calls) && n_grid_calls == (gridded ? 2 : 0),
           "%d + %d grid calls for the forward's two products, plan says %d each", n_calls, n_grid_calls,
           p.calls);
    n_calls = n_grid_calls = 0;
    gkd_cuda_attention_gemm_backward(counting_matmul_batched, grid, replay_cb, &r, dq, dk, dv, datt, dout,
                                     att, q, k, v, pos0, d, &p);
    int want_calls = gridded ? (kv_grid ? 0 : 2 * p.calls) : 4 * p.calls;
    int want_grid = gridded ? (kv_grid ? 4 : 2) : 0;
    CHECKF(n_calls == want_calls && n_grid_calls == want_grid,
           "%d + %d grid calls for the backward's four products (want %d + %d)", n_calls, n_grid_calls,
           want_calls, want_grid);
}

/* fused: q, k, v interleaved in rows of W (training); else separate caches of Tk slots per sequence. att
 * and datt start at a constant that the entries past each row's keys must keep. */
static void attention_case(const char *label, int B, int T, int H, int KV, int D, int Tk, const int *pos0,
                           int fused, int want_per_head) {
    char named[128];
    snprintf(named, sizeof named, "%s%s", label, use_grid ? " (grid)" : "");
    label = named;
    const int QD = H * D, KVD = KV * D, W = QD + 2 * KVD;
    gkd_attn_dims d = dims(B, T, H, KV, D, Tk);
    size_t nq, nkv;
    if (fused) {
        d.ld_q = d.ld_kv = W;
        d.bs_q = d.bs_kv = (size_t)T * W;
        nq = nkv = (size_t)B * T * W;
    } else {
        d.ld_q = QD, d.ld_kv = KVD;
        d.bs_q = (size_t)T * QD, d.bs_kv = (size_t)Tk * KVD;
        nq = (size_t)B * T * QD, nkv = (size_t)B * Tk * KVD;
    }
    d.ld_out = QD;
    d.bs_out = (size_t)T * QD;
    gkd_cuda_attn_plan p = gkd_cuda_attn_plan_make(&d, pos0);
    CHECKF(p.per_head == want_per_head, "%s: per_head %d, expected %d", label, p.per_head, want_per_head);
    size_t nout = (size_t)B * T * QD, natt = (size_t)B * H * T * Tk;
    float *qbuf = frand(nq), *kbuf = fused ? NULL : frand(nkv), *vbuf = fused ? NULL : frand(nkv);
    float *dout = frand(nout);
    const float *q = qbuf, *k = fused ? qbuf + QD : kbuf, *v = fused ? qbuf + QD + KVD : vbuf;
    float *out[2], *att[2], *datt[2], *g[2], *gk[2], *gv[2];
    for (int i = 0; i < 2; i++) {
        out[i] = ffill(nout, 0), att[i] = ffill(natt, 3.0f), datt[i] = ffill(natt, 3.0f),
        g[i] = ffill(nq, 0.5f);
        gk[i] = fused ? g[i] + QD : ffill(nkv, 0.5f);
        gv[i] = fused ? g[i] + QD + KVD : ffill(nkv, 0.5f);
    }
    unsigned char *seen = malloc((size_t)B * H * T);
    cpu->attention_forward(out[0], att[0], q, k, v, pos0, &d);
    cpu->attention_backward(g[0], gk[0], gv[0], datt[0], dout, att[0], q, k, v, pos0, &d);
    emulated_attention(out[1], att[1], g[1], gk[1], gv[1], datt[1], dout, q, k, v, pos0, &d, seen);
    char what[160];
    snprintf(what, sizeof what, "%s: out", label);
    compare(what, out[1], out[0], nout);
    snprintf(what, sizeof what, "%s: att", label);
    compare(what, att[1], att[0], natt);
    snprintf(what, sizeof what, "%s: datt", label);
    compare(what, datt[1], datt[0], natt);
    snprintf(what, sizeof what, "%s: %s", label, fused ? "dq,dk,dv" : "dq");
    compare(what, g[1], g[0], nq);
    if (!fused) {
        snprintf(what, sizeof what, "%s: dk", label);
        compare(what, gk[1], gk[0], nkv);
        snprintf(what, sizeof what, "%s: dv", label);
        compare(what, gv[1], gv[0], nkv);
    }
    for (int i = 0; i < 2; i++) {
        free(out[i]), free(att[i]), free(datt[i]), free(g[i]);
        if (!fused) free(gk[i]), free(gv[i]);
    }
    free(qbuf), free(kbuf), free(vbuf), free(dout), free(seen);
}

static void test_attention(void) {
    /* training layout: grouped heads on both paths, multi-head on both paths */
    attention_case("fused B=2 T=24 H=4 KV=2 (per head)", 2, 24, 4, 2, 8, 24, NULL, 1, 1);
    attention_case("fused B=1 T=24 H=4 KV=2 (per sequence)", 1, 24, 4, 2, 8, 24, NULL, 1, 0);
    attention_case("fused B=3 T=40 H=6 KV=6 (per sequence)", 3, 40, 6, 6, 32, 40, NULL, 1, 0);
    attention_case("fused B=8 T=40 H=6 KV=6 (per head)", 8, 40, 6, 6, 16, 40, NULL, 1, 1);
    attention_case("fused B=5 T=17 H=8 KV=1 (per head)", 5, 17, 8, 1, 8, 17, NULL, 1, 1);
    /* caches: distinct starts (per sequence), the same start everywhere (per head, p0 > 0) */
    int pos0[3] = {0, 7, 3}, same[4] = {6, 6, 6, 6};
    attention_case("cached B=3 T=12 Tk=32 distinct pos0", 3, 12, 6, 2, 4, 32, pos0, 0, 0);
    attention_case("cached B=4 T=12 Tk=32 pos0 all 6", 4, 12, 6, 2, 4, 32, same, 0, 1);
    /* more sequences than one cuBLAS batch, and than one launch's pos0 values */
    enum { BIG_B = GKD_CUDA_MAX_BATCH + 5, TK = 16 };
    int *big = malloc(BIG_B * sizeof *big);
    attention_case("fused B=32773 T=9 H=2 KV=1 (batches split)", BIG_B, 9, 2, 1, 4, 9, NULL, 1, 1);
    for (int b = 0; b < 300; b++) big[b] = (int)gkd_rng_below(&rng, TK - 9 + 1);
    attention_case("cached B=300 T=9 distinct pos0 (pos0 chunks)", 300, 9, 2, 1, 4, TK, big, 0, 0);
    free(big);
}

int main(void) {
    cpu = gkd_backend_cpu();
    gkd_rng_init(&rng, 99, GKD_RNG_STREAM_USER);
    test_format_bytes();
    test_plans();
    test_attention();
    use_grid = 1; /* the same cases through the CUDA backend's one-call path */
    test_attention();
    return check_exit();
}
