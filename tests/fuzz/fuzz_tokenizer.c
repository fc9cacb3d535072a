/* Fuzz harness: tokenizer.json loading (core/text/tokenizer*.c). The input is a tokenizer.json, optionally
 * followed by a NUL byte and a text (a JSON document holds no raw NUL, so the split is unambiguous; without
 * one a fixed text is used). A tokenizer that loads must encode the text to ids inside its vocabulary that
 * decode back to the same bytes (when it has a token for each of them), and must write a tokenizer.json that
 * loads and writes back to the same bytes (the writer's contract). */
#include <stdlib.h>
#include <string.h>

#include "core/text/tokenizer.h"
#include "tests/fuzz/fuzz.h"

int gkd_fuzz_tokenizer(const uint8_t *data, size_t size);

static const char default_text[] =
    "Hello world! It's 2026: 12345 apples\n\n  tabs\tand  spaces "
    "caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x99\x82 <|endoftext|></s>\xff\xfe";

/* 1 when every byte of text[0..len) has a token. encode drops a byte without one (as Hugging Face's BPE
 * does without an unk_token), so only then must decoding give the text back. */
static int knows_every_byte(const gkd_tokenizer *tok, const char *text, size_t len) {
    unsigned char seen[256] = {0};
    for (size_t i = 0; i < len; i++) {
        unsigned char b = (unsigned char)text[i];
        if (seen[b]) continue;
        seen[b] = 1;
        int *ids = NULL, n = 0;
        int known = gkd_tokenizer_encode(tok, (const char *)&b, 1, &ids, &n) == GKD_OK && n == 1;
        free(ids);
        if (!known) return 0;
    }
    return 1;
}

static void check_ids(const gkd_tokenizer *tok, const int *ids, int n) {
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= gkd_tokenizer_vocab_size(tok)) abort();
}

int gkd_fuzz_tokenizer(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    size_t json_len = nul ? (size_t)(nul - data) : size;
    const char *text = nul ? (const char *)nul + 1 : default_text;
    size_t text_len = nul ? size - json_len - 1 : sizeof default_text - 1;

    gkd_tokenizer *tok = NULL;
    if (gkd_tokenizer_from_json((const char *)data, json_len, "fuzz", &tok) != GKD_OK) return 0;

    int *ids = NULL, n = 0;
    if (gkd_tokenizer_encode(tok, text, text_len, &ids, &n) == GKD_OK) {
        check_ids(tok, ids, n);
        char *back = NULL;
        size_t back_len = 0;
        if (gkd_tokenizer_decode(tok, ids, n, &back, &back_len) != GKD_OK) abort();
        if (knows_every_byte(tok, text, text_len) &&
            (back_len != text_len || memcmp(back, text, text_len) != 0))
            abort();
        free(back);
    }
    free(ids);
    ids = NULL;
    if (gkd_tokenizer_encode_special(tok, text, text_len, &ids, &n) == GKD_OK) {
        check_ids(tok, ids, n);
        char *back = NULL;
        size_t back_len = 0;
        if (gkd_tokenizer_decode(tok, ids, n, &back, &back_len) != GKD_OK) abort();
        free(back);
    }
    free(ids);
    size_t *ends = NULL;
    if (gkd_tokenizer_pretokenize(tok, text, text_len, &ends, &n) == GKD_OK)
        for (int i = 0; i < n; i++)
            if (ends[i] > text_len || (i > 0 && ends[i] < ends[i - 1])) abort();
    free(ends);

    for (int id = -1; id <= gkd_tokenizer_vocab_size(tok); id++) {
        const char *s = gkd_tokenizer_token_str(tok, id);
        size_t len;
        gkd_tokenizer_token_bytes(tok, id, &len);
        gkd_tokenizer_is_special(tok, id);
        if (s && gkd_tokenizer_token_id(tok, s) < 0) abort();
    }
    for (int r = 0; r < GKD_TOKEN_ROLE_COUNT; r++) gkd_tokenizer_role_id(tok, (gkd_token_role)r);

    gkd_buf once = {0}, twice = {0};
    if (gkd_tokenizer_to_json(tok, &once) == GKD_OK) {
        gkd_tokenizer *again = NULL;
        if (gkd_tokenizer_from_json(once.data, once.len, "fuzz (written back)", &again) != GKD_OK) abort();
        if (gkd_tokenizer_to_json(again, &twice) == GKD_OK &&
            (twice.len != once.len || memcmp(twice.data, once.data, once.len) != 0))
            abort();
        gkd_tokenizer_free(again);
    }
    gkd_buf_free(&once);
    gkd_buf_free(&twice);
    gkd_tokenizer_free(tok);
    return 0;
}

GKD_FUZZ_ENTRY(tokenizer)
