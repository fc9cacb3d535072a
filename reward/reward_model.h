/* A learned reward model for factual consistency: gkd's transformer with a scalar head, trained on
 * (source, summary, label) pairs where the negatives are real summaries with one word swapped for one
 * the source does not contain, and used as a reward like any other (score = P(consistent)).
 * A second kind, the preference model (config.preference = 1, "Preference models" below), is the same
 * transformer and head trained with a Bradley-Terry loss on (prompt, chosen, rejected) pairs; it scores
 * the reward z itself.
 * Rules:
 * - The model reads "<bos> source <sep> summary <cls>" after gkd_reward_model_normalize(); the source
 *   loses its end when the row is too long, the summary is kept whole up to max_summary_tokens.
 * - The head reads every summary position and <cls>: position t scores s_t = h_t . (w + E[x_t]), with
 *   h_t the final hidden state, w = E[<|consistent|>] - E[<|corrupted|>] the scalar head (two reserved
 *   rows of the tied output matrix, so it lives in the model's own parameter block and checkpoint) and
 *   E[x_t] the output row of the token read there. A row's logit is the soft minimum of its positions'
 *   scores, z = -log(mean_t exp(-s_t)): one unsupported word is enough to make a summary inconsistent.
 *   P(consistent) = sigmoid(z). docs/reward-model.md says why the head has this shape.
 * - Training minimises the logistic loss of z against the pair's label, plus token_loss_weight times the
 *   logistic loss of each s_t against "not part of the swapped-in word" where that is known.
 * - Pairs are a deterministic function of (dataset, config); every random draw comes from the seed's
 *   GKD_RNG_STREAM_USER stream. Training is a deterministic function of (model, pairs, config).
 * - A score depends on the other rows of its batch only through float rounding (their padding).
 * - A reward model is not thread-safe: scoring reuses the model's activation buffers. */
#ifndef GKD_REWARD_MODEL_H
#define GKD_REWARD_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "core/tensor/backend.h"
#include "core/text/data.h"
#include "core/base/error.h"
#include "core/tensor/model.h"
#include "reward/reward.h"

/* ---- Pairs: consistent summaries and corrupted copies ---- */

typedef struct {
    char *source;      /* owned: the document (cut after max_source_words words) */
    char *summary;     /* owned */
    int label;         /* 1: consistent (the real summary), 0: corrupted */
    char *original;    /* owned, corrupted pairs only: the summary word that was replaced; else NULL */
    char *replacement; /* owned, corrupted pairs only: the word put in its place; else NULL */
    int example;       /* index of the dataset example the pair comes from */
    /* Preference sets (gkd_reward_model_read_preferences): items 2k and 2k+1 are pair k's chosen (label
     * 1) and rejected (label 0) responses to the same prompt (source); both carry the pair's margin and
     * tie flag. 0 in factual sets. */
    double margin;
    int tie;
} gkd_reward_model_pair;

typedef struct {
    gkd_reward_model_pair *items;
    int n;
} gkd_reward_model_pairs;

typedef struct {
    uint64_t seed;
    int rounds;           /* consistent + corrupted pairs made per usable example, each with a fresh swap */
    int max_source_words; /* the source is cut after this many words (0: whole) before any check */
    /* 1: use only examples whose summary is grounded word for word: every content word of the summary,
     * normalised, is a word of the (cut) source. Then the only difference between the labels is the
     * swap. 0: every example with a content word is used, and its real summary is labelled consistent. */
    int require_grounded;
} gkd_reward_model_pair_config;

/* seed 1, 1 round, 64 source words, grounded summaries only. */
gkd_reward_model_pair_config gkd_reward_model_pair_config_default(void);

/* Makes pairs from the examples of d (source = example.source, summary = example.target). For each usable
 * example and round: the consistent pair, then a corrupted pair in which one content word of the summary
 * (a word that is not a stopword of gkd_factual_score) is replaced by a word of the same kind (a number:
 * has a digit; a name: has a capital past the summary's first letter; else a plain word), drawn by
 * occurrence from the content words of the other examples' summaries, whose normalised form is not a
 * word or word part of the source and which gkd_factual_score finds unsupported by it. An example with
 * no such swap is skipped, labels stay balanced. Caller owns *out (gkd_reward_model_pairs_free). */
gkd_status gkd_reward_model_make_pairs(const gkd_dataset *d, const gkd_reward_model_pair_config *cfg,
                                       gkd_reward_model_pairs *out);
void gkd_reward_model_pairs_free(gkd_reward_model_pairs *p);

/* The text the model reads: the words of `text` (runs of letters and digits joined across an inner
 * '.', '-', '_' or apostrophe, as gkd_factual_score splits them) lowercased, with a trailing "'s" dropped
 * and a plural folded ("libraries" -> "library"), each preceded by one space; punctuation is dropped.
 * *out is malloc'd, NUL-terminated, caller frees; *n_words (may be NULL) receives the word count. */
gkd_status gkd_reward_model_normalize(const char *text, char **out, int *n_words);

/* ---- The model ---- */

typedef struct {
    int vocab_size; /* of the tokenizer trained at create (specials included) */
    int dim, n_layers, n_heads, hidden_dim;
    int max_source_tokens;  /* source tokens kept */
    int max_summary_tokens; /* summary tokens kept */
    uint64_t seed;          /* weight initialisation */
    /* The kind, recorded in the saved settings: 0 factual consistency (logistic loss on each row, scores
     * P(consistent)); 1 preference (Bradley-Terry loss on pairs of rows, scores the reward r = z). */
    int preference;
} gkd_reward_model_config;

/* vocab 8192, dim 64, 2 layers, 4 heads, hidden 172, 96 source and 32 summary tokens, seed 1: the model of
 * docs/reward-model.md. */
gkd_reward_model_config gkd_reward_model_config_default(void);

typedef struct gkd_reward_model gkd_reward_model;

/* A new reward model on backend `be`: a byte-level BPE tokenizer trained on the normalised sources and
 * summaries of `corpus` (use the training pairs) and a freshly initialised transformer. The caller owns
 * *out (gkd_reward_model_free). */
gkd_status gkd_reward_model_create(const gkd_reward_model_config *cfg, const gkd_reward_model_pairs *corpus,
                                   const gkd_backend *be, gkd_reward_model **out);
/* A new reward model that starts from a pretrained transformer: a gkd checkpoint (.safetensors) or a
 * Hugging Face directory at model_path, with its tokenizer.json at tokenizer_path. The tokenizer gains the
 * reward model's special tokens (new ids after its own), the embedding new rows for them (initialised from
 * cfg->seed); every other weight is the base model's. The base must have tied embeddings (the head is two
 * rows of the output matrix) and at least as many embedding rows as its tokenizer has tokens. cfg's
 * max_source_tokens, max_summary_tokens, seed and preference are used; the shape comes from the base.
 * The caller owns *out. */
gkd_status gkd_reward_model_create_from(const gkd_reward_model_config *cfg, const char *model_path,
                                        const char *tokenizer_path, const gkd_backend *be, gkd_reward_model **out);
void gkd_reward_model_free(gkd_reward_model *rm);

/* Training pairs encoded once, with the buffers of batches of B rows: what a training loop takes its
 * gradient steps on (gkd_reward_model_train, rl/reward_model_train.h). Borrows rm and pairs, which must
 * outlive it; the caller frees it with gkd_reward_model_batches_free (NULL is accepted). */
typedef struct gkd_reward_model_batches gkd_reward_model_batches;
gkd_status gkd_reward_model_batches_create(gkd_reward_model *rm, const gkd_reward_model_pairs *pairs, int B,
                                           gkd_reward_model_batches **out);
void gkd_reward_model_batches_free(gkd_reward_model_batches *b);
/* gkd_reward_model_gradients on pairs idx[0..B) of the set (+= into the transformer's gradients); the
 * rows' row losses and correct answers (z >= 0 for a consistent pair) are summed, row by row, into the
 * set's running totals. */
gkd_status gkd_reward_model_batches_gradients(gkd_reward_model_batches *b, const int *idx, float token_loss_weight);
/* The running totals since the last take (the summed row loss, the count of correct rows), reset to 0. */
void gkd_reward_model_batches_take(gkd_reward_model_batches *b, double *loss_sum, double *correct);

/* The transformer inside rm (owned by rm): its parameter and gradient blocks, for custom training loops. */
gkd_model *gkd_reward_model_transformer(gkd_reward_model *rm);
/* Adds (+=) to the transformer's gradients those of the training objective on pairs idx[0..B) of `pairs`:
 * the row loss (logistic on each row's logit, averaged over the rows) plus token_loss_weight times the
 * token loss; *objective (may be NULL) receives its value. The step gkd_reward_model_train takes, minus
 * the update; for custom loops and gradient checks. */
gkd_status gkd_reward_model_gradients(gkd_reward_model *rm, const gkd_reward_model_pairs *pairs,
                                      const int *idx, int B, float token_loss_weight, double *objective);

/* ---- Preference models (Bradley-Terry) ----
 * A preference model is the same transformer and head with config.preference = 1: row z_b is the reward of
 * a response (summary) to a prompt (source), and training minimises, per pair with d = r_chosen - r_rejected,
 *     -log sigmoid(d - margin)                               (a strict pair)
 *     -(log sigmoid(d) + log sigmoid(-d)) / 2                (a tie: minimal at d = 0)
 * averaged over the batch's pairs. In such a model the batch indices of gkd_reward_model_gradients and
 * gkd_reward_model_batches_gradients are pair indices (k: items 2k and 2k+1), evaluation's accuracy is the
 * share of non-tie pairs with d > 0 and its loss the mean pair loss. */

/* The pair loss above at d; *grad (may be NULL) receives dloss/dd. */
double gkd_reward_model_bt_loss(double d, double margin, int tie, double *grad);

/* Reads preference pairs from JSONL: one object a line with string fields "prompt", "chosen", "rejected",
 * optional number "margin" (default 0) and boolean "tie" (default false); blank lines are skipped. An
 * error names the file and line. *out holds 2 items a pair (see gkd_reward_model_pair). */
gkd_status gkd_reward_model_read_preferences(const char *path, gkd_reward_model_pairs *out);

/* P(consistent) of summaries[i] given sources[i] (a preference model: the reward z), for i < n, into
 * probs[0..n). */
gkd_status gkd_reward_model_score(gkd_reward_model *rm, const char *const *sources,
                                  const char *const *summaries, int n, double *probs);
/* Accuracy (P >= 0.5 means consistent) and mean logistic loss over pairs; either output may be NULL. */
gkd_status gkd_reward_model_evaluate(gkd_reward_model *rm, const gkd_reward_model_pairs *pairs,
                                     double *accuracy, double *loss);

/* Writes dir/model.safetensors (the transformer, the head included, with the reward model's settings in
 * the metadata key "gkd_reward_model") and dir/tokenizer.json; creates dir. */
gkd_status gkd_reward_model_save(gkd_reward_model *rm, const char *dir);
/* Reads what gkd_reward_model_save wrote. The caller owns *out. */
gkd_status gkd_reward_model_load(const char *dir, const gkd_backend *be, gkd_reward_model **out);

const gkd_reward_model_config *gkd_reward_model_get_config(const gkd_reward_model *rm);

/* A reward named "reward_model" scoring each sample's output against its source with
 * gkd_reward_model_score (a sample without a source is an error). take_ownership: 1 makes the reward free
 * rm with itself; 0 borrows it (rm must outlive the reward). The caller owns *out (gkd_reward_free). */
gkd_status gkd_reward_model_as_reward(gkd_reward_model *rm, int take_ownership, gkd_reward **out);

#endif
