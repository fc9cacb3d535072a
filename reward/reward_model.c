/* A learned factual-consistency reward: the transformer with its head, its gradients on batches of pairs
 * (the training loop is rl/reward_model_train.c's; the pairs and the text normalisation are
 * reward_model_pairs.c's), scoring, files, and the reward wrapper (see reward_model.h).
 * Rules: the head's gradient enters the model as dL/dhidden at the
 * positions it reads and as += on the output-matrix rows it uses (the two head rows and the tokens'). */
#include "reward/reward_model.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/format/checkpoint.h"
#include "reward/text.h"
#include "core/base/json.h"
#include "core/tensor/model.h"
#include "core/format/safetensors.h"
#include "core/text/tokenizer.h"

/* ---------- the model ---------- */

static const char *const specials[] = {"<|endoftext|>", "<|pad|>",        "<|startoftext|>", "<|sep|>",
                                       "<|cls|>",       "<|consistent|>", "<|corrupted|>"};
enum { SPECIAL_EOS, SPECIAL_PAD, SPECIAL_BOS, SPECIAL_SEP, SPECIAL_CLS, SPECIAL_YES, SPECIAL_NO, N_SPECIALS };

struct gkd_reward_model {
    gkd_reward_model_config cfg;
    gkd_tokenizer *tok;
    gkd_model *m;
    int id[N_SPECIALS];
    int max_len;    /* bos + source + sep + summary + cls */
    int max_pool;   /* summary + cls: the positions the head reads in one row */
    float *dhidden; /* device, (cap_dhidden) */
    size_t cap_dhidden;
    float *h;  /* host (cap_rows, C): hidden states of the positions the head reads */
    float *dh; /* host (cap_rows, C): their gradients */
    float *e;  /* host (cap_rows, C): output-matrix rows of the tokens the head reads */
    double *s; /* host (cap_rows): their head logits */
    int cap_rows;
};

gkd_reward_model_config gkd_reward_model_config_default(void) {
    return (gkd_reward_model_config){.vocab_size = 8192,
                                     .dim = 64,
                                     .n_layers = 2,
                                     .n_heads = 4,
                                     .hidden_dim = 172,
                                     .max_source_tokens = 96,
                                     .max_summary_tokens = 32,
                                     .seed = 1};
}

const gkd_reward_model_config *gkd_reward_model_get_config(const gkd_reward_model *rm) {
    return &rm->cfg;
}

void gkd_reward_model_free(gkd_reward_model *rm) {
    if (!rm) return;
    if (rm->m && rm->dhidden) gkd_model_backend(rm->m)->free(rm->dhidden);
    gkd_model_free(rm->m);
    gkd_tokenizer_free(rm->tok);
    free(rm->h);
    free(rm->dh);
    free(rm->s);
    free(rm->e);
    free(rm);
}

static gkd_status find_specials(gkd_reward_model *rm) {
    for (int i = 0; i < N_SPECIALS; i++) {
        rm->id[i] = gkd_tokenizer_token_id(rm->tok, specials[i]);
        if (rm->id[i] < 0)
            return gkd_error_set(GKD_ERR_FORMAT, "reward model: tokenizer lacks \"%s\"", specials[i]);
    }
    return GKD_OK;
}

static void set_lengths(gkd_reward_model *rm) {
    rm->max_pool = rm->cfg.max_summary_tokens + 1;
    rm->max_len = rm->cfg.max_source_tokens + rm->max_pool + 2;
}

static gkd_model_config model_config(const gkd_reward_model_config *c, int vocab) {
    return (gkd_model_config){.vocab_size = vocab,
                              .dim = c->dim,
                              .n_layers = c->n_layers,
                              .n_heads = c->n_heads,
                              .n_kv_heads = c->n_heads,
                              .hidden_dim = c->hidden_dim,
                              .max_seq_len = c->max_source_tokens + c->max_summary_tokens + 3,
                              .rope_theta = 10000.0f,
                              .norm_eps = 1e-5f,
                              .tied_embeddings = 1};
}

static gkd_status check_config(const gkd_reward_model_config *c) {
    if (c->max_source_tokens < 1 || c->max_summary_tokens < 1)
        return gkd_error_set(GKD_ERR_ARG,
                             "reward model: max_source_tokens and max_summary_tokens must be >= 1");
    if (c->vocab_size < 256 + N_SPECIALS)
        return gkd_error_set(GKD_ERR_ARG, "reward model: vocab_size = %d must be >= %d", c->vocab_size,
                             256 + N_SPECIALS);
    return GKD_OK;
}

gkd_status gkd_reward_model_create(const gkd_reward_model_config *cfg, const gkd_reward_model_pairs *corpus,
                                   const gkd_backend *be, gkd_reward_model **out) {
    *out = NULL;
    if (!cfg || !corpus || !be) return gkd_error_set(GKD_ERR_ARG, "reward model create: NULL argument");
    gkd_status st = check_config(cfg);
    if (st != GKD_OK) return st;
    gkd_reward_model *rm = calloc(1, sizeof *rm);
    char **texts = calloc((size_t)2 * corpus->n + 1, sizeof *texts);
    if (!rm || !texts) {
        free(rm);
        free(texts);
        return gkd_error_set(GKD_ERR_NOMEM, "reward model create: out of memory");
    }
    rm->cfg = *cfg;
    int n_texts = 0;
    for (int i = 0; i < corpus->n && st == GKD_OK; i++) {
        const gkd_reward_model_pair *p = &corpus->items[i];
        if (i == 0 || p->example != corpus->items[i - 1].example ||
            strcmp(p->source, corpus->items[i - 1].source))
            st = gkd_reward_model_normalize(p->source, &texts[n_texts++], NULL);
        if (st == GKD_OK) st = gkd_reward_model_normalize(p->summary, &texts[n_texts++], NULL);
    }
    if (st == GKD_OK)
        st = gkd_tokenizer_train((const char *const *)texts, n_texts, cfg->vocab_size, specials, N_SPECIALS,
                                 &rm->tok);
    for (int i = 0; i < n_texts; i++) free(texts[i]);
    free(texts);
    if (st == GKD_OK) st = find_specials(rm);
    gkd_model_config mc = model_config(cfg, rm->tok ? gkd_tokenizer_vocab_size(rm->tok) : 0);
    if (st == GKD_OK) st = gkd_model_create(&mc, be, &rm->m);
    if (st != GKD_OK) {
        gkd_reward_model_free(rm);
        return gkd_error_prefix(st, "reward model create");
    }
    rm->cfg.vocab_size = mc.vocab_size;
    set_lengths(rm);
    gkd_model_init_weights(rm->m, cfg->seed);
    *out = rm;
    return GKD_OK;
}

/* Copies every tensor of base into the same-named tensor of m; the embedding (V_base, C) into the first
 * V_base rows of m's (V, C). Any other difference in shape is an error. */
static gkd_status copy_base_weights(gkd_model *m, gkd_model *base, const char *path) {
    const gkd_backend *be = gkd_model_backend(m);
    int n = gkd_model_num_tensors(base);
    for (int i = 0; i < n; i++) {
        const gkd_tensor_info *bt = gkd_model_tensor(base, i);
        int j = gkd_model_tensor_find(m, bt->name);
        const gkd_tensor_info *mt = j >= 0 ? gkd_model_tensor(m, j) : NULL;
        int rows_prefix = mt && bt->ndim == 2 && mt->ndim == 2 && bt->shape[1] == mt->shape[1] &&
                          bt->shape[0] <= mt->shape[0] && strstr(bt->name, "embed_tokens") != NULL;
        if (!mt || (mt->numel != bt->numel && !rows_prefix))
            return gkd_error_set(GKD_ERR_FORMAT, "%s: tensor %s has no place in the reward model", path, bt->name);
        be->copy(gkd_model_params(m) + mt->offset, gkd_model_params(base) + bt->offset, bt->numel * sizeof(float));
    }
    return GKD_OK;
}

gkd_status gkd_reward_model_create_from(const gkd_reward_model_config *cfg, const char *model_path,
                                        const char *tokenizer_path, const gkd_backend *be, gkd_reward_model **out) {
    *out = NULL;
    if (!cfg || !model_path || !tokenizer_path || !be)
        return gkd_error_set(GKD_ERR_ARG, "reward model from a model: NULL argument");
    if (cfg->max_source_tokens < 1 || cfg->max_summary_tokens < 1)
        return gkd_error_set(GKD_ERR_ARG, "reward model: max_source_tokens and max_summary_tokens must be >= 1");
    gkd_reward_model *rm = calloc(1, sizeof *rm);
    if (!rm) return gkd_error_set(GKD_ERR_NOMEM, "out of memory");
    rm->cfg = *cfg;
    set_lengths(rm);
    gkd_model_config bc;
    gkd_model *base = NULL;
    gkd_status st = gkd_checkpoint_read_config(model_path, &bc);
    if (st == GKD_OK && !bc.tied_embeddings)
        st = gkd_error_set(GKD_ERR_ARG, "%s has a separate output matrix (lm_head.weight): the reward model's head "
                           "is built from tied embeddings, so only a model with tied embeddings can start it",
                           model_path);
    if (st == GKD_OK) st = gkd_tokenizer_load(tokenizer_path, &rm->tok);
    int base_tokens = rm->tok ? gkd_tokenizer_vocab_size(rm->tok) : 0;
    if (st == GKD_OK && base_tokens > bc.vocab_size)
        st = gkd_error_set(GKD_ERR_ARG, "%s has %d tokens but the model %s only %d embedding rows: not its tokenizer",
                           tokenizer_path, base_tokens, model_path, bc.vocab_size);
    if (st == GKD_OK) st = gkd_tokenizer_add_specials(rm->tok, specials, N_SPECIALS);
    if (st == GKD_OK) st = find_specials(rm);
    if (st == GKD_OK) st = gkd_checkpoint_load_model_ex(model_path, be, GKD_MODEL_INFERENCE, &base);
    gkd_model_config mc = bc;
    int tokens = rm->tok ? gkd_tokenizer_vocab_size(rm->tok) : 0;
    mc.vocab_size = tokens > bc.vocab_size ? tokens : bc.vocab_size;
    if (mc.max_seq_len < rm->max_len) mc.max_seq_len = rm->max_len;
    if (st == GKD_OK) st = gkd_model_create(&mc, be, &rm->m);
    if (st == GKD_OK) {
        gkd_model_init_weights(rm->m, cfg->seed); /* the new rows (the specials past the base's) */
        st = copy_base_weights(rm->m, base, model_path);
    }
    gkd_model_free(base);
    if (st != GKD_OK) {
        gkd_reward_model_free(rm);
        return gkd_error_prefix(st, "reward model from %s", model_path);
    }
    rm->cfg.vocab_size = mc.vocab_size;
    rm->cfg.dim = mc.dim;
    rm->cfg.n_layers = mc.n_layers;
    rm->cfg.n_heads = mc.n_heads;
    rm->cfg.hidden_dim = mc.hidden_dim;
    *out = rm;
    return GKD_OK;
}

/* Rows "<bos> source <sep> summary <cls>" tokenised once: row i is ids[off[i] .. off[i+1]); the head reads
 * its positions from start[i] on (the summary's and <cls>), whose labels are in label (laid out like ids):
 * 1 supported, 0 the swapped-in word (or the whole row at <cls>), -1 unknown or not read. */
typedef struct {
    int *ids;
    signed char *label;
    int *off;
    int *start;
    int n;
} row_set;

static void row_set_free(row_set *r) {
    free(r->ids);
    free(r->label);
    free(r->off);
    free(r->start);
    *r = (row_set){0};
}

/* Appends the row of (source, summary) at ids/label (max_len slots). pair_label: 1, 0 or -1 (scoring);
 * bad_key: the normalised swapped-in word of a corrupted pair, or NULL when unknown. The summary is
 * encoded one word at a time, which gives the same ids as encoding it whole (every normalised word starts
 * with a space, where the pre-tokenizer always splits) and tells which tokens belong to which word. */
static gkd_status encode_row(const gkd_reward_model *rm, const char *source, const char *summary,
                             int pair_label, const char *bad_key, int *ids, signed char *label, int *len,
                             int *start) {
    char *ns = NULL, *nm = NULL;
    int *src = NULL, n_src = 0;
    gkd_status st = gkd_reward_model_normalize(source, &ns, NULL);
    if (st == GKD_OK) st = gkd_reward_model_normalize(summary, &nm, NULL);
    if (st == GKD_OK) st = gkd_tokenizer_encode(rm->tok, ns, strlen(ns), &src, &n_src);
    if (st != GKD_OK) goto done;
    if (n_src > rm->cfg.max_source_tokens) n_src = rm->cfg.max_source_tokens;
    int k = 0;
    ids[k++] = rm->id[SPECIAL_BOS];
    memcpy(ids + k, src, (size_t)n_src * sizeof *ids);
    k += n_src;
    ids[k++] = rm->id[SPECIAL_SEP];
    for (int i = 0; i < k; i++) label[i] = -1;
    *start = k;
    const int end = k + rm->cfg.max_summary_tokens;
    size_t n = strlen(nm);
    for (size_t i = 0; i < n && k < end && st == GKD_OK;) {
        size_t j = i + 1;
        while (j < n && nm[j] != ' ') j++;
        int *w = NULL, nw = 0;
        st = gkd_tokenizer_encode(rm->tok, nm + i, j - i, &w, &nw);
        int bad = bad_key && strlen(bad_key) == j - i - 1 && memcmp(bad_key, nm + i + 1, j - i - 1) == 0;
        signed char lab = pair_label < 0 || (pair_label == 0 && !bad_key) ? -1 : bad ? 0 : 1;
        for (int t = 0; st == GKD_OK && t < nw && k < end; t++, k++) {
            ids[k] = w[t];
            label[k] = lab;
        }
        free(w);
        i = j;
    }
    ids[k] = rm->id[SPECIAL_CLS];
    label[k++] = (signed char)pair_label;
    *len = k;
done:
    free(ns);
    free(nm);
    free(src);
    return st;
}

static gkd_status row_set_build(const gkd_reward_model *rm, const char *const *sources,
                                const char *const *summaries, const gkd_reward_model_pair *pairs, int n,
                                row_set *out) {
    *out = (row_set){0};
    size_t cap = (size_t)n * rm->max_len + 1;
    out->ids = malloc(cap * sizeof *out->ids);
    out->label = malloc(cap * sizeof *out->label);
    out->off = malloc(((size_t)n + 1) * sizeof *out->off);
    out->start = malloc(((size_t)n + 1) * sizeof *out->start);
    if (!out->ids || !out->label || !out->off || !out->start) {
        row_set_free(out);
        return gkd_error_set(GKD_ERR_NOMEM, "reward model: rows for %d pairs", n);
    }
    out->off[0] = 0;
    gkd_status st = GKD_OK;
    for (int i = 0; i < n && st == GKD_OK; i++) {
        int len = 0, label = -1;
        char bad_key[256] = "";
        const char *src = sources ? sources[i] : pairs[i].source,
                   *sum = summaries ? summaries[i] : pairs[i].summary;
        if (pairs && !rm->cfg.preference) {
            label = pairs[i].label ? 1 : 0;
            const char *r = pairs[i].replacement;
            if (!pairs[i].label && r && strlen(r) < sizeof bad_key) gkd_word_key(r, strlen(r), bad_key);
        }
        st = encode_row(rm, src, sum, label, pairs && bad_key[0] ? bad_key : NULL, out->ids + out->off[i],
                        out->label + out->off[i], &len, &out->start[i]);
        if (st != GKD_OK) st = gkd_error_prefix(st, "reward model: pair %d", i);
        out->off[i + 1] = out->off[i] + len;
    }
    out->n = n;
    if (st != GKD_OK) row_set_free(out);
    return st;
}

/* Lays rows sel[0..B) out as tokens (B,T) right-padded with <pad>; returns T. */
static int fill_batch(const gkd_reward_model *rm, const row_set *rows, const int *sel, int B, int *tokens) {
    int T = 0;
    for (int b = 0; b < B; b++) {
        int len = rows->off[sel[b] + 1] - rows->off[sel[b]];
        if (len > T) T = len;
    }
    for (int b = 0; b < B; b++) {
        const int *ids = rows->ids + rows->off[sel[b]];
        int len = rows->off[sel[b] + 1] - rows->off[sel[b]];
        for (int t = 0; t < T; t++) tokens[b * T + t] = t < len ? ids[t] : rm->id[SPECIAL_PAD];
    }
    return T;
}

static gkd_status ensure_host_rows(gkd_reward_model *rm, int rows) {
    if (rows <= rm->cap_rows) return GKD_OK;
    const size_t C = (size_t)rm->cfg.dim;
    float *h = realloc(rm->h, (size_t)rows * C * sizeof *h);
    if (h) rm->h = h;
    float *dh = realloc(rm->dh, (size_t)rows * C * sizeof *dh);
    if (dh) rm->dh = dh;
    double *s = realloc(rm->s, (size_t)rows * sizeof *s);
    if (s) rm->s = s;
    float *e = realloc(rm->e, (size_t)rows * C * sizeof *e);
    if (e) rm->e = e;
    if (!h || !dh || !s || !e) return gkd_error_set(GKD_ERR_NOMEM, "reward model: %d hidden rows", rows);
    rm->cap_rows = rows;
    return GKD_OK;
}

/* The head's vector w = W[consistent] - W[corrupted] (C floats, host); tmp: C floats. */
static void head_vector(const gkd_reward_model *rm, float *w, float *tmp) {
    const gkd_backend *be = gkd_model_backend(rm->m);
    const float *W = gkd_model_output_weight(rm->m);
    const int C = rm->cfg.dim;
    be->copy_out(w, W + (size_t)rm->id[SPECIAL_YES] * C, (size_t)C * sizeof *w);
    be->copy_out(tmp, W + (size_t)rm->id[SPECIAL_NO] * C, (size_t)C * sizeof *w);
    for (int c = 0; c < C; c++) w[c] -= tmp[c];
}

/* The head over rows sel[0..B) of a forward: hidden (B,T,C) device. Row b reads its positions start .. len-1
 * (pos[b+1] - pos[b] of them; pos: (B+1)); position t scores
 *     s_t = h_t . (w + E[x_t]),
 * the scalar head plus the model's own output logit for the token it reads (large when the token's
 * occurrences in the source dominate what h_t attended to), and the row's logit is the log-mean-exp soft
 * minimum z_b = -log(mean_t exp(-s_t)). Keeps h_t in rm->h, E[x_t] in rm->e and s_t in rm->s from row
 * pos[b]. */
static void head_forward(gkd_reward_model *rm, const float *hidden, int B, int T, const row_set *rows,
                         const int *sel, const float *w, int *pos, double *z) {
    const gkd_backend *be = gkd_model_backend(rm->m);
    const float *W = gkd_model_output_weight(rm->m);
    const int C = rm->cfg.dim;
    pos[0] = 0;
    for (int b = 0; b < B; b++) {
        int i = sel[b], start = rows->start[i], n = rows->off[i + 1] - rows->off[i] - start;
        const int *ids = rows->ids + rows->off[i] + start;
        float *h = rm->h + (size_t)pos[b] * C, *e = rm->e + (size_t)pos[b] * C;
        be->copy_out(h, hidden + ((size_t)b * T + start) * C, (size_t)n * C * sizeof *h);
        double lo = INFINITY;
        for (int t = 0; t < n; t++) {
            float *ht = h + (size_t)t * C, *et = e + (size_t)t * C;
            be->copy_out(et, W + (size_t)ids[t] * C, (size_t)C * sizeof *et);
            double s = 0.0;
            for (int c = 0; c < C; c++) s += (double)ht[c] * (w[c] + et[c]);
            rm->s[pos[b] + t] = s;
            if (s < lo) lo = s;
        }
        double sum = 0.0;
        for (int t = 0; t < n; t++) sum += exp(lo - rm->s[pos[b] + t]);
        z[b] = lo - log(sum / n);
        pos[b + 1] = pos[b] + n;
    }
}

/* -log sigmoid(s) for label 1, -log(1 - sigmoid(s)) for label 0, without overflow. */
static double logistic_loss(double s, int label) {
    double x = label ? -s : s;
    return (x > 0 ? x : 0) + log1p(exp(-fabs(x)));
}

static double sigmoid(double s) {
    return s >= 0 ? 1.0 / (1.0 + exp(-s)) : exp(s) / (1.0 + exp(s));
}

enum { SCORE_BATCH = 64 };

/* Row logits of rows[0..n) into z (n). */
static gkd_status rows_logits(gkd_reward_model *rm, const row_set *rows, double *z) {
    const int C = rm->cfg.dim;
    int *tokens = malloc((size_t)SCORE_BATCH * rm->max_len * sizeof *tokens);
    int sel[SCORE_BATCH], pos[SCORE_BATCH + 1];
    float *w = malloc(2 * (size_t)C * sizeof *w);
    gkd_status st = ensure_host_rows(rm, SCORE_BATCH * rm->max_pool);
    if (st == GKD_OK && (!tokens || !w)) st = gkd_error_set(GKD_ERR_NOMEM, "reward model: score buffers");
    if (st == GKD_OK) head_vector(rm, w, w + C);
    for (int i0 = 0; i0 < rows->n && st == GKD_OK; i0 += SCORE_BATCH) {
        int B = rows->n - i0 < SCORE_BATCH ? rows->n - i0 : SCORE_BATCH;
        for (int b = 0; b < B; b++) sel[b] = i0 + b;
        int T = fill_batch(rm, rows, sel, B, tokens);
        const float *hidden;
        st = gkd_model_forward_nograd(rm->m, tokens, B, T, &hidden);
        if (st == GKD_OK) head_forward(rm, hidden, B, T, rows, sel, w, pos, z + i0);
    }
    free(tokens);
    free(w);
    return st;
}

gkd_status gkd_reward_model_score(gkd_reward_model *rm, const char *const *sources,
                                  const char *const *summaries, int n, double *probs) {
    if (!rm || (n > 0 && (!sources || !summaries || !probs)))
        return gkd_error_set(GKD_ERR_ARG, "reward model score: NULL argument");
    for (int i = 0; i < n; i++)
        if (!sources[i] || !summaries[i])
            return gkd_error_set(GKD_ERR_ARG, "reward model score: sample %d has no %s", i,
                                 sources[i] ? "summary" : "source");
    if (n <= 0) return GKD_OK;
    row_set rows;
    gkd_status st = row_set_build(rm, sources, summaries, NULL, n, &rows);
    if (st == GKD_OK) st = rows_logits(rm, &rows, probs);
    for (int i = 0; st == GKD_OK && !rm->cfg.preference && i < n; i++) probs[i] = sigmoid(probs[i]);
    row_set_free(&rows);
    return st;
}

static gkd_status evaluate_rows(gkd_reward_model *rm, const row_set *rows,
                                const gkd_reward_model_pairs *pairs, double *accuracy, double *loss) {
    double *z = malloc(((size_t)rows->n + 1) * sizeof *z);
    if (!z) return gkd_error_set(GKD_ERR_NOMEM, "reward model: logits of %d pairs", rows->n);
    gkd_status st = rows_logits(rm, rows, z);
    double correct = 0, sum = 0, counted = 0;
    int pref = rm->cfg.preference, n = pref ? rows->n / 2 : rows->n;
    for (int i = 0; st == GKD_OK && i < n; i++) {
        if (pref) {
            const gkd_reward_model_pair *p = &pairs->items[2 * i];
            correct += !p->tie && z[2 * i] > z[2 * i + 1];
            counted += !p->tie;
            sum += gkd_reward_model_bt_loss(z[2 * i] - z[2 * i + 1], p->margin, p->tie, NULL);
            continue;
        }
        correct += (z[i] >= 0) == (pairs->items[i].label != 0);
        counted++;
        sum += logistic_loss(z[i], pairs->items[i].label != 0);
    }
    if (accuracy) *accuracy = counted ? correct / counted : NAN;
    if (loss) *loss = n ? sum / n : NAN;
    free(z);
    return st;
}

gkd_status gkd_reward_model_evaluate(gkd_reward_model *rm, const gkd_reward_model_pairs *pairs,
                                     double *accuracy, double *loss) {
    if (!rm || !pairs) return gkd_error_set(GKD_ERR_ARG, "reward model evaluate: NULL argument");
    row_set rows;
    gkd_status st = row_set_build(rm, NULL, NULL, pairs->items, pairs->n, &rows);
    if (st == GKD_OK) st = evaluate_rows(rm, &rows, pairs, accuracy, loss);
    row_set_free(&rows);
    return st;
}

/* ---------- training ---------- */

typedef struct {
    int *sel, *tokens, *pos;
    float *w; /* 3 C: the head vector, scratch, its gradient */
    double *z, *gz; /* (B) the rows' logits and the loss's gradients with respect to them */
    double loss_sum, correct;
} train_scratch;

static void train_scratch_free(train_scratch *sc) {
    free(sc->sel);
    free(sc->tokens);
    free(sc->pos);
    free(sc->w);
    free(sc->z);
    free(sc->gz);
    *sc = (train_scratch){0};
}

static gkd_status train_scratch_init(gkd_reward_model *rm, int B, train_scratch *sc) {
    const size_t C = (size_t)rm->cfg.dim;
    *sc = (train_scratch){.sel = malloc((size_t)B * sizeof(int)),
                          .tokens = malloc((size_t)B * rm->max_len * sizeof(int)),
                          .pos = malloc(((size_t)B + 1) * sizeof(int)),
                          .w = malloc(3 * C * sizeof(float)),
                          .z = malloc((size_t)B * sizeof(double)),
                          .gz = malloc((size_t)B * sizeof(double))};
    if (!sc->sel || !sc->tokens || !sc->pos || !sc->w || !sc->z || !sc->gz) {
        train_scratch_free(sc);
        return gkd_error_set(GKD_ERR_NOMEM, "reward model: buffers for batches of %d", B);
    }
    return ensure_host_rows(rm, (B + 1) * rm->max_pool);
}

/* The row loss of rows sel[0..B) from their logits sc->z: into sc->gz its gradients and into sc's totals
 * the summed loss and correct count (per row: logistic on z_b averaged over the rows; a preference model:
 * per pair of rows 2k, 2k+1, the Bradley-Terry loss averaged over the pairs). Returns the mean loss. */
static double row_gradients(const gkd_reward_model *rm, const gkd_reward_model_pairs *pairs, int B,
                            train_scratch *sc) {
    double total = 0;
    if (rm->cfg.preference) {
        const int P = B / 2;
        for (int k = 0; k < P; k++) {
            const gkd_reward_model_pair *p = &pairs->items[sc->sel[2 * k]];
            double d = sc->z[2 * k] - sc->z[2 * k + 1], g;
            double l = gkd_reward_model_bt_loss(d, p->margin, p->tie, &g);
            total += l;
            sc->correct += !p->tie && d > 0;
            sc->gz[2 * k] = g / P;
            sc->gz[2 * k + 1] = -g / P;
        }
        sc->loss_sum += total;
        return total / P;
    }
    for (int b = 0; b < B; b++) {
        int y = pairs->items[sc->sel[b]].label != 0;
        double l = logistic_loss(sc->z[b], y);
        total += l;
        sc->correct += (sc->z[b] >= 0) == y;
        sc->gz[b] = (sigmoid(sc->z[b]) - y) / B;
    }
    sc->loss_sum += total;
    return total / B;
}

/* Forward and backward of the rows sel[0..B): parameter gradients += those of the row loss (logistic on
 * z_b, averaged over rows) plus token_loss_weight times the token loss (logistic on each labelled s_t,
 * averaged over them). Adds the rows' summed row loss and correct count to sc. *objective (may be NULL)
 * receives the whole loss the gradients are of. */
static gkd_status batch_gradients(gkd_reward_model *rm, float token_loss_weight, const row_set *rows,
                                  const gkd_reward_model_pairs *pairs, int B, train_scratch *sc,
                                  double *objective) {
    const gkd_backend *be = gkd_model_backend(rm->m);
    const int C = rm->cfg.dim;
    int T = fill_batch(rm, rows, sc->sel, B, sc->tokens);
    size_t need = (size_t)B * T * C;
    if (need > rm->cap_dhidden) {
        be->free(rm->dhidden);
        rm->dhidden = be->alloc(need * sizeof(float));
        rm->cap_dhidden = rm->dhidden ? need : 0;
        if (!rm->dhidden) return gkd_error_set(GKD_ERR_NOMEM, "reward model: dhidden of %zu floats", need);
    }
    const float *hidden;
    gkd_status st = gkd_model_forward(rm->m, sc->tokens, B, T, &hidden);
    if (st != GKD_OK) return st;
    float *w = sc->w, *gw = sc->w + 2 * C, *dW = gkd_model_output_weight_grad(rm->m);
    head_vector(rm, w, sc->w + C);
    head_forward(rm, hidden, B, T, rows, sc->sel, w, sc->pos, sc->z);

    int n_labelled = 0;
    for (int b = 0; b < B; b++) {
        const signed char *lab = rows->label + rows->off[sc->sel[b]] + rows->start[sc->sel[b]];
        for (int t = 0; t < sc->pos[b + 1] - sc->pos[b]; t++) n_labelled += lab[t] >= 0;
    }
    double row_loss = row_gradients(rm, pairs, B, sc), token_loss = 0;
    memset(gw, 0, (size_t)C * sizeof *gw);
    be->zero(rm->dhidden, need * sizeof(float));
    for (int b = 0; b < B; b++) {
        int i = sc->sel[b], n = sc->pos[b + 1] - sc->pos[b];
        const signed char *lab = rows->label + rows->off[i] + rows->start[i];
        const double *s = rm->s + sc->pos[b];
        /* dz_b/ds_t = softmax(-s)_t over the row's positions */
        double gz = sc->gz[b], lo = INFINITY, sum = 0.0;
        for (int t = 0; t < n; t++) lo = s[t] < lo ? s[t] : lo;
        for (int t = 0; t < n; t++) sum += exp(lo - s[t]);
        float *dh = rm->dh, *acc = rm->dh + (size_t)n * C;
        const float *h = rm->h + (size_t)sc->pos[b] * C, *e = rm->e + (size_t)sc->pos[b] * C;
        const int *ids = rows->ids + rows->off[i] + rows->start[i];
        for (int t = 0; t < n; t++) {
            double g = gz * exp(lo - s[t]) / sum;
            if (lab[t] >= 0 && token_loss_weight > 0) {
                token_loss += logistic_loss(s[t], lab[t]) / n_labelled;
                g += token_loss_weight * (sigmoid(s[t]) - lab[t]) / n_labelled;
            }
            /* s_t = h_t . (w + E[x_t]): dh_t = g (w + E[x_t]), dw += g h_t, dE[x_t] += g h_t */
            const float *ht = h + (size_t)t * C, *et = e + (size_t)t * C;
            float *dht = dh + (size_t)t * C, *dE = dW + (size_t)ids[t] * C;
            for (int c = 0; c < C; c++) {
                dht[c] = (float)g * (w[c] + et[c]);
                gw[c] += (float)g * ht[c];
            }
            be->copy_out(acc, dE, (size_t)C * sizeof *acc);
            for (int c = 0; c < C; c++) acc[c] += (float)g * ht[c];
            be->copy_in(dE, acc, (size_t)C * sizeof *acc);
        }
        be->copy_in(rm->dhidden + ((size_t)b * T + rows->start[i]) * C, dh, (size_t)n * C * sizeof *dh);
    }
    if (objective) *objective = row_loss + token_loss_weight * token_loss;
    /* w = W[yes] - W[no]: dW[yes] += dw, dW[no] -= dw. */
    float *tmp = sc->w + C;
    const int head_rows[2] = {rm->id[SPECIAL_YES], rm->id[SPECIAL_NO]};
    for (int k = 0; k < 2; k++) {
        float *dst = dW + (size_t)head_rows[k] * C;
        be->copy_out(tmp, dst, (size_t)C * sizeof *tmp);
        for (int c = 0; c < C; c++) tmp[c] += k == 0 ? gw[c] : -gw[c];
        be->copy_in(dst, tmp, (size_t)C * sizeof *tmp);
    }
    return gkd_model_backward(rm->m, rm->dhidden);
}

gkd_model *gkd_reward_model_transformer(gkd_reward_model *rm) {
    return rm ? rm->m : NULL;
}

gkd_status gkd_reward_model_gradients(gkd_reward_model *rm, const gkd_reward_model_pairs *pairs,
                                      const int *idx, int B, float token_loss_weight, double *objective) {
    if (!rm || !pairs || !idx || B < 1 || !(token_loss_weight >= 0))
        return gkd_error_set(GKD_ERR_ARG, "reward model gradients: need a model, pairs, B >= 1 indices and "
                                          "token_loss_weight >= 0");
    const int per = rm->cfg.preference ? 2 : 1, R = per * B, n_idx = pairs->n / per;
    gkd_reward_model_pairs batch = {malloc((size_t)R * sizeof *batch.items), R};
    if (!batch.items) return gkd_error_set(GKD_ERR_NOMEM, "reward model gradients: %d pairs", B);
    gkd_status st = GKD_OK;
    for (int b = 0; b < B && st == GKD_OK; b++) {
        if (idx[b] < 0 || idx[b] >= n_idx)
            st = gkd_error_set(GKD_ERR_ARG, "reward model gradients: index %d outside [0, %d)", idx[b], n_idx);
        for (int r = 0; r < per && st == GKD_OK; r++) batch.items[per * b + r] = pairs->items[per * idx[b] + r];
    }
    B = R;
    train_scratch sc = {0};
    row_set rows = {0};
    if (st == GKD_OK) st = train_scratch_init(rm, B, &sc);
    if (st == GKD_OK) st = row_set_build(rm, NULL, NULL, batch.items, B, &rows);
    for (int b = 0; st == GKD_OK && b < B; b++) sc.sel[b] = b;
    if (st == GKD_OK) st = batch_gradients(rm, token_loss_weight, &rows, &batch, B, &sc, objective);
    row_set_free(&rows);
    train_scratch_free(&sc);
    free(batch.items);
    return st;
}

struct gkd_reward_model_batches {
    gkd_reward_model *rm;
    const gkd_reward_model_pairs *pairs;
    row_set rows;
    train_scratch sc;
    int B;
};

void gkd_reward_model_batches_free(gkd_reward_model_batches *b) {
    if (!b) return;
    row_set_free(&b->rows);
    train_scratch_free(&b->sc);
    free(b);
}

gkd_status gkd_reward_model_batches_create(gkd_reward_model *rm, const gkd_reward_model_pairs *pairs, int B,
                                           gkd_reward_model_batches **out) {
    *out = NULL;
    if (!rm || !pairs || B < 1) return gkd_error_set(GKD_ERR_ARG, "reward model batches: need a model, pairs, B >= 1");
    gkd_reward_model_batches *b = calloc(1, sizeof *b);
    if (!b) return gkd_error_set(GKD_ERR_NOMEM, "reward model batches");
    *b = (gkd_reward_model_batches){.rm = rm, .pairs = pairs, .B = B};
    gkd_status st = rm->cfg.preference && pairs->n % 2 ? gkd_error_set(GKD_ERR_ARG, "reward model batches: "
                                                                                    "a preference set has "
                                                                                    "2 items a pair")
                                                       : train_scratch_init(rm, rm->cfg.preference ? 2 * B : B, &b->sc);
    if (st == GKD_OK) st = row_set_build(rm, NULL, NULL, pairs->items, pairs->n, &b->rows);
    if (st != GKD_OK) {
        gkd_reward_model_batches_free(b);
        return st;
    }
    *out = b;
    return GKD_OK;
}

gkd_status gkd_reward_model_batches_gradients(gkd_reward_model_batches *b, const int *idx, float token_loss_weight) {
    const int per = b->rm->cfg.preference ? 2 : 1;
    for (int k = 0; k < b->B; k++)
        for (int r = 0; r < per; r++) b->sc.sel[per * k + r] = per * idx[k] + r;
    return batch_gradients(b->rm, token_loss_weight, &b->rows, b->pairs, per * b->B, &b->sc, NULL);
}

void gkd_reward_model_batches_take(gkd_reward_model_batches *b, double *loss_sum, double *correct) {
    *loss_sum = b->sc.loss_sum;
    *correct = b->sc.correct;
    b->sc.loss_sum = b->sc.correct = 0;
}

/* ---------- files ---------- */

enum { PATH_CAP = 4096 };

static gkd_status join_path(char *out, const char *dir, const char *name) {
    if (snprintf(out, PATH_CAP, "%s/%s", dir, name) >= PATH_CAP)
        return gkd_error_set(GKD_ERR_ARG, "reward model: path too long: %s/%s", dir, name);
    return GKD_OK;
}

gkd_status gkd_reward_model_save(gkd_reward_model *rm, const char *dir) {
    if (!rm || !dir) return gkd_error_set(GKD_ERR_ARG, "reward model save: NULL argument");
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return gkd_error_set(GKD_ERR_IO, "reward model save: cannot create %s: %s", dir, strerror(errno));
    char model_path[PATH_CAP], tok_path[PATH_CAP];
    gkd_status st = join_path(model_path, dir, "model.safetensors");
    if (st == GKD_OK) st = join_path(tok_path, dir, "tokenizer.json");
    if (st != GKD_OK) return st;
    gkd_buf meta = {0};
    gkd_buf_printf(&meta,
                   "{\"format\":\"gkd-reward-model\",\"version\":1,\"max_source_tokens\":%d,"
                   "\"max_summary_tokens\":%d,\"seed\":%llu,\"tokenizer\":\"tokenizer.json\","
                   "\"kind\":\"%s\"}",
                   rm->cfg.max_source_tokens, rm->cfg.max_summary_tokens, (unsigned long long)rm->cfg.seed,
                   rm->cfg.preference ? "preference" : "factual");
    if (meta.failed) st = gkd_error_set(GKD_ERR_NOMEM, "reward model save: metadata");
    const char *key = "gkd_reward_model", *value = meta.data;
    if (st == GKD_OK) st = gkd_checkpoint_save_model(rm->m, model_path, &key, &value, 1);
    if (st == GKD_OK) st = gkd_tokenizer_save(rm->tok, tok_path);
    gkd_buf_free(&meta);
    return st == GKD_OK ? st : gkd_error_prefix(st, "reward model save to %s", dir);
}

static gkd_status read_settings(const char *model_path, gkd_reward_model_config *cfg) {
    gkd_safetensors *sf = NULL;
    gkd_status st = gkd_safetensors_open(model_path, &sf);
    if (st != GKD_OK) return st;
    const char *meta = gkd_safetensors_metadata(sf, "gkd_reward_model");
    gkd_json *j = NULL;
    if (!meta)
        st = gkd_error_set(GKD_ERR_FORMAT, "%s: no \"gkd_reward_model\" metadata: not a reward model",
                           model_path);
    if (st == GKD_OK) st = gkd_json_parse(meta, strlen(meta), model_path, &j);
    if (st == GKD_OK) {
        const char *format = gkd_json_get_string(j, "format", "");
        double version = gkd_json_get_number(j, "version", 0);
        /* Converted only after the range check: a cast of an out-of-range double is undefined. */
        int64_t source = 0, summary = 0, seed = 0;
        const char *bad = !gkd_json_integer(gkd_json_get(j, "max_source_tokens"), 1, INT_MAX, &source)
                              ? "max_source_tokens"
                          : !gkd_json_integer(gkd_json_get(j, "max_summary_tokens"), 1, INT_MAX, &summary)
                              ? "max_summary_tokens"
                          : !gkd_json_integer(gkd_json_get(j, "seed"), 0, INT64_MAX, &seed) ? "seed"
                                                                                                 : NULL;
        if (strcmp(format, "gkd-reward-model") != 0 || version != 1)
            st = gkd_error_set(GKD_ERR_FORMAT,
                               "%s: reward model format \"%s\" version %g (need gkd-reward-model 1)",
                               model_path, format, version);
        else if (bad)
            st = gkd_error_set(GKD_ERR_FORMAT, "%s: reward model setting \"%s\" is missing or not an integer in range",
                               model_path, bad);
        cfg->max_source_tokens = (int)source;
        cfg->max_summary_tokens = (int)summary;
        cfg->seed = (uint64_t)seed;
        /* absent in models saved before preference models: factual */
        const char *kind = gkd_json_get_string(j, "kind", "factual");
        cfg->preference = strcmp(kind, "preference") == 0;
        if (st == GKD_OK && !cfg->preference && strcmp(kind, "factual") != 0)
            st = gkd_error_set(GKD_ERR_FORMAT, "%s: reward model kind \"%s\" (need factual or preference)",
                               model_path, kind);
    }
    gkd_json_free(j);
    gkd_safetensors_close(sf);
    return st;
}

gkd_status gkd_reward_model_load(const char *dir, const gkd_backend *be, gkd_reward_model **out) {
    *out = NULL;
    if (!dir || !be) return gkd_error_set(GKD_ERR_ARG, "reward model load: NULL argument");
    char model_path[PATH_CAP], tok_path[PATH_CAP];
    gkd_status st = join_path(model_path, dir, "model.safetensors");
    if (st == GKD_OK) st = join_path(tok_path, dir, "tokenizer.json");
    if (st != GKD_OK) return st;
    gkd_reward_model *rm = calloc(1, sizeof *rm);
    if (!rm) return gkd_error_set(GKD_ERR_NOMEM, "reward model load: out of memory");
    st = read_settings(model_path, &rm->cfg);
    if (st == GKD_OK) st = gkd_checkpoint_load_model(model_path, be, &rm->m);
    if (st == GKD_OK) st = gkd_tokenizer_load(tok_path, &rm->tok);
    if (st == GKD_OK) st = find_specials(rm);
    if (st == GKD_OK) {
        const gkd_model_config *mc = gkd_model_get_config(rm->m);
        rm->cfg.vocab_size = mc->vocab_size;
        rm->cfg.dim = mc->dim;
        rm->cfg.n_layers = mc->n_layers;
        rm->cfg.n_heads = mc->n_heads;
        rm->cfg.hidden_dim = mc->hidden_dim;
        set_lengths(rm);
        if (gkd_tokenizer_vocab_size(rm->tok) != mc->vocab_size)
            st = gkd_error_set(GKD_ERR_FORMAT, "%s: tokenizer has %d tokens, the model %d", tok_path,
                               gkd_tokenizer_vocab_size(rm->tok), mc->vocab_size);
        else if (!mc->tied_embeddings || mc->max_seq_len < rm->max_len)
            st = gkd_error_set(GKD_ERR_FORMAT,
                               "%s: the model is not a reward model's (tied output, %d positions)",
                               model_path, rm->max_len);
    }
    if (st != GKD_OK) {
        gkd_reward_model_free(rm);
        return gkd_error_prefix(st, "reward model load from %s", dir);
    }
    *out = rm;
    return GKD_OK;
}

/* ---------- the reward ---------- */

typedef struct {
    gkd_reward_model *rm;
    int own;
} reward_ctx;

static void reward_ctx_free(void *p) {
    reward_ctx *c = p;
    if (c && c->own) gkd_reward_model_free(c->rm);
    free(c);
}

static gkd_status reward_score(gkd_reward *r, const gkd_reward_sample *s, int n, double *scores) {
    reward_ctx *c = r->ctx;
    const char **src = malloc(((size_t)n + 1) * sizeof *src), **out = malloc(((size_t)n + 1) * sizeof *out);
    gkd_status st = (src && out) ? GKD_OK : gkd_error_set(GKD_ERR_NOMEM, "reward %s: %d samples", r->name, n);
    for (int i = 0; i < n && st == GKD_OK; i++) {
        if (!s[i].source) st = gkd_error_set(GKD_ERR_ARG, "reward %s: sample %d has no source", r->name, i);
        src[i] = s[i].source;
        out[i] = s[i].output ? s[i].output : "";
    }
    if (st == GKD_OK) st = gkd_reward_model_score(c->rm, src, out, n, scores);
    free(src);
    free(out);
    return st;
}

gkd_status gkd_reward_model_as_reward(gkd_reward_model *rm, int take_ownership, gkd_reward **out) {
    *out = NULL;
    if (!rm) return gkd_error_set(GKD_ERR_ARG, "reward model as reward: NULL model");
    reward_ctx *c = malloc(sizeof *c);
    if (!c) {
        if (take_ownership) gkd_reward_model_free(rm);
        return gkd_error_set(GKD_ERR_NOMEM, "reward model as reward: out of memory");
    }
    *c = (reward_ctx){rm, take_ownership};
    return gkd_reward_custom("reward_model", reward_score, c, reward_ctx_free, out);
}
