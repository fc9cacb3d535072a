/* Fuzz harness: the GGUF reader (core/format/gguf.c) and the GGUF model and tokenizer loader (core/format/gguf_model.c).
 * The input is a whole file. What open accepts is walked through every getter, every tensor is read and
 * dequantised, and its byte count checked against its element count (open promises that a read fills the
 * tensor); then the model configuration, the tokenizer (which encodes and decodes a text) and, when the
 * configuration is small (gkd_fuzz_model_is_small), the whole model are loaded. */
#include <stdlib.h>
#include <string.h>

#include "core/tensor/backend.h"
#include "core/format/gguf.h"
#include "core/format/gguf_model.h"
#include "core/tensor/model.h"
#include "core/text/tokenizer.h"
#include "tests/fuzz/fuzz.h"

int gkd_fuzz_gguf(const uint8_t *data, size_t size);

/* Bytes a tensor of a type gkd dequantises takes, or 0 for other types. */
static uint64_t expected_nbytes(const gkd_gguf_tensor_info *t) {
    switch (t->type) {
    case GKD_GGML_F32:
        return t->n_elements * 4;
    case GKD_GGML_F16:
    case GKD_GGML_BF16:
        return t->n_elements * 2;
    case GKD_GGML_Q8_0:
        return t->n_elements / 32 * 34;
    case GKD_GGML_Q4_0:
        return t->n_elements / 32 * 18;
    case GKD_GGML_Q4_1:
        return t->n_elements / 32 * 20;
    }
    return 0;
}

static void walk_metadata(const gkd_gguf *g) {
    for (int i = 0; i < gkd_gguf_kv_count(g); i++) {
        gkd_gguf_type type;
        const char *key = gkd_gguf_kv_key(g, i, &type);
        uint32_t u32;
        int64_t i64;
        float f;
        int b;
        const char *s;
        if (!key) abort();
        gkd_gguf_get_u32(g, key, &u32);
        gkd_gguf_get_i64(g, key, &i64);
        gkd_gguf_get_f32(g, key, &f);
        gkd_gguf_get_bool(g, key, &b);
        gkd_gguf_get_string(g, key, &s);
        uint64_t n;
        gkd_gguf_type elem;
        if (gkd_gguf_get_array_len(g, key, &n, &elem) != GKD_OK) continue;
        const char *const *items;
        const uint64_t *lens;
        uint64_t n_items;
        if (gkd_gguf_get_string_array(g, key, &items, &lens, &n_items) == GKD_OK) {
            if (n_items != n) abort();
            for (uint64_t j = 0; j < n_items; j++) /* each NUL-terminated after its length */
                if (items[j][lens[j]] != '\0') abort();
        }
        /* an array lies inside the file, so n is bounded by the input's size */
        float *fs = malloc((n ? n : 1) * sizeof *fs);
        int32_t *is = malloc((n ? n : 1) * sizeof *is);
        if (fs && is) {
            gkd_gguf_get_array_f32(g, key, fs, n);
            gkd_gguf_get_array_i32(g, key, is, n);
            gkd_gguf_get_array_f32(g, key, fs, n + 1); /* a wrong length is refused before writing */
        }
        free(fs);
        free(is);
    }
    gkd_gguf_kv_key(g, -1, NULL);
    gkd_gguf_kv_key(g, gkd_gguf_kv_count(g), NULL);
}

static void read_tensors(const gkd_gguf *g, size_t file_size) {
    for (int i = 0; i < gkd_gguf_tensor_count(g); i++) {
        const gkd_gguf_tensor_info *t = gkd_gguf_tensor_at(g, i);
        if (gkd_gguf_find_tensor(g, t->name) != t) abort();
        if (t->offset > file_size || t->nbytes > file_size - t->offset) abort();
        /* no ggml type packs more than 256 elements in 50 bytes: more elements than that means the byte
         * count wrapped */
        if (t->n_elements / 6 > t->nbytes) abort();
        uint64_t want = expected_nbytes(t);
        if (want && want != t->nbytes) abort();
        if (!want) { /* a type gkd does not dequantise is refused before dst is touched */
            if (t->n_elements && gkd_gguf_read_f32(g, t->name, NULL, t->n_elements) == GKD_OK) abort();
            continue;
        }
        if (t->n_elements > (uint64_t)1 << 24) continue;
        float *dst = malloc((size_t)(t->n_elements ? t->n_elements : 1) * sizeof *dst);
        if (dst) gkd_gguf_read_f32(g, t->name, dst, t->n_elements);
        free(dst);
    }
}

static void use_tokenizer(const gkd_tokenizer *tok) {
    static const char text[] = "Hello world, 123 <|im_end|>\n caf\xc3\xa9 \xe4\xb8\xad";
    int *ids = NULL, n = 0;
    if (gkd_tokenizer_encode_special(tok, text, sizeof text - 1, &ids, &n) == GKD_OK) {
        char *back = NULL;
        size_t len = 0;
        if (gkd_tokenizer_decode(tok, ids, n, &back, &len) != GKD_OK) abort();
        free(back);
    }
    free(ids);
}

int gkd_fuzz_gguf(const uint8_t *data, size_t size) {
    const char *path = gkd_fuzz_file("gguf", data, size);
    gkd_gguf *g = NULL;
    if (gkd_gguf_open(path, &g) != GKD_OK) return 0;
    walk_metadata(g);
    read_tensors(g, size);

    gkd_tokenizer *tok = NULL;
    if (gkd_gguf_tokenizer(g, &tok) == GKD_OK) use_tokenizer(tok);
    gkd_tokenizer_free(tok);

    gkd_model_config cfg;
    int small = gkd_gguf_model_config(g, &cfg) == GKD_OK && gkd_fuzz_model_is_small(&cfg);
    gkd_gguf_close(g);
    if (small) {
        gkd_model *m = NULL;
        tok = NULL;
        gkd_gguf_model_load_ex(path, gkd_backend_cpu(), GKD_MODEL_INFERENCE, &m, &tok);
        gkd_model_free(m);
        gkd_tokenizer_free(tok);
    }
    return 0;
}

GKD_FUZZ_ENTRY(gguf)
