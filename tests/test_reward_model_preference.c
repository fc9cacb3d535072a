/* Preference reward models (reward/reward_model.h, config.preference = 1): the Bradley-Terry pair loss
 * (value against a direct computation, gradient against finite differences, with a margin and for ties),
 * the objective of gkd_reward_model_gradients equal to the mean pair loss of the scored rewards and its
 * parameter gradient against a central difference along a random direction, the JSONL reader's errors
 * (file and line), and a short training on tests/fixtures/preference-train.jsonl whose held-out pairwise
 * accuracy on tests/fixtures/preference-heldout.jsonl (other packages) is well above chance; the saved
 * model loads as a preference model, scores the same and works through the reward interface that
 * reward = "model:DIR" uses. And a preference model started from a pretrained gkd model saved as a
 * Hugging Face directory (gkd_reward_model_create_from): its tokenizer gains the specials after its own
 * ids, every base tensor is copied (the embedding's rows as a prefix), training lowers the loss, it saves
 * and loads; an untied base, a tokenizer larger than the model and a missing file are refused by name. */
// ctest-labels: cpu
#include "reward/reward_model.h"
#include "rl/reward_model_train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/base/rng.h"
#include "core/format/checkpoint.h"
#include "core/tensor/model.h"
#include "core/text/tokenizer.h"
#include "tests/check.h"

static void test_bt_loss(void) {
    const double ds[] = {-3.0, -0.5, 0.0, 0.7, 4.0}, margins[] = {0.0, 1.5};
    for (int i = 0; i < 5; i++) {
        for (int m = 0; m < 3; m++) {
            int tie = m == 2;
            double margin = tie ? 0.0 : margins[m], d = ds[i], g;
            double l = gkd_reward_model_bt_loss(d, margin, tie, &g);
            double direct = tie ? -0.5 * (log(1.0 / (1.0 + exp(-d))) + log(1.0 / (1.0 + exp(d))))
                                : -log(1.0 / (1.0 + exp(-(d - margin))));
            CHECKF(fabs(l - direct) < 1e-12, "d %g margin %g tie %d: %g vs %g", d, margin, tie, l, direct);
            const double h = 1e-5;
            double num = (gkd_reward_model_bt_loss(d + h, margin, tie, NULL) -
                          gkd_reward_model_bt_loss(d - h, margin, tie, NULL)) /
                         (2 * h);
            CHECKF(fabs(num - g) < 1e-7, "d %g margin %g tie %d: grad %g, numeric %g", d, margin, tie, g,
                   num);
        }
    }
    double g;
    CHECK(fabs(gkd_reward_model_bt_loss(0.0, 0.0, 1, &g) - log(2.0)) < 1e-12 && g == 0.0);
    /* a margin asks for more: the same d costs more with it */
    CHECK(gkd_reward_model_bt_loss(1.0, 1.0, 0, NULL) > gkd_reward_model_bt_loss(1.0, 0.0, 0, NULL));
    /* a tie penalises a gap either way, symmetrically */
    CHECK(fabs(gkd_reward_model_bt_loss(2.0, 0.0, 1, NULL) - gkd_reward_model_bt_loss(-2.0, 0.0, 1, NULL)) <
          1e-12);
}

static gkd_reward_model_pairs read_pairs(const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/fixtures/%s", GKD_SOURCE_DIR, name);
    gkd_reward_model_pairs p = {0};
    CHECKF(gkd_reward_model_read_preferences(path, &p) == GKD_OK, "%s", gkd_error_message());
    return p;
}

/* Writes text to a temporary file; returns its path (static buffer). */
static const char *write_tmp(const char *text) {
    static char path[] = "/tmp/gkd-pref-XXXXXX";
    strcpy(path, "/tmp/gkd-pref-XXXXXX");
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

static void expect_read_error(const char *text, const char *line, const char *what) {
    const char *path = write_tmp(text);
    gkd_reward_model_pairs p = {0};
    char want[1200];
    snprintf(want, sizeof want, "%s:%s", path, line);
    gkd_status st = gkd_reward_model_read_preferences(path, &p);
    const char *msg = gkd_error_message();
    CHECKF(st != GKD_OK && strstr(msg, want) && strstr(msg, what), "want \"%s\" and \"%s\" in: %s", want,
           what, msg);
    CHECK(p.n == 0 && !p.items);
    unlink(path);
}

static void test_read(void) {
    const char *good = "{\"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": \"b\", \"margin\": 0.5}\n\n"
                       "{\"prompt\": \"q\", \"chosen\": \"c\", \"rejected\": \"c\", \"tie\": true}\n";
    const char *path = write_tmp(good);
    gkd_reward_model_pairs p = {0};
    CHECKF(gkd_reward_model_read_preferences(path, &p) == GKD_OK, "%s", gkd_error_message());
    CHECK(p.n == 4 && p.items[0].label == 1 && p.items[1].label == 0 && !strcmp(p.items[1].summary, "b") &&
          !strcmp(p.items[1].source, "p") && p.items[0].margin == 0.5 && !p.items[0].tie && p.items[3].tie &&
          p.items[2].margin == 0.0);
    gkd_reward_model_pairs_free(&p);
    unlink(path);
    expect_read_error("{\"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": \"b\"}\n{\"prompt\": \"p\", "
                      "\"rejected\": \"b\"}\n",
                      "2", "\"chosen\"");
    expect_read_error("{\"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": \"b\"}\n\n{\"prompt\": broken\n",
                      "3", "offset");
    expect_read_error("{\"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": \"b\", \"tie\": 1}\n", "1",
                      "\"tie\"");
    expect_read_error("[1, 2]\n", "1", "not a JSON object");
}

static gkd_reward_model *small_model(const gkd_reward_model_pairs *p, int dim) {
    gkd_reward_model_config mc = gkd_reward_model_config_default();
    mc.vocab_size = 600;
    mc.dim = dim;
    mc.n_heads = 4;
    mc.hidden_dim = 2 * dim;
    mc.max_source_tokens = 48;
    mc.max_summary_tokens = 16;
    mc.preference = 1;
    gkd_reward_model *rm = NULL;
    CHECKF(gkd_reward_model_create(&mc, p, gkd_backend_cpu(), &rm) == GKD_OK, "%s", gkd_error_message());
    return rm;
}

/* The objective is the mean pair loss of the rewards the model scores; its gradient along a random
 * direction v matches (f(x + h v) - f(x - h v)) / 2h. Pairs 0 (strict), 19 (a tie) and 3, with a margin. */
static void test_objective(gkd_reward_model_pairs *p) {
    gkd_reward_model *rm = small_model(p, 16);
    if (!rm) return;
    p->items[6].margin = p->items[7].margin = 0.8;
    CHECK(p->items[38].tie);
    const int idx[3] = {0, 19, 3};
    gkd_model *m = gkd_reward_model_transformer(rm);
    float *params = gkd_model_params(m), *grads = gkd_model_grads(m);
    size_t np = gkd_model_num_params(m);
    gkd_rng rng;
    gkd_rng_init(&rng, 5, GKD_RNG_STREAM_USER);
    for (size_t i = 0; i < np; i++) params[i] += 0.1f * gkd_rng_normal(&rng);
    double f0 = 0, direct = 0;
    gkd_model_zero_grad(m);
    CHECKF(gkd_reward_model_gradients(rm, p, idx, 3, 0.0f, &f0) == GKD_OK, "%s", gkd_error_message());
    for (int k = 0; k < 3; k++) {
        const gkd_reward_model_pair *c = &p->items[2 * idx[k]], *r = c + 1;
        const char *src[2] = {c->source, r->source}, *sum[2] = {c->summary, r->summary};
        double z[2];
        CHECK(gkd_reward_model_score(rm, src, sum, 2, z) == GKD_OK);
        direct += gkd_reward_model_bt_loss(z[0] - z[1], c->margin, c->tie, NULL) / 3;
    }
    CHECKF(fabs(f0 - direct) < 1e-4, "objective %g, direct %g", f0, direct);
    float *v = malloc(np * sizeof *v), *x0 = malloc(np * sizeof *x0);
    double dot = 0;
    for (size_t i = 0; i < np; i++) {
        v[i] = gkd_rng_normal(&rng);
        dot += (double)v[i] * grads[i];
    }
    memcpy(x0, params, np * sizeof *x0);
    const float h = 1e-3f;
    double fp = 0, fm = 0;
    for (size_t i = 0; i < np; i++) params[i] = x0[i] + h * v[i];
    gkd_reward_model_gradients(rm, p, idx, 3, 0.0f, &fp);
    for (size_t i = 0; i < np; i++) params[i] = x0[i] - h * v[i];
    gkd_reward_model_gradients(rm, p, idx, 3, 0.0f, &fm);
    memcpy(params, x0, np * sizeof *x0);
    double numeric = (fp - fm) / (2.0 * h);
    CHECKF(fabs(numeric - dot) <= 0.03 * fabs(dot) + 1e-3, "directional derivative %g, numeric %g", dot,
           numeric);
    p->items[6].margin = p->items[7].margin = 0.0;
    free(v);
    free(x0);
    gkd_reward_model_free(rm);
}

static void test_train(const gkd_reward_model_pairs *tp, const gkd_reward_model_pairs *hp) {
    gkd_reward_model *rm = small_model(tp, 32);
    if (!rm) return;
    double acc0 = 0, acc = 0, loss0 = 0, loss = 0;
    CHECK(gkd_reward_model_evaluate(rm, hp, &acc0, &loss0) == GKD_OK);
    gkd_reward_model_train_config tc = gkd_reward_model_train_config_default();
    tc.steps = 300;
    tc.batch = 16;
    tc.lr = 1e-3f;
    tc.token_loss_weight = 0;
    tc.eval = hp;
    gkd_reward_model_progress last;
    CHECKF(gkd_reward_model_train(rm, &tc, tp, &last) == GKD_OK, "%s", gkd_error_message());
    CHECK(gkd_reward_model_evaluate(rm, hp, &acc, &loss) == GKD_OK);
    fprintf(stderr, "held-out pairs: accuracy %.3f -> %.3f, loss %.4f -> %.4f\n", acc0, acc, loss0, loss);
    CHECKF(acc == last.eval_accuracy, "%g vs %g", acc, last.eval_accuracy);
    /* The held-out pairs whose rejected response is a truncated chosen one (a third of them): the kind
     * this small fixture teaches; other-package and one-word-swapped summaries stay near chance here
     * (grounding needs far more pairs: docs/reward-model.md). */
    gkd_reward_model_pairs trunc = {malloc((size_t)hp->n * sizeof *trunc.items), 0};
    for (int k = 0; trunc.items && 2 * k + 1 < hp->n; k++) {
        const gkd_reward_model_pair *c = &hp->items[2 * k], *r = c + 1;
        if (!c->tie && strlen(r->summary) < strlen(c->summary) &&
            !strncmp(c->summary, r->summary, strlen(r->summary))) {
            trunc.items[trunc.n++] = *c;
            trunc.items[trunc.n++] = *r;
        }
    }
    double acc_trunc = 0;
    CHECK(trunc.n >= 60 && gkd_reward_model_evaluate(rm, &trunc, &acc_trunc, NULL) == GKD_OK);
    fprintf(stderr, "held-out truncated pairs (%d): accuracy %.3f\n", trunc.n / 2, acc_trunc);
    free(trunc.items);
    /* Chance is 0.5. The outcome of 300 steps moves with rounding-level changes (a different exp, another
     * compiler): over data-order seeds 1-8, before and after the vectorised exp of 2026-12-03 (16 runs), the
     * truncated pairs gave 0.78-0.93 and all pairs 0.55-0.66 (from 0.484). The bounds sit below that spread:
     * 31 of 41 truncated pairs by chance has probability under 1e-3. (They were 0.85 and 0.56, fitted to
     * seed 1's 0.927 and 0.664, which seeds 3 and 5 missed before any change.) */
    CHECKF(acc > acc0, "held-out pairwise accuracy %.3f: want above the untrained %.3f", acc, acc0);
    CHECKF(acc_trunc >= 0.75, "held-out truncated-pair accuracy %.3f: want >= 0.75", acc_trunc);

    char dir[] = "/tmp/gkd-pref-model-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    CHECKF(gkd_reward_model_save(rm, dir) == GKD_OK, "%s", gkd_error_message());
    gkd_reward_model *back = NULL;
    CHECKF(gkd_reward_model_load(dir, gkd_backend_cpu(), &back) == GKD_OK, "%s", gkd_error_message());
    if (back) {
        CHECK(gkd_reward_model_get_config(back)->preference == 1);
        double acc2 = 0;
        CHECK(gkd_reward_model_evaluate(back, hp, &acc2, NULL) == GKD_OK && acc2 == acc);
        /* the reward reward = "model:DIR" builds: the reward z, chosen above rejected on most pairs */
        gkd_reward *r = NULL;
        CHECK(gkd_reward_model_as_reward(back, 1, &r) == GKD_OK);
        gkd_reward_sample s[2] = {{.source = hp->items[0].source, .output = hp->items[0].summary},
                                  {.source = hp->items[1].source, .output = hp->items[1].summary}};
        double scores[2], z[2];
        const char *src[2] = {s[0].source, s[1].source}, *sum[2] = {s[0].output, s[1].output};
        CHECK(r && gkd_reward_score(r, s, 2, scores) == GKD_OK);
        CHECK(gkd_reward_model_score(rm, src, sum, 2, z) == GKD_OK);
        CHECKF(scores[0] == z[0] && scores[1] == z[1], "reward %g %g, model %g %g", scores[0], scores[1],
               z[0], z[1]);
        gkd_reward_free(r);
    }
    static const char *const files[] = {"model.safetensors", "tokenizer.json"};
    for (int f = 0; f < 2; f++) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s", dir, files[f]);
        unlink(path);
    }
    rmdir(dir);
    gkd_reward_model_free(rm);
}

static void remove_files(const char *dir, const char *const *files, int n) {
    for (int f = 0; f < n; f++) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s", dir, files[f]);
        unlink(path);
    }
    rmdir(dir);
}

static void test_init_from_model(const gkd_reward_model_pairs *tp, const gkd_reward_model_pairs *hp) {
    /* The base: a tied gkd model with a tokenizer of its vocabulary, saved as a Hugging Face directory. */
    const char *texts[200];
    int nt = 0;
    for (int i = 0; i < tp->n && nt < 200; i += 2) texts[nt++] = tp->items[i].summary;
    const char *specials[] = {"<|endoftext|>"};
    gkd_tokenizer *tok = NULL;
    CHECK(gkd_tokenizer_train(texts, nt, 400, specials, 1, &tok) == GKD_OK);
    if (!tok) return;
    int V = gkd_tokenizer_vocab_size(tok);
    gkd_model_config bc = {.vocab_size = V + 3, .dim = 32, .n_layers = 1, .n_heads = 4, .n_kv_heads = 2,
                           .hidden_dim = 64, .max_seq_len = 32, .rope_theta = 10000.0f, .norm_eps = 1e-5f,
                           .tied_embeddings = 1};
    gkd_model *base = NULL;
    CHECK(gkd_model_create(&bc, gkd_backend_cpu(), &base) == GKD_OK);
    if (!base) return;
    gkd_model_init_weights(base, 9);
    char dir[] = "/tmp/gkd-pref-base-XXXXXX", tok_path[256];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(tok_path, sizeof tok_path, "%s/tokenizer.json", dir);
    CHECKF(gkd_checkpoint_save_hf_dir(base, dir) == GKD_OK, "%s", gkd_error_message());
    CHECK(gkd_tokenizer_save(tok, tok_path) == GKD_OK);

    gkd_reward_model_config mc = gkd_reward_model_config_default();
    mc.max_source_tokens = 48;
    mc.max_summary_tokens = 16;
    mc.preference = 1;
    gkd_reward_model *rm = NULL;
    CHECKF(gkd_reward_model_create_from(&mc, dir, tok_path, gkd_backend_cpu(), &rm) == GKD_OK, "%s",
           gkd_error_message());
    if (rm) {
        gkd_model *m = gkd_reward_model_transformer(rm);
        const gkd_model_config *c = gkd_model_get_config(m);
        /* 6 specials are new (<|endoftext|> keeps its id): ids V .. V+5; the base had V + 3 rows. */
        CHECKF(c->vocab_size == V + 6 && c->dim == 32 && c->n_kv_heads == 2 && c->max_seq_len >= 67,
               "vocab %d, dim %d, kv %d, positions %d", c->vocab_size, c->dim, c->n_kv_heads, c->max_seq_len);
        CHECK(gkd_reward_model_get_config(rm)->vocab_size == V + 6);
        int same = 1;
        for (int i = 0; i < gkd_model_num_tensors(base); i++) {
            const gkd_tensor_info *bt = gkd_model_tensor(base, i);
            int j = gkd_model_tensor_find(m, bt->name);
            if (j < 0 || memcmp(gkd_model_params(m) + gkd_model_tensor(m, j)->offset, gkd_model_params(base) + bt->offset,
                                bt->numel * sizeof(float)) != 0) {
                fprintf(stderr, "tensor %s not copied\n", bt->name);
                same = 0;
            }
        }
        CHECK(same);
        gkd_reward_model_train_config tc = gkd_reward_model_train_config_default();
        tc.steps = 60;
        tc.batch = 16;
        tc.lr = 1e-3f;
        tc.token_loss_weight = 0;
        double loss0 = 0, loss = 0;
        CHECK(gkd_reward_model_evaluate(rm, tp, NULL, &loss0) == GKD_OK);
        CHECKF(gkd_reward_model_train(rm, &tc, tp, NULL) == GKD_OK, "%s", gkd_error_message());
        CHECK(gkd_reward_model_evaluate(rm, tp, NULL, &loss) == GKD_OK);
        fprintf(stderr, "started from a base model: training pair loss %.4f -> %.4f\n", loss0, loss);
        CHECKF(loss < loss0 - 0.01, "training from the base did not lower the loss (%.4f -> %.4f)", loss0, loss);
        char out[] = "/tmp/gkd-pref-init-XXXXXX";
        CHECK(mkdtemp(out) != NULL);
        CHECK(gkd_reward_model_save(rm, out) == GKD_OK);
        gkd_reward_model *back = NULL;
        CHECKF(gkd_reward_model_load(out, gkd_backend_cpu(), &back) == GKD_OK, "%s", gkd_error_message());
        double a1 = -1, a2 = -2;
        CHECK(back && gkd_reward_model_evaluate(rm, hp, &a1, NULL) == GKD_OK &&
              gkd_reward_model_evaluate(back, hp, &a2, NULL) == GKD_OK && a1 == a2);
        gkd_reward_model_free(back);
        static const char *const files[] = {"model.safetensors", "tokenizer.json"};
        remove_files(out, files, 2);
        gkd_reward_model_free(rm);
    }
    /* Refusals, by name: Hugging Face fixtures made by transformers (tests/fixtures/make_hf_llama_fixtures.py). */
    rm = NULL;
    char untied[1024], tied64[1024];
    snprintf(untied, sizeof untied, "%s/tests/fixtures/hf/gqa-untied", GKD_SOURCE_DIR);
    snprintf(tied64, sizeof tied64, "%s/tests/fixtures/hf/gqa-tied-old-keys", GKD_SOURCE_DIR);
    CHECK(gkd_reward_model_create_from(&mc, untied, tok_path, gkd_backend_cpu(), &rm) == GKD_ERR_ARG);
    CHECKF(strstr(gkd_error_message(), "lm_head.weight") != NULL, "%s", gkd_error_message());
    CHECK(gkd_reward_model_create_from(&mc, tied64, tok_path, gkd_backend_cpu(), &rm) == GKD_ERR_ARG);
    CHECKF(strstr(gkd_error_message(), "not its tokenizer") != NULL, "%s", gkd_error_message());
    CHECK(gkd_reward_model_create_from(&mc, dir, "/nonexistent/tokenizer.json", gkd_backend_cpu(), &rm) != GKD_OK);
    CHECKF(strstr(gkd_error_message(), "/nonexistent/tokenizer.json") != NULL, "%s", gkd_error_message());
    CHECK(rm == NULL);
    static const char *const files[] = {"model.safetensors", "config.json", "tokenizer.json"};
    remove_files(dir, files, 3);
    gkd_model_free(base);
    gkd_tokenizer_free(tok);
}

int main(void) {
    test_bt_loss();
    test_read();
    gkd_reward_model_pairs tp = read_pairs("preference-train.jsonl"),
                           hp = read_pairs("preference-heldout.jsonl");
    CHECK(tp.n == 800 && hp.n == 244);
    if (tp.n > 40 && hp.n > 0) {
        test_objective(&tp);
        test_train(&tp, &hp);
        test_init_from_model(&tp, &hp);
    }
    gkd_reward_model_pairs_free(&tp);
    gkd_reward_model_pairs_free(&hp);
    return check_exit();
}
