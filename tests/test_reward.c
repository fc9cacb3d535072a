/* The reward interface: built-ins agree with the metric functions they wrap, sums and clipping compose
 * them, custom rewards plug in, and a NaN or failing reward is an error naming it. */
#include "reward/metrics.h"
#include "reward/reward.h"
#include "tests/check.h"

#include <string.h>

static gkd_status nan_reward(gkd_reward *r, const gkd_reward_sample *s, int n, double *scores) {
    (void)r;
    (void)s;
    for (int i = 0; i < n; i++) scores[i] = i == 1 ? NAN : 1.0;
    return GKD_OK;
}

static gkd_status failing_reward(gkd_reward *r, const gkd_reward_sample *s, int n, double *scores) {
    (void)r;
    (void)s;
    (void)n;
    (void)scores;
    return gkd_error_set(GKD_ERR_CALLBACK, "boom");
}

int main(void) {
    gkd_reward_sample s[3] = {
        {"libfoo parses XML files quickly", "p", "parses XML files", "fast XML parser"},
        {"a tool for images", "p", "a tool for PostgreSQL 9.6", "image tool"},
        {"", "p", "The answer is 12", "so 5 + 7 = 12. Answer: 12"},
    };
    double scores[3];
    gkd_reward *f = NULL;
    CHECK(gkd_reward_builtin("factual", &f) == GKD_OK);
    CHECK(gkd_reward_score(f, s, 3, scores) == GKD_OK);
    for (int i = 0; i < 3; i++) {
        gkd_factual_parts p;
        gkd_factual_score(s[i].output, s[i].source, NULL, &p);
        CHECK(scores[i] == p.score);
    }
    CHECK(scores[0] == 1.0 && scores[1] < 1.0);
    gkd_reward *rl = NULL;
    CHECK(gkd_reward_builtin("rougeL", &rl) == GKD_OK);
    CHECK(gkd_reward_score(rl, s, 3, scores) == GKD_OK);
    gkd_prf prf;
    gkd_rouge_l(s[0].output, s[0].reference, 0, &prf);
    CHECK(scores[0] == prf.f);
    gkd_reward *em = NULL;
    CHECK(gkd_reward_builtin("exact_match", &em) == GKD_OK);
    CHECK(gkd_reward_score(em, s, 3, scores) == GKD_OK);
    CHECK(scores[2] == 1.0 && scores[0] == 0.0);

    /* 0.5 * factual + 2 * exact_match, clipped to [0, 1.2]. */
    gkd_reward *parts[2] = {f, em};
    double w[2] = {0.5, 2.0};
    gkd_reward *sum = NULL;
    CHECK(gkd_reward_sum(parts, w, 2, 0.0, 1.2, &sum) == GKD_OK);
    CHECK(gkd_reward_score(sum, s, 3, scores) == GKD_OK);
    gkd_factual_parts p2;
    gkd_factual_score(s[2].output, s[2].source, NULL, &p2);
    CHECK(fabs(scores[0] - 0.5) < 1e-12);
    CHECK(scores[2] == (0.5 * p2.score + 2.0 > 1.2 ? 1.2 : 0.5 * p2.score + 2.0));
    CHECK(strstr(sum->name, "factual") && strstr(sum->name, "exact_match"));

    gkd_reward *bad = NULL;
    CHECK(gkd_reward_builtin("rouge9", &bad) == GKD_ERR_ARG);
    CHECK(strstr(gkd_error_message(), "rouge9") != NULL);
    CHECK(gkd_reward_custom("nanny", nan_reward, NULL, NULL, &bad) == GKD_OK);
    CHECK(gkd_reward_score(bad, s, 3, scores) == GKD_ERR_CALLBACK);
    CHECKF(strstr(gkd_error_message(), "nanny") && strstr(gkd_error_message(), "sample 2"), "%s", gkd_error_message());
    gkd_reward_free(bad);
    CHECK(gkd_reward_custom("failing", failing_reward, NULL, NULL, &bad) == GKD_OK);
    CHECK(gkd_reward_score(bad, s, 3, scores) == GKD_ERR_CALLBACK);
    CHECKF(strstr(gkd_error_message(), "failing") && strstr(gkd_error_message(), "boom"), "%s", gkd_error_message());
    gkd_reward_free(bad);

    gkd_reward *len = NULL;
    CHECK(gkd_reward_length(2, 3, 1.0, &len) == GKD_OK);
    CHECK(gkd_reward_score(len, s, 3, scores) == GKD_OK);
    CHECK(scores[0] == 0.0 && scores[1] < 0.0);
    gkd_reward_free(len);
    gkd_reward_free(sum);
    gkd_reward_free(rl);
    gkd_reward_free(NULL);
    return check_exit();
}
