/* gkd quickstart: the main job. On the built-in Debian package-description sample (document -> summary):
 * trains a tokenizer and a teacher (SFT); gives a smaller student a short supervised warm start (as the
 * paper starts its students from supervised fine-tuned checkpoints); then distils two copies of that
 * student from the teacher for the same number of steps — supervised KD (lambda 0, forward KL on the
 * references) and on-policy GKD (lambda 1, JSD(0.9)) — and reports each model's held-out ROUGE-L,
 * factual consistency and divergence on its own samples. Every run is recorded in the run store. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "core/backend_select.h"
#include "core/checkpoint.h"
#include "core/data.h"
#include "core/report.h"
#include "core/store.h"
#include "core/tokenizer.h"
#include "reward/metrics.h"
#include "rl/trainer.h"

typedef struct {
    gkd_store *store;
    int64_t run_id;
    int steps;
    gkd_progress progress;
    double loss; /* of the current step, shown with its tokens/s */
} sink_ctx;

static int store_sink(void *ctx, const char *split, int64_t step, const char *name, double value) {
    sink_ctx *s = ctx;
    gkd_status st = strcmp(split, "train") == 0 ? gkd_store_metric(s->store, s->run_id, step, name, value)
                                                : gkd_store_eval(s->store, s->run_id, step, split, name, value);
    if (strcmp(split, "train") == 0 && strcmp(name, "loss") == 0) s->loss = value;
    if (strcmp(split, "train") == 0 && strcmp(name, "tokens_per_s") == 0) gkd_progress_update(&s->progress, step - 1, s->loss, value); /* it counts from 0 */
    return st == GKD_OK ? 0 : 1;
}

static double metric_rouge_l(void *ctx, const char *output, const gkd_example *ex, int *failed) {
    (void)ctx;
    gkd_prf prf;
    if (gkd_rouge_l(output, ex->target, 0, &prf) != GKD_OK) {
        *failed = 1;
        return 0;
    }
    return prf.f;
}

static double metric_factual(void *ctx, const char *output, const gkd_example *ex, int *failed) {
    (void)ctx;
    gkd_factual_parts parts;
    if (gkd_factual_score(output, ex->source, NULL, &parts) != GKD_OK) {
        *failed = 1;
        return 0;
    }
    return parts.score;
}

typedef struct {
    const char *name;
    gkd_eval_stats eval;
} result;

static gkd_status train_one(const char *name, gkd_train_config *cfg, gkd_model *student, gkd_model *teacher,
                            const gkd_tokenizer *tok, const gkd_dataset *train_text, const gkd_token_dataset *train,
                            const gkd_dataset *held_text, const gkd_token_dataset *held, gkd_store *store,
                            result *out) {
    gkd_buf config = {0};
    gkd_buf_printf(&config, "{\"method\":\"%s\",\"lambda\":%g,\"beta\":%g,\"steps\":%d,\"batch\":%d,\"seed\":%llu}",
                   cfg->method, cfg->lambda.start, cfg->beta.start, cfg->steps, cfg->batch_size,
                   (unsigned long long)cfg->seed);
    sink_ctx ctx = {.store = store, .steps = cfg->steps};
    gkd_progress_init(&ctx.progress, cfg->steps, stderr);
    gkd_status st = gkd_store_run_begin(store, name, 0, config.data, cfg->seed, &ctx.run_id);
    gkd_buf_free(&config);
    if (st != GKD_OK) return st;
    cfg->on_metric = store_sink;
    cfg->metric_ctx = &ctx;
    gkd_trainer *t = NULL;
    fprintf(stderr, "%s: %s, %d steps\n", name, cfg->method, cfg->steps);
    st = gkd_trainer_create(cfg, student, teacher, tok, train_text, train, held_text, held, &t);
    if (st == GKD_OK) st = gkd_trainer_run(t);
    if (st == GKD_OK && gkd_trainer_last_eval(t)) out->eval = *gkd_trainer_last_eval(t);
    gkd_progress_finish(&ctx.progress);
    gkd_trainer_free(t);
    out->name = name;
    gkd_store_run_finish(store, ctx.run_id, st == GKD_OK ? GKD_RUN_STATUS_FINISHED : GKD_RUN_STATUS_FAILED,
                         st == GKD_OK ? NULL : gkd_error_message());
    gkd_store_flush(store);
    return st;
}

int gkd_cmd_quickstart(int argc, char **argv) {
    gkd_cli_args a;
    if (gkd_cli_parse(&a, "quickstart", argc, argv, 2, "") != 0) return 2;
    int bad = 0;
    const char *data = gkd_cli_str(&a, "data", getenv("GKD_DATA") ? getenv("GKD_DATA")
                                                                   : GKD_SOURCE_DIR "/tests/fixtures/debdesc-sample.jsonl");
    const char *db_path = gkd_cli_str(&a, "db", "runs.db");
    const char *out_dir = gkd_cli_str(&a, "out", "quickstart-out");
    const char *device = gkd_cli_str(&a, "device", "cpu");
    int teacher_steps = gkd_cli_size(&a, "teacher-steps", 300, &bad);
    int student_steps = gkd_cli_size(&a, "student-steps", 150, &bad);
    int warm_steps = gkd_cli_size(&a, "student-warmup-steps", 50, &bad);
    int batch = gkd_cli_size(&a, "batch", 16, &bad);
    unsigned long long seed = (unsigned long long)gkd_cli_int(&a, "seed", 1, &bad);
    if (bad || gkd_cli_check_unused(&a)) return 2;
    const gkd_backend *be = gkd_backend_by_name(device);
    if (!be) {
        gkd_cli_error("quickstart", "%s", gkd_error_message());
        return 2;
    }
    gkd_task_spec spec = {"Describe the package: {document}\nSummary:", "summary", "document", 0};
    gkd_dataset all = {0}, train_text = {0}, held_text = {0};
    gkd_token_dataset train = {0}, held = {0};
    gkd_tokenizer *tok = NULL;
    gkd_model *teacher = NULL, *kd = NULL, *onp = NULL;
    gkd_store *store = NULL;
    result results[4];
    gkd_model *warm = NULL;
    int rc = 1;
    gkd_status st = gkd_dataset_load_jsonl(data, &spec, &all);
    if (st == GKD_OK) st = gkd_dataset_split(&all, 0.1, seed, &train_text, &held_text);
    if (st != GKD_OK) {
        gkd_cli_error("quickstart", "%s", gkd_error_message());
        return 2;
    }
    mkdir(out_dir, 0777);
    /* The tokenizer learns from the training texts only. */
    const char **texts = malloc((size_t)train_text.n * 2 * sizeof *texts);
    for (int i = 0; i < train_text.n; i++) {
        texts[2 * i] = train_text.items[i].prompt;
        texts[2 * i + 1] = train_text.items[i].target;
    }
    const char *specials[] = {"<|endoftext|>", "<|pad|>"};
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", out_dir);
    st = gkd_tokenizer_train(texts, train_text.n * 2, 1024, specials, 2, &tok);
    free(texts);
    if (st == GKD_OK) st = gkd_tokenizer_save(tok, path);
    if (st == GKD_OK) st = gkd_dataset_tokenize(&train_text, tok, 96, 32, &train);
    if (st == GKD_OK) st = gkd_dataset_tokenize(&held_text, tok, 96, 32, &held);
    if (st == GKD_OK) st = gkd_store_open(db_path, &store);
    if (st != GKD_OK) goto fail;
    int V = gkd_tokenizer_vocab_size(tok);
    gkd_model_config tc = {.vocab_size = V, .dim = 128, .n_layers = 4, .n_heads = 4, .n_kv_heads = 2,
                           .hidden_dim = 384, .max_seq_len = 160, .rope_theta = 10000.0f, .norm_eps = 1e-5f};
    gkd_model_config sc = tc;
    sc.dim = 64;
    sc.n_layers = 2;
    sc.hidden_dim = 192;
    if ((st = gkd_model_create(&tc, be, &teacher)) != GKD_OK) goto fail;
    gkd_model_init_weights(teacher, seed);
    gkd_train_config cfg;
    gkd_train_config_default(&cfg);
    cfg.batch_size = batch;
    cfg.seed = seed;
    cfg.max_new_tokens = 32;
    cfg.eval_examples = held.n;
    cfg.text_metrics[0] = (gkd_text_metric){"rougeL", metric_rouge_l, NULL};
    cfg.text_metrics[1] = (gkd_text_metric){"factual", metric_factual, NULL};
    cfg.n_text_metrics = 2;
    gkd_train_config_preset(&cfg, "sft");
    cfg.steps = teacher_steps;
    cfg.lr = gkd_schedule_warmup_cosine(2e-3, 2e-4, teacher_steps / 20, teacher_steps);
    if ((st = train_one("quickstart/teacher", &cfg, teacher, NULL, tok, &train_text, &train, &held_text, &held, store,
                        &results[0])) != GKD_OK)
        goto fail;
    snprintf(path, sizeof path, "%s/teacher", out_dir);
    if ((st = gkd_checkpoint_save_hf_dir(teacher, path)) != GKD_OK) goto fail;

    /* The students' common starting point: a short SFT on the references. */
    if ((st = gkd_model_create(&sc, be, &warm)) != GKD_OK) goto fail;
    gkd_model_init_weights(warm, seed + 1);
    gkd_train_config_default(&cfg);
    cfg.batch_size = batch;
    cfg.seed = seed;
    cfg.max_new_tokens = 32;
    cfg.eval_examples = held.n;
    cfg.text_metrics[0] = (gkd_text_metric){"rougeL", metric_rouge_l, NULL};
    cfg.text_metrics[1] = (gkd_text_metric){"factual", metric_factual, NULL};
    cfg.n_text_metrics = 2;
    gkd_train_config_preset(&cfg, "sft");
    cfg.steps = warm_steps > 0 ? warm_steps : 1;
    cfg.lr = gkd_schedule_warmup_cosine(2e-3, 2e-3, cfg.steps / 10, cfg.steps);
    if (warm_steps > 0 && (st = train_one("quickstart/student-warm-start", &cfg, warm, NULL, tok, &train_text, &train,
                                          &held_text, &held, store, &results[1])) != GKD_OK)
        goto fail;
    const char *names[2] = {"quickstart/supervised-kd", "quickstart/on-policy-jsd0.9"};
    gkd_model **students[2] = {&kd, &onp};
    for (int k = 0; k < 2; k++) {
        if ((st = gkd_model_create(&sc, be, students[k])) != GKD_OK) goto fail;
        be->copy(gkd_model_params(*students[k]), gkd_model_params(warm), gkd_model_num_params(warm) * sizeof(float));
        gkd_train_config_default(&cfg);
        cfg.batch_size = batch;
        cfg.seed = seed;
        cfg.max_new_tokens = 32;
        cfg.eval_examples = held.n;
        cfg.text_metrics[0] = (gkd_text_metric){"rougeL", metric_rouge_l, NULL};
        cfg.text_metrics[1] = (gkd_text_metric){"factual", metric_factual, NULL};
        cfg.n_text_metrics = 2;
        gkd_train_config_preset(&cfg, k == 0 ? "supervised_kd" : "gkd");
        if (k == 1) {
            cfg.divergence.kind = GKD_DIV_JSD;
            cfg.beta = gkd_schedule_constant(0.9);
        }
        cfg.steps = student_steps;
        cfg.lr = gkd_schedule_warmup_cosine(2e-3, 2e-4, student_steps / 20, student_steps);
        if ((st = train_one(names[k], &cfg, *students[k], teacher, tok, &train_text, &train, &held_text, &held, store,
                            &results[k + 2])) != GKD_OK)
            goto fail;
    }
    printf("\nheld-out results (%d examples; own = on the model's own greedy samples)\n", held.n);
    printf("%-30s %8s %8s %10s %12s %12s\n", "run", "rougeL", "factual", "ce_loss", "own_fkl", "own_jsd0.5");
    for (int i = 0; i < 4; i++) {
        if (i == 1 && warm_steps <= 0) continue;
        if (i < 2) /* no teacher in these runs: no divergence to report */
            printf("%-30s %8.4f %8.4f %10.4f %12s %12s\n", results[i].name, results[i].eval.text[0],
                   results[i].eval.text[1], results[i].eval.ce_loss, "-", "-");
        else
            printf("%-30s %8.4f %8.4f %10.4f %12.4f %12.4f\n", results[i].name, results[i].eval.text[0],
                   results[i].eval.text[1], results[i].eval.ce_loss, results[i].eval.own_forward_kl,
                   results[i].eval.own_jsd_half);
    }
    printf("\nruns recorded in %s; teacher and tokenizer in %s/\n", db_path, out_dir);
    rc = 0;
fail:
    if (rc != 0) gkd_cli_error("quickstart", "%s", gkd_error_message());
    gkd_store_close(store);
    gkd_model_free(teacher);
    gkd_model_free(kd);
    gkd_model_free(onp);
    gkd_model_free(warm);
    gkd_tokenizer_free(tok);
    gkd_token_dataset_free(&train);
    gkd_token_dataset_free(&held);
    gkd_dataset_free(&train_text);
    gkd_dataset_free(&held_text);
    return rc;
}
