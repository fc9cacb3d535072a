/* Reading and writing Hugging Face tokenizer.json, and building a tokenizer from vocabulary and merge
 * arrays (GGUF metadata).
 * Rules: only what changes the ids is read; a field that would change them in a way the tokenizer does not
 * implement is refused with its name rather than ignored; the writer puts one entry per line. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/text/tokenizer_internal.h"

/* ---------------------------------------------------------------------------------------------------
 * tokenizer.json. Only what changes the ids is read; a field that would change them in a way this file
 * does not implement (a normalizer, byte_fallback, lstrip on an added token, an unknown split pattern)
 * is refused with its name rather than ignored. */

static const char pattern_gpt2[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char pattern_llama3[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char pattern_qwen2[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
                                    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static gkd_status bad(const char *where, const char *field, const char *what) {
    return gkd_error_set(GKD_ERR_FORMAT, "%s: %s: %s", where, field, what);
}

static int is_null(const gkd_json *v) {
    return !v || v->type == GKD_JSON_NULL;
}

/* Reads an optional boolean member (absent or null gives fallback). */
static gkd_status get_bool(const gkd_json *obj, const char *key, int fallback, const char *where,
                           const char *field, int *out) {
    const gkd_json *v = gkd_json_get(obj, key);
    *out = fallback;
    if (is_null(v)) return GKD_OK;
    if (v->type != GKD_JSON_BOOL)
        return gkd_error_set(GKD_ERR_FORMAT, "%s: %s.%s: not a boolean", where, field, key);
    *out = v->boolean;
    return GKD_OK;
}

/* A non-negative integer id that fits an int, or -1. */
static int json_id(const gkd_json *v) {
    if (!v || v->type != GKD_JSON_NUMBER || v->number < 0 || v->number > INT32_MAX - 1 ||
        v->number != (double)(int)v->number)
        return -1;
    return (int)v->number;
}

static int type_is(const gkd_json *v, const char *type) {
    const char *t = gkd_json_get_string(v, "type", NULL);
    return t && strcmp(t, type) == 0;
}

static gkd_status parse_step(gkd_tokenizer *tok, const gkd_json *v, const char *where, const char *field) {
    if (!v || v->type != GKD_JSON_OBJECT) return bad(where, field, "not an object");
    if (tok->n_steps == MAX_PRE_STEPS) return bad(where, field, "too many pre-tokenizer steps");
    pre_step *step = &tok->steps[tok->n_steps];
    gkd_status st;
    int flag;
    if (type_is(v, "ByteLevel")) {
        int prefix;
        if ((st = get_bool(v, "add_prefix_space", 0, where, field, &prefix)) != GKD_OK) return st;
        if (prefix)
            return gkd_error_set(GKD_ERR_FORMAT, "%s: %s.add_prefix_space: true is not supported", where,
                                 field);
        if ((st = get_bool(v, "use_regex", 1, where, field, &flag)) != GKD_OK) return st;
        *step = (pre_step){STEP_BYTE_LEVEL, flag};
    } else if (type_is(v, "Digits")) {
        if ((st = get_bool(v, "individual_digits", 0, where, field, &flag)) != GKD_OK) return st;
        *step = (pre_step){STEP_DIGITS, flag};
    } else if (type_is(v, "Split")) {
        const char *regex = gkd_json_get_string(gkd_json_get(v, "pattern"), "Regex", NULL);
        const char *behavior = gkd_json_get_string(v, "behavior", "");
        int invert;
        if ((st = get_bool(v, "invert", 0, where, field, &invert)) != GKD_OK) return st;
        if (!regex)
            return gkd_error_set(
                GKD_ERR_FORMAT, "%s: %s.pattern: only a {\"Regex\": ...} pattern is supported", where, field);
        if (strcmp(behavior, "Isolated") != 0 || invert)
            return gkd_error_set(GKD_ERR_FORMAT,
                                 "%s: %s.behavior: only \"Isolated\" without invert is supported", where,
                                 field);
        if (strcmp(regex, pattern_gpt2) == 0)
            *step = (pre_step){STEP_SPLIT_GPT2, 0};
        else if (strcmp(regex, pattern_llama3) == 0)
            *step = (pre_step){STEP_SPLIT_LLAMA3, 0};
        else if (strcmp(regex, pattern_qwen2) == 0)
            *step = (pre_step){STEP_SPLIT_QWEN2, 0};
        else
            return gkd_error_set(
                GKD_ERR_FORMAT,
                "%s: %s.pattern: unsupported regex (the GPT-2, Llama-3 and Qwen2 patterns are)", where,
                field);
    } else {
        const char *type = gkd_json_get_string(v, "type", "(none)");
        return gkd_error_set(GKD_ERR_FORMAT,
                             "%s: %s.type: \"%s\" is not supported (ByteLevel, Split, Digits are)", where,
                             field, type);
    }
    tok->n_steps++;
    return GKD_OK;
}

static gkd_status parse_pre_tokenizer(gkd_tokenizer *tok, const gkd_json *v, const char *where) {
    if (is_null(v)) return bad(where, "pre_tokenizer", "missing (a byte-level BPE needs a ByteLevel step)");
    gkd_status st;
    if (type_is(v, "Sequence")) {
        const gkd_json *list = gkd_json_get(v, "pretokenizers");
        if (!list || list->type != GKD_JSON_ARRAY)
            return bad(where, "pre_tokenizer.pretokenizers", "not an array");
        tok->steps_in_sequence = 1;
        for (size_t i = 0; i < list->len; i++) {
            char field[64];
            snprintf(field, sizeof field, "pre_tokenizer.pretokenizers[%zu]", i);
            if ((st = parse_step(tok, list->items[i], where, field)) != GKD_OK) return st;
        }
    } else if ((st = parse_step(tok, v, where, "pre_tokenizer")) != GKD_OK) {
        return st;
    }
    /* After ByteLevel the text is in its alphabet (a space is "Ġ", a letter), so later splits would see
     * different classes; every known tokenizer puts it last. */
    for (int k = 0; k < tok->n_steps; k++)
        if ((tok->steps[k].kind == STEP_BYTE_LEVEL) != (k == tok->n_steps - 1))
            return bad(where, "pre_tokenizer", "exactly one ByteLevel step, the last, is supported");
    return GKD_OK;
}

static gkd_status check_model(const gkd_json *model, const char *where, int *ignore_merges) {
    if (!model || model->type != GKD_JSON_OBJECT) return bad(where, "model", "missing or not an object");
    if (!type_is(model, "BPE")) return bad(where, "model.type", "not \"BPE\"");
    int flag;
    gkd_status st;
    if ((st = get_bool(model, "byte_fallback", 0, where, "model", &flag)) != GKD_OK) return st;
    if (flag)
        return bad(where, "model.byte_fallback",
                   "true is not supported (byte-level BPE has no unknown bytes)");
    if ((st = get_bool(model, "ignore_merges", 0, where, "model", ignore_merges)) != GKD_OK) return st;
    if (!is_null(gkd_json_get(model, "dropout")))
        return bad(where, "model.dropout", "only null is supported");
    const char *affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int k = 0; k < 2; k++) {
        const gkd_json *v = gkd_json_get(model, affixes[k]);
        if (!is_null(v) && (v->type != GKD_JSON_STRING || v->len))
            return gkd_error_set(GKD_ERR_FORMAT, "%s: model.%s: only null is supported", where, affixes[k]);
    }
    return GKD_OK;
}

/* Fills the token table from model.vocab and added_tokens. */
static gkd_status read_tokens(gkd_tokenizer *tok, const gkd_json *vocab, const gkd_json *added,
                              const char *where) {
    if (!vocab || vocab->type != GKD_JSON_OBJECT)
        return bad(where, "model.vocab", "missing or not an object");
    if (!is_null(added) && added->type != GKD_JSON_ARRAY) return bad(where, "added_tokens", "not an array");
    size_t n_added = is_null(added) ? 0 : added->len;
    char field[64];
    /* Dense ids: no id can reach past the number of entries, which also bounds the allocation. */
    size_t n_entries = vocab->len + n_added;
    int max_id = -1;
    for (size_t i = 0; i < vocab->len; i++) {
        int id = json_id(vocab->items[i]);
        if (id < 0)
            return gkd_error_set(GKD_ERR_FORMAT, "%s: model.vocab: \"%s\": id is not a non-negative integer",
                                 where, vocab->keys[i]);
        if (id > max_id) max_id = id;
    }
    for (size_t i = 0; i < n_added; i++) {
        snprintf(field, sizeof field, "added_tokens[%zu]", i);
        const gkd_json *t = added->items[i];
        const gkd_json *content = gkd_json_get(t, "content");
        int id = json_id(gkd_json_get(t, "id"));
        if (t->type != GKD_JSON_OBJECT || id < 0)
            return bad(where, field, "needs a non-negative integer \"id\"");
        if (!content || content->type != GKD_JSON_STRING || !content->len)
            return bad(where, field, "needs a non-empty string \"content\"");
        const char *unsupported[] = {"lstrip", "rstrip", "single_word"};
        for (int k = 0; k < 3; k++) {
            int flag;
            gkd_status st = get_bool(t, unsupported[k], 0, where, field, &flag);
            if (st != GKD_OK) return st;
            if (flag)
                return gkd_error_set(GKD_ERR_FORMAT, "%s: %s.%s: true is not supported", where, field,
                                     unsupported[k]);
        }
        if (id > max_id) max_id = id;
    }
    if ((size_t)max_id >= n_entries)
        return gkd_error_set(GKD_ERR_FORMAT, "%s: model.vocab: id %d leaves gaps (%zu tokens in all)", where,
                             max_id, n_entries);
    tok->n_tokens = max_id + 1;
    tok->tokens = calloc((size_t)tok->n_tokens + 1, sizeof *tok->tokens);
    tok->added = malloc((n_added + 1) * sizeof *tok->added);
    char *no_bytes = calloc((size_t)tok->n_tokens + 1, 1); /* vocab strings outside the alphabet */
    size_t cap_bytes = 1024;
    unsigned char *bytes = malloc(cap_bytes);
    gkd_status st = GKD_OK;
    if (!tok->tokens || !tok->added || !no_bytes || !bytes) st = gkd_tok_out_of_memory("loading");
    for (size_t i = 0; i < vocab->len && st == GKD_OK; i++) {
        int id = json_id(vocab->items[i]);
        const char *key = vocab->keys[i];
        size_t key_len = strlen(key);
        token *t = &tok->tokens[id];
        if (t->str) {
            st = gkd_error_set(GKD_ERR_FORMAT, "%s: model.vocab: id %d is given to \"%s\" and \"%s\"", where,
                               id, t->str, key);
        } else if (!gkd_tok_reserve((void **)&bytes, &cap_bytes, key_len + 1, 1)) {
            st = gkd_tok_out_of_memory("loading");
        } else {
            long n = gkd_tok_str_to_bytes(key, key_len, bytes);
            no_bytes[id] = n < 0;
            if (!gkd_tok_set_token(t, n >= 0 ? (const char *)bytes : "", n >= 0 ? (size_t)n : 0, key,
                                   key_len))
                st = gkd_tok_out_of_memory("loading");
            t->in_vocab = 1;
        }
    }
    for (size_t i = 0; i < n_added && st == GKD_OK; i++) {
        snprintf(field, sizeof field, "added_tokens[%zu]", i);
        const gkd_json *a = added->items[i];
        const gkd_json *content = gkd_json_get(a, "content");
        int id = json_id(gkd_json_get(a, "id")), special, normalized;
        if ((st = get_bool(a, "special", 0, where, field, &special)) != GKD_OK) break;
        if ((st = get_bool(a, "normalized", !special, where, field, &normalized)) != GKD_OK) break;
        token *t = &tok->tokens[id];
        if (t->added) {
            st = gkd_error_set(GKD_ERR_FORMAT, "%s: %s: id %d is listed twice", where, field, id);
            break;
        }
        if (t->str && (t->str_len != content->len || memcmp(t->str, content->string, t->str_len) != 0)) {
            st = gkd_error_set(GKD_ERR_FORMAT, "%s: %s: id %d is \"%s\" in model.vocab but \"%s\" here",
                               where, field, id, t->str, content->string);
            break;
        }
        /* An added token decodes to its content, whatever its vocab string would decode to. */
        free(t->bytes);
        free(t->str);
        if (!gkd_tok_set_token(t, content->string, content->len, content->string, content->len)) {
            st = gkd_tok_out_of_memory("loading");
            break;
        }
        t->added = 1;
        t->special = (unsigned)special;
        t->normalized = (unsigned)normalized;
        tok->added[tok->n_added++] = id;
    }
    for (int id = 0; id < tok->n_tokens && st == GKD_OK; id++) {
        const token *t = &tok->tokens[id];
        if (!t->str)
            st = gkd_error_set(GKD_ERR_FORMAT, "%s: model.vocab: id %d is missing", where, id);
        else if (no_bytes[id] && !t->added)
            st = gkd_error_set(GKD_ERR_FORMAT,
                               "%s: model.vocab: \"%s\" has a character outside the byte-level "
                               "alphabet",
                               where, t->str);
    }
    free(no_bytes);
    free(bytes);
    return st;
}

/* The vocabulary id of a merge operand, or -1. */
static int vocab_id(const gkd_tokenizer *tok, const char *s, size_t len) {
    int id = gkd_tok_str_map_get(&tok->by_str, s, len);
    return id >= 0 && tok->tokens[id].in_vocab ? id : -1;
}

/* Appends the merge (left, right) at the next rank; `joined` is scratch. Errors name where, field and the
 * vocabulary (vocab_name). */
static gkd_status add_merge(gkd_tokenizer *tok, const char *left, size_t left_len, const char *right,
                            size_t right_len, gkd_buf *joined, const char *where, const char *field,
                            const char *vocab_name) {
    int a = vocab_id(tok, left, left_len), b = vocab_id(tok, right, right_len);
    joined->len = 0;
    gkd_buf_put(joined, left, left_len);
    gkd_buf_put(joined, right, right_len);
    if (joined->failed) return gkd_tok_out_of_memory("loading");
    int c = vocab_id(tok, joined->data, joined->len);
    if (a < 0 || b < 0 || c < 0) {
        const char *missing = a < 0 ? left : b < 0 ? right : joined->data;
        size_t missing_len = a < 0 ? left_len : b < 0 ? right_len : joined->len;
        return gkd_error_set(GKD_ERR_FORMAT, "%s: %s: \"%.*s\" is not in %s", where, field, (int)missing_len,
                             missing, vocab_name);
    }
    tok->merges[tok->n_merges++] = (merge){a, b, c};
    return GKD_OK;
}

static gkd_status read_merges(gkd_tokenizer *tok, const gkd_json *merges, const char *where) {
    if (!merges || merges->type != GKD_JSON_ARRAY)
        return bad(where, "model.merges", "missing or not an array");
    tok->merges = malloc((merges->len + 1) * sizeof *tok->merges);
    if (!tok->merges) return gkd_tok_out_of_memory("loading");
    gkd_buf joined = {0};
    gkd_status st = GKD_OK;
    char field[64];
    for (size_t i = 0; i < merges->len && st == GKD_OK; i++) {
        snprintf(field, sizeof field, "model.merges[%zu]", i);
        const gkd_json *m = merges->items[i];
        const char *left = NULL, *right = NULL;
        size_t left_len = 0, right_len = 0;
        if (m->type == GKD_JSON_STRING) {
            /* "a b": byte-level strings never hold a space, so the one space separates the operands. */
            const char *space = memchr(m->string, ' ', m->len);
            if (space && !memchr(space + 1, ' ', m->len - (size_t)(space + 1 - m->string))) {
                left = m->string, left_len = (size_t)(space - m->string);
                right = space + 1, right_len = m->len - left_len - 1;
            }
        } else if (m->type == GKD_JSON_ARRAY && m->len == 2 && m->items[0]->type == GKD_JSON_STRING &&
                   m->items[1]->type == GKD_JSON_STRING) {
            left = m->items[0]->string, left_len = m->items[0]->len;
            right = m->items[1]->string, right_len = m->items[1]->len;
        }
        if (!left) {
            st = bad(where, field, "neither \"left right\" nor [\"left\", \"right\"]");
            break;
        }
        st = add_merge(tok, left, left_len, right, right_len, &joined, where, field, "model.vocab");
    }
    gkd_buf_free(&joined);
    return st;
}

static gkd_status from_tree(const gkd_json *root, const char *where, gkd_tokenizer **out) {
    if (!root || root->type != GKD_JSON_OBJECT) return bad(where, "(top level)", "not an object");
    const gkd_json *normalizer = gkd_json_get(root, "normalizer");
    if (!is_null(normalizer)) return bad(where, "normalizer", "only null is supported");
    const gkd_json *decoder = gkd_json_get(root, "decoder");
    if (!is_null(decoder) && !type_is(decoder, "ByteLevel"))
        return bad(where, "decoder.type", "only ByteLevel (or null) is supported");
    const gkd_json *model = gkd_json_get(root, "model");
    int ignore_merges = 0;
    gkd_status st = check_model(model, where, &ignore_merges);
    if (st != GKD_OK) return st;
    gkd_tokenizer *tok = calloc(1, sizeof *tok);
    if (!tok) return gkd_tok_out_of_memory("loading");
    tok->ignore_merges = ignore_merges;
    st = parse_pre_tokenizer(tok, gkd_json_get(root, "pre_tokenizer"), where);
    if (st == GKD_OK)
        st = read_tokens(tok, gkd_json_get(model, "vocab"), gkd_json_get(root, "added_tokens"), where);
    if (st == GKD_OK) st = gkd_tok_index_tokens(tok, where);
    if (st == GKD_OK) st = read_merges(tok, gkd_json_get(model, "merges"), where);
    if (st == GKD_OK) st = gkd_tok_index_merges_and_added(tok);
    if (st != GKD_OK) {
        gkd_tokenizer_free(tok);
        return st;
    }
    *out = tok;
    return GKD_OK;
}

gkd_status gkd_tokenizer_from_json(const char *text, size_t len, const char *where, gkd_tokenizer **out) {
    if (!text || !out) return gkd_error_set(GKD_ERR_ARG, "tokenizer from_json: NULL argument");
    if (!where) where = "tokenizer.json";
    gkd_json *root = NULL;
    gkd_status st = gkd_json_parse(text, len, where, &root);
    if (st == GKD_OK) st = from_tree(root, where, out);
    gkd_json_free(root);
    return st;
}

gkd_status gkd_tokenizer_load(const char *path, gkd_tokenizer **out) {
    if (!path || !out) return gkd_error_set(GKD_ERR_ARG, "tokenizer load: NULL argument");
    gkd_json *root = NULL;
    gkd_status st = gkd_json_parse_file(path, &root);
    if (st == GKD_OK) st = from_tree(root, path, out);
    gkd_json_free(root);
    return st;
}

/* ---------------------------------------------------------------------------------------------------
 * A tokenizer from vocabulary and merge arrays (GGUF metadata). The same checks as tokenizer.json:
 * dense ids, every byte present, merges of known tokens; the pre-tokenizer is a named layout. */

/* The steps of each named layout; the layouts of more than one step are written as a Sequence. */
static const struct {
    pre_step steps[2];
    int n_steps;
} layouts[] = {
    [GKD_PRETOKENIZER_GPT2] = {{{STEP_BYTE_LEVEL, 1}}, 1},
    [GKD_PRETOKENIZER_LLAMA3] = {{{STEP_SPLIT_LLAMA3, 0}, {STEP_BYTE_LEVEL, 0}}, 2},
    [GKD_PRETOKENIZER_QWEN2] = {{{STEP_SPLIT_QWEN2, 0}, {STEP_BYTE_LEVEL, 0}}, 2},
    [GKD_PRETOKENIZER_STARCODER] = {{{STEP_DIGITS, 1}, {STEP_BYTE_LEVEL, 1}}, 2},
};

static void set_layout(gkd_tokenizer *tok, gkd_pretokenizer layout) {
    for (int k = 0; k < layouts[layout].n_steps; k++) tok->steps[tok->n_steps++] = layouts[layout].steps[k];
    tok->steps_in_sequence = layouts[layout].n_steps > 1;
}

/* Fills token `id` from its vocabulary string s[0..len). */
static gkd_status vocab_token(gkd_tokenizer *tok, int id, const char *s, size_t len, gkd_token_kind kind,
                              unsigned char *bytes, const char *where, const char *field) {
    token *t = &tok->tokens[id];
    long n = gkd_tok_str_to_bytes(s, len, bytes);
    if (kind == GKD_TOKEN_KIND_NORMAL) {
        if (n < 0)
            return gkd_error_set(GKD_ERR_FORMAT,
                                 "%s: %s[%d]: \"%.*s\" has a character outside the byte-level alphabet",
                                 where, field, id, (int)len, s);
        if (!gkd_tok_set_token(t, (const char *)bytes, (size_t)n, s, len))
            return gkd_tok_out_of_memory("loading");
        t->in_vocab = 1;
        return GKD_OK;
    }
    if (len == 0)
        return gkd_error_set(GKD_ERR_FORMAT, "%s: %s[%d]: an added token is empty", where, field, id);
    if (!gkd_tok_set_token(t, s, len, s, len)) return gkd_tok_out_of_memory("loading");
    /* An added token written in the alphabet's self-standing characters ("<|im_end|>") is also a vocabulary
     * entry, as in the tokenizer.json files such vocabularies are converted from. */
    t->in_vocab = n == (long)len && memcmp(bytes, s, len) == 0;
    t->added = 1;
    t->special = kind == GKD_TOKEN_KIND_SPECIAL;
    t->normalized = !t->special;
    tok->added[tok->n_added++] = id;
    return GKD_OK;
}

gkd_status gkd_tokenizer_from_vocab(const gkd_tokenizer_vocab *v, const char *where, gkd_tokenizer **out) {
    if (!v || !out || v->n_tokens < 0 || v->n_merges < 0 || (!v->tokens && v->n_tokens > 0) ||
        (!v->merges && v->n_merges > 0) || v->pre_tokenizer < GKD_PRETOKENIZER_GPT2 ||
        v->pre_tokenizer > GKD_PRETOKENIZER_STARCODER)
        return gkd_error_set(GKD_ERR_ARG, "tokenizer from_vocab: bad argument");
    if (!where) where = "vocabulary";
    const char *tokens_field = v->tokens_field ? v->tokens_field : "tokens";
    const char *merges_field = v->merges_field ? v->merges_field : "merges";
    gkd_tokenizer *tok = calloc(1, sizeof *tok);
    if (!tok) return gkd_tok_out_of_memory("loading");
    set_layout(tok, v->pre_tokenizer);
    tok->ignore_merges = v->ignore_merges != 0;
    tok->n_tokens = v->n_tokens;
    tok->tokens = calloc((size_t)v->n_tokens + 1, sizeof *tok->tokens);
    tok->added = malloc(((size_t)v->n_tokens + 1) * sizeof *tok->added);
    tok->merges = malloc(((size_t)v->n_merges + 1) * sizeof *tok->merges);
    size_t cap_bytes = 64;
    unsigned char *bytes = malloc(cap_bytes);
    gkd_buf joined = {0};
    gkd_status st = GKD_OK;
    if (!tok->tokens || !tok->added || !tok->merges || !bytes) st = gkd_tok_out_of_memory("loading");
    for (int id = 0; id < v->n_tokens && st == GKD_OK; id++) {
        size_t len = v->token_lens ? v->token_lens[id] : strlen(v->tokens[id]);
        gkd_token_kind kind = v->kinds ? v->kinds[id] : GKD_TOKEN_KIND_NORMAL;
        if (kind < GKD_TOKEN_KIND_NORMAL || kind > GKD_TOKEN_KIND_ADDED)
            st = gkd_error_set(GKD_ERR_ARG, "%s: %s[%d]: unknown token kind %d", where, tokens_field, id,
                               kind);
        else if (!gkd_tok_reserve((void **)&bytes, &cap_bytes, len + 1, 1))
            st = gkd_tok_out_of_memory("loading");
        else
            st = vocab_token(tok, id, v->tokens[id], len, kind, bytes, where, tokens_field);
    }
    if (st == GKD_OK) st = gkd_tok_index_tokens(tok, where);
    for (int r = 0; r < v->n_merges && st == GKD_OK; r++) {
        char field[64];
        snprintf(field, sizeof field, "%s[%d]", merges_field, r);
        const char *m = v->merges[r];
        size_t len = v->merge_lens ? v->merge_lens[r] : strlen(m);
        const char *space = memchr(m, ' ', len);
        if (!space || memchr(space + 1, ' ', len - (size_t)(space + 1 - m)))
            st = gkd_error_set(GKD_ERR_FORMAT, "%s: %s: \"%.*s\" is not \"left right\"", where, field,
                               (int)len, m);
        else
            st = add_merge(tok, m, (size_t)(space - m), space + 1, len - (size_t)(space - m) - 1, &joined,
                           where, field, tokens_field);
    }
    if (st == GKD_OK) st = gkd_tok_index_merges_and_added(tok);
    free(bytes);
    gkd_buf_free(&joined);
    if (st != GKD_OK) {
        gkd_tokenizer_free(tok);
        return st;
    }
    *out = tok;
    return GKD_OK;
}

static void write_step(gkd_buf *b, const pre_step *s) {
    switch (s->kind) {
    case STEP_BYTE_LEVEL:
        gkd_buf_printf(b,
                       "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, "
                       "\"use_regex\": %s}",
                       s->flag ? "true" : "false");
        break;
    case STEP_DIGITS:
        gkd_buf_printf(b, "{\"type\": \"Digits\", \"individual_digits\": %s}", s->flag ? "true" : "false");
        break;
    case STEP_SPLIT_GPT2:
    case STEP_SPLIT_LLAMA3:
    case STEP_SPLIT_QWEN2: {
        const char *p = s->kind == STEP_SPLIT_GPT2     ? pattern_gpt2
                        : s->kind == STEP_SPLIT_LLAMA3 ? pattern_llama3
                                                       : pattern_qwen2;
        gkd_buf_puts(b, "{\"type\": \"Split\", \"pattern\": {\"Regex\": ");
        gkd_buf_json_string(b, p, strlen(p));
        gkd_buf_puts(b, "}, \"behavior\": \"Isolated\", \"invert\": false}");
        break;
    }
    }
}

/* One member per line and one vocabulary entry or merge per line, so that files diff well. */
gkd_status gkd_tokenizer_to_json(const gkd_tokenizer *tok, gkd_buf *b) {
    if (!tok || !b) return gkd_error_set(GKD_ERR_ARG, "tokenizer to_json: NULL argument");
    for (int r = 0; r < tok->n_merges; r++) {
        const token *l = &tok->tokens[tok->merges[r].left], *rt = &tok->tokens[tok->merges[r].right];
        if (memchr(l->str, ' ', l->str_len) || memchr(rt->str, ' ', rt->str_len))
            return gkd_error_set(GKD_ERR_ARG, "tokenizer to_json: merge %d has an operand with a space", r);
    }
    gkd_buf_puts(b, "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n"
                    "  \"added_tokens\": [");
    for (int k = 0; k < tok->n_added; k++) {
        const token *t = &tok->tokens[tok->added[k]];
        gkd_buf_printf(b, "%s\n    {\"id\": %d, \"content\": ", k ? "," : "", tok->added[k]);
        gkd_buf_json_string(b, t->bytes, t->len);
        gkd_buf_printf(b,
                       ", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": %s, "
                       "\"special\": %s}",
                       t->normalized ? "true" : "false", t->special ? "true" : "false");
    }
    gkd_buf_puts(b, tok->n_added ? "\n  ],\n" : "],\n");
    gkd_buf_puts(b, "  \"normalizer\": null,\n  \"pre_tokenizer\": ");
    if (tok->steps_in_sequence) {
        gkd_buf_puts(b, "{\"type\": \"Sequence\", \"pretokenizers\": [");
        for (int k = 0; k < tok->n_steps; k++) {
            if (k) gkd_buf_puts(b, ", ");
            write_step(b, &tok->steps[k]);
        }
        gkd_buf_puts(b, "]}");
    } else {
        write_step(b, &tok->steps[0]);
    }
    gkd_buf_puts(
        b, ",\n  \"post_processor\": null,\n"
           "  \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, "
           "\"use_regex\": true},\n");
    gkd_buf_printf(
        b,
        "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": null,\n"
        "    \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n"
        "    \"fuse_unk\": false,\n    \"byte_fallback\": false,\n    \"ignore_merges\": %s,\n"
        "    \"vocab\": {",
        tok->ignore_merges ? "true" : "false");
    int first = 1;
    for (int id = 0; id < tok->n_tokens; id++) {
        const token *t = &tok->tokens[id];
        if (!t->in_vocab) continue;
        gkd_buf_puts(b, first ? "\n      " : ",\n      ");
        gkd_buf_json_string(b, t->str, t->str_len);
        gkd_buf_printf(b, ": %d", id);
        first = 0;
    }
    gkd_buf_puts(b, "\n    },\n    \"merges\": [");
    gkd_buf joined = {0};
    for (int r = 0; r < tok->n_merges; r++) {
        const token *l = &tok->tokens[tok->merges[r].left], *rt = &tok->tokens[tok->merges[r].right];
        joined.len = 0;
        gkd_buf_put(&joined, l->str, l->str_len);
        gkd_buf_put(&joined, " ", 1);
        gkd_buf_put(&joined, rt->str, rt->str_len);
        gkd_buf_puts(b, r ? ",\n      " : "\n      ");
        if (!joined.failed) gkd_buf_json_string(b, joined.data, joined.len);
        b->failed |= joined.failed;
    }
    gkd_buf_free(&joined);
    gkd_buf_puts(b, tok->n_merges ? "\n    ]\n  }\n}\n" : "]\n  }\n}\n");
    return b->failed ? gkd_tok_out_of_memory("writing tokenizer.json") : GKD_OK;
}

gkd_status gkd_tokenizer_save(const gkd_tokenizer *tok, const char *path) {
    if (!tok || !path) return gkd_error_set(GKD_ERR_ARG, "tokenizer save: NULL argument");
    gkd_buf b = {0};
    gkd_status st = gkd_tokenizer_to_json(tok, &b);
    if (st != GKD_OK) {
        gkd_buf_free(&b);
        return st;
    }
    FILE *f = fopen(path, "wb");
    if (!f) {
        gkd_buf_free(&b);
        return gkd_error_set(GKD_ERR_IO, "%s: cannot open for writing", path);
    }
    int ok = fwrite(b.data, 1, b.len, f) == b.len;
    ok = (fclose(f) == 0) && ok;
    gkd_buf_free(&b);
    return ok ? GKD_OK : gkd_error_set(GKD_ERR_IO, "%s: write failed", path);
}
