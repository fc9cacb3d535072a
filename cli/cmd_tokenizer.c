/* gkd train-tokenizer: trains a byte-level BPE tokenizer on text fields of a JSONL corpus. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/text/data.h"
#include "core/text/tokenizer.h"

int gkd_cmd_train_tokenizer(int argc, char **argv) {
    gkd_cli_args a;
    if (gkd_cli_parse(&a, "train-tokenizer", argc, argv, 2, "") != 0) return 2;
    int bad = 0;
    const char *data = gkd_cli_str(&a, "data", NULL);
    const char *fields = gkd_cli_str(&a, "fields", "document,summary");
    const char *out = gkd_cli_str(&a, "out", "tokenizer.json");
    long long vocab = gkd_cli_int(&a, "vocab", 4096, &bad);
    long long max_docs = gkd_cli_int(&a, "max-docs", 0, &bad);
    if (bad || gkd_cli_check_unused(&a)) return 2;
    if (!data) {
        gkd_cli_error("train-tokenizer", "--data FILE.jsonl is required (and --fields a,b, --vocab N, --out FILE)");
        return 2;
    }
    /* Each listed field becomes one training text per line, through the dataset reader (so errors name
     * the file and line). */
    char field_list[1024];
    snprintf(field_list, sizeof field_list, "%s", fields);
    const char **texts = NULL;
    int n_texts = 0, cap = 0;
    gkd_dataset sets[16];
    int n_sets = 0;
    for (char *f = strtok(field_list, ","); f && n_sets < 16; f = strtok(NULL, ",")) {
        char tmpl[256];
        snprintf(tmpl, sizeof tmpl, "{%s}", f);
        gkd_task_spec spec = {tmpl, f, NULL, (int)max_docs};
        if (gkd_dataset_load_jsonl(data, &spec, &sets[n_sets]) != GKD_OK) {
            gkd_cli_error("train-tokenizer", "%s", gkd_error_message());
            for (int i = 0; i < n_sets; i++) gkd_dataset_free(&sets[i]);
            free(texts);
            return 2;
        }
        for (int i = 0; i < sets[n_sets].n; i++) {
            if (n_texts == cap) {
                cap = cap ? cap * 2 : 1024;
                const char **grown = realloc(texts, (size_t)cap * sizeof *texts);
                if (!grown) {
                    gkd_cli_error("train-tokenizer", "out of memory after %d texts", n_texts);
                    for (int j = 0; j <= n_sets; j++) gkd_dataset_free(&sets[j]);
                    free(texts);
                    return 1;
                }
                texts = grown;
            }
            texts[n_texts++] = sets[n_sets].items[i].target;
        }
        n_sets++;
    }
    const char *specials[] = {"<|endoftext|>", "<|pad|>"};
    gkd_tokenizer *tok = NULL;
    int rc = 0;
    if (gkd_tokenizer_train(texts, n_texts, (int)vocab, specials, 2, &tok) != GKD_OK ||
        gkd_tokenizer_save(tok, out) != GKD_OK) {
        gkd_cli_error("train-tokenizer", "%s", gkd_error_message());
        rc = 1;
    } else {
        printf("trained a tokenizer of %d tokens on %d texts from %s -> %s\n", gkd_tokenizer_vocab_size(tok), n_texts,
               data, out);
    }
    gkd_tokenizer_free(tok);
    for (int i = 0; i < n_sets; i++) gkd_dataset_free(&sets[i]);
    free(texts);
    return rc;
}
