/* Token-level divergences (rl/divergence.c): values, directional derivatives and gradients against
 * tests/ref_divergence.py's 40-digit reference (fixtures in tests/fixtures/divergence/), then the
 * conventions the reference cannot show: JSD endpoints, top-k at k = V, masked rows, bad settings,
 * gradient scaling, rows computed together against rows computed alone, and the fused pass
 * (gkd_divergence_rows_ex) against the separate metrics and rows.
 * Tolerances (the acceptance bar): values within 1e-5 relative, JSD for beta within 1e-3 of an end
 * within 1e-3 relative (fp32 inputs, tiny values); gradients are float32, so they are held to
 * 1e-5 relative plus 1e-6 of the row's largest entry, plus 1e-13 (1 + |D|) absolute where a gradient
 * nearly vanishes (double rounding of O(D) quantities). Observed errors are printed: far below these. */
// ctest-labels: cpu
#include "rl/divergence.h"
#include "tests/check.h"

#include <stdint.h>
#include <string.h>

#define FIXTURES GKD_SOURCE_DIR "/tests/fixtures/divergence/"

static void *read_file(const char *path, size_t *bytes) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *bytes = (size_t)n;
    return buf;
}

static double rel_err(double got, double want) {
    if (got == want) return 0.0; /* covers both infinite */
    return fabs(got - want) / fabs(want);
}

static double delta(int v) {
    return (double)((v * 7919) % 1000) / 1000.0 - 0.5;
}

static int is_jsd_near_end(const char *name, double beta) {
    return strncmp(name, "jsd", 3) == 0 && beta > 0.0 && beta < 1.0 && (beta < 1e-3 || beta > 1.0 - 1e-3);
}

/* ---------------------------------------------------------------------------------------------- */
/* Against the reference */

typedef struct {
    char name[64];
    int N, V;
    double temperature;
    const float *teacher, *student; /* (N,V) each */
} fixture_case;

static void check_fixtures(void) {
    size_t logit_bytes, grad_bytes;
    float *logits = read_file(FIXTURES "logits.bin", &logit_bytes);
    double *grads = read_file(FIXTURES "grads.bin", &grad_bytes);
    FILE *f = fopen(FIXTURES "expected.txt", "r");
    CHECKF(logits && grads && f, "fixtures missing in %s (run tests/ref_divergence.py)", FIXTURES);
    if (!logits || !grads || !f) return;

    fixture_case c = {0};
    float *grad = NULL;
    int lines = 0, values = 0, ddirs = 0, gradients = 0, metrics = 0;
    double worst_mid = 0, worst_end = 0, worst_grad = 0, worst_ddir = 0;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char kind[16], name[64];
        if (line[0] == '#' || sscanf(line, "%15s", kind) != 1) continue;
        lines++;
        if (strcmp(kind, "case") == 0) {
            size_t offset;
            CHECK(sscanf(line, "case %63s %d %d %lf %zu", c.name, &c.N, &c.V, &c.temperature, &offset) == 5);
            CHECK((offset + 2 * (size_t)c.N * c.V) * sizeof(float) <= logit_bytes);
            c.teacher = logits + offset;
            c.student = c.teacher + (size_t)c.N * c.V;
            free(grad);
            grad = malloc((size_t)c.V * sizeof(float));
            continue;
        }
        if (strcmp(kind, "metrics") == 0) {
            int row;
            double want[5];
            CHECK(sscanf(line, "metrics %d %lf %lf %lf %lf %lf", &row, &want[0], &want[1], &want[2], &want[3],
                         &want[4]) == 6);
            gkd_token_metrics m;
            size_t off = (size_t)row * c.V;
            CHECK(gkd_divergence_metrics(c.teacher + off, c.student + off, 1, c.V, c.temperature, &m) ==
                  GKD_OK);
            double got[5] = {m.forward_kl, m.reverse_kl, m.jsd, m.teacher_entropy, m.student_entropy};
            for (int i = 0; i < 5; i++)
                CHECKF(rel_err(got[i], want[i]) <= 1e-5, "%s row %d metric %d: %.17g vs %.17g", c.name, row,
                       i, got[i], want[i]);
            metrics++;
            continue;
        }
        int row, top_k;
        double beta, skew, want;
        CHECKF(sscanf(line, "%*s %d %63s %lf %lf %d %lf", &row, name, &beta, &skew, &top_k, &want) == 6,
               "line: %s", line);
        gkd_divergence d;
        CHECK(gkd_divergence_parse(name, &d) == GKD_OK);
        d.beta = beta;
        d.skew = skew;
        d.top_k = top_k;
        d.teacher_temperature = c.temperature;
        size_t off = (size_t)row * c.V;
        double value;
        int need_grad = strcmp(kind, "value") != 0;
        gkd_status st = gkd_divergence_rows(&d, c.teacher + off, c.student + off, 1, c.V, &value,
                                            need_grad ? grad : NULL, NULL);
        CHECKF(st == GKD_OK, "%s row %d %s: %s", c.name, row, line, gkd_error_message());
        if (st != GKD_OK) continue;
        if (strcmp(kind, "value") == 0) {
            double err = rel_err(value, want), tol = is_jsd_near_end(name, beta) ? 1e-3 : 1e-5;
            CHECKF(err <= tol, "%s row %d %s beta %g skew %g k %d: %.17g vs reference %.17g (rel %.3g)",
                   c.name, row, name, beta, skew, top_k, value, want, err);
            if (is_jsd_near_end(name, beta))
                worst_end = fmax(worst_end, err);
            else
                worst_mid = fmax(worst_mid, err);
            values++;
        } else if (strcmp(kind, "ddir") == 0) {
            double dot = 0, mag = 0;
            for (int v = 0; v < c.V; v++) {
                dot += grad[v] * delta(v);
                mag += fabs(grad[v] * delta(v));
            }
            /* float32 gradients: the dot product is good to ~1e-7 of sum |g_v delta_v|. Rows whose
             * gradient nearly vanishes (a saturated JSD: disjoint supports) are held to an absolute
             * floor, double's rounding of O(value) quantities, which also bounds the reference's
             * finite differences (40 digits, step 1e-15). */
            double err = fabs(dot - want), floor = 1e-13 * (1.0 + fabs(value));
            CHECKF(err <= 1e-5 * mag + 1e-5 * fabs(want) + floor,
                   "%s row %d %s beta %g skew %g k %d: <grad, delta> %.10g vs %.10g", c.name, row, name, beta,
                   skew, top_k, dot, want);
            worst_ddir = fmax(worst_ddir, err / (1e-5 * mag + 1e-5 * fabs(want) + floor));
            ddirs++;
        } else if (strcmp(kind, "grad") == 0) {
            size_t goff = (size_t)want;
            CHECK((goff + c.V) * sizeof(double) <= grad_bytes);
            const double *ref = grads + goff;
            double gmax = 0;
            for (int v = 0; v < c.V; v++) gmax = fmax(gmax, fabs(ref[v]));
            int bad = 0;
            for (int v = 0; v < c.V; v++) {
                double err = fabs(grad[v] - ref[v]);
                double tol = 1e-5 * fabs(ref[v]) + 1e-6 * gmax + 1e-13 * (1.0 + fabs(value));
                if (err > tol) bad++;
                worst_grad = fmax(worst_grad, err / tol);
            }
            CHECKF(bad == 0, "%s row %d %s beta %g skew %g k %d: %d of %d gradient entries off", c.name, row,
                   name, beta, skew, top_k, bad, c.V);
            gradients++;
        }
    }
    fprintf(
        stderr,
        "fixtures: %d values (worst rel error %.2g; JSD near the ends %.2g), %d directional derivatives and "
        "%d gradients (worst errors %.2g and %.2g of their tolerance), %d metric rows\n",
        values, worst_mid, worst_end, ddirs, gradients, worst_ddir, worst_grad, metrics);
    CHECK(values >= 600 && ddirs >= 600 && gradients >= 100 && metrics >= 18);
    free(grad);
    fclose(f);
    free(logits);
    free(grads);
}

/* ---------------------------------------------------------------------------------------------- */
/* Conventions */

static uint64_t rng_state = 88172645463325252ULL;
static double uniform(void) { /* xorshift64: test data only */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) * 0x1.0p-53;
}
static void fill_logits(float *x, int n, double spread) {
    for (int i = 0; i < n; i++) x[i] = (float)(spread * (uniform() + uniform() + uniform() - 1.5));
}

static gkd_divergence named(const char *name, double beta) {
    gkd_divergence d;
    if (gkd_divergence_parse(name, &d) != GKD_OK) abort();
    d.beta = beta;
    return d;
}

static double value_of(gkd_divergence d, const float *t, const float *s, int V, float *grad) {
    double value = NAN;
    gkd_status st = gkd_divergence_rows(&d, t, s, 1, V, &value, grad, NULL);
    CHECKF(st == GKD_OK, "%s: %s", gkd_divergence_name(&d), gkd_error_message());
    return value;
}

static void check_jsd_endpoints(void) {
    enum { V = 200 };
    float t[V], s[V], g1[V], g2[V];
    /* Mild logits: the gap is ~beta sum P^2/Q, so large P/Q ratios would push the linear regime below
     * the betas shown. */
    fill_logits(t, V, 1.5);
    fill_logits(s, V, 1.5);
    double fkl = value_of(named("forward_kl", 0), t, s, V, g1);
    double rkl = value_of(named("reverse_kl", 0), t, s, V, NULL);
    CHECK(fkl > 0.05 && rkl > 0.05 && fkl != rkl);

    /* "scaled" and "trl" are the KLs at the ends, exactly, gradients included. */
    for (int conv = 0; conv < 2; conv++) {
        const char *name = conv ? "jsd_trl" : "jsd_scaled";
        CHECKF(value_of(named(name, 0.0), t, s, V, g2) == fkl, "%s at beta 0", name);
        CHECKF(memcmp(g1, g2, sizeof g1) == 0, "%s gradient at beta 0", name);
        CHECKF(value_of(named(name, 1.0), t, s, V, NULL) == rkl, "%s at beta 1", name);
    }
    /* "paper" is 0 at both ends, with a zero gradient; "trl" is the paper's formula inside. */
    CHECK(value_of(named("jsd", 0.0), t, s, V, g2) == 0.0);
    int nonzero = 0;
    for (int v = 0; v < V; v++) nonzero += g2[v] != 0.0f;
    CHECK(nonzero == 0);
    CHECK(value_of(named("jsd", 1.0), t, s, V, NULL) == 0.0);
    CHECK(value_of(named("jsd_trl", 0.37), t, s, V, NULL) == value_of(named("jsd", 0.37), t, s, V, NULL));

    /* "scaled" approaches its end values as O(beta): each tenfold step closer shrinks the gap ~tenfold. */
    const double steps[] = {1e-2, 1e-3, 1e-4};
    double gap0[3], gap1[3];
    for (int i = 0; i < 3; i++) {
        gap0[i] = fabs(value_of(named("jsd_scaled", steps[i]), t, s, V, NULL) - fkl);
        gap1[i] = fabs(value_of(named("jsd_scaled", 1.0 - steps[i]), t, s, V, NULL) - rkl);
        fprintf(stderr, "jsd_scaled: |D(%g) - KL(P||Q)| = %.3g, |D(1-%g) - KL(Q||P)| = %.3g\n", steps[i],
                gap0[i], steps[i], gap1[i]);
    }
    for (int i = 1; i < 3; i++) {
        CHECKF(gap0[i] < 0.2 * gap0[i - 1] && gap0[i] > 0.0, "scaled gap at beta %g: %g after %g", steps[i],
               gap0[i], gap0[i - 1]);
        CHECKF(gap1[i] < 0.2 * gap1[i - 1] && gap1[i] > 0.0, "scaled gap at 1-%g: %g after %g", steps[i],
               gap1[i], gap1[i - 1]);
    }
    CHECK(gap0[2] < 1e-3 * fkl && gap1[2] < 1e-3 * rkl);
}

static void check_top_k_all_kept(void) {
    enum { V = 300 };
    float t[V], s[V], g1[V], g2[V];
    fill_logits(t, V, 6.0);
    fill_logits(s, V, 6.0);
    t[7] = s[7] = -INFINITY;
    const char *names[] = {"forward_kl", "reverse_kl", "jsd",     "jsd_trl",
                           "jsd_scaled", "tv",         "skew_kl", "skew_reverse_kl"};
    for (int i = 0; i < 8; i++) {
        gkd_divergence d = named(names[i], 0.3);
        d.teacher_temperature = 0.5;
        double exact = value_of(d, t, s, V, g1);
        for (int k = V; k <= V + 5; k += 5) {
            d.top_k = k;
            double approx = value_of(d, t, s, V, g2);
            CHECKF(rel_err(approx, exact) <= 1e-13, "%s top-%d: %.17g vs exact %.17g", names[i], k, approx,
                   exact);
            double err = 0;
            for (int v = 0; v < V; v++) err = fmax(err, fabs(g1[v] - g2[v]));
            CHECKF(err <= 1e-9, "%s top-%d gradient differs from exact by %g", names[i], k, err);
        }
        /* A real approximation differs from the exact value and, coarsening never increasing an
         * f-divergence, lies below it. */
        d.top_k = 20;
        double approx = value_of(d, t, s, V, NULL);
        CHECKF(approx != exact && approx <= exact * (1 + 1e-12), "%s top-20: %.17g, exact %.17g", names[i],
               approx, exact);
    }
}

/* Masked entries: the divergence is +inf where the support does not cover, forward KL's gradient stays
 * Q - P, reverse KL's infinite gradient is refused. */
static void check_masks(void) {
    enum { V = 50 };
    float t[V], s[V], g[V];
    fill_logits(t, V, 3.0);
    fill_logits(s, V, 3.0);
    t[0] = s[0] = -INFINITY; /* masked on both: no effect, no trouble */
    s[1] = -INFINITY;        /* the student masks what the teacher supports */
    double fkl = value_of(named("forward_kl", 0), t, s, V, g);
    CHECK(isinf(fkl) && fkl > 0);
    double mt = -INFINITY, ms = -INFINITY, zt = 0, zs = 0;
    for (int v = 0; v < V; v++) {
        mt = fmax(mt, t[v]);
        ms = fmax(ms, s[v]);
    }
    for (int v = 0; v < V; v++) {
        zt += exp(t[v] - mt);
        zs += exp(s[v] - ms);
    }
    double worst = 0;
    for (int v = 0; v < V; v++) {
        double want = v == 1 ? 0.0 : exp(s[v] - ms) / zs - exp(t[v] - mt) / zt;
        worst = fmax(worst, fabs(g[v] - want));
    }
    CHECKF(worst < 1e-7, "forward KL gradient with a student mask: off by %g from Q - P", worst);
    CHECK(g[0] == 0.0f && g[1] == 0.0f);
    CHECK(isfinite(value_of(named("reverse_kl", 0), t, s, V, NULL)));
    CHECK(isfinite(value_of(named("jsd", 0.5), t, s, V, g)));

    s[1] = 0.0f;
    t[2] = -INFINITY; /* the teacher masks what the student supports */
    double rkl;
    gkd_divergence d = named("reverse_kl", 0);
    CHECK(gkd_divergence_rows(&d, t, s, 1, V, &rkl, NULL, NULL) == GKD_OK && isinf(rkl));
    CHECK(gkd_divergence_rows(&d, t, s, 1, V, &rkl, g, NULL) == GKD_ERR_ARG);
    CHECKF(strstr(gkd_error_message(), "row 0") && strstr(gkd_error_message(), "infinite gradient"),
           "message: %s", gkd_error_message());
    const float zero = 0.0f;
    CHECK(gkd_divergence_rows(&d, t, s, 1, V, &rkl, g, &zero) == GKD_OK); /* not asked for */
    CHECK(isfinite(value_of(named("forward_kl", 0), t, s, V, g)));
    CHECK(isfinite(value_of(named("skew_reverse_kl", 0), t, s, V, g)));
}

static void expect_error(gkd_divergence d, const char *needle) {
    float t[4] = {0, 1, 2, 3}, s[4] = {1, 1, 1, 1};
    double value;
    CHECKF(gkd_divergence_check(&d) == GKD_ERR_ARG, "check accepted a bad setting (%s)", needle);
    CHECKF(strstr(gkd_error_message(), needle) != NULL, "message '%s' lacks '%s'", gkd_error_message(),
           needle);
    CHECK(gkd_divergence_rows(&d, t, s, 1, 4, &value, NULL, NULL) == GKD_ERR_ARG);
}

static void check_bad_settings(void) {
    gkd_divergence d;
    CHECK(gkd_divergence_parse("jensen", &d) == GKD_ERR_ARG);
    CHECKF(strstr(gkd_error_message(), "'jensen'") && strstr(gkd_error_message(), "jsd_scaled") &&
               strstr(gkd_error_message(), "skew_reverse_kl"),
           "message: %s", gkd_error_message());
    CHECK(gkd_divergence_parse(NULL, &d) == GKD_ERR_ARG);

    const double bad_unit[] = {-0.1, 1.5, NAN};
    for (int i = 0; i < 3; i++) {
        d = named("jsd", bad_unit[i]);
        expect_error(d, "beta");
        d = named("skew_kl", 0.5);
        d.skew = bad_unit[i];
        expect_error(d, "skew");
    }
    const double bad_temperature[] = {0.0, -1.0, NAN, INFINITY};
    for (int i = 0; i < 4; i++) {
        d = named("forward_kl", 0.5);
        d.teacher_temperature = bad_temperature[i];
        expect_error(d, "teacher_temperature");
    }
    d = named("forward_kl", 0.5);
    d.top_k = -1;
    expect_error(d, "top_k");
    d = named("forward_kl", 0.5);
    d.kind = (gkd_divergence_kind)42;
    expect_error(d, "kind");

    /* Bad logits name the row and entry. */
    float t[8] = {0, 1, 2, 3, 0, 1, NAN, 3}, s[8] = {1, 1, 1, 1, 1, 1, 1, 1}, g[8];
    double values[2];
    d = named("forward_kl", 0.5);
    CHECK(gkd_divergence_rows(&d, t, s, 2, 4, values, g, NULL) == GKD_ERR_ARG);
    CHECKF(strstr(gkd_error_message(), "row 1, entry 2") && strstr(gkd_error_message(), "teacher"),
           "message: %s", gkd_error_message());
    CHECK(isfinite(values[0]) && isnan(values[1])); /* the good row is still computed */
    t[6] = 2;
    for (int v = 0; v < 4; v++) s[v] = -INFINITY;
    CHECK(gkd_divergence_rows(&d, t, s, 2, 4, values, g, NULL) == GKD_ERR_ARG);
    CHECKF(strstr(gkd_error_message(), "row 0: every student logit is -inf"), "message: %s",
           gkd_error_message());
    s[0] = INFINITY;
    CHECK(gkd_divergence_rows(&d, t, s, 2, 4, values, g, NULL) == GKD_ERR_ARG);
    CHECK(gkd_divergence_rows(&d, t, s, 1, 0, values, g, NULL) == GKD_ERR_SHAPE);
    CHECK(gkd_divergence_rows(&d, t, s, 0, 4, values, g, NULL) == GKD_OK);
    CHECK(gkd_divergence_metrics(t, s, 1, 4, 0.0, (gkd_token_metrics[1]){{0}}) == GKD_ERR_ARG);

    /* Names round-trip; parse gives the documented defaults. */
    const char *names[] = {"forward_kl", "reverse_kl", "jsd",     "jsd_trl",
                           "jsd_scaled", "tv",         "skew_kl", "skew_reverse_kl"};
    for (int i = 0; i < 8; i++) {
        CHECK(gkd_divergence_parse(names[i], &d) == GKD_OK);
        CHECK(strcmp(gkd_divergence_name(&d), names[i]) == 0);
        CHECK(d.beta == 0.5 && d.skew == 0.1 && d.teacher_temperature == 1.0 && d.top_k == 0);
        CHECK(gkd_divergence_check(&d) == GKD_OK);
    }
    CHECK(gkd_divergence_parse("jsd_paper", &d) == GKD_OK && d.kind == GKD_DIV_JSD &&
          d.convention == GKD_JSD_PAPER);
}

/* Several rows at once equal each row alone (bitwise), scales multiply the gradient only, and every
 * gradient sums to 0 (a softmax is unchanged by adding a constant to all logits). */
static void check_rows(void) {
    enum { N = 9, V = 257 };
    static float t[N * V], s[N * V], g[N * V], g1[V];
    float scale[N];
    fill_logits(t, N * V, 5.0);
    fill_logits(s, N * V, 5.0);
    for (int n = 0; n < N; n++) scale[n] = n == 4 ? 0.0f : (float)(n + 1) * 0.25f;
    const char *names[] = {"forward_kl", "reverse_kl",     "jsd", "jsd_scaled", "tv",
                           "skew_kl",    "skew_reverse_kl"};
    for (int i = 0; i < 7; i++) {
        for (int k = 0; k <= 16; k += 16) {
            gkd_divergence d = named(names[i], 0.2);
            d.top_k = k;
            d.teacher_temperature = 0.8;
            double values[N];
            CHECK(gkd_divergence_rows(&d, t, s, N, V, values, g, scale) == GKD_OK);
            for (int n = 0; n < N; n++) {
                double alone = value_of(d, t + n * V, s + n * V, V, g1);
                CHECKF(values[n] == alone, "%s k %d row %d: %.17g together, %.17g alone", names[i], k, n,
                       values[n], alone);
                int mismatched = 0;
                double sum = 0, mag = 0;
                for (int v = 0; v < V; v++) {
                    /* The scale is applied in double before rounding: equal to within one rounding. */
                    float want = scale[n] * g1[v];
                    mismatched += fabsf(g[n * V + v] - want) > 1e-6f * fabsf(want);
                    sum += g1[v];
                    mag += fabs(g1[v]);
                }
                CHECKF(mismatched == 0, "%s k %d row %d: %d scaled gradient entries differ", names[i], k, n,
                       mismatched);
                CHECKF(fabs(sum) <= 1e-6 * mag + 1e-12, "%s k %d row %d: gradient sums to %g", names[i], k, n,
                       sum);
            }
        }
    }
}

/* gkd_divergence_rows_ex equals gkd_divergence_metrics plus gkd_divergence_rows, bit for bit, for every
 * kind, both JSD ends and top-k, on rows with masked entries, a peaked row and a near-equal pair; and a
 * failing row fails the same way (same status and message, NaN metrics, other rows still written). */
static void check_fused(void) {
    enum { N = 5, V = 301 };
    static float t[N * V], s[N * V], g1[N * V], g2[N * V];
    fill_logits(t, N * V, 4.0);
    fill_logits(s, N * V, 4.0);
    for (int v = 0; v < V; v++) s[2 * V + v] = t[2 * V + v] + (float)(1e-3 * (uniform() - 0.5));
    t[3 * V + 7] = 60.0f; /* peaked teacher and student */
    s[3 * V + 9] = 45.0f;
    t[4 * V + 1] = s[4 * V + 1] = -INFINITY; /* masked on both sides, and on one side */
    s[4 * V + 2] = -INFINITY;
    t[4 * V + 3] = -INFINITY;
    float scale[N] = {1.0f, 0.5f, 0.0f, 2.0f, 1.0f};
    const char *names[] = {"forward_kl", "reverse_kl", "jsd",     "jsd_trl",
                           "jsd_scaled", "tv",         "skew_kl", "skew_reverse_kl"};
    const double betas[] = {0.0, 1e-6, 0.5, 0.9, 1.0};
    int compared = 0;
    for (int i = 0; i < 8; i++) {
        for (int b = 0; b < 5; b++) {
            for (int k = 0; k <= 12; k += 12) {
                gkd_divergence d = named(names[i], betas[b]);
                d.skew = betas[b];
                d.top_k = k;
                d.teacher_temperature = 0.6;
                double v1[N], v2[N];
                gkd_token_metrics m1[N], m2[N];
                gkd_status st1 = gkd_divergence_metrics(t, s, N, V, d.teacher_temperature, m1);
                gkd_status st2 = gkd_divergence_rows(&d, t, s, N, V, v1, g1, scale);
                char msg[256];
                snprintf(msg, sizeof msg, "%s", gkd_error_message());
                gkd_status st3 = gkd_divergence_rows_ex(&d, t, s, N, V, v2, g2, scale, m2);
                CHECKF(st1 == GKD_OK, "metrics: %s", gkd_error_message());
                CHECKF(st3 == st2 && (st2 == GKD_OK || strcmp(msg, gkd_error_message()) == 0),
                       "%s beta %g k %d: fused %d (%s), separate %d (%s)", names[i], betas[b], k, st3,
                       gkd_error_message(), st2, msg);
                CHECKF(memcmp(v1, v2, sizeof v1) == 0, "%s beta %g k %d: values differ", names[i], betas[b],
                       k);
                CHECKF(memcmp(g1, g2, sizeof g1) == 0, "%s beta %g k %d: gradients differ", names[i],
                       betas[b], k);
                CHECKF(memcmp(m1, m2, sizeof m1) == 0, "%s beta %g k %d: metrics differ", names[i], betas[b],
                       k);
                compared++;
            }
        }
    }
    CHECK(compared == 80);
    /* Row 4 masks an entry on each side alone: both KLs are infinite, reverse KL's gradient too. */
    gkd_divergence d = named("reverse_kl", 0.5);
    double v[N];
    gkd_token_metrics m[N];
    CHECK(gkd_divergence_rows_ex(&d, t, s, N, V, v, g2, scale, m) == GKD_ERR_ARG);
    CHECKF(strstr(gkd_error_message(), "row 4: reverse_kl has an infinite gradient"), "message: %s",
           gkd_error_message());
    CHECK(isinf(v[4]) && isinf(m[4].forward_kl) && isinf(m[4].reverse_kl) && isfinite(m[4].jsd) &&
          isfinite(v[0]));
    /* A bad logit: NaN value and metrics for its row, the others computed. */
    float keep = t[V + 5];
    t[V + 5] = NAN;
    CHECK(gkd_divergence_rows_ex(&d, t, s, N, V, v, g2, scale, m) == GKD_ERR_ARG);
    CHECKF(strstr(gkd_error_message(), "row 1, entry 5: teacher logit"), "message: %s", gkd_error_message());
    CHECK(isnan(v[1]) && isnan(m[1].jsd) && isnan(m[1].student_entropy) && isfinite(m[0].jsd) &&
          isfinite(v[3]));
    t[V + 5] = keep;
}

int main(void) {
    check_fixtures();
    check_jsd_endpoints();
    check_top_k_all_kept();
    check_masks();
    check_bad_settings();
    check_rows();
    check_fused();
    return check_exit();
}
