// ctest-labels: cpu
/* The simulated-device backend (core/tensor/backend_sim.h) and, through it, the device-memory discipline of the
 * host code: a sim buffer cannot be dereferenced by the host (a forked child that tries dies by a signal)
 * and a host pointer passed where the table wants device memory aborts; everything that runs on "sim"
 * gives the CPU's results bit for bit, since the arithmetic is the CPU's: the model (hidden states,
 * cross-entropy, every gradient, the KV-cache logits, sampled tokens), the optimizer, layer selection,
 * checkpoints both ways, GGUF loading, bf16 products (the precision setting is the CPU's), the trainer
 * (supervised KD, on-policy GKD with JSD, per-row lambda 0.5, SFT, SeqKD, RL with a reward, alpha and a KL
 * penalty, PPO with its value head and GRPO, evaluation, save on one backend and resume on the other) and the reward model. A difference or a
 * crash is host code touching a backend buffer. */
#include "core/tensor/backend_select.h"
#include "core/tensor/backend_sim.h"
#include "core/format/checkpoint.h"
#include "core/text/data.h"
#include "core/format/gguf_model.h"
#include "core/tensor/model_derive.h"
#include "core/tensor/optim.h"
#include "core/tensor/precision.h"
#include "core/tensor/sample.h"
#include "core/text/tokenizer.h"
#include "reward/reward.h"
#include "reward/reward_model.h"
#include "rl/reward_model_train.h"
#include "rl/trainer.h"
#include "tests/check.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const gkd_backend *cpu, *sim;

/* ---------- helpers ---------- */

static void *to_host(const gkd_backend *be, const void *p, size_t bytes) {
    void *h = malloc(bytes ? bytes : 1);
    if (h && bytes) be->copy_out(h, p, bytes);
    return h;
}

/* 1 when the n floats at a (on backend ba) and b (on bb) are the same bits; names the first difference. */
static int same_floats(const char *what, const gkd_backend *ba, const float *a, const gkd_backend *bb,
                       const float *b, size_t n) {
    float *ha = to_host(ba, a, n * sizeof *ha), *hb = to_host(bb, b, n * sizeof *hb);
    int same = memcmp(ha, hb, n * sizeof *ha) == 0;
    for (size_t i = 0; !same && i < n; i++)
        if (memcmp(&ha[i], &hb[i], sizeof *ha) != 0) {
            fprintf(stderr, "%s: element %zu of %zu differs: %.9g (%s) vs %.9g (%s)\n", what, i, n, ha[i],
                    ba->name, hb[i], bb->name);
            break;
        }
    free(ha);
    free(hb);
    return same;
}

static int same_params(const char *what, gkd_model *a, gkd_model *b) {
    return gkd_model_num_params(a) == gkd_model_num_params(b) &&
           same_floats(what, gkd_model_backend(a), gkd_model_params(a), gkd_model_backend(b),
                       gkd_model_params(b), gkd_model_num_params(a));
}

static gkd_model_config small_config(int tied) {
    return (gkd_model_config){.vocab_size = 61,
                              .dim = 32,
                              .n_layers = 2,
                              .n_heads = 4,
                              .n_kv_heads = 2,
                              .hidden_dim = 48,
                              .max_seq_len = 32,
                              .rope_theta = 10000.0f,
                              .norm_eps = 1e-5f,
                              .tied_embeddings = tied};
}

static gkd_model *new_model(const gkd_model_config *c, const gkd_backend *be, unsigned flags, uint64_t seed) {
    gkd_model *m = NULL;
    CHECKF(gkd_model_create_ex(c, be, flags, &m) == GKD_OK, "%s", gkd_error_message());
    if (m) gkd_model_init_weights(m, seed);
    return m;
}

/* ---------- the fault itself ---------- */

/* Runs fn in a child; returns the signal that ended it, or 0 when it exited. */
static int dies_by_signal(void (*fn)(void)) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return 0;
    if (pid == 0) {
        signal(SIGSEGV, SIG_DFL);
        signal(SIGBUS, SIG_DFL);
        fn();
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFSIGNALED(status) ? WTERMSIG(status) : 0;
}

static void host_writes_sim_buffer(void) {
    float *buf = sim->alloc(64 * sizeof(float));
    volatile float *p = buf + 3; /* pointer arithmetic is fine; the store is not */
    *p = 1.0f;
}

static void host_reads_sim_buffer(void) {
    float *buf = sim->alloc(64 * sizeof(float));
    volatile float x = *(volatile const float *)buf;
    (void)x;
}

static void host_buffer_as_device_argument(void) {
    float host[4];
    sim->zero(host, sizeof host);
}

static void device_buffer_as_host_argument(void) {
    float *buf = sim->alloc(4 * sizeof(float));
    float *alias = sim->alloc(4 * sizeof(float));
    sim->copy_out(alias, buf, 4 * sizeof(float));
}

static void test_faults(void) {
#if defined(__x86_64__)
    CHECK(dies_by_signal(host_writes_sim_buffer) != 0);
    CHECK(dies_by_signal(host_reads_sim_buffer) != 0);
#else
    fprintf(stderr,
            "not x86-64: the sim offset need not make an address fault here; that check is left out\n");
#endif
    CHECK(dies_by_signal(host_buffer_as_device_argument) == SIGABRT);
    CHECK(dies_by_signal(device_buffer_as_host_argument) == SIGABRT);
    /* and the table works when used as documented */
    float in[5] = {1, 2, 3, 4, 5}, out[5] = {0};
    float *d = sim->alloc(sizeof in);
    CHECK(d && gkd_backend_sim_owns(d) && !gkd_backend_sim_owns(in));
    sim->copy_in(d, in, sizeof in);
    sim->residual_forward(d + 1, d + 1, d + 1, 4); /* an offset into a buffer is a device pointer too */
    sim->copy_out(out, d, sizeof out);
    CHECK(out[0] == 1 && out[1] == 4 && out[2] == 6 && out[3] == 8 && out[4] == 10);
    CHECK(sim->sumsq(d, 5) == 1 + 16 + 36 + 64 + 100);
    sim->free(d);
    sim->free(NULL);
    CHECK(gkd_backend_by_name("sim") == sim && strcmp(sim->name, "sim") == 0);
}

/* ---------- the model, optimizer, sampler, checkpoints ---------- */

enum { B = 3, T = 9, CAP = 20 };

static void test_model(int tied) {
    fprintf(stderr, "model, %s embeddings\n", tied ? "tied" : "untied");
    gkd_model_config c = small_config(tied);
    gkd_model *mc = new_model(&c, cpu, 0, 5), *ms = new_model(&c, sim, 0, 5);
    if (!mc || !ms) return;
    CHECK(same_params("init", mc, ms));
    int tokens[B * T], targets[B * T];
    float mask[B * T];
    for (int i = 0; i < B * T; i++) {
        tokens[i] = (i * 37 + 11) % c.vocab_size;
        targets[i] = (i * 53 + 7) % c.vocab_size;
        mask[i] = (i % T) >= 2 && i % 4 != 1; /* gaps, so rows are gathered in several runs */
    }
    const size_t NC = (size_t)B * T * c.dim;
    for (int pass = 0; pass < 2; pass++) { /* two passes: gradients accumulate */
        const float *hc, *hs;
        CHECK(gkd_model_forward(mc, tokens, B, T, &hc) == GKD_OK);
        CHECK(gkd_model_forward(ms, tokens, B, T, &hs) == GKD_OK);
        CHECK(same_floats("hidden", cpu, hc, sim, hs, NC));
        float *dc = cpu->alloc(NC * sizeof(float)), *ds = sim->alloc(NC * sizeof(float));
        float lc = 0, ls = 1;
        gkd_model_set_loss_chunk(mc, 4);
        gkd_model_set_loss_chunk(ms, 4);
        CHECK(gkd_model_ce_loss(mc, hc, targets, mask, B, T, GKD_NORM_SEQUENCE, &lc, dc) == GKD_OK);
        CHECK(gkd_model_ce_loss(ms, hs, targets, mask, B, T, GKD_NORM_SEQUENCE, &ls, ds) == GKD_OK);
        CHECKF(memcmp(&lc, &ls, sizeof lc) == 0, "loss %.9g vs %.9g", lc, ls);
        CHECK(same_floats("dhidden", cpu, dc, sim, ds, NC));
        CHECK(gkd_model_backward(mc, dc) == GKD_OK);
        CHECK(gkd_model_backward(ms, ds) == GKD_OK);
        cpu->free(dc);
        sim->free(ds);
    }
    for (int i = 0; i < gkd_model_num_tensors(mc); i++) {
        const gkd_tensor_info *ti = gkd_model_tensor(mc, i);
        CHECKF(same_floats(ti->name, cpu, gkd_model_grads(mc) + ti->offset, sim,
                           gkd_model_grads(ms) + ti->offset, ti->numel),
               "gradient of %s", ti->name);
    }
    const float *nc, *ns;
    CHECK(gkd_model_forward_nograd(mc, tokens, B, T, &nc) == GKD_OK);
    CHECK(gkd_model_forward_nograd(ms, tokens, B, T, &ns) == GKD_OK);
    CHECK(same_floats("nograd hidden", cpu, nc, sim, ns, NC));
    float lc = 0, ls = 1;
    CHECK(gkd_model_ce_loss(mc, nc, targets, mask, B, T, GKD_NORM_TOKEN, &lc, NULL) == GKD_OK);
    CHECK(gkd_model_ce_loss(ms, ns, targets, mask, B, T, GKD_NORM_TOKEN, &ls, NULL) == GKD_OK);
    CHECK(memcmp(&lc, &ls, sizeof lc) == 0);

    /* AdamW with clipping: parameters and both moments */
    gkd_optim_config oc = gkd_optim_config_default();
    oc.grad_clip = 0.5f;
    gkd_optim *oc_c = NULL, *oc_s = NULL;
    CHECK(gkd_optim_create(&oc, mc, &oc_c) == GKD_OK && gkd_optim_create(&oc, ms, &oc_s) == GKD_OK);
    gkd_optim_stats st_c, st_s;
    CHECK(gkd_optim_step_scaled(oc_c, 1e-2f, 0.5f, &st_c) == GKD_OK);
    CHECK(gkd_optim_step_scaled(oc_s, 1e-2f, 0.5f, &st_s) == GKD_OK);
    CHECK(st_c.grad_norm == st_s.grad_norm);
    CHECK(same_params("after AdamW", mc, ms));
    size_t np = gkd_model_num_params(mc);
    CHECK(same_floats("adam m", cpu, gkd_optim_m(oc_c), sim, gkd_optim_m(oc_s), np));
    CHECK(same_floats("adam v", cpu, gkd_optim_v(oc_c), sim, gkd_optim_v(oc_s), np));
    gkd_optim_free(oc_c);
    gkd_optim_free(oc_s);

    /* KV cache: a prefill, then single steps at per-row positions, logits on the host and on the device */
    gkd_kv_cache *kc = NULL, *ks = NULL;
    CHECK(gkd_model_kv_cache(mc, B, CAP, &kc) == GKD_OK && gkd_model_kv_cache(ms, B, CAP, &ks) == GKD_OK);
    if (kc && ks) {
        const int V = c.vocab_size;
        int pos0[B] = {0, 0, 0}, at[B] = {4, 2, 0};
        float *gc = malloc((size_t)B * T * V * sizeof(float)),
              *gs = malloc((size_t)B * T * V * sizeof(float));
        CHECK(gkd_model_forward_cached(mc, kc, tokens, pos0, B, 5, gc) == GKD_OK);
        CHECK(gkd_model_forward_cached(ms, ks, tokens, pos0, B, 5, gs) == GKD_OK);
        CHECK(memcmp(gc, gs, (size_t)B * 5 * V * sizeof(float)) == 0);
        int step_pos[B] = {5, 3, 1}, feed[B] = {1, 2, 3};
        CHECK(gkd_model_forward_cached_at(mc, kc, feed, step_pos, B, 1, (int[B]){0, 0, 0}, gc) == GKD_OK);
        CHECK(gkd_model_forward_cached_at(ms, ks, feed, step_pos, B, 1, (int[B]){0, 0, 0}, gs) == GKD_OK);
        CHECK(memcmp(gc, gs, (size_t)B * V * sizeof(float)) == 0);
        const float *dlc = NULL, *dls = NULL;
        CHECK(gkd_model_forward_cached_at_device(mc, kc, tokens, pos0, B, 5, at, &dlc) == GKD_OK);
        CHECK(gkd_model_forward_cached_at_device(ms, ks, tokens, pos0, B, 5, at, &dls) == GKD_OK);
        CHECK(dls && gkd_backend_sim_owns(dls));
        if (dlc && dls) CHECK(same_floats("device logits", cpu, dlc, sim, dls, (size_t)B * V));
        free(gc);
        free(gs);
    }

    /* sampling: greedy, temperature with top-k, top-p, and an EOS that stops rows early */
    int prompts[B * 6], lens[B] = {6, 2, 4};
    for (int i = 0; i < B * 6; i++) prompts[i] = (i * 29 + 3) % c.vocab_size;
    gkd_sample_config scs[] = {
        {0.0f, 0, 1.0f, 8, -1, 0}, {0.8f, 7, 1.0f, 8, -1, 0}, {1.0f, 0, 0.9f, 10, 4, 0}, {1.3f, 0, 1.0f, 12, 9, 0}};
    for (size_t k = 0; k < sizeof scs / sizeof *scs; k++) {
        int nmax = scs[k].max_new_tokens;
        int tc[B * 12], ts[B * 12], lc2[B], ls2[B];
        float pc[B * 12], ps[B * 12];
        gkd_rng rc = {17, GKD_RNG_STREAM_SAMPLE, 0}, rs = rc;
        CHECK(gkd_sample_generate(mc, prompts, lens, B, 6, &scs[k], &rc, tc, lc2, pc) == GKD_OK);
        CHECKF(gkd_sample_generate(ms, prompts, lens, B, 6, &scs[k], &rs, ts, ls2, ps) == GKD_OK, "%s",
               gkd_error_message());
        CHECKF(memcmp(tc, ts, (size_t)B * nmax * sizeof(int)) == 0 && memcmp(lc2, ls2, sizeof lc2) == 0 &&
                   memcmp(pc, ps, (size_t)B * nmax * sizeof(float)) == 0,
               "sampling config %zu", k);
        CHECK(rc.offset == rs.offset);
    }

    /* layer selection within and across backends */
    int layers[1] = {1};
    gkd_model *dcc = NULL, *dss = NULL, *dcs = NULL, *dsc = NULL;
    CHECK(gkd_model_from_layers(mc, layers, 1, cpu, 0, &dcc) == GKD_OK);
    CHECK(gkd_model_from_layers(ms, layers, 1, sim, 0, &dss) == GKD_OK);
    CHECK(gkd_model_from_layers(mc, layers, 1, sim, GKD_MODEL_INFERENCE, &dcs) == GKD_OK);
    CHECK(gkd_model_from_layers(ms, layers, 1, cpu, 0, &dsc) == GKD_OK);
    if (dcc && dss && dcs && dsc) {
        CHECK(same_params("from_layers sim", dcc, dss));
        CHECK(same_params("from_layers cpu->sim", dcc, dcs));
        CHECK(same_params("from_layers sim->cpu", dcc, dsc));
    }
    gkd_model_free(dcc);
    gkd_model_free(dss);
    gkd_model_free(dcs);
    gkd_model_free(dsc);

    /* checkpoints: saved on sim, loaded on the CPU, and the other way, as one file and as a HF folder */
    char path[64], dir[64];
    snprintf(path, sizeof path, "sim-ckpt-%d-%d.safetensors", (int)getpid(), tied);
    snprintf(dir, sizeof dir, "sim-hf-%d-%d", (int)getpid(), tied);
    const char *keys[] = {"note"}, *values[] = {"sim"};
    CHECKF(gkd_checkpoint_save_model(ms, path, keys, values, 1) == GKD_OK, "%s", gkd_error_message());
    gkd_model *back = NULL;
    CHECK(gkd_checkpoint_load_model(path, cpu, &back) == GKD_OK);
    if (back) CHECK(same_params("sim -> file -> cpu", mc, back));
    gkd_model_free(back);
    back = NULL;
    CHECK(gkd_checkpoint_save_model(mc, path, NULL, NULL, 0) == GKD_OK);
    CHECK(gkd_checkpoint_load_model_ex(path, sim, GKD_MODEL_INFERENCE, &back) == GKD_OK);
    if (back) CHECK(same_params("cpu -> file -> sim", ms, back));
    gkd_model_free(back);
    back = new_model(&c, sim, 0, 99);
    CHECK(gkd_checkpoint_save_hf_dir(ms, dir) == GKD_OK);
    CHECK(back && gkd_checkpoint_load_into(back, dir) == GKD_OK);
    if (back) CHECK(same_params("sim -> HF folder -> sim", mc, back));
    gkd_model_free(back);
    remove(path);
    char f[128];
    snprintf(f, sizeof f, "%s/model.safetensors", dir);
    remove(f);
    snprintf(f, sizeof f, "%s/config.json", dir);
    remove(f);
    rmdir(dir);

    gkd_model_free(mc);
    gkd_model_free(ms);
}

static void test_gguf(void) {
    const char *files[] = {GKD_SOURCE_DIR "/tests/fixtures/tiny-llama-f32.gguf",
                           GKD_SOURCE_DIR "/tests/fixtures/tiny-llama-q.gguf"};
    for (int k = 0; k < 2; k++) {
        gkd_model *mc = NULL, *ms = NULL;
        CHECKF(gkd_gguf_model_load(files[k], cpu, &mc, NULL) == GKD_OK, "%s", gkd_error_message());
        CHECKF(gkd_gguf_model_load_ex(files[k], sim, GKD_MODEL_INFERENCE, &ms, NULL) == GKD_OK, "%s",
               gkd_error_message());
        if (mc && ms) {
            CHECK(same_params(files[k], mc, ms));
            int toks[6] = {1, 5, 9, 2, 7, 3};
            const float *hc, *hs;
            CHECK(gkd_model_forward_nograd(mc, toks, 1, 6, &hc) == GKD_OK);
            CHECK(gkd_model_forward_nograd(ms, toks, 1, 6, &hs) == GKD_OK);
            CHECK(same_floats("gguf hidden", cpu, hc, sim, hs, (size_t)6 * gkd_model_get_config(mc)->dim));
        }
        gkd_model_free(mc);
        gkd_model_free(ms);
    }
}

/* The precision is one setting shared with the CPU table, so bf16 on sim is the CPU's bf16. */
static void test_precision(void) {
    gkd_precision before = gkd_backend_precision(cpu);
    CHECK(gkd_backend_set_precision(sim, GKD_PRECISION_BF16, NULL) == GKD_OK);
    CHECK(gkd_backend_precision(cpu) == GKD_PRECISION_BF16 &&
          gkd_backend_precision(sim) == GKD_PRECISION_BF16);
    CHECK(gkd_backend_set_precision(sim, GKD_PRECISION_TF32, NULL) == GKD_ERR_ARG);
    gkd_model_config c = small_config(0);
    gkd_model *mc = new_model(&c, cpu, GKD_MODEL_INFERENCE, 3),
              *ms = new_model(&c, sim, GKD_MODEL_INFERENCE, 3);
    int toks[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    const float *hc, *hs;
    if (mc && ms && gkd_model_forward_nograd(mc, toks, 1, 8, &hc) == GKD_OK &&
        gkd_model_forward_nograd(ms, toks, 1, 8, &hs) == GKD_OK)
        CHECK(same_floats("bf16 hidden", cpu, hc, sim, hs, (size_t)8 * c.dim));
    else
        CHECK(!"bf16 forward");
    gkd_model_free(mc);
    gkd_model_free(ms);
    CHECK(gkd_backend_set_precision(cpu, before, NULL) == GKD_OK);
}

/* ---------- the trainer ---------- */

static gkd_tokenizer *tok;
static gkd_dataset train_text, held_text;
static gkd_token_dataset train, held;

enum { MAX_METRICS = 4096 };

typedef struct {
    char name[MAX_METRICS][48];
    int64_t step[MAX_METRICS];
    double value[MAX_METRICS];
    int n;
} metric_log;

/* Every number but the timings, which differ from run to run on any backend. */
static int log_metric(void *ctx, const char *split, int64_t step, const char *name, double value) {
    metric_log *l = ctx;
    if (strncmp(name, "time_", 5) == 0 || strcmp(name, "tokens_per_s") == 0 || l->n == MAX_METRICS) return 0;
    snprintf(l->name[l->n], sizeof l->name[l->n], "%s/%s", split, name);
    l->step[l->n] = step;
    l->value[l->n] = value;
    l->n++;
    return 0;
}

static int same_metrics(const char *what, const metric_log *a, const metric_log *b) {
    if (a->n != b->n) {
        fprintf(stderr, "%s: %d metrics vs %d\n", what, a->n, b->n);
        return 0;
    }
    for (int i = 0; i < a->n; i++)
        if (strcmp(a->name[i], b->name[i]) != 0 || a->step[i] != b->step[i] ||
            memcmp(&a->value[i], &b->value[i], sizeof(double)) != 0) {
            fprintf(stderr, "%s: metric %d %s at step %lld: %.17g vs %.17g\n", what, i, a->name[i],
                    (long long)a->step[i], a->value[i], b->value[i]);
            return 0;
        }
    return 1;
}

static double length_metric(void *ctx, const char *output, const gkd_example *ex, int *failed) {
    (void)ctx, (void)ex, (void)failed;
    return (double)strlen(output);
}

typedef enum { RUN_SUPERVISED_KD, RUN_ON_POLICY_JSD, RUN_MIXED, RUN_SFT, RUN_SEQKD, RUN_RL, RUN_PPO, RUN_GRPO } run_kind;

static const char *run_name[] = {"supervised_kd", "on-policy JSD", "lambda 0.5 per row", "sft",
                                 "seqkd",         "RL + reward",   "PPO",                "GRPO"};

static gkd_reward *rouge;

static void train_config(gkd_train_config *c, run_kind kind, metric_log *log) {
    gkd_train_config_default(c);
    const char *preset[] = {"supervised_kd", "gkd", "gkd", "sft", "seqkd", "gkd", "ppo", "grpo"};
    c->steps = 3;
    gkd_train_config_preset(c, preset[kind]);
    c->batch_size = 4;
    c->max_new_tokens = 6;
    c->seed = 7;
    c->loss_chunk = 5; /* several chunks per batch */
    c->lr = gkd_schedule_constant(3e-3);
    c->eval_every = 2;
    c->eval_examples = 6;
    c->eval_temperature = 1.0f;
    c->text_metrics[0] = (gkd_text_metric){"chars", length_metric, NULL};
    c->n_text_metrics = 1;
    c->on_metric = log_metric;
    c->metric_ctx = log;
    if (kind == RUN_ON_POLICY_JSD || kind == RUN_MIXED) {
        c->divergence.kind = GKD_DIV_JSD;
        c->beta = gkd_schedule_constant(0.9);
    }
    if (kind == RUN_MIXED) {
        c->lambda = gkd_schedule_constant(0.5);
        c->per_sample_coin = 1;
        c->top_k = 20; /* the top-k sampling path on device pointers (refused with a reward) */
    }
    if (kind == RUN_RL || kind == RUN_PPO || kind == RUN_GRPO) {
        c->reward = rouge;
        c->alpha = gkd_schedule_constant(0.5);
        c->group_size = 2;
        c->kl_coef = gkd_schedule_constant(0.1);
    }
    if (kind == RUN_PPO || kind == RUN_GRPO) { /* the policy log-prob rows' host copies, the value head's */
        c->epochs = gkd_schedule_constant(2);
        c->minibatches = 2;
        c->teacher_reward = gkd_schedule_constant(0.1);
    }
}

/* Runs `steps` steps (resuming from load_dir first, saving to save_dir after, when given) with fresh
 * models on be; returns the student, whose weights the caller compares and frees. */
static gkd_model *train_on(const gkd_backend *be, run_kind kind, int steps, const char *load_dir,
                           const char *save_dir, metric_log *log) {
    int V = gkd_tokenizer_vocab_size(tok);
    gkd_model_config tc = {.vocab_size = V,
                           .dim = 32,
                           .n_layers = 2,
                           .n_heads = 4,
                           .n_kv_heads = 2,
                           .hidden_dim = 64,
                           .max_seq_len = 96,
                           .rope_theta = 10000.0f,
                           .norm_eps = 1e-5f};
    gkd_model_config sc = tc;
    sc.dim = 16;
    sc.n_layers = 1;
    sc.hidden_dim = 40;
    sc.tied_embeddings = 1;
    gkd_model *teacher = new_model(&tc, be, GKD_MODEL_INFERENCE, 11), *student = new_model(&sc, be, 0, 12);
    gkd_train_config c;
    train_config(&c, kind, log);
    c.steps = steps;
    gkd_trainer *t = NULL;
    CHECKF(gkd_trainer_create(&c, student, kind == RUN_SFT ? NULL : teacher, tok, &train_text, &train,
                              &held_text, &held, &t) == GKD_OK,
           "%s: %s", run_name[kind], gkd_error_message());
    if (t && load_dir) CHECKF(gkd_trainer_load(t, load_dir) == GKD_OK, "%s", gkd_error_message());
    if (t)
        CHECKF(gkd_trainer_run(t) == GKD_OK, "%s on %s: %s", run_name[kind], be->name, gkd_error_message());
    if (t && save_dir) CHECKF(gkd_trainer_save(t, save_dir) == GKD_OK, "%s", gkd_error_message());
    gkd_trainer_free(t);
    gkd_model_free(teacher);
    return student;
}

static void test_trainer(void) {
    CHECK(gkd_dataset_arithmetic(3, 40, &train_text) == GKD_OK);
    CHECK(gkd_dataset_arithmetic(4, 6, &held_text) == GKD_OK);
    const char *texts[40];
    for (int i = 0; i < 40; i++) texts[i] = train_text.items[i].prompt;
    const char *specials[] = {"<|endoftext|>", "<|pad|>"};
    CHECK(gkd_tokenizer_train(texts, 40, 300, specials, 2, &tok) == GKD_OK);
    CHECK(gkd_dataset_tokenize(&train_text, tok, 40, 16, &train) == GKD_OK);
    CHECK(gkd_dataset_tokenize(&held_text, tok, 40, 16, &held) == GKD_OK);
    CHECK(gkd_reward_builtin("rouge1", &rouge) == GKD_OK);
    static metric_log lc, ls;
    for (run_kind k = RUN_SUPERVISED_KD; k <= RUN_GRPO; k++) {
        fprintf(stderr, "trainer: %s\n", run_name[k]);
        lc.n = ls.n = 0;
        gkd_model *sc = train_on(cpu, k, 3, NULL, NULL, &lc), *ss = train_on(sim, k, 3, NULL, NULL, &ls);
        CHECKF(lc.n > 20, "%s: %d metrics", run_name[k], lc.n);
        CHECKF(same_metrics(run_name[k], &lc, &ls), "%s", run_name[k]);
        if (sc && ss) CHECKF(same_params(run_name[k], sc, ss), "%s: final weights", run_name[k]);
        gkd_model_free(sc);
        gkd_model_free(ss);
    }

    /* A run saved on one backend resumes on the other exactly as an unbroken run. */
    char dir[64];
    snprintf(dir, sizeof dir, "sim-resume-%d", (int)getpid());
    for (int from_sim = 0; from_sim < 2; from_sim++) {
        const gkd_backend *first = from_sim ? sim : cpu, *second = from_sim ? cpu : sim;
        lc.n = ls.n = 0;
        gkd_model *whole = train_on(cpu, RUN_MIXED, 4, NULL, NULL, &lc);
        gkd_model *half = train_on(first, RUN_MIXED, 2, NULL, dir, &ls);
        gkd_model *resumed = train_on(second, RUN_MIXED, 4, dir, NULL, &ls);
        if (whole && resumed) CHECKF(same_params("resumed", whole, resumed), "saved on %s", first->name);
        CHECKF(same_metrics("resumed", &lc, &ls), "saved on %s", first->name);
        gkd_model_free(whole);
        gkd_model_free(half);
        gkd_model_free(resumed);
        char f[128];
        snprintf(f, sizeof f, "%s/model.safetensors", dir);
        remove(f);
        snprintf(f, sizeof f, "%s/state.safetensors", dir);
        remove(f);
        rmdir(dir);
    }
    gkd_reward_free(rouge);
    gkd_token_dataset_free(&train);
    gkd_token_dataset_free(&held);
    gkd_dataset_free(&train_text);
    gkd_dataset_free(&held_text);
    gkd_tokenizer_free(tok);
}

/* ---------- the reward model ---------- */

static void test_reward_model(void) {
    gkd_task_spec spec = {"{package}", "summary", "document", 0};
    gkd_dataset d = {0};
    CHECKF(gkd_dataset_load_jsonl(GKD_SOURCE_DIR "/tests/fixtures/debdesc-sample.jsonl", &spec, &d) == GKD_OK,
           "%s", gkd_error_message());
    gkd_reward_model_pair_config pc = gkd_reward_model_pair_config_default();
    gkd_reward_model_pairs p = {0};
    CHECKF(gkd_reward_model_make_pairs(&d, &pc, &p) == GKD_OK, "%s", gkd_error_message());
    gkd_reward_model_config mc = gkd_reward_model_config_default();
    mc.vocab_size = 400;
    mc.dim = 16;
    mc.n_heads = 2;
    mc.hidden_dim = 32;
    gkd_reward_model *rc = NULL, *rs = NULL;
    CHECKF(gkd_reward_model_create(&mc, &p, cpu, &rc) == GKD_OK, "%s", gkd_error_message());
    CHECKF(gkd_reward_model_create(&mc, &p, sim, &rs) == GKD_OK, "%s", gkd_error_message());
    if (!rc || !rs || p.n < 8) goto done;
    gkd_reward_model_train_config tc = gkd_reward_model_train_config_default();
    tc.steps = 3;
    tc.batch = 4;
    tc.warmup_steps = 1;
    tc.report_every = 1;
    tc.eval = &p;
    tc.eval_every = 2;
    gkd_reward_model_progress gc, gs;
    CHECKF(gkd_reward_model_train(rc, &tc, &p, &gc) == GKD_OK, "%s", gkd_error_message());
    CHECKF(gkd_reward_model_train(rs, &tc, &p, &gs) == GKD_OK, "%s", gkd_error_message());
    CHECK(memcmp(&gc.loss, &gs.loss, sizeof gc.loss) == 0 &&
          memcmp(&gc.eval_loss, &gs.eval_loss, sizeof(double)) == 0);
    CHECK(same_params("reward model", gkd_reward_model_transformer(rc), gkd_reward_model_transformer(rs)));
    const int idx[4] = {0, 1, 6, 7};
    double fc = 0, fs = 1;
    gkd_model *tc_m = gkd_reward_model_transformer(rc), *ts_m = gkd_reward_model_transformer(rs);
    gkd_model_zero_grad(tc_m);
    gkd_model_zero_grad(ts_m);
    CHECK(gkd_reward_model_gradients(rc, &p, idx, 4, 0.5f, &fc) == GKD_OK);
    CHECK(gkd_reward_model_gradients(rs, &p, idx, 4, 0.5f, &fs) == GKD_OK);
    CHECK(fc == fs);
    CHECK(same_floats("reward model gradients", cpu, gkd_model_grads(tc_m), sim, gkd_model_grads(ts_m),
                      gkd_model_num_params(tc_m)));
    const char *src[2] = {p.items[0].source, p.items[1].source},
               *sum[2] = {p.items[0].summary, p.items[1].summary};
    double pc2[2], ps2[2];
    CHECK(gkd_reward_model_score(rc, src, sum, 2, pc2) == GKD_OK);
    CHECK(gkd_reward_model_score(rs, src, sum, 2, ps2) == GKD_OK);
    CHECK(memcmp(pc2, ps2, sizeof pc2) == 0);
    char dir[64];
    snprintf(dir, sizeof dir, "sim-rm-%d", (int)getpid());
    CHECK(gkd_reward_model_save(rs, dir) == GKD_OK);
    gkd_reward_model *back = NULL;
    CHECK(gkd_reward_model_load(dir, cpu, &back) == GKD_OK);
    if (back) {
        CHECK(gkd_reward_model_score(back, src, sum, 2, ps2) == GKD_OK);
        CHECK(memcmp(pc2, ps2, sizeof pc2) == 0);
    }
    gkd_reward_model_free(back);
    char f[128];
    snprintf(f, sizeof f, "%s/model.safetensors", dir);
    remove(f);
    snprintf(f, sizeof f, "%s/tokenizer.json", dir);
    remove(f);
    rmdir(dir);
done:
    gkd_reward_model_free(rc);
    gkd_reward_model_free(rs);
    gkd_reward_model_pairs_free(&p);
    gkd_dataset_free(&d);
}

int main(void) {
    cpu = gkd_backend_cpu();
    sim = gkd_backend_sim();
    test_faults();
    test_model(0);
    test_model(1);
    test_gguf();
    test_precision();
    test_trainer();
    test_reward_model();
    return check_exit();
}
