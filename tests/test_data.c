/* Datasets: JSONL tasks (and their errors, which name file and line: empty prompts and \u0000 included; a
 * byte order mark is skipped), the arithmetic task, splits, tokenisation with cue-preserving truncation,
 * batch masks and a resumable data order. */
// ctest-labels: cpu
#include "core/text/data.h"
#include "core/text/tokenizer.h"
#include "tests/check.h"

#include <string.h>
#include <unistd.h>

static const char *write_tmp(const char *name, const char *text) {
    static char path[256];
    snprintf(path, sizeof path, "/tmp/gkd-test-data-%d-%s", (int)getpid(), name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

/* Lines a hostile or careless file holds: an empty prompt is refused at load (it failed only at the final
 * evaluation), \u0000 in a field is refused (it cut the text), a byte order mark at the start of the file is
 * skipped (it read as "invalid number"). Each error names the file and the line. */
static void test_hostile_lines(void) {
    gkd_task_spec qa = {"{q}", "a", NULL, 0};
    gkd_dataset e;
    const char *empty =
        write_tmp("empty.jsonl", "{\"q\": \"two?\", \"a\": \"2\"}\n{\"q\": \"\", \"a\": \"none\"}\n");
    gkd_status st = gkd_dataset_load_jsonl(empty, &qa, &e);
    CHECKF(st == GKD_ERR_FORMAT && e.n == 0, "empty prompt: status %d", (int)st);
    char want[300];
    snprintf(want, sizeof want, "%s:2: the prompt is empty", empty);
    CHECKF(strstr(gkd_error_message(), want), "%s", gkd_error_message());
    if (st == GKD_OK) gkd_dataset_free(&e);

    gkd_task_spec spec = {"Summarize: {document}\nSummary:", "summary", "document", 0};
    const char *nul_lines[] = {
        "{\"document\": \"a\", \"summary\": \"b\"}\n{\"document\": \"a\\u0000b\", \"summary\": \"c\"}\n",
        "{\"document\": \"a\", \"summary\": \"b\"}\n{\"document\": \"a\", \"summary\": \"c\\u0000\"}\n",
    };
    const char *nul_fields[] = {"document", "summary"};
    for (int i = 0; i < 2; i++) {
        const char *path = write_tmp("nul.jsonl", nul_lines[i]);
        st = gkd_dataset_load_jsonl(path, &spec, &e);
        CHECKF(st == GKD_ERR_FORMAT && e.n == 0, "\\u0000 in %s: status %d", nul_fields[i], (int)st);
        snprintf(want, sizeof want, "%s:2: field \"%s\" holds \\u0000", path, nul_fields[i]);
        CHECKF(strstr(gkd_error_message(), want), "%s", gkd_error_message());
        if (st == GKD_OK) gkd_dataset_free(&e);
        unlink(path);
    }

    const char *boms[] = {
        "\xEF\xBB\xBF{\"document\": \"a\", \"summary\": \"b\"}\n{\"document\": \"c\", \"summary\": \"d\"}\n",
        "\xEF\xBB\xBF\n{\"document\": \"a\", \"summary\": \"b\"}\n{\"document\": \"c\", \"summary\": \"d\"}"};
    for (int i = 0; i < 2; i++) {
        const char *path = write_tmp("bom.jsonl", boms[i]);
        st = gkd_dataset_load_jsonl(path, &spec, &e);
        CHECKF(st == GKD_OK && e.n == 2 && strcmp(e.items[0].source, "a") == 0, "byte order mark %d: %s", i,
               gkd_error_message());
        if (st == GKD_OK) gkd_dataset_free(&e);
        unlink(path);
    }
    unlink(empty);

    /* a prompt that reaches the tokenizer empty (not from a file) is refused there, naming the example */
    const char *texts[] = {"alpha beta"}, *specials[] = {"<|endoftext|>", "<|pad|>"};
    gkd_tokenizer *tok = NULL;
    CHECK(gkd_tokenizer_train(texts, 1, 270, specials, 2, &tok) == GKD_OK);
    gkd_example ex[2] = {{"alpha", "alpha", "beta", 0}, {"", "", "beta", 0}};
    gkd_dataset d = {ex, 2, {0}};
    gkd_token_dataset td;
    st = gkd_dataset_tokenize(&d, tok, 8, 8, &td);
    CHECKF(st == GKD_ERR_ARG && strstr(gkd_error_message(), "example 1") &&
               strstr(gkd_error_message(), "no tokens"),
           "status %d: %s", (int)st, gkd_error_message());
    if (st == GKD_OK) gkd_token_dataset_free(&td);
    gkd_tokenizer_free(tok);
}

int main(void) {
    gkd_task_spec spec = {"Summarize: {document}\nSummary:", "summary", "document", 0};
    gkd_dataset d;
    const char *sample = GKD_SOURCE_DIR "/tests/fixtures/debdesc-sample.jsonl";
    CHECKF(gkd_dataset_load_jsonl(sample, &spec, &d) == GKD_OK, "%s", gkd_error_message());
    CHECK(d.n == 522);
    CHECK(strncmp(d.items[0].prompt, "Summarize: ", 11) == 0);
    CHECK(d.items[0].cue_len == (int)strlen("\nSummary:"));
    size_t plen = strlen(d.items[0].prompt);
    CHECK(strcmp(d.items[0].prompt + plen - 9, "\nSummary:") == 0);
    CHECK(strstr(d.items[0].prompt, d.items[0].source) != NULL);

    /* A broken line names the file and the line. */
    const char *bad = write_tmp("bad.jsonl", "{\"document\": \"a\", \"summary\": \"b\"}\n{\"document\": \"a\", \"summ\n");
    gkd_dataset e;
    CHECK(gkd_dataset_load_jsonl(bad, &spec, &e) == GKD_ERR_FORMAT);
    CHECKF(strstr(gkd_error_message(), bad) && strstr(gkd_error_message(), ":2"), "%s", gkd_error_message());
    const char *missing = write_tmp("missing.jsonl", "{\"document\": \"a\", \"summary\": \"b\"}\n\n{\"document\": \"a\"}\n");
    CHECK(gkd_dataset_load_jsonl(missing, &spec, &e) == GKD_ERR_FORMAT);
    CHECKF(strstr(gkd_error_message(), ":3") && strstr(gkd_error_message(), "\"summary\" is missing"), "%s",
           gkd_error_message());
    const char *notstr = write_tmp("notstr.jsonl", "{\"document\": 5, \"summary\": \"b\"}\n");
    CHECK(gkd_dataset_load_jsonl(notstr, &spec, &e) == GKD_ERR_FORMAT);
    CHECKF(strstr(gkd_error_message(), ":1") && strstr(gkd_error_message(), "not a string"), "%s", gkd_error_message());
    CHECK(gkd_dataset_load_jsonl("/nonexistent.jsonl", &spec, &e) == GKD_ERR_IO);
    unlink(bad);
    unlink(missing);
    unlink(notstr);

    /* Arithmetic: deterministic, answers consistent with the worked steps. */
    gkd_dataset a1, a2;
    CHECK(gkd_dataset_arithmetic(5, 50, &a1) == GKD_OK);
    CHECK(gkd_dataset_arithmetic(5, 50, &a2) == GKD_OK);
    for (int i = 0; i < 50; i++) {
        CHECK(strcmp(a1.items[i].prompt, a2.items[i].prompt) == 0 && strcmp(a1.items[i].target, a2.items[i].target) == 0);
        int x, y, s, ans;
        CHECK(sscanf(a1.items[i].target, " %d + %d = %d.", &x, &y, &s) == 3 && x + y == s);
        const char *last = strstr(a1.items[i].target, "Answer: ");
        CHECK(last && sscanf(last, "Answer: %d", &ans) == 1 && (ans == s || ans % s == 0));
    }
    gkd_dataset_free(&a2);

    /* Split: disjoint, complete, deterministic. */
    gkd_dataset train, held;
    int n_before = d.n;
    CHECK(gkd_dataset_split(&d, 0.1, 3, &train, &held) == GKD_OK);
    CHECK(train.n + held.n == n_before && held.n == 52 && d.n == 0);

    /* Tokenisation: prompt + target + EOS, cue kept under truncation. */
    const char *texts[64];
    for (int i = 0; i < 64; i++) texts[i] = train.items[i].prompt;
    const char *specials[] = {"<|endoftext|>", "<|pad|>"};
    gkd_tokenizer *tok = NULL;
    CHECKF(gkd_tokenizer_train(texts, 64, 600, specials, 2, &tok) == GKD_OK, "%s", gkd_error_message());
    int eos = gkd_tokenizer_role_id(tok, GKD_TOKEN_ROLE_EOS), pad = gkd_tokenizer_role_id(tok, GKD_TOKEN_ROLE_PAD);
    CHECK(eos >= 0 && pad >= 0);
    gkd_token_dataset td;
    CHECKF(gkd_dataset_tokenize(&train, tok, 24, 12, &td) == GKD_OK, "%s", gkd_error_message());
    int *cue = NULL, n_cue = 0;
    gkd_tokenizer_encode(tok, "\nSummary:", 9, &cue, &n_cue);
    for (int i = 0; i < td.n; i++) {
        const gkd_tokenized *r = &td.rows[i];
        CHECK(r->prompt_len <= 24 && r->len - r->prompt_len <= 12 && r->ids[r->len - 1] == eos);
        CHECK(memcmp(r->ids + r->prompt_len - n_cue, cue, (size_t)n_cue * sizeof *cue) == 0);
    }
    free(cue);

    /* Batches: targets shifted by one, mask exactly on target tokens. */
    gkd_batch batch = {0};
    int idx[3] = {0, 1, 2};
    CHECK(gkd_batch_make(&batch, &td, idx, 3, pad) == GKD_OK);
    for (int b = 0; b < 3; b++) {
        const gkd_tokenized *r = &td.rows[idx[b]];
        int masked = 0;
        for (int t = 0; t < batch.T; t++) {
            if (t < r->len - 1) CHECK(batch.tokens[b * batch.T + t] == r->ids[t] && batch.targets[b * batch.T + t] == r->ids[t + 1]);
            masked += batch.mask[b * batch.T + t] != 0;
            if (batch.mask[b * batch.T + t] != 0) CHECK(t >= r->prompt_len - 1 && t < r->len - 1);
        }
        CHECK(masked == r->len - r->prompt_len);
    }
    int gen[3 * 4] = {7, 8, eos, 0, 9, 0, 0, 0, 5, 6, 7, 8}, gen_lens[3] = {3, 1, 4};
    CHECK(gkd_batch_make_generated(&batch, &td, idx, 3, gen, gen_lens, 4, pad) == GKD_OK);
    for (int b = 0; b < 3; b++) {
        int p = td.rows[idx[b]].prompt_len, masked = 0;
        CHECK(batch.targets[b * batch.T + p - 1] == gen[b * 4]);
        for (int t = 0; t < batch.T; t++) masked += batch.mask[b * batch.T + t] != 0;
        CHECK(masked == gen_lens[b]);
    }
    gkd_batch_free(&batch);

    /* Data order: epochs are permutations; seek reproduces the sequence (resume). */
    gkd_data_order o1, o2;
    CHECK(gkd_data_order_init(&o1, 10, 9) == GKD_OK && gkd_data_order_init(&o2, 10, 9) == GKD_OK);
    int seq[35], seen[10] = {0};
    gkd_data_order_next(&o1, seq, 35);
    for (int i = 0; i < 10; i++) seen[seq[i]]++;
    for (int i = 0; i < 10; i++) CHECK(seen[i] == 1);
    int differs = 0;
    for (int i = 0; i < 10; i++) differs += seq[i] != seq[10 + i];
    CHECK(differs > 0);
    gkd_data_order_seek(&o2, 17);
    int rest[18];
    gkd_data_order_next(&o2, rest, 18);
    CHECK(memcmp(rest, seq + 17, sizeof rest) == 0);
    gkd_data_order_free(&o1);
    gkd_data_order_free(&o2);

    gkd_token_dataset_free(&td);
    gkd_tokenizer_free(tok);
    gkd_dataset_free(&train);
    gkd_dataset_free(&held);
    gkd_dataset_free(&a1);
    test_hostile_lines();
    return check_exit();
}
