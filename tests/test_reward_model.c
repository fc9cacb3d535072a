/* The learned reward model on the committed debdesc sample: the corruption generator (the swapped-in word
 * is absent from the source, one word changes, labels balance, the same seed gives the same pairs), the
 * objective's gradient against finite differences, training that lowers the loss and lifts the accuracy on
 * held-out packages well above chance, save/load giving identical scores, and the reward wrapper agreeing
 * with direct calls.
 * The sample's ~190 grounded summaries are too few to learn from (a model memorises them and stays at
 * chance on new packages), so the training check uses pseudo-summaries instead: a few words of each
 * document's first 12, in order, 24 per document, which gkd_reward_model_make_pairs corrupts as it does
 * real summaries. The >= 85% claim on real summaries of the full data set is
 * tests/test_reward_model_debdesc.c (slow). */
// ctest-labels: cpu
#include "reward/reward_model.h"
#include "rl/reward_model_train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/format/checkpoint.h"
#include "core/text/data.h"
#include "core/tensor/model.h"
#include "reward/metrics.h"
#include "tests/check.h"

static gkd_dataset load_sample(void) {
    gkd_task_spec spec = {"{package}", "summary", "document", 0};
    gkd_dataset d = {0};
    gkd_status st = gkd_dataset_load_jsonl(GKD_SOURCE_DIR "/tests/fixtures/debdesc-sample.jsonl", &spec, &d);
    CHECKF(st == GKD_OK, "%s", gkd_error_message());
    return d;
}

/* 1 when `word` (a normalised key) is one of the normalised words of `text`. */
static int has_word(const char *text, const char *word) {
    char *norm = NULL, *key = NULL;
    gkd_reward_model_normalize(text, &norm, NULL);
    gkd_reward_model_normalize(word, &key, NULL);
    size_t n = strlen(norm);
    char *padded = malloc(n + 2);
    memcpy(padded, norm, n);
    padded[n] = ' ';
    padded[n + 1] = '\0';
    char *k2 = malloc(strlen(key) + 2);
    sprintf(k2, "%s ", key); /* key already starts with a space */
    int found = strstr(padded, k2) != NULL;
    free(norm);
    free(key);
    free(padded);
    free(k2);
    return found;
}

static void test_normalize(void) {
    char *out = NULL;
    int n = 0;
    CHECK(gkd_reward_model_normalize("Perl's libraries (XML) v1.2, for C++ -- GTK3-based tools!", &out, &n) ==
          GKD_OK);
    CHECKF(strcmp(out, " perl library xml v1.2 for c++ gtk3-based tool") == 0, "got \"%s\"", out);
    CHECK(n == 8);
    free(out);
    CHECK(gkd_reward_model_normalize("", &out, &n) == GKD_OK && strcmp(out, "") == 0 && n == 0);
    free(out);
}

static void test_pairs(const gkd_dataset *d) {
    gkd_reward_model_pair_config pc = gkd_reward_model_pair_config_default();
    pc.rounds = 2;
    gkd_reward_model_pairs p = {0}, again = {0}, other = {0}, loose = {0};
    CHECKF(gkd_reward_model_make_pairs(d, &pc, &p) == GKD_OK, "%s", gkd_error_message());
    CHECKF(p.n >= 200 && p.n % 2 == 0, "%d pairs", p.n);
    int n_pos = 0, n_neg = 0, kinds_name = 0, kinds_number = 0;
    for (int i = 0; i < p.n; i++) {
        const gkd_reward_model_pair *x = &p.items[i];
        n_pos += x->label == 1;
        n_neg += x->label == 0;
        int words = 0;
        char *norm = NULL;
        gkd_reward_model_normalize(x->source, &norm, &words);
        free(norm);
        CHECKF(words <= pc.max_source_words, "pair %d: source of %d words", i, words);
        gkd_factual_parts fp;
        gkd_factual_score(x->summary, x->source, NULL, &fp);
        if (i % 2 == 0) {
            /* the consistent pair comes first and is grounded word for word */
            CHECKF(x->label == 1 && !x->original && !x->replacement, "pair %d", i);
            CHECKF(fp.content_precision == 1.0, "pair %d: \"%s\" not grounded", i, x->summary);
            continue;
        }
        const gkd_reward_model_pair *c = &p.items[i - 1];
        CHECKF(x->label == 0 && x->original && x->replacement, "pair %d", i);
        if (!x->original || !x->replacement) continue;
        CHECK(x->example == c->example && strcmp(x->source, c->source) == 0);
        /* the swapped-in word is in no sense in the source */
        gkd_factual_parts rp;
        gkd_factual_score(x->replacement, x->source, NULL, &rp);
        CHECKF(rp.n_content == 1 && rp.n_content_supported == 0, "pair %d: \"%s\" supported by the source", i,
               x->replacement);
        CHECKF(!has_word(x->source, x->replacement), "pair %d: \"%s\" is a word of the source", i,
               x->replacement);
        CHECKF(has_word(c->summary, x->original), "pair %d: \"%s\" not in \"%s\"", i, x->original,
               c->summary);
        CHECKF(fp.content_precision < 1.0, "pair %d: corrupted summary \"%s\" still grounded", i, x->summary);
        /* exactly one word changed: prefix + replacement + suffix of the real summary */
        size_t lc = strlen(c->summary), lx = strlen(x->summary), lo = strlen(x->original),
               lr = strlen(x->replacement);
        CHECKF(lx + lo == lc + lr, "pair %d: \"%s\" vs \"%s\"", i, x->summary, c->summary);
        size_t pre = 0;
        while (pre < lc && pre < lx && c->summary[pre] == x->summary[pre]) pre++;
        int spliced = 0;
        for (size_t at = 0; at <= pre && at + lo <= lc && !spliced; at++)
            spliced = strncmp(c->summary + at, x->original, lo) == 0 &&
                      strncmp(x->summary + at, x->replacement, lr) == 0 &&
                      strcmp(c->summary + at + lo, x->summary + at + lr) == 0 &&
                      strncmp(c->summary, x->summary, at) == 0;
        CHECKF(spliced, "pair %d: \"%s\" is not \"%s\" with %s -> %s", i, x->summary, c->summary, x->original,
               x->replacement);
        for (const char *s = x->replacement; *s; s++) kinds_number += *s >= '0' && *s <= '9';
        for (const char *s = x->replacement + 1; *s; s++) kinds_name += *s >= 'A' && *s <= 'Z';
    }
    CHECKF(n_pos == n_neg, "%d consistent vs %d corrupted", n_pos, n_neg);
    CHECK(kinds_name > 0 && kinds_number > 0); /* names and numbers are swapped too, not only plain words */

    /* deterministic in the seed; another seed swaps other words */
    CHECK(gkd_reward_model_make_pairs(d, &pc, &again) == GKD_OK);
    int same = again.n == p.n;
    for (int i = 0; same && i < p.n; i++)
        same = strcmp(p.items[i].summary, again.items[i].summary) == 0 &&
               strcmp(p.items[i].source, again.items[i].source) == 0;
    CHECK(same);
    pc.seed = 2;
    CHECK(gkd_reward_model_make_pairs(d, &pc, &other) == GKD_OK);
    int differ = 0;
    for (int i = 0; i < p.n && i < other.n; i++)
        differ += strcmp(p.items[i].summary, other.items[i].summary) != 0;
    CHECKF(differ > p.n / 4, "%d of %d pairs differ with another seed", differ, p.n);

    /* without the grounding filter every example with a content word is used */
    pc.require_grounded = 0;
    CHECK(gkd_reward_model_make_pairs(d, &pc, &loose) == GKD_OK);
    CHECKF(loose.n > 2 * p.n, "%d loose vs %d grounded pairs", loose.n, p.n);

    pc.rounds = 0;
    gkd_reward_model_pairs bad = {0};
    CHECK(gkd_reward_model_make_pairs(d, &pc, &bad) == GKD_ERR_ARG && bad.n == 0);
    gkd_reward_model_pairs_free(&p);
    gkd_reward_model_pairs_free(&again);
    gkd_reward_model_pairs_free(&other);
    gkd_reward_model_pairs_free(&loose);
}

/* The objective's gradient against central differences, on parameters the head touches directly (its two
 * rows, a summary token's row) and inside the transformer. */
static void test_gradients(const gkd_reward_model_pairs *p) {
    gkd_reward_model_config mc = gkd_reward_model_config_default();
    mc.vocab_size = 400;
    mc.dim = 16;
    mc.n_heads = 2;
    mc.hidden_dim = 32;
    gkd_reward_model *rm = NULL;
    CHECKF(gkd_reward_model_create(&mc, p, gkd_backend_cpu(), &rm) == GKD_OK, "%s", gkd_error_message());
    if (!rm) return;
    gkd_model *m = gkd_reward_model_transformer(rm);
    float *params = gkd_model_params(m), *grads = gkd_model_grads(m);
    size_t np = gkd_model_num_params(m);
    gkd_rng rng; /* weights far from the init's near-symmetry, so every path carries gradient */
    gkd_rng_init(&rng, 7, GKD_RNG_STREAM_USER);
    for (size_t i = 0; i < np; i++) params[i] += 0.1f * gkd_rng_normal(&rng);
    const int idx[4] = {0, 1, 6, 7};
    double f0;
    gkd_model_zero_grad(m);
    CHECKF(gkd_reward_model_gradients(rm, p, idx, 4, 0.5f, &f0) == GKD_OK, "%s", gkd_error_message());
    const gkd_tensor_info *emb = gkd_model_tensor(m, gkd_model_tensor_find(m, "model.embed_tokens.weight"));
    const gkd_tensor_info *q =
        gkd_model_tensor(m, gkd_model_tensor_find(m, "model.layers.1.self_attn.q_proj.weight"));
    const gkd_tensor_info *up =
        gkd_model_tensor(m, gkd_model_tensor_find(m, "model.layers.0.mlp.up_proj.weight"));
    CHECK(emb && q && up);
    if (!emb || !q || !up) {
        gkd_reward_model_free(rm);
        return;
    }
    /* the three largest-gradient entries of each tensor: central differences in float resolve them well */
    const gkd_tensor_info *tensors[3] = {emb, q, up};
    size_t at[9];
    double analytic[9];
    for (int k = 0; k < 3; k++) {
        for (int pick = 0; pick < 3; pick++) {
            size_t best = 0;
            double best_g = -1;
            for (size_t i = tensors[k]->offset; i < tensors[k]->offset + tensors[k]->numel; i++) {
                int taken = 0;
                for (int j = 0; j < pick; j++) taken |= at[3 * k + j] == i;
                if (!taken && fabsf(grads[i]) > best_g) {
                    best = i;
                    best_g = fabsf(grads[i]);
                }
            }
            at[3 * k + pick] = best;
            analytic[3 * k + pick] = grads[best];
        }
    }
    int checked = 0;
    for (int j = 0; j < 9; j++) {
        const float h = 1e-2f, orig = params[at[j]];
        double plus, minus;
        params[at[j]] = orig + h;
        gkd_reward_model_gradients(rm, p, idx, 4, 0.5f, &plus);
        params[at[j]] = orig - h;
        gkd_reward_model_gradients(rm, p, idx, 4, 0.5f, &minus);
        params[at[j]] = orig;
        double numeric = (plus - minus) / (2.0 * h);
        /* float forward passes: 2% of the gradient, or 2e-4 absolute for small ones */
        CHECKF(fabs(numeric - analytic[j]) <= 0.02 * fabs(analytic[j]) + 2e-4,
               "%s[%zu]: analytic %g, numeric %g", tensors[j / 3]->name, at[j] - tensors[j / 3]->offset,
               analytic[j], numeric);
        checked += analytic[j] != 0;
    }
    CHECK(checked == 9);
    gkd_reward_model_free(rm);
}

/* Pseudo-summaries of d's documents: per_doc times, 3 to 6 words of the first max_words words of the
 * document, in their order; the source is those max_words words. */
static gkd_dataset pseudo_summaries(const gkd_dataset *d, int per_doc, int max_words, uint64_t seed) {
    gkd_dataset out = {calloc((size_t)d->n * per_doc + 1, sizeof(gkd_example)), 0, {0}};
    gkd_rng rng;
    gkd_rng_init(&rng, seed, GKD_RNG_STREAM_USER);
    for (int e = 0; e < d->n; e++) {
        char *doc = strdup(d->items[e].source), *words[64], *save = NULL;
        int n = 0;
        for (char *t = strtok_r(doc, " ", &save); t && n < max_words && n < 64;
             t = strtok_r(NULL, " ", &save))
            words[n++] = t;
        size_t src_len = 0;
        for (int i = 0; i < n; i++) src_len += strlen(words[i]) + 1;
        char *src = calloc(src_len + 1, 1);
        for (int i = 0; i < n; i++) {
            if (i) strcat(src, " ");
            strcat(src, words[i]);
        }
        for (int k = 0; k < per_doc && n >= 6; k++) {
            int len = 3 + (int)gkd_rng_below(&rng, 4), at = 0;
            char *tgt = calloc(src_len + 1, 1);
            for (int j = 0; j < len && at < n; j++, at++) {
                int room = (n - at) / (len - j);
                at += room > 1 ? (int)gkd_rng_below(&rng, (uint32_t)room) : 0;
                if (at >= n) break;
                if (j) strcat(tgt, " ");
                strcat(tgt, words[at]);
            }
            out.items[out.n++] = (gkd_example){strdup(src), strdup(""), tgt, 0};
        }
        free(src);
        free(doc);
    }
    return out;
}

typedef struct {
    double first_loss, last_loss;
    int reports;
} train_log;

static void on_progress(void *user, const gkd_reward_model_progress *pr) {
    train_log *log = user;
    if (log->reports++ == 0) log->first_loss = pr->loss;
    log->last_loss = pr->loss;
    fprintf(stderr, "step %lld: loss %.4f, accuracy %.3f, held-out accuracy %.3f\n", (long long)pr->step,
            pr->loss, pr->accuracy, pr->eval_accuracy);
}

int main(void) {
    test_normalize();
    gkd_dataset d = load_sample(), train = {0}, held = {0};
    if (d.n == 0) return check_exit();
    test_pairs(&d);

    CHECK(gkd_dataset_split(&d, 0.25, 1, &train, &held) == GKD_OK);
    gkd_reward_model_pair_config pc = gkd_reward_model_pair_config_default();
    pc.rounds = 4;
    gkd_reward_model_pairs real = {0}, tp = {0}, hp = {0};
    CHECK(gkd_reward_model_make_pairs(&train, &pc, &real) == GKD_OK);
    test_gradients(&real);
    gkd_reward_model_pairs_free(&real);

    enum { WORDS = 12 };
    gkd_dataset ptrain = pseudo_summaries(&train, 24, WORDS, 1), pheld = pseudo_summaries(&held, 4, WORDS, 2);
    pc = gkd_reward_model_pair_config_default();
    pc.max_source_words = WORDS;
    CHECK(gkd_reward_model_make_pairs(&ptrain, &pc, &tp) == GKD_OK);
    pc.seed = 2;
    CHECK(gkd_reward_model_make_pairs(&pheld, &pc, &hp) == GKD_OK);
    fprintf(stderr, "%d training pairs, %d held-out pairs\n", tp.n, hp.n);
    CHECK(tp.n > 10000 && hp.n > 500);

    gkd_reward_model_config mc = gkd_reward_model_config_default();
    mc.vocab_size = 2048;
    mc.dim = 64;
    mc.hidden_dim = 172;
    mc.max_source_tokens = 24;
    mc.max_summary_tokens = 16;
    gkd_reward_model *rm = NULL;
    CHECKF(gkd_reward_model_create(&mc, &tp, gkd_backend_cpu(), &rm) == GKD_OK, "%s", gkd_error_message());
    if (!rm) return check_exit();
    double acc0 = 0, loss0 = 0;
    CHECK(gkd_reward_model_evaluate(rm, &hp, &acc0, &loss0) == GKD_OK);
    gkd_reward_model_train_config tc = gkd_reward_model_train_config_default();
    tc.steps = 1500;
    tc.report_every = 100;
    tc.eval = &hp;
    tc.eval_every = 500;
    train_log log = {0};
    tc.progress = on_progress;
    tc.user = &log;
    gkd_reward_model_progress last;
    CHECKF(gkd_reward_model_train(rm, &tc, &tp, &last) == GKD_OK, "%s", gkd_error_message());
    double acc = 0, loss = 0;
    CHECK(gkd_reward_model_evaluate(rm, &hp, &acc, &loss) == GKD_OK);
    fprintf(stderr, "held-out packages: accuracy %.3f -> %.3f, loss %.4f -> %.4f\n", acc0, acc, loss0, loss);
    CHECK(log.reports == 15 && last.step == 1500);
    CHECKF(log.last_loss < 0.7 * log.first_loss, "training loss %.4f -> %.4f", log.first_loss, log.last_loss);
    CHECKF(acc == last.eval_accuracy, "%g vs %g", acc, last.eval_accuracy);
    /* measured 0.77 (chance 0.5); a model that only memorised its training pairs stays near 0.5 */
    CHECKF(acc >= 0.65, "held-out accuracy %.3f: want >= 0.65", acc);

    /* save -> load scores the same, bit for bit; the reward wrapper returns what direct calls do */
    enum { N = 6 };
    const char *src[N], *sum[N];
    for (int i = 0; i < N; i++) {
        src[i] = hp.items[i].source;
        sum[i] = hp.items[i].summary;
    }
    double direct[N], reloaded[N], wrapped[N];
    CHECK(gkd_reward_model_score(rm, src, sum, N, direct) == GKD_OK);
    const char *dir = "reward_model_test.d";
    CHECKF(gkd_reward_model_save(rm, dir) == GKD_OK, "%s", gkd_error_message());
    gkd_reward_model *back = NULL;
    CHECKF(gkd_reward_model_load(dir, gkd_backend_cpu(), &back) == GKD_OK, "%s", gkd_error_message());
    if (back) {
        CHECK(gkd_reward_model_score(back, src, sum, N, reloaded) == GKD_OK);
        for (int i = 0; i < N; i++)
            CHECKF(reloaded[i] == direct[i], "%d: %.17g vs %.17g", i, reloaded[i], direct[i]);
        const gkd_reward_model_config *a = gkd_reward_model_get_config(back),
                                      *b = gkd_reward_model_get_config(rm);
        CHECK(a->vocab_size == b->vocab_size && a->dim == b->dim && a->n_layers == b->n_layers &&
              a->n_heads == b->n_heads && a->hidden_dim == b->hidden_dim &&
              a->max_source_tokens == b->max_source_tokens &&
              a->max_summary_tokens == b->max_summary_tokens && a->seed == b->seed);
    }
    gkd_reward *r = NULL;
    CHECK(gkd_reward_model_as_reward(back, 1, &r) == GKD_OK);
    gkd_reward_sample samples[N];
    for (int i = 0; i < N; i++) samples[i] = (gkd_reward_sample){src[i], "prompt", sum[i], ""};
    CHECK(r && gkd_reward_score(r, samples, N, wrapped) == GKD_OK);
    for (int i = 0; i < N; i++)
        CHECKF(wrapped[i] == direct[i], "%d: %.17g vs %.17g", i, wrapped[i], direct[i]);
    CHECK(r && strcmp(r->name, "reward_model") == 0);
    samples[2].source = NULL;
    CHECK(r && gkd_reward_score(r, samples, N, wrapped) == GKD_ERR_ARG);
    CHECK(strstr(gkd_error_message(), "sample 2") != NULL);
    gkd_reward_free(r); /* frees `back` too */
    gkd_reward *borrowed = NULL;
    CHECK(gkd_reward_model_as_reward(rm, 0, &borrowed) == GKD_OK);
    gkd_reward_free(borrowed);
    /* alone in its batch a row is padded differently: the same score up to float rounding */
    CHECK(gkd_reward_model_score(rm, src, sum, 1, wrapped) == GKD_OK);
    CHECKF(fabs(wrapped[0] - direct[0]) < 1e-5, "%.17g vs %.17g", wrapped[0], direct[0]);

    /* the scores are probabilities, and higher for the consistent held-out pairs */
    const char **all_src = malloc((size_t)hp.n * sizeof *all_src),
               **all_sum = malloc((size_t)hp.n * sizeof *all_sum);
    double *all = malloc((size_t)hp.n * sizeof *all), mean[2] = {0, 0};
    for (int i = 0; i < hp.n; i++) {
        all_src[i] = hp.items[i].source;
        all_sum[i] = hp.items[i].summary;
    }
    CHECK(gkd_reward_model_score(rm, all_src, all_sum, hp.n, all) == GKD_OK);
    int in_range = 1;
    for (int i = 0; i < hp.n; i++) {
        in_range &= all[i] > 0 && all[i] < 1;
        mean[hp.items[i].label] += all[i] / (hp.n / 2);
    }
    CHECK(in_range);
    CHECKF(mean[1] > mean[0] + 0.1, "mean P(consistent): %.3f (consistent) vs %.3f (corrupted)", mean[1],
           mean[0]);
    free(all_src);
    free(all_sum);
    free(all);

    /* errors name what is wrong */
    gkd_reward_model *none = NULL;
    CHECK(gkd_reward_model_load("no-such-reward-model.d", gkd_backend_cpu(), &none) == GKD_ERR_IO && !none);
    CHECK(gkd_checkpoint_save_model(gkd_reward_model_transformer(rm), "reward_model_test.d/model.safetensors",
                                    NULL, NULL, 0) == GKD_OK);
    CHECK(gkd_reward_model_load(dir, gkd_backend_cpu(), &none) == GKD_ERR_FORMAT && !none);
    CHECK(strstr(gkd_error_message(), "gkd_reward_model") != NULL);
    const char *one_src[1] = {NULL}, *one_sum[1] = {"x"};
    CHECK(gkd_reward_model_score(rm, one_src, one_sum, 1, wrapped) == GKD_ERR_ARG);
    remove("reward_model_test.d/model.safetensors");
    remove("reward_model_test.d/tokenizer.json");
    remove(dir);

    gkd_reward_model_free(rm);
    gkd_reward_model_free(NULL);
    gkd_reward_model_pairs_free(&tp);
    gkd_reward_model_pairs_free(&hp);
    gkd_dataset_free(&ptrain);
    gkd_dataset_free(&pheld);
    gkd_dataset_free(&train);
    gkd_dataset_free(&held);
    gkd_dataset_free(&d);
    return check_exit();
}
