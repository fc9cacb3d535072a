/* The model's passes over its activation sets (model.c holds the layout and memory): the forward of
 * training (every layer's activations kept) and of inference (one layer's worth, updated in place), the
 * backward, and the chunked cross-entropy that never holds more than a chunk of (N,V) logits.
 * Rules: those of model.c; parameter gradients accumulate (+=), and every path that writes a gradient
 * refuses an inference model first. */
#include "core/tensor/model.h"
#include "core/tensor/model_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------- forward ---------- */

/* Where one layer reads and writes. Training points these into the layer's own slot; inference points
 * res_in, res_mid and res_out at one buffer and updates the residual stream in place. k_cache, v_cache, when
 * set, receive the new keys and values (the KV cache) and the attention reads keys and values from them. */
typedef struct {
    float *res_in, *ln1, *ln1_rstd, *qkv, *att, *atty, *res_mid, *ln2, *ln2_rstd, *gu, *swi, *res_out;
    float *proj;
    const int *pos;           /* (N) device */
    const int *pos0;          /* (B) host, NULL for training */
    float *k_cache, *v_cache; /* (B, Tk, KVD) device, or NULL */
} layer_io;

gkd_status gkd_model_check_tokens(const gkd_model *m, const int *tokens, int B, int T, const char *fn) {
    int V = m->cfg.vocab_size;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            int tok = tokens[(size_t)b * T + t];
            if (tok < 0 || tok >= V)
                return gkd_error_set(GKD_ERR_ARG, "%s: tokens[%d][%d] = %d is outside [0, vocab_size = %d)",
                                     fn, b, t, tok, V);
        }
    return GKD_OK;
}

static gkd_attn_dims attn_dims(const gkd_model *m, int B, int T, int Tk, int cached) {
    gkd_attn_dims d = {
        .B = B,
        .T = T,
        .n_heads = m->cfg.n_heads,
        .n_kv_heads = m->cfg.n_kv_heads,
        .head_dim = m->head_dim,
        .Tk = Tk,
        .ld_q = m->qkv_dim,
        .ld_kv = cached ? m->kv_dim : m->qkv_dim,
        .ld_out = m->q_dim,
        .bs_q = (size_t)T * m->qkv_dim,
        .bs_kv = cached ? (size_t)Tk * m->kv_dim : (size_t)T * m->qkv_dim,
        .bs_out = (size_t)T * m->q_dim,
    };
    return d;
}

static void layer_forward(const gkd_model *m, int l, const layer_io *io, int B, int T, int Tk) {
    const gkd_backend *be = m->be;
    const layer_tensors *w = &m->lw[l];
    const packed_layer p = m->pl ? m->pl[l] : (packed_layer){0};
    const int N = B * T, C = m->cfg.dim, F = m->cfg.hidden_dim, QD = m->q_dim, KVD = m->kv_dim;
    const int W = m->qkv_dim;
    const float eps = m->cfg.norm_eps;

    be->rmsnorm_forward(io->ln1, io->ln1_rstd, io->res_in, w->attn_norm, N, C, eps);
    gkd_model_linear(m, w->wq, p.wqkv, io->ln1, N, W, C, io->qkv); /* rows of [wq; wk; wv] */
    be->rope_forward(io->qkv, io->pos, m->rope_cos, m->rope_sin, N, m->cfg.n_heads + m->cfg.n_kv_heads,
                     m->head_dim, W); /* q heads then k heads: adjacent, one pass */
    const float *k = io->qkv + QD, *v = io->qkv + QD + KVD;
    gkd_attn_dims d = attn_dims(m, B, T, Tk, io->k_cache != NULL);
    if (io->k_cache) {
        be->kv_write(io->k_cache, io->v_cache, k, v, W, io->pos, B, T, KVD, (size_t)Tk * KVD);
        k = io->k_cache;
        v = io->v_cache;
    }
    be->attention_forward(io->atty, io->att, io->qkv, k, v, io->pos0, &d);
    gkd_model_linear(m, w->wo, p.wo, io->atty, N, C, QD, io->proj);
    be->residual_forward(io->res_mid, io->res_in, io->proj, (size_t)N * C);

    be->rmsnorm_forward(io->ln2, io->ln2_rstd, io->res_mid, w->mlp_norm, N, C, eps);
    gkd_model_linear(m, w->wgate, p.wgu, io->ln2, N, 2 * F, C, io->gu); /* [wgate; wup] */
    be->swiglu_forward(io->swi, io->gu, io->gu + F, N, F, 2 * F);
    gkd_model_linear(m, w->wdown, p.wdown, io->swi, N, C, F, io->proj);
    be->residual_forward(io->res_out, io->res_mid, io->proj, (size_t)N * C);
}

/* Layer l's io for a set: its own slot when the set keeps every layer, else slot 0 updated in place. */
static layer_io set_layer_io(const gkd_model *m, act_set *s, int l, int keep_all) {
    act_slot *a = &s->slots[keep_all ? l : 0];
    layer_io io = {
        .res_in = a->res,
        .ln1 = a->ln1,
        .ln1_rstd = a->ln1_rstd,
        .qkv = a->qkv,
        .att = a->att,
        .atty = a->atty,
        .res_mid = keep_all ? a->res_mid : a->res,
        .ln2 = a->ln2,
        .ln2_rstd = a->ln2_rstd,
        .gu = a->gu,
        .swi = a->swi,
        .res_out = keep_all ? (l + 1 < m->cfg.n_layers ? s->slots[l + 1].res : s->out_res) : a->res,
        .proj = s->proj,
        .pos = s->pos,
    };
    return io;
}

/* Embedding and all layers over tokens (B,T) at positions pos0[b] + t; leaves the last residual stream in
 * s->out_res (training) or slot 0's res (inference). With `at`, s->rows receives the rows b*T + at[b] in
 * the same copy as the tokens and positions. */
void gkd_model_forward_layers(const gkd_model *m, act_set *s, const int *tokens, const int *pos0,
                              const int *at, int B, int T, int keep_all, gkd_kv_cache *c) {
    const gkd_backend *be = m->be;
    const int N = B * T;
    int *host_pos = s->host_ints + N, *host_rows = host_pos + N;
    memcpy(s->host_ints, tokens, (size_t)N * sizeof(int));
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) host_pos[(size_t)b * T + t] = (pos0 ? pos0[b] : 0) + t;
    for (int b = 0; at && b < B; b++) host_rows[b] = b * T + at[b];
    be->copy_in(s->tokens, s->host_ints, ((size_t)2 * N + (at ? (size_t)B : 0)) * sizeof(int));
    if (m->p_embed)
        be->packed_rows(s->slots[0].res, s->tokens, m->p_embed, m->weight_format, N, m->cfg.vocab_size,
                        m->cfg.dim);
    else
        be->embedding_forward(s->slots[0].res, s->tokens, m->w.embed, N, m->cfg.dim);
    for (int l = 0; l < m->cfg.n_layers; l++) {
        layer_io io = set_layer_io(m, s, l, keep_all);
        if (c) {
            size_t layer_off = (size_t)l * c->B * c->max_T * c->kv_dim;
            io.k_cache = c->k + layer_off;
            io.v_cache = c->v + layer_off;
            io.pos0 = pos0;
        }
        layer_forward(m, l, &io, B, T, s->Tk);
    }
}

gkd_status gkd_model_check_batch(const gkd_model *m, int B, int T, const char *fn) {
    if (B <= 0) return gkd_error_set(GKD_ERR_ARG, "%s: B = %d must be > 0", fn, B);
    if (T <= 0) return gkd_error_set(GKD_ERR_ARG, "%s: T = %d must be > 0", fn, T);
    if (T > m->cfg.max_seq_len)
        return gkd_error_set(GKD_ERR_ARG, "%s: T = %d exceeds max_seq_len = %d", fn, T, m->cfg.max_seq_len);
    return gkd_model_check_activations(m, B, T, T, fn);
}

/* The refusal of every call that would write gradients on an inference model. */
static gkd_status refuse_inference(const char *fn) {
    return gkd_error_set(
        GKD_ERR_ARG,
        "%s: the model was created for inference (GKD_MODEL_INFERENCE) and has no gradients; "
        "use gkd_model_forward_nograd, or create it with gkd_model_create to train it",
        fn);
}

gkd_status gkd_model_forward(gkd_model *m, const int *tokens, int B, int T, const float **hidden) {
    const char *fn = "gkd_model_forward";
    if (!m || !tokens || !hidden) return gkd_error_set(GKD_ERR_ARG, "%s: NULL argument", fn);
    if (m->inference) return refuse_inference(fn);
    gkd_status st = gkd_model_check_batch(m, B, T, fn);
    if (!st) st = gkd_model_check_tokens(m, tokens, B, T, fn);
    if (st) return st;
    m->backward_ready = 0;
    st = gkd_model_act_set_ensure(m, &m->train, B, T, T, m->cfg.n_layers, 1);
    if (st) return st;
    act_set *s = &m->train;
    gkd_model_forward_layers(m, s, tokens, NULL, NULL, B, T, 1, NULL);
    m->be->rmsnorm_forward(s->hidden, s->hidden_rstd, s->out_res, m->w.final_norm, B * T, m->cfg.dim,
                           m->cfg.norm_eps);
    m->backward_ready = 1;
    *hidden = s->hidden;
    return GKD_OK;
}

gkd_status gkd_model_forward_nograd(gkd_model *m, const int *tokens, int B, int T, const float **hidden) {
    const char *fn = "gkd_model_forward_nograd";
    if (!m || !tokens || !hidden) return gkd_error_set(GKD_ERR_ARG, "%s: NULL argument", fn);
    gkd_status st = gkd_model_check_batch(m, B, T, fn);
    if (!st) st = gkd_model_check_tokens(m, tokens, B, T, fn);
    if (!st) st = gkd_model_act_set_ensure(m, &m->infer, B, T, T, 1, 0);
    if (st) return st;
    act_set *s = &m->infer;
    gkd_model_forward_layers(m, s, tokens, NULL, NULL, B, T, 0, NULL);
    m->be->rmsnorm_forward(s->hidden, s->hidden_rstd, s->slots[0].res, m->w.final_norm, B * T, m->cfg.dim,
                           m->cfg.norm_eps);
    *hidden = s->hidden;
    return GKD_OK;
}

/* ---------- backward ---------- */

static void layer_backward(gkd_model *m, int l, act_set *s) {
    const gkd_backend *be = m->be;
    const layer_tensors *w = &m->lw[l];
    const layer_tensors *dw = &m->dlw[l];
    const int B = s->B, T = s->T, N = B * T, C = m->cfg.dim, F = m->cfg.hidden_dim;
    const int QD = m->q_dim, KVD = m->kv_dim, W = m->qkv_dim;
    layer_io io = set_layer_io(m, s, l, 1);

    /* MLP branch: s->dres holds dL/d(res_out), which is also dL/d(down_proj output). */
    be->matmul(0, 0, N, F, C, 1.0f, s->dres, C, w->wdown, F, 0.0f, s->dswi, F);
    be->matmul(1, 0, C, F, N, 1.0f, s->dres, C, io.swi, F, 1.0f, dw->wdown, F);
    be->zero(s->dgu, (size_t)N * 2 * F * sizeof(float));
    be->swiglu_backward(s->dgu, s->dgu + F, s->dswi, io.gu, io.gu + F, N, F, 2 * F);
    be->matmul(0, 0, N, C, 2 * F, 1.0f, s->dgu, 2 * F, w->wgate, C, 0.0f, s->dln, C);
    be->matmul(1, 0, 2 * F, C, N, 1.0f, s->dgu, 2 * F, io.ln2, C, 1.0f, dw->wgate, C);
    be->rmsnorm_backward(s->dres, dw->mlp_norm, s->dln, io.res_mid, w->mlp_norm, io.ln2_rstd, N, C);

    /* Attention branch: s->dres now holds dL/d(res_mid). */
    be->matmul(0, 0, N, QD, C, 1.0f, s->dres, C, w->wo, QD, 0.0f, s->datty, QD);
    be->matmul(1, 0, C, QD, N, 1.0f, s->dres, C, io.atty, QD, 1.0f, dw->wo, QD);
    be->zero(s->dqkv, (size_t)N * W * sizeof(float));
    gkd_attn_dims d = attn_dims(m, B, T, T, 0);
    be->attention_backward(s->dqkv, s->dqkv + QD, s->dqkv + QD + KVD, s->datt, s->datty, io.att, io.qkv,
                           io.qkv + QD, io.qkv + QD + KVD, NULL, &d);
    be->rope_backward(s->dqkv, s->pos, m->rope_cos, m->rope_sin, N, m->cfg.n_heads + m->cfg.n_kv_heads,
                      m->head_dim, W);
    be->matmul(0, 0, N, C, W, 1.0f, s->dqkv, W, w->wq, C, 0.0f, s->dln, C);
    be->matmul(1, 0, W, C, N, 1.0f, s->dqkv, W, io.ln1, C, 1.0f, dw->wq, C);
    be->rmsnorm_backward(s->dres, dw->attn_norm, s->dln, io.res_in, w->attn_norm, io.ln1_rstd, N, C);
}

gkd_status gkd_model_backward(gkd_model *m, const float *dhidden) {
    if (!m || !dhidden) return gkd_error_set(GKD_ERR_ARG, "gkd_model_backward: NULL argument");
    if (m->inference) return refuse_inference("gkd_model_backward");
    if (!m->backward_ready)
        return gkd_error_set(GKD_ERR_ARG, "gkd_model_backward: no gkd_model_forward to differentiate");
    const gkd_backend *be = m->be;
    act_set *s = &m->train;
    const int N = s->B * s->T, C = m->cfg.dim;
    be->zero(s->dres, (size_t)N * C * sizeof(float));
    be->rmsnorm_backward(s->dres, m->dw.final_norm, dhidden, s->out_res, m->w.final_norm, s->hidden_rstd, N,
                         C);
    for (int l = m->cfg.n_layers - 1; l >= 0; l--) layer_backward(m, l, s);
    be->embedding_backward(m->dw.embed, s->dres, s->tokens, N, C);
    return GKD_OK;
}

/* ---------- chunked cross-entropy ---------- */

/* Rows per chunk: as set, else the backend's logit bytes per chunk (gkd_backend.loss_chunk_bytes; 0: about
 * 8 MB, the CPU's cache-sized choice), at least 32 rows so the sgemms keep their shape. */
int gkd_model_ce_chunk_rows(const gkd_model *m) {
    if (m->ce_chunk_rows > 0) return m->ce_chunk_rows;
    size_t bytes = m->be->loss_chunk_bytes ? m->be->loss_chunk_bytes : (size_t)1 << 23;
    size_t rows = bytes / (sizeof(float) * (size_t)m->cfg.vocab_size);
    if (rows > (size_t)1 << 20) rows = (size_t)1 << 20;
    return rows < 32 ? 32 : (int)rows;
}

gkd_status gkd_model_set_loss_chunk(gkd_model *m, int rows) {
    if (!m) return gkd_error_set(GKD_ERR_ARG, "gkd_model_set_loss_chunk: model is NULL");
    if (rows < 0) return gkd_error_set(GKD_ERR_ARG, "gkd_model_set_loss_chunk: rows = %d must be >= 0", rows);
    m->ce_chunk_rows = rows;
    m->be->free(m->ce.block); /* re-made at the new size on next use */
    m->ce.block = NULL;
    return GKD_OK;
}

static gkd_status ce_scratch_ensure(gkd_model *m, int N) {
    ce_scratch *ce = &m->ce;
    const size_t C = (size_t)m->cfg.dim, V = (size_t)m->cfg.vocab_size;
    /* rows per chunk, but no more than the call has: a chunk sized for a GPU (loss_chunk_bytes) would
     * otherwise hold ~0.5 GB for a tiny model; grown when a later call has more rows */
    size_t R = (size_t)gkd_model_ce_chunk_rows(m);
    if (R > (size_t)N) R = (size_t)N;
    if (ce->block && (size_t)ce->rows < R) {
        m->be->free(ce->block);
        ce->block = NULL;
    }
    if (!ce->block) {
        size_t floats = 2 * R * C + R * V + R;
        gkd_status st =
            gkd_model_device_alloc(m->be, &ce->block, floats * sizeof(float), "cross-entropy scratch");
        if (st) return st;
        float *p = ce->block;
        ce->h = p;
        ce->dh = p + R * C;
        ce->logits = p + 2 * R * C;
        ce->lse = ce->logits + R * V;
        ce->rows = (int)R;
    }
    if ((size_t)N > ce->rowdata_cap) {
        m->be->free(ce->rowdata);
        ce->rowdata = NULL;
        ce->rowdata_cap = 0;
        gkd_status st = gkd_model_device_alloc(m->be, &ce->rowdata, (size_t)N * 3 * sizeof(float),
                                               "cross-entropy targets, weights and losses");
        if (st) return st;
        ce->rowdata_cap = (size_t)N;
        ce->targets = ce->rowdata;
        ce->weights = (float *)ce->rowdata + N;
        ce->loss = ce->weights + N;
    }
    if ((size_t)N > ce->host_cap) {
        free(ce->host_w);
        free(ce->host_chunk);
        free(ce->host_rows);
        free(ce->host_targets);
        ce->host_w = malloc((size_t)N * sizeof(float));
        ce->host_chunk = malloc((size_t)N * sizeof(float));
        ce->host_rows = malloc((size_t)N * sizeof(int));
        ce->host_targets = malloc((size_t)N * sizeof(int));
        ce->host_cap = (size_t)N;
        if (!ce->host_w || !ce->host_chunk || !ce->host_rows || !ce->host_targets) {
            ce->host_cap = 0;
            return gkd_error_set(GKD_ERR_NOMEM, "cross-entropy: out of host memory");
        }
    }
    return GKD_OK;
}

/* Per-row weights w[n] with sum_n w[n] nll[n] the normalised loss times `scale`; returns the number of rows
 * of non-zero weight, listed in rows[]. */
static gkd_status ce_weights(const gkd_model *m, const int *targets, const float *mask, int B, int T,
                             int norm, double scale, float *w, int *rows, int *n_rows) {
    const char *fn = "gkd_model_ce_loss";
    double total = 0.0;
    int n_seq = 0;
    for (int b = 0; b < B; b++) {
        double seq = 0.0;
        for (int t = 0; t < T; t++) {
            size_t n = (size_t)b * T + t;
            float x = mask[n];
            if (!(x >= 0.0f) || !isfinite(x))
                return gkd_error_set(GKD_ERR_ARG,
                                     "%s: mask[%d][%d] = %g must be a finite weight >= 0 (0 or 1 for a mask)",
                                     fn, b, t, x);
            if (x != 0.0f && (targets[n] < 0 || targets[n] >= m->cfg.vocab_size))
                return gkd_error_set(GKD_ERR_ARG, "%s: targets[%d][%d] = %d is outside [0, vocab_size = %d)",
                                     fn, b, t, targets[n], m->cfg.vocab_size);
            seq += x;
        }
        total += seq;
        n_seq += seq > 0.0;
    }
    int k = 0;
    for (int b = 0; b < B; b++) {
        double seq = 0.0;
        for (int t = 0; t < T; t++) seq += mask[(size_t)b * T + t];
        double denom = norm == GKD_NORM_TOKEN ? total : seq * n_seq;
        for (int t = 0; t < T; t++) {
            size_t n = (size_t)b * T + t;
            w[n] = mask[n] != 0.0f && scale != 0.0 ? (float)(mask[n] / denom * scale) : 0.0f;
            if (w[n] != 0.0f) rows[k++] = (int)n;
        }
    }
    *n_rows = k;
    return GKD_OK;
}

gkd_status gkd_model_ce_loss(gkd_model *m, const float *hidden, const int *targets, const float *mask, int B,
                             int T, int norm, float *loss, float *dhidden) {
    return gkd_model_ce_loss_scaled(m, hidden, targets, mask, B, T, norm, 1.0, loss, dhidden);
}

gkd_status gkd_model_ce_loss_scaled(gkd_model *m, const float *hidden, const int *targets, const float *mask, int B,
                                    int T, int norm, double scale, float *loss, float *dhidden) {
    const char *fn = "gkd_model_ce_loss";
    if (!m || !hidden || !targets || !mask || !loss)
        return gkd_error_set(GKD_ERR_ARG, "%s: NULL argument", fn);
    if (B <= 0 || T <= 0) return gkd_error_set(GKD_ERR_ARG, "%s: B = %d, T = %d must be > 0", fn, B, T);
    if (norm != GKD_NORM_TOKEN && norm != GKD_NORM_SEQUENCE)
        return gkd_error_set(GKD_ERR_ARG, "%s: norm = %d is neither GKD_NORM_TOKEN nor GKD_NORM_SEQUENCE", fn,
                             norm);
    if (dhidden && dhidden == hidden)
        return gkd_error_set(GKD_ERR_ARG, "%s: dhidden must not be the hidden buffer itself", fn);
    if (dhidden && m->inference) return refuse_inference(fn);
    const gkd_backend *be = m->be;
    const int N = B * T, C = m->cfg.dim, V = m->cfg.vocab_size;
    gkd_status st = ce_scratch_ensure(m, N);
    if (st) return st;
    ce_scratch *ce = &m->ce;
    int n_rows = 0;
    st = ce_weights(m, targets, mask, B, T, norm, scale, ce->host_w, ce->host_rows, &n_rows);
    if (st) return st;
    const float *wout = gkd_model_output_weight(m);
    float *dwout = gkd_model_output_weight_grad(m);
    if ((st = gkd_model_packed_scratch_ensure(m, ce->rows)) != GKD_OK) return st;
    if (dhidden) be->zero(dhidden, (size_t)N * C * sizeof(float));
    /* every chunk's targets and weights in one copy, every row's loss back in one: no chunk waits for the
     * host (on a device, a copy waits for the work queued before it) */
    for (int i = 0; i < n_rows; i++) {
        ce->host_targets[i] = targets[ce->host_rows[i]];
        ce->host_chunk[i] = ce->host_w[ce->host_rows[i]];
    }
    be->copy_in(ce->targets, ce->host_targets, (size_t)n_rows * sizeof(int));
    be->copy_in(ce->weights, ce->host_chunk, (size_t)n_rows * sizeof(float));
    for (int s0 = 0; s0 < n_rows; s0 += ce->rows) {
        int R = n_rows - s0 < ce->rows ? n_rows - s0 : ce->rows;
        const int *rows = ce->host_rows + s0;
        /* Only rows with weight enter the product; one contiguous run is used where it lies. */
        int contiguous = rows[R - 1] - rows[0] == R - 1;
        const float *h = contiguous ? hidden + (size_t)rows[0] * C : ce->h;
        if (!contiguous) {
            for (int i = 0, run; i < R; i += run) {
                for (run = 1; i + run < R && rows[i + run] == rows[i] + run; run++) {
                }
                be->copy_2d(ce->h + (size_t)i * C, C, hidden + (size_t)rows[i] * C, C, run, C);
            }
        }
        const int *tg = ce->targets + s0;
        const float *wt = ce->weights + s0;
        gkd_model_output_rows(m, h, R, ce->logits);
        be->crossentropy_forward(ce->loss + s0, ce->lse, ce->logits, tg, wt, R, V);
        if (!dhidden) continue;
        be->crossentropy_backward(ce->logits, ce->logits, ce->lse, tg, wt, R, V);
        float *dh = contiguous ? dhidden + (size_t)rows[0] * C : ce->dh;
        be->matmul(0, 0, R, C, V, 1.0f, ce->logits, V, wout, C, 0.0f, dh, C);
        be->matmul(1, 0, V, C, R, 1.0f, ce->logits, V, h, C, 1.0f, dwout, C);
        if (!contiguous) {
            for (int i = 0, run; i < R; i += run) {
                for (run = 1; i + run < R && rows[i + run] == rows[i] + run; run++) {
                }
                be->copy_2d(dhidden + (size_t)rows[i] * C, C, ce->dh + (size_t)i * C, C, run, C);
            }
        }
    }
    be->copy_out(ce->host_chunk, ce->loss, (size_t)n_rows * sizeof(float));
    double sum = 0.0;
    for (int i = 0; i < n_rows; i++) sum += ce->host_chunk[i]; /* row order, as chunk by chunk */
    *loss = (float)sum;
    return GKD_OK;
}
