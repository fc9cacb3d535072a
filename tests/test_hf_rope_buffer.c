// ctest-labels: cpu
/* Hugging Face checkpoints written by older transformers hold each layer's rotary buffer
 * (model.layers.N.self_attn.rotary_emb.inv_freq). gkd computes the frequencies from config.json, so such a
 * buffer is accepted when it holds the configuration's frequencies (computed here independently, in float32
 * as transformers did: 1 / theta^(2i/d)) and the model's logits are unchanged; a buffer holding other
 * frequencies (a scaling gkd does not know) is refused naming the tensor. Starts from the transformers
 * fixture tests/fixtures/hf/gqa-untied (rope_theta 5e5) and writes a copy with the buffers added. */
#include "core/tensor/backend.h"
#include "core/format/checkpoint.h"
#include "core/base/error.h"
#include "core/format/safetensors.h"
#include "tests/check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FIXTURE GKD_SOURCE_DIR "/tests/fixtures/hf/gqa-untied"

static void copy_file(const char *from, const char *to) {
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    char buf[4096];
    size_t n;
    while (a && b && (n = fread(buf, 1, sizeof buf, a)) > 0) fwrite(buf, 1, n, b);
    if (a) fclose(a);
    if (b) fclose(b);
}

/* Writes dir/config.json (the fixture's) and dir/model.safetensors: m's tensors plus one inv_freq buffer per
 * layer, each element multiplied by `scale`. */
static int write_with_buffers(gkd_model *m, const char *dir, float scale) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    copy_file(FIXTURE "/config.json", path);
    const gkd_model_config *c = gkd_model_get_config(m);
    const int nt = gkd_model_num_tensors(m), half = c->dim / c->n_heads / 2, d = c->dim / c->n_heads;
    size_t total = gkd_model_num_params(m);
    float *host = malloc(total * sizeof *host), *inv = malloc((size_t)half * sizeof *inv);
    gkd_model_backend(m)->copy_out(host, gkd_model_params(m), total * sizeof *host);
    for (int i = 0; i < half; i++) inv[i] = scale * (1.0f / powf(c->rope_theta, (float)(2 * i) / (float)d));
    gkd_st_tensor *t = calloc((size_t)(nt + c->n_layers), sizeof *t);
    char (*names)[96] = calloc((size_t)c->n_layers, sizeof *names);
    int64_t inv_shape[1] = {half};
    for (int i = 0; i < nt; i++) {
        const gkd_tensor_info *info = gkd_model_tensor(m, i);
        t[i] = (gkd_st_tensor){info->name, GKD_ST_F32, info->ndim, info->shape, host + info->offset};
    }
    for (int l = 0; l < c->n_layers; l++) {
        snprintf(names[l], sizeof names[l], "model.layers.%d.self_attn.rotary_emb.inv_freq", l);
        t[nt + l] = (gkd_st_tensor){names[l], GKD_ST_F32, 1, inv_shape, inv};
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    gkd_status st = gkd_safetensors_write(path, t, nt + c->n_layers, NULL, NULL, 0);
    CHECKF(st == GKD_OK, "write: %s", gkd_error_message());
    free(host);
    free(inv);
    free(t);
    free(names);
    return st == GKD_OK;
}

int main(void) {
    const gkd_backend *be = gkd_backend_cpu();
    gkd_model *ref = NULL;
    if (gkd_checkpoint_load_model(FIXTURE, be, &ref) != GKD_OK) {
        CHECKF(0, "fixture: %s", gkd_error_message());
        return check_exit();
    }
    char dir[] = "/tmp/gkd-rope-buffer-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    const int T = 40, V = gkd_model_get_config(ref)->vocab_size;
    int tokens[40];
    for (int i = 0; i < T; i++) tokens[i] = (i * 7 + 3) % V;
    float *want = malloc((size_t)T * V * sizeof *want), *got = malloc((size_t)T * V * sizeof *got);
    CHECK(gkd_model_logits(ref, tokens, T, want) == GKD_OK);

    /* The configuration's frequencies: accepted, same logits. */
    if (write_with_buffers(ref, dir, 1.0f)) {
        gkd_model *m = NULL;
        gkd_status st = gkd_checkpoint_load_model(dir, be, &m);
        CHECKF(st == GKD_OK, "buffers matching the configuration are refused: %s", gkd_error_message());
        if (st == GKD_OK) {
            CHECK(gkd_model_logits(m, tokens, T, got) == GKD_OK);
            double diff = 0;
            for (size_t i = 0; i < (size_t)T * V; i++) diff = fmax(diff, fabs((double)got[i] - want[i]));
            CHECKF(diff == 0, "logits differ by %g", diff);
        }
        gkd_model_free(m);
    }
    /* Other frequencies (as a linear scaling by 2 would give): refused, naming the buffer. */
    if (write_with_buffers(ref, dir, 0.5f)) {
        gkd_model *m = NULL;
        gkd_status st = gkd_checkpoint_load_model(dir, be, &m);
        CHECKF(st != GKD_OK && strstr(gkd_error_message(), "model.layers.0.self_attn.rotary_emb.inv_freq"),
               "scaled buffers: status %d, message: %s", (int)st, st != GKD_OK ? gkd_error_message() : "(loaded)");
        gkd_model_free(m);
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    rmdir(dir);
    free(want);
    free(got);
    gkd_model_free(ref);
    return check_exit();
}
