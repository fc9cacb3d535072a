/* Every op of the CUDA backend table against the CPU backend (the reference, itself checked against
 * double precision and finite differences in tests/test_ops.c) on the same random inputs. Buffers the
 * op must leave alone (padding columns, masked attention entries beyond each row's keys) start with the
 * same values on both sides and are compared too. Gradient buffers start nonzero to check +=.
 * Two measures per comparison: max |gpu - cpu| over the largest |cpu| (max_rel below) and the normalised
 * mean squared error sum (gpu - cpu)^2 / sum cpu^2 (nmse). Thresholds are named constants with their
 * reasons; a wrong index or a missing term gives errors of order 1 on either measure.
 * Exits 77 (skipped) where no CUDA device is present. */
// ctest-labels: cuda
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/tensor/backend.h"
#include "core/tensor/backend_cuda.h"
#include "core/tensor/backend_cuda_internal.h" /* GKD_CUDA_MAX_BATCH: the test crosses the batch split */
#include "core/tensor/precision.h"
#include "core/base/rng.h"
#include "tests/check.h"

static const gkd_backend *cpu, *gpu;
static gkd_rng rng;

/* One rounding apart: the same formula where nvcc may fuse a multiply-add (FMA) that gcc does not. */
static const double ROUNDING_MAX = 1e-6, ROUNDING_NMSE = 1e-12;
/* Forward ops with reductions (matmul, norms, softmax) or expf: the two sides sum in different orders and
 * CUDA's expf is within 2 ulp, so elements differ by ~sqrt(terms) * 6e-8 of the scale; 1e-5 leaves a
 * margin of 10-100x at the sizes here. */
static const double FWD_MAX = 1e-5, FWD_NMSE = 1e-10;
/* Backward ops: the forward's differences, then differences of nearly equal terms (softmax and rmsnorm
 * backward subtract a row's mean), which lifts the relative error of small elements. */
static const double BWD_MAX = 1e-4, BWD_NMSE = 1e-9;
/* TF32 products round each input to a 10-bit mantissa (2^-11 ~ 5e-4 relative per product); over K = 256
 * random products the error is a few 1e-4 of the scale. */
static const double TF32_MAX = 5e-3, TF32_NMSE = 1e-5;
/* bf16 products against the CPU's bf16 products: both round the operands to nearest even, and a product
 * of two bf16 values is exact in fp32, so only the fp32 sums differ: their order, and tensor cores'
 * accumulators, which may align addends by truncation rather than rounding (a few ulp per addition).
 * 5x the FWD margins, still ~100x below what one unrounded operand would give (bf16 rounding moves a
 * product by ~2^-9 ~ 2e-3 of its scale, nmse ~1e-5: BF16_MIN_NMSE checks that it happened at all). */
static const double BF16_MAX = 5e-5, BF16_NMSE = 5e-10, BF16_MIN_NMSE = 1e-8;

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

static void *to_dev(const void *host, size_t bytes) {
    void *d = gpu->alloc(bytes);
    if (!d) {
        fprintf(stderr, "device allocation of %zu bytes failed: %s\n", bytes, gkd_error_message());
        exit(1);
    }
    gpu->copy_in(d, host, bytes);
    return d;
}

static float *dev_floats(const float *host, size_t n) {
    return to_dev(host, n * sizeof(float));
}

/* Copies n floats back from the device into a new host buffer, and frees the device buffer. */
static float *take_back(float *dev, size_t n) {
    float *h = malloc(n * sizeof(float));
    gpu->copy_out(h, dev, n * sizeof(float));
    gpu->free(dev);
    return h;
}

static void compare(const char *what, const float *got, const float *want, size_t n, double max_tol,
                    double nmse_tol) {
    double err = 0, scale = 0, se = 0, sw = 0;
    size_t at = 0, bad = n;
    for (size_t i = 0; i < n; i++) {
        if ((!isfinite(want[i]) || !isfinite(got[i])) && bad == n) bad = i;
        double e = fabs((double)got[i] - want[i]);
        if (e > err) err = e, at = i;
        scale = fmax(scale, fabs((double)want[i]));
        se += e * e;
        sw += (double)want[i] * want[i];
    }
    double nmse = sw > 0 ? se / sw : se;
    CHECKF(bad == n, "%s: non-finite value at %zu (gpu %g, cpu %g)", what, bad < n ? bad : 0,
           got[bad < n ? bad : 0], want[bad < n ? bad : 0]);
    CHECKF(err <= max_tol * scale && nmse <= nmse_tol,
           "%s: max error %.3g at %zu (gpu %.9g cpu %.9g), scale %.3g (max_rel %.3g > %.1g?), nmse %.3g (> "
           "%.1g?)",
           what, err, at, got[at], want[at], scale, scale > 0 ? err / scale : err, max_tol, nmse, nmse_tol);
}

/* Bit-for-bit: for copies, gathers, single additions, and sums done in the same order on both sides. */
static void compare_exact(const char *what, const float *got, const float *want, size_t n) {
    size_t i = 0;
    while (i < n && memcmp(&got[i], &want[i], sizeof(float)) == 0) i++;
    CHECKF(i == n, "%s: differs at %zu: gpu %.9g, cpu %.9g (expected bit-for-bit equality)", what, i,
           i < n ? got[i] : 0.0f, i < n ? want[i] : 0.0f);
}

static void check_no_device_error(const char *after) {
    const char *e = gkd_backend_cuda_last_error();
    CHECKF(e == NULL, "CUDA error after %s: %s", after, e ? e : "");
}

/* ---------- memory ---------- */

static void test_memory(void) {
    enum { ROWS = 7, COLS = 5, LD_SRC = 9, LD_DST = 6 };
    float *src = frand(ROWS * LD_SRC, 1), *back = ffill(ROWS * LD_SRC, 0);
    float *d = dev_floats(src, ROWS * LD_SRC);
    gpu->copy_out(back, d, ROWS * LD_SRC * sizeof(float));
    compare_exact("copy_in + copy_out", back, src, ROWS * LD_SRC);
    float *d2 = gpu->alloc(ROWS * LD_SRC * sizeof(float));
    gpu->copy(d2, d, ROWS * LD_SRC * sizeof(float));
    compare_exact("copy", take_back(d2, ROWS * LD_SRC), src, ROWS * LD_SRC);

    float *dst_cpu = ffill(ROWS * LD_DST, -3), *dst_gpu_init = ffill(ROWS * LD_DST, -3);
    float *dd = dev_floats(dst_gpu_init, ROWS * LD_DST);
    cpu->copy_2d(dst_cpu, LD_DST, src, LD_SRC, ROWS, COLS);
    gpu->copy_2d(dd, LD_DST, d, LD_SRC, ROWS, COLS);
    float *dst_gpu = take_back(dd, ROWS * LD_DST);
    compare_exact("copy_2d (padding untouched)", dst_gpu, dst_cpu, ROWS * LD_DST);

    gpu->zero(d, ROWS * LD_SRC * sizeof(float));
    float *zeros = take_back(d, ROWS * LD_SRC), *want = ffill(ROWS * LD_SRC, 0);
    compare_exact("zero", zeros, want, ROWS * LD_SRC);

    /* Zero-byte allocations must still return a pointer, or callers would report out of memory. */
    void *z = gpu->alloc(0);
    CHECK(z != NULL);
    gpu->free(z);
    gpu->free(NULL);

    /* A hopeless allocation fails cleanly, with a message that names the size. */
    size_t before = gkd_backend_cuda_memory_in_use();
    void *huge = gpu->alloc((size_t)1 << 50);
    CHECK(huge == NULL);
    CHECKF(strstr(gkd_error_message(), "cudaMalloc of") && strstr(gkd_error_message(), "GiB"),
           "message was: %s", gkd_error_message());
    CHECK(gkd_backend_cuda_memory_in_use() == before);
    check_no_device_error("a failed allocation (not a device fault: the sticky error stays clear)");
    free(src), free(back), free(dst_cpu), free(dst_gpu_init), free(dst_gpu), free(zeros), free(want);
}

/* ---------- KV-cache write ---------- */

/* A copy: bit-for-bit, cache entries it must leave alone included (both sides start with the same
 * sentinels). Per-sequence start positions, the first at 0 and the second ending on the last slot; 200
 * sequences so that no per-launch limit on sequences could hide. */
static void kv_write_case(int B, int T, int KVD, int Tk) {
    const int ld_src = 2 * KVD + 7;
    const size_t N = (size_t)B * T, cache = (size_t)B * Tk * KVD;
    float *src = frand(N * ld_src, 1), *kc = ffill(cache, -7), *vc = ffill(cache, -9);
    int *pos = malloc(N * sizeof(int));
    for (int b = 0; b < B; b++) {
        int p0 = b == 0 ? 0 : b == 1 ? Tk - T : (int)gkd_rng_below(&rng, (uint32_t)(Tk - T + 1));
        for (int t = 0; t < T; t++) pos[(size_t)b * T + t] = p0 + t;
    }
    float *d_src = dev_floats(src, N * ld_src), *d_kc = dev_floats(kc, cache), *d_vc = dev_floats(vc, cache);
    int *d_pos = to_dev(pos, N * sizeof(int));
    cpu->kv_write(kc, vc, src + 5, src + 5 + KVD, ld_src, pos, B, T, KVD, (size_t)Tk * KVD);
    gpu->kv_write(d_kc, d_vc, d_src + 5, d_src + 5 + KVD, ld_src, d_pos, B, T, KVD, (size_t)Tk * KVD);
    float *gk = take_back(d_kc, cache), *gv = take_back(d_vc, cache);
    char what[96];
    snprintf(what, sizeof what, "kv_write keys B=%d T=%d KVD=%d Tk=%d", B, T, KVD, Tk);
    compare_exact(what, gk, kc, cache);
    snprintf(what, sizeof what, "kv_write values B=%d T=%d KVD=%d Tk=%d", B, T, KVD, Tk);
    compare_exact(what, gv, vc, cache);
    gpu->free(d_src);
    gpu->free(d_pos);
    free(src), free(kc), free(vc), free(gk), free(gv), free(pos);
}

static void test_kv_write(void) {
    kv_write_case(200, 1, 64, 33);
    kv_write_case(3, 5, 96, 12);
    check_no_device_error("kv_write");
}

/* ---------- matmul ---------- */

static void matmul_case(int ta, int tb, int M, int N, int K, float alpha, float beta, double max_tol,
                        double nmse_tol) {
    int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 1, ldc = N + 2;
    size_t na = (size_t)(ta ? K : M) * lda, nb = (size_t)(tb ? N : K) * ldb, nc = (size_t)M * ldc;
    float *a = frand(na, 1), *b = frand(nb, 1), *c = frand(nc, 1);
    float *da = dev_floats(a, na), *db = dev_floats(b, nb), *dc;
    if (beta == 0.0f) {
        /* beta = 0 must ignore what c held: NaN on the device, zeros for the reference */
        float *nan_c = ffill(nc, NAN);
        memset(c, 0, nc * sizeof(float));
        dc = dev_floats(nan_c, nc);
        free(nan_c);
    } else {
        dc = dev_floats(c, nc);
    }
    cpu->matmul(ta, tb, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc);
    gpu->matmul(ta, tb, M, N, K, alpha, da, lda, db, ldb, beta, dc, ldc);
    float *got = take_back(dc, nc);
    char what[96];
    snprintf(what, sizeof what, "matmul ta=%d tb=%d %dx%dx%d beta=%g", ta, tb, M, N, K, beta);
    if (beta == 0.0f) { /* the device's padding must still hold its NaN; then blank it for compare() */
        int pad_ok = 1;
        for (int i = 0; i < M; i++)
            for (int j = N; j < ldc; j++) {
                pad_ok &= isnan(got[(size_t)i * ldc + j]);
                got[(size_t)i * ldc + j] = 0.0f;
            }
        CHECKF(pad_ok, "%s: padding columns were written", what);
    }
    compare(what, got, c, nc, max_tol, nmse_tol);
    gpu->free(da), gpu->free(db);
    free(a), free(b), free(c), free(got);
}

/* batched, transposed or not. side_by_side 0: a's matrices one after another, b shared (stride 0);
 * 1: a's matrices side by side within its rows (stride one matrix row, like attention's heads), b's one
 * after another. */
static void batched_case(int t, int side_by_side, double max_tol, double nmse_tol) {
    const int M = 9, N = 11, K = 13, batch = 5;
    const int a_rows = t ? K : M, a_cols = t ? M : K;
    int lda = side_by_side ? batch * a_cols + 3 : a_cols, ldb = t ? K : N;
    size_t sa = side_by_side ? (size_t)a_cols : (size_t)a_rows * a_cols,
           sb = side_by_side ? (size_t)K * N : 0;
    size_t na = side_by_side ? (size_t)a_rows * lda : batch * sa,
           nb = (size_t)K * N * (side_by_side ? batch : 1);
    size_t sc = (size_t)M * N;
    float *a = frand(na, 1), *b = frand(nb, 1), *c = frand(batch * sc, 1);
    float *da = dev_floats(a, na), *db = dev_floats(b, nb), *dc = dev_floats(c, batch * sc);
    cpu->matmul_batched(t, t, M, N, K, 2.0f, a, lda, sa, b, ldb, sb, 1.0f, c, N, sc, batch);
    gpu->matmul_batched(t, t, M, N, K, 2.0f, da, lda, sa, db, ldb, sb, 1.0f, dc, N, sc, batch);
    float *got = take_back(dc, batch * sc);
    char what[80];
    snprintf(what, sizeof what, "matmul_batched t=%d %s", t, side_by_side ? "side by side" : "shared b");
    compare(what, got, c, batch * sc, max_tol, nmse_tol);
    gpu->free(da), gpu->free(db);
    free(a), free(b), free(c), free(got);
}

static void set_both(gkd_precision p) {
    CHECKF(gkd_backend_set_precision(cpu, p, NULL) == GKD_OK, "cpu %s: %s", gkd_precision_name(p),
           gkd_error_message());
    CHECKF(gkd_backend_set_precision(gpu, p, NULL) == GKD_OK, "cuda %s: %s", gkd_precision_name(p),
           gkd_error_message());
}

/* bf16: every transpose pair, beta 0 and not, single and batched, against the CPU's bf16 reference;
 * then proof that the operands really were rounded, and the workspace's accounting. */
static void test_matmul_bf16(void) {
    size_t before = gkd_backend_cuda_memory_in_use();
    set_both(GKD_PRECISION_BF16);
    gkd_cuda_info info;
    CHECK(gkd_backend_cuda_info(&info) == GKD_OK && info.precision == GKD_PRECISION_BF16 && !info.tf32);
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            matmul_case(ta, tb, 5, 7, 3, 1.0f, 0.0f, BF16_MAX, BF16_NMSE);
            matmul_case(ta, tb, 150, 70, 300, 0.5f, 1.0f, BF16_MAX, BF16_NMSE);
            matmul_case(ta, tb, 40, 301, 250, -1.0f, 0.0f, BF16_MAX, BF16_NMSE);
            matmul_case(ta, tb, 1, 33, 17, 1.0f, 1.0f, BF16_MAX, BF16_NMSE);
        }
    for (int t = 0; t < 2; t++)
        for (int side = 0; side < 2; side++) batched_case(t, side, BF16_MAX, BF16_NMSE);
    CHECK(gkd_backend_cuda_info(&info) == GKD_OK && info.bf16_workspace_bytes > 0);
    CHECK(gkd_backend_cuda_memory_in_use() == before + info.bf16_workspace_bytes);

    /* the same product in fp32 on the CPU: bf16's rounding must show */
    enum { M = 128, N = 96, K = 256 };
    float *a = frand(M * K, 1), *b = frand(K * N, 1), *c = ffill(M * N, 0);
    float *da = dev_floats(a, M * K), *db = dev_floats(b, K * N), *dc = dev_floats(c, M * N);
    gkd_backend_set_precision(cpu, GKD_PRECISION_FP32, NULL);
    cpu->matmul(0, 0, M, N, K, 1.0f, a, K, b, N, 0.0f, c, N);
    gpu->matmul(0, 0, M, N, K, 1.0f, da, K, db, N, 0.0f, dc, N);
    float *got = take_back(dc, M * N);
    double se = 0, sw = 0;
    for (int i = 0; i < M * N; i++)
        se += ((double)got[i] - c[i]) * ((double)got[i] - c[i]), sw += (double)c[i] * c[i];
    CHECKF(se / sw > BF16_MIN_NMSE && se / sw < 1e-3,
           "cuda bf16 vs cpu fp32: nmse %.3g (rounding not applied?)", se / sw);
    gpu->free(da), gpu->free(db);
    free(a), free(b), free(c), free(got);

    set_both(GKD_PRECISION_FP32);
    gkd_backend_cuda_free_workspace();
    CHECK(gkd_backend_cuda_info(&info) == GKD_OK && info.bf16_workspace_bytes == 0 &&
          info.precision == GKD_PRECISION_FP32);
    CHECK(gkd_backend_cuda_memory_in_use() == before);
    /* the older TF32 switch and the precision setting are one setting */
    CHECK(gkd_backend_set_precision(gpu, GKD_PRECISION_TF32, NULL) == GKD_OK);
    CHECK(gkd_backend_cuda_set_tf32(0) == 1 && gkd_backend_precision(gpu) == GKD_PRECISION_FP32);
    check_no_device_error("matmul (bf16)");
}

static void test_matmul(void) {
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            matmul_case(ta, tb, 5, 7, 3, 1.0f, 0.0f, FWD_MAX, FWD_NMSE);
            matmul_case(ta, tb, 150, 70, 300, 0.5f, 1.0f, FWD_MAX, FWD_NMSE);
            matmul_case(ta, tb, 40, 301, 250, -1.0f, 0.25f, FWD_MAX, FWD_NMSE);
            matmul_case(ta, tb, 1, 33, 17, 1.0f, 0.0f, FWD_MAX, FWD_NMSE); /* one row: decoding */
        }

    for (int t = 0; t < 2; t++)
        for (int side = 0; side < 2; side++) batched_case(t, side, FWD_MAX, FWD_NMSE);

    /* TF32 is opt-in: looser while on, exact fp32 again once off */
    int was = gkd_backend_cuda_set_tf32(1);
    CHECK(was == 0);
    matmul_case(0, 1, 256, 256, 256, 1.0f, 0.0f, TF32_MAX, TF32_NMSE);
    gkd_backend_cuda_set_tf32(0);
    matmul_case(0, 1, 256, 256, 256, 1.0f, 0.0f, FWD_MAX, FWD_NMSE);
    check_no_device_error("matmul");
}

/* ---------- embedding ---------- */

static void test_embedding(void) {
    /* V > EMB_BUCKETS and C > 128 so several buckets and column blocks run; tokens repeat */
    enum { N = 300, C = 200, V = 70 };
    int tokens[N];
    for (int n = 0; n < N; n++) tokens[n] = (int)gkd_rng_below(&rng, n % 3 ? V : 4);
    float *wte = frand(V * C, 1), *out = ffill(N * C, 7), *dout = frand(N * C, 1), *dwte = ffill(V * C, 0.5f);
    int *dtok = to_dev(tokens, sizeof tokens);
    float *dwte_d = dev_floats(wte, V * C), *dout_d = dev_floats(dout, N * C),
          *out_d = dev_floats(out, N * C);
    float *dgrad_d = dev_floats(dwte, V * C);
    cpu->embedding_forward(out, tokens, wte, N, C);
    gpu->embedding_forward(out_d, dtok, dwte_d, N, C);
    float *got = take_back(out_d, N * C);
    compare_exact("embedding_forward", got, out, N * C);
    cpu->embedding_backward(dwte, dout, tokens, N, C);
    gpu->embedding_backward(dgrad_d, dout_d, dtok, N, C);
    float *gotg = take_back(dgrad_d, V * C);
    /* each float adds its rows in row order on both sides */
    compare_exact("embedding_backward", gotg, dwte, V * C);
    gpu->free(dtok), gpu->free(dwte_d), gpu->free(dout_d);
    free(wte), free(out), free(dout), free(dwte), free(got), free(gotg);
    check_no_device_error("embedding");
}

/* ---------- rmsnorm ---------- */

static void rmsnorm_case(int N, int C) {
    float eps = 1e-5f;
    float *x = frand((size_t)N * C, 1.5f), *w = frand(C, 1), *dout = frand((size_t)N * C, 1);
    float *out = ffill((size_t)N * C, 0), *rstd = ffill(N, 0), *dx = ffill((size_t)N * C, 0.5f),
          *dw = ffill(C, 0.5f);
    float *x_d = dev_floats(x, (size_t)N * C), *w_d = dev_floats(w, C),
          *dout_d = dev_floats(dout, (size_t)N * C);
    float *out_d = dev_floats(out, (size_t)N * C), *rstd_d = dev_floats(rstd, N);
    float *dx_d = dev_floats(dx, (size_t)N * C), *dw_d = dev_floats(dw, C);
    cpu->rmsnorm_forward(out, rstd, x, w, N, C, eps);
    gpu->rmsnorm_forward(out_d, rstd_d, x_d, w_d, N, C, eps);
    /* the backward of each side runs on its own forward's rstd, as in a model */
    cpu->rmsnorm_backward(dx, dw, dout, x, w, rstd, N, C);
    gpu->rmsnorm_backward(dx_d, dw_d, dout_d, x_d, w_d, rstd_d, N, C);
    char what[64];
    float *got;
    snprintf(what, sizeof what, "rmsnorm_forward N=%d C=%d", N, C);
    compare(what, got = take_back(out_d, (size_t)N * C), out, (size_t)N * C, FWD_MAX, FWD_NMSE), free(got);
    snprintf(what, sizeof what, "rmsnorm_forward rstd N=%d C=%d", N, C);
    compare(what, got = take_back(rstd_d, N), rstd, N, FWD_MAX, FWD_NMSE), free(got);
    snprintf(what, sizeof what, "rmsnorm_backward dinp N=%d C=%d", N, C);
    compare(what, got = take_back(dx_d, (size_t)N * C), dx, (size_t)N * C, BWD_MAX, BWD_NMSE), free(got);
    snprintf(what, sizeof what, "rmsnorm_backward dweight N=%d C=%d", N, C);
    compare(what, got = take_back(dw_d, C), dw, C, BWD_MAX, BWD_NMSE), free(got);
    gpu->free(x_d), gpu->free(w_d), gpu->free(dout_d);
    free(x), free(w), free(dout), free(out), free(rstd), free(dx), free(dw);
}

static void test_rmsnorm(void) {
    rmsnorm_case(5, 24);
    rmsnorm_case(37, 300);  /* C > block size: each thread loops */
    rmsnorm_case(1000, 70); /* N > 32 lanes of the dweight kernel, C not a multiple of 32 */
    check_no_device_error("rmsnorm");
}

/* ---------- rope ---------- */

static void test_rope(void) {
    enum { N = 20, H = 6, D = 16, LD = H * D + 32, MAX_POS = 50 };
    int half = D / 2, pos[N];
    for (int n = 0; n < N; n++) pos[n] = (int)gkd_rng_below(&rng, MAX_POS);
    float *cos_tab = malloc(sizeof(float) * MAX_POS * half),
          *sin_tab = malloc(sizeof(float) * MAX_POS * half);
    for (int p = 0; p < MAX_POS; p++)
        for (int i = 0; i < half; i++) {
            double f = p * pow(10000.0, -2.0 * i / D);
            cos_tab[p * half + i] = (float)cos(f), sin_tab[p * half + i] = (float)sin(f);
        }
    float *x = frand(N * LD, 1), *dx = frand(N * LD, 1);
    int *pos_d = to_dev(pos, sizeof pos);
    float *cos_d = dev_floats(cos_tab, MAX_POS * half), *sin_d = dev_floats(sin_tab, MAX_POS * half);
    float *x_d = dev_floats(x, N * LD), *dx_d = dev_floats(dx, N * LD);
    cpu->rope_forward(x, pos, cos_tab, sin_tab, N, H, D, LD);
    gpu->rope_forward(x_d, pos_d, cos_d, sin_d, N, H, D, LD);
    cpu->rope_backward(dx, pos, cos_tab, sin_tab, N, H, D, LD);
    gpu->rope_backward(dx_d, pos_d, cos_d, sin_d, N, H, D, LD);
    float *got = take_back(x_d, N * LD);
    compare("rope_forward (columns past the heads untouched)", got, x, N * LD, ROUNDING_MAX, ROUNDING_NMSE);
    free(got);
    got = take_back(dx_d, N * LD);
    compare("rope_backward", got, dx, N * LD, ROUNDING_MAX, ROUNDING_NMSE);
    free(got);
    gpu->free(pos_d), gpu->free(cos_d), gpu->free(sin_d);
    free(cos_tab), free(sin_tab), free(x), free(dx);
    check_no_device_error("rope");
}

/* ---------- attention ---------- */

/* One attention case in either layout: fused (q,k,v interleaved in rows of W, keys at the queries' own
 * positions, as in training) or cached (separate K/V buffers of Tk slots per sequence). att and datt
 * start filled with the same constant on both sides: entries past each row's keys must keep it. */
static void attention_case(const char *label, int B, int T, int H, int KV, int D, int Tk, const int *pos0,
                           int fused) {
    const int QD = H * D, KVD = KV * D, W = QD + 2 * KVD;
    gkd_attn_dims d = {.B = B, .T = T, .n_heads = H, .n_kv_heads = KV, .head_dim = D, .Tk = Tk};
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
    size_t nout = (size_t)B * T * QD, natt = (size_t)B * H * T * Tk;
    /* fused: q, k, v all live in qbuf (k = qbuf + QD, v = qbuf + QD + KVD); cached: three buffers */
    float *qbuf = frand(nq, 1), *kbuf = fused ? NULL : frand(nkv, 1), *vbuf = fused ? NULL : frand(nkv, 1);
    float *out = ffill(nout, 0), *att = ffill(natt, 3.0f), *datt = ffill(natt, 3.0f), *dout = frand(nout, 1);
    float *dq = ffill(nq, 0.5f), *dk = fused ? NULL : ffill(nkv, 0.5f), *dv = fused ? NULL : ffill(nkv, 0.5f);
    float *qbuf_d = dev_floats(qbuf, nq), *kbuf_d = fused ? NULL : dev_floats(kbuf, nkv);
    float *vbuf_d = fused ? NULL : dev_floats(vbuf, nkv);
    float *out_d = dev_floats(out, nout), *att_d = dev_floats(att, natt), *datt_d = dev_floats(datt, natt);
    float *dout_d = dev_floats(dout, nout), *dq_d = dev_floats(dq, nq);
    float *dk_d = fused ? NULL : dev_floats(dk, nkv), *dv_d = fused ? NULL : dev_floats(dv, nkv);
    const float *q = qbuf, *k = fused ? qbuf + QD : kbuf, *v = fused ? qbuf + QD + KVD : vbuf;
    const float *q_d = qbuf_d, *k_d = fused ? qbuf_d + QD : kbuf_d, *v_d = fused ? qbuf_d + QD + KVD : vbuf_d;
    float *gq = dq, *gk = fused ? dq + QD : dk, *gv = fused ? dq + QD + KVD : dv;
    float *gq_d = dq_d, *gk_d = fused ? dq_d + QD : dk_d, *gv_d = fused ? dq_d + QD + KVD : dv_d;

    cpu->attention_forward(out, att, q, k, v, pos0, &d);
    gpu->attention_forward(out_d, att_d, q_d, k_d, v_d, pos0, &d);
    cpu->attention_backward(gq, gk, gv, datt, dout, att, q, k, v, pos0, &d);
    gpu->attention_backward(gq_d, gk_d, gv_d, datt_d, dout_d, att_d, q_d, k_d, v_d, pos0, &d);

    char what[160];
    float *got;
    snprintf(what, sizeof what, "attention_forward out (%s)", label);
    compare(what, got = take_back(out_d, nout), out, nout, FWD_MAX, FWD_NMSE), free(got);
    snprintf(what, sizeof what, "attention_forward att (%s)", label);
    compare(what, got = take_back(att_d, natt), att, natt, FWD_MAX, FWD_NMSE), free(got);
    snprintf(what, sizeof what, "attention_backward datt (%s)", label);
    compare(what, got = take_back(datt_d, natt), datt, natt, BWD_MAX, BWD_NMSE), free(got);
    snprintf(what, sizeof what, "attention_backward %s (%s)", fused ? "dq,dk,dv" : "dq", label);
    compare(what, got = take_back(dq_d, nq), dq, nq, BWD_MAX, BWD_NMSE), free(got);
    if (!fused) {
        snprintf(what, sizeof what, "attention_backward dk (%s)", label);
        compare(what, got = take_back(dk_d, nkv), dk, nkv, BWD_MAX, BWD_NMSE), free(got);
        snprintf(what, sizeof what, "attention_backward dv (%s)", label);
        compare(what, got = take_back(dv_d, nkv), dv, nkv, BWD_MAX, BWD_NMSE), free(got);
    }
    gpu->free(qbuf_d), gpu->free(kbuf_d), gpu->free(vbuf_d), gpu->free(dout_d);
    free(qbuf), free(kbuf), free(vbuf), free(out), free(att), free(datt), free(dout), free(dq), free(dk),
        free(dv);
    snprintf(what, sizeof what, "attention (%s)", label);
    check_no_device_error(what);
}

/* The same backward twice gives the same bits: nothing in it depends on scheduling. */
static void test_attention_deterministic(void) {
    enum { B = 2, T = 33, H = 4, KV = 2, D = 16, QD = H * D, W = QD + 2 * KV * D };
    gkd_attn_dims d = {.B = B,
                       .T = T,
                       .n_heads = H,
                       .n_kv_heads = KV,
                       .head_dim = D,
                       .Tk = T,
                       .ld_q = W,
                       .ld_kv = W,
                       .ld_out = QD,
                       .bs_q = (size_t)T * W,
                       .bs_kv = (size_t)T * W,
                       .bs_out = (size_t)T * QD};
    size_t nq = (size_t)B * T * W, nout = (size_t)B * T * QD, natt = (size_t)B * H * T * T;
    float *qkv = frand(nq, 1), *dout = frand(nout, 1), *zeros = ffill(nq, 0);
    float *qkv_d = dev_floats(qkv, nq), *dout_d = dev_floats(dout, nout), *out_d = gpu->alloc(nout * 4);
    float *att_d = gpu->alloc(natt * 4), *datt_d = gpu->alloc(natt * 4);
    float *runs[2];
    for (int i = 0; i < 2; i++) {
        float *g_d = dev_floats(zeros, nq);
        gpu->attention_forward(out_d, att_d, qkv_d, qkv_d + QD, qkv_d + QD + KV * D, NULL, &d);
        gpu->attention_backward(g_d, g_d + QD, g_d + QD + KV * D, datt_d, dout_d, att_d, qkv_d, qkv_d + QD,
                                qkv_d + QD + KV * D, NULL, &d);
        runs[i] = take_back(g_d, nq);
    }
    compare_exact("attention_backward run twice", runs[1], runs[0], nq);
    gpu->free(qkv_d), gpu->free(dout_d), gpu->free(out_d), gpu->free(att_d), gpu->free(datt_d);
    free(qkv), free(dout), free(zeros), free(runs[0]), free(runs[1]);
}

static void test_attention(void) {
    /* training layout (pos0 NULL), T above the row kernel's limit: the batched-GEMM path, one cuBLAS call
     * per head batched over the sequences where n_heads <= B * group (gkd_cuda_attn_plan_make), else one
     * per (sequence, head within group) batched over the key/value heads */
    attention_case("fused B=2 T=24 H=4 KV=2 (per head)", 2, 24, 4, 2, 8, 24, NULL, 1);
    attention_case("fused B=3 T=40 H=6 KV=6 D=32 (per sequence)", 3, 40, 6, 6, 32, 40, NULL, 1);
    attention_case("fused B=8 T=40 H=6 KV=6 D=16 (per head)", 8, 40, 6, 6, 16, 40, NULL, 1);
    /* the same start for every sequence (a prefill of equal-length prompts): per head with p0 > 0 */
    int same[4] = {6, 6, 6, 6};
    attention_case("cached B=4 T=12 Tk=32 pos0 all 6 (per head)", 4, 12, 6, 2, 4, 32, same, 0);
    /* softmax rows of more than 4 * 256 keys (16 registers per thread) and more than 16 * 256 (loops) */
    attention_case("fused B=1 T=1100 H=2 KV=1 (softmax 16 per thread)", 1, 1100, 2, 1, 8, 1100, NULL, 1);
    int long_pos0[2] = {1500, 2}, longer_pos0[2] = {4150, 3};
    attention_case("cached B=2 T=9 Tk=1600 (softmax 16 per thread)", 2, 9, 2, 1, 8, 1600, long_pos0, 0);
    attention_case("cached B=2 T=9 Tk=4200 (softmax loops)", 2, 9, 2, 1, 8, 4200, longer_pos0, 0);
    /* more sequences than one cuBLAS batch takes (GKD_CUDA_MAX_BATCH = 32768): B * heads > 65535 too */
    attention_case("fused B=32773 T=9 H=2 KV=1 (batches split)", GKD_CUDA_MAX_BATCH + 5, 9, 2, 1, 4, 9, NULL,
                   1);
    /* few queries (T <= 8): the fused row kernel */
    attention_case("fused B=2 T=5 H=4 KV=1 (row kernel)", 2, 5, 4, 1, 8, 5, NULL, 1);
    /* cached layout with per-sequence start positions, both paths */
    int pos0[3] = {0, 7, 3};
    attention_case("cached B=3 T=5 Tk=32 (row kernel)", 3, 5, 6, 2, 4, 32, pos0, 0);
    attention_case("cached B=3 T=12 Tk=32 (GEMM path)", 3, 12, 6, 2, 4, 32, pos0, 0);
    /* decoding: one query per sequence, more sequences than one launch takes (POS_CHUNK = 128) */
    enum { BIG_B = 130, TK = 12 };
    int big_pos0[BIG_B];
    for (int b = 0; b < BIG_B; b++) big_pos0[b] = (int)gkd_rng_below(&rng, TK);
    attention_case("cached decode B=130 T=1", BIG_B, 1, 2, 1, 8, TK, big_pos0, 0);
    for (int b = 0; b < BIG_B; b++) big_pos0[b] = (int)gkd_rng_below(&rng, TK - 9 + 1);
    attention_case("cached B=130 T=9 (GEMM path, chunked softmax)", BIG_B, 9, 2, 1, 8, TK, big_pos0, 0);
    test_attention_deterministic();
}

/* ---------- swiglu, residual ---------- */

static void test_swiglu(void) {
    enum { N = 33, F = 70, LD = 2 * F };
    float *gu = frand(N * LD, 2), *dout = frand(N * F, 1), *out = ffill(N * F, 0), *dgu = ffill(N * LD, 0.5f);
    float *gu_d = dev_floats(gu, N * LD), *dout_d = dev_floats(dout, N * F), *out_d = dev_floats(out, N * F);
    float *dgu_d = dev_floats(dgu, N * LD);
    cpu->swiglu_forward(out, gu, gu + F, N, F, LD);
    gpu->swiglu_forward(out_d, gu_d, gu_d + F, N, F, LD);
    cpu->swiglu_backward(dgu, dgu + F, dout, gu, gu + F, N, F, LD);
    gpu->swiglu_backward(dgu_d, dgu_d + F, dout_d, gu_d, gu_d + F, N, F, LD);
    float *got;
    /* expf within 2 ulp plus FMA: a few roundings, no reduction */
    compare("swiglu_forward", got = take_back(out_d, N * F), out, N * F, FWD_MAX, FWD_NMSE), free(got);
    compare("swiglu_backward", got = take_back(dgu_d, N * LD), dgu, N * LD, FWD_MAX, FWD_NMSE), free(got);
    gpu->free(gu_d), gpu->free(dout_d);
    free(gu), free(dout), free(out), free(dgu);
    check_no_device_error("swiglu");
}

static void test_residual(void) {
    enum { N = 100003 }; /* not a multiple of the block size */
    float *a = frand(N, 1), *b = frand(N, 1), *dout = frand(N, 1), *da = frand(N, 1), *db = frand(N, 1);
    float *a_d = dev_floats(a, N), *b_d = dev_floats(b, N), *dout_d = dev_floats(dout, N);
    float *da_d = dev_floats(da, N), *db_d = dev_floats(db, N);
    cpu->residual_forward(a, a, b, N); /* out aliasing a, as the model's in-place stream does */
    gpu->residual_forward(a_d, a_d, b_d, N);
    cpu->residual_backward(da, db, dout, N);
    gpu->residual_backward(da_d, db_d, dout_d, N);
    float *got;
    compare_exact("residual_forward (in place)", got = take_back(a_d, N), a, N), free(got);
    compare_exact("residual_backward da", got = take_back(da_d, N), da, N), free(got);
    compare_exact("residual_backward db", got = take_back(db_d, N), db, N), free(got);
    gpu->free(b_d), gpu->free(dout_d);
    free(a), free(b), free(dout), free(da), free(db);
    check_no_device_error("residual");
}

/* ---------- cross-entropy ---------- */

static void test_crossentropy(void) {
    enum { N = 9, V = 1000 };
    float *logits = frand(N * V, 3), weights[N], *loss = ffill(N, 5), *lse = ffill(N, 5);
    int targets[N];
    for (int n = 0; n < N; n++) {
        weights[n] = n % 4 == 1 ? 0.0f : 0.1f * (n + 1);
        /* a row of weight 0 has its target unread: make a read show up as a fault */
        targets[n] = weights[n] == 0.0f ? -1000000 : (int)gkd_rng_below(&rng, V);
    }
    float *logits_d = dev_floats(logits, N * V), *w_d = dev_floats(weights, N);
    float *loss_d = dev_floats(loss, N), *lse_d = dev_floats(lse, N);
    int *t_d = to_dev(targets, sizeof targets);
    cpu->crossentropy_forward(loss, lse, logits, targets, weights, N, V);
    gpu->crossentropy_forward(loss_d, lse_d, logits_d, t_d, w_d, N, V);
    /* in place, as the model calls it: dlogits aliases logits */
    cpu->crossentropy_backward(logits, logits, lse, targets, weights, N, V);
    gpu->crossentropy_backward(logits_d, logits_d, lse_d, t_d, w_d, N, V);
    float *got;
    compare("crossentropy_forward loss", got = take_back(loss_d, N), loss, N, FWD_MAX, FWD_NMSE), free(got);
    compare("crossentropy_forward lse", got = take_back(lse_d, N), lse, N, FWD_MAX, FWD_NMSE), free(got);
    /* softmax probabilities through expf(x - lse): forward-sized differences */
    compare("crossentropy_backward (in place)", got = take_back(logits_d, N * V), logits, N * V, FWD_MAX,
            FWD_NMSE),
        free(got);
    gpu->free(w_d), gpu->free(t_d);
    free(logits), free(loss), free(lse);
    check_no_device_error("crossentropy");
}

/* More than 2^32 floats in one buffer: row offsets and grid-stride indices past 2^32 must be 64-bit. The
 * bulk is zeros (its rows are known in closed form: lse = log V), the last rows random and checked
 * against the CPU; sumsq runs over the whole buffer. Needs ~17 GiB of device memory, else it says so and
 * checks nothing. */
static void test_large_rows(void) {
    enum { V = 32768, TAIL = 3 };
    const int N = (int)(((size_t)1 << 32) / V) + TAIL;
    const size_t n = (size_t)N * V, bytes = n * sizeof(float);
    gkd_cuda_info info;
    if (gkd_backend_cuda_info(&info) != GKD_OK || info.free_bytes < bytes + ((size_t)2 << 30)) {
        fprintf(stderr, "test_large_rows: not run (needs %.1f GiB free, device has %.1f GiB)\n",
                (double)bytes / (1 << 30), (double)info.free_bytes / (1 << 30));
        return;
    }
    float *logits_d = gpu->alloc(bytes);
    CHECK(logits_d != NULL);
    if (!logits_d) return;
    float *tail = frand((size_t)TAIL * V, 3), *weights = ffill(N, 1.0f);
    int *targets = malloc((size_t)N * sizeof *targets);
    for (int i = 0; i < N; i++) targets[i] = (int)gkd_rng_below(&rng, V);
    gpu->zero(logits_d, bytes);
    gpu->copy_in(logits_d + (size_t)(N - TAIL) * V, tail, (size_t)TAIL * V * sizeof(float));
    float *w_d = dev_floats(weights, N), *loss_d = gpu->alloc((size_t)N * 4),
          *lse_d = gpu->alloc((size_t)N * 4);
    int *t_d = to_dev(targets, (size_t)N * sizeof *targets);

    double want_ss = cpu->sumsq(tail, (size_t)TAIL * V), got_ss = gpu->sumsq(logits_d, n);
    CHECKF(fabs(got_ss - want_ss) <= 1e-10 * want_ss, "sumsq over %zu floats: gpu %.17g, cpu %.17g", n,
           got_ss, want_ss);

    gpu->crossentropy_forward(loss_d, lse_d, logits_d, t_d, w_d, N, V);
    gpu->crossentropy_backward(logits_d, logits_d, lse_d, t_d, w_d, N, V);
    float loss[TAIL], lse[TAIL], head[2];
    cpu->crossentropy_forward(loss, lse, tail, targets + N - TAIL, weights, TAIL, V);
    cpu->crossentropy_backward(tail, tail, lse, targets + N - TAIL, weights, TAIL, V);
    float *got = malloc((size_t)TAIL * V * sizeof(float));
    gpu->copy_out(got, lse_d + N - TAIL, sizeof lse);
    compare("crossentropy lse, rows past 2^32 floats", got, lse, TAIL, FWD_MAX, FWD_NMSE);
    gpu->copy_out(got, loss_d + N - TAIL, sizeof loss);
    compare("crossentropy loss, rows past 2^32 floats", got, loss, TAIL, FWD_MAX, FWD_NMSE);
    gpu->copy_out(got, logits_d + (size_t)(N - TAIL) * V, (size_t)TAIL * V * sizeof(float));
    compare("crossentropy_backward, rows past 2^32 floats", got, tail, (size_t)TAIL * V, FWD_MAX, FWD_NMSE);
    /* a zero row in the bulk: lse = log V exactly up to rounding */
    gpu->copy_out(head, lse_d + N / 2, sizeof head);
    CHECKF(fabs(head[0] - logf((float)V)) < 1e-5f && fabs(head[1] - logf((float)V)) < 1e-5f,
           "lse of a zero row: %.9g, want %.9g", head[0], logf((float)V));
    gpu->free(logits_d), gpu->free(w_d), gpu->free(loss_d), gpu->free(lse_d), gpu->free(t_d);
    free(tail), free(weights), free(targets), free(got);
    check_no_device_error("large rows");
}

/* ---------- adamw, sumsq ---------- */

static void test_adamw(void) {
    enum { N = 10007 };
    float *p = frand(N, 1), *m = ffill(N, 0), *v = ffill(N, 0);
    float *p_d = dev_floats(p, N), *m_d = dev_floats(m, N), *v_d = dev_floats(v, N);
    for (int t = 1; t <= 3; t++) {
        float *g = frand(N, 0.1f);
        float *g_d = dev_floats(g, N);
        cpu->adamw_update(p, g, m, v, N, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 0.5f, t);
        gpu->adamw_update(p_d, g_d, m_d, v_d, N, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 0.5f, t);
        gpu->free(g_d);
        free(g);
    }
    float *got;
    /* elementwise, IEEE division and sqrt on both sides: only FMA contraction differs */
    compare("adamw param", got = take_back(p_d, N), p, N, ROUNDING_MAX, ROUNDING_NMSE), free(got);
    compare("adamw m", got = take_back(m_d, N), m, N, ROUNDING_MAX, ROUNDING_NMSE), free(got);
    compare("adamw v", got = take_back(v_d, N), v, N, ROUNDING_MAX, ROUNDING_NMSE), free(got);
    free(p), free(m), free(v);
    check_no_device_error("adamw");
}

static void test_sumsq(void) {
    size_t sizes[] = {1, 255, 1000003};
    for (int i = 0; i < 3; i++) {
        size_t n = sizes[i];
        float *x = frand(n, 1);
        float *x_d = dev_floats(x, n);
        double want = cpu->sumsq(x, n), got = gpu->sumsq(x_d, n), again = gpu->sumsq(x_d, n);
        /* both sum float squares in double, in different orders: ~n * 1e-16 relative at worst */
        CHECKF(fabs(got - want) <= 1e-10 * want, "sumsq n=%zu: gpu %.17g cpu %.17g", n, got, want);
        CHECKF(memcmp(&got, &again, sizeof got) == 0, "sumsq n=%zu not repeatable: %.17g then %.17g", n, got,
               again);
        gpu->free(x_d);
        free(x);
    }
    CHECK(gpu->sumsq(NULL, 0) == 0.0);
    check_no_device_error("sumsq");
}

int main(void) {
    if (gkd_backend_cuda_device_count() == 0) check_skip("no CUDA device");
    gpu = gkd_backend_cuda();
    if (!gpu) {
        fprintf(stderr, "a CUDA device is present but the backend failed: %s\n", gkd_error_message());
        return 1;
    }
    cpu = gkd_backend_cpu();
    gkd_rng_init(&rng, 1234, GKD_RNG_STREAM_USER);
    gkd_backend_cuda_free_workspace(); /* freed at the end too: workspaces are not in base */
    size_t base = gkd_backend_cuda_memory_in_use();
    test_memory();
    test_kv_write();
    test_matmul();
    test_matmul_bf16();
    test_embedding();
    test_rmsnorm();
    test_rope();
    test_attention();
    /* attention's own products stay fp32 in bf16 precision, on both backends: the fp32 thresholds hold */
    set_both(GKD_PRECISION_BF16);
    test_attention();
    set_both(GKD_PRECISION_FP32);
    test_swiglu();
    test_residual();
    test_crossentropy();
    test_adamw();
    test_sumsq();
    test_large_rows();
    /* every test frees what it allocated: the accounting must be back where it started, once the backend's
     * own workspaces (bf16 operands, attention's pointer arrays) are given back */
    gkd_backend_cuda_free_workspace();
    CHECKF(gkd_backend_cuda_memory_in_use() == base, "%zu bytes still allocated",
           gkd_backend_cuda_memory_in_use() - base);
    CHECK(gkd_backend_cuda_sync() == GKD_OK);
    check_no_device_error("all ops");
    return check_exit();
}
