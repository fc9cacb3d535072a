/* Fuzz harness: the JSONL dataset reader (core/text/data.c) and what consumes its examples (tokenisation,
 * splitting, batches). Input: three lines giving the task (the prompt template, the target field and the
 * source field, empty for none), then the JSONL file. Examples that load are tokenised with a small trained
 * tokenizer, split, and laid out as teacher-forced and generated batches, whose shapes are checked. */
#include <stdlib.h>
#include <string.h>

#include "core/text/data.h"
#include "core/text/tokenizer.h"
#include "tests/fuzz/fuzz.h"

int gkd_fuzz_data(const uint8_t *data, size_t size);

enum { MAX_PROMPT = 24, MAX_TARGET = 16, MAX_B = 4 };

/* Trained once; reachable from this static for the process's life. */
static const gkd_tokenizer *tokenizer(void) {
    static gkd_tokenizer *tok;
    if (!tok) {
        const char *texts[] = {"Summarize: the cat sat on the mat.\nSummary: a cat sat.",
                               "Translate: bonjour le monde\nAnswer: hello world 123"};
        const char *specials[] = {"<|endoftext|>"};
        if (gkd_tokenizer_train(texts, 2, 300, specials, 1, &tok) != GKD_OK) abort();
    }
    return tok;
}

/* Copies the next line of data[*pos..size) into a NUL-terminated string (caller frees). */
static char *next_line(const uint8_t *data, size_t size, size_t *pos) {
    const uint8_t *nl = memchr(data + *pos, '\n', size - *pos);
    size_t end = nl ? (size_t)(nl - data) : size;
    char *line = malloc(end - *pos + 1);
    if (!line) abort();
    memcpy(line, data + *pos, end - *pos);
    line[end - *pos] = '\0';
    *pos = nl ? end + 1 : size;
    return line;
}

static void use_dataset(gkd_dataset *d) {
    const gkd_tokenizer *tok = tokenizer();
    gkd_token_dataset td;
    if (gkd_dataset_tokenize(d, tok, MAX_PROMPT, MAX_TARGET, &td) == GKD_OK) {
        int V = gkd_tokenizer_vocab_size(tok);
        for (int i = 0; i < td.n; i++) {
            const gkd_tokenized *r = &td.rows[i];
            if (r->prompt_len < 0 || r->prompt_len > MAX_PROMPT || r->len <= r->prompt_len ||
                r->len - r->prompt_len > MAX_TARGET)
                abort();
            for (int t = 0; t < r->len; t++)
                if (r->ids[t] < 0 || r->ids[t] >= V) abort();
        }
        gkd_data_order order;
        if (gkd_data_order_init(&order, td.n, 7) == GKD_OK) {
            int idx[MAX_B], B = td.n < MAX_B ? td.n : MAX_B;
            gkd_data_order_next(&order, idx, B);
            gkd_batch batch = {0};
            if (gkd_batch_make(&batch, &td, idx, B, 0) == GKD_OK &&
                (batch.B != B || batch.T < 1 || batch.T > MAX_PROMPT + MAX_TARGET))
                abort();
            int out[MAX_B * 3] = {0}, lens[MAX_B] = {3, 0, 1, 2};
            gkd_batch_make_generated(&batch, &td, idx, B, out, lens, 3, 0);
            gkd_batch_free(&batch);
            gkd_data_order_seek(&order, 5);
            gkd_data_order_next(&order, idx, B);
            gkd_data_order_free(&order);
        }
        gkd_token_dataset_free(&td);
    }
    gkd_dataset train, held;
    if (gkd_dataset_split(d, 0.25, 3, &train, &held) == GKD_OK) {
        gkd_dataset_free(&train);
        gkd_dataset_free(&held);
    }
}

int gkd_fuzz_data(const uint8_t *data, size_t size) {
    size_t pos = 0;
    char *tmpl = next_line(data, size, &pos), *target = next_line(data, size, &pos),
         *source = next_line(data, size, &pos);
    gkd_task_spec spec = {
        .prompt_template = tmpl, .target_field = target, .source_field = *source ? source : NULL};
    gkd_dataset d;
    if (gkd_dataset_load_jsonl(gkd_fuzz_file("jsonl", data + pos, size - pos), &spec, &d) == GKD_OK) {
        for (int i = 0; i < d.n; i++)
            if (!d.items[i].prompt || !d.items[i].target || !d.items[i].source || d.items[i].cue_len < 0 ||
                (size_t)d.items[i].cue_len > strlen(d.items[i].prompt))
                abort();
        use_dataset(&d);
        gkd_dataset_free(&d);
    }
    free(tmpl);
    free(target);
    free(source);
    return 0;
}

GKD_FUZZ_ENTRY(data)
