/* gkd sample: generates continuations of a prompt from a checkpoint.
 * Rules: exit 0 ok, 2 for a failure the input explains (a bad option, checkpoint or tokenizer, a diverged
 * model), 1 otherwise; every failure prints why. Control characters in the text shown are escaped.
 * --weights bf16|q8_0|q8_0_a8 stores the model's matrices in reduced precision (core/tensor/weights.h): an
 * approximation, so it is named on stderr; --stats prints the generation rate there. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "core/tensor/backend_select.h"
#include "core/format/checkpoint.h"
#include "core/format/gguf_model.h"
#include "core/base/json.h"
#include "core/tensor/sample.h"
#include "core/text/tokenizer.h"

int gkd_cmd_sample(int argc, char **argv) {
    gkd_cli_args a;
    if (gkd_cli_parse(&a, "sample", argc, argv, 2, "stats,ignore-eos") != 0) return 2;
    int bad = 0;
    const char *model_path = gkd_cli_str(&a, "model", NULL);
    const char *tok_path = gkd_cli_str(&a, "tokenizer", NULL);
    const char *prompt = gkd_cli_str(&a, "prompt", "");
    const char *device = gkd_cli_str(&a, "device", "cpu");
    const char *weights = gkd_cli_str(&a, "weights", "fp32");
    int stats = gkd_cli_flag(&a, "stats"), ignore_eos = gkd_cli_flag(&a, "ignore-eos");
    gkd_sample_config sc = {.temperature = (float)gkd_cli_double(&a, "temperature", 1.0, &bad),
                            .top_k = gkd_cli_size(&a, "top-k", 0, &bad),
                            .top_p = (float)gkd_cli_double(&a, "top-p", 1.0, &bad),
                            .max_new_tokens = gkd_cli_size(&a, "max-new-tokens", 64, &bad)};
    int n = gkd_cli_size(&a, "n", 1, &bad);
    unsigned long long seed = (unsigned long long)gkd_cli_int(&a, "seed", 1, &bad);
    if (bad || gkd_cli_check_unused(&a)) return 2;
    gkd_weight_format wf;
    if (gkd_weight_format_parse(weights, "--weights", &wf) != GKD_OK) {
        gkd_cli_error("sample", "%s", gkd_error_message());
        return 2;
    }
    if (!model_path || (!tok_path && !gkd_gguf_file_is_gguf(model_path))) {
        gkd_cli_error("sample",
                      "--model CHECKPOINT (a .gguf, or a gkd/Hugging Face safetensors checkpoint with "
                      "--tokenizer tokenizer.json) is required (options: --prompt TEXT --n N "
                      "--temperature T --top-k K --top-p P --max-new-tokens N --seed S --weights "
                      "fp32|bf16|q8_0|q8_0_a8 --stats "
                      "--ignore-eos)");
        return 2;
    }
    if (n < 1 || n > 1024) {
        gkd_cli_error("sample", "--n must be in [1, 1024]");
        return 2;
    }
    const gkd_backend *be = gkd_backend_by_name(device);
    gkd_tokenizer *tok = NULL;
    gkd_model *m = NULL;
    int *ids = NULL, n_ids = 0, rc = 1;
    int *prompts = NULL, *lens = NULL, *out = NULL, *out_lens = NULL;
    float *lp = NULL;
    gkd_status st = be ? GKD_OK : GKD_ERR_ARG;
    if (st == GKD_OK && gkd_gguf_file_is_gguf(model_path)) {
        /* A GGUF file carries its tokenizer; --tokenizer overrides it. Special tokens in the prompt (chat
         * templates such as <|im_start|>) are recognised. */
        st = gkd_gguf_model_load_ex(model_path, be, GKD_MODEL_INFERENCE, &m, tok_path ? NULL : &tok);
        if (st == GKD_OK && tok_path) st = gkd_tokenizer_load(tok_path, &tok);
        if (st == GKD_OK) st = gkd_tokenizer_encode_special(tok, prompt, strlen(prompt), &ids, &n_ids);
    } else if (st == GKD_OK) {
        st = gkd_tokenizer_load(tok_path, &tok);
        if (st == GKD_OK) st = gkd_checkpoint_load_model_ex(model_path, be, GKD_MODEL_INFERENCE, &m);
        if (st == GKD_OK) st = gkd_tokenizer_encode(tok, prompt, strlen(prompt), &ids, &n_ids);
    }
    if (st == GKD_OK) st = gkd_model_set_weight_format(m, wf);
    if (st != GKD_OK) {
        gkd_cli_error("sample", "%s", gkd_error_message());
        rc = 2;
        goto done;
    }
    if (wf != GKD_WEIGHTS_FP32)
        fprintf(stderr, "gkd sample: weights %s (reduced precision, docs/inference-precision.md)\n",
                gkd_weight_format_name(wf));
    if (gkd_tokenizer_vocab_size(tok) > gkd_model_get_config(m)->vocab_size) {
        gkd_cli_error("sample", "tokenizer has %d tokens but the model only %d", gkd_tokenizer_vocab_size(tok),
                      gkd_model_get_config(m)->vocab_size);
        rc = 2;
        goto done;
    }
    if (n_ids == 0) { /* an empty prompt starts from the end-of-text token */
        free(ids);
        ids = malloc(sizeof *ids);
        if (!ids) goto out_of_memory;
        ids[0] = gkd_tokenizer_role_id(tok, GKD_TOKEN_ROLE_EOS);
        n_ids = 1;
    }
    /* --ignore-eos: every row runs to --max-new-tokens; EOS may still be drawn, like any token, and is then
     * part of the text (transformers' generate with eos_token_id=None; for speed comparisons at a fixed
     * length) */
    sc.eos_id = ignore_eos ? -1 : gkd_tokenizer_role_id(tok, GKD_TOKEN_ROLE_EOS);
    prompts = malloc((size_t)n * n_ids * sizeof *prompts);
    lens = malloc((size_t)n * sizeof *lens);
    out = malloc((size_t)n * sc.max_new_tokens * sizeof *out);
    out_lens = malloc((size_t)n * sizeof *out_lens);
    lp = malloc((size_t)n * sc.max_new_tokens * sizeof *lp);
    if (!prompts || !lens || !out || !out_lens || !lp) goto out_of_memory;
    for (int b = 0; b < n; b++) {
        memcpy(prompts + (size_t)b * n_ids, ids, (size_t)n_ids * sizeof *ids);
        lens[b] = n_ids;
    }
    gkd_rng rng;
    gkd_rng_init(&rng, seed, GKD_RNG_STREAM_SAMPLE);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (gkd_sample_config_check(&sc, gkd_model_get_config(m)->vocab_size) != GKD_OK ||
        gkd_sample_generate(m, prompts, lens, n, n_ids, &sc, &rng, out, out_lens, lp) != GKD_OK) {
        gkd_cli_error("sample", "%s", gkd_error_message());
        rc = 2;
        goto done;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (stats) {
        long total = 0;
        for (int b = 0; b < n; b++) total += out_lens[b];
        double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        fprintf(stderr, "gkd sample: %ld tokens in %.3f s (%.1f tokens/s, prompt of %d tokens included), weights %s\n",
                total, s, total / s, n_ids, gkd_weight_format_name(wf));
    }
    for (int b = 0; b < n; b++) {
        int len = out_lens[b];
        const int *row = out + (size_t)b * sc.max_new_tokens;
        double sum_lp = 0;
        for (int i = 0; i < len; i++) sum_lp += lp[(size_t)b * sc.max_new_tokens + i];
        if (len > 0 && row[len - 1] == sc.eos_id) len--;
        char *text = NULL;
        size_t text_len = 0;
        if (gkd_tokenizer_decode(tok, row, len, &text, &text_len) != GKD_OK) {
            gkd_cli_error("sample", "%s", gkd_error_message());
            goto done;
        }
        /* generated text is whatever the model and its tokenizer make of it: control characters (terminal
         * escape codes) are shown escaped, line breaks and tabs as they are */
        gkd_buf shown = {0};
        gkd_buf_put_printable(&shown, prompt, strlen(prompt), 1);
        gkd_buf_put_printable(&shown, text, text_len, 1);
        free(text);
        if (shown.failed) {
            gkd_buf_free(&shown);
            goto out_of_memory;
        }
        printf("[%d] (%d tokens, mean log-prob %.3f) %s\n", b + 1, out_lens[b],
               out_lens[b] ? sum_lp / out_lens[b] : 0.0, shown.data ? shown.data : "");
        gkd_buf_free(&shown);
    }
    rc = 0;
    goto done;
out_of_memory:
    gkd_cli_error("sample", "out of memory");
done:
    free(ids);
    free(prompts);
    free(lens);
    free(out);
    free(out_lens);
    free(lp);
    gkd_model_free(m);
    gkd_tokenizer_free(tok);
    return rc;
}
