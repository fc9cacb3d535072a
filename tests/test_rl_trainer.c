// ctest-labels: cpu
/* GKD + RL through the trainer's public interface (issue 13):
 * - the policy-gradient term scales with (1 - alpha), normalised advantages or not: with the teacher a
 *   copy of the student the divergence and its gradient vanish, so the step's gradient norm is the policy
 *   gradient's, and its ratio to alpha 0's must be 1 - alpha (0.5, 0.01, 0.001);
 * - `norm` is honoured by both terms: the surrogate's gradient under norm = token is the one under
 *   sequence times B / (output positions in the batch), and at alpha = 1 an RL step (one sample per
 *   prompt) is bit-identical to a plain on-policy GKD step with the same norm, an independent path;
 * - with a reward, a sampling temperature of 0 (greedy: no distribution to differentiate) is refused by
 *   name; another temperature trains (the surrogate takes the logits at it, test_policy_gradient.c); top_k
 *   and top_p (a truncated distribution the surrogate does not differentiate) are refused by name;
 * - the moving-average baselines are saved: 3 steps, save, a fresh trainer and model, load, 3 steps is
 *   bit-identical to 6 uninterrupted steps; a checkpoint of state version 1 (no baselines) is refused
 *   for that baseline, accepted for the others, and a newer version is refused. */
#include "core/text/data.h"
#include "core/format/safetensors.h"
#include "core/text/tokenizer.h"
#include "rl/trainer.h"
#include "tests/check.h"
#include "tests/rl_fixture.h"

#include <string.h>
#include <unistd.h>

typedef struct {
    double loss[16];
    int n;
} loss_log;

static int log_loss(void *ctx, const char *split, int64_t step, const char *name, double value) {
    loss_log *l = ctx;
    if (strcmp(split, "train") == 0 && strcmp(name, "loss") == 0 && step >= 1 && step <= 16) {
        l->loss[step - 1] = value;
        if (step > l->n) l->n = (int)step;
    }
    return 0;
}

static gkd_reward *reward;

static void rl_config(gkd_train_config *c, loss_log *log) {
    gkd_train_config_default(c);
    c->batch_size = 8;
    c->group_size = 4;
    c->max_new_tokens = 24;
    c->steps = 6;
    c->seed = 3;
    c->lr = gkd_schedule_constant(1e-3);
    c->reward = reward;
    c->alpha = gkd_schedule_constant(0.5);
    c->on_metric = log ? log_loss : NULL;
    c->metric_ctx = log;
}

/* One step from a fresh student (seed 12) against `teacher`; returns the step's statistics. */
static gkd_step_stats one_step(const gkd_train_config *c, gkd_model *teacher, gkd_model **student_out) {
    gkd_step_stats s;
    memset(&s, 0, sizeof s);
    gkd_model *student = student_model();
    gkd_trainer *t = NULL;
    CHECKF(gkd_trainer_create(c, student, teacher, tok, &train_text, &train, &held_text, &held, &t) == GKD_OK,
           "%s", gkd_error_message());
    if (t) CHECKF(gkd_trainer_step(t, &s) == GKD_OK, "%s", gkd_error_message());
    gkd_trainer_free(t);
    if (student_out)
        *student_out = student;
    else
        gkd_model_free(student);
    return s;
}

static void check_alpha_scaling(void) {
    gkd_model *twin = student_model(); /* the student's copy: no divergence, no divergence gradient */
    const double alphas[] = {0.0, 0.5, 0.99, 0.999};
    for (int normalize = 0; normalize < 2; normalize++)
        for (int sf = 0; sf < 2; sf++) {
            double g0 = 0;
            for (int k = 0; k < 4; k++) {
                gkd_train_config c;
                rl_config(&c, NULL);
                c.normalize_advantages = normalize;
                c.divergence_score_function = sf;
                c.alpha = gkd_schedule_constant(alphas[k]);
                gkd_step_stats s = one_step(&c, twin, NULL);
                if (k == 0) {
                    g0 = s.grad_norm;
                    CHECKF(g0 > 1e-6, "no policy gradient at alpha 0 (grad norm %g)", g0);
                    continue;
                }
                double ratio = s.grad_norm / g0, want = 1.0 - alphas[k];
                CHECKF(fabs(ratio - want) <= 1e-2 * want,
                       "normalize_advantages %d, score_function %d: gradient at alpha %g is %.6g times alpha "
                       "0's, "
                       "want %.6g",
                       normalize, sf, alphas[k], ratio, want);
            }
        }
    gkd_model_free(twin);
}

static void check_norm(gkd_model *teacher) {
    /* The surrogate alone (teacher = student): token / sequence = B / output positions. */
    gkd_model *twin = student_model();
    gkd_train_config c;
    rl_config(&c, NULL);
    c.alpha = gkd_schedule_constant(0.0);
    c.baseline = GKD_BASELINE_NONE;
    c.norm = GKD_NORM_SEQUENCE;
    gkd_step_stats seq = one_step(&c, twin, NULL);
    c.norm = GKD_NORM_TOKEN;
    gkd_step_stats tok_ = one_step(&c, twin, NULL);
    double ratio = tok_.grad_norm / seq.grad_norm, want = 1.0 / seq.output_length;
    fprintf(stderr, "mean output length %.3f tokens\n", seq.output_length);
    CHECKF(seq.output_length > 1.5, "outputs too short to tell the norms apart (%g tokens)",
           seq.output_length);
    CHECKF(fabs(ratio - want) <= 1e-4 * want, "policy gradient, norm token / sequence = %.7g, want 1 / %g",
           ratio, seq.output_length);
    gkd_model_free(twin);

    /* alpha = 1, one sample per prompt: the divergence term alone, equal to on-policy GKD with that norm. */
    for (int norm = 0; norm < 2; norm++) {
        loss_log rl = {0}, plain = {0};
        gkd_model *a = student_model(), *b = student_model();
        gkd_trainer *ta = NULL, *tb = NULL;
        rl_config(&c, &rl);
        c.alpha = gkd_schedule_constant(1.0);
        c.group_size = 1;
        c.baseline = GKD_BASELINE_NONE;
        c.divergence_score_function = 0;
        c.norm = (gkd_loss_norm)norm;
        c.steps = 2;
        CHECKF(gkd_trainer_create(&c, a, teacher, tok, &train_text, &train, &held_text, &held, &ta) == GKD_OK,
               "%s", gkd_error_message());
        c.reward = NULL;
        c.lambda = gkd_schedule_constant(1.0);
        c.metric_ctx = &plain;
        CHECK(gkd_trainer_create(&c, b, teacher, tok, &train_text, &train, &held_text, &held, &tb) == GKD_OK);
        for (int i = 0; i < 2 && ta && tb; i++) {
            gkd_step_stats s;
            CHECKF(gkd_trainer_step(ta, &s) == GKD_OK, "%s", gkd_error_message());
            CHECKF(gkd_trainer_step(tb, &s) == GKD_OK, "%s", gkd_error_message());
        }
        CHECK(rl.n == 2 && plain.n == 2);
        for (int i = 0; i < 2; i++)
            CHECKF(rl.loss[i] == plain.loss[i],
                   "norm %s, step %d: RL at alpha 1 loss %.9g, on-policy GKD %.9g",
                   norm == GKD_NORM_TOKEN ? "token" : "sequence", i + 1, rl.loss[i], plain.loss[i]);
        CHECKF(memcmp(gkd_model_params(a), gkd_model_params(b), gkd_model_num_params(a) * sizeof(float)) == 0,
               "norm %s: the students differ after RL at alpha 1 and on-policy GKD",
               norm == GKD_NORM_TOKEN ? "token" : "sequence");
        gkd_trainer_free(ta);
        gkd_trainer_free(tb);
        gkd_model_free(a);
        gkd_model_free(b);
    }
}

static void check_sampling_settings(gkd_model *teacher) {
    gkd_model *s = student_model();
    gkd_train_config c;
    gkd_trainer *t = NULL;
    rl_config(&c, NULL);
    c.sample_temperature = gkd_schedule_constant(0.0);
    CHECK(gkd_trainer_create(&c, s, teacher, tok, &train_text, &train, &held_text, &held, &t) == GKD_ERR_ARG);
    CHECKF(strstr(gkd_error_message(), "temperature") != NULL, "%s", gkd_error_message());
    rl_config(&c, NULL);
    c.sample_temperature = gkd_schedule_linear(1.0, 0.0, 4);
    CHECK(gkd_trainer_create(&c, s, teacher, tok, &train_text, &train, &held_text, &held, &t) == GKD_ERR_ARG);
    CHECKF(strstr(gkd_error_message(), "temperature") != NULL, "%s", gkd_error_message());
    CHECK(t == NULL);
    /* Top-k and top-p truncate the distribution the samples come from: refused by name with a reward. */
    rl_config(&c, NULL);
    c.top_k = 20;
    CHECK(gkd_trainer_create(&c, s, teacher, tok, &train_text, &train, &held_text, &held, &t) == GKD_ERR_ARG);
    CHECKF(strstr(gkd_error_message(), "top_k") != NULL, "%s", gkd_error_message());
    rl_config(&c, NULL);
    c.top_p = 0.9f;
    CHECK(gkd_trainer_create(&c, s, teacher, tok, &train_text, &train, &held_text, &held, &t) == GKD_ERR_ARG);
    CHECKF(strstr(gkd_error_message(), "top_p") != NULL, "%s", gkd_error_message());
    CHECK(t == NULL);
    /* A temperature other than 1 trains (the surrogate takes the logits at that temperature). */
    rl_config(&c, NULL);
    c.sample_temperature = gkd_schedule_constant(0.7);
    gkd_step_stats st = one_step(&c, teacher, NULL);
    CHECK(isfinite(st.loss) && st.grad_norm > 0);
    gkd_model_free(s);
}

/* Rewrites dir/state.safetensors as state version `version` without the baselines' keys. */
static void rewrite_state(const char *dir, const char *version) {
    char path[256];
    snprintf(path, sizeof path, "%s/state.safetensors", dir);
    gkd_safetensors *sf = NULL;
    CHECK(gkd_safetensors_open(path, &sf) == GKD_OK);
    if (!sf) return;
    char step[32], position[32], seed[32];
    snprintf(step, sizeof step, "%s", gkd_safetensors_metadata(sf, "gkd_step"));
    snprintf(position, sizeof position, "%s", gkd_safetensors_metadata(sf, "gkd_data_position"));
    snprintf(seed, sizeof seed, "%s", gkd_safetensors_metadata(sf, "gkd_seed"));
    size_t n = 0;
    {
        gkd_model *probe = tiny_model(16, 1, 1);
        n = gkd_model_num_params(probe);
        gkd_model_free(probe);
    }
    float *m = malloc(n * sizeof *m), *v = malloc(n * sizeof *v);
    int64_t shape[1] = {(int64_t)n};
    CHECK(gkd_safetensors_read_f32(sf, "adamw.m", m, 1, shape) == GKD_OK);
    CHECK(gkd_safetensors_read_f32(sf, "adamw.v", v, 1, shape) == GKD_OK);
    gkd_safetensors_close(sf);
    gkd_st_tensor tensors[2] = {{"adamw.m", GKD_ST_F32, 1, shape, m}, {"adamw.v", GKD_ST_F32, 1, shape, v}};
    const char *keys[] = {"gkd_step", "gkd_data_position", "gkd_seed", "gkd_state_version"};
    const char *values[] = {step, position, seed, version};
    CHECK(gkd_safetensors_write(path, tensors, 2, keys, values, 4) == GKD_OK);
    free(m);
    free(v);
}

static void check_resume(gkd_model *teacher) {
    char dir[128];
    snprintf(dir, sizeof dir, "/tmp/gkd-test-rl-trainer-%d", (int)getpid());
    loss_log whole = {0}, first = {0}, rest = {0};
    gkd_train_config c;
    /* The moving average shifts every advantage (not normalised), so a lost baseline changes the run. */
    rl_config(&c, &whole);
    c.baseline = GKD_BASELINE_MOVING_AVERAGE;
    c.baseline_decay = 0.5;
    gkd_model *s1 = student_model(), *s2 = student_model(), *s3 = tiny_model(16, 1, 99);
    gkd_trainer *t1 = NULL, *t2 = NULL, *t3 = NULL;
    CHECKF(gkd_trainer_create(&c, s1, teacher, tok, &train_text, &train, &held_text, &held, &t1) == GKD_OK,
           "%s", gkd_error_message());
    for (int i = 0; i < 6 && t1; i++) {
        gkd_step_stats s;
        CHECKF(gkd_trainer_step(t1, &s) == GKD_OK, "%s", gkd_error_message());
    }
    c.metric_ctx = &first;
    CHECK(gkd_trainer_create(&c, s2, teacher, tok, &train_text, &train, &held_text, &held, &t2) == GKD_OK);
    for (int i = 0; i < 3 && t2; i++) {
        gkd_step_stats s;
        CHECK(gkd_trainer_step(t2, &s) == GKD_OK);
    }
    CHECKF(t2 && gkd_trainer_save(t2, dir) == GKD_OK, "%s", gkd_error_message());
    gkd_trainer_free(t2);
    c.metric_ctx = &rest;
    CHECK(gkd_trainer_create(&c, s3, teacher, tok, &train_text, &train, &held_text, &held, &t3) == GKD_OK);
    CHECKF(t3 && gkd_trainer_load(t3, dir) == GKD_OK, "%s", gkd_error_message());
    for (int i = 0; i < 3 && t3; i++) {
        gkd_step_stats s;
        CHECK(gkd_trainer_step(t3, &s) == GKD_OK);
    }
    CHECK(whole.n == 6 && first.n == 3 && rest.n == 6);
    for (int i = 0; i < 3; i++) CHECKF(whole.loss[i] == first.loss[i], "step %d before the save", i + 1);
    for (int i = 3; i < 6; i++)
        CHECKF(whole.loss[i] == rest.loss[i], "moving-average baseline, step %d after resume: %.9g vs %.9g",
               i + 1, rest.loss[i], whole.loss[i]);
    CHECKF(memcmp(gkd_model_params(s1), gkd_model_params(s3), gkd_model_num_params(s1) * sizeof(float)) == 0,
           "the resumed student differs from the uninterrupted one");
    gkd_trainer_free(t1);
    gkd_trainer_free(t3);

    /* A state without the baselines (version 1): refused for the moving average, fine for the others. */
    rewrite_state(dir, "1");
    gkd_trainer *t = NULL;
    CHECK(gkd_trainer_create(&c, s3, teacher, tok, &train_text, &train, &held_text, &held, &t) == GKD_OK);
    CHECK(t && gkd_trainer_load(t, dir) == GKD_ERR_FORMAT);
    CHECKF(strstr(gkd_error_message(), "moving-average baseline") != NULL, "%s", gkd_error_message());
    gkd_trainer_free(t);
    t = NULL;
    c.baseline = GKD_BASELINE_GROUP;
    CHECK(gkd_trainer_create(&c, s3, teacher, tok, &train_text, &train, &held_text, &held, &t) == GKD_OK);
    CHECKF(t && gkd_trainer_load(t, dir) == GKD_OK, "%s", gkd_error_message());
    gkd_trainer_free(t);
    t = NULL;
    rewrite_state(dir, "4");
    CHECK(gkd_trainer_create(&c, s3, teacher, tok, &train_text, &train, &held_text, &held, &t) == GKD_OK);
    CHECK(t && gkd_trainer_load(t, dir) == GKD_ERR_FORMAT);
    CHECKF(strstr(gkd_error_message(), "version 4") != NULL, "%s", gkd_error_message());
    gkd_trainer_free(t);

    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    gkd_model_free(s1);
    gkd_model_free(s2);
    gkd_model_free(s3);
}

int main(void) {
    rl_fixture_init();
    CHECK(gkd_reward_custom("length_mod_5", length_mod_reward, NULL, NULL, &reward) == GKD_OK);
    gkd_model *teacher = tiny_model(32, 2, 11);

    check_alpha_scaling();
    check_norm(teacher);
    check_sampling_settings(teacher);
    check_resume(teacher);

    gkd_model_free(teacher);
    gkd_reward_free(reward);
    rl_fixture_free();
    return check_exit();
}
