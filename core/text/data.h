/* Datasets: JSON Lines files mapped to (source, prompt, target) examples by a task, a synthetic
 * arithmetic task, tokenisation into training rows, deterministic splits and batches.
 * Rules: a malformed line is an error naming the file and the line (never skipped silently); the
 * prompt is built from a template whose {field} placeholders name JSONL fields; the target is one field.
 * Training rows are prompt tokens + target tokens + EOS; the loss mask selects target positions only.
 * A dataset's format (chat template, terminator) is applied at tokenisation, never to the example texts,
 * so metrics compare outputs with the bare references; all-NULL is the plain format. */
#ifndef GKD_DATA_H
#define GKD_DATA_H

#include <stdint.h>

#include "core/base/error.h"
#include "core/base/rng.h"

typedef struct gkd_tokenizer gkd_tokenizer;

typedef struct {
    char *source; /* text the output must be faithful to (factual reward); may equal the prompt's input */
    char *prompt; /* the model's input text (template applied) */
    char *target; /* the reference output */
    int cue_len;  /* bytes at the end of prompt that follow the template's last placeholder ("\nSummary:") */
} gkd_example;

/* How an example becomes a token row beyond its texts. The template parts (prompt_prefix, prompt_suffix,
 * terminator) are encoded with added tokens matched ("<|im_end|>" becomes its id); the example texts and
 * target_prefix are not. Each field may be NULL (nothing). Strings are owned by the dataset. */
typedef struct {
    char *prompt_prefix; /* before the prompt, e.g. "<|im_start|>user\n" */
    char *prompt_suffix; /* after it, e.g. "<|im_end|>\n<|im_start|>assistant\n" (kept when the prompt is cut) */
    char *target_prefix; /* before the target, encoded with it, e.g. " " */
    char *terminator;    /* after the target, e.g. "<|im_end|>"; when it ends in EOS no second EOS is added */
} gkd_text_format;

typedef struct {
    gkd_example *items;
    int n;
    gkd_text_format fmt;
} gkd_dataset;

/* Copies src's strings into *dst (which is overwritten); GKD_ERR_NOMEM leaves *dst empty. */
gkd_status gkd_text_format_copy(gkd_text_format *dst, const gkd_text_format *src);
void gkd_text_format_free(gkd_text_format *f);

/* How JSONL fields map to an example. prompt_template uses {field} placeholders; target_field and
 * source_field name fields (source_field may be NULL: then the source is the prompt's input text). */
typedef struct {
    const char *prompt_template; /* e.g. "Summarize: {document}\nSummary:" */
    const char *target_field;    /* e.g. "summary" */
    const char *source_field;    /* e.g. "document" */
    int max_examples;            /* 0 = all */
} gkd_task_spec;

/* Reads a JSONL file (plain, or .xz through `xz -dc`; a UTF-8 byte order mark at its start is skipped) into
 * examples. Caller owns *out (gkd_dataset_free). Errors name the file and line: bad JSON, a missing or
 * non-string field, a field holding \u0000 (examples are C strings), an empty prompt (nothing to generate
 * from). */
gkd_status gkd_dataset_load_jsonl(const char *path, const gkd_task_spec *spec, gkd_dataset *out);
/* Built-in synthetic arithmetic: multi-step word problems with a worked answer ending in the number.
 * Deterministic in (seed, n). */
gkd_status gkd_dataset_arithmetic(uint64_t seed, int n, gkd_dataset *out);
void gkd_dataset_free(gkd_dataset *d);
/* Splits d deterministically (shuffled by seed, stream DATA) into train and held-out parts; the
 * examples are moved, d is left empty; both parts get copies of d's format. */
gkd_status gkd_dataset_split(gkd_dataset *d, double held_out_fraction, uint64_t seed, gkd_dataset *train,
                             gkd_dataset *held_out);

/* An example tokenised: prompt ids then target ids (EOS appended to the target). */
typedef struct {
    int *ids;
    int prompt_len;
    int len; /* prompt_len + target length (incl. EOS) */
} gkd_tokenized;

typedef struct {
    gkd_tokenized *rows;
    int n;
} gkd_token_dataset;

/* Tokenises every example: prompt_prefix, the prompt's body, its cue (the template text after the last
 * placeholder), prompt_suffix, then target_prefix + target, the terminator and EOS (omitted when the
 * terminator's last token is EOS). The parts are tokenised apart, so that a prompt longer than max_prompt
 * loses the end of its body, never the template parts; a target is cut to max_target tokens including
 * terminator and EOS. A prompt that encodes to no token is refused
 * (GKD_ERR_ARG naming the example). Caller owns *out (gkd_token_dataset_free). */
gkd_status gkd_dataset_tokenize(const gkd_dataset *d, const gkd_tokenizer *tok, int max_prompt, int max_target,
                                gkd_token_dataset *out);
void gkd_token_dataset_free(gkd_token_dataset *d);

/* A teacher-forcing batch: B rows of T = longest row - 1; row b is ids[0..len-1) as input and ids[1..len)
 * as targets, right-padded with pad_id; mask is 1 exactly on positions whose target is a target token. */
typedef struct {
    int B, T;
    int *tokens;      /* (B,T) */
    int *targets;     /* (B,T) */
    float *mask;      /* (B,T) */
    int *prompt_lens; /* (B) */
    int *lens;        /* (B) full row length incl. target */
    int cap_rows, cap_t;
} gkd_batch;

/* Fills `batch` from rows idx[0..B) of d (growing its buffers as needed). */
gkd_status gkd_batch_make(gkd_batch *batch, const gkd_token_dataset *d, const int *idx, int B, int pad_id);
/* Fills `batch` from prompts plus generated continuations (on-policy rows): prompt b is rows
 * idx[b]'s prompt, its output is out_tokens[b*out_stride .. + out_lens[b]). */
gkd_status gkd_batch_make_generated(gkd_batch *batch, const gkd_token_dataset *d, const int *idx, int B,
                                    const int *out_tokens, const int *out_lens, int out_stride, int pad_id);
void gkd_batch_free(gkd_batch *batch);

/* An epoch-based data order: a fresh shuffle (stream DATA) each epoch; position persists for resume. */
typedef struct {
    int n;
    int *perm;
    int64_t position; /* rows consumed since the start */
    uint64_t seed;
} gkd_data_order;

gkd_status gkd_data_order_init(gkd_data_order *o, int n, uint64_t seed);
/* Next B row indices into idx; deterministic in (seed, position). */
void gkd_data_order_next(gkd_data_order *o, int *idx, int B);
/* Moves to an absolute position (resume). */
void gkd_data_order_seek(gkd_data_order *o, int64_t position);
void gkd_data_order_free(gkd_data_order *o);

#endif
