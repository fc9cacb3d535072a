/* The GKD trainer (see trainer.h). */
#include "rl/trainer.h"
#include "rl/trainer_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/format/checkpoint.h"
#include "core/tensor/optim.h"
#include "core/format/safetensors.h"
#include "core/tensor/sample.h"
#include "core/text/tokenizer.h"


double gkd_trainer_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void gkd_train_config_default(gkd_train_config *c) {
    memset(c, 0, sizeof *c);
    c->method = "supervised_kd";
    c->divergence.kind = GKD_DIV_FORWARD_KL;
    c->divergence.beta = 0.5;
    c->divergence.convention = GKD_JSD_PAPER;
    c->divergence.skew = 0.1;
    c->divergence.teacher_temperature = 1.0;
    c->divergence_precision = GKD_DIV_FLOAT32;
    c->lambda = gkd_schedule_constant(0.0);
    c->beta = gkd_schedule_constant(0.5);
    c->teacher_temperature = gkd_schedule_constant(1.0);
    c->sample_temperature = gkd_schedule_constant(1.0);
    c->lr = gkd_schedule_warmup_cosine(3e-4, 3e-5, 10, 100);
    c->norm = GKD_NORM_SEQUENCE;
    c->fixed = GKD_FIXED_GROUND_TRUTH;
    c->max_new_tokens = 64;
    c->top_p = 1.0f;
    c->steps = 100;
    c->batch_size = 8;
    c->grad_accum = 1;
    c->weight_decay = 0.01f;
    c->beta1 = 0.9f;
    c->beta2 = 0.95f;
    c->adam_eps = 1e-8f;
    c->grad_clip = 1.0f;
    c->seed = 1;
    c->loss_chunk = 128;
    c->eval_examples = 64;
    c->alpha = gkd_schedule_constant(0.5);
    c->group_size = 4;
    c->baseline = GKD_BASELINE_GROUP;
    c->baseline_decay = 0.9;
    c->divergence_score_function = 1;
    c->kl_coef = gkd_schedule_constant(0.0);
    c->epochs = gkd_schedule_constant(1.0);
    c->minibatches = 1;
    c->clip_eps = gkd_schedule_constant(0.2);
    c->kl_in_loss = -1;
    c->target_kl = gkd_schedule_constant(0.0);
    c->value_head = 1;
    c->gamma = 1.0;
    c->gae_lambda = 0.95;
    c->vf_coef = gkd_schedule_constant(0.1);
    c->value_clip = 0.2;
    c->whiten_advantages = 1;
    c->loss_agg = GKD_RL_AGG_SEQUENCE_MEAN;
    c->scale_rewards = 1;
    c->teacher_reward = gkd_schedule_constant(0.0);
}

gkd_status gkd_train_config_preset(gkd_train_config *c, const char *method) {
    if (strcmp(method, "sft") == 0) {
        c->use_ce = 1;
        c->lambda = gkd_schedule_constant(0.0);
        c->fixed = GKD_FIXED_GROUND_TRUTH;
    } else if (strcmp(method, "supervised_kd") == 0) {
        c->use_ce = 0;
        c->lambda = gkd_schedule_constant(0.0);
        c->fixed = GKD_FIXED_GROUND_TRUTH;
        c->divergence.kind = GKD_DIV_FORWARD_KL;
    } else if (strcmp(method, "seqkd") == 0) {
        c->use_ce = 1;
        c->lambda = gkd_schedule_constant(0.0);
        c->fixed = GKD_FIXED_TEACHER;
    } else if (strcmp(method, "imitkd") == 0) {
        /* ImitKD: a mix that moves from the fixed data to the student's own samples. */
        c->use_ce = 0;
        c->lambda = gkd_schedule_linear(0.0, 1.0, c->steps > 0 ? c->steps : 1);
        c->per_sample_coin = 1;
        c->divergence.kind = GKD_DIV_FORWARD_KL;
    } else if (strcmp(method, "gkd") == 0 || strcmp(method, "on_policy") == 0) {
        c->use_ce = 0;
        c->lambda = gkd_schedule_constant(1.0);
    } else if (strcmp(method, "reinforce") == 0 || strcmp(method, "ppo") == 0 || strcmp(method, "grpo") == 0) {
        /* GKD + RL (they need a reward): every batch is the student's own samples */
        c->use_ce = 0;
        c->lambda = gkd_schedule_constant(1.0);
        c->rl_method = method[0] == 'r' ? GKD_RL_REINFORCE : method[0] == 'p' ? GKD_RL_PPO : GKD_RL_GRPO;
    } else {
        return gkd_error_set(GKD_ERR_ARG,
                             "unknown method \"%s\" (valid: sft, supervised_kd, seqkd, imitkd, gkd, reinforce, ppo, grpo)",
                             method);
    }
    c->method = method;
    return GKD_OK;
}

void gkd_trainer_free(gkd_trainer *t) {
    if (!t) return;
    gkd_optim_free(t->opt);
    gkd_distill_workspace_free(t->ws);
    gkd_data_order_free(&t->order);
    gkd_batch_free(&t->batch);
    gkd_token_dataset_free(&t->teacher_data);
    if (t->be) t->be->free(t->dhidden);
    free(t->idx);
    free(t->prompts);
    free(t->prompt_lens);
    free(t->gen_tokens);
    free(t->gen_logprobs);
    free(t->gen_lens);
    free(t->out_tokens);
    free(t->out_lens);
    free(t->rl_prompts);
    free(t->rewards);
    free(t->returns);
    free(t->advantages);
    free(t->row_div);
    free(t->pg_weight);
    free(t->samples);
    if (t->texts)
        for (int i = 0; i < t->cfg.batch_size; i++) free(t->texts[i]);
    free(t->texts);
    gkd_distill_workspace_free(t->ws_ref);
    if (t->be) t->be->free(t->dhidden_ref);
    gkd_model_free(t->reference);
    gkd_trainer_ppo_free(t);
    free(t);
}

static gkd_status check_config(const gkd_train_config *c, gkd_model *student, gkd_model *teacher,
                               const gkd_token_dataset *train) {
    gkd_status st;
    if (c->steps < 0) return gkd_error_set(GKD_ERR_ARG, "steps must be >= 0, got %d", c->steps);
    if (c->batch_size < 1) return gkd_error_set(GKD_ERR_ARG, "batch must be >= 1, got %d", c->batch_size);
    if (c->grad_accum < 1) return gkd_error_set(GKD_ERR_ARG, "grad_accum must be >= 1, got %d", c->grad_accum);
    if (c->max_new_tokens < 1)
        return gkd_error_set(GKD_ERR_ARG, "max_new_tokens must be >= 1, got %d", c->max_new_tokens);
    if (c->loss_chunk < 1) return gkd_error_set(GKD_ERR_ARG, "loss_chunk must be >= 1");
    if (!(c->top_p > 0.0f && c->top_p <= 1.0f)) return gkd_error_set(GKD_ERR_ARG, "top_p must be in (0, 1]");
    if (c->top_k < 0) return gkd_error_set(GKD_ERR_ARG, "top_k must be >= 0");
    if ((st = gkd_schedule_check_range(&c->lambda, "lambda", 0.0, 1.0)) != GKD_OK) return st;
    if ((st = gkd_schedule_check_range(&c->beta, "beta", 0.0, 1.0)) != GKD_OK) return st;
    if ((st = gkd_schedule_check_range(&c->teacher_temperature, "teacher_temperature", 1e-6, 1e6)) != GKD_OK)
        return st;
    if ((st = gkd_schedule_check_range(&c->sample_temperature, "temperature", 0.0, 1e6)) != GKD_OK) return st;
    if ((st = gkd_schedule_check_range(&c->lr, "lr", 0.0, 10.0)) != GKD_OK) return st;
    if (!c->use_ce && (st = gkd_divergence_check(&c->divergence)) != GKD_OK) return st;
    if (c->divergence_precision != GKD_DIV_EXACT && c->divergence_precision != GKD_DIV_FLOAT32)
        return gkd_error_set(GKD_ERR_ARG, "divergence_precision must be exact or float32");
    if (!(c->weight_decay >= 0)) return gkd_error_set(GKD_ERR_ARG, "weight_decay must be >= 0");
    if (!(c->beta1 >= 0 && c->beta1 < 1 && c->beta2 >= 0 && c->beta2 < 1))
        return gkd_error_set(GKD_ERR_ARG, "adam betas must be in [0, 1)");
    if (!(c->grad_clip >= 0)) return gkd_error_set(GKD_ERR_ARG, "grad_clip must be >= 0 (0 = off)");
    if ((unsigned)c->teacher_weights > GKD_WEIGHTS_Q8_0_A8 || (unsigned)c->reference_weights > GKD_WEIGHTS_Q8_0_A8)
        return gkd_error_set(GKD_ERR_ARG, "teacher_precision, reference_precision must be fp32, bf16, q8_0 or q8_0_a8");
    if (c->teacher_weights != GKD_WEIGHTS_FP32 && !teacher)
        return gkd_error_set(GKD_ERR_ARG, "teacher_precision = %s needs a teacher",
                             gkd_weight_format_name(c->teacher_weights));
    if (c->reference_weights != GKD_WEIGHTS_FP32 && !(c->reward && gkd_trainer_schedule_maybe_nonzero(&c->kl_coef)))
        return gkd_error_set(GKD_ERR_ARG,
                             "reference_precision = %s needs a reward and kl_coef > 0 (the reference policy exists "
                             "only then)",
                             gkd_weight_format_name(c->reference_weights));
    if (c->reward && c->rl_method != GKD_RL_REINFORCE &&
        (c->teacher_weights != GKD_WEIGHTS_FP32 || c->reference_weights != GKD_WEIGHTS_FP32 ||
         (teacher && gkd_model_weight_format(teacher) != GKD_WEIGHTS_FP32)))
        return gkd_error_set(GKD_ERR_ARG,
                             "teacher_precision, reference_precision: method \"%s\" needs fp32 teacher and reference "
                             "weights (its log-probability passes read their fp32 output matrices)",
                             c->rl_method == GKD_RL_PPO ? "ppo" : "grpo");
    if (teacher && c->teacher_weights == GKD_WEIGHTS_FP32 && gkd_model_weight_format(teacher) != GKD_WEIGHTS_FP32)
        return gkd_error_set(GKD_ERR_ARG,
                             "teacher_precision = fp32, but the teacher's weights are %s: set teacher_precision = "
                             "\"%s\" to use it so, or load it again",
                             gkd_weight_format_name(gkd_model_weight_format(teacher)),
                             gkd_weight_format_name(gkd_model_weight_format(teacher)));
    int needs_teacher = !c->use_ce || c->fixed == GKD_FIXED_TEACHER;
    if (needs_teacher && !teacher)
        return gkd_error_set(GKD_ERR_ARG, "method \"%s\" needs a teacher", c->method ? c->method : "?");
    if (teacher) {
        int vs = gkd_model_get_config(student)->vocab_size, vt = gkd_model_get_config(teacher)->vocab_size;
        if (vs != vt)
            return gkd_error_set(GKD_ERR_ARG, "teacher and student vocabularies differ (teacher %d, student %d tokens)",
                                 vt, vs);
        if (gkd_model_backend(teacher) != gkd_model_backend(student))
            return gkd_error_set(GKD_ERR_ARG, "teacher and student are on different devices");
    }
    if (!train || train->n < 1) return gkd_error_set(GKD_ERR_ARG, "the training set is empty");
    if ((st = gkd_trainer_check_dist(c)) != GKD_OK) return st;
    if (!c->reward && c->rl_method != GKD_RL_REINFORCE)
        return gkd_error_set(GKD_ERR_ARG, "method \"%s\" needs a reward", c->rl_method == GKD_RL_PPO ? "ppo" : "grpo");
    if (!c->reward && c->method && strcmp(c->method, "reinforce") == 0)
        return gkd_error_set(GKD_ERR_ARG, "method \"reinforce\" needs a reward");
    if (c->reward) {
        if ((st = gkd_schedule_check_range(&c->alpha, "alpha", 0.0, 1.0)) != GKD_OK) return st;
        if (c->group_size < 1 || c->batch_size % c->group_size != 0)
            return gkd_error_set(GKD_ERR_ARG, "group_size (%d) must divide batch (%d)", c->group_size, c->batch_size);
        int uses_baseline = c->rl_method == GKD_RL_REINFORCE || (c->rl_method == GKD_RL_PPO && !c->value_head);
        if (uses_baseline && c->baseline == GKD_BASELINE_GROUP && c->group_size < 2)
            return gkd_error_set(GKD_ERR_ARG, "the group baseline needs group_size >= 2");
        if (!(c->baseline_decay >= 0 && c->baseline_decay < 1))
            return gkd_error_set(GKD_ERR_ARG, "baseline_decay must be in [0, 1)");
        if ((st = gkd_schedule_check_range(&c->kl_coef, "kl_coef", 0.0, 1e6)) != GKD_OK) return st;
        if (c->rl_method != GKD_RL_REINFORCE && (st = gkd_trainer_check_ppo_config(c)) != GKD_OK) return st;
        /* The surrogate differentiates log softmax(logits / temperature), the distribution the samples come
         * from; greedy decoding has none. */
        if ((st = gkd_schedule_check_range(&c->sample_temperature, "temperature", 1e-6, 1e6)) != GKD_OK)
            return gkd_error_prefix(st, "with a reward the sampling temperature must be > 0");
        /* Top-k / top-p samples come from a truncated distribution the surrogate does not differentiate:
         * the policy gradient would be off-policy and biased, so they are refused rather than ignored. */
        if (c->top_k > 0)
            return gkd_error_set(GKD_ERR_ARG, "top_k = %d with a reward: the policy gradient needs samples from the "
                                              "full distribution (top_k = 0)", c->top_k);
        if (c->top_p < 1)
            return gkd_error_set(GKD_ERR_ARG, "top_p = %g with a reward: the policy gradient needs samples from the "
                                              "full distribution (top_p = 1)", (double)c->top_p);
        if (!teacher) return gkd_error_set(GKD_ERR_ARG, "RL with a distillation term needs a teacher");
        if (c->use_ce) return gkd_error_set(GKD_ERR_ARG, "RL uses the divergence, not cross-entropy (use_ce)");
    }
    return GKD_OK;
}

static gkd_status alloc_buffers(gkd_trainer *t) {
    int B = t->cfg.batch_size;
    int max_prompt = 1, max_target = 1;
    for (int i = 0; i < t->train->n; i++) {
        const gkd_tokenized *r = &t->train->rows[i];
        if (r->prompt_len > max_prompt) max_prompt = r->prompt_len;
        if (r->len - r->prompt_len > max_target) max_target = r->len - r->prompt_len;
    }
    if (t->held)
        for (int i = 0; i < t->held->n; i++) {
            const gkd_tokenized *r = &t->held->rows[i];
            if (r->prompt_len > max_prompt) max_prompt = r->prompt_len;
            if (r->len - r->prompt_len > max_target) max_target = r->len - r->prompt_len;
        }
    t->max_prompt = max_prompt;
    t->max_out = max_target > t->cfg.max_new_tokens ? max_target : t->cfg.max_new_tokens;
    int seq = gkd_model_get_config(t->student)->max_seq_len;
    if (max_prompt + t->max_out > seq + 1)
        return gkd_error_set(GKD_ERR_ARG,
                             "prompt (%d tokens) + output (%d tokens) exceed the student's max_seq_len %d: "
                             "shorten max_prompt / max_new_tokens or use a longer context",
                             max_prompt, t->max_out, seq);
    if (t->teacher && max_prompt + t->max_out > gkd_model_get_config(t->teacher)->max_seq_len + 1)
        return gkd_error_set(GKD_ERR_ARG, "prompt + output exceed the teacher's max_seq_len %d",
                             gkd_model_get_config(t->teacher)->max_seq_len);
    t->idx = calloc((size_t)B, sizeof *t->idx);
    t->prompts = calloc((size_t)B * max_prompt, sizeof *t->prompts);
    t->prompt_lens = calloc((size_t)B, sizeof *t->prompt_lens);
    t->gen_tokens = calloc((size_t)B * t->max_out, sizeof *t->gen_tokens);
    t->gen_logprobs = calloc((size_t)B * t->max_out, sizeof *t->gen_logprobs);
    t->gen_lens = calloc((size_t)B, sizeof *t->gen_lens);
    t->out_tokens = calloc((size_t)B * t->max_out, sizeof *t->out_tokens);
    t->out_lens = calloc((size_t)B, sizeof *t->out_lens);
    if (!t->idx || !t->prompts || !t->prompt_lens || !t->gen_tokens || !t->gen_logprobs || !t->gen_lens ||
        !t->out_tokens || !t->out_lens)
        return gkd_error_set(GKD_ERR_NOMEM, "out of memory (trainer buffers)");
    return GKD_OK;
}

gkd_status gkd_trainer_ensure_dhidden(gkd_trainer *t, int B, int T) {
    size_t need = (size_t)B * T * gkd_model_get_config(t->student)->dim * sizeof(float);
    if (need <= t->dhidden_cap) return GKD_OK;
    t->be->free(t->dhidden);
    t->dhidden = t->be->alloc(need);
    t->dhidden_cap = t->dhidden ? need : 0;
    return t->dhidden ? GKD_OK : gkd_error_set(GKD_ERR_NOMEM, "out of memory (%zu bytes of gradients)", need);
}

gkd_status gkd_trainer_generate(gkd_trainer *t, gkd_model *m, const gkd_token_dataset *d, const int *idx, int n,
                           float temperature, int max_new, uint64_t stream, uint64_t offset) {
    return gkd_trainer_generate_strided(t, m, d, idx, n, temperature, max_new, stream, offset, 0);
}

gkd_status gkd_trainer_generate_strided(gkd_trainer *t, gkd_model *m, const gkd_token_dataset *d, const int *idx,
                                        int n, float temperature, int max_new, uint64_t stream, uint64_t offset,
                                        int row_stride) {
    for (int b = 0; b < n; b++) {
        const gkd_tokenized *r = &d->rows[idx[b]];
        memcpy(t->prompts + (size_t)b * t->max_prompt, r->ids, (size_t)r->prompt_len * sizeof(int));
        for (int i = r->prompt_len; i < t->max_prompt; i++) t->prompts[(size_t)b * t->max_prompt + i] = t->pad_id;
        t->prompt_lens[b] = r->prompt_len;
    }
    gkd_sample_config sc = {.temperature = temperature, .top_k = t->cfg.top_k, .top_p = t->cfg.top_p,
                            .max_new_tokens = max_new, .eos_id = t->eos_id, .row_stride = row_stride};
    gkd_rng rng = {t->cfg.seed, stream, offset};
    gkd_status st = gkd_sample_generate(m, t->prompts, t->prompt_lens, n, t->max_prompt, &sc, &rng, t->gen_tokens,
                                        t->gen_lens, t->gen_logprobs);
    if (st != GKD_OK || max_new == t->max_out) return st;
    /* The sampler packs rows max_new apart; spread them to max_out, last row first so nothing is overwritten. */
    for (int b = n - 1; b > 0; b--) {
        memmove(t->gen_tokens + (size_t)b * t->max_out, t->gen_tokens + (size_t)b * max_new, (size_t)max_new * sizeof(int));
        memmove(t->gen_logprobs + (size_t)b * t->max_out, t->gen_logprobs + (size_t)b * max_new,
                (size_t)max_new * sizeof(float));
    }
    return GKD_OK;
}

/* SeqKD: the teacher's greedy outputs for every training prompt, generated once. */
static gkd_status build_teacher_data(gkd_trainer *t) {
    const gkd_token_dataset *d = t->train;
    gkd_token_dataset *out = &t->teacher_data;
    out->rows = calloc((size_t)d->n, sizeof *out->rows);
    if (!out->rows) return gkd_error_set(GKD_ERR_NOMEM, "out of memory");
    int B = t->cfg.batch_size;
    int *idx = malloc((size_t)B * sizeof *idx);
    if (!idx) return gkd_error_set(GKD_ERR_NOMEM, "out of memory");
    gkd_status st = GKD_OK;
    for (int start = 0; start < d->n && st == GKD_OK; start += B) {
        int n = d->n - start < B ? d->n - start : B;
        for (int b = 0; b < n; b++) idx[b] = start + b;
        st = gkd_trainer_generate(t, t->teacher, d, idx, n, 0.0f, t->cfg.max_new_tokens, GKD_TRAINER_EVAL_STREAM, 0);
        for (int b = 0; st == GKD_OK && b < n; b++) {
            const gkd_tokenized *r = &d->rows[start + b];
            gkd_tokenized *o = &out->rows[start + b];
            o->prompt_len = r->prompt_len;
            o->len = r->prompt_len + t->gen_lens[b];
            o->ids = malloc((size_t)o->len * sizeof *o->ids);
            if (!o->ids) {
                st = gkd_error_set(GKD_ERR_NOMEM, "out of memory");
                break;
            }
            memcpy(o->ids, r->ids, (size_t)r->prompt_len * sizeof *o->ids);
            memcpy(o->ids + r->prompt_len, t->gen_tokens + (size_t)b * t->max_out, (size_t)t->gen_lens[b] * sizeof(int));
            out->n = start + b + 1;
        }
    }
    free(idx);
    return st;
}

static gkd_status rl_create(gkd_trainer *t) {
    int B = t->cfg.batch_size;
    if (!t->tok || !t->train_text || t->train_text->n != t->train->n)
        return gkd_error_set(GKD_ERR_ARG, "RL needs the tokenizer and the training texts (to score outputs)");
    gkd_pg_baselines_init(&t->baselines, t->cfg.baseline, t->cfg.baseline_decay);
    t->rl_prompts = calloc((size_t)B, sizeof *t->rl_prompts);
    t->rewards = calloc((size_t)B, sizeof *t->rewards);
    t->returns = calloc((size_t)B, sizeof *t->returns);
    t->advantages = calloc((size_t)B, sizeof *t->advantages);
    t->row_div = calloc((size_t)B, sizeof *t->row_div);
    t->samples = calloc((size_t)B, sizeof *t->samples);
    t->texts = calloc((size_t)B, sizeof *t->texts);
    if (!t->rl_prompts || !t->rewards || !t->returns || !t->advantages || !t->row_div || !t->samples || !t->texts)
        return gkd_error_set(GKD_ERR_NOMEM, "out of memory (RL buffers)");
    if (gkd_trainer_schedule_maybe_nonzero(&t->cfg.kl_coef)) {
        const gkd_model_config *sc = gkd_model_get_config(t->student);
        /* frozen: it never needs gradients */
        gkd_status st = gkd_model_create_ex(sc, t->be, GKD_MODEL_INFERENCE, &t->reference);
        if (st != GKD_OK) return st;
        t->be->copy(gkd_model_params(t->reference), gkd_model_params(t->student),
                    gkd_model_num_params(t->student) * sizeof(float));
        if ((st = gkd_model_set_weight_format(t->reference, t->cfg.reference_weights)) != GKD_OK)
            return gkd_error_prefix(st, "reference_precision");
        if ((st = gkd_distill_workspace_create(t->be, t->cfg.loss_chunk, sc->vocab_size, sc->dim, sc->dim,
                                               &t->ws_ref)) != GKD_OK)
            return st;
        if (t->cfg.reference_weights != GKD_WEIGHTS_FP32) gkd_distill_workspace_set_teacher(t->ws_ref, t->reference);
    }
    return GKD_OK;
}

gkd_status gkd_trainer_create(const gkd_train_config *cfg, gkd_model *student, gkd_model *teacher,
                              const gkd_tokenizer *tok, const gkd_dataset *train_text,
                              const gkd_token_dataset *train, const gkd_dataset *held_out_text,
                              const gkd_token_dataset *held_out, gkd_trainer **out) {
    gkd_status st = check_config(cfg, student, teacher, train);
    if (st != GKD_OK) return st;
    gkd_trainer *t = calloc(1, sizeof *t);
    if (!t) return gkd_error_set(GKD_ERR_NOMEM, "out of memory");
    t->cfg = *cfg;
    t->student = student;
    t->teacher = teacher;
    t->be = gkd_model_backend(student);
    t->tok = tok;
    t->train_text = train_text;
    t->held_text = held_out_text;
    t->train = train;
    t->held = held_out;
    t->eos_id = tok ? gkd_tokenizer_role_id(tok, GKD_TOKEN_ROLE_EOS) : -1;
    t->pad_id = tok ? gkd_tokenizer_role_id(tok, GKD_TOKEN_ROLE_PAD) : -1;
    if (t->pad_id < 0) t->pad_id = t->eos_id >= 0 ? t->eos_id : 0;
    if ((st = alloc_buffers(t)) != GKD_OK) goto fail;
    gkd_optim_config oc = gkd_optim_config_default();
    oc.beta1 = cfg->beta1;
    oc.beta2 = cfg->beta2;
    oc.eps = cfg->adam_eps;
    oc.weight_decay = cfg->weight_decay;
    oc.grad_clip = cfg->grad_clip;
    if ((st = gkd_optim_create(&oc, student, &t->opt)) != GKD_OK) goto fail;
    if (teacher) {
        const gkd_model_config *sc = gkd_model_get_config(student), *tc = gkd_model_get_config(teacher);
        if ((st = gkd_model_set_weight_format(teacher, cfg->teacher_weights)) != GKD_OK) {
            st = gkd_error_prefix(st, "teacher_precision");
            goto fail;
        }
        if ((st = gkd_distill_workspace_create(t->be, cfg->loss_chunk, sc->vocab_size, sc->dim, tc->dim, &t->ws)) !=
            GKD_OK)
            goto fail;
        if (cfg->teacher_weights != GKD_WEIGHTS_FP32) gkd_distill_workspace_set_teacher(t->ws, teacher);
    }
    if ((st = gkd_data_order_init(&t->order, train->n, cfg->seed)) != GKD_OK) goto fail;
    if (cfg->reward && (st = rl_create(t)) != GKD_OK) goto fail;
    if (cfg->reward && cfg->rl_method != GKD_RL_REINFORCE && (st = gkd_trainer_ppo_create(t)) != GKD_OK) goto fail;
    if (cfg->fixed == GKD_FIXED_TEACHER && (st = build_teacher_data(t)) != GKD_OK) goto fail;
    *out = t;
    return GKD_OK;
fail:
    gkd_trainer_free(t);
    return st;
}

const gkd_eval_stats *gkd_trainer_last_eval(const gkd_trainer *t) {
    return t->has_eval ? &t->last_eval : NULL;
}

int64_t gkd_trainer_current_step(const gkd_trainer *t) {
    return t->step;
}

const gkd_train_config *gkd_trainer_get_config(const gkd_trainer *t) {
    return &t->cfg;
}

int gkd_trainer_has_held_out(const gkd_trainer *t) {
    return t->held != NULL;
}

static gkd_status emit(gkd_trainer *t, const char *split, const char *name, double value) {
    if (!t->cfg.on_metric) return GKD_OK;
    if (t->cfg.on_metric(t->cfg.metric_ctx, split, t->step, name, value) != 0)
        return gkd_error_prefix(GKD_ERR_CALLBACK, "metric sink (%s)", name);
    return GKD_OK;
}

gkd_status gkd_trainer_schedule_at(const gkd_schedule *s, int64_t step, const char *name, double lo, double hi,
                              double *out) {
    gkd_status st = gkd_schedule_value(s, step, out);
    if (st != GKD_OK) return gkd_error_prefix(st, "schedule %s at step %lld", name, (long long)step);
    if (!(*out >= lo && *out <= hi))
        return gkd_error_set(GKD_ERR_ARG, "schedule %s gave %g at step %lld, outside [%g, %g]", name, *out,
                             (long long)step, lo, hi);
    return GKD_OK;
}

/* The divergence of this step, with its scheduled beta / skew and teacher temperature. */
gkd_status gkd_trainer_step_divergence(gkd_trainer *t, gkd_divergence *div) {
    *div = t->cfg.divergence;
    double beta, tau;
    gkd_status st = gkd_trainer_schedule_at(&t->cfg.beta, t->step, "beta", 0.0, 1.0, &beta);
    if (st == GKD_OK) st = gkd_trainer_schedule_at(&t->cfg.teacher_temperature, t->step, "teacher_temperature", 1e-6, 1e6, &tau);
    if (st != GKD_OK) return st;
    gkd_divergence_set_param(div, beta);
    div->teacher_temperature = tau;
    div->precision = t->cfg.divergence_precision;
    return GKD_OK;
}

/* Adds a micro-batch's logged divergences to the step's, as means over the grad_accum micro-batches. */
static void add_distill_stats(gkd_distill_stats *sum, const gkd_distill_stats *ds, int grad_accum) {
    sum->forward_kl += ds->forward_kl / grad_accum;
    sum->reverse_kl += ds->reverse_kl / grad_accum;
    sum->jsd_half += ds->jsd_half / grad_accum;
    sum->teacher_entropy += ds->teacher_entropy / grad_accum;
    sum->student_entropy += ds->student_entropy / grad_accum;
    sum->positions += ds->positions;
}

int gkd_trainer_schedule_maybe_nonzero(const gkd_schedule *s) {
    return s->kind != GKD_SCHEDULE_CONSTANT || s->start != 0.0;
}

gkd_status gkd_trainer_score_samples(gkd_trainer *t, int B, int *out_total) {
    gkd_status st;
    for (int b = 0; b < B; b++) {
        t->out_lens[b] = t->gen_lens[b];
        memcpy(t->out_tokens + (size_t)b * t->max_out, t->gen_tokens + (size_t)b * t->max_out,
               (size_t)t->gen_lens[b] * sizeof(int));
        *out_total += t->gen_lens[b];
        /* The reward sees the text without the end-of-sequence token. */
        int len = t->gen_lens[b];
        const int *ids = t->gen_tokens + (size_t)b * t->max_out;
        if (len > 0 && ids[len - 1] == t->eos_id) len--;
        size_t text_len;
        free(t->texts[b]);
        t->texts[b] = NULL;
        if ((st = gkd_tokenizer_decode(t->tok, ids, len, &t->texts[b], &text_len)) != GKD_OK) return st;
        const gkd_example *ex = &t->train_text->items[t->idx[b]];
        t->samples[b] = (gkd_reward_sample){ex->source, ex->prompt, t->texts[b], ex->target};
    }
    if ((st = gkd_reward_score(t->cfg.reward, t->samples, B, t->rewards)) != GKD_OK) return st;
    return GKD_OK;
}

gkd_status gkd_trainer_rl_rollout(gkd_trainer *t, uint64_t micro_step, double temperature, gkd_step_stats *stats,
                                  long *tokens, int *out_total) {
    const gkd_train_config *c = &t->cfg;
    /* Every rank draws the whole batch's prompts; it samples, scores and trains its shard [lo, lo + B). */
    int B_all = c->batch_size, K = c->group_size, G = B_all / K;
    int B = B_all / gkd_dist_size(c->dist), lo = gkd_dist_rank(c->dist) * B;
    if (!(temperature > 0))
        return gkd_error_set(GKD_ERR_ARG, "temperature is %g at step %lld: with a reward it must be > 0", temperature,
                             (long long)t->step);
    gkd_data_order_next(&t->order, t->rl_prompts, G);
    for (int g = 0; g < G; g++)
        for (int k = 0; k < K; k++) t->idx[g * K + k] = t->rl_prompts[g];
    if (lo > 0) memmove(t->idx, t->idx + lo, (size_t)B * sizeof *t->idx);
    double t0 = gkd_trainer_now();
    gkd_status st = gkd_trainer_generate_strided(t, t->student, t->train, t->idx, B, (float)temperature,
                                                 c->max_new_tokens, GKD_RNG_STREAM_SAMPLE,
                                                 micro_step * (uint64_t)B_all * (uint64_t)c->max_new_tokens + lo, B_all);
    if (st != GKD_OK) return gkd_error_prefix(st, "sampling from the student");
    stats->t_generate += gkd_trainer_now() - t0;
    if ((st = gkd_trainer_score_samples(t, B, out_total)) != GKD_OK) return st;
    if ((st = gkd_batch_make_generated(&t->batch, t->train, t->idx, B, t->out_tokens, t->out_lens, t->max_out,
                                       t->pad_id)) != GKD_OK)
        return st;
    size_t n = (size_t)B * t->batch.T;
    *tokens += (long)n;
    if ((st = gkd_trainer_ensure_dhidden(t, B, t->batch.T)) != GKD_OK) return st;
    if (n > t->pg_cap) {
        float *q = realloc(t->pg_weight, n * sizeof *q);
        if (!q) return gkd_error_set(GKD_ERR_NOMEM, "out of memory");
        t->pg_weight = q;
        t->pg_cap = n;
    }
    return GKD_OK;
}

/* One RL micro-batch: K samples of each of B/K prompts from the student, scored by the reward; the
 * REINFORCE surrogate on the returns plus alpha times the divergence, differentiated together. */
static gkd_status rl_micro_step(gkd_trainer *t, uint64_t micro_step, double temperature, const gkd_divergence *div,
                                double alpha, gkd_step_stats *stats, long *tokens, int *out_total) {
    const gkd_train_config *c = &t->cfg;
    int B_all = c->batch_size, B = B_all / gkd_dist_size(c->dist); /* the batch, this rank's shard */
    gkd_status st = gkd_trainer_rl_rollout(t, micro_step, temperature, stats, tokens, out_total);
    if (st != GKD_OK) return st;
    int T = t->batch.T;
    const float *ht, *hs;
    double t0 = gkd_trainer_now();
    if ((st = gkd_model_forward_nograd(t->teacher, t->batch.tokens, B, T, &ht)) != GKD_OK)
        return gkd_error_prefix(st, "teacher forward");
    double t1 = gkd_trainer_now();
    stats->t_teacher += t1 - t0;
    if ((st = gkd_model_forward(t->student, t->batch.tokens, B, T, &hs)) != GKD_OK)
        return gkd_error_prefix(st, "student forward");
    const float *Ws = gkd_model_output_weight(t->student), *Wt = gkd_model_output_weight(t->teacher);
    gkd_distill_stats ds;
    gkd_distill_extra probe = {.div_scale = 1.0f, .row_values = t->row_div};
    if ((st = gkd_distill_loss_ex(t->ws, div, c->norm, hs, Ws, ht, Wt, t->batch.mask, B, T, 1.0f, &probe, NULL, NULL,
                                  &ds)) != GKD_OK)
        return st;
    gkd_pg_config pc = {.alpha = alpha, .normalize = c->normalize_advantages,
                        .score_function = c->divergence_score_function, .norm = c->norm};
    double share, token_share;
    if ((st = gkd_trainer_batch_share(t, B, T, &share, &token_share)) != GKD_OK) return st;
    /* the batch's rewards, returns and advantages (all ranks'), this shard's weights divided by share */
    if ((st = gkd_trainer_dist_pg_weights(t, &pc, B, T, share)) != GKD_OK) return st;
    double mean_r = 0, mean_ret = 0, var = 0;
    for (int b = 0; b < B_all; b++) {
        mean_r += t->rewards[b] / B_all;
        mean_ret += t->returns[b] / B_all;
        var += t->advantages[b] * t->advantages[b] / B_all;
    }
    gkd_distill_extra ex = {.div_scale = (float)alpha, .targets = t->batch.targets, .pg_weight = t->pg_weight,
                            .pg_temperature = (float)temperature};
    if ((st = gkd_distill_loss_ex(t->ws, div, c->norm, hs, Ws, ht, Wt, t->batch.mask, B, T, (float)share, &ex,
                                  t->dhidden, gkd_model_output_weight_grad(t->student), &ds)) != GKD_OK)
        return st;
    gkd_trainer_scale_distill_stats(&ds, share);
    double loss = ds.loss;
    double kl_coef = 0;
    if ((st = gkd_trainer_schedule_at(&c->kl_coef, t->step, "kl_coef", 0.0, 1e6, &kl_coef)) != GKD_OK) return st;
    if (t->reference) { /* kl_coef * KL(student || initial student), per token, on the same samples */
        const float *hr;
        size_t n = (size_t)B * T * gkd_model_get_config(t->student)->dim;
        if (t->dhidden_ref_cap < t->dhidden_cap) {
            t->be->free(t->dhidden_ref);
            t->dhidden_ref = t->be->alloc(t->dhidden_cap);
            t->dhidden_ref_cap = t->dhidden_ref ? t->dhidden_cap : 0;
            if (!t->dhidden_ref) return gkd_error_set(GKD_ERR_NOMEM, "out of memory");
        }
        gkd_divergence rkl = {.kind = GKD_DIV_REVERSE_KL, .teacher_temperature = 1.0};
        gkd_distill_extra kx = {.div_scale = (float)kl_coef};
        gkd_distill_stats ks;
        if ((st = gkd_model_forward_nograd(t->reference, t->batch.tokens, B, T, &hr)) != GKD_OK) return st;
        if ((st = gkd_distill_loss_ex(t->ws_ref, &rkl, GKD_NORM_TOKEN, hs, Ws, hr, gkd_model_output_weight(t->reference),
                                      t->batch.mask, B, T, (float)token_share, &kx, t->dhidden_ref,
                                      gkd_model_output_weight_grad(t->student), &ks)) != GKD_OK)
            return st;
        gkd_trainer_scale_distill_stats(&ks, token_share);
        t->be->residual_forward(t->dhidden, t->dhidden, t->dhidden_ref, n);
        loss += ks.loss;
        stats->kl_reference += ks.divergence / c->grad_accum;
    }
    if ((st = gkd_model_backward(t->student, t->dhidden)) != GKD_OK) return gkd_error_prefix(st, "student backward");
    stats->t_student += gkd_trainer_now() - t1;
    stats->loss += loss / c->grad_accum;
    stats->reward += mean_r / c->grad_accum;
    stats->ret += mean_ret / c->grad_accum;
    stats->advantage_std += sqrt(var) / c->grad_accum;
    add_distill_stats(&stats->div, &ds, c->grad_accum);
    stats->div.divergence += ds.divergence / c->grad_accum;
    return GKD_OK;
}

/* One micro-batch on the fixed data or the student's own samples, by the lambda coin: the divergence
 * (or cross-entropy) between teacher and student on its outputs, differentiated into the student. */
static gkd_status fixed_micro_step(gkd_trainer *t, uint64_t micro_step, double lambda, double temperature,
                                   const gkd_divergence *div, gkd_step_stats *stats, long *tokens, int *on_rows,
                                   int *out_total) {
    const gkd_train_config *c = &t->cfg;
    /* Every rank draws the whole batch and its coins; it trains on its shard [lo, lo + B) of them. */
    int B_all = c->batch_size, B = B_all / gkd_dist_size(c->dist), lo = gkd_dist_rank(c->dist) * B;
    const gkd_token_dataset *fixed = c->fixed == GKD_FIXED_TEACHER ? &t->teacher_data : t->train;
    gkd_status st;
    gkd_data_order_next(&t->order, t->idx, B_all);
    /* The coin: one per batch (the paper) or one per row. */
    int on[4096];
    int n_on = 0, on_idx[4096], n_on_all = 0, on_before = 0;
    if (B_all > 4096) return gkd_error_set(GKD_ERR_ARG, "batch larger than 4096");
    double batch_u = gkd_rng_uniform_from_word(gkd_rng_word(c->seed, GKD_RNG_STREAM_LAMBDA, micro_step * (B_all + 1)));
    for (int b = 0; b < B_all; b++) {
        double u = c->per_sample_coin
                       ? gkd_rng_uniform_from_word(gkd_rng_word(c->seed, GKD_RNG_STREAM_LAMBDA, micro_step * (B_all + 1) + 1 + b))
                       : batch_u;
        on[b] = u <= lambda && lambda > 0.0;
        if (!on[b]) continue;
        n_on_all++;
        if (b < lo) on_before++;
        else if (b < lo + B) on_idx[n_on++] = t->idx[b];
    }
    /* The batch's on-policy rows are sampled as one batch of n_on_all rows: this shard's are rows
     * [on_before, on_before + n_on) of it, with the same draws. */
    double t0 = gkd_trainer_now();
    if (n_on > 0) {
        st = gkd_trainer_generate_strided(t, t->student, t->train, on_idx, n_on, (float)temperature,
                                          c->max_new_tokens, GKD_RNG_STREAM_SAMPLE,
                                          micro_step * (uint64_t)B_all * (uint64_t)c->max_new_tokens + on_before,
                                          n_on_all);
        if (st != GKD_OK) return gkd_error_prefix(st, "sampling from the student");
    }
    stats->t_generate += gkd_trainer_now() - t0;
    for (int b = 0, k = 0; b < B; b++) {
        int *dst = t->out_tokens + (size_t)b * t->max_out;
        if (on[lo + b]) {
            t->out_lens[b] = t->gen_lens[k];
            memcpy(dst, t->gen_tokens + (size_t)k * t->max_out, (size_t)t->gen_lens[k] * sizeof(int));
            k++;
        } else {
            const gkd_tokenized *r = &fixed->rows[t->idx[lo + b]];
            int n = r->len - r->prompt_len;
            if (n > t->max_out) n = t->max_out;
            t->out_lens[b] = n;
            memcpy(dst, r->ids + r->prompt_len, (size_t)n * sizeof(int));
        }
        *out_total += t->out_lens[b];
    }
    *on_rows += n_on_all;
    st = gkd_batch_make_generated(&t->batch, t->train, t->idx + lo, B, t->out_tokens, t->out_lens, t->max_out,
                                  t->pad_id);
    if (st != GKD_OK) return st;
    int T = t->batch.T;
    *tokens += (long)B * T;
    double share; /* this shard's part of the global batch's loss normaliser */
    if ((st = gkd_trainer_batch_share(t, B, T, &share, NULL)) != GKD_OK) return st;
    if ((st = gkd_trainer_ensure_dhidden(t, B, T)) != GKD_OK) return st;
    const float *ht = NULL, *hs = NULL;
    t0 = gkd_trainer_now();
    if (t->teacher && (st = gkd_model_forward_nograd(t->teacher, t->batch.tokens, B, T, &ht)) != GKD_OK)
        return gkd_error_prefix(st, "teacher forward");
    double t1 = gkd_trainer_now();
    stats->t_teacher += t1 - t0;
    if ((st = gkd_model_forward(t->student, t->batch.tokens, B, T, &hs)) != GKD_OK)
        return gkd_error_prefix(st, "student forward");
    gkd_distill_stats ds;
    if (c->use_ce) {
        float ce;
        st = gkd_model_ce_loss_scaled(t->student, hs, t->batch.targets, t->batch.mask, B, T, (int)c->norm, share,
                                      &ce, t->dhidden);
        if (st != GKD_OK) return st;
        stats->loss += ce / c->grad_accum;
        if (t->teacher) {
            st = gkd_distill_loss(t->ws, div, c->norm, hs, gkd_model_output_weight(t->student), ht,
                                  gkd_model_output_weight(t->teacher), t->batch.mask, B, T, 1.0f, NULL, NULL, &ds);
            if (st != GKD_OK) return st;
            gkd_trainer_scale_distill_stats(&ds, share);
        } else {
            memset(&ds, 0, sizeof ds);
        }
    } else {
        st = gkd_distill_loss(t->ws, div, c->norm, hs, gkd_model_output_weight(t->student), ht,
                              gkd_model_output_weight(t->teacher), t->batch.mask, B, T, (float)share, t->dhidden,
                              gkd_model_output_weight_grad(t->student), &ds);
        if (st != GKD_OK) return st;
        gkd_trainer_scale_distill_stats(&ds, share);
        stats->loss += ds.loss / c->grad_accum;
    }
    add_distill_stats(&stats->div, &ds, c->grad_accum);
    if ((st = gkd_model_backward(t->student, t->dhidden)) != GKD_OK) return gkd_error_prefix(st, "student backward");
    stats->t_student += gkd_trainer_now() - t1;
    return GKD_OK;
}

/* Which runs log a per-step metric: all, or only those with a teacher, a reward, a KL penalty. */
enum { NEEDS_TEACHER = 1, NEEDS_REWARD = 2, NEEDS_KL_COEF = 4, NEEDS_PPO = 8, NEEDS_VALUE = 16 };

/* The per-step metrics of the step just taken (t->step already counts it), in their logged order. */
static gkd_status emit_step_metrics(gkd_trainer *t, const gkd_step_stats *stats, double beta) {
    const gkd_train_config *c = &t->cfg;
    const struct {
        const char *name;
        double v;
        int needs;
    } m[] = {{"loss", stats->loss, 0},
             {"lr", stats->lr, 0},
             {"lambda", stats->lambda, 0},
             {"beta", beta, 0},
             {"grad_norm", stats->grad_norm, 0},
             {"on_policy_fraction", stats->on_policy_fraction, 0},
             {"output_length", stats->output_length, 0},
             {"forward_kl", stats->div.forward_kl, NEEDS_TEACHER},
             {"reverse_kl", stats->div.reverse_kl, NEEDS_TEACHER},
             {"jsd_0.5", stats->div.jsd_half, NEEDS_TEACHER},
             {"teacher_entropy", stats->div.teacher_entropy, NEEDS_TEACHER},
             {"student_entropy", stats->div.student_entropy, NEEDS_TEACHER},
             {"tokens_per_s", stats->tokens_per_s, 0},
             {"time_generate", stats->t_generate, 0},
             {"time_teacher", stats->t_teacher, NEEDS_TEACHER},
             {"time_student", stats->t_student, 0},
             {"time_optimizer", stats->t_optimizer, 0},
             {"reward", stats->reward, NEEDS_REWARD},
             {"return", stats->ret, NEEDS_REWARD},
             {"advantage_std", stats->advantage_std, NEEDS_REWARD},
             {"alpha", stats->alpha, NEEDS_REWARD},
             {"kl_reference", stats->kl_reference, NEEDS_TEACHER | NEEDS_REWARD | NEEDS_KL_COEF},
             {"clip_fraction", stats->clip_fraction, NEEDS_PPO},
             {"approx_kl", stats->approx_kl, NEEDS_PPO},
             {"ratio", stats->ratio, NEEDS_PPO},
             {"entropy", stats->entropy, NEEDS_PPO},
             {"teacher_reward", stats->teacher_reward, NEEDS_PPO},
             {"updates", stats->updates, NEEDS_PPO},
             {"value_loss", stats->value_loss, NEEDS_VALUE},
             {"explained_variance", stats->explained_variance, NEEDS_VALUE}};
    int has = (t->teacher ? NEEDS_TEACHER : 0) | (c->reward ? NEEDS_REWARD : 0) | (t->reference ? NEEDS_KL_COEF : 0) |
              (t->ppo ? NEEDS_PPO : 0) | (t->ppo && c->rl_method == GKD_RL_PPO && c->value_head ? NEEDS_VALUE : 0);
    for (size_t i = 0; i < sizeof m / sizeof *m; i++) {
        if ((m[i].needs & has) != m[i].needs) continue;
        gkd_status st = emit(t, "train", m[i].name, m[i].v);
        if (st != GKD_OK) return st;
    }
    return GKD_OK;
}

gkd_status gkd_trainer_step(gkd_trainer *t, gkd_step_stats *stats) {
    const gkd_train_config *c = &t->cfg;
    int B = c->batch_size;
    memset(stats, 0, sizeof *stats);
    double t_start = gkd_trainer_now();
    double lambda, temperature, lr;
    gkd_divergence div;
    gkd_status st = gkd_trainer_schedule_at(&c->lambda, t->step, "lambda", 0.0, 1.0, &lambda);
    if (st == GKD_OK) st = gkd_trainer_schedule_at(&c->sample_temperature, t->step, "temperature", 0.0, 1e6, &temperature);
    if (st == GKD_OK) st = gkd_trainer_schedule_at(&c->lr, t->step, "lr", 0.0, 10.0, &lr);
    if (st == GKD_OK) st = gkd_trainer_step_divergence(t, &div);
    if (st != GKD_OK) return st;
    gkd_model_zero_grad(t->student);
    long tokens = 0;
    int on_rows = 0, out_tokens_total = 0;
    double alpha = 0.0;
    if (c->reward && (st = gkd_trainer_schedule_at(&c->alpha, t->step, "alpha", 0.0, 1.0, &alpha)) != GKD_OK) return st;
    if (t->ppo) {
        if ((st = gkd_trainer_ppo_step(t, lr, temperature, &div, alpha, stats, &tokens, &out_tokens_total)) != GKD_OK)
            return st;
        on_rows = B;
    }
    for (int micro = 0; !t->ppo && micro < c->grad_accum; micro++) {
        uint64_t micro_step = (uint64_t)t->step * (uint64_t)c->grad_accum + (uint64_t)micro;
        if (c->reward) {
            if ((st = rl_micro_step(t, micro_step, temperature, &div, alpha, stats, &tokens, &out_tokens_total)) != GKD_OK)
                return st;
            on_rows += B;
            continue;
        }
        if ((st = fixed_micro_step(t, micro_step, lambda, temperature, &div, stats, &tokens, &on_rows,
                                   &out_tokens_total)) != GKD_OK)
            return st;
    }
    if (!t->ppo && (st = gkd_trainer_dist_reduce(t, stats, &tokens, &out_tokens_total)) != GKD_OK) return st;
    double t2 = gkd_trainer_now();
    double grad_norm = stats->grad_norm; /* PPO: the mean over its updates */
    if (!t->ppo) {
        gkd_optim_stats ostats;
        st = gkd_optim_step_scaled(t->opt, (float)lr, 1.0f / (float)c->grad_accum, &ostats);
        if (st != GKD_OK) return gkd_error_prefix(st, "optimizer step %lld", (long long)t->step);
        grad_norm = ostats.grad_norm;
        stats->t_optimizer = gkd_trainer_now() - t2;
    }
    if (!isfinite(stats->loss))
        return gkd_error_set(GKD_ERR_ARG, "loss is %g at step %lld (diverged: lower lr or check the data)", stats->loss,
                             (long long)t->step);
    stats->lr = lr;
    stats->lambda = lambda;
    stats->alpha = alpha;
    stats->grad_norm = grad_norm;
    stats->on_policy_fraction = t->ppo ? 1.0 : (double)on_rows / ((double)B * c->grad_accum);
    stats->output_length = (double)out_tokens_total / ((double)B * (t->ppo ? 1 : c->grad_accum));
    double elapsed = gkd_trainer_now() - t_start;
    stats->tokens_per_s = elapsed > 0 ? (double)tokens / elapsed : 0.0;
    t->step++;
    return emit_step_metrics(t, stats, gkd_divergence_param(&div));
}

gkd_status gkd_trainer_evaluate(gkd_trainer *t, gkd_eval_stats *out) {
    memset(out, 0, sizeof *out);
    if (!t->held || t->held->n == 0) return gkd_error_set(GKD_ERR_ARG, "no held-out split to evaluate on");
    const gkd_train_config *c = &t->cfg;
    int B = c->batch_size;
    int n_total = c->eval_examples > 0 && c->eval_examples < t->held->n ? c->eval_examples : t->held->n;
    gkd_divergence div;
    gkd_status st = gkd_trainer_step_divergence(t, &div);
    if (st != GKD_OK) return st;
    int batches = 0;
    for (int start = 0; start < n_total; start += B) {
        int n = n_total - start < B ? n_total - start : B;
        for (int b = 0; b < n; b++) t->idx[b] = start + b;
        /* Teacher-forced on the references. */
        if ((st = gkd_batch_make(&t->batch, t->held, t->idx, n, t->pad_id)) != GKD_OK) return st;
        int T = t->batch.T;
        const float *hs, *ht = NULL;
        if ((st = gkd_model_forward_nograd(t->student, t->batch.tokens, n, T, &hs)) != GKD_OK) return st;
        float ce;
        if ((st = gkd_model_ce_loss(t->student, hs, t->batch.targets, t->batch.mask, n, T, (int)c->norm, &ce, NULL)) !=
            GKD_OK)
            return st;
        out->ce_loss += ce;
        gkd_distill_stats ds;
        if (t->teacher) {
            if ((st = gkd_model_forward_nograd(t->teacher, t->batch.tokens, n, T, &ht)) != GKD_OK) return st;
            if ((st = gkd_distill_loss(t->ws, &div, c->norm, hs, gkd_model_output_weight(t->student), ht,
                                       gkd_model_output_weight(t->teacher), t->batch.mask, n, T, 1.0f, NULL, NULL,
                                       &ds)) != GKD_OK)
                return st;
            out->forward_kl += ds.forward_kl;
            out->reverse_kl += ds.reverse_kl;
            out->jsd_half += ds.jsd_half;
        }
        /* The student's own samples. */
        st = gkd_trainer_generate(t, t->student, t->held, t->idx, n, c->eval_temperature, c->max_new_tokens, GKD_TRAINER_EVAL_STREAM,
                      (uint64_t)start * (uint64_t)c->max_new_tokens);
        if (st != GKD_OK) return gkd_error_prefix(st, "sampling at evaluation");
        for (int b = 0; b < n; b++) {
            t->out_lens[b] = t->gen_lens[b];
            memcpy(t->out_tokens + (size_t)b * t->max_out, t->gen_tokens + (size_t)b * t->max_out,
                   (size_t)t->gen_lens[b] * sizeof(int));
            out->own_length += t->gen_lens[b];
        }
        if (t->teacher) {
            if ((st = gkd_batch_make_generated(&t->batch, t->held, t->idx, n, t->out_tokens, t->out_lens, t->max_out,
                                               t->pad_id)) != GKD_OK)
                return st;
            T = t->batch.T;
            if ((st = gkd_model_forward_nograd(t->student, t->batch.tokens, n, T, &hs)) != GKD_OK) return st;
            if ((st = gkd_model_forward_nograd(t->teacher, t->batch.tokens, n, T, &ht)) != GKD_OK) return st;
            if ((st = gkd_distill_loss(t->ws, &div, c->norm, hs, gkd_model_output_weight(t->student), ht,
                                       gkd_model_output_weight(t->teacher), t->batch.mask, n, T, 1.0f, NULL, NULL,
                                       &ds)) != GKD_OK)
                return st;
            out->own_forward_kl += ds.forward_kl;
            out->own_reverse_kl += ds.reverse_kl;
            out->own_jsd_half += ds.jsd_half;
        }
        if (t->tok && t->held_text && c->n_text_metrics > 0) {
            for (int b = 0; b < n; b++) {
                int len = t->gen_lens[b];
                const int *ids = t->gen_tokens + (size_t)b * t->max_out;
                if (len > 0 && ids[len - 1] == t->eos_id) len--;
                char *text = NULL;
                size_t text_len;
                if ((st = gkd_tokenizer_decode(t->tok, ids, len, &text, &text_len)) != GKD_OK) return st;
                for (int k = 0; k < c->n_text_metrics; k++) {
                    int failed = 0;
                    double v = c->text_metrics[k].fn(c->text_metrics[k].ctx, text, &t->held_text->items[start + b],
                                                     &failed);
                    if (failed) {
                        free(text);
                        return gkd_error_prefix(GKD_ERR_CALLBACK, "metric %s", c->text_metrics[k].name);
                    }
                    out->text[k] += v;
                }
                free(text);
            }
        }
        batches++;
    }
    /* Batch means are weighted by batch; the text metrics and lengths by example. */
    double nb = batches > 0 ? batches : 1;
    out->ce_loss /= nb;
    out->forward_kl /= nb;
    out->reverse_kl /= nb;
    out->jsd_half /= nb;
    out->own_forward_kl /= nb;
    out->own_reverse_kl /= nb;
    out->own_jsd_half /= nb;
    out->own_length /= n_total;
    for (int k = 0; k < c->n_text_metrics; k++) out->text[k] /= n_total;
    out->examples = n_total;
    t->last_eval = *out;
    t->has_eval = 1;
    if ((st = emit(t, "held_out", "ce_loss", out->ce_loss)) != GKD_OK) return st;
    if ((st = emit(t, "held_out", "own_length", out->own_length)) != GKD_OK) return st;
    if (t->teacher) {
        const char *names[] = {"forward_kl", "reverse_kl", "jsd_0.5", "own_forward_kl", "own_reverse_kl", "own_jsd_0.5"};
        double vals[] = {out->forward_kl, out->reverse_kl, out->jsd_half, out->own_forward_kl, out->own_reverse_kl,
                         out->own_jsd_half};
        for (int i = 0; i < 6; i++)
            if ((st = emit(t, "held_out", names[i], vals[i])) != GKD_OK) return st;
    }
    for (int k = 0; k < c->n_text_metrics; k++)
        if ((st = emit(t, "held_out", c->text_metrics[k].name, out->text[k])) != GKD_OK) return st;
    return GKD_OK;
}
