/* Sampling: greedy is the argmax chain of full forwards; top-k = 1 is greedy; the same rng state gives the
 * same tokens and moves the offset by max_new_tokens * B; the documented draw (word offset + t*B + b,
 * inverse CDF in token order) is what is used; temperature, top-k and top-p draws follow their target
 * distributions (chi-square); log-probs are log_softmax of the logits at temperature 1; EOS stops a row.
 * References are full no-cache forwards with the output projection in double. gkd_sample_token (partial
 * selection) is compared with a naive full-sort reference on thousands of random rows, ties included: the
 * same token and the same log-probability, bit for bit. Generation does not depend on what the model's
 * KV cache held before. A row stride gives a shard of a batch the whole batch's draws. */
// ctest-labels: cpu
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/tensor/backend.h"
#include "core/tensor/model.h"
#include "core/base/rng.h"
#include "core/tensor/sample.h"
#include "tests/check.h"

enum { V = 37, C = 16, B = 3, P = 6, NEW = 8 };
/* log-probs: float logits of size ~3 against double ones; lse and the logit each carry ~1e-6 */
static const double LOGPROB_TOL = 1e-5;

static gkd_model *make_model(void) {
    gkd_model_config cfg = {.vocab_size = V,
                            .dim = C,
                            .n_layers = 2,
                            .n_heads = 4,
                            .n_kv_heads = 2,
                            .hidden_dim = 24,
                            .max_seq_len = 24,
                            .rope_theta = 10000.0f,
                            .norm_eps = 1e-5f};
    gkd_model *m = NULL;
    if (gkd_model_create(&cfg, gkd_backend_cpu(), &m)) {
        fprintf(stderr, "create: %s\n", gkd_error_message());
        exit(1);
    }
    gkd_rng rng;
    gkd_rng_init(&rng, 8, GKD_RNG_STREAM_USER);
    float *p = gkd_model_params(m);
    for (int i = 0; i < gkd_model_num_tensors(m); i++) {
        const gkd_tensor_info *t = gkd_model_tensor(m, i);
        for (size_t j = 0; j < t->numel; j++)
            p[t->offset + j] = t->is_norm ? 1.0f + 0.1f * gkd_rng_normal(&rng) : 0.25f * gkd_rng_normal(&rng);
    }
    return m;
}

/* Logits (double) at the last position of a full forward over seq[0..len). */
static void ref_logits(gkd_model *m, const int *seq, int len, double *out) {
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

static double log_softmax_at(const double *x, int tok) {
    double mx = -1e300, s = 0;
    for (int v = 0; v < V; v++) mx = fmax(mx, x[v]);
    for (int v = 0; v < V; v++) s += exp(x[v] - mx);
    return x[tok] - mx - log(s);
}

static const int lens[B] = {4, 1, 6};
static int prompts[B * P];

static void make_prompts(void) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < P; t++)
            prompts[b * P + t] = t < lens[b] ? (b * 5 + t * 3 + 2) % V : -1; /* not read */
}

typedef struct {
    int tokens[B * NEW], lens[B];
    float logprobs[B * NEW];
} result;

static gkd_status generate(gkd_model *m, gkd_sample_config cfg, gkd_rng *rng, result *r) {
    gkd_status st = gkd_sample_generate(m, prompts, lens, B, P, &cfg, rng, r->tokens, r->lens, r->logprobs);
    if (st) fprintf(stderr, "generate: %s\n", gkd_error_message());
    return st;
}

/* For every generated token: its log-prob against the full forward over the row's prefix. */
static void check_logprobs(gkd_model *m, const result *r, const char *label) {
    double worst = 0;
    for (int b = 0; b < B; b++) {
        int seq[P + NEW];
        memcpy(seq, prompts + b * P, sizeof(int) * lens[b]);
        for (int t = 0; t < r->lens[b]; t++) {
            double x[V];
            ref_logits(m, seq, lens[b] + t, x);
            int tok = r->tokens[b * NEW + t];
            worst = fmax(worst, fabs(r->logprobs[b * NEW + t] - log_softmax_at(x, tok)));
            seq[lens[b] + t] = tok;
        }
    }
    CHECKF(worst <= LOGPROB_TOL, "%s: log-probs differ from log_softmax by %g", label, worst);
}

static void test_greedy_and_eos(gkd_model *m) {
    gkd_sample_config cfg = {
        .temperature = 0.0f, .top_k = 0, .top_p = 1.0f, .max_new_tokens = NEW, .eos_id = -1};
    gkd_rng rng;
    gkd_rng_init(&rng, 1, GKD_RNG_STREAM_SAMPLE);
    result g;
    CHECK(generate(m, cfg, &rng, &g) == GKD_OK);
    CHECK(rng.offset == (uint64_t)NEW * B);
    /* the argmax chain of full forwards */
    int chain_ok = 1;
    for (int b = 0; b < B; b++) {
        CHECK(g.lens[b] == NEW);
        int seq[P + NEW];
        memcpy(seq, prompts + b * P, sizeof(int) * lens[b]);
        for (int t = 0; t < NEW; t++) {
            double x[V];
            ref_logits(m, seq, lens[b] + t, x);
            int best = 0;
            for (int v = 1; v < V; v++)
                if (x[v] > x[best]) best = v;
            chain_ok &= g.tokens[b * NEW + t] == best;
            seq[lens[b] + t] = best;
        }
    }
    CHECK(chain_ok);
    check_logprobs(m, &g, "greedy");

    /* top-k = 1 at temperature 1 is greedy */
    cfg.temperature = 1.0f;
    cfg.top_k = 1;
    result k1;
    CHECK(generate(m, cfg, &rng, &k1) == GKD_OK);
    CHECK(memcmp(k1.tokens, g.tokens, sizeof g.tokens) == 0);

    /* EOS: take row 0's third greedy token as EOS; every row stops at its first EOS, then pads */
    cfg.temperature = 0.0f;
    cfg.top_k = 0;
    cfg.eos_id = g.tokens[0 * NEW + 2];
    result e;
    CHECK(generate(m, cfg, &rng, &e) == GKD_OK);
    int stopped_early = 0;
    for (int b = 0; b < B; b++) {
        int want = NEW;
        for (int t = 0; t < NEW; t++)
            if (g.tokens[b * NEW + t] == cfg.eos_id) {
                want = t + 1;
                break;
            }
        stopped_early += want < NEW;
        CHECKF(e.lens[b] == want, "row %d: length %d, want %d", b, e.lens[b], want);
        int ok = 1;
        for (int t = 0; t < NEW; t++) {
            if (t < want)
                ok &= e.tokens[b * NEW + t] == g.tokens[b * NEW + t] &&
                      e.logprobs[b * NEW + t] == g.logprobs[b * NEW + t];
            else
                ok &= e.tokens[b * NEW + t] == cfg.eos_id && e.logprobs[b * NEW + t] == 0.0f;
        }
        CHECKF(ok, "row %d: tokens before EOS must match greedy, padding after", b);
    }
    CHECK(e.lens[0] <= 3 && stopped_early >= 1);
}

static void test_reproducible_draws(gkd_model *m) {
    gkd_sample_config cfg = {
        .temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .max_new_tokens = NEW, .eos_id = -1};
    gkd_rng r1 = {77, GKD_RNG_STREAM_SAMPLE, 1000}, r2 = r1, r3 = {78, GKD_RNG_STREAM_SAMPLE, 1000};
    result a, b, c;
    CHECK(generate(m, cfg, &r1, &a) == GKD_OK);
    CHECK(generate(m, cfg, &r2, &b) == GKD_OK);
    CHECK(generate(m, cfg, &r3, &c) == GKD_OK);
    CHECK(memcmp(&a, &b, sizeof a) == 0);
    CHECK(memcmp(a.tokens, c.tokens, sizeof a.tokens) != 0); /* another seed draws otherwise */
    CHECK(r1.offset == 1000 + (uint64_t)NEW * B);
    check_logprobs(m, &a, "temperature 1");
    /* the documented draw: uniform from word (offset + t*B + b), inverse CDF over softmax in token order */
    int draws_ok = 1;
    for (int bb = 0; bb < B; bb++) {
        int seq[P + NEW];
        memcpy(seq, prompts + bb * P, sizeof(int) * lens[bb]);
        for (int t = 0; t < NEW; t++) {
            double x[V], mx = -1e300, total = 0, acc = 0;
            ref_logits(m, seq, lens[bb] + t, x);
            for (int v = 0; v < V; v++) mx = fmax(mx, x[v]);
            for (int v = 0; v < V; v++) total += exp(x[v] - mx);
            double u = gkd_rng_uniform_from_word(
                gkd_rng_word(77, GKD_RNG_STREAM_SAMPLE, 1000 + (uint64_t)t * B + bb));
            int tok = V - 1;
            for (int v = 0; v < V; v++) {
                acc += exp(x[v] - mx);
                if (acc >= u * total) {
                    tok = v;
                    break;
                }
            }
            draws_ok &= tok == a.tokens[bb * NEW + t];
            seq[lens[bb] + t] = a.tokens[bb * NEW + t];
        }
    }
    CHECK(draws_ok);
    /* top-p and top-k runs are reproducible too, and their log-probs stay unfiltered */
    cfg.top_p = 0.8f;
    cfg.top_k = 6;
    gkd_rng r4 = {5, GKD_RNG_STREAM_SAMPLE, 0}, r5 = r4;
    CHECK(generate(m, cfg, &r4, &a) == GKD_OK);
    CHECK(generate(m, cfg, &r5, &b) == GKD_OK);
    CHECK(memcmp(&a, &b, sizeof a) == 0);
    check_logprobs(m, &a, "top-k 6, top-p 0.8");
}

/* A row stride: rows [r0, r0 + n) of the batch, generated alone with stride B and the offset moved by r0
 * (what a data-parallel rank does with its shard), draw exactly the whole batch's tokens; the offset then
 * moves by max_new_tokens * stride; a stride below the call's rows is refused. */
static void test_row_stride(gkd_model *m) {
    gkd_sample_config cfg = {.temperature = 1.0f, .top_p = 1.0f, .max_new_tokens = NEW, .eos_id = -1};
    gkd_rng whole_rng = {91, GKD_RNG_STREAM_SAMPLE, 500};
    result whole;
    CHECK(generate(m, cfg, &whole_rng, &whole) == GKD_OK);
    cfg.row_stride = B;
    for (int r0 = 0; r0 < B; r0++) {
        int tokens[NEW], n_out;
        float lp[NEW];
        gkd_rng rng = {91, GKD_RNG_STREAM_SAMPLE, 500 + (uint64_t)r0};
        CHECK(gkd_sample_generate(m, prompts + r0 * P, lens + r0, 1, P, &cfg, &rng, tokens, &n_out, lp) == GKD_OK);
        CHECKF(n_out == whole.lens[r0] && memcmp(tokens, whole.tokens + r0 * NEW, sizeof tokens) == 0,
               "row %d alone with stride %d", r0, B);
        CHECK(rng.offset == 500 + (uint64_t)r0 + (uint64_t)NEW * B);
    }
    /* without the stride a lone row draws other words: the test can tell */
    cfg.row_stride = 0;
    int tokens[NEW], n_out;
    float lp[NEW];
    gkd_rng rng = {91, GKD_RNG_STREAM_SAMPLE, 500 + 2};
    CHECK(gkd_sample_generate(m, prompts + 2 * P, lens + 2, 1, P, &cfg, &rng, tokens, &n_out, lp) == GKD_OK);
    CHECK(memcmp(tokens, whole.tokens + 2 * NEW, sizeof tokens) != 0);
    cfg.row_stride = B - 1;
    result r;
    CHECK(generate(m, cfg, &rng, &r) == GKD_ERR_ARG);
    CHECK(strstr(gkd_error_message(), "row_stride") != NULL);
}

/* Draws of the first token for many copies of one prompt against the filtered softmax. Fixed seeds make
 * the test deterministic; the bound df + 6 sqrt(2 df) is beyond the chi-square's 1e-6 tail, so a correct
 * sampler passes and a wrong distribution (a missing temperature, a filter off by one) fails by far. */
static void chi_square(gkd_model *m, gkd_sample_config cfg, const char *label) {
    enum { DRAWS = 6000, LEN = 3 };
    int *pr = malloc(sizeof(int) * DRAWS * LEN), *plen = malloc(sizeof(int) * DRAWS),
        *tok = malloc(sizeof(int) * DRAWS);
    float *lp = malloc(sizeof(float) * DRAWS);
    int seq[LEN] = {4, 9, 1}, outlen[DRAWS];
    for (int i = 0; i < DRAWS; i++) {
        memcpy(pr + i * LEN, seq, sizeof seq);
        plen[i] = LEN;
    }
    cfg.max_new_tokens = 1;
    gkd_rng rng = {2024, GKD_RNG_STREAM_SAMPLE, 0};
    CHECK(gkd_sample_generate(m, pr, plen, DRAWS, LEN, &cfg, &rng, tok, outlen, lp) == GKD_OK);
    double x[V], p[V], total = 0, mx = -1e300;
    ref_logits(m, seq, LEN, x);
    for (int v = 0; v < V; v++) mx = fmax(mx, x[v]);
    for (int v = 0; v < V; v++) total += (p[v] = exp((x[v] - mx) / cfg.temperature));
    for (int v = 0; v < V; v++) p[v] /= total;
    /* the filters in the reference: rank by probability, keep top_k, then the top_p mass */
    int order[V];
    for (int v = 0; v < V; v++) order[v] = v;
    for (int i = 0; i < V; i++)
        for (int j = i + 1; j < V; j++)
            if (p[order[j]] > p[order[i]]) {
                int t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
    int keep = cfg.top_k > 0 ? cfg.top_k : V;
    double kept_mass = 0, mass = 0;
    for (int i = 0; i < keep; i++) kept_mass += p[order[i]];
    int kept = 0;
    while (kept < keep && mass < cfg.top_p * kept_mass) mass += p[order[kept++]];
    double q[V] = {0};
    for (int i = 0; i < kept; i++) q[order[i]] = p[order[i]] / mass;
    int counts[V] = {0}, outside = 0;
    for (int i = 0; i < DRAWS; i++) {
        counts[tok[i]]++;
        outside += q[tok[i]] == 0.0;
    }
    CHECKF(outside == 0, "%s: %d draws outside the kept set", label, outside);
    double chi2 = 0, rest_e = 0, rest_o = 0;
    int bins = 0;
    for (int v = 0; v < V; v++) {
        double e = q[v] * DRAWS;
        if (e >= 5) {
            chi2 += (counts[v] - e) * (counts[v] - e) / e;
            bins++;
        } else {
            rest_e += e;
            rest_o += counts[v];
        }
    }
    if (rest_e >= 5) chi2 += (rest_o - rest_e) * (rest_o - rest_e) / rest_e, bins++;
    int df = bins - 1;
    double bound = df + 6 * sqrt(2.0 * (df > 0 ? df : 1));
    CHECKF(df >= 1 && chi2 <= bound, "%s: chi-square %.1f over %d df (bound %.1f)", label, chi2, df, bound);
    fprintf(stderr, "%s: %d tokens kept, chi-square %.1f over %d df (bound %.1f)\n", label, kept, chi2, df,
            bound);
    /* every draw's log-prob is the unfiltered log_softmax at temperature 1 */
    double worst = 0;
    for (int i = 0; i < DRAWS; i++) worst = fmax(worst, fabs(lp[i] - log_softmax_at(x, tok[i])));
    CHECKF(worst <= LOGPROB_TOL, "%s: log-prob error %g", label, worst);
    free(pr), free(plen), free(tok), free(lp);
}

/* ---------- gkd_sample_token against a full sort ---------- */

static _Thread_local const float *ref_probs;

static int ref_by_rank(const void *a, const void *b) {
    int i = *(const int *)a, j = *(const int *)b;
    if (ref_probs[i] != ref_probs[j]) return ref_probs[i] > ref_probs[j] ? -1 : 1;
    return i - j;
}

/* The documented draw, plainly: sort the whole row by (probability desc, id asc), keep top_k, then the
 * most probable tokens while the mass before each is below top_p of the kept mass, then inverse CDF over
 * the kept tokens in id order. */
static int ref_sample_token(const float *logits, int n, const gkd_sample_config *cfg, float u,
                            float *logprob) {
    float *p = malloc(sizeof(float) * n);
    int *order = malloc(sizeof(int) * n);
    float mx = logits[0];
    int tok = 0;
    for (int v = 1; v < n; v++)
        if (logits[v] > mx) mx = logits[v], tok = v;
    double sum = 0;
    for (int v = 0; v < n; v++) sum += exp((double)logits[v] - mx);
    double lse = mx + log(sum);
    if (cfg->temperature > 0.0f && cfg->top_k != 1) {
        double inv_t = 1.0 / cfg->temperature;
        for (int v = 0; v < n; v++)
            p[v] = logits[v] == mx ? 1.0f : (float)exp(((double)logits[v] - mx) * inv_t);
        int k = cfg->top_k > 0 && cfg->top_k < n ? cfg->top_k : n;
        for (int v = 0; v < n; v++) order[v] = v;
        ref_probs = p;
        qsort(order, (size_t)n, sizeof *order, ref_by_rank);
        double kept_mass = 0, mass = 0;
        for (int i = 0; i < k; i++) kept_mass += p[order[i]];
        int kept = 0;
        while (kept < k && mass < cfg->top_p * kept_mass) mass += p[order[kept++]];
        for (int i = kept; i < n; i++) p[order[i]] = 0.0f;
        double total = 0, acc = 0;
        for (int v = 0; v < n; v++) total += p[v];
        tok = -1;
        for (int v = 0; v < n; v++) {
            if (p[v] == 0.0f) continue;
            acc += p[v];
            tok = v;
            if (acc >= u * total) break;
        }
    }
    *logprob = (float)(logits[tok] - lse);
    free(p), free(order);
    return tok;
}

/* Row kinds: continuous logits; heavy ties (four distinct values); ties among continuous values; tokens
 * far below the rest (weight 0 after rounding); all equal. */
static void random_row(gkd_rng *rng, int kind, float *x, int n) {
    for (int v = 0; v < n; v++) {
        switch (kind) {
        case 0:
            x[v] = 3.0f * gkd_rng_normal(rng);
            break;
        case 1:
            x[v] = (float)gkd_rng_below(rng, 4);
            break;
        case 2:
            x[v] = v > 0 && gkd_rng_below(rng, 3) == 0 ? x[gkd_rng_below(rng, (uint32_t)v)]
                                                       : gkd_rng_normal(rng);
            break;
        case 3:
            x[v] = gkd_rng_below(rng, 5) == 0 ? -200.0f + gkd_rng_normal(rng) : gkd_rng_normal(rng);
            break;
        default:
            x[v] = 0.5f;
            break;
        }
    }
}

static void test_token_vs_full_sort(void) {
    enum { N = 301, ROWS = 40, KINDS = 5 };
    const int top_ks[] = {1, 2, 50, N, 0};
    const float top_ps[] = {0.1f, 0.9f, 1.0f};
    const float temps[] = {0.0f, 0.6f, 1.0f, 1.7f};
    float x[N], probs[N], lp, lp_ref;
    int order[N], cases = 0, bad = 0;
    gkd_rng rng;
    gkd_rng_init(&rng, 31, GKD_RNG_STREAM_USER);
    for (int ti = 0; ti < 4; ti++)
        for (int ki = 0; ki < 5; ki++)
            for (int pi = 0; pi < 3; pi++)
                for (int kind = 0; kind < KINDS; kind++)
                    for (int r = 0; r < ROWS; r++) {
                        gkd_sample_config cfg = {.temperature = temps[ti],
                                                 .top_k = top_ks[ki],
                                                 .top_p = top_ps[pi],
                                                 .max_new_tokens = 1,
                                                 .eos_id = -1};
                        random_row(&rng, kind, x, N);
                        /* the extremes of (0, 1] too: the first and the last kept token */
                        float u = r == 0   ? 1.0f
                                  : r == 1 ? gkd_rng_uniform_from_word(0)
                                           : gkd_rng_uniform(&rng);
                        int tok = gkd_sample_token(x, N, &cfg, u, probs, order, &lp);
                        int want = ref_sample_token(x, N, &cfg, u, &lp_ref);
                        cases++;
                        if (tok != want || memcmp(&lp, &lp_ref, sizeof lp) != 0) {
                            if (bad++ < 5)
                                fprintf(stderr,
                                        "T %g top_k %d top_p %g kind %d row %d u %.9g: token %d (logp %.9g), "
                                        "full sort %d (logp %.9g)\n",
                                        cfg.temperature, cfg.top_k, cfg.top_p, kind, r, u, tok, lp, want,
                                        lp_ref);
                        }
                    }
    CHECKF(bad == 0, "%d of %d draws differ from the full-sort reference", bad, cases);
    fprintf(stderr, "gkd_sample_token: %d draws compared with the full-sort reference\n", cases);
}

/* What the model's own KV cache held before (a bigger batch, longer prompts) does not change a draw. */
static void test_cache_history(gkd_model *m) {
    gkd_sample_config cfg = {
        .temperature = 1.0f, .top_k = 7, .top_p = 0.9f, .max_new_tokens = NEW, .eos_id = -1};
    gkd_model *fresh = make_model();
    gkd_rng r1 = {11, GKD_RNG_STREAM_SAMPLE, 0}, r2 = r1;
    result a, b;
    CHECK(generate(fresh, cfg, &r1, &a) == GKD_OK);
    CHECK(generate(m, cfg, &r2, &b) == GKD_OK);
    CHECK(memcmp(&a, &b, sizeof a) == 0);
    gkd_kv_cache *c = NULL;
    CHECK(gkd_model_kv_cache(m, 1, 1, &c) == GKD_OK && gkd_kv_cache_batch(c) > B);
    gkd_model_free(fresh);
}

static void test_bad_input(gkd_model *m) {
    gkd_sample_config cfg = {
        .temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .max_new_tokens = NEW, .eos_id = -1};
    gkd_rng rng = {1, GKD_RNG_STREAM_SAMPLE, 0};
    result r;
    int bad_lens[B] = {4, 0, 6};
    CHECK(gkd_sample_generate(m, prompts, bad_lens, B, P, &cfg, &rng, r.tokens, r.lens, r.logprobs) ==
          GKD_ERR_ARG);
    CHECKF(strstr(gkd_error_message(), "prompt_lens[1]") != NULL, "message: %s", gkd_error_message());
    cfg.top_p = 0.0f;
    CHECK(generate(m, cfg, &rng, &r) == GKD_ERR_ARG && strstr(gkd_error_message(), "top_p"));
    cfg.top_p = 1.0f;
    cfg.eos_id = V;
    CHECK(gkd_sample_config_check(&cfg, V) == GKD_ERR_ARG && strstr(gkd_error_message(), "eos_id"));
    cfg.eos_id = -1;
    cfg.max_new_tokens = 24 - P + 2; /* one position more than max_seq_len = 24 */
    int big[B * 24], big_lens[B];
    CHECK(gkd_sample_generate(m, prompts, lens, B, P, &cfg, &rng, big, big_lens, (float *)big) ==
          GKD_ERR_ARG);
    CHECK(rng.offset == 0); /* refused calls draw nothing */
    cfg.max_new_tokens = 0;
    CHECK(generate(m, cfg, &rng, &r) == GKD_OK && r.lens[0] == 0 && rng.offset == 0);
}

/* A row holding NaN or an infinity draws nothing under any setting (top-k used to read before its
 * order array when the kept mass was NaN). */
static void test_nonfinite_row(void) {
    enum { N = 50 };
    const float bad[] = {NAN, INFINITY, -INFINITY};
    const gkd_sample_config cfgs[] = {{0.0f, 0, 1.0f, 1, -1, 0},
                                      {1.0f, 5, 1.0f, 1, -1, 0},
                                      {1.0f, 0, 0.9f, 1, -1, 0},
                                      {0.7f, 5, 0.9f, 1, -1, 0},
                                      {1.0f, 0, 1.0f, 1, -1, 0}};
    float x[N], probs[N], lp;
    int order[N], wrong = 0, cases = 0;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        for (size_t c = 0; c < sizeof cfgs / sizeof cfgs[0]; c++)
            for (int where = 0; where < 3; where++) { /* one bad logit first, last, or the whole row */
                for (int v = 0; v < N; v++)
                    x[v] = where == 2 || (where == 0 && v == 0) || (where == 1 && v == N - 1)
                               ? bad[i]
                               : 0.1f * (float)v;
                int tok = gkd_sample_token(x, N, &cfgs[c], 0.5f, probs, order, &lp);
                cases++;
                if (tok != -1 || !isnan(lp)) {
                    if (wrong++ < 5)
                        fprintf(stderr, "logit %g (%s), top_k %d, top_p %g: token %d, log-prob %g\n", bad[i],
                                where == 2 ? "whole row"
                                : where    ? "last"
                                           : "first",
                                cfgs[c].top_k, cfgs[c].top_p, tok, lp);
                }
            }
    CHECKF(wrong == 0, "%d of %d rows with a non-finite logit drew a token", wrong, cases);
}

/* A diverged model (weights NaN, or ~1e14 so that activations overflow) gives an error naming the batch
 * row and position, under greedy, top-k and top-p settings alike. */
static void test_nonfinite_model(void) {
    const float weights[] = {NAN, 1e14f};
    const gkd_sample_config cfgs[] = {
        {1.0f, 5, 1.0f, NEW, -1, 0}, {0.0f, 0, 1.0f, NEW, -1, 0}, {1.0f, 0, 0.9f, NEW, -1, 0}};
    for (size_t w = 0; w < sizeof weights / sizeof weights[0]; w++) {
        gkd_model *m = make_model();
        float *p = gkd_model_params(m);
        for (size_t j = 0; j < gkd_model_num_params(m); j++) p[j] = weights[w];
        for (size_t c = 0; c < sizeof cfgs / sizeof cfgs[0]; c++) {
            gkd_rng rng = {3, GKD_RNG_STREAM_SAMPLE, 0};
            result r;
            gkd_status st =
                gkd_sample_generate(m, prompts, lens, B, P, &cfgs[c], &rng, r.tokens, r.lens, r.logprobs);
            const char *msg = gkd_error_message();
            CHECKF(st == GKD_ERR_FORMAT, "weights %g, top_k %d, top_p %g: status %s", weights[w],
                   cfgs[c].top_k, cfgs[c].top_p, gkd_status_name(st));
            CHECKF(st != GKD_OK && strstr(msg, "non-finite") && strstr(msg, "batch row 0") &&
                       strstr(msg, "sequence position 4"),
                   "weights %g: message: %s", weights[w], msg);
            for (int b = 0; b < B; b++) CHECK(r.lens[b] == 0); /* nothing was drawn from the bad step */
        }
        gkd_model_free(m);
    }
    /* One row diverging alone is named by its own row and position: token 27 occurs only in row 2's
     * prompt (6 tokens), and its embedding (untied from the output) is NaN. */
    gkd_model *m = make_model();
    const gkd_tensor_info *emb = gkd_model_tensor(m, gkd_model_tensor_find(m, "model.embed_tokens.weight"));
    for (int c = 0; c < C; c++) gkd_model_params(m)[emb->offset + 27 * C + c] = NAN;
    gkd_rng rng = {3, GKD_RNG_STREAM_SAMPLE, 0};
    result r;
    gkd_status st = gkd_sample_generate(m, prompts, lens, B, P, &cfgs[0], &rng, r.tokens, r.lens, r.logprobs);
    CHECKF(st == GKD_ERR_FORMAT &&
               strstr(gkd_error_message(), "batch row 2, new token 0 (sequence position 6)"),
           "status %s: %s", gkd_status_name(st), gkd_error_message());
    gkd_model_free(m);
}

int main(void) {
    gkd_model *m = make_model();
    make_prompts();
    test_greedy_and_eos(m);
    test_reproducible_draws(m);
    test_row_stride(m);
    gkd_sample_config cfg = {
        .temperature = 0.7f, .top_k = 0, .top_p = 1.0f, .max_new_tokens = 1, .eos_id = -1};
    chi_square(m, cfg, "temperature 0.7");
    cfg.temperature = 1.3f;
    chi_square(m, cfg, "temperature 1.3");
    cfg.temperature = 1.0f;
    cfg.top_k = 5;
    chi_square(m, cfg, "top-k 5");
    cfg.top_k = 0;
    cfg.top_p = 0.6f;
    chi_square(m, cfg, "top-p 0.6");
    test_cache_history(m); /* after the chi-square runs grew the cache to 6000 rows */
    test_token_vs_full_sort();
    test_bad_input(m);
    test_nonfinite_row();
    test_nonfinite_model();
    gkd_model_free(m);
    return check_exit();
}
