/* JSONL datasets, the synthetic arithmetic task, tokenisation and batching (see data.h). */
#include "core/text/data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/json.h"
#include "core/text/tokenizer.h"

/* The strings of a gkd_text_format, listed once for the code that treats them all alike. */
#define TEXT_FORMAT_STRINGS(X) X(prompt_prefix) X(prompt_suffix) X(target_prefix) X(terminator)

void gkd_text_format_free(gkd_text_format *f) {
    if (!f) return;
#define FREE_STRING(name) free(f->name);
    TEXT_FORMAT_STRINGS(FREE_STRING)
#undef FREE_STRING
    memset(f, 0, sizeof *f);
}

static char *strdup_or_null(const char *s, int *failed) {
    if (!s) return NULL;
    char *c = strdup(s);
    if (!c) *failed = 1;
    return c;
}

gkd_status gkd_text_format_copy(gkd_text_format *dst, const gkd_text_format *src) {
    int failed = 0;
#define COPY_STRING(name) dst->name = strdup_or_null(src->name, &failed);
    TEXT_FORMAT_STRINGS(COPY_STRING)
#undef COPY_STRING
    if (!failed) return GKD_OK;
    gkd_text_format_free(dst);
    return gkd_error_set(GKD_ERR_NOMEM, "out of memory");
}

void gkd_dataset_free(gkd_dataset *d) {
    if (!d) return;
    gkd_text_format_free(&d->fmt);
    for (int i = 0; i < d->n; i++) {
        free(d->items[i].source);
        free(d->items[i].prompt);
        free(d->items[i].target);
    }
    free(d->items);
    d->items = NULL;
    d->n = 0;
}

static int dataset_push(gkd_dataset *d, int *cap, gkd_example ex) {
    if (d->n == *cap) {
        int ncap = *cap ? *cap * 2 : 256;
        gkd_example *items = realloc(d->items, (size_t)ncap * sizeof *items);
        if (!items) return 0;
        d->items = items;
        *cap = ncap;
    }
    d->items[d->n++] = ex;
    return 1;
}

/* The string field `field` of a JSONL record, or NULL after reporting why it cannot be used: missing, not
 * a string, or holding \u0000, which every C string downstream (prompt, target, tokenizer) would cut. */
static const gkd_json *text_field(const gkd_json *obj, const char *field, const char *path, long line) {
    const gkd_json *v = gkd_json_get(obj, field);
    if (v && v->type == GKD_JSON_STRING && strlen(v->string) == v->len) return v;
    gkd_error_set(GKD_ERR_FORMAT, "%s:%ld: field \"%s\" %s", path, line, field,
                  !v                           ? "is missing"
                  : v->type != GKD_JSON_STRING ? "is not a string"
                                               : "holds \\u0000 (NUL), which dataset text cannot carry");
    return NULL;
}

/* Applies the template to one JSON object: *out is a new string, or NULL with the error reported (a field
 * text_field refuses, or no memory). */
static gkd_status apply_template(const char *tmpl, const gkd_json *obj, const char *path, long line,
                                 char **out, int *cue_len) {
    *out = NULL;
    gkd_buf b = {0};
    const char *p = tmpl, *after_last = tmpl;
    while (*p) {
        const char *open = strchr(p, '{');
        const char *close = open ? strchr(open, '}') : NULL;
        if (!open || !close) {
            gkd_buf_puts(&b, p);
            break;
        }
        gkd_buf_put(&b, p, (size_t)(open - p));
        char field[128];
        size_t n = (size_t)(close - open - 1);
        if (n >= sizeof field) n = sizeof field - 1;
        memcpy(field, open + 1, n);
        field[n] = '\0';
        const gkd_json *v = text_field(obj, field, path, line);
        if (!v) {
            gkd_buf_free(&b);
            return GKD_ERR_FORMAT;
        }
        gkd_buf_put(&b, v->string, v->len);
        p = close + 1;
        after_last = p;
    }
    *out = b.data ? b.data : strdup("");
    if (b.failed || !*out) {
        gkd_buf_free(&b);
        *out = NULL;
        return gkd_error_set(GKD_ERR_NOMEM, "%s:%ld: out of memory", path, line);
    }
    *cue_len = (int)strlen(after_last);
    return GKD_OK;
}

gkd_status gkd_dataset_load_jsonl(const char *path, const gkd_task_spec *spec, gkd_dataset *out) {
    memset(out, 0, sizeof *out);
    if (!spec->prompt_template || !spec->target_field)
        return gkd_error_set(GKD_ERR_ARG, "task: prompt template and target field are required");
    size_t plen = strlen(path);
    int compressed = plen > 3 && strcmp(path + plen - 3, ".xz") == 0;
    FILE *f;
    if (compressed) {
        char cmd[4200];
        if (strchr(path, '\'')) return gkd_error_set(GKD_ERR_ARG, "%s: quote in file name", path);
        snprintf(cmd, sizeof cmd, "xz -dc '%s'", path);
        f = popen(cmd, "r");
    } else {
        f = fopen(path, "r");
    }
    if (!f) return gkd_error_set(GKD_ERR_IO, "%s: cannot open", path);
    char *line = NULL;
    size_t line_cap = 0;
    ssize_t n;
    long lineno = 0;
    int cap = 0;
    gkd_status st = GKD_OK;
    while ((n = getline(&line, &line_cap, f)) >= 0) {
        lineno++;
        const char *text = line;
        if (lineno == 1 && n >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) /* a byte order mark: skipped */
            text += 3, n -= 3;
        while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r')) n--;
        if (n == 0) continue;
        gkd_json *obj = NULL;
        char where[4200];
        snprintf(where, sizeof where, "%s:%ld", path, lineno);
        if ((st = gkd_json_parse(text, (size_t)n, where, &obj)) != GKD_OK) break;
        if (obj->type != GKD_JSON_OBJECT) {
            gkd_json_free(obj);
            st = gkd_error_set(GKD_ERR_FORMAT, "%s:%ld: not a JSON object", path, lineno);
            break;
        }
        gkd_example ex = {0};
        const gkd_json *t = NULL, *s = NULL;
        st = apply_template(spec->prompt_template, obj, path, lineno, &ex.prompt, &ex.cue_len);
        if (st == GKD_OK &&
            (!(t = text_field(obj, spec->target_field, path, lineno)) ||
             (spec->source_field && !(s = text_field(obj, spec->source_field, path, lineno)))))
            st = GKD_ERR_FORMAT;
        /* generation needs at least one prompt token: refused here, not at the first evaluation */
        if (st == GKD_OK && !ex.prompt[0])
            st = gkd_error_set(GKD_ERR_FORMAT, "%s:%ld: the prompt is empty (template \"%s\")", path, lineno,
                               spec->prompt_template);
        if (st == GKD_OK) {
            ex.target = strdup(t->string);
            ex.source = strdup(s ? s->string : ex.prompt);
            if (!ex.target || !ex.source || !dataset_push(out, &cap, ex))
                st = gkd_error_set(GKD_ERR_NOMEM, "%s:%ld: out of memory", path, lineno);
        }
        gkd_json_free(obj);
        if (st != GKD_OK) {
            free(ex.prompt);
            free(ex.target);
            free(ex.source);
            break;
        }
        if (spec->max_examples > 0 && out->n >= spec->max_examples) break;
    }
    free(line);
    int rc = compressed ? pclose(f) : fclose(f);
    if (st == GKD_OK && compressed && rc != 0 && !(spec->max_examples > 0 && out->n >= spec->max_examples))
        st = gkd_error_set(GKD_ERR_IO, "%s: xz failed (status %d)", path, rc);
    if (st == GKD_OK && out->n == 0) st = gkd_error_set(GKD_ERR_FORMAT, "%s: no examples", path);
    if (st != GKD_OK) gkd_dataset_free(out);
    return st;
}

/* Arithmetic word problems: two or three steps over small integers, with the worked steps in the answer,
 * which ends with "Answer: N" so the exact-match metric can read the final number. */
gkd_status gkd_dataset_arithmetic(uint64_t seed, int n, gkd_dataset *out) {
    static const char *names[] = {"Ana", "Ben", "Chen", "Dara", "Eli", "Farah", "Gus", "Hana", "Ivo", "Jia"};
    static const char *things[] = {"apples", "books", "coins", "pens", "stamps", "shells", "cards", "marbles"};
    memset(out, 0, sizeof *out);
    out->items = calloc((size_t)(n > 0 ? n : 1), sizeof *out->items);
    if (!out->items) return gkd_error_set(GKD_ERR_NOMEM, "out of memory");
    gkd_rng rng;
    gkd_rng_init(&rng, seed, GKD_RNG_STREAM_DATA | ((uint64_t)0xA717 << 32));
    for (int i = 0; i < n; i++) {
        const char *who = names[gkd_rng_below(&rng, 10)];
        const char *what = things[gkd_rng_below(&rng, 8)];
        int a = 2 + (int)gkd_rng_below(&rng, 40), b = 1 + (int)gkd_rng_below(&rng, 30);
        int c = 1 + (int)gkd_rng_below(&rng, 5);
        int three = (int)gkd_rng_below(&rng, 2);
        int buys = a + b, total = three ? buys * c : buys;
        char prompt[512], target[512];
        if (three) {
            snprintf(prompt, sizeof prompt,
                     "%s has %d %s and buys %d more. Then the number of %s is multiplied by %d. How many %s now?"
                     "\nAnswer:",
                     who, a, what, b, what, c, what);
            snprintf(target, sizeof target, " %d + %d = %d. %d * %d = %d. Answer: %d", a, b, buys, buys, c, total,
                     total);
        } else {
            snprintf(prompt, sizeof prompt, "%s has %d %s and buys %d more. How many %s now?\nAnswer:", who, a, what,
                     b, what);
            snprintf(target, sizeof target, " %d + %d = %d. Answer: %d", a, b, buys, total);
        }
        gkd_example *ex = &out->items[i];
        ex->prompt = strdup(prompt);
        ex->target = strdup(target);
        ex->source = strdup(prompt);
        ex->cue_len = (int)strlen("\nAnswer:");
        out->n = i + 1;
        if (!ex->prompt || !ex->target || !ex->source) {
            gkd_dataset_free(out);
            return gkd_error_set(GKD_ERR_NOMEM, "out of memory");
        }
    }
    return GKD_OK;
}

gkd_status gkd_dataset_split(gkd_dataset *d, double held_out_fraction, uint64_t seed, gkd_dataset *train,
                             gkd_dataset *held_out) {
    if (!(held_out_fraction >= 0.0 && held_out_fraction < 1.0))
        return gkd_error_set(GKD_ERR_ARG, "held_out fraction must be in [0, 1), got %g", held_out_fraction);
    int n = d->n, n_held = (int)(n * held_out_fraction + 0.5);
    if (held_out_fraction > 0 && n_held == 0 && n > 1) n_held = 1;
    memset(train, 0, sizeof *train);
    memset(held_out, 0, sizeof *held_out);
    if (gkd_text_format_copy(&train->fmt, &d->fmt) != GKD_OK) return GKD_ERR_NOMEM;
    if (gkd_text_format_copy(&held_out->fmt, &d->fmt) != GKD_OK) {
        gkd_text_format_free(&train->fmt);
        return GKD_ERR_NOMEM;
    }
    int *idx = malloc((size_t)(n > 0 ? n : 1) * sizeof *idx);
    train->items = malloc((size_t)(n - n_held > 0 ? n - n_held : 1) * sizeof *train->items);
    held_out->items = malloc((size_t)(n_held > 0 ? n_held : 1) * sizeof *held_out->items);
    if (!idx || !train->items || !held_out->items) {
        free(idx);
        free(train->items);
        free(held_out->items);
        gkd_text_format_free(&train->fmt);
        gkd_text_format_free(&held_out->fmt);
        return gkd_error_set(GKD_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < n; i++) idx[i] = i;
    gkd_rng rng;
    gkd_rng_init(&rng, seed, GKD_RNG_STREAM_DATA | ((uint64_t)0x5B17 << 32));
    gkd_rng_shuffle(&rng, idx, n);
    held_out->n = n_held;
    train->n = n - n_held;
    for (int i = 0; i < n_held; i++) held_out->items[i] = d->items[idx[i]];
    for (int i = n_held; i < n; i++) train->items[i - n_held] = d->items[idx[i]];
    free(idx);
    free(d->items);
    gkd_text_format_free(&d->fmt);
    d->items = NULL;
    d->n = 0;
    return GKD_OK;
}

void gkd_token_dataset_free(gkd_token_dataset *d) {
    if (!d) return;
    for (int i = 0; i < d->n; i++) free(d->rows[i].ids);
    free(d->rows);
    d->rows = NULL;
    d->n = 0;
}

/* Encodes s (NULL: nothing) with added tokens matched, for the template parts of a format. */
static gkd_status encode_format_part(const gkd_tokenizer *tok, const char *s, int **ids, int *n) {
    *ids = NULL;
    *n = 0;
    return s ? gkd_tokenizer_encode_special(tok, s, strlen(s), ids, n) : GKD_OK;
}

/* Appends n ids; an absent part (NULL, n = 0) appends nothing (memcpy must not see a NULL source). */
static int *put_ids(int *p, const int *ids, int n) {
    if (n > 0) memcpy(p, ids, (size_t)n * sizeof *p);
    return p + n;
}

gkd_status gkd_dataset_tokenize(const gkd_dataset *d, const gkd_tokenizer *tok, int max_prompt, int max_target,
                                gkd_token_dataset *out) {
    memset(out, 0, sizeof *out);
    if (max_prompt < 2 || max_target < 1)
        return gkd_error_set(GKD_ERR_ARG, "max_prompt must be >= 2 and max_target >= 1");
    int eos = gkd_tokenizer_role_id(tok, GKD_TOKEN_ROLE_EOS);
    if (eos < 0) return gkd_error_set(GKD_ERR_ARG, "tokenizer has no end-of-sequence token");
    const gkd_text_format *fmt = &d->fmt;
    int *pre = NULL, *suf = NULL, *term = NULL, npre = 0, nsuf = 0, nterm = 0;
    gkd_status st = encode_format_part(tok, fmt->prompt_prefix, &pre, &npre);
    if (st == GKD_OK) st = encode_format_part(tok, fmt->prompt_suffix, &suf, &nsuf);
    if (st == GKD_OK) st = encode_format_part(tok, fmt->terminator, &term, &nterm);
    int add_eos = !(nterm > 0 && term[nterm - 1] == eos);
    if (st == GKD_OK && nterm + add_eos > max_target)
        st = gkd_error_set(GKD_ERR_ARG, "the terminator \"%s\" (%d tokens) does not fit in max_target %d",
                           fmt->terminator, nterm, max_target);
    if (st == GKD_OK && !(out->rows = calloc((size_t)(d->n > 0 ? d->n : 1), sizeof *out->rows)))
        st = gkd_error_set(GKD_ERR_NOMEM, "out of memory");
    size_t tp_len = fmt->target_prefix ? strlen(fmt->target_prefix) : 0;
    for (int i = 0; st == GKD_OK && i < d->n; i++) {
        const gkd_example *ex = &d->items[i];
        size_t plen = strlen(ex->prompt), cue = (size_t)ex->cue_len <= plen ? (size_t)ex->cue_len : 0;
        size_t tlen = strlen(ex->target);
        int *body = NULL, *cue_ids = NULL, *tgt = NULL, nb = 0, nc = 0, nt = 0;
        char *target = malloc(tp_len + tlen + 1);
        if (!target) st = gkd_error_set(GKD_ERR_NOMEM, "out of memory");
        if (st == GKD_OK) {
            if (tp_len) memcpy(target, fmt->target_prefix, tp_len);
            memcpy(target + tp_len, ex->target, tlen + 1);
            st = gkd_tokenizer_encode(tok, ex->prompt, plen - cue, &body, &nb);
        }
        if (st == GKD_OK) st = gkd_tokenizer_encode(tok, ex->prompt + plen - cue, cue, &cue_ids, &nc);
        if (st == GKD_OK) st = gkd_tokenizer_encode(tok, target, tp_len + tlen, &tgt, &nt);
        int kept = npre + nc + nsuf; /* prompt tokens never cut */
        if (st == GKD_OK && kept >= max_prompt)
            st = gkd_error_set(GKD_ERR_ARG, "prompt cue and template (%d tokens) longer than max_prompt", kept);
        if (st == GKD_OK && nb + kept == 0)
            st = gkd_error_set(GKD_ERR_ARG, "the prompt \"%s\" encodes to no tokens; generation needs one",
                               ex->prompt);
        free(target);
        gkd_tokenized *row = &out->rows[i];
        if (st == GKD_OK) {
            if (nb + kept > max_prompt) nb = max_prompt - kept;
            if (nt > max_target - nterm - add_eos) nt = max_target - nterm - add_eos;
            row->prompt_len = npre + nb + nc + nsuf;
            row->len = row->prompt_len + nt + nterm + add_eos;
            row->ids = malloc((size_t)row->len * sizeof *row->ids);
            out->n = i + 1;
            if (!row->ids) st = gkd_error_set(GKD_ERR_NOMEM, "out of memory");
        }
        if (st == GKD_OK) {
            int *p = row->ids;
            p = put_ids(p, pre, npre);
            p = put_ids(p, body, nb);
            p = put_ids(p, cue_ids, nc);
            p = put_ids(p, suf, nsuf);
            p = put_ids(p, tgt, nt);
            p = put_ids(p, term, nterm);
            if (add_eos) *p = eos;
        }
        free(body);
        free(cue_ids);
        free(tgt);
        if (st != GKD_OK && st != GKD_ERR_NOMEM) st = gkd_error_prefix(st, "example %d", i);
    }
    free(pre);
    free(suf);
    free(term);
    if (st != GKD_OK) gkd_token_dataset_free(out);
    return st;
}

static gkd_status batch_reserve(gkd_batch *batch, int B, int T) {
    if (B <= batch->cap_rows && T <= batch->cap_t) return GKD_OK;
    int rows = B > batch->cap_rows ? B : batch->cap_rows, t = T > batch->cap_t ? T : batch->cap_t;
    size_t n = (size_t)rows * (size_t)t;
    int *tokens = realloc(batch->tokens, n * sizeof *tokens);
    if (tokens) batch->tokens = tokens;
    int *targets = realloc(batch->targets, n * sizeof *targets);
    if (targets) batch->targets = targets;
    float *mask = realloc(batch->mask, n * sizeof *mask);
    if (mask) batch->mask = mask;
    int *pl = realloc(batch->prompt_lens, (size_t)rows * sizeof *pl);
    if (pl) batch->prompt_lens = pl;
    int *lens = realloc(batch->lens, (size_t)rows * sizeof *lens);
    if (lens) batch->lens = lens;
    if (!tokens || !targets || !mask || !pl || !lens) return gkd_error_set(GKD_ERR_NOMEM, "out of memory (batch)");
    batch->cap_rows = rows;
    batch->cap_t = t;
    return GKD_OK;
}

/* Lays out one row: ids[0..len) with the target starting at prompt_len. */
static void batch_fill_row(gkd_batch *batch, int b, const int *prompt, int prompt_len, const int *output,
                           int output_len, int pad_id) {
    int T = batch->T, len = prompt_len + output_len;
    int *tok = batch->tokens + (size_t)b * T, *tgt = batch->targets + (size_t)b * T;
    float *mask = batch->mask + (size_t)b * T;
    for (int t = 0; t < T; t++) {
        int cur = t < len ? (t < prompt_len ? prompt[t] : output[t - prompt_len]) : pad_id;
        int next_pos = t + 1;
        int next = next_pos < len ? (next_pos < prompt_len ? prompt[next_pos] : output[next_pos - prompt_len]) : pad_id;
        tok[t] = cur;
        tgt[t] = next;
        mask[t] = (next_pos >= prompt_len && next_pos < len) ? 1.0f : 0.0f;
    }
    batch->prompt_lens[b] = prompt_len;
    batch->lens[b] = len;
}

/* Row b is its prompt followed by a continuation: out_tokens + b * out_stride (out_lens[b] tokens) when
 * out_tokens is given, else the row's own target. */
static gkd_status batch_lay_out(gkd_batch *batch, const gkd_token_dataset *d, const int *idx, int B,
                                const int *out_tokens, const int *out_lens, int out_stride, int pad_id) {
    int T = 1;
    for (int b = 0; b < B; b++) {
        const gkd_tokenized *r = &d->rows[idx[b]];
        int len = r->prompt_len + (out_tokens ? out_lens[b] : r->len - r->prompt_len);
        if (len - 1 > T) T = len - 1;
    }
    gkd_status st = batch_reserve(batch, B, T);
    if (st != GKD_OK) return st;
    batch->B = B;
    batch->T = T;
    for (int b = 0; b < B; b++) {
        const gkd_tokenized *r = &d->rows[idx[b]];
        const int *cont = out_tokens ? out_tokens + (size_t)b * out_stride : r->ids + r->prompt_len;
        int cont_len = out_tokens ? out_lens[b] : r->len - r->prompt_len;
        batch_fill_row(batch, b, r->ids, r->prompt_len, cont, cont_len, pad_id);
    }
    return GKD_OK;
}

gkd_status gkd_batch_make(gkd_batch *batch, const gkd_token_dataset *d, const int *idx, int B, int pad_id) {
    return batch_lay_out(batch, d, idx, B, NULL, NULL, 0, pad_id);
}

gkd_status gkd_batch_make_generated(gkd_batch *batch, const gkd_token_dataset *d, const int *idx, int B,
                                    const int *out_tokens, const int *out_lens, int out_stride, int pad_id) {
    return batch_lay_out(batch, d, idx, B, out_tokens, out_lens, out_stride, pad_id);
}

void gkd_batch_free(gkd_batch *batch) {
    if (!batch) return;
    free(batch->tokens);
    free(batch->targets);
    free(batch->mask);
    free(batch->prompt_lens);
    free(batch->lens);
    memset(batch, 0, sizeof *batch);
}

static void order_shuffle_epoch(gkd_data_order *o, int64_t epoch) {
    for (int i = 0; i < o->n; i++) o->perm[i] = i;
    gkd_rng rng;
    gkd_rng_init(&rng, o->seed, GKD_RNG_STREAM_DATA | ((uint64_t)epoch << 32));
    gkd_rng_shuffle(&rng, o->perm, o->n);
}

gkd_status gkd_data_order_init(gkd_data_order *o, int n, uint64_t seed) {
    if (n <= 0) return gkd_error_set(GKD_ERR_ARG, "empty dataset");
    o->n = n;
    o->seed = seed;
    o->position = 0;
    o->perm = malloc((size_t)n * sizeof *o->perm);
    if (!o->perm) return gkd_error_set(GKD_ERR_NOMEM, "out of memory");
    order_shuffle_epoch(o, 0);
    return GKD_OK;
}

void gkd_data_order_seek(gkd_data_order *o, int64_t position) {
    o->position = position;
    order_shuffle_epoch(o, position / o->n);
}

void gkd_data_order_next(gkd_data_order *o, int *idx, int B) {
    for (int b = 0; b < B; b++) {
        idx[b] = o->perm[o->position % o->n];
        o->position++;
        if (o->position % o->n == 0) order_shuffle_epoch(o, o->position / o->n);
    }
}

void gkd_data_order_free(gkd_data_order *o) {
    if (!o) return;
    free(o->perm);
    o->perm = NULL;
}
