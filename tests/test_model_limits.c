// ctest-labels: cpu
/* Model sizes past gkd's bounds (core/tensor/model.h GKD_MODEL_MAX_*) are refused, naming the field, before anything
 * is allocated, from every source of a configuration: gkd_model_config_check itself (and so
 * gkd_model_create), a Hugging Face config.json, a gkd checkpoint's "gkd_config" metadata (GGUF metadata and
 * gkd.model.new are covered by tests/test_hf_parity.c and tests/test_model_limits_cli.sh). The parameter
 * count is computed without wrapping: 2048 layers of dim 2^20 once wrapped size_t and an 8 MiB buffer was
 * used as a huge model. Each bound itself is accepted by the check. Forward passes refuse batches whose
 * activations overflow. */
#include "core/tensor/backend.h"
#include "core/format/checkpoint.h"
#include "core/format/safetensors.h"
#include "tests/check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static gkd_model_config small(void) {
    gkd_model_config c = {.vocab_size = 16,
                          .dim = 8,
                          .n_layers = 1,
                          .n_heads = 2,
                          .n_kv_heads = 1,
                          .hidden_dim = 16,
                          .max_seq_len = 16,
                          .rope_theta = 10000.0f,
                          .norm_eps = 1e-5f};
    return c;
}

/* gkd_model_config_check refuses c with a message containing `name`, and gkd_model_create refuses it too. */
static void check_refused(const gkd_model_config *c, const char *name, const char *what) {
    CHECKF(gkd_model_config_check(c) == GKD_ERR_ARG, "%s: accepted", what);
    CHECKF(strstr(gkd_error_message(), name) != NULL, "%s: the message does not name %s: %s", what, name,
           gkd_error_message());
    gkd_model *m = NULL;
    CHECKF(gkd_model_create_ex(c, gkd_backend_cpu(), GKD_MODEL_INFERENCE, &m) != GKD_OK && !m, "%s: created",
           what);
    gkd_model_free(m);
}

static void check_config_bounds(void) {
    gkd_model_config c = small();
    c.n_layers = 2048;
    c.dim = 1 << 20;
    c.n_heads = 16;
    c.n_kv_heads = 16;
    check_refused(&c, "dim (hidden_size", "the issue's 2048 layers of dim 2^20");

    /* Every size within its bound, the product past 2^40 parameters. */
    c = small();
    c.n_layers = GKD_MODEL_MAX_LAYERS;
    c.dim = GKD_MODEL_MAX_DIM;
    c.n_heads = 512;
    c.n_kv_heads = 512;
    c.hidden_dim = GKD_MODEL_MAX_HIDDEN;
    check_refused(&c, "parameter count", "4096 layers of dim 65536, hidden 2^20");

    struct {
        int *field;
        int bad;
        const char *name;
    } fields[] = {
        {&c.vocab_size, GKD_MODEL_MAX_VOCAB + 1, "vocab_size"},
        {&c.dim, GKD_MODEL_MAX_DIM + 2, "dim"},
        {&c.n_layers, GKD_MODEL_MAX_LAYERS + 1, "n_layers"},
        {&c.hidden_dim, GKD_MODEL_MAX_HIDDEN + 1, "hidden_dim"},
        {&c.max_seq_len, GKD_MODEL_MAX_SEQ_LEN + 1, "max_seq_len"},
        {&c.vocab_size, -1, "vocab_size"},
        {&c.n_layers, 0, "n_layers"},
    };
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
        c = small();
        c.n_heads = 2;
        *fields[i].field = fields[i].bad;
        check_refused(&c, fields[i].name, fields[i].name);
    }

    /* The rotary tables: max_seq_len x head_dim floats. */
    c = small();
    c.dim = 1 << 14;
    c.n_heads = 1;
    c.n_kv_heads = 1;
    c.max_seq_len = GKD_MODEL_MAX_SEQ_LEN;
    check_refused(&c, "max_seq_len", "rotary tables of 2^21 x 2^14");

    /* Each bound alone is accepted (nothing is allocated: only the check). */
    c = small();
    c.vocab_size = GKD_MODEL_MAX_VOCAB;
    c.dim = GKD_MODEL_MAX_DIM;
    c.n_heads = 1024;
    c.n_kv_heads = 1024;
    c.max_seq_len = GKD_MODEL_MAX_SEQ_LEN;
    c.hidden_dim = GKD_MODEL_MAX_HIDDEN;
    c.n_layers = 1;
    CHECKF(gkd_model_config_check(&c) == GKD_OK, "the bounds themselves: %s", gkd_error_message());

    c = small();
    c.rope_type = GKD_ROPE_LLAMA3;
    c.rope_factor = 8.0f;
    c.rope_low_freq_factor = 4.0f;
    c.rope_high_freq_factor = 1.0f;
    c.rope_original_max_seq_len = 8192;
    check_refused(&c, "rope_high_freq_factor", "llama3 with high <= low");
    c.rope_high_freq_factor = 8.0f;
    c.rope_original_max_seq_len = 0;
    check_refused(&c, "rope_original_max_seq_len", "llama3 without its original length");
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

/* Reading the configuration refuses it naming `name`: no tensor is read, no model made. */
static void check_read_refused(const char *path, const char *name) {
    gkd_model_config c;
    CHECKF(gkd_checkpoint_read_config(path, &c) != GKD_OK, "%s: accepted", path);
    CHECKF(strstr(gkd_error_message(), name) != NULL, "%s: the message does not name %s: %s", path, name,
           gkd_error_message());
    gkd_model *m = NULL;
    CHECKF(gkd_checkpoint_load_model(path, gkd_backend_cpu(), &m) != GKD_OK && !m, "%s: loaded", path);
    gkd_model_free(m);
}

static void check_files(const char *tmp) {
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/hf", tmp);
    CHECK(mkdir(dir, 0777) == 0);
    snprintf(path, sizeof path, "%s/config.json", dir);
    write_text(path,
               "{\"model_type\": \"llama\", \"vocab_size\": 32000, \"hidden_size\": 65536, "
               "\"num_hidden_layers\": 4096, \"num_attention_heads\": 512, \"intermediate_size\": 1048576, "
               "\"max_position_embeddings\": 4096}");
    check_read_refused(dir, "parameter count");
    write_text(
        path,
        "{\"vocab_size\": 32000, \"hidden_size\": 4096, \"num_hidden_layers\": 1e12, "
        "\"num_attention_heads\": 32, \"intermediate_size\": 11008, \"max_position_embeddings\": 4096}");
    check_read_refused(dir, "num_hidden_layers");

    /* A gkd checkpoint whose metadata asks for 2048 layers of dim 2^20 (and holds no tensor at all). */
    snprintf(path, sizeof path, "%s/huge.safetensors", tmp);
    const char *keys[] = {"format", "gkd_config"};
    const char *values[] = {"pt",
                            "{\"vocab_size\":32000,\"dim\":1048576,\"n_layers\":2048,\"n_heads\":16,"
                            "\"n_kv_heads\":16,\"hidden_dim\":4096,\"max_seq_len\":64,\"rope_theta\":10000,"
                            "\"norm_eps\":1e-5,\"tied_embeddings\":true}"};
    CHECKF(gkd_safetensors_write(path, NULL, 0, keys, values, 2) == GKD_OK, "%s", gkd_error_message());
    check_read_refused(path, "dim (hidden_size");
}

/* A batch whose activations would overflow is refused before anything is allocated. */
static void check_batch_bounds(void) {
    gkd_model_config c = small();
    c.max_seq_len = 1 << 20;
    c.dim = 64;
    c.n_heads = 32;
    c.n_kv_heads = 32;
    gkd_model *m = NULL;
    CHECKF(gkd_model_create_ex(&c, gkd_backend_cpu(), GKD_MODEL_INFERENCE, &m) == GKD_OK, "%s",
           gkd_error_message());
    if (!m) return;
    /* 1024 rows of 2^20 positions attending to 2^20 with 32 heads: 2^65 floats of attention probabilities. */
    int tokens[1] = {0};
    const float *hidden = NULL;
    gkd_status st = gkd_model_forward_nograd(m, tokens, 1024, 1 << 20, &hidden);
    CHECKF(st == GKD_ERR_ARG && strstr(gkd_error_message(), "activations"), "forward of 2^30 rows: %s",
           gkd_error_message());
    gkd_model_free(m);
}

int main(void) {
    char tmp[] = "/tmp/gkd-test-limits-XXXXXX";
    if (!mkdtemp(tmp)) check_skip("cannot create a temporary directory");
    check_config_bounds();
    check_files(tmp);
    check_batch_bounds();
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    CHECK(system(cmd) == 0);
    return check_exit();
}
