/* KV-cache decoding against full forwards: a batch of right-padded prompts of different lengths is
 * prefilled in one pass, then each row continues at its own position, one token at a time and then two at
 * a time; at every step the logits must equal those of a full no-cache forward over that row's whole
 * prefix, max abs difference <= 1e-5. Both are fp32 through the same ops and differ only in summation
 * order and blocking: ~1e-6 on logits up to ~3 with the weights below (std 0.2, big enough that attention
 * is far from uniform, so a wrong position or a stale cache entry shows as ~1e-2 or more). Also: the
 * device-logits variant returns the host variant's logits bit for bit; a cache serves a call of fewer rows;
 * the model's own cache is reused while it fits and grows to the larger shape when it does not. */
// ctest-labels: cpu
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/model.h"
#include "core/rng.h"
#include "tests/check.h"

enum { V = 37, C = 16, B = 3, P = 7, STEPS = 6, MAX_T = 20 };
static const double TOL = 1e-5;

static gkd_model *make_model(void) {
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
    if (gkd_model_create(&cfg, gkd_backend_cpu(), &m)) {
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
    return check_exit();
}
