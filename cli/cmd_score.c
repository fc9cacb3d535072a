/* gkd score: the per-token log-probabilities of a sequence under a model (core/tensor/model.h gkd_model_logprobs),
 * for evaluation and parity checks.
 * Rules: token ids are 0-based, as tokenizers and `gkd sample` use them; the first token is context only (it
 * has no log-probability); nothing is added to the sequence (no BOS). A text is encoded with the model's
 * tokenizer (a GGUF file's, a Hugging Face directory's tokenizer.json) or --tokenizer; special tokens in it
 * are matched only with --special. Token pieces are printed as JSON strings, so control characters in them
 * reach the terminal escaped.
 * --weights bf16|q8_0|q8_0_a8 scores with the model's matrices in reduced precision (core/tensor/weights.h), an
 * approximation that the output names. --weights-error FORMAT instead loads the model twice and reports how far
 * that format's logits fall from the fp32 ones over the sequence: the largest absolute logit difference and
 * KL(p_fp32 || p_format) per position (mean and largest), in double. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "core/tensor/backend_select.h"
#include "core/format/checkpoint.h"
#include "core/format/gguf_model.h"
#include "core/base/json.h"
#include "core/text/tokenizer.h"

static const char USAGE[] =
    "--model MODEL (--text TEXT | --tokens \"ID ID ...\") [--tokenizer tokenizer.json] "
    "[--special] [--json] [--device cpu|cuda|auto] [--weights fp32|bf16|q8_0|q8_0_a8] [--weights-error bf16|q8_0|q8_0_a8]";

/* Parses "1 2 3" or "1,2,3" into ids (caller frees); 0 and a message on a malformed or negative id. */
static int parse_ids(const char *s, int **ids, int *n) {
    size_t cap = strlen(s) / 2 + 1;
    *ids = malloc(cap * sizeof **ids);
    *n = 0;
    if (!*ids) return 0;
    for (const char *p = s; *p;) {
        while (*p == ' ' || *p == ',' || *p == '\t' || *p == '\n') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT_MAX || (*end && !strchr(" ,\t\n", *end))) {
            gkd_cli_error("score", "--tokens: \"%.*s\" is not a token id (ids are integers >= 0)",
                          (int)strcspn(p, " ,\t\n"), p);
            return 0;
        }
        (*ids)[(*n)++] = (int)v;
        p = end;
    }
    return 1;
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* Loads the model and, when one is found or given, its tokenizer. */
static gkd_status load(const char *model_path, const char *tok_path, const gkd_backend *be, gkd_model **m,
                       gkd_tokenizer **tok) {
    gkd_status st;
    if (gkd_gguf_file_is_gguf(model_path)) {
        st = gkd_gguf_model_load_ex(model_path, be, GKD_MODEL_INFERENCE, m, tok_path ? NULL : tok);
    } else {
        st = gkd_checkpoint_load_model_ex(model_path, be, GKD_MODEL_INFERENCE, m);
        char beside[4096];
        snprintf(beside, sizeof beside, "%s/tokenizer.json", model_path);
        if (st == GKD_OK && !tok_path && file_exists(beside)) st = gkd_tokenizer_load(beside, tok);
    }
    if (st == GKD_OK && tok_path) st = gkd_tokenizer_load(tok_path, tok);
    return st;
}

/* The token's text as a JSON string (an empty string without a tokenizer). */
static void put_piece(gkd_buf *b, const gkd_tokenizer *tok, int id) {
    char *text = NULL;
    size_t len = 0;
    if (tok && gkd_tokenizer_decode(tok, &id, 1, &text, &len) == GKD_OK)
        gkd_buf_json_string(b, text, len);
    else
        gkd_buf_puts(b, "\"\"");
    free(text);
}

static void print_json(const char *model_path, gkd_weight_format wf, const gkd_tokenizer *tok, const int *ids,
                       int n, const double *lp, double total) {
    gkd_buf b = {0};
    gkd_buf_puts(&b, "{\"model\":");
    gkd_buf_json_string(&b, model_path, strlen(model_path));
    gkd_buf_printf(&b, ",\"weights\":\"%s\"", gkd_weight_format_name(wf));
    gkd_buf_puts(&b, ",\"tokens\":[");
    for (int i = 0; i < n; i++) gkd_buf_printf(&b, "%s%d", i ? "," : "", ids[i]);
    gkd_buf_puts(&b, "]");
    if (tok) {
        gkd_buf_puts(&b, ",\"pieces\":[");
        for (int i = 0; i < n; i++) {
            if (i) gkd_buf_puts(&b, ",");
            put_piece(&b, tok, ids[i]);
        }
        gkd_buf_puts(&b, "]");
    }
    gkd_buf_puts(&b, ",\"logprobs\":[null");
    for (int i = 1; i < n; i++) {
        gkd_buf_puts(&b, ",");
        gkd_buf_json_number(&b, lp[i - 1]);
    }
    gkd_buf_printf(&b, "],\"scored\":%d,\"total\":", n - 1);
    gkd_buf_json_number(&b, total);
    gkd_buf_puts(&b, ",\"mean\":");
    gkd_buf_json_number(&b, total / (n - 1));
    gkd_buf_puts(&b, "}\n");
    fwrite(b.data, 1, b.len, stdout);
    gkd_buf_free(&b);
}

static void print_table(const gkd_tokenizer *tok, const int *ids, int n, const double *lp, double total) {
    printf("%5s %8s  %-24s %12s\n", "pos", "id", tok ? "piece" : "", "logprob");
    for (int i = 0; i < n; i++) {
        gkd_buf piece = {0};
        if (tok) put_piece(&piece, tok, ids[i]);
        printf("%5d %8d  %-24s ", i, ids[i], piece.data ? piece.data : "");
        if (i == 0)
            printf("%12s\n", "(context)");
        else
            printf("%12.6f\n", lp[i - 1]);
        gkd_buf_free(&piece);
    }
    printf("total %.6f over %d tokens (mean %.6f, perplexity %.4g)\n", total, n - 1, total / (n - 1),
           exp(-total / (n - 1)));
}

/* Log-softmax of a row in double: out[v] = x[v] - logsumexp(x). */
static void log_softmax(double *out, const float *x, int V) {
    double mx = x[0], sum = 0.0;
    for (int v = 1; v < V; v++) mx = x[v] > mx ? x[v] : mx;
    for (int v = 0; v < V; v++) sum += exp(x[v] - mx);
    double lse = mx + log(sum);
    for (int v = 0; v < V; v++) out[v] = x[v] - lse;
}

/* Prints, as JSON, how far the logits of `packed` (format ef) fall from those of the fp32 model m over ids. */
static int weights_error(const char *model_path, gkd_model *m, gkd_model *packed, gkd_weight_format ef, const int *ids,
                         int n) {
    const int V = gkd_model_get_config(m)->vocab_size;
    float *a = malloc((size_t)n * V * sizeof *a), *b = malloc((size_t)n * V * sizeof *b);
    double *la = malloc((size_t)V * sizeof *la), *lb = malloc((size_t)V * sizeof *lb);
    int rc = 1;
    if (!a || !b || !la || !lb) {
        gkd_cli_error("score", "out of memory for 2 x %d rows of logits", n);
    } else if (gkd_model_logits(m, ids, n, a) != GKD_OK || gkd_model_logits(packed, ids, n, b) != GKD_OK) {
        gkd_cli_error("score", "%s", gkd_error_message());
    } else {
        double max_abs = 0.0, max_logit = 0.0, kl_sum = 0.0, kl_max = 0.0;
        int argmax_same = 0;
        for (int t = 0; t < n; t++) {
            const float *ra = a + (size_t)t * V, *rb = b + (size_t)t * V;
            int ia = 0, ib = 0;
            for (int v = 0; v < V; v++) {
                double d = fabs((double)ra[v] - rb[v]);
                max_abs = d > max_abs ? d : max_abs;
                max_logit = fabs(ra[v]) > max_logit ? fabs(ra[v]) : max_logit;
                ia = ra[v] > ra[ia] ? v : ia;
                ib = rb[v] > rb[ib] ? v : ib;
            }
            argmax_same += ia == ib;
            log_softmax(la, ra, V);
            log_softmax(lb, rb, V);
            double kl = 0.0;
            for (int v = 0; v < V; v++) kl += exp(la[v]) * (la[v] - lb[v]);
            kl_sum += kl;
            kl_max = kl > kl_max ? kl : kl_max;
        }
        gkd_buf out = {0};
        gkd_buf_puts(&out, "{\"model\":");
        gkd_buf_json_string(&out, model_path, strlen(model_path));
        gkd_buf_printf(&out,
                       ",\"weights\":\"%s\",\"positions\":%d,\"max_abs_logit_diff\":%.6g,\"max_abs_logit\":%.6g,"
                       "\"kl_mean\":%.6g,\"kl_max\":%.6g,\"argmax_agreement\":%.4f}\n",
                       gkd_weight_format_name(ef), n, max_abs, max_logit, kl_sum / n, kl_max, (double)argmax_same / n);
        fwrite(out.data, 1, out.len, stdout);
        gkd_buf_free(&out);
        rc = 0;
    }
    free(a), free(b), free(la), free(lb);
    return rc;
}

int gkd_cmd_score(int argc, char **argv) {
    gkd_cli_args a;
    if (gkd_cli_parse(&a, "score", argc, argv, 2, "json,special") != 0) return 2;
    const char *model_path = gkd_cli_str(&a, "model", NULL);
    const char *tok_path = gkd_cli_str(&a, "tokenizer", NULL);
    const char *text = gkd_cli_str(&a, "text", NULL);
    const char *tokens = gkd_cli_str(&a, "tokens", NULL);
    const char *device = gkd_cli_str(&a, "device", "cpu");
    int json = gkd_cli_flag(&a, "json"), special = gkd_cli_flag(&a, "special");
    const char *weights = gkd_cli_str(&a, "weights", "fp32"), *error_of = gkd_cli_str(&a, "weights-error", NULL);
    if (gkd_cli_check_unused(&a)) return 2;
    gkd_weight_format wf, ef = GKD_WEIGHTS_FP32;
    if (gkd_weight_format_parse(weights, "--weights", &wf) != GKD_OK ||
        (error_of && gkd_weight_format_parse(error_of, "--weights-error", &ef) != GKD_OK)) {
        gkd_cli_error("score", "%s", gkd_error_message());
        return 2;
    }
    if (error_of && wf != GKD_WEIGHTS_FP32) {
        gkd_cli_error("score", "--weights-error compares a format with fp32: leave --weights out");
        return 2;
    }
    if (!model_path || !text == !tokens) {
        gkd_cli_error("score", "usage: gkd score %s", USAGE);
        return 2;
    }
    const gkd_backend *be = gkd_backend_by_name(device);
    if (!be) {
        gkd_cli_error("score", "%s", gkd_error_message());
        return 2;
    }
    gkd_model *m = NULL, *packed = NULL;
    gkd_tokenizer *tok = NULL, *packed_tok = NULL; /* packed_tok: the second load's, unused */
    int *ids = NULL, n = 0, rc = 2;
    double *lp = NULL;
    if (load(model_path, tok_path, be, &m, &tok) != GKD_OK || gkd_model_set_weight_format(m, wf) != GKD_OK ||
        (error_of && (load(model_path, tok_path, be, &packed, &packed_tok) != GKD_OK ||
                      gkd_model_set_weight_format(packed, ef) != GKD_OK))) {
        gkd_cli_error("score", "%s", gkd_error_message());
        goto done;
    }
    const gkd_model_config *c = gkd_model_get_config(m);
    if (tok && gkd_tokenizer_vocab_size(tok) > c->vocab_size) {
        gkd_cli_error("score", "the tokenizer has %d tokens but the model only %d",
                      gkd_tokenizer_vocab_size(tok), c->vocab_size);
        goto done;
    }
    if (text) {
        if (!tok) {
            gkd_cli_error("score", "--text needs a tokenizer: the model has none, give --tokenizer");
            goto done;
        }
        gkd_status st = special ? gkd_tokenizer_encode_special(tok, text, strlen(text), &ids, &n)
                                : gkd_tokenizer_encode(tok, text, strlen(text), &ids, &n);
        if (st != GKD_OK) {
            gkd_cli_error("score", "%s", gkd_error_message());
            goto done;
        }
    } else if (!parse_ids(tokens, &ids, &n)) {
        goto done;
    }
    if (n < 2 || n > c->max_seq_len) {
        gkd_cli_error("score", "the sequence has %d tokens; scoring needs 2 to max_seq_len = %d", n,
                      c->max_seq_len);
        goto done;
    }
    for (int i = 0; i < n; i++)
        if (ids[i] >= c->vocab_size) {
            gkd_cli_error("score", "token %d (id %d) is outside the model's vocabulary (%d tokens)", i,
                          ids[i], c->vocab_size);
            goto done;
        }
    if (error_of) {
        rc = weights_error(model_path, m, packed, ef, ids, n);
        goto done;
    }
    lp = malloc((size_t)n * sizeof *lp);
    if (!lp) {
        gkd_cli_error("score", "out of memory");
        rc = 1;
        goto done;
    }
    if (gkd_model_logprobs(m, ids, n, lp) != GKD_OK) {
        gkd_cli_error("score", "%s", gkd_error_message());
        rc = 1;
        goto done;
    }
    double total = 0.0;
    for (int i = 0; i < n - 1; i++) total += lp[i];
    if (json)
        print_json(model_path, wf, tok, ids, n, lp, total);
    else
        print_table(tok, ids, n, lp, total);
    if (!json && wf != GKD_WEIGHTS_FP32)
        printf("weights %s (reduced precision, docs/inference-precision.md)\n", gkd_weight_format_name(wf));
    rc = 0;
done:
    free(ids);
    free(lp);
    gkd_model_free(m);
    gkd_model_free(packed);
    gkd_tokenizer_free(tok);
    gkd_tokenizer_free(packed_tok);
    return rc;
}
