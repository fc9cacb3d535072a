// ctest-labels: cpu
/* GGUF reader against fixtures made by the `gguf` Python package (tests/fixtures/make_gguf_fixture.py):
 * metadata of every type through the typed getters (strings, token lists with non-ASCII and embedded NUL,
 * int and float arrays, a nested array), tensor infos in GGUF dim order, F32/F16/BF16/Q8_0/Q4_0/Q4_1 data
 * dequantised bit-identically to the script's numpy dequantisation, general.alignment, version 2 and 3,
 * the Q/K unpermutation against llama.cpp's permutation, and errors (truncation at many points, bad magic,
 * unsupported versions, unknown value and tensor types, random header damage) that name the file and the
 * key or tensor, without crashing. */
#include "core/format/gguf.h"
#include "core/base/rng.h"
#include "tests/check.h"

#include <stdint.h>
#include <string.h>

#define FIXTURES GKD_SOURCE_DIR "/tests/fixtures/"

static uint32_t bits(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *data = malloc((size_t)n + 1);
    if (data && fread(data, 1, (size_t)n, f) != (size_t)n) {
        free(data);
        data = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return data;
}

static void put(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(data, 1, len, f);
    fclose(f);
}

static void put_u32(char *p, uint32_t v) {
    memcpy(p, &v, 4);
}

static void put_u64(char *p, uint64_t v) {
    memcpy(p, &v, 8);
}

/* Opening `path` must fail with `want` and a message naming the file and containing `needle`. */
static void expect_open_error(const char *path, gkd_status want, const char *needle) {
    gkd_gguf *g = (gkd_gguf *)1;
    gkd_status s = gkd_gguf_open(path, &g);
    const char *msg = gkd_error_message();
    CHECKF(s == want, "%s: status %s, expected %s (%s)", path, gkd_status_name(s), gkd_status_name(want),
           msg);
    CHECK(g == NULL);
    CHECKF(strstr(msg, path) != NULL, "message does not name the file: %s", msg);
    CHECKF(!needle || strstr(msg, needle) != NULL, "message lacks '%s': %s", needle, msg);
    gkd_gguf_close(g);
}

static void test_metadata(const gkd_gguf *g) {
    CHECK(gkd_gguf_version(g) == 3);
    CHECK(gkd_gguf_alignment(g) == 32);
    CHECK(gkd_gguf_kv_count(g) == 19);
    gkd_gguf_type type = GKD_GGUF_ARRAY;
    CHECK(strcmp(gkd_gguf_kv_key(g, 0, &type), "general.architecture") == 0 && type == GKD_GGUF_STRING);
    CHECK(gkd_gguf_kv_key(g, 19, NULL) == NULL);

    const char *s = NULL;
    CHECK(gkd_gguf_get_string(g, "general.architecture", &s) == GKD_OK && strcmp(s, "llama") == 0);
    CHECK(gkd_gguf_get_string(g, "gkd.string", &s) == GKD_OK && strcmp(s, "h\xc3\xa9llo w\xc3\xb6rld") == 0);
    uint32_t u = 0;
    CHECK(gkd_gguf_get_u32(g, "gkd.u32", &u) == GKD_OK && u == 4000000000u);
    CHECK(gkd_gguf_get_u32(g, "gkd.u8", &u) == GKD_OK && u == 200);
    CHECK(gkd_gguf_get_u32(g, "gkd.u16", &u) == GKD_OK && u == 60000);
    int64_t i = 0;
    CHECK(gkd_gguf_get_i64(g, "gkd.i8", &i) == GKD_OK && i == -100);
    CHECK(gkd_gguf_get_i64(g, "gkd.i16", &i) == GKD_OK && i == -30000);
    CHECK(gkd_gguf_get_i64(g, "gkd.i32", &i) == GKD_OK && i == -7);
    CHECK(gkd_gguf_get_i64(g, "gkd.i64", &i) == GKD_OK && i == -((int64_t)1 << 40) - 5);
    CHECK(gkd_gguf_get_i64(g, "gkd.u64", &i) == GKD_OK && i == ((int64_t)1 << 40) + 3);
    float f = 0;
    CHECK(gkd_gguf_get_f32(g, "gkd.f32", &f) == GKD_OK && f == 0.15625f);
    CHECK(gkd_gguf_get_f32(g, "gkd.f64", &f) == GKD_OK && f == (float)2.718281828459045);
    int b = 0;
    CHECK(gkd_gguf_get_bool(g, "gkd.bool", &b) == GKD_OK && b == 1);

    /* type mismatches and values that do not fit name the key; a missing key is NOT_FOUND */
    gkd_status st = gkd_gguf_get_u32(g, "gkd.i32", &u);
    CHECKF(st == GKD_ERR_FORMAT && strstr(gkd_error_message(), "gkd.i32"), "%s", gkd_error_message());
    CHECK(gkd_gguf_get_u32(g, "gkd.u64", &u) == GKD_ERR_FORMAT);
    st = gkd_gguf_get_string(g, "gkd.u32", &s);
    CHECKF(st == GKD_ERR_FORMAT && strstr(gkd_error_message(), "gkd.u32") &&
               strstr(gkd_error_message(), "UINT32"),
           "%s", gkd_error_message());
    CHECK(gkd_gguf_get_f32(g, "gkd.u32", &f) == GKD_ERR_FORMAT);
    CHECK(gkd_gguf_get_bool(g, "gkd.u8", &b) == GKD_ERR_FORMAT);
    CHECK(gkd_gguf_get_u32(g, "no.such.key", &u) == GKD_ERR_NOT_FOUND);

    /* the token list */
    const char *const *tokens = NULL;
    const uint64_t *lens = NULL;
    uint64_t n = 0;
    CHECK(gkd_gguf_get_string_array(g, "tokenizer.ggml.tokens", &tokens, &lens, &n) == GKD_OK && n == 6);
    if (n == 6) {
        CHECK(strcmp(tokens[0], "<s>") == 0 && lens[0] == 3);
        CHECK(strcmp(tokens[3], "\xe2\x96\x81w\xc3\xb6rld") == 0 && lens[3] == 9);
        CHECK(lens[4] == 3 && memcmp(tokens[4], "a\0b", 4) == 0);
        CHECK(strcmp(tokens[5], "\xf0\x9f\x98\x80") == 0);
    }
    CHECK(gkd_gguf_get_array_len(g, "tokenizer.ggml.tokens", &n, &type) == GKD_OK && n == 6 &&
          type == GKD_GGUF_STRING);
    CHECK(gkd_gguf_get_string_array(g, "tokenizer.ggml.scores", &tokens, NULL, &n) == GKD_ERR_FORMAT);

    float scores[6];
    int32_t types[6];
    CHECK(gkd_gguf_get_array_f32(g, "tokenizer.ggml.scores", scores, 6) == GKD_OK);
    CHECK(scores[0] == 0 && scores[1] == -1.5f && scores[2] == -2.25f && scores[4] == 1e-3f &&
          scores[5] == -1e9f);
    CHECK(gkd_gguf_get_array_i32(g, "tokenizer.ggml.token_type", types, 6) == GKD_OK);
    CHECK(types[0] == 3 && types[2] == 1 && types[4] == 6 && types[5] == -2);
    CHECK(gkd_gguf_get_array_f32(g, "tokenizer.ggml.token_type", scores, 6) == GKD_OK && scores[5] == -2.0f);
    CHECK(gkd_gguf_get_array_i32(g, "tokenizer.ggml.scores", types, 6) == GKD_ERR_FORMAT);
    st = gkd_gguf_get_array_f32(g, "tokenizer.ggml.scores", scores, 5);
    CHECKF(st == GKD_ERR_SHAPE && strstr(gkd_error_message(), "tokenizer.ggml.scores"), "%s",
           gkd_error_message());
    int32_t two[2];
    st = gkd_gguf_get_array_i32(g, "gkd.u64_array", two, 2); /* 2^33 does not fit */
    CHECKF(st == GKD_ERR_FORMAT && strstr(gkd_error_message(), "element 1"), "%s", gkd_error_message());
    CHECK(gkd_gguf_get_array_len(g, "gkd.nested", &n, &type) == GKD_OK && n == 2 && type == GKD_GGUF_ARRAY);
    CHECK(gkd_gguf_get_array_f32(g, "gkd.nested", scores, 2) == GKD_ERR_FORMAT);
    CHECK(gkd_gguf_get_array_len(g, "gkd.u32", &n, NULL) == GKD_ERR_FORMAT);
}

static void test_tensors(const gkd_gguf *g) {
    struct {
        const char *name;
        int type, n_dims;
        uint64_t dims[3];
    } want[] = {
        {"t.f32", GKD_GGML_F32, 2, {5, 3}},      {"t.vec", GKD_GGML_F32, 1, {7}},
        {"t.3d", GKD_GGML_F32, 3, {4, 3, 2}},    {"t.f16", GKD_GGML_F16, 2, {6, 4}},
        {"t.bf16", GKD_GGML_BF16, 2, {8, 2}},    {"t.q8_0", GKD_GGML_Q8_0, 2, {64, 3}},
        {"t.q4_0", GKD_GGML_Q4_0, 2, {96, 2}},   {"t.q4_1", GKD_GGML_Q4_1, 2, {32, 4}},
        {"attn_q.hf", GKD_GGML_F32, 2, {3, 16}}, {"attn_q.permuted", GKD_GGML_F32, 2, {3, 16}},
        {"attn_k.hf", GKD_GGML_F32, 2, {3, 8}},  {"attn_k.permuted", GKD_GGML_F32, 2, {3, 8}},
    };
    int n = (int)(sizeof want / sizeof *want);
    CHECK(gkd_gguf_tensor_count(g) == n);
    CHECK(gkd_gguf_tensor_at(g, n) == NULL && gkd_gguf_tensor_at(g, -1) == NULL);

    size_t n_expected = 0;
    float *expected = (float *)slurp(FIXTURES "tiny.gguf.f32", &n_expected);
    n_expected /= 4;
    CHECK(expected != NULL);
    size_t at = 0;
    for (int i = 0; i < n && i < gkd_gguf_tensor_count(g); i++) {
        const gkd_gguf_tensor_info *t = gkd_gguf_tensor_at(g, i);
        CHECKF(strcmp(t->name, want[i].name) == 0, "tensor %d is %s", i, t->name);
        CHECKF(t->type == want[i].type && t->n_dims == want[i].n_dims, "%s: type %s, %d dims", t->name,
               gkd_ggml_type_name(t->type), t->n_dims);
        uint64_t count = 1;
        for (int d = 0; d < want[i].n_dims; d++) {
            CHECKF(t->dims[d] == want[i].dims[d], "%s dims[%d] = %llu", t->name, d,
                   (unsigned long long)t->dims[d]);
            count *= want[i].dims[d];
        }
        CHECK(t->n_elements == count && t->offset % 32 == 0);
        CHECK(gkd_gguf_find_tensor(g, want[i].name) == t);
        if (!expected || at + count > n_expected) break;
        float *got = malloc(count * sizeof *got);
        gkd_status s = gkd_gguf_read_f32(g, t->name, got, count);
        CHECKF(s == GKD_OK, "%s", gkd_error_message());
        int bad = 0;
        for (uint64_t k = 0; k < count; k++) bad += bits(got[k]) != bits(expected[at + k]);
        CHECKF(bad == 0, "%s: %d of %llu values differ from numpy's dequantisation", t->name, bad,
               (unsigned long long)count);
        free(got);
        at += count;
    }
    CHECKF(at == n_expected, "compared %zu of %zu expected values", at, n_expected);
    free(expected);

    float small[4];
    gkd_status s = gkd_gguf_read_f32(g, "t.q8_0", small, 4);
    CHECKF(s == GKD_ERR_SHAPE && strstr(gkd_error_message(), "'t.q8_0'") &&
               strstr(gkd_error_message(), "192"),
           "%s", gkd_error_message());
    CHECK(gkd_gguf_read_f32(g, "t.none", small, 4) == GKD_ERR_NOT_FOUND);
    CHECK(gkd_gguf_find_tensor(g, "t.none") == NULL);
}

/* Reads (rows, cols) = (dims[1], dims[0]) of a 2-D F32 tensor. */
static float *read_matrix(const gkd_gguf *g, const char *name, int *rows, int *cols) {
    const gkd_gguf_tensor_info *t = gkd_gguf_find_tensor(g, name);
    if (!t) return NULL;
    *cols = (int)t->dims[0];
    *rows = (int)t->dims[1];
    float *w = malloc(t->n_elements * sizeof *w);
    if (gkd_gguf_read_f32(g, name, w, t->n_elements) != GKD_OK) {
        free(w);
        return NULL;
    }
    return w;
}

static void test_unpermute(const gkd_gguf *g) {
    const char *pairs[2][2] = {{"attn_q.permuted", "attn_q.hf"}, {"attn_k.permuted", "attn_k.hf"}};
    const int heads[2] = {2, 1};
    for (int p = 0; p < 2; p++) {
        int rows = 0, cols = 0, rows2 = 0, cols2 = 0;
        float *w = read_matrix(g, pairs[p][0], &rows, &cols);
        float *hf = read_matrix(g, pairs[p][1], &rows2, &cols2);
        CHECK(w && hf && rows == rows2 && cols == cols2 && cols == 3);
        if (w && hf) {
            int differ = 0, bad = 0;
            for (int i = 0; i < rows * cols; i++) differ += bits(w[i]) != bits(hf[i]);
            CHECKF(differ > 0, "%s: the permutation moved nothing, the test would show nothing", pairs[p][0]);
            CHECK(gkd_gguf_unpermute_qk(w, rows, cols, heads[p]) == GKD_OK);
            for (int i = 0; i < rows * cols; i++) bad += bits(w[i]) != bits(hf[i]);
            CHECKF(bad == 0, "%s: %d values differ from the Hugging Face layout after unpermuting",
                   pairs[p][0], bad);
        }
        free(w);
        free(hf);
    }
    float x[6] = {0};
    CHECK(gkd_gguf_unpermute_qk(x, 3, 2, 1) == GKD_ERR_ARG);
    CHECK(gkd_gguf_unpermute_qk(x, 6, 1, 2) == GKD_ERR_ARG); /* head_dim 3 is odd */
    CHECK(gkd_gguf_unpermute_qk(x, 4, 1, 0) == GKD_ERR_ARG);
}

static void test_alignment64(void) {
    gkd_gguf *g = NULL;
    gkd_status s = gkd_gguf_open(FIXTURES "tiny-align64.gguf", &g);
    CHECKF(s == GKD_OK, "%s", gkd_error_message());
    if (!g) return;
    uint32_t a = 0;
    CHECK(gkd_gguf_alignment(g) == 64 && gkd_gguf_get_u32(g, "general.alignment", &a) == GKD_OK && a == 64);
    float va[10], vb[70];
    CHECK(gkd_gguf_read_f32(g, "t.a", va, 10) == GKD_OK && gkd_gguf_read_f32(g, "t.b", vb, 70) == GKD_OK);
    int bad = 0;
    for (int i = 0; i < 10; i++) bad += va[i] != (float)i * 0.5f;
    for (int i = 0; i < 70; i++) bad += vb[i] != -(float)i;
    CHECKF(bad == 0, "%d values wrong with 64-byte alignment", bad);
    const gkd_gguf_tensor_info *t = gkd_gguf_find_tensor(g, "t.b");
    CHECK(t && t->offset % 64 == 0);
    gkd_gguf_close(g);
}

static void test_errors(const char *data, size_t len) {
    const char *bad = "test_gguf_bad.gguf";
    char *copy = malloc(len);

    /* version 2 has the same layout and reads the same; 1 and 4 are refused, byte-swapped ones named */
    memcpy(copy, data, len);
    put_u32(copy + 4, 2);
    put(bad, copy, len);
    gkd_gguf *g = NULL;
    CHECKF(gkd_gguf_open(bad, &g) == GKD_OK && gkd_gguf_version(g) == 2, "%s", gkd_error_message());
    float v[15];
    CHECK(g && gkd_gguf_read_f32(g, "t.f32", v, 15) == GKD_OK);
    gkd_gguf_close(g);
    put_u32(copy + 4, 1);
    put(bad, copy, len);
    expect_open_error(bad, GKD_ERR_FORMAT, "version 1");
    put_u32(copy + 4, 4);
    put(bad, copy, len);
    expect_open_error(bad, GKD_ERR_FORMAT, "version 4");
    put_u32(copy + 4, 0x03000000u);
    put(bad, copy, len);
    expect_open_error(bad, GKD_ERR_FORMAT, "big-endian");

    memcpy(copy, data, len);
    copy[0] = 'X';
    put(bad, copy, len);
    expect_open_error(bad, GKD_ERR_FORMAT, "magic");
    expect_open_error("test_gguf_no_such_file.gguf", GKD_ERR_IO, "cannot open");

    /* truncated anywhere: magic, counts, key/values, tensor infos, padding, data */
    const gkd_gguf_tensor_info *last = NULL;
    gkd_gguf *full = NULL;
    uint32_t header_end = 1024;
    CHECK(gkd_gguf_open(FIXTURES "tiny.gguf", &full) == GKD_OK);
    if (full) {
        last = gkd_gguf_tensor_at(full, gkd_gguf_tensor_count(full) - 1);
        header_end = (uint32_t)gkd_gguf_tensor_at(full, 0)->offset;
    }
    size_t cuts[] = {0,           3,      4, 7, 12, 20, 24, 30, 100, 400, 800, 1000, 1200, header_end - 1,
                     len / 2 + 3, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        put(bad, data, cuts[i]);
        expect_open_error(bad, GKD_ERR_FORMAT, cuts[i] >= len - 1 && last ? last->name : NULL);
    }

    /* an unknown tensor type names the tensor; a known type gkd cannot dequantise fails at read */
    const char *name = "t.f32";
    char *p = memmem(data, len, name, strlen(name));
    CHECK(p != NULL);
    if (p) {
        memcpy(copy, data, len);
        put_u32(copy + (p - data) + strlen(name) + 4 + 2 * 8, 99);
        put(bad, copy, len);
        expect_open_error(bad, GKD_ERR_FORMAT, "'t.f32': unknown ggml type 99");
    }
    name = "t.q4_1";
    p = memmem(data, len, name, strlen(name));
    CHECK(p != NULL);
    if (p) {
        memcpy(copy, data, len);
        put_u32(copy + (p - data) + strlen(name) + 4 + 2 * 8, 20); /* IQ4_NL: same block length, 18 bytes */
        put(bad, copy, len);
        g = NULL;
        CHECKF(gkd_gguf_open(bad, &g) == GKD_OK, "%s", gkd_error_message());
        float q[128];
        gkd_status s = g ? gkd_gguf_read_f32(g, "t.q4_1", q, 128) : GKD_ERR_ARG;
        CHECKF(s == GKD_ERR_FORMAT && strstr(gkd_error_message(), "IQ4_NL") &&
                   strstr(gkd_error_message(), "t.q4_1"),
               "%s", gkd_error_message());
        gkd_gguf_close(g);
    }
    /* an unknown value type and an absurd string length name the key */
    name = "gkd.u8";
    p = memmem(data, len, name, strlen(name));
    CHECK(p != NULL);
    if (p) {
        memcpy(copy, data, len);
        put_u32(copy + (p - data) + strlen(name), 77);
        put(bad, copy, len);
        expect_open_error(bad, GKD_ERR_FORMAT, "key 'gkd.u8': unknown value type 77");
        memcpy(copy, data, len);
        put_u64(copy + (p - data) - 8, (uint64_t)1 << 60); /* the key's length */
        put(bad, copy, len);
        expect_open_error(bad, GKD_ERR_FORMAT, "truncated");
    }
    /* counts beyond what the file could hold */
    memcpy(copy, data, len);
    put_u64(copy + 8, (uint64_t)1 << 40);
    put(bad, copy, len);
    expect_open_error(bad, GKD_ERR_FORMAT, "tensors");
    memcpy(copy, data, len);
    put_u64(copy + 16, (uint64_t)1 << 40);
    put(bad, copy, len);
    expect_open_error(bad, GKD_ERR_FORMAT, "key/values");

    /* random damage before the tensor data: any outcome but a crash; whatever opens reads in bounds */
    gkd_rng rng;
    gkd_rng_init(&rng, 5, GKD_RNG_STREAM_USER);
    int opened = 0;
    for (int iter = 0; iter < 3000; iter++) {
        memcpy(copy, data, len);
        int flips = 1 + (int)gkd_rng_below(&rng, 3);
        for (int k = 0; k < flips; k++) copy[gkd_rng_below(&rng, header_end)] = (char)gkd_rng_u32(&rng);
        put(bad, copy, len);
        g = NULL;
        if (gkd_gguf_open(bad, &g) != GKD_OK) continue;
        opened++;
        for (int i = 0; i < gkd_gguf_tensor_count(g); i++) {
            const gkd_gguf_tensor_info *t = gkd_gguf_tensor_at(g, i);
            float *dst = malloc(t->n_elements * sizeof *dst + 1);
            gkd_gguf_read_f32(g, t->name, dst, t->n_elements);
            free(dst);
        }
        const char *const *items;
        uint64_t n;
        gkd_gguf_get_string_array(g, "tokenizer.ggml.tokens", &items, NULL, &n);
        gkd_gguf_close(g);
    }
    fprintf(stderr, "random header damage: %d of 3000 files still opened\n", opened);
    gkd_gguf_close(full);
    free(copy);
    remove(bad);
}

int main(void) {
    gkd_gguf *g = NULL;
    gkd_status s = gkd_gguf_open(FIXTURES "tiny.gguf", &g);
    CHECKF(s == GKD_OK, "%s", gkd_error_message());
    if (g) {
        test_metadata(g);
        test_tensors(g);
        test_unpermute(g);
    }
    gkd_gguf_close(g);
    gkd_gguf_close(NULL);
    test_alignment64();
    size_t len = 0;
    char *data = slurp(FIXTURES "tiny.gguf", &len);
    CHECK(data != NULL && len > 2000);
    if (data) test_errors(data, len);
    free(data);
    return check_exit();
}
