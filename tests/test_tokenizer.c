// ctest-labels: cpu
/* Byte-level BPE tokenizer: decode(encode(x)) == x on every document and summary of the debdesc sample and
 * on invalid UTF-8; the GPT-2 pre-tokenizer on hand-worked cases; training against a brute-force
 * reference and its speed; special tokens; save -> load -> save; malformed files; and, when python3 with
 * Hugging Face `tokenizers` is present, the same ids and pre-tokenizer pieces as that library for every
 * sample text, every Basic Multilingual Plane code point, and the Llama-3, Qwen2 and SmolLM2 (Digits)
 * pre-tokenizer forms. */
#include "core/base/json.h"
#include "core/text/tokenizer.h"
#include "tests/check.h"

#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#define SAMPLE GKD_SOURCE_DIR "/tests/fixtures/debdesc-sample.jsonl"

typedef struct {
    char **s;
    size_t *len;
    int n, cap;
} text_list;

static void add_text(text_list *t, const char *s, size_t len) {
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 256;
        t->s = realloc(t->s, (size_t)t->cap * sizeof *t->s);
        t->len = realloc(t->len, (size_t)t->cap * sizeof *t->len);
        if (!t->s || !t->len) abort();
    }
    t->s[t->n] = malloc(len + 1);
    if (!t->s[t->n]) abort();
    memcpy(t->s[t->n], s, len);
    t->s[t->n][len] = '\0';
    t->len[t->n++] = len;
}

static void free_texts(text_list *t) {
    for (int i = 0; i < t->n; i++) free(t->s[i]);
    free(t->s);
    free(t->len);
}

/* Every document and summary of the sample, in file order. */
static void load_sample(text_list *texts) {
    char *data;
    size_t len;
    if (gkd_read_file(SAMPLE, &data, &len) != GKD_OK) {
        fprintf(stderr, "%s\n", gkd_error_message());
        CHECK(0);
        return;
    }
    int line = 0;
    for (char *p = data; p < data + len; line++) {
        char *nl = memchr(p, '\n', (size_t)(data + len - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(data + len - p);
        gkd_json *rec = NULL;
        if (n && gkd_json_parse(p, n, SAMPLE, &rec) == GKD_OK) {
            const gkd_json *doc = gkd_json_get(rec, "document"), *sum = gkd_json_get(rec, "summary");
            CHECKF(doc && sum && doc->type == GKD_JSON_STRING && sum->type == GKD_JSON_STRING, "line %d",
                   line + 1);
            if (doc && doc->type == GKD_JSON_STRING) add_text(texts, doc->string, doc->len);
            if (sum && sum->type == GKD_JSON_STRING) add_text(texts, sum->string, sum->len);
        } else if (n) {
            CHECKF(0, "%s", gkd_error_message());
        }
        gkd_json_free(rec);
        p += n + 1;
    }
    free(data);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* 1 when decode(encode(s)) == s; *n_ids gets the number of ids. */
static int round_trips(const gkd_tokenizer *tok, const char *s, size_t len, int special, int *n_ids) {
    int *ids = NULL, n = 0;
    gkd_status st = special ? gkd_tokenizer_encode_special(tok, s, len, &ids, &n)
                            : gkd_tokenizer_encode(tok, s, len, &ids, &n);
    if (st != GKD_OK) {
        fprintf(stderr, "encode: %s\n", gkd_error_message());
        return 0;
    }
    char *back = NULL;
    size_t back_len = 0;
    st = gkd_tokenizer_decode(tok, ids, n, &back, &back_len);
    int ok = st == GKD_OK && back_len == len && memcmp(back, s, len) == 0;
    if (n_ids) *n_ids = n;
    free(ids);
    free(back);
    return ok;
}

/* Checks that the pre-tokenizer splits text into exactly the NULL-terminated pieces. */
static void check_split(const gkd_tokenizer *tok, const char *text, const char *const *pieces) {
    size_t *ends = NULL;
    int n = 0;
    CHECK(gkd_tokenizer_pretokenize(tok, text, strlen(text), &ends, &n) == GKD_OK);
    int want = 0;
    while (pieces[want]) want++;
    int ok = n == want;
    size_t start = 0;
    for (int i = 0; ok && i < n; i++) {
        ok = ends[i] - start == strlen(pieces[i]) && memcmp(text + start, pieces[i], strlen(pieces[i])) == 0;
        start = ends[i];
    }
    CHECKF(ok, "split of \"%s\": got %d pieces, want %d", text, n, want);
    free(ends);
}

static void check_gpt2_split(const gkd_tokenizer *tok) {
    check_split(tok, "Hello world", (const char *[]){"Hello", " world", NULL});
    check_split(tok, "a  b", (const char *[]){"a", " ", " b", NULL});
    check_split(tok, "don't we'll I'M", (const char *[]){"don", "'t", " we", "'ll", " I", "'", "M", NULL});
    check_split(tok, "x\n\ny", (const char *[]){"x", "\n", "\n", "y", NULL});
    check_split(tok, "a \t b", (const char *[]){"a", " \t", " b", NULL});
    check_split(tok, "123 abc!! (ok)", (const char *[]){"123", " abc", "!!", " (", "ok", ")", NULL});
    check_split(tok, "trailing   ", (const char *[]){"trailing", "   ", NULL});
    check_split(tok, "caf\xc3\xa9 na\xc3\xafve\xe2\x80\x94\xce\xb1\xce\xb2 \xd0\xb6\xd1\x83\xd0\xba",
                (const char *[]){"caf\xc3\xa9", " na\xc3\xafve", "\xe2\x80\x94", "\xce\xb1\xce\xb2",
                                 " \xd0\xb6\xd1\x83\xd0\xba", NULL});
    check_split(tok, "x\xc2\xb2\xc2\xbd y",
                (const char *[]){"x", "\xc2\xb2\xc2\xbd", " y", NULL}); /* ² ½ are \p{N} */
    check_split(tok,
                "a\xc2\xa0"
                "b",
                (const char *[]){"a", "\xc2\xa0", "b", NULL}); /* NBSP is \s */
    check_split(tok,
                "ab\xff\xfe"
                "cd",
                (const char *[]){"ab", "\xff\xfe", "cd", NULL});
    check_split(tok, "", (const char *[]){NULL});
}

/* Brute force: recount every pair over the words at every step. The incremental trainer must pick the
 * same merges (same count order and tie-breaks), so every token's bytes agree. */
static void check_against_brute_force(const text_list *texts, int n_texts, int n_merges) {
    gkd_tokenizer *tok = NULL;
    const char *sp[] = {"<|endoftext|>"};
    CHECK(gkd_tokenizer_train((const char *const *)texts->s, n_texts, 256 + n_merges + 1, sp, 1, &tok) ==
          GKD_OK);
    if (!tok) return;
    /* Words with counts, from the tokenizer's own pre-tokenizer. */
    int n_words = 0, cap = 0;
    int **syms = NULL, *lens = NULL, *counts = NULL;
    for (int t = 0; t < n_texts; t++) {
        size_t *ends;
        int n;
        CHECK(gkd_tokenizer_pretokenize(tok, texts->s[t], texts->len[t], &ends, &n) == GKD_OK);
        size_t start = 0;
        for (int i = 0; i < n; i++) {
            int len = (int)(ends[i] - start), w;
            for (w = 0; w < n_words; w++) {
                if (lens[w] != len) continue;
                int same = 1;
                for (int k = 0; k < len && same; k++)
                    same = syms[w][k] == (unsigned char)texts->s[t][start + (size_t)k];
                if (same) break;
            }
            if (w == n_words) {
                if (n_words == cap) {
                    cap = cap ? 2 * cap : 1024;
                    syms = realloc(syms, (size_t)cap * sizeof *syms);
                    lens = realloc(lens, (size_t)cap * sizeof *lens);
                    counts = realloc(counts, (size_t)cap * sizeof *counts);
                }
                syms[w] = malloc((size_t)len * sizeof **syms);
                for (int k = 0; k < len; k++) syms[w][k] = (unsigned char)texts->s[t][start + (size_t)k];
                lens[w] = len;
                counts[w] = 0;
                n_words++;
            }
            counts[w]++;
            start = ends[i];
        }
        free(ends);
    }
    /* Tokens as byte strings, grown by merges. */
    int n_tok = 256 + n_merges;
    char **bytes = malloc((size_t)n_tok * sizeof *bytes);
    size_t *blen = malloc((size_t)n_tok * sizeof *blen);
    for (int b = 0; b < 256; b++) {
        bytes[b] = malloc(1);
        bytes[b][0] = (char)b;
        blen[b] = 1;
    }
    int done = 0, mismatches = 0;
    int64_t *pair_count = calloc((size_t)n_tok * (size_t)n_tok, sizeof *pair_count);
    for (; done < n_merges; done++) {
        memset(pair_count, 0, (size_t)n_tok * (size_t)n_tok * sizeof *pair_count);
        for (int w = 0; w < n_words; w++)
            for (int k = 0; k + 1 < lens[w]; k++)
                pair_count[(size_t)syms[w][k] * (size_t)n_tok + (size_t)syms[w][k + 1]] += counts[w];
        int64_t best = 0;
        int ba = -1, bb = -1;
        for (int a = 0; a < 256 + done; a++)
            for (int b = 0; b < 256 + done; b++)
                if (pair_count[(size_t)a * (size_t)n_tok + (size_t)b] > best)
                    best = pair_count[(size_t)a * (size_t)n_tok + (size_t)b], ba = a, bb = b;
        if (best == 0) break;
        int c = 256 + done;
        blen[c] = blen[ba] + blen[bb];
        bytes[c] = malloc(blen[c]);
        memcpy(bytes[c], bytes[ba], blen[ba]);
        memcpy(bytes[c] + blen[ba], bytes[bb], blen[bb]);
        for (int w = 0; w < n_words; w++) {
            int m = 0;
            for (int k = 0; k < lens[w];) {
                if (k + 1 < lens[w] && syms[w][k] == ba && syms[w][k + 1] == bb) {
                    syms[w][m++] = c;
                    k += 2;
                } else {
                    syms[w][m++] = syms[w][k++];
                }
            }
            lens[w] = m;
        }
        size_t len = 0;
        const char *got = gkd_tokenizer_token_bytes(tok, c, &len);
        if (!got || len != blen[c] || memcmp(got, bytes[c], len) != 0) {
            if (mismatches++ < 3) fprintf(stderr, "merge %d differs from the brute-force trainer\n", done);
        }
    }
    CHECKF(mismatches == 0, "%d of %d merges differ from the brute-force trainer", mismatches, done);
    CHECK(done == n_merges);
    CHECK(gkd_tokenizer_vocab_size(tok) == 256 + done + 1);
    for (int i = 0; i < 256 + done; i++) free(bytes[i]);
    for (int w = 0; w < n_words; w++) free(syms[w]);
    free(bytes);
    free(blen);
    free(syms);
    free(lens);
    free(counts);
    free(pair_count);
    gkd_tokenizer_free(tok);
}

static void check_invalid_utf8(const gkd_tokenizer *tok) {
    static const char *const cases[] = {
        "\xff\xfe",
        ("abc\x80" "def"), /* split so the hex escape ends; parenthesised as one element for clang */
        "\xe2\x82",
        "\xc0\xaf",
        "\xed\xa0\x80",
        "\xf4\x90\x80\x80",
        "\xf0\x9f\x98",
        " \xe2\x82 x",
        "\xc3",
        "caf\xc3\xa9\xc3",
        "<|endoftext|\xff>",
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        CHECKF(round_trips(tok, cases[i], strlen(cases[i]), 0, NULL), "case %zu", i);
        CHECKF(round_trips(tok, cases[i], strlen(cases[i]), 1, NULL), "case %zu (special)", i);
    }
    char nul[] = {'a', '\0', 'b', '\0', '\0', ' ', 'c'};
    CHECK(round_trips(tok, nul, sizeof nul, 0, NULL));
    char all[256];
    for (int b = 0; b < 256; b++) {
        all[b] = (char)b;
        CHECKF(round_trips(tok, all + b, 1, 0, NULL), "byte 0x%02x", b);
    }
    CHECK(round_trips(tok, all, sizeof all, 0, NULL));
    /* Random byte strings, biased toward bytes that start or continue UTF-8 sequences and toward spaces. */
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    int failed = 0;
    for (int t = 0; t < 2000; t++) {
        char buf[64];
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        int len = (int)(x >> 58);
        for (int k = 0; k < len; k++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            unsigned r = (unsigned)(x >> 33);
            static const unsigned char pool[] = {' ',  'a',  '\n', '1',  '\'', 's',  0x80,
                                                 0xbf, 0xc3, 0xe2, 0xf0, 0xff, 0x00, '<'};
            buf[k] = (char)(r % 3 ? pool[r % sizeof pool] : (unsigned char)(r >> 8));
        }
        failed += !round_trips(tok, buf, (size_t)len, t & 1, NULL);
    }
    CHECKF(failed == 0, "%d random byte strings do not round-trip", failed);
}

static int count_id(const int *ids, int n, int id) {
    int c = 0;
    for (int i = 0; i < n; i++) c += ids[i] == id;
    return c;
}

static void check_specials(const gkd_tokenizer *tok) {
    int eos = gkd_tokenizer_token_id(tok, "<|endoftext|>"), pad = gkd_tokenizer_token_id(tok, "<|pad|>");
    int sep = gkd_tokenizer_token_id(tok, "<|sep|>"), v = gkd_tokenizer_vocab_size(tok);
    CHECK(eos == v - 3 && pad == v - 2 && sep == v - 1);
    CHECK(gkd_tokenizer_role_id(tok, GKD_TOKEN_ROLE_EOS) == eos);
    CHECK(gkd_tokenizer_role_id(tok, GKD_TOKEN_ROLE_PAD) == pad);
    CHECK(gkd_tokenizer_role_id(tok, GKD_TOKEN_ROLE_BOS) == -1);
    CHECK(gkd_tokenizer_is_special(tok, eos) && !gkd_tokenizer_is_special(tok, 'a'));
    CHECK(gkd_tokenizer_token_id(tok, "no such token") == -1);
    CHECK(gkd_tokenizer_token_id(tok, "a") == 'a' &&
          gkd_tokenizer_token_id(tok, "\xc4\xa0") == ' '); /* "Ġ" */
    CHECK(gkd_tokenizer_token_str(tok, ' ') && strcmp(gkd_tokenizer_token_str(tok, ' '), "\xc4\xa0") == 0);
    CHECK(gkd_tokenizer_token_str(tok, v) == NULL && gkd_tokenizer_token_bytes(tok, -1, NULL) == NULL);
    size_t len = 0;
    const char *b = gkd_tokenizer_token_bytes(tok, eos, &len);
    CHECK(b && len == 13 && memcmp(b, "<|endoftext|>", 13) == 0);

    const char *text = "Hello<|endoftext|>world <|pad|><|pad|> x<|sep|><|endoftext";
    int *ids = NULL, n = 0;
    CHECK(gkd_tokenizer_encode_special(tok, text, strlen(text), &ids, &n) == GKD_OK);
    CHECK(count_id(ids, n, eos) == 1 && count_id(ids, n, pad) == 2 && count_id(ids, n, sep) == 1);
    int at_eos = -1;
    for (int i = 0; i < n; i++)
        if (ids[i] == eos) at_eos = i;
    int *first = NULL, n_first = 0;
    CHECK(gkd_tokenizer_encode(tok, "Hello", 5, &first, &n_first) == GKD_OK);
    CHECK(at_eos == n_first); /* the special follows exactly the tokens of "Hello" */
    free(first);
    CHECK(round_trips(tok, text, strlen(text), 1, NULL));
    free(ids);
    /* Plain encode treats the same strings as text. */
    CHECK(gkd_tokenizer_encode(tok, text, strlen(text), &ids, &n) == GKD_OK);
    CHECK(count_id(ids, n, eos) == 0 && count_id(ids, n, pad) == 0 && count_id(ids, n, sep) == 0);
    CHECK(round_trips(tok, text, strlen(text), 0, NULL));
    free(ids);
    CHECK(gkd_tokenizer_set_role(NULL, GKD_TOKEN_ROLE_BOS, 0) == GKD_ERR_ARG);

    /* Decode rejects ids outside the vocabulary; empty input gives empty output. */
    int bad_ids[] = {'a', v};
    char *out = NULL;
    size_t out_len = 0;
    CHECK(gkd_tokenizer_decode(tok, bad_ids, 2, &out, &out_len) == GKD_ERR_ARG && out == NULL);
    CHECK(strstr(gkd_error_message(), "position 1") != NULL);
    CHECK(gkd_tokenizer_decode(tok, bad_ids, 0, &out, &out_len) == GKD_OK && out && out_len == 0);
    free(out);
    CHECK(gkd_tokenizer_encode(tok, "", 0, &ids, &n) == GKD_OK && ids && n == 0);
    free(ids);
}

/* Overlapping added tokens are matched leftmost-longest. */
static void check_longest_special(const text_list *texts) {
    gkd_tokenizer *tok = NULL;
    const char *sp[] = {"<a>", "<a><b>", "<b>"};
    CHECK(gkd_tokenizer_train((const char *const *)texts->s, 20, 400, sp, 3, &tok) == GKD_OK);
    if (!tok) return;
    int a = gkd_tokenizer_token_id(tok, "<a>"), ab = gkd_tokenizer_token_id(tok, "<a><b>");
    int b = gkd_tokenizer_token_id(tok, "<b>");
    int *ids = NULL, n = 0;
    CHECK(gkd_tokenizer_encode_special(tok, "<a><b><b><a>", 12, &ids, &n) == GKD_OK);
    CHECK(n == 3 && ids[0] == ab && ids[1] == b && ids[2] == a);
    free(ids);
    gkd_tokenizer_free(tok);

    const char *dup[] = {"<x>", "<x>"}, *empty[] = {""}, *byte[] = {"a"};
    CHECK(gkd_tokenizer_train((const char *const *)texts->s, 5, 300, dup, 2, &tok) == GKD_ERR_ARG);
    CHECK(gkd_tokenizer_train((const char *const *)texts->s, 5, 300, empty, 1, &tok) == GKD_ERR_ARG);
    CHECK(gkd_tokenizer_train((const char *const *)texts->s, 5, 300, byte, 1, &tok) == GKD_ERR_ARG);
    CHECK(gkd_tokenizer_train((const char *const *)texts->s, 5, 257, sp, 3, &tok) == GKD_ERR_ARG);
    /* A corpus too small for the requested size stops when nothing is left to merge. */
    const char *tiny[] = {"ab ab", "abc"};
    CHECK(gkd_tokenizer_train(tiny, 2, 1000, sp, 1, &tok) == GKD_OK);
    CHECK(tok && gkd_tokenizer_vocab_size(tok) == 256 + 3 + 1); /* "ab", " ab", "abc" */
    gkd_tokenizer_free(tok);
    tok = NULL;
    CHECK(gkd_tokenizer_train(tiny, 2, 1 << 30, sp, 1, &tok) == GKD_OK); /* tables sized by the corpus */
    CHECK(tok && gkd_tokenizer_vocab_size(tok) == 256 + 3 + 1);
    gkd_tokenizer_free(tok);
    gkd_tokenizer_free(NULL);
}

static char *read_all(const char *path, size_t *len) {
    char *data = NULL;
    if (gkd_read_file(path, &data, len) != GKD_OK) return NULL;
    return data;
}

static void write_all(const char *path, const char *data, size_t len) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    CHECK(fwrite(data, 1, len, f) == len);
    fclose(f);
}

/* Copy of text with the first occurrence of `from` replaced by `to` (caller frees); NULL when absent. */
static char *replace(const char *text, const char *from, const char *to) {
    const char *at = strstr(text, from);
    if (!at) return NULL;
    size_t head = (size_t)(at - text), tail = strlen(at + strlen(from));
    char *out = malloc(head + strlen(to) + tail + 1);
    memcpy(out, text, head);
    memcpy(out + head, to, strlen(to));
    memcpy(out + head + strlen(to), at + strlen(from), tail + 1);
    return out;
}

/* The file with its pre_tokenizer line's value replaced by `value`. */
static char *with_pre_tokenizer(const char *json, const char *value) {
    const char *key = "\"pre_tokenizer\": ";
    const char *at = strstr(json, key);
    if (!at) return NULL;
    const char *start = at + strlen(key), *end = strstr(start, ",\n");
    size_t head = (size_t)(start - json);
    char *out = malloc(strlen(json) + strlen(value) + 1);
    memcpy(out, json, head);
    strcpy(out + head, value);
    strcat(out, end);
    return out;
}

static void check_save_load(const gkd_tokenizer *tok, const text_list *texts) {
    CHECK(gkd_tokenizer_save(tok, "tokenizer-test-1.json") == GKD_OK);
    gkd_tokenizer *back = NULL;
    CHECKF(gkd_tokenizer_load("tokenizer-test-1.json", &back) == GKD_OK, "%s", gkd_error_message());
    if (!back) return;
    CHECK(gkd_tokenizer_save(back, "tokenizer-test-2.json") == GKD_OK);
    size_t l1 = 0, l2 = 0;
    char *a = read_all("tokenizer-test-1.json", &l1), *b = read_all("tokenizer-test-2.json", &l2);
    CHECK(a && b && l1 == l2 && memcmp(a, b, l1) == 0);
    CHECK(gkd_tokenizer_vocab_size(back) == gkd_tokenizer_vocab_size(tok));
    CHECK(gkd_tokenizer_role_id(back, GKD_TOKEN_ROLE_EOS) == gkd_tokenizer_role_id(tok, GKD_TOKEN_ROLE_EOS));
    int differ = 0;
    for (int i = 0; i < texts->n; i++) {
        int *x, *y, nx, ny;
        CHECK(gkd_tokenizer_encode_special(tok, texts->s[i], texts->len[i], &x, &nx) == GKD_OK);
        CHECK(gkd_tokenizer_encode_special(back, texts->s[i], texts->len[i], &y, &ny) == GKD_OK);
        differ += nx != ny || memcmp(x, y, (size_t)nx * sizeof *x) != 0;
        free(x);
        free(y);
    }
    CHECKF(differ == 0, "%d texts encode differently after save/load", differ);
    gkd_tokenizer_free(back);

    /* Merges written as ["left", "right"] pairs (tokenizers >= 0.20) load to the same tokenizer. */
    gkd_json *root = NULL;
    CHECK(a && gkd_json_parse(a, l1, "tokenizer-test-1.json", &root) == GKD_OK);
    gkd_json *merges = (gkd_json *)gkd_json_get(gkd_json_get(root, "model"), "merges");
    CHECK(merges && merges->type == GKD_JSON_ARRAY && merges->len > 0);
    for (size_t i = 0; merges && i < merges->len; i++) {
        gkd_json *m = merges->items[i], *pair = calloc(1, sizeof *pair);
        const char *space = memchr(m->string, ' ', m->len);
        pair->type = GKD_JSON_ARRAY;
        pair->len = 2;
        pair->items = calloc(2, sizeof *pair->items);
        for (int k = 0; k < 2; k++) {
            const char *from = k ? space + 1 : m->string;
            size_t n = k ? m->len - (size_t)(space + 1 - m->string) : (size_t)(space - m->string);
            gkd_json *s = pair->items[k] = calloc(1, sizeof *s);
            s->type = GKD_JSON_STRING;
            s->string = malloc(n + 1);
            memcpy(s->string, from, n);
            s->string[n] = '\0';
            s->len = n;
        }
        gkd_json_free(m);
        merges->items[i] = pair;
    }
    gkd_buf compact = {0};
    gkd_buf_json_value(&compact, root);
    gkd_json_free(root);
    gkd_tokenizer *p = NULL;
    CHECKF(gkd_tokenizer_from_json(compact.data, compact.len, "pairs", &p) == GKD_OK, "%s",
           gkd_error_message());
    gkd_buf out = {0};
    if (p) CHECK(gkd_tokenizer_to_json(p, &out) == GKD_OK);
    CHECK(out.data && a && out.len == l1 && memcmp(out.data, a, l1) == 0);
    gkd_buf_free(&out);
    gkd_buf_free(&compact);
    gkd_tokenizer_free(p);
    free(a);
    free(b);
}

/* Each broken variant of a good file must fail to load with the file's name and the field in the message. */
static void check_malformed(void) {
    size_t len = 0;
    char *good = read_all("tokenizer-test-1.json", &len);
    CHECK(good != NULL);
    if (!good) return;
    /* `from` -> `to` edits the file; with from == NULL, `to` replaces the pre_tokenizer. */
    struct {
        const char *from, *to, *field;
    } cases[] = {
        {NULL,
         "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\s+\"}, \"behavior\": \"Isolated\", "
         "\"invert\": false}",
         "pre_tokenizer.pattern"},
        {NULL,
         "{\"type\": \"Split\", \"pattern\": {\"String\": \" \"}, \"behavior\": \"Isolated\", \"invert\": "
         "false}",
         "pre_tokenizer.pattern"},
        {NULL,
         "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"ByteLevel\"}, {\"type\": \"Digits\"}]}",
         "pre_tokenizer"},
        {NULL, "{\"type\": \"Digits\"}", "pre_tokenizer"},
        {NULL, "null", "pre_tokenizer"},
        {"\"type\": \"BPE\"", "\"type\": \"WordPiece\"", "model.type"},
        {"\"byte_fallback\": false", "\"byte_fallback\": true", "model.byte_fallback"},
        {"\"byte_fallback\": false", "\"byte_fallback\": 1", "model.byte_fallback"},
        {"\"merges\": [", "\"merges\": [\"zzqq \\u0120xx\",", "model.merges[0]"},
        {"\"merges\": [", "\"merges\": [17,", "model.merges[0]"},
        {"\"merges\": [", "\"mergez\": [", "model.merges"},
        {"\"vocab\": {", "\"vocab\": {\"zzqq\": -3,", "model.vocab"},
        {"\"vocab\": {", "\"vocab\": {\"zzqq\": 100000,", "model.vocab"},
        {"\"vocab\": {", "\"vocab\": {\"zzqq\": 5,", "model.vocab"},
        {"\"vocab\": {", "\"vocab\": {\"a b\": 4096,", "model.vocab"},
        {"\"model\": {", "\"modul\": {", "model"},
        {"\"normalizer\": null", "\"normalizer\": {\"type\": \"NFC\"}", "normalizer"},
        {"\"decoder\": {\"type\": \"ByteLevel\"", "\"decoder\": {\"type\": \"Metaspace\"", "decoder"},
        {"\"add_prefix_space\": false", "\"add_prefix_space\": true", "pre_tokenizer.add_prefix_space"},
        {"\"type\": \"ByteLevel\", \"add_prefix_space\": false",
         "\"type\": \"Whitespace\", \"add_prefix_space\": false", "pre_tokenizer.type"},
        {"\"lstrip\": false", "\"lstrip\": true", "added_tokens[0].lstrip"},
        {"\"content\": \"<|endoftext|>\"", "\"content\": \"\"", "added_tokens[0]"},
        {"\"content\": \"<|endoftext|>\"", "\"content\": \"<|pad|>\"", "added_tokens[0]"},
        {"\"version\"", "\"version\" 1, \"x\"", "offset"},
        {"{\n", "[\n", "offset"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *bad =
            cases[i].from ? replace(good, cases[i].from, cases[i].to) : with_pre_tokenizer(good, cases[i].to);
        CHECKF(bad != NULL, "case %zu: \"%s\" not in the file", i, cases[i].from);
        if (!bad) continue;
        write_all("tokenizer-test-bad.json", bad, strlen(bad));
        free(bad);
        gkd_tokenizer *tok = NULL;
        gkd_status st = gkd_tokenizer_load("tokenizer-test-bad.json", &tok);
        const char *msg = gkd_error_message();
        CHECKF(st == GKD_ERR_FORMAT && tok == NULL, "case %zu (%s) loaded", i, cases[i].field);
        CHECKF(strstr(msg, "tokenizer-test-bad.json") && strstr(msg, cases[i].field), "case %zu: %s", i, msg);
        gkd_tokenizer_free(tok);
    }
    free(good);
    gkd_tokenizer *tok = NULL;
    CHECK(gkd_tokenizer_load("no-such-dir/tokenizer.json", &tok) == GKD_ERR_IO && tok == NULL);
    CHECK(strstr(gkd_error_message(), "no-such-dir/tokenizer.json") != NULL);
    CHECK(gkd_tokenizer_from_json("{}", 2, "inline", &tok) == GKD_ERR_FORMAT);
    CHECK(strstr(gkd_error_message(), "inline: model") != NULL);
}

/* Appends code point cp as UTF-8. */
static size_t put_utf8(char *out, uint32_t cp) {
    if (cp < 0x80) return out[0] = (char)cp, 1;
    if (cp < 0x800) return out[0] = (char)(0xC0 | cp >> 6), out[1] = (char)(0x80 | (cp & 0x3F)), 2;
    if (cp < 0x10000)
        return out[0] = (char)(0xE0 | cp >> 12), out[1] = (char)(0x80 | ((cp >> 6) & 0x3F)),
               out[2] = (char)(0x80 | (cp & 0x3F)), 3;
    return out[0] = (char)(0xF0 | cp >> 18), out[1] = (char)(0x80 | ((cp >> 12) & 0x3F)),
           out[2] = (char)(0x80 | ((cp >> 6) & 0x3F)), out[3] = (char)(0x80 | (cp & 0x3F)), 4;
}

/* Texts that put every BMP code point (and a sample of the CJK planes) before a letter, a digit and a
 * space and after a space, so that any class the C side gives differently from Oniguruma changes a
 * split. */
static void add_unicode_probes(text_list *texts) {
    static const char ctx[] = "x1 ";
    char *buf = malloc(2048 * 4 * 12);
    size_t n = 0;
    int in_chunk = 0;
    for (uint32_t cp = 1; cp < 0x40000; cp += cp < 0x10000 ? 1 : 97) {
        if ((cp >= 0xD800 && cp <= 0xDFFF) || (cp >= 0x10000 && cp < 0x20000)) continue;
        for (int k = 0; k < 3; k++) {
            n += put_utf8(buf + n, cp);
            buf[n++] = ctx[k];
        }
        if (++in_chunk == 2048) {
            add_text(texts, buf, n);
            n = 0, in_chunk = 0;
        }
    }
    if (n) add_text(texts, buf, n);
    free(buf);
}

/* Hand-picked texts for the pre-tokenizer and added-token paths. */
static void add_edge_cases(text_list *texts) {
    static const char *const cases[] = {
        "I'M HE'S we'RE it's it'\xc5\xbf x'K 'll 'LL ''s",
        "a \n\n b\r\n\r\n  c  \t\n d\n",
        "   leading and trailing   ",
        "1234567 12 3.14159 1,000,000 \xd9\xa1\xd9\xa2\xd9\xa3\xd9\xa4 x\xc2\xb2",
        "\xce\x95\xce\xbb\xce\xbb\xce\xb7\xce\xbd\xce\xb9\xce\xba\xce\xac "
        "\xd0\x9a\xd0\xb8\xd1\x80\xd0\xb8\xd0\xbb\xd0\xbb"
        "\xd0\xb8\xd1\x86\xd0\xb0 \xc3\x9cn\xc3\xaf"
        "c\xc3\xb6"
        "d\xc3\xa9 \xc5\x93uvre",
        "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe3\x83\x86\xe3\x82\xad\xe3\x82\xb9\xe3\x83\x88 "
        "\xed\x95\x9c"
        "\xea\xb5\xad\xec\x96\xb4",
        "emoji \xf0\x9f\x98\x80\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd!! (\xf0\x9f\x8e\x8a)",
        "<|endoftext|>inside<|pad|> text <|sep|><|sep|>x<|endoftext",
        "def f(x):\n    return x ** 2  # comment\n\n\n",
        "tabs\tand\vvertical\fform feed\x1c\x1d",
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) add_text(texts, cases[i], strlen(cases[i]));
}

/* Runs tests/tokenizer_check.py on tok_path and compares its ids and pieces with the C tokenizer's.
 * Returns 0 when python3 or `tokenizers` is missing. */
static int compare_with_hf(const char *tok_path, const text_list *texts, const char *label) {
    gkd_tokenizer *tok = NULL;
    CHECKF(gkd_tokenizer_load(tok_path, &tok) == GKD_OK, "%s: %s", label, gkd_error_message());
    if (!tok) return 1;
    gkd_buf in = {0};
    for (int i = 0; i < texts->n; i++) {
        gkd_buf_json_string(&in, texts->s[i], texts->len[i]);
        gkd_buf_put(&in, "\n", 1);
    }
    write_all("tokenizer-test-texts.jsonl", in.data, in.len);
    gkd_buf_free(&in);
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "python3 '%s/tests/tokenizer_check.py' '%s' tokenizer-test-texts.jsonl tokenizer-test-hf.jsonl",
             GKD_SOURCE_DIR, tok_path);
    int rc = system(cmd);
    if (rc == -1 || !WIFEXITED(rc) || WEXITSTATUS(rc) == 77 || WEXITSTATUS(rc) == 127) {
        fprintf(stderr,
                "NOTE: python3 with `tokenizers` is not available: comparison with Hugging Face skipped\n");
        gkd_tokenizer_free(tok);
        return 0;
    }
    CHECKF(WEXITSTATUS(rc) == 0, "%s: tokenizer_check.py failed", label);
    size_t len = 0;
    char *out = read_all("tokenizer-test-hf.jsonl", &len);
    int line = 0, id_diffs = 0, piece_diffs = 0;
    for (char *p = out; out && p < out + len && line < texts->n; line++) {
        char *nl = memchr(p, '\n', (size_t)(out + len - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(out + len - p);
        gkd_json *rec = NULL;
        CHECK(gkd_json_parse(p, n, "tokenizer-test-hf.jsonl", &rec) == GKD_OK);
        const gkd_json *hf_ids = gkd_json_get(rec, "ids"), *hf_pieces = gkd_json_get(rec, "pieces");
        int *ids = NULL, n_ids = 0;
        size_t *ends = NULL;
        int n_ends = 0;
        CHECK(gkd_tokenizer_encode_special(tok, texts->s[line], texts->len[line], &ids, &n_ids) == GKD_OK);
        CHECK(gkd_tokenizer_pretokenize(tok, texts->s[line], texts->len[line], &ends, &n_ends) == GKD_OK);
        int same = hf_ids && (int)hf_ids->len == n_ids;
        for (int k = 0; same && k < n_ids; k++) same = (int)hf_ids->items[k]->number == ids[k];
        if (!same && id_diffs++ < 3)
            fprintf(stderr, "%s: text %d: ids differ from Hugging Face\n", label, line);
        same = hf_pieces && (int)hf_pieces->len == n_ends;
        size_t start = 0;
        for (int k = 0; same && k < n_ends; k++) {
            same = (size_t)hf_pieces->items[k]->number == ends[k] - start;
            start = ends[k];
        }
        if (!same && piece_diffs++ < 3)
            fprintf(stderr, "%s: text %d: pieces differ from Hugging Face (%zu vs %d pieces)\n", label, line,
                    hf_pieces ? hf_pieces->len : 0, n_ends);
        free(ids);
        free(ends);
        gkd_json_free(rec);
        p += n + 1;
    }
    CHECKF(line == texts->n, "%s: %d of %d results from tokenizer_check.py", label, line, texts->n);
    CHECKF(id_diffs == 0, "%s: %d of %d texts get other ids than Hugging Face", label, id_diffs, texts->n);
    CHECKF(piece_diffs == 0, "%s: %d of %d texts split otherwise than Hugging Face", label, piece_diffs,
           texts->n);
    free(out);
    gkd_tokenizer_free(tok);
    return 1;
}

static void check_hugging_face(const text_list *sample) {
    /* The Unicode probes are long; they run on the two scanners, the other forms differ only in digits
     * and merges. */
    text_list texts = {0}, all = {0};
    for (int i = 0; i < sample->n; i++) add_text(&texts, sample->s[i], sample->len[i]);
    add_edge_cases(&texts);
    for (int i = 0; i < texts.n; i++) add_text(&all, texts.s[i], texts.len[i]);
    add_unicode_probes(&all);
    if (!compare_with_hf("tokenizer-test-1.json", &all, "GPT-2 ByteLevel")) {
        free_texts(&texts);
        free_texts(&all);
        return;
    }
    size_t len = 0;
    char *json = read_all("tokenizer-test-1.json", &len);
    struct {
        const char *label, *pre;
    } forms[] = {
        {"Llama-3 Split",
         "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": "
         "\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| "
         "?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"}, "
         "\"behavior\": "
         "\"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
         "\"trim_offsets\": "
         "true, \"use_regex\": false}]}"},
        {"Qwen2 Split",
         "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": "
         "\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}| "
         "?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"}, "
         "\"behavior\": "
         "\"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
         "\"trim_offsets\": "
         "true, \"use_regex\": false}]}"},
        {"SmolLM2 Digits",
         "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Digits\", \"individual_digits\": true}, "
         "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": "
         "true}]}"},
    };
    for (size_t i = 0; json && i < sizeof forms / sizeof *forms; i++) {
        char *variant = with_pre_tokenizer(json, forms[i].pre);
        CHECK(variant != NULL);
        if (!variant) continue;
        write_all("tokenizer-test-variant.json", variant, strlen(variant));
        compare_with_hf("tokenizer-test-variant.json", i == 0 ? &all : &texts, forms[i].label);
        /* The variant survives save -> load unchanged. */
        gkd_tokenizer *tok = NULL;
        gkd_buf out = {0};
        CHECK(gkd_tokenizer_load("tokenizer-test-variant.json", &tok) == GKD_OK);
        if (tok) CHECK(gkd_tokenizer_to_json(tok, &out) == GKD_OK);
        CHECKF(out.data && strcmp(out.data, variant) == 0, "%s: save differs from the file loaded",
               forms[i].label);
        gkd_buf_free(&out);
        gkd_tokenizer_free(tok);
        free(variant);
    }
    /* ignore_merges (Llama-3): a piece that is a whole vocabulary token is emitted as it is. */
    char *ignore = json ? replace(json, "\"ignore_merges\": false", "\"ignore_merges\": true") : NULL;
    CHECK(ignore != NULL);
    if (ignore) {
        write_all("tokenizer-test-variant.json", ignore, strlen(ignore));
        compare_with_hf("tokenizer-test-variant.json", &texts, "ignore_merges");
    }
    free(ignore);
    free(json);

    /* A file Hugging Face wrote itself (specials first, its own id order, merges as pairs, a post-processor
     * gkd ignores) loads, encodes as the library does, and is stable through save -> load -> save. */
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "python3 '%s/tests/tokenizer_check.py' --train '%s' tokenizer-test-hf-trained.json",
             GKD_SOURCE_DIR, SAMPLE);
    int rc = system(cmd);
    CHECKF(rc != -1 && WIFEXITED(rc) && WEXITSTATUS(rc) == 0, "tokenizer_check.py --train failed");
    compare_with_hf("tokenizer-test-hf-trained.json", &texts, "trained by Hugging Face");
    gkd_tokenizer *hf = NULL, *back = NULL;
    gkd_buf b1 = {0}, b2 = {0};
    CHECKF(gkd_tokenizer_load("tokenizer-test-hf-trained.json", &hf) == GKD_OK, "%s", gkd_error_message());
    CHECK(hf && gkd_tokenizer_vocab_size(hf) == 3000 && gkd_tokenizer_token_id(hf, "<|im_end|>") == 2);
    CHECK(gkd_tokenizer_role_id(hf, GKD_TOKEN_ROLE_EOS) == 0);
    if (hf) CHECK(gkd_tokenizer_to_json(hf, &b1) == GKD_OK);
    CHECK(b1.data && gkd_tokenizer_from_json(b1.data, b1.len, "resaved", &back) == GKD_OK);
    if (back) CHECK(gkd_tokenizer_to_json(back, &b2) == GKD_OK);
    CHECK(b1.data && b2.data && b1.len == b2.len && memcmp(b1.data, b2.data, b1.len) == 0);
    for (int i = 0; hf && back && i < texts.n; i++) CHECK(round_trips(hf, texts.s[i], texts.len[i], 1, NULL));
    gkd_buf_free(&b1);
    gkd_buf_free(&b2);
    gkd_tokenizer_free(hf);
    gkd_tokenizer_free(back);
    free_texts(&texts);
    free_texts(&all);
}

/* gkd_tokenizer_add_specials on a copy of tok: new specials get the next ids in order, one it has keeps its
 * id, encode_special matches them, and they survive a save and load. */
static void check_add_specials(const gkd_tokenizer *tok) {
    gkd_buf j = {0};
    CHECK(gkd_tokenizer_to_json(tok, &j) == GKD_OK);
    gkd_tokenizer *t = NULL;
    CHECK(gkd_tokenizer_from_json(j.data, j.len, "copy", &t) == GKD_OK);
    gkd_buf_free(&j);
    if (!t) return;
    int V = gkd_tokenizer_vocab_size(t), sep = gkd_tokenizer_token_id(t, "<|sep|>");
    const char *add[] = {"<|cls|>", "<|sep|>", "<|yes|>"};
    CHECKF(gkd_tokenizer_add_specials(t, add, 3) == GKD_OK, "%s", gkd_error_message());
    CHECK(gkd_tokenizer_vocab_size(t) == V + 2);
    CHECK(gkd_tokenizer_token_id(t, "<|cls|>") == V && gkd_tokenizer_token_id(t, "<|yes|>") == V + 1);
    CHECK(gkd_tokenizer_token_id(t, "<|sep|>") == sep);
    CHECK(gkd_tokenizer_is_special(t, V) && gkd_tokenizer_is_special(t, V + 1));
    const char *text = "a<|cls|>b<|yes|>";
    int *ids = NULL, n = 0;
    CHECK(gkd_tokenizer_encode_special(t, text, strlen(text), &ids, &n) == GKD_OK);
    int found = 0;
    for (int i = 0; i < n; i++) found += ids[i] == V || ids[i] == V + 1;
    CHECKF(found == 2, "the added specials are matched in text (%d of 2)", found);
    free(ids);
    gkd_buf a = {0};
    CHECK(gkd_tokenizer_to_json(t, &a) == GKD_OK);
    gkd_tokenizer *back = NULL;
    CHECK(gkd_tokenizer_from_json(a.data, a.len, "saved", &back) == GKD_OK);
    CHECK(back && gkd_tokenizer_token_id(back, "<|yes|>") == V + 1 && gkd_tokenizer_vocab_size(back) == V + 2);
    CHECK(gkd_tokenizer_add_specials(t, add, 1) == GKD_OK && gkd_tokenizer_vocab_size(t) == V + 2);
    const char *empty[] = {""};
    CHECK(gkd_tokenizer_add_specials(t, empty, 1) == GKD_ERR_ARG);
    gkd_buf_free(&a);
    gkd_tokenizer_free(back);
    gkd_tokenizer_free(t);
}

int main(void) {
    text_list sample = {0};
    load_sample(&sample);
    CHECKF(sample.n == 2 * 522, "%d texts in the sample", sample.n);
    if (sample.n == 0) return check_exit();

    const char *specials[] = {"<|endoftext|>", "<|pad|>", "<|sep|>"};
    gkd_tokenizer *tok = NULL;
    double t0 = now_s();
    gkd_status st = gkd_tokenizer_train((const char *const *)sample.s, sample.n, 4096, specials, 3, &tok);
    double t_train = now_s() - t0;
    CHECKF(st == GKD_OK, "%s", gkd_error_message());
    if (!tok) return check_exit();
    fprintf(stderr, "trained vocab 4096 on %d texts in %.3f s\n", sample.n, t_train);
    CHECKF(t_train < 10.0, "training took %.1f s", t_train);
    CHECK(gkd_tokenizer_vocab_size(tok) == 4096);

    check_gpt2_split(tok);
    check_add_specials(tok);

    /* The acceptance criterion: every document and summary round-trips, with and without specials. */
    size_t bytes = 0;
    long n_tokens = 0;
    int failed = 0;
    for (int i = 0; i < sample.n; i++) {
        int n = 0;
        failed += !round_trips(tok, sample.s[i], sample.len[i], 0, &n);
        failed += !round_trips(tok, sample.s[i], sample.len[i], 1, NULL);
        bytes += sample.len[i];
        n_tokens += n;
    }
    CHECKF(failed == 0, "%d sample texts do not round-trip", failed);
    fprintf(stderr, "sample: %zu bytes -> %ld tokens (%.2f bytes/token)\n", bytes, n_tokens,
            (double)bytes / (double)n_tokens);
    CHECKF((double)bytes / (double)n_tokens > 3.0, "%.2f bytes/token: merges are not applied",
           (double)bytes / (double)n_tokens);

    /* Training is deterministic. */
    gkd_tokenizer *again = NULL;
    CHECK(gkd_tokenizer_train((const char *const *)sample.s, sample.n, 4096, specials, 3, &again) == GKD_OK);
    gkd_buf j1 = {0}, j2 = {0};
    CHECK(gkd_tokenizer_to_json(tok, &j1) == GKD_OK && again && gkd_tokenizer_to_json(again, &j2) == GKD_OK);
    CHECK(j1.data && j2.data && j1.len == j2.len && memcmp(j1.data, j2.data, j1.len) == 0);
    gkd_buf_free(&j1);
    gkd_buf_free(&j2);
    gkd_tokenizer_free(again);

    check_invalid_utf8(tok);
    check_specials(tok);
    check_longest_special(&sample);
    check_against_brute_force(&sample, 120, 400);
    check_save_load(tok, &sample);
    check_malformed();
    check_hugging_face(&sample);

    gkd_tokenizer_free(tok);
    free_texts(&sample);
    return check_exit();
}
