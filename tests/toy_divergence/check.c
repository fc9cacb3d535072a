/* The check half of tests/test_toy_divergence.sh: built against a copy of the tree with
 * tests/toy_divergence/add.patch applied, it checks that the toy divergence the patch adds ("toy_jsd_sum",
 * KL(P||M) + KL(Q||M) with M = (P + Q) / 2, i.e. twice the paper's JSD(0.5)) is reachable by name and
 * computed right: its value against a direct double-precision evaluation written here, its gradient
 * against central finite differences of that evaluation, and its top-k approximation with k = V against
 * the exact value.
 * Rules: the reference evaluation shares no code with rl/; tolerances are 1e-9 relative for the value
 * (float logits, double accumulation) and 1e-4 absolute for the gradient (finite differences in double
 * of a float gradient). */
#include <math.h>
#include <stdio.h>

#include "rl/divergence.h"

enum { V = 7 };

static void softmax(const double *x, double *p) {
    double m = x[0], s = 0;
    for (int i = 1; i < V; i++) m = fmax(m, x[i]);
    for (int i = 0; i < V; i++) s += exp(x[i] - m);
    for (int i = 0; i < V; i++) p[i] = exp(x[i] - m) / s;
}

/* KL(P||M) + KL(Q||M), M = (P + Q) / 2, straight from the definition. */
static double reference(const double *t, const double *s) {
    double p[V], q[V], d = 0;
    softmax(t, p);
    softmax(s, q);
    for (int i = 0; i < V; i++) {
        double m = 0.5 * (p[i] + q[i]);
        d += p[i] * log(p[i] / m) + q[i] * log(q[i] / m);
    }
    return d;
}

int main(void) {
    gkd_divergence d;
    if (gkd_divergence_parse("toy_jsd_sum", &d) != GKD_OK || gkd_divergence_check(&d) != GKD_OK) {
        fprintf(stderr, "FAILED: toy_jsd_sum: %s\n", gkd_error_message());
        return 1;
    }
    int fails = 0;
    const float teacher[V] = {1.5f, -0.25f, 0.75f, -2.0f, 0.1f, 2.2f, -0.6f};
    const float student[V] = {-0.4f, 0.9f, 0.3f, 1.1f, -1.3f, 0.2f, 0.05f};
    double t[V], s[V], value = 0, value_k = 0;
    float grad[V];
    for (int i = 0; i < V; i++) t[i] = teacher[i], s[i] = student[i];
    if (gkd_divergence_rows(&d, teacher, student, 1, V, &value, grad, NULL) != GKD_OK) {
        fprintf(stderr, "FAILED: rows: %s\n", gkd_error_message());
        return 1;
    }
    double ref = reference(t, s);
    if (!(fabs(value - ref) <= 1e-9 * fabs(ref))) {
        fprintf(stderr, "FAILED: value %.17g, reference %.17g\n", value, ref);
        fails++;
    }
    for (int i = 0; i < V; i++) {
        const double h = 1e-5;
        double sp[V], sm[V];
        for (int j = 0; j < V; j++) sp[j] = sm[j] = s[j];
        sp[i] += h;
        sm[i] -= h;
        double fd = (reference(t, sp) - reference(t, sm)) / (2 * h);
        if (!(fabs(grad[i] - fd) <= 1e-4)) {
            fprintf(stderr, "FAILED: gradient[%d] %.9g, finite difference %.9g\n", i, grad[i], fd);
            fails++;
        }
    }
    d.top_k = V;
    if (gkd_divergence_rows(&d, teacher, student, 1, V, &value_k, NULL, NULL) != GKD_OK || value_k != value) {
        fprintf(stderr, "FAILED: top_k = V gives %.17g, exact %.17g\n", value_k, value);
        fails++;
    }
    printf("toy_jsd_sum: value %.12g (reference %.12g), %d failures\n", value, ref, fails);
    return fails != 0;
}
