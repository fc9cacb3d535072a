/* Fuzz harness: the safetensors reader (core/format/safetensors.c) and the checkpoint loader on top of it
 * (core/format/checkpoint.c). The input is a whole file: open validates it, then every tensor is read as stored and,
 * for the float dtypes, as float, and the metadata and name lookups are walked, so a header that passes open
 * but lies about the data shows up as an out-of-bounds read. Then the file is loaded as a gkd checkpoint
 * (its "gkd_config" metadata), when the configuration it declares is small. */
#include <stdlib.h>
#include <string.h>

#include "core/tensor/backend.h"
#include "core/format/checkpoint.h"
#include "core/tensor/model.h"
#include "core/format/safetensors.h"
#include "tests/fuzz/fuzz.h"

int gkd_fuzz_safetensors(const uint8_t *data, size_t size);

int gkd_fuzz_safetensors(const uint8_t *data, size_t size) {
    const char *path = gkd_fuzz_file("safetensors", data, size);
    gkd_safetensors *st = NULL;
    if (gkd_safetensors_open(path, &st) != GKD_OK) return 0;
    for (int i = 0; i < gkd_safetensors_metadata_count(st); i++) {
        const char *key = gkd_safetensors_metadata_key(st, i);
        if (!gkd_safetensors_metadata(st, key)) abort();
    }
    for (int i = 0; i < gkd_safetensors_count(st); i++) {
        const gkd_st_info *t = gkd_safetensors_info(st, i);
        if (gkd_safetensors_find(st, t->name) == NULL) abort();
        /* The bytes of a tensor lie inside the file, so the buffers below are bounded by the input's size. */
        void *raw = malloc(t->nbytes ? t->nbytes : 1);
        float *f = malloc(t->n_elements ? (size_t)t->n_elements * sizeof *f : 1);
        if (raw && f) {
            gkd_safetensors_read_raw(st, t->name, t->dtype, raw, t->ndim, t->shape);
            if (t->dtype == GKD_ST_F32 || t->dtype == GKD_ST_F16 || t->dtype == GKD_ST_BF16)
                gkd_safetensors_read_f32(st, t->name, f, t->ndim, t->shape);
            /* A wrong expected shape must be refused without touching dst. */
            int64_t longer[GKD_ST_MAX_DIMS + 1] = {0};
            memcpy(longer, t->shape, sizeof t->shape);
            if (gkd_safetensors_read_raw(st, t->name, t->dtype, NULL, t->ndim + 1, longer) == GKD_OK) abort();
        }
        free(raw);
        free(f);
    }
    gkd_safetensors_info(st, -1);
    gkd_safetensors_info(st, gkd_safetensors_count(st));
    gkd_safetensors_close(st);

    gkd_model_config cfg;
    if (gkd_checkpoint_read_config(path, &cfg) == GKD_OK && gkd_fuzz_model_is_small(&cfg)) {
        gkd_model *m = NULL;
        if (gkd_checkpoint_load_model_ex(path, gkd_backend_cpu(), GKD_MODEL_INFERENCE, &m) == GKD_OK &&
            gkd_model_get_config(m)->vocab_size != cfg.vocab_size)
            abort();
        gkd_model_free(m);
    }
    return 0;
}

GKD_FUZZ_ENTRY(safetensors)
