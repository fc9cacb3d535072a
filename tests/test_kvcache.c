/* KV-cache decoding against full forwards: a batch of right-padded prompts of different lengths is
 * prefilled in one pass, then each row continues at its own position, one token at a time and then two at
 * a time; at every step the logits must equal those of a full no-cache forward over that row's whole
 * prefix, max abs difference <= 1e-5. Both are fp32 through the same ops and differ only in summation
 * order and blocking: ~1e-6 on logits up to ~3 with the weights below (std 0.2, big enough that attention
 * is far from uniform, so a wrong position or a stale cache entry shows as ~1e-2 or more). Also: the
 * device-logits variant returns the host variant's logits bit for bit; a cache serves a call of fewer rows;
 * the model's own cache is reused while it fits and grows to the larger shape when it does not; a prefill
 * and a decoding step take as many backend calls on 16 rows as on 1. */
// ctest-labels: cpu
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/tensor/backend.h"
#include "core/tensor/model.h"
#include "core/base/rng.h"
#include "tests/check.h"

enum { V = 37, C = 16, B = 3, P = 7, STEPS = 6, MAX_T = 20 };
static const double TOL = 1e-5;

static gkd_model *make_model_on(const gkd_backend *be) {
    gkd_model_config cfg = {.vocab_size = V,
                            .dim = C,
                            .n_layers = 2,
                            .n_heads = 4,
                            .n_kv_heads = 2,
                            .hidden_dim = 24,
                            .max_seq_len = 32,
                            .rope_theta = 10000.0f,
                            .norm_eps = 1e-5f};
    gkd_model *m = NULL;
    if (gkd_model_create(&cfg, be, &m)) {
        fprintf(stderr, "create: %s\n", gkd_error_message());
        exit(1);
    }
    gkd_rng rng;
    gkd_rng_init(&rng, 21, GKD_RNG_STREAM_USER);
    float *p = gkd_model_params(m);
    for (int i = 0; i < gkd_model_num_tensors(m); i++) {
        const gkd_tensor_info *t = gkd_model_tensor(m, i);
        for (size_t j = 0; j < t->numel; j++)
            p[t->offset + j] = t->is_norm ? 1.0f + 0.1f * gkd_rng_normal(&rng) : 0.2f * gkd_rng_normal(&rng);
    }
    return m;
}

static gkd_model *make_model(void) {
    return make_model_on(gkd_backend_cpu());
}

/* ---------- backend calls per step ----------
 * The CPU table with every entry counting its calls: on a GPU each call is at least one launch or copy, so
 * a decoding step must take a fixed number of them whatever the batch (per-row copies made it 2 B per
 * layer). */
static long calls;
static gkd_backend counted;

#define COUNT_VOID(name, params, args)                                                                       \
    static void counted_##name params {                                                                      \
        calls++;                                                                                             \
        gkd_backend_cpu()->name args;                                                                        \
    }
#define COUNT_RET(ret, name, params, args)                                                                   \
    static ret counted_##name params {                                                                       \
        calls++;                                                                                             \
        return gkd_backend_cpu()->name args;                                                                 \
    }
COUNT_RET(void *, alloc, (size_t n), (n))
COUNT_VOID(free, (void *p), (p))
COUNT_VOID(zero, (void *p, size_t n), (p, n))
COUNT_VOID(copy_in, (void *d, const void *s, size_t n), (d, s, n))
COUNT_VOID(copy_out, (void *d, const void *s, size_t n), (d, s, n))
COUNT_VOID(copy, (void *d, const void *s, size_t n), (d, s, n))
COUNT_VOID(copy_2d, (float *d, int ldd, const float *s, int lds, int r, int c), (d, ldd, s, lds, r, c))
COUNT_VOID(matmul,
           (int ta, int tb, int M, int N, int K, float al, const float *a, int lda, const float *b, int ldb,
            float be, float *c, int ldc),
           (ta, tb, M, N, K, al, a, lda, b, ldb, be, c, ldc))
COUNT_VOID(matmul_batched,
           (int ta, int tb, int M, int N, int K, float al, const float *a, int lda, size_t sa, const float *b,
            int ldb, size_t sb, float be, float *c, int ldc, size_t sc, int n),
           (ta, tb, M, N, K, al, a, lda, sa, b, ldb, sb, be, c, ldc, sc, n))
COUNT_VOID(embedding_forward, (float *o, const int *t, const float *w, int N, int C), (o, t, w, N, C))
COUNT_VOID(embedding_backward, (float *d, const float *o, const int *t, int N, int C), (d, o, t, N, C))
COUNT_VOID(rmsnorm_forward, (float *o, float *r, const float *i, const float *w, int N, int C, float e),
           (o, r, i, w, N, C, e))
COUNT_VOID(rmsnorm_backward,
           (float *di, float *dw, const float *d, const float *i, const float *w, const float *r, int N,
            int C),
           (di, dw, d, i, w, r, N, C))
COUNT_VOID(rope_forward,
           (float *x, const int *p, const float *c, const float *s, int N, int H, int D, int ld),
           (x, p, c, s, N, H, D, ld))
COUNT_VOID(rope_backward,
           (float *x, const int *p, const float *c, const float *s, int N, int H, int D, int ld),
           (x, p, c, s, N, H, D, ld))
COUNT_VOID(kv_write,
           (float *kc, float *vc, const float *k, const float *v, int ld, const int *p, int B, int T, int KVD,
            size_t bs),
           (kc, vc, k, v, ld, p, B, T, KVD, bs))
COUNT_VOID(attention_forward,
           (float *o, float *a, const float *q, const float *k, const float *v, const int *p,
            const gkd_attn_dims *d),
           (o, a, q, k, v, p, d))
COUNT_VOID(attention_backward,
           (float *dq, float *dk, float *dv, float *da, const float *d, const float *a, const float *q,
            const float *k, const float *v, const int *p, const gkd_attn_dims *dims),
           (dq, dk, dv, da, d, a, q, k, v, p, dims))
COUNT_VOID(swiglu_forward, (float *o, const float *g, const float *u, int N, int F, int ld),
           (o, g, u, N, F, ld))
COUNT_VOID(swiglu_backward,
           (float *dg, float *du, const float *d, const float *g, const float *u, int N, int F, int ld),
           (dg, du, d, g, u, N, F, ld))
COUNT_VOID(residual_forward, (float *o, const float *a, const float *b, size_t n), (o, a, b, n))
COUNT_VOID(residual_backward, (float *da, float *db, const float *d, size_t n), (da, db, d, n))
COUNT_VOID(crossentropy_forward,
           (float *l, float *s, const float *x, const int *t, const float *w, int N, int V),
           (l, s, x, t, w, N, V))
COUNT_VOID(crossentropy_backward,
           (float *d, const float *x, const float *s, const int *t, const float *w, int N, int V),
           (d, x, s, t, w, N, V))
COUNT_VOID(adamw_update,
           (float *p, const float *g, float *m, float *v, size_t n, float lr, float b1, float b2, float e,
            float wd, float gs, int64_t t),
           (p, g, m, v, n, lr, b1, b2, e, wd, gs, t))
COUNT_RET(double, sumsq, (const float *x, size_t n), (x, n))

static const gkd_backend *counting_backend(void) {
    counted = *gkd_backend_cpu(); /* name and precision entries as the CPU's */
#define SET(name) counted.name = counted_##name
    SET(alloc);
    SET(free);
    SET(zero);
    SET(copy_in);
    SET(copy_out);
    SET(copy);
    SET(copy_2d);
    SET(matmul);
    SET(matmul_batched);
    SET(embedding_forward);
    SET(embedding_backward);
    SET(rmsnorm_forward);
    SET(rmsnorm_backward);
    SET(rope_forward);
    SET(rope_backward);
    SET(kv_write);
    SET(attention_forward);
    SET(attention_backward);
    SET(swiglu_forward);
    SET(swiglu_backward);
    SET(residual_forward);
    SET(residual_backward);
    SET(crossentropy_forward);
    SET(crossentropy_backward);
    SET(adamw_update);
    SET(sumsq);
#undef SET
    return &counted;
}

/* Backend calls of a prefill (prompts of P tokens, logits kept at each row's last) and of one decoding step
 * over `rows` rows, on the counting backend. The first, warm-up pass makes every buffer; the counted pass
 * then reuses them. */
static void calls_per_step(gkd_model *m, int rows, long *prefill, long *step) {
    enum { ROWS_MAX = 16 };
    int prompts[ROWS_MAX * P], at[ROWS_MAX], pos0[ROWS_MAX], tok[ROWS_MAX];
    float logits[ROWS_MAX * V];
    for (int i = 0; i < rows * P; i++) prompts[i] = (i * 7 + 3) % V;
    for (int b = 0; b < rows; b++) at[b] = 1 + b % (P - 1), tok[b] = (b * 5 + 1) % V;
    gkd_kv_cache *c = NULL;
    CHECK(gkd_kv_cache_create(m, rows, MAX_T, &c) == GKD_OK);
    for (int pass = 0; pass < 2; pass++) {
        for (int b = 0; b < rows; b++) pos0[b] = 0;
        long before = calls;
        CHECK(gkd_model_forward_cached_at(m, c, prompts, pos0, rows, P, at, logits) == GKD_OK);
        *prefill = calls - before;
        for (int b = 0; b < rows; b++) pos0[b] = at[b] + 1, at[b] = 0;
        before = calls;
        CHECK(gkd_model_forward_cached_at(m, c, tok, pos0, rows, 1, at, logits) == GKD_OK);
        *step = calls - before;
        for (int b = 0; b < rows; b++) at[b] = 1 + b % (P - 1);
    }
    gkd_kv_cache_free(c);
}

static void test_calls_per_step(void) {
    gkd_model *m = make_model_on(counting_backend());
    const int n_layers = gkd_model_get_config(m)->n_layers;
    long prefill1, step1, prefill16, step16;
    calls_per_step(m, 1, &prefill1, &step1);
    calls_per_step(m, 16, &prefill16, &step16);
    fprintf(stderr,
            "backend calls, %d layers: prefill %ld (1 row) %ld (16 rows); decoding step %ld (1 row) %ld "
            "(16 rows)\n",
            n_layers, prefill1, prefill16, step1, step16);
    CHECKF(step16 == step1, "a decoding step takes %ld backend calls on 16 rows, %ld on 1", step16, step1);
    CHECKF(prefill16 == prefill1, "a prefill takes %ld backend calls on 16 rows, %ld on 1", prefill16,
           prefill1);
    /* one copy in, the embedding, 12 ops per layer, the final norm and head, the copy out */
    CHECKF(step1 <= 5 + 12 * n_layers, "a decoding step takes %ld backend calls", step1);
    gkd_model_free(m);
}

/* Logits of the last position of a full no-cache forward over seq[0..len). */
static void full_last_logits(gkd_model *m, const int *seq, int len, double *out) {
    const float *hidden = NULL;
    if (gkd_model_forward_nograd(m, seq, 1, len, &hidden)) {
        fprintf(stderr, "forward: %s\n", gkd_error_message());
        exit(1);
    }
    const float *w = gkd_model_output_weight(m), *h = hidden + (size_t)(len - 1) * C;
    for (int v = 0; v < V; v++) {
        double s = 0;
        for (int c = 0; c < C; c++) s += (double)h[c] * w[v * C + c];
        out[v] = s;
    }
}

static double logit_scale;

static double max_diff(const float *a, const double *b, int n) {
    double d = 0;
    for (int i = 0; i < n; i++) d = fmax(d, fabs(a[i] - b[i])), logit_scale = fmax(logit_scale, fabs(b[i]));
    return d;
}

int main(void) {
    gkd_model *m = make_model();
    const int lens[B] = {5, 2, 7};
    int seqs[B][MAX_T];
    for (int b = 0; b < B; b++)
        for (int t = 0; t < MAX_T; t++) seqs[b][t] = (b * 11 + t * 7 + 1) % V;
    int prompts[B * P];
    for (int b = 0; b < B; b++)
        for (int t = 0; t < P; t++)
            prompts[b * P + t] = t < lens[b] ? seqs[b][t] : (t * 13 + b) % V; /* padding */

    gkd_kv_cache *cache = NULL, *cache2 = NULL;
    CHECK(gkd_kv_cache_create(m, B, MAX_T, &cache) == GKD_OK);
    CHECK(gkd_kv_cache_create(m, B, MAX_T, &cache2) == GKD_OK);
    CHECK(gkd_kv_cache_batch(cache) == B && gkd_kv_cache_max_len(cache) == MAX_T);
    float logits[B * P * V], last[B * V];
    double ref[V], worst = 0;
    int pos0[B] = {0, 0, 0};

    /* Prefill: every valid prompt position equals the full forward over that prefix. */
    CHECK(gkd_model_forward_cached(m, cache, prompts, pos0, B, P, logits) == GKD_OK);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < lens[b]; t++) {
            full_last_logits(m, seqs[b], t + 1, ref);
            double d = max_diff(logits + ((size_t)b * P + t) * V, ref, V);
            worst = fmax(worst, d);
            CHECKF(d <= TOL, "prefill row %d position %d: max |diff| %g", b, t, d);
        }
    /* The _at variant gives the same rows (same ops on a fresh cache). */
    int at[B];
    for (int b = 0; b < B; b++) at[b] = lens[b] - 1;
    CHECK(gkd_model_forward_cached_at(m, cache2, prompts, pos0, B, P, at, last) == GKD_OK);
    for (int b = 0; b < B; b++) {
        double d = 0;
        for (int v = 0; v < V; v++)
            d = fmax(d, fabs(last[b * V + v] - logits[((size_t)b * P + at[b]) * V + v]));
        CHECKF(d <= TOL, "forward_cached_at row %d: max |diff| %g", b, d);
    }
    /* Left on the device (host memory on the CPU): the same bits, and nothing written to the host. */
    {
        gkd_kv_cache *cache3 = NULL;
        const float *dev = NULL;
        CHECK(gkd_kv_cache_create(m, B, MAX_T, &cache3) == GKD_OK);
        CHECK(gkd_model_forward_cached_at_device(m, cache3, prompts, pos0, B, P, at, &dev) == GKD_OK && dev);
        CHECK(dev && memcmp(dev, last, sizeof last) == 0);
        /* a call of fewer rows than the cache has uses its first rows */
        float fewer[(B - 1) * V];
        CHECK(gkd_model_forward_cached_at(m, cache3, prompts, pos0, B - 1, P, at, fewer) == GKD_OK);
        double d = 0;
        for (int i = 0; i < (B - 1) * V; i++) d = fmax(d, fabs(fewer[i] - last[i]));
        CHECKF(d <= TOL, "a call of %d rows on a cache of %d: max |diff| %g", B - 1, B, d);
        gkd_kv_cache_free(cache3);
    }

    /* Token by token, each row at its own position, overwriting its padding's cache entries. */
    int fed[B];
    for (int s = 0; s < STEPS; s++) {
        int tok[B];
        for (int b = 0; b < B; b++) {
            fed[b] = lens[b] + s;
            tok[b] = seqs[b][fed[b]];
            pos0[b] = fed[b];
        }
        CHECK(gkd_model_forward_cached(m, cache, tok, pos0, B, 1, logits) == GKD_OK);
        CHECK(gkd_model_forward_cached(m, cache2, tok, pos0, B, 1, last) == GKD_OK);
        for (int b = 0; b < B; b++) {
            full_last_logits(m, seqs[b], fed[b] + 1, ref);
            double d = max_diff(logits + (size_t)b * V, ref, V);
            worst = fmax(worst, d);
            CHECKF(d <= TOL, "step %d row %d (position %d): max |diff| %g", s, b, fed[b], d);
        }
    }
    /* Two tokens per row at once, continuing. */
    int tok2[B * 2];
    for (int b = 0; b < B; b++) {
        pos0[b] = lens[b] + STEPS;
        tok2[b * 2] = seqs[b][pos0[b]];
        tok2[b * 2 + 1] = seqs[b][pos0[b] + 1];
    }
    CHECK(gkd_model_forward_cached(m, cache, tok2, pos0, B, 2, logits) == GKD_OK);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < 2; t++) {
            full_last_logits(m, seqs[b], pos0[b] + t + 1, ref);
            double d = max_diff(logits + ((size_t)b * 2 + t) * V, ref, V);
            worst = fmax(worst, d);
            CHECKF(d <= TOL, "two-token step row %d position %d: max |diff| %g", b, pos0[b] + t, d);
        }
    fprintf(stderr, "worst max |cached - full| over all checks: %.3g, largest |logit| %.3g\n", worst,
            logit_scale);

    /* Bad input is refused with the field named. */
    pos0[0] = MAX_T - 1;
    CHECK(gkd_model_forward_cached(m, cache, tok2, pos0, B, 2, logits) == GKD_ERR_ARG);
    CHECKF(strstr(gkd_error_message(), "pos0[0]") != NULL, "message: %s", gkd_error_message());
    pos0[0] = 0;
    int pos_more[B + 1] = {0}, tok_more[(B + 1) * 2] = {0};
    CHECK(gkd_model_forward_cached(m, cache, tok_more, pos_more, B + 1, 2, logits) == GKD_ERR_ARG);
    CHECKF(strstr(gkd_error_message(), "rows") != NULL, "message: %s", gkd_error_message());
    at[1] = 2;
    CHECK(gkd_model_forward_cached_at(m, cache, tok2, pos0, B, 2, at, logits) == GKD_ERR_ARG);
    gkd_kv_cache *bad = NULL;
    CHECK(gkd_kv_cache_create(m, B, 33, &bad) == GKD_ERR_ARG && bad == NULL);

    /* The model's own cache: kept while it fits, grown to the larger rows and positions when not. */
    gkd_kv_cache *own = NULL, *again = NULL;
    CHECK(gkd_model_kv_cache(m, 2, 10, &own) == GKD_OK && gkd_kv_cache_batch(own) == 2 &&
          gkd_kv_cache_max_len(own) == 10);
    CHECK(gkd_model_kv_cache(m, 1, 5, &again) == GKD_OK && again == own);
    CHECK(gkd_model_kv_cache(m, 3, 8, &again) == GKD_OK && gkd_kv_cache_batch(again) == 3 &&
          gkd_kv_cache_max_len(again) == 10);
    CHECK(gkd_model_kv_cache(m, 1, 33, &again) == GKD_ERR_ARG && again == NULL);
    gkd_model_memory mem;
    gkd_model_memory_usage(m, &mem);
    CHECKF(mem.kv_cache >= 2 * sizeof(float) * 2 * 3 * 10 * 8, "kv cache bytes %zu", mem.kv_cache);

    gkd_kv_cache_free(cache);
    gkd_kv_cache_free(cache2);
    gkd_kv_cache_free(NULL);
    gkd_model_free(m);
    test_calls_per_step();
    return check_exit();
}
