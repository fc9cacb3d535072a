/* Byte-level BPE tokenizer as GPT-2, Llama-3 and SmolLM2 use it: training on a corpus, encoding,
 * decoding, and the Hugging Face tokenizer.json format (the BPE model subset).
 * Rules: text is bytes, never required to be valid UTF-8: decode(encode(x)) == x for every byte string when
 * the vocabulary has a token for every byte. A loaded vocabulary may lack some (SmolLM2's lacks the bytes
 * no UTF-8 text has, and a few controls): encoding drops those bytes, as Hugging Face's BPE without an
 * unk_token drops characters outside its vocabulary, and the neighbours of a dropped byte may merge.
 * Ids are dense in [0, vocab size). A trained tokenizer has ids 0..255 = the raw bytes, then one id per
 * merge in rank order, then the special tokens in the order given; a loaded one keeps the file's ids.
 * Special (added) tokens are matched in the text only by gkd_tokenizer_encode_special(). A tokenizer is
 * immutable after creation except for gkd_tokenizer_set_role(), so encode/decode/lookups may run on many
 * threads at once. What the Unicode classes and pre-tokenizers cover is in docs/tokenizer.md. */
#ifndef GKD_TOKENIZER_H
#define GKD_TOKENIZER_H

#include <stddef.h>

#include "core/base/error.h"
#include "core/base/json.h"

typedef struct gkd_tokenizer gkd_tokenizer;

/* Roles a special token can play; their ids are found by conventional names at train/load time
 * (eos: <|endoftext|>, <|end_of_text|>, </s>, <eos>; bos: <|begin_of_text|>, <s>, <bos>,
 * <|startoftext|>; pad: <|pad|>, <pad>, <|finetune_right_pad_id|>) and can be overridden. */
typedef enum {
    GKD_TOKEN_ROLE_EOS,
    GKD_TOKEN_ROLE_BOS,
    GKD_TOKEN_ROLE_PAD,
    GKD_TOKEN_ROLE_COUNT,
} gkd_token_role;

/* Trains a byte-level BPE tokenizer on texts[0..n) (NUL-terminated) with the GPT-2 pre-tokenizer, until
 * vocab_size tokens (256 bytes + merges + n_specials special tokens) or until no pair of tokens is left
 * to merge (then the vocabulary is smaller: ask gkd_tokenizer_vocab_size). Pairs are chosen by count,
 * ties broken by the smaller left id, then the smaller right id, so training is deterministic.
 * specials: distinct, non-empty strings, copied. On success *out is owned by the caller
 * (gkd_tokenizer_free); the texts are not kept. */
gkd_status gkd_tokenizer_train(const char *const *texts, int n, int vocab_size, const char *const *specials,
                               int n_specials, gkd_tokenizer **out);

/* Reads a Hugging Face tokenizer.json. Errors name the file and the field at fault. On success *out is
 * owned by the caller (gkd_tokenizer_free). */
gkd_status gkd_tokenizer_load(const char *path, gkd_tokenizer **out);
/* As gkd_tokenizer_load from text[0..len); `where` names the source in errors (may be NULL). */
gkd_status gkd_tokenizer_from_json(const char *text, size_t len, const char *where, gkd_tokenizer **out);
/* Pre-tokenizer layouts for a tokenizer built from arrays (gkd_tokenizer_from_vocab), named after the
 * tokenizer.json pre_tokenizer each one reproduces (docs/tokenizer.md describes the patterns). */
typedef enum {
    GKD_PRETOKENIZER_GPT2,      /* ByteLevel with the GPT-2 regex */
    GKD_PRETOKENIZER_LLAMA3,    /* Split with the Llama-3 regex, then ByteLevel without a regex */
    GKD_PRETOKENIZER_QWEN2,     /* Split with the Qwen2 regex, then ByteLevel without a regex */
    GKD_PRETOKENIZER_STARCODER, /* Digits (individual_digits), then ByteLevel with the GPT-2 regex: StarCoder,
                                   SmolLM */
} gkd_pretokenizer;

/* What a token of a vocabulary array is: an ordinary vocabulary entry (its byte-level string), or an added
 * token (its content), special or not. */
typedef enum {
    GKD_TOKEN_KIND_NORMAL,
    GKD_TOKEN_KIND_SPECIAL,
    GKD_TOKEN_KIND_ADDED,
} gkd_token_kind;

/* A byte-level BPE vocabulary as arrays, the way GGUF metadata carries it (tokenizer.ggml.tokens, .merges,
 * .token_type). Nothing is kept after the call. */
typedef struct {
    const char *const *tokens;   /* n_tokens strings; token i has id i */
    const size_t *token_lens;    /* their byte lengths; NULL: NUL-terminated */
    const gkd_token_kind *kinds; /* per token; NULL: all GKD_TOKEN_KIND_NORMAL */
    int n_tokens;
    const char *const *merges; /* n_merges "left right" strings (byte-level), highest priority first */
    const size_t *merge_lens;  /* NULL: NUL-terminated */
    int n_merges;
    gkd_pretokenizer pre_tokenizer;
    int ignore_merges; /* a piece that is a whole vocabulary token is not merged (Llama-3) */
    const char *tokens_field, *merges_field; /* names of the arrays in errors; NULL: "tokens", "merges" */
} gkd_tokenizer_vocab;

/* Builds a tokenizer from arrays. Added tokens are matched by gkd_tokenizer_encode_special, with
 * tokenizer.json's default "normalized" (false for special tokens, true for the others); one whose content is
 * written in the byte-level alphabet's self-standing characters ("<|im_end|>") is also a vocabulary entry.
 * Roles are found by the conventional names (override with gkd_tokenizer_set_role). Errors (GKD_ERR_FORMAT)
 * name `where` (may be NULL), the array and the index: a string outside the byte-level alphabet, duplicate
 * strings, a missing byte, a merge of unknown tokens. On success *out is owned by the caller
 * (gkd_tokenizer_free). */
gkd_status gkd_tokenizer_from_vocab(const gkd_tokenizer_vocab *vocab, const char *where, gkd_tokenizer **out);

/* Writes tok as tokenizer.json, loadable by Hugging Face `tokenizers` (Tokenizer.from_file). The output is
 * a function of the tokenizer alone, so save -> load -> save reproduces the file byte for byte. */
gkd_status gkd_tokenizer_save(const gkd_tokenizer *tok, const char *path);
/* Appends the tokenizer.json text to *out (caller owns the buffer, gkd_buf_free). */
gkd_status gkd_tokenizer_to_json(const gkd_tokenizer *tok, gkd_buf *out);

/* Appends the special tokens among specials[0..n) that tok lacks, with the next ids, in order (one it has
 * keeps its id); they are matched by gkd_tokenizer_encode_special and saved as added tokens. For building
 * a tokenizer (e.g. a reward model's from a pretrained one), before it is shared. */
gkd_status gkd_tokenizer_add_specials(gkd_tokenizer *tok, const char *const *specials, int n);

void gkd_tokenizer_free(gkd_tokenizer *tok);

/* Encodes text[0..len) treating every byte as text (a special token's string gives ordinary tokens).
 * On success *ids (malloc'd, caller frees; non-NULL even when *n == 0) holds *n ids. */
gkd_status gkd_tokenizer_encode(const gkd_tokenizer *tok, const char *text, size_t len, int **ids, int *n);
/* As gkd_tokenizer_encode, but occurrences of added tokens (special or not) become their ids, matched
 * leftmost-longest as Hugging Face `tokenizers` does. */
gkd_status gkd_tokenizer_encode_special(const gkd_tokenizer *tok, const char *text, size_t len, int **ids,
                                        int *n);
/* Concatenates the bytes of ids[0..n) (special tokens give their strings). On success *text (malloc'd,
 * caller frees, NUL-terminated after *len bytes) holds them. An id outside the vocabulary is GKD_ERR_ARG. */
gkd_status gkd_tokenizer_decode(const gkd_tokenizer *tok, const int *ids, int n, char **text, size_t *len);

/* The pre-tokenizer alone: splits text[0..len) into pieces that BPE encodes independently. On success
 * *ends (malloc'd, caller frees; non-NULL) holds the *n byte offsets where the pieces end. */
gkd_status gkd_tokenizer_pretokenize(const gkd_tokenizer *tok, const char *text, size_t len, size_t **ends,
                                     int *n);

int gkd_tokenizer_vocab_size(const gkd_tokenizer *tok);
/* Id of a token by its tokenizer.json string (byte-level form, e.g. "Ġthe", or an added token's content
 * such as "<|endoftext|>"), or -1. */
int gkd_tokenizer_token_id(const gkd_tokenizer *tok, const char *token);
/* The tokenizer.json string of an id (owned by tok), or NULL when out of range. */
const char *gkd_tokenizer_token_str(const gkd_tokenizer *tok, int id);
/* The bytes an id decodes to (owned by tok; *len set), or NULL when out of range. */
const char *gkd_tokenizer_token_bytes(const gkd_tokenizer *tok, int id, size_t *len);
/* 1 when id is an added token marked special, else 0. */
int gkd_tokenizer_is_special(const gkd_tokenizer *tok, int id);
/* The id playing `role`, or -1 when the tokenizer has none. */
int gkd_tokenizer_role_id(const gkd_tokenizer *tok, gkd_token_role role);
/* Sets the id playing `role` (-1: none); GKD_ERR_ARG when id is out of range. */
gkd_status gkd_tokenizer_set_role(gkd_tokenizer *tok, gkd_token_role role, int id);

#endif
