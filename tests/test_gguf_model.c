// ctest-labels: cpu
/* Models and tokenizers from GGUF (core/format/gguf_model.h) against references that share no code with gkd
 * (tests/fixtures/make_gguf_model_fixture.py, make_smollm2_reference.py):
 * - a tiny random Llama (2 layers, dim 32, grouped-query attention, untied, F32) gives the logits of a
 *   float64 numpy forward in Hugging Face's conventions; its tied, quantised twin (Q8_0, Q4_0, Q4_1, F16,
 *   BF16) gives the logits of the same forward on the dequantised weights;
 * - the tokenizer built from GGUF metadata encodes like the tokenizer.json route and like Hugging Face
 *   `tokenizers`, added and special tokens included; roles come from the metadata;
 * - files with one fault each (architecture, missing, misshapen or extra tensor, unsupported type, rope
 *   scaling, SentencePiece vocabulary, unknown pre-tokenizer) are refused with messages naming the file
 *   and the fault; so are bad vocabulary arrays given to gkd_tokenizer_from_vocab;
 * - Llama 3's rope scaling stored as rope_freqs.weight (make_gguf_llama3_fixture.py) is read: its
 *   parameters recovered, the logits those of a forward with the stored divisors; divisors of another
 *   shape are refused;
 * - when models/SmolLM2-135M-Instruct.Q4_1.gguf is present (tools/fetch-smollm2.sh; or the path in
 *   GKD_SMOLLM2_GGUF), the real teacher: configuration, tokenizer ids, logits of a chat prompt against a
 *   float64 llama.cpp-style forward on gguf-py-dequantised weights, and its greedy answer. Without the file
 *   that part says so and is left out; the rest still runs. */
#include "core/tensor/backend.h"
#include "core/format/checkpoint.h"
#include "core/format/gguf_model.h"
#include "core/base/json.h"
#include "core/tensor/sample.h"
#include "tests/check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FIXTURES GKD_SOURCE_DIR "/tests/fixtures/"
#define SMOLLM2_DEFAULT GKD_SOURCE_DIR "/models/SmolLM2-135M-Instruct.Q4_1.gguf"

/* Tiny model: float32 against the float64 reference over 2 layers, logits up to about 7 in size; measured
 * max error 2e-5, so 1e-4 x (1 + |logit|) leaves room for other summation orders, while a wrong or
 * transposed weight, a skipped norm or a wrong rope pairing is off by ~1. */
static const double TINY_TOL = 1e-4;

static gkd_json *load_json(const char *path) {
    gkd_json *j = NULL;
    if (gkd_json_parse_file(path, &j) != GKD_OK) {
        fprintf(stderr, "%s\n", gkd_error_message());
        exit(1);
    }
    return j;
}

/* A JSON array of integers as a malloc'd int array. */
static int *json_ints(const gkd_json *a, int *n) {
    *n = a ? (int)a->len : 0;
    int *out = malloc(((size_t)*n + 1) * sizeof *out);
    for (int i = 0; i < *n; i++) out[i] = (int)a->items[i]->number;
    return out;
}

static float *read_floats(const char *path, size_t n) {
    FILE *f = fopen(path, "rb");
    float *out = malloc(n * sizeof *out);
    size_t got = f ? fread(out, sizeof *out, n, f) : 0;
    int extra = f ? fgetc(f) != EOF : 0;
    if (f) fclose(f);
    if (got != n || extra) {
        fprintf(stderr, "%s: expected %zu floats\n", path, n);
        exit(1);
    }
    return out;
}

static int same_ids(const int *a, int na, const int *b, int nb) {
    return na == nb && (na == 0 || memcmp(a, b, (size_t)na * sizeof *a) == 0);
}

static void print_ids(const char *what, const int *ids, int n) {
    fprintf(stderr, "  %s:", what);
    for (int i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
    fputc('\n', stderr);
}

/* Logits (T, V) of tokens[0..T) as one row through a fresh KV cache. Caller frees. */
static float *prompt_logits(gkd_model *m, const int *tokens, int T) {
    int V = gkd_model_get_config(m)->vocab_size, pos0 = 0;
    gkd_kv_cache *c = NULL;
    float *logits = malloc((size_t)T * V * sizeof *logits);
    if (gkd_kv_cache_create(m, 1, T, &c) != GKD_OK ||
        gkd_model_forward_cached(m, c, tokens, &pos0, 1, T, logits)) {
        fprintf(stderr, "forward: %s\n", gkd_error_message());
        exit(1);
    }
    gkd_kv_cache_free(c);
    return logits;
}

/* ---------------------------------------------------------------------------------------------------
 * The tiny model. */

static void check_config(const gkd_model_config *c, const gkd_json *want, int tied) {
    CHECK(c->vocab_size == (int)gkd_json_get_number(want, "vocab_size", -1));
    CHECK(c->dim == (int)gkd_json_get_number(want, "dim", -1));
    CHECK(c->n_layers == (int)gkd_json_get_number(want, "n_layers", -1));
    CHECK(c->n_heads == (int)gkd_json_get_number(want, "n_heads", -1));
    CHECK(c->n_kv_heads == (int)gkd_json_get_number(want, "n_kv_heads", -1));
    CHECK(c->hidden_dim == (int)gkd_json_get_number(want, "hidden_dim", -1));
    CHECK(c->max_seq_len == (int)gkd_json_get_number(want, "max_seq_len", -1));
    CHECK(c->rope_theta == (float)gkd_json_get_number(want, "rope_theta", -1));
    CHECK(c->norm_eps == (float)gkd_json_get_number(want, "norm_eps", -1));
    CHECKF(c->tied_embeddings == tied, "tied_embeddings %d, expected %d", c->tied_embeddings, tied);
}

/* Loads a tiny variant and compares its prompt logits with the reference; returns them (caller frees). */
static float *check_tiny(const char *variant, int tied, const gkd_json *ref) {
    char path[512], logits_path[512];
    snprintf(path, sizeof path, FIXTURES "tiny-llama-%s.gguf", variant);
    snprintf(logits_path, sizeof logits_path, FIXTURES "tiny-llama-%s.logits", variant);
    gkd_model *m = NULL;
    gkd_tokenizer *tok = NULL;
    gkd_status st = gkd_gguf_model_load(path, gkd_backend_cpu(), &m, &tok);
    CHECKF(st == GKD_OK, "%s: %s", path, gkd_error_message());
    if (st != GKD_OK) return NULL;
    const gkd_json *cfg = gkd_json_get(ref, "config");
    check_config(gkd_model_get_config(m), cfg, tied);
    int T, V = gkd_model_get_config(m)->vocab_size;
    int *prompt = json_ints(gkd_json_get(ref, "prompt_ids"), &T);
    float *want = read_floats(logits_path, (size_t)T * V);
    float *got = prompt_logits(m, prompt, T);
    double max_err = 0;
    int bad = 0;
    for (size_t i = 0; i < (size_t)T * V; i++) {
        double err = fabs((double)got[i] - want[i]);
        if (err > max_err) max_err = err;
        bad += err > TINY_TOL * (1 + fabs(want[i]));
    }
    fprintf(stderr, "tiny-llama-%s: %d x %d logits, max |gkd - reference| = %.3g\n", variant, T, V, max_err);
    CHECKF(bad == 0, "tiny-llama-%s: %d logits off by more than %g (max %g)", variant, bad, TINY_TOL,
           max_err);

    /* The training path (forward_nograd + output projection) sees the same weights as the cached one. */
    const float *hidden = NULL;
    st = gkd_model_forward_nograd(m, prompt, 1, T, &hidden);
    CHECKF(st == GKD_OK, "%s", gkd_error_message());
    if (st == GKD_OK) {
        const float *w = gkd_model_output_weight(m);
        int C = gkd_model_get_config(m)->dim;
        double worst = 0;
        for (int t = 0; t < T; t++)
            for (int v = 0; v < V; v++) {
                double s = 0;
                for (int c = 0; c < C; c++) s += (double)hidden[(size_t)t * C + c] * w[(size_t)v * C + c];
                if (fabs(s - want[(size_t)t * V + v]) > worst) worst = fabs(s - want[(size_t)t * V + v]);
            }
        CHECKF(worst <= TINY_TOL * 10, "tiny-llama-%s: forward_nograd logits off by %g", variant, worst);
    }
    CHECK(gkd_tokenizer_role_id(tok, GKD_TOKEN_ROLE_BOS) == 1);
    CHECK(gkd_tokenizer_role_id(tok, GKD_TOKEN_ROLE_EOS) == 2);
    CHECK(gkd_tokenizer_role_id(tok, GKD_TOKEN_ROLE_PAD) == 2);
    free(prompt);
    free(want);
    gkd_model_free(m);
    gkd_tokenizer_free(tok);
    return got;
}

static void test_tiny_models(const gkd_json *ref) {
    float *f32 = check_tiny("f32", 0, ref);
    float *q = check_tiny("q", 1, ref);
    if (f32 && q) {
        /* The quantised, tied twin must really differ, or the two comparisons above prove one thing twice. */
        int T;
        int *prompt = json_ints(gkd_json_get(ref, "prompt_ids"), &T);
        size_t n = (size_t)T * (size_t)gkd_json_get_number(gkd_json_get(ref, "config"), "vocab_size", 0);
        double diff = 0;
        for (size_t i = 0; i < n; i++) diff = fmax(diff, fabs((double)f32[i] - q[i]));
        CHECKF(diff > 0.1, "the quantised tied model's logits are within %g of the F32 untied one's", diff);
        free(prompt);
    }
    free(f32);
    free(q);
}

/* ---------------------------------------------------------------------------------------------------
 * Tokenizers. */

static void encode_both(const gkd_tokenizer *tok, const char *text, int special, int **ids, int *n) {
    gkd_status st = special ? gkd_tokenizer_encode_special(tok, text, strlen(text), ids, n)
                            : gkd_tokenizer_encode(tok, text, strlen(text), ids, n);
    if (st != GKD_OK) {
        fprintf(stderr, "encode: %s\n", gkd_error_message());
        exit(1);
    }
}

static void test_tiny_tokenizer(const gkd_json *ref) {
    gkd_tokenizer *from_gguf = NULL, *from_json = NULL;
    CHECKF(gkd_gguf_model_load(FIXTURES "tiny-llama-q.gguf", NULL, NULL, &from_gguf) == GKD_OK, "%s",
           gkd_error_message());
    CHECKF(gkd_tokenizer_load(FIXTURES "tiny-llama.tokenizer.json", &from_json) == GKD_OK, "%s",
           gkd_error_message());
    if (!from_gguf || !from_json) {
        gkd_tokenizer_free(from_gguf);
        gkd_tokenizer_free(from_json);
        return;
    }
    int V = gkd_tokenizer_vocab_size(from_gguf);
    CHECK(V == gkd_tokenizer_vocab_size(from_json));
    int differ = 0;
    for (int id = 0; id < V && id < gkd_tokenizer_vocab_size(from_json); id++) {
        size_t la, lb;
        const char *a = gkd_tokenizer_token_bytes(from_gguf, id, &la),
                   *b = gkd_tokenizer_token_bytes(from_json, id, &lb);
        differ +=
            la != lb || memcmp(a, b, la) != 0 ||
            strcmp(gkd_tokenizer_token_str(from_gguf, id), gkd_tokenizer_token_str(from_json, id)) != 0 ||
            gkd_tokenizer_is_special(from_gguf, id) != gkd_tokenizer_is_special(from_json, id);
    }
    CHECKF(differ == 0, "%d tokens differ between the GGUF and tokenizer.json routes", differ);
    CHECK(gkd_tokenizer_is_special(from_gguf, 2) && !gkd_tokenizer_is_special(from_gguf, V - 1));

    const gkd_json *strings = gkd_json_get(ref, "strings");
    for (size_t i = 0; strings && i < strings->len; i++) {
        const char *text = gkd_json_get_string(strings->items[i], "text", "");
        int n_want, n_a, n_b, n_c, n_d;
        int *want = json_ints(gkd_json_get(strings->items[i], "ids"), &n_want), *a, *b, *c, *d;
        encode_both(from_gguf, text, 1, &a, &n_a);
        encode_both(from_json, text, 1, &b, &n_b);
        encode_both(from_gguf, text, 0, &c, &n_c);
        encode_both(from_json, text, 0, &d, &n_d);
        CHECKF(same_ids(a, n_a, want, n_want), "GGUF tokenizer, \"%s\": not the ids of `tokenizers`", text);
        CHECKF(same_ids(b, n_b, want, n_want), "tokenizer.json, \"%s\": not the ids of `tokenizers`", text);
        CHECKF(same_ids(c, n_c, d, n_d), "\"%s\" without special matching: the two routes differ", text);
        if (!same_ids(a, n_a, want, n_want)) {
            print_ids("gkd", a, n_a);
            print_ids("tokenizers", want, n_want);
        }
        char *back;
        size_t len;
        CHECK(gkd_tokenizer_decode(from_gguf, a, n_a, &back, &len) == GKD_OK && len == strlen(text) &&
              memcmp(back, text, len) == 0);
        free(back);
        free(want), free(a), free(b), free(c), free(d);
    }
    int n_prompt, n_ids, *ids;
    int *prompt = json_ints(gkd_json_get(ref, "prompt_ids"), &n_prompt);
    encode_both(from_gguf, gkd_json_get_string(ref, "prompt", ""), 1, &ids, &n_ids);
    CHECK(same_ids(ids, n_ids, prompt, n_prompt));
    free(ids);
    free(prompt);
    gkd_tokenizer_free(from_gguf);
    gkd_tokenizer_free(from_json);
}

/* gkd_tokenizer_from_vocab on its own: a working vocabulary, then one fault at a time. */
static void test_from_vocab(void) {
    enum { N = 256 + 3 };
    static char strs[N][8];
    const char *tokens[N];
    gkd_token_kind kinds[N];
    /* Byte b as its byte-level character: printable ASCII stands for itself, others moved past U+0100. */
    for (int b = 0; b < 256; b++) {
        unsigned cp = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE) ? (unsigned)b : 0;
        if (!cp) cp = b <= 0x20 ? 0x100u + b : b <= 0xA0 ? 0x100u + 33 + (b - 0x7F) : 0x143u;
        if (cp < 0x80)
            snprintf(strs[b], sizeof strs[b], "%c", (char)cp);
        else
            snprintf(strs[b], sizeof strs[b], "%c%c", (char)(0xC0 | (cp >> 6)), (char)(0x80 | (cp & 0x3F)));
        tokens[b] = strs[b];
        kinds[b] = GKD_TOKEN_KIND_NORMAL;
    }
    snprintf(strs[256], sizeof strs[256], "ab");
    snprintf(strs[257], sizeof strs[257], "<eos>");
    snprintf(strs[258], sizeof strs[258], "<x y>");
    for (int i = 256; i < N; i++) tokens[i] = strs[i];
    kinds[256] = GKD_TOKEN_KIND_NORMAL;
    kinds[257] = GKD_TOKEN_KIND_SPECIAL;
    kinds[258] = GKD_TOKEN_KIND_ADDED;
    const char *merges[] = {"a b"};
    gkd_tokenizer_vocab v = {.tokens = tokens,
                             .kinds = kinds,
                             .n_tokens = N,
                             .merges = merges,
                             .n_merges = 1,
                             .pre_tokenizer = GKD_PRETOKENIZER_GPT2};
    gkd_tokenizer *tok = NULL;
    CHECKF(gkd_tokenizer_from_vocab(&v, "vocab", &tok) == GKD_OK, "%s", gkd_error_message());
    if (tok) {
        int *ids, n;
        const char *text = "abab<eos> <x y>";
        CHECK(gkd_tokenizer_encode_special(tok, text, strlen(text), &ids, &n) == GKD_OK);
        int want[] = {256, 256, 257, ' ', 258};
        CHECK(same_ids(ids, n, want, 5));
        free(ids);
        CHECK(gkd_tokenizer_role_id(tok, GKD_TOKEN_ROLE_EOS) == 257);
        CHECK(gkd_tokenizer_token_id(tok, "<x y>") == 258);
        gkd_tokenizer_free(tok);
    }
    /* A vocabulary without a token for byte 'c' (real ones lack bytes their training text never had): the
     * byte is dropped and its neighbours merge across the gap, as Hugging Face's BPE does. */
    const char *lacking[N];
    memcpy(lacking, tokens, sizeof tokens);
    lacking['c'] = "cc";
    gkd_tokenizer_vocab partial = v;
    partial.tokens = lacking;
    tok = NULL;
    CHECKF(gkd_tokenizer_from_vocab(&partial, "vocab", &tok) == GKD_OK, "%s", gkd_error_message());
    if (tok) {
        int *ids, n;
        CHECK(gkd_tokenizer_encode(tok, "acb c", 5, &ids, &n) == GKD_OK && n == 2 && ids[0] == 256 &&
              ids[1] == ' ');
        free(ids);
        gkd_tokenizer_free(tok);
    }
    struct {
        const char *what, *needle;
    } faults[] = {
        {"a token outside the byte-level alphabet", "tokens[256]"},
        {"a merge of an unknown token", "merges[0]: \"zz\" is not in tokens"},
        {"a merge without a space", "merges[0]: \"ab\" is not \"left right\""},
        {"a duplicate string", "have the same string"},
    };
    for (int f = 0; f < 4; f++) {
        gkd_tokenizer_vocab bad = v;
        const char *bad_tokens[N];
        memcpy(bad_tokens, tokens, sizeof tokens);
        const char *bad_merges[] = {f == 1 ? "zz a" : "ab"};
        bad.tokens = bad_tokens;
        if (f == 0) bad_tokens[256] = "a b"; /* a plain space is not in the alphabet */
        if (f == 1 || f == 2) bad.merges = bad_merges;
        if (f == 3) bad_tokens[256] = "a";
        tok = (gkd_tokenizer *)1;
        gkd_status st = gkd_tokenizer_from_vocab(&bad, "vocab", &tok);
        const char *msg = gkd_error_message();
        CHECKF(st == GKD_ERR_FORMAT && strstr(msg, "vocab: ") == msg && strstr(msg, faults[f].needle),
               "%s: status %s, message \"%s\"", faults[f].what, gkd_status_name(st), msg);
    }
}

/* ---------------------------------------------------------------------------------------------------
 * Refused files. */

static void test_errors(const gkd_json *ref) {
    const gkd_json *errors = gkd_json_get(ref, "errors");
    CHECK(errors && errors->len == 8);
    for (size_t i = 0; errors && i < errors->len; i++) {
        const char *fault = errors->keys[i], *needle = errors->items[i]->string;
        char path[512];
        snprintf(path, sizeof path, FIXTURES "gguf-model-err-%s.gguf", fault);
        int tokenizer_fault = strcmp(fault, "spm") == 0 || strcmp(fault, "pre") == 0;
        gkd_model *m = (gkd_model *)1;
        gkd_tokenizer *tok = (gkd_tokenizer *)1;
        gkd_status st = tokenizer_fault ? gkd_gguf_model_load(path, gkd_backend_cpu(), NULL, &tok)
                                        : gkd_gguf_model_load(path, gkd_backend_cpu(), &m, NULL);
        const char *msg = gkd_error_message();
        CHECKF(st != GKD_OK && strstr(msg, path) && strstr(msg, needle),
               "%s: status %s, message \"%s\" (wanted it to name \"%s\")", fault, gkd_status_name(st), msg,
               needle);
        CHECK(tokenizer_fault ? tok == NULL : m == NULL);
        if (tokenizer_fault) {
            /* The same file's model is fine: the tokenizer is a separate, optional output. */
            st = gkd_gguf_model_load(path, gkd_backend_cpu(), &m, NULL);
            CHECKF(st == GKD_OK, "%s: %s", fault, gkd_error_message());
            gkd_model_free(st == GKD_OK ? m : NULL);
        }
    }
    gkd_model *m = (gkd_model *)1;
    CHECK(gkd_gguf_model_load(FIXTURES "no-such.gguf", gkd_backend_cpu(), &m, NULL) == GKD_ERR_IO &&
          m == NULL);
    CHECK(strstr(gkd_error_message(), "no-such.gguf") != NULL);
    CHECK(gkd_gguf_model_load(FIXTURES "tiny-llama-q.gguf", NULL, &m, NULL) == GKD_ERR_ARG);
    /* A GGUF with neither tokenizer nor Llama metadata (core/format/gguf.h's fixture). */
    gkd_tokenizer *tok = NULL;
    CHECK(gkd_gguf_model_load(FIXTURES "tiny-align64.gguf", NULL, NULL, &tok) == GKD_ERR_FORMAT && !tok);
    CHECK(strstr(gkd_error_message(), "tokenizer.ggml.model") != NULL);

    CHECK(gkd_gguf_file_is_gguf(FIXTURES "tiny-llama-q.gguf") == 1);
    CHECK(gkd_gguf_file_is_gguf(FIXTURES "tiny-llama.tokenizer.json") == 0);
    CHECK(gkd_gguf_file_is_gguf(FIXTURES "no-such.gguf") == 0);

    gkd_pretokenizer layout;
    int ignore = -1;
    CHECK(gkd_gguf_pretokenizer("smollm", &layout, &ignore) == GKD_OK &&
          layout == GKD_PRETOKENIZER_STARCODER && ignore == 0);
    CHECK(gkd_gguf_pretokenizer("llama-bpe", &layout, &ignore) == GKD_OK &&
          layout == GKD_PRETOKENIZER_LLAMA3 && ignore == 1);
    CHECK(gkd_gguf_pretokenizer("gpt-2", &layout, &ignore) == GKD_OK && layout == GKD_PRETOKENIZER_GPT2);
    CHECK(gkd_gguf_pretokenizer("qwen2", &layout, &ignore) == GKD_OK && layout == GKD_PRETOKENIZER_QWEN2);
    CHECK(gkd_gguf_pretokenizer("default", &layout, &ignore) == GKD_ERR_NOT_FOUND);
    CHECK(strstr(gkd_error_message(), "smollm") != NULL);
}

/* ---------------------------------------------------------------------------------------------------
 * The real teacher. Tolerance: 30 layers of float32 against float64 on the same dequantised weights;
 * measured max error 5e-5 (docs/real-models.md), so 2e-3 absolute leaves room for other summation orders
 * (threads, BLAS builds), while a wrong rope pairing or an un-permuted Q/K moves logits by whole units. */
static const double REAL_TOL = 2e-3;

static void test_smollm2(void) {
    const char *path = getenv("GKD_SMOLLM2_GGUF");
    if (!path || !*path) path = SMOLLM2_DEFAULT;
    if (!gkd_gguf_file_is_gguf(path)) {
        fprintf(stderr, "SmolLM2 part left out: no GGUF at %s (run tools/fetch-smollm2.sh)\n", path);
        return;
    }
    gkd_json *ref = load_json(FIXTURES "smollm2-reference.json");
    clock_t t0 = clock();
    gkd_model *m = NULL;
    gkd_tokenizer *tok = NULL;
    gkd_status st = gkd_gguf_model_load(path, gkd_backend_cpu(), &m, &tok);
    CHECKF(st == GKD_OK, "%s", gkd_error_message());
    if (st != GKD_OK) {
        gkd_json_free(ref);
        return;
    }
    fprintf(stderr, "SmolLM2: loaded %s in %.2f s CPU time, %zu parameters\n", path,
            (double)(clock() - t0) / CLOCKS_PER_SEC, gkd_model_num_params(m));
    const gkd_model_config *c = gkd_model_get_config(m);
    CHECK(c->vocab_size == 49152 && c->dim == 576 && c->n_layers == 30 && c->n_heads == 9 &&
          c->n_kv_heads == 3 && c->hidden_dim == 1536 && c->max_seq_len == 8192 &&
          c->rope_theta == 100000.0f && c->norm_eps == 1e-5f && c->tied_embeddings == 1);
    CHECK(gkd_tokenizer_role_id(tok, GKD_TOKEN_ROLE_BOS) == 1 &&
          gkd_tokenizer_role_id(tok, GKD_TOKEN_ROLE_EOS) == 2);
    CHECK(strcmp(gkd_tokenizer_token_str(tok, 2), "<|im_end|>") == 0);

    const gkd_json *strings = gkd_json_get(ref, "strings");
    for (size_t i = 0; strings && i < strings->len; i++) {
        const char *text = gkd_json_get_string(strings->items[i], "text", "");
        int n_want, n, *ids, *want = json_ints(gkd_json_get(strings->items[i], "ids"), &n_want);
        encode_both(tok, text, 0, &ids, &n);
        CHECKF(same_ids(ids, n, want, n_want), "SmolLM2 tokenizer, \"%s\": not the ids of `tokenizers`",
               text);
        free(ids);
        free(want);
    }
    int T, n, *ids, *prompt = json_ints(gkd_json_get(ref, "prompt_ids"), &T);
    encode_both(tok, gkd_json_get_string(ref, "prompt", ""), 1, &ids, &n);
    CHECK(same_ids(ids, n, prompt, T));
    free(ids);

    float *logits = prompt_logits(m, prompt, T);
    const gkd_json *positions = gkd_json_get(ref, "positions");
    double max_err = 0;
    int bad = 0, argmax_bad = 0;
    for (int t = 0; t < T && positions && t < (int)positions->len; t++) {
        const float *row = logits + (size_t)t * c->vocab_size;
        double mx = row[0], sum = 0;
        int best = 0;
        for (int v = 1; v < c->vocab_size; v++)
            if (row[v] > mx) mx = row[v], best = v;
        for (int v = 0; v < c->vocab_size; v++) sum += exp(row[v] - mx);
        const gkd_json *pos = positions->items[t], *top = gkd_json_get(pos, "top");
        double lse_err = fabs(mx + log(sum) - gkd_json_get_number(pos, "lse", 0));
        max_err = fmax(max_err, lse_err);
        bad += lse_err > REAL_TOL;
        for (size_t k = 0; top && k < top->len; k++) {
            int id = (int)top->items[k]->items[0]->number;
            double err = fabs(row[id] - top->items[k]->items[1]->number);
            max_err = fmax(max_err, err);
            bad += err > REAL_TOL;
        }
        double margin = top->items[0]->items[1]->number - top->items[1]->items[1]->number;
        argmax_bad += margin > 2 * REAL_TOL && best != (int)top->items[0]->items[0]->number;
    }
    fprintf(stderr,
            "SmolLM2: %d prompt positions, max |gkd - reference| over log-sum-exp and top-8 logits = %.3g\n",
            T, max_err);
    CHECKF(bad == 0, "SmolLM2: %d logits off by more than %g (max %g)", bad, REAL_TOL, max_err);
    CHECK(argmax_bad == 0);
    free(logits);

    int n_ref, *greedy = json_ints(gkd_json_get(ref, "greedy"), &n_ref);
    const gkd_json *margins = gkd_json_get(ref, "greedy_margins");
    enum { NEW = 24 };
    gkd_sample_config sc = {.temperature = 0, .top_k = 0, .top_p = 1, .max_new_tokens = NEW, .eos_id = 2};
    int out[NEW], out_len;
    float logprobs[NEW];
    gkd_rng rng;
    gkd_rng_init(&rng, 1, GKD_RNG_STREAM_SAMPLE);
    st = gkd_sample_generate(m, prompt, &T, 1, T, &sc, &rng, out, &out_len, logprobs);
    CHECKF(st == GKD_OK, "%s", gkd_error_message());
    if (st == GKD_OK) {
        char *text;
        size_t len;
        gkd_tokenizer_decode(tok, out, out_len, &text, &len);
        fprintf(stderr, "SmolLM2 greedy answer: \"%s\"\n", text);
        /* Token for token while the reference's choice is clear; after a near-tie the paths may part. */
        for (int i = 0; i < out_len && i < n_ref; i++) {
            CHECKF(out[i] == greedy[i], "greedy token %d: %d, reference %d", i, out[i], greedy[i]);
            if (margins->items[i]->number < 2 * REAL_TOL || out[i] != greedy[i]) break;
        }
        CHECK(strstr(text, "Paris") != NULL);
        free(text);
    }
    free(greedy);
    free(prompt);
    gkd_model_free(m);
    gkd_tokenizer_free(tok);
    gkd_json_free(ref);
}

/* ---------------------------------------------------------------------------------------------------
 * Llama 3's rope scaling from rope_freqs.weight (tests/fixtures/make_gguf_llama3_fixture.py): the parameters
 * are recovered from the divisors alone, the logits match a forward that divides the frequencies by the
 * stored divisors as llama.cpp does, a Hugging Face export carries the scaling, and divisors that are not
 * Llama 3's (or leave it undetermined) are refused naming the fault. */
static void test_llama3_rope(void) {
    gkd_json *ref = load_json(FIXTURES "tiny-llama3-rope.json");
    const gkd_json *want = gkd_json_get(ref, "llama3");
    gkd_model *m = NULL;
    gkd_status st = gkd_gguf_model_load(FIXTURES "tiny-llama3-rope.gguf", gkd_backend_cpu(), &m, NULL);
    CHECKF(st == GKD_OK, "tiny-llama3-rope: %s", gkd_error_message());
    if (st != GKD_OK) {
        gkd_json_free(ref);
        return;
    }
    const gkd_model_config *c = gkd_model_get_config(m);
    check_config(c, gkd_json_get(ref, "config"), 0);
    CHECKF(c->rope_type == GKD_ROPE_LLAMA3 &&
               c->rope_factor == (float)gkd_json_get_number(want, "factor", -1) &&
               c->rope_low_freq_factor == (float)gkd_json_get_number(want, "low_freq_factor", -1) &&
               fabsf(c->rope_high_freq_factor - (float)gkd_json_get_number(want, "high_freq_factor", -1)) <
                   1e-4f &&
               c->rope_original_max_seq_len ==
                   (int)gkd_json_get_number(want, "original_max_position_embeddings", -1),
           "recovered rope: type %d factor %g low %g high %g original %d", c->rope_type, c->rope_factor,
           c->rope_low_freq_factor, c->rope_high_freq_factor, c->rope_original_max_seq_len);
    int T, V = c->vocab_size;
    int *prompt = json_ints(gkd_json_get(ref, "prompt_ids"), &T);
    float *wantl = read_floats(FIXTURES "tiny-llama3-rope.logits", (size_t)T * V);
    float *got = prompt_logits(m, prompt, T);
    double max_err = 0;
    int bad = 0;
    for (size_t i = 0; i < (size_t)T * V; i++) {
        double err = fabs((double)got[i] - wantl[i]);
        if (err > max_err) max_err = err;
        bad += err > TINY_TOL * (1 + fabs(wantl[i]));
    }
    fprintf(stderr, "tiny-llama3-rope: %d x %d logits, max |gkd - reference| = %.3g\n", T, V, max_err);
    CHECKF(bad == 0, "tiny-llama3-rope: %d logits off by more than %g (max %g)", bad, TINY_TOL, max_err);

    /* exported as a Hugging Face directory, the scaling goes with it */
    char dir[] = "/tmp/gkd-llama3-rope-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    gkd_model_config back;
    CHECKF(gkd_checkpoint_save_hf_dir(m, dir) == GKD_OK && gkd_checkpoint_read_config(dir, &back) == GKD_OK,
           "export: %s", gkd_error_message());
    CHECK(gkd_model_config_equal(&back, c));
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    free(prompt), free(wantl), free(got);
    gkd_model_free(m);

    const gkd_json *errors = gkd_json_get(ref, "errors");
    CHECK(errors && errors->len == 2);
    for (size_t i = 0; errors && i < errors->len; i++) {
        char path[512];
        snprintf(path, sizeof path, FIXTURES "gguf-model-err-%s.gguf", errors->keys[i]);
        m = (gkd_model *)1;
        st = gkd_gguf_model_load(path, gkd_backend_cpu(), &m, NULL);
        CHECKF(st == GKD_ERR_FORMAT && m == NULL && strstr(gkd_error_message(), path) &&
                   strstr(gkd_error_message(), errors->items[i]->string),
               "%s: status %s, message \"%s\"", errors->keys[i], gkd_status_name(st), gkd_error_message());
    }
    gkd_json_free(ref);
}

int main(void) {
    test_llama3_rope();
    gkd_json *ref = load_json(FIXTURES "tiny-llama.json");
    test_tiny_models(ref);
    test_tiny_tokenizer(ref);
    test_from_vocab();
    test_errors(ref);
    gkd_json_free(ref);
    test_smollm2();
    return check_exit();
}
