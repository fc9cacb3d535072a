// ctest-labels: cpu
/* The float32 divergence rows (rl/divergence_fast.h) against the exact double path (divergence.c), the
 * reference: for every instruction set this CPU runs (AVX-512, AVX2), every divergence and JSD
 * convention (beta at 0, 1e-6, 0.1, 0.5, 0.9, 1 - 1e-6, 1; skews 0, 0.1, 0.5), teacher temperatures 1 and
 * 0.7, and rows that are flat, peaked, nearly equal (KL ~ 1e-7), far apart, past float's exp range, tied,
 * or whose halves lie ~90 apart, at V = 1, 3, 17, 1000, 10,007 and 49,152 (tails that are not a whole vector
 * included): the value, every gradient entry and the five
 * logged metrics agree within 1e-5 relative or 1e-7 absolute. Rows with masked (-inf) logits are
 * computed by the exact path, bit for bit, and a NaN logit is refused with the exact path's message. */
#include "core/base/rng.h"
#include "rl/divergence.h"
#include "rl/divergence_fast.h"
#include "tests/check.h"

#include <stdlib.h>
#include <string.h>

static double worst_rel; /* the largest error seen, in units of the tolerance */

static int close_enough(double got, double want) {
    if (isinf(want)) return got == want;
    double err = fabs(got - want), tol = fmax(1e-5 * fabs(want), 1e-7);
    if (err / tol > worst_rel) worst_rel = err / tol;
    return err <= tol;
}

/* Fills N rows of V teacher and student logits of a given kind. */
static void make_rows(gkd_rng *rng, int kind, int N, int V, float *t, float *s) {
    for (int i = 0; i < N * V; i++) {
        int j = i % V; /* the entry within its row */
        float u = gkd_rng_uniform(rng) * 2.0f - 1.0f, w = gkd_rng_uniform(rng) * 2.0f - 1.0f;
        switch (kind) {
        case 0: /* flat-ish */
            t[i] = u;
            s[i] = w;
            break;
        case 1: /* peaked, scale 12 */
            t[i] = 12.0f * u * u * u;
            s[i] = 12.0f * w * w * w;
            break;
        case 2: /* nearly equal: KL ~ 1e-7 */
            t[i] = 4.0f * u;
            s[i] = 4.0f * u + 1e-3f * w;
            break;
        case 3: /* far apart, large logits */
            t[i] = 30.0f * u;
            s[i] = -30.0f * u + 5.0f * w;
            break;
        case 4: /* spans past float's exp range: probabilities under the smallest subnormal, and subnormal */
            t[i] = 60.0f * u;
            s[i] = 52.0f * w;
            break;
        case 5: /* ties, the student's largest logit among them (the top entry is the first of them) */
            t[i] = roundf(2.0f * u);
            s[i] = roundf(3.0f * w);
            break;
        default: /* halves far apart: the float path's blocks in the first half have maxima ~90 below the row's */
            t[i] = (j < V / 2 ? -70.0f : 20.0f) + 5.0f * u;
            s[i] = (j < V / 2 ? -60.0f : 10.0f) + 5.0f * w;
            break;
        }
    }
}

static void compare(const gkd_divergence *d, const float *t, const float *s, int N, int V, const char *what) {
    double *ve = malloc(N * sizeof *ve), *vf = malloc(N * sizeof *vf);
    float *ge = malloc((size_t)N * V * sizeof *ge), *gf = malloc((size_t)N * V * sizeof *gf);
    float *scale = malloc(N * sizeof *scale);
    gkd_token_metrics *me = malloc(N * sizeof *me), *mf = malloc(N * sizeof *mf);
    for (int n = 0; n < N; n++) scale[n] = n % 2 ? 0.25f : 1.0f;
    gkd_divergence exact = *d, fast = *d;
    exact.precision = GKD_DIV_EXACT;
    fast.precision = GKD_DIV_FLOAT32;
    gkd_status se = gkd_divergence_rows_ex(&exact, t, s, N, V, ve, ge, scale, me);
    gkd_status sf = gkd_divergence_rows_ex(&fast, t, s, N, V, vf, gf, scale, mf);
    CHECKF(se == sf, "%s %s: status %d vs %d", what, gkd_divergence_name(d), se, sf);
    int bad = 0;
    for (int n = 0; n < N && se == GKD_OK; n++) {
        double a[6] = {ve[n], me[n].forward_kl, me[n].reverse_kl, me[n].jsd, me[n].teacher_entropy, me[n].student_entropy};
        double b[6] = {vf[n], mf[n].forward_kl, mf[n].reverse_kl, mf[n].jsd, mf[n].teacher_entropy, mf[n].student_entropy};
        for (int k = 0; k < 6; k++)
            if (!close_enough(b[k], a[k])) {
                if (bad++ < 5)
                    fprintf(stderr, "%s %s beta %g skew %g T %g row %d: %s %.9g, exact %.9g\n", what,
                            gkd_divergence_name(d), d->beta, d->skew, d->teacher_temperature, n,
                            (const char *[]){"value", "forward_kl", "reverse_kl", "jsd", "H(P)", "H(Q)"}[k], b[k], a[k]);
            }
        for (int v = 0; v < V; v++)
            if (!close_enough(gf[(size_t)n * V + v], ge[(size_t)n * V + v]) && bad++ < 5)
                fprintf(stderr, "%s %s beta %g skew %g T %g row %d entry %d: gradient %.9g, exact %.9g\n", what,
                        gkd_divergence_name(d), d->beta, d->skew, d->teacher_temperature, n, v,
                        gf[(size_t)n * V + v], ge[(size_t)n * V + v]);
    }
    CHECKF(bad == 0, "%s %s beta %g skew %g: %d values off", what, gkd_divergence_name(d), d->beta, d->skew, bad);
    free(ve), free(vf), free(ge), free(gf), free(scale), free(me), free(mf);
}

static void check_all_divergences(const float *t, const float *s, int N, int V, const char *what) {
    static const char *const names[] = {"forward_kl", "reverse_kl", "jsd", "jsd_trl", "jsd_scaled", "tv", "skew_kl",
                                        "skew_reverse_kl"};
    static const double betas[] = {0.0, 1e-6, 0.1, 0.5, 0.9, 1.0 - 1e-6, 1.0};
    static const double skews[] = {0.0, 0.1, 0.5};
    static const double temps[] = {1.0, 0.7};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        for (int tt = 0; tt < 2; tt++) {
            gkd_divergence d;
            CHECK(gkd_divergence_parse(names[i], &d) == GKD_OK);
            d.teacher_temperature = temps[tt];
            if (d.kind == GKD_DIV_JSD) {
                for (size_t b = 0; b < sizeof betas / sizeof *betas; b++) {
                    d.beta = betas[b];
                    compare(&d, t, s, N, V, what);
                }
            } else if (d.kind == GKD_DIV_SKEW_KL || d.kind == GKD_DIV_SKEW_REVERSE_KL) {
                for (size_t k = 0; k < sizeof skews / sizeof *skews; k++) {
                    d.skew = skews[k];
                    compare(&d, t, s, N, V, what);
                }
            } else {
                compare(&d, t, s, N, V, what);
            }
        }
}

/* Rows of `kind` the float path hands to the exact path, for divergence `name` at beta (scale 1). */
static unsigned long long exact_rows(gkd_rng *rng, int kind, const char *name, double beta) {
    enum { N = 16, V = 1000 };
    float *t = malloc((size_t)N * V * sizeof *t), *s = malloc((size_t)N * V * sizeof *s);
    float *g = malloc((size_t)N * V * sizeof *g);
    double value[N];
    make_rows(rng, kind, N, V, t, s);
    gkd_divergence d;
    CHECK(gkd_divergence_parse(name, &d) == GKD_OK);
    d.beta = beta;
    d.precision = GKD_DIV_FLOAT32;
    unsigned long long rows0, exact0, rows1, exact1;
    gkd_div_fast_counts(&rows0, &exact0);
    CHECK(gkd_divergence_rows_ex(&d, t, s, N, V, value, g, NULL, NULL) == GKD_OK);
    gkd_div_fast_counts(&rows1, &exact1);
    CHECKF(rows1 - rows0 == N, "%s: %llu rows counted, want %d", name, rows1 - rows0, (int)N);
    free(t), free(s), free(g);
    return exact1 - exact0;
}

int main(void) {
    static const char *const isas[] = {"avx512", "avx2"};
    static const int sizes[][2] = {{4, 1}, {4, 3}, {4, 17}, {4, 1000}, {2, 10007}, {2, 49152}};
    gkd_rng rng;
    gkd_rng_init(&rng, 7, GKD_RNG_STREAM_USER);
    int ran = 0;
    for (int i = 0; i < 2; i++) {
        setenv("GKD_DIVERGENCE_ISA", isas[i], 1);
        gkd_div_fast_row_fn fn;
        const char *name;
        if (gkd_div_fast_select(&fn, &name) != GKD_OK) {
            fprintf(stderr, "%s: not on this CPU, skipped\n", isas[i]);
            continue;
        }
        ran++;
        worst_rel = 0;
        for (size_t z = 0; z < sizeof sizes / sizeof *sizes; z++)
            for (int kind = 0; kind < 7; kind++) {
                int N = sizes[z][0], V = sizes[z][1];
                if (V == 49152 && kind != 1 && kind != 2 && i != 0) continue; /* the big rows: twice per ISA */
                float *t = malloc((size_t)N * V * sizeof *t), *s = malloc((size_t)N * V * sizeof *s);
                make_rows(&rng, kind, N, V, t, s);
                char what[64];
                snprintf(what, sizeof what, "%s V %d kind %d", isas[i], V, kind);
                check_all_divergences(t, s, N, V, what);
                free(t);
                free(s);
            }
        fprintf(stderr, "%s: largest error %.3f of the tolerance\n", isas[i], worst_rel);
        /* The float path really runs the usual rows (a kernel that handed every row to the exact path would pass
         * the comparisons above), and hands over the rows whose gradient it cannot promise: a scaled JSD at beta
         * 1e-6 multiplies B's float error by 1e6 where G - Gbar cancels. */
        static const char *const usual[] = {"jsd", "jsd_trl", "reverse_kl", "forward_kl", "tv"};
        for (int kind = 0; kind < 3; kind++)
            for (size_t k = 0; k < sizeof usual / sizeof *usual; k++) {
                unsigned long long n_exact = exact_rows(&rng, kind, usual[k], k < 2 ? 0.5 : 0.0);
                CHECKF(n_exact == 0, "%s kind %d %s: %llu of 16 rows went to the exact path", isas[i], kind,
                       usual[k], n_exact);
            }
        unsigned long long n_scaled = exact_rows(&rng, 2, "jsd_scaled", 1e-6);
        CHECKF(n_scaled == 16, "%s: jsd_scaled at beta 1e-6 on nearly equal rows: %llu of 16 rows went to the "
               "exact path, want all", isas[i], n_scaled);
    }
    if (ran == 0) check_skip("neither AVX-512 nor AVX2 on this CPU: the float path is not used here");
    /* A row with masked entries goes to the exact path whole (bit for bit); a NaN is the exact path's error. */
    unsetenv("GKD_DIVERGENCE_ISA");
    float t[2 * 40], s[2 * 40];
    make_rows(&rng, 0, 2, 40, t, s);
    t[3] = -INFINITY;
    s[45] = -INFINITY;
    gkd_divergence d;
    CHECK(gkd_divergence_parse("jsd", &d) == GKD_OK);
    double ve[2], vf[2];
    float ge[80], gf[80];
    CHECK(gkd_divergence_rows(&d, t, s, 2, 40, ve, ge, NULL) == GKD_OK);
    d.precision = GKD_DIV_FLOAT32;
    CHECK(gkd_divergence_rows(&d, t, s, 2, 40, vf, gf, NULL) == GKD_OK);
    CHECK(memcmp(ve, vf, sizeof ve) == 0 && memcmp(ge, gf, sizeof ge) == 0);
    s[7] = NAN;
    CHECK(gkd_divergence_rows(&d, t, s, 2, 40, vf, gf, NULL) == GKD_ERR_ARG);
    CHECKF(strstr(gkd_error_message(), "row 0, entry 7: student logit") != NULL, "%s", gkd_error_message());
    /* Not-finite logits where the float path's first look (up to 64 sampled logits per row) does not see them,
     * in whole vectors and in a row's tail: its one pass must still find them and hand the row over, so both
     * settings give the same status, message and bits. */
    {
        enum { NV = 1000 }; /* sampled every 15th entry; 1000 = 62 vectors of 16 + 8 */
        static const struct {
            int teacher, entry;
            float value;
        } bad[] = {{1, 7, -INFINITY}, {0, 7, -INFINITY}, {0, 995, -INFINITY}, {1, 7, INFINITY},
                   {0, 998, INFINITY}, {1, 994, NAN},     {0, 7, NAN}};
        float *bt = malloc(2 * NV * sizeof *bt), *bs = malloc(2 * NV * sizeof *bs);
        float *g1 = malloc(2 * NV * sizeof *g1), *g2 = malloc(2 * NV * sizeof *g2);
        for (size_t c = 0; c < sizeof bad / sizeof *bad; c++) {
            make_rows(&rng, 0, 2, NV, bt, bs);
            (bad[c].teacher ? bt : bs)[NV + bad[c].entry] = bad[c].value; /* in row 1 */
            double v1[2], v2[2];
            char msg[512] = "";
            d.precision = GKD_DIV_EXACT;
            gkd_status s1 = gkd_divergence_rows(&d, bt, bs, 2, NV, v1, g1, NULL);
            if (s1 != GKD_OK) snprintf(msg, sizeof msg, "%s", gkd_error_message());
            d.precision = GKD_DIV_FLOAT32;
            unsetenv("GKD_DIVERGENCE_ISA");
            gkd_status s2 = gkd_divergence_rows(&d, bt, bs, 2, NV, v2, g2, NULL);
            CHECKF(s1 == s2, "not-finite case %zu: status %d (exact) vs %d (float)", c, s1, s2);
            if (s1 == GKD_OK && s2 == GKD_OK)
                CHECKF(memcmp(v1 + 1, v2 + 1, sizeof *v1) == 0 && memcmp(g1 + NV, g2 + NV, NV * sizeof *g1) == 0,
                       "not-finite case %zu: row 1 differs from the exact path", c);
            else if (s1 != GKD_OK && s2 != GKD_OK)
                CHECKF(strcmp(msg, gkd_error_message()) == 0, "not-finite case %zu: '%s' vs '%s'", c, msg,
                       gkd_error_message());
        }
        free(bt), free(bs), free(g1), free(g2);
    }
    /* A logit 100 above every one the float path samples for its reference (every 15th of 1000): its
     * exponential relative to the reference would overflow float, so the path must redo its first pass with
     * the row's maxima and still compute the row itself (not hand it over), within the tolerance. */
    {
        enum { NV = 1000 };
        float *bt = malloc(2 * NV * sizeof *bt), *bs = malloc(2 * NV * sizeof *bs);
        make_rows(&rng, 0, 2, NV, bt, bs);
        for (int i = 0; i < 2 * NV; i++) bt[i] -= 50.0f, bs[i] -= 50.0f;
        bt[7] = 50.0f;      /* row 0: the teacher's spike */
        bs[NV + 22] = 50.0f; /* row 1: the student's */
        unsigned long long rows0, exact0, rows1, exact1;
        gkd_div_fast_counts(&rows0, &exact0);
        static const char *const spiked[] = {"jsd", "forward_kl", "reverse_kl"};
        for (size_t i = 0; i < 3; i++) {
            gkd_divergence sd;
            CHECK(gkd_divergence_parse(spiked[i], &sd) == GKD_OK);
            compare(&sd, bt, bs, 2, NV, "spike 100 above the sampled logits");
        }
        gkd_div_fast_counts(&rows1, &exact1);
        CHECKF(exact1 - exact0 == 0, "rows with a spike: %llu of %llu handed to the exact path", exact1 - exact0,
               rows1 - rows0);
        free(bt), free(bs);
    }
    /* without AVX2 (forced here) the float setting takes the exact path, bit for bit */
    setenv("GKD_DIVERGENCE_ISA", "exact", 1);
    s[7] = 0.5f;
    d.precision = GKD_DIV_EXACT;
    CHECK(gkd_divergence_rows(&d, t, s, 2, 40, ve, ge, NULL) == GKD_OK);
    d.precision = GKD_DIV_FLOAT32;
    CHECK(gkd_divergence_rows(&d, t, s, 2, 40, vf, gf, NULL) == GKD_OK);
    CHECK(memcmp(ve, vf, sizeof ve) == 0 && memcmp(ge, gf, sizeof ge) == 0);
    setenv("GKD_DIVERGENCE_ISA", "sse9", 1);
    CHECK(gkd_divergence_rows(&d, t, s, 2, 40, vf, gf, NULL) == GKD_ERR_ARG);
    CHECKF(strstr(gkd_error_message(), "sse9") != NULL, "%s", gkd_error_message());
    return check_exit();
}
