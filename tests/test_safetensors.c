// ctest-labels: cpu
/* safetensors: half/bfloat16 conversions (exhaustive round trip, rounding checked against the neighbouring
 * values), gkd save -> load bit-exact (NaN payloads, -0, denormals), a fixture written by the Python package
 * loads with its values and metadata, a file gkd writes passes the Python package's checks
 * (tests/fixtures/check_safetensors.py; skipped with a message without python3 + safetensors), and corrupt
 * files (truncated at many points, header length too big, bad JSON, bad offsets, wrong shape or dtype asked,
 * random header damage) fail with a status and a message naming the file and the offset or tensor. */
#include "core/base/rng.h"
#include "core/format/safetensors.h"
#include "tests/check.h"

#include <stdint.h>
#include <string.h>
#include <unistd.h>

#define FIXTURES GKD_SOURCE_DIR "/tests/fixtures/"

static uint32_t bits(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

static float from_bits(uint32_t u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
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

/* Writes a file with the given header text (length prefix computed) followed by `data_len` bytes. */
static void put_st(const char *path, const char *header, size_t data_len) {
    size_t hl = strlen(header);
    unsigned char *buf = calloc(1, 8 + hl + data_len + 1);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, header, hl);
    put(path, buf, 8 + hl + data_len);
    free(buf);
}

/* Opening `path` must fail with `want`, and the message must name the file and contain `needle`. */
static void expect_open_error(const char *path, gkd_status want, const char *needle) {
    gkd_safetensors *st = (gkd_safetensors *)1;
    gkd_status s = gkd_safetensors_open(path, &st);
    const char *msg = gkd_error_message();
    CHECKF(s == want, "%s: status %s, expected %s (%s)", path, gkd_status_name(s), gkd_status_name(want),
           msg);
    CHECK(st == NULL);
    CHECKF(strstr(msg, path) != NULL, "message does not name the file: %s", msg);
    CHECKF(!needle || strstr(msg, needle) != NULL, "message lacks '%s': %s", needle, msg);
    gkd_safetensors_close(st);
}

/* Is h the float16 nearest to x, ties to even? Compares with both neighbours in double; past 65504 the
 * neighbour is 65536, the value infinity stands for when rounding. */
static int f16_is_nearest(float x, uint16_t h) {
    double dx = x;
    double v = (h & 0x7fff) == 0x7c00 ? copysign(65536.0, gkd_st_f16_to_f32(h)) : gkd_st_f16_to_f32(h);
    for (int step = -1; step <= 1; step += 2) {
        uint16_t n = (uint16_t)(h + step);
        if ((h & 0x7fff) == 0 && step < 0) n = (uint16_t)((h ^ 0x8000) + 1); /* neighbour across zero */
        if ((n & 0x7fff) > 0x7c00) continue;
        double w = (n & 0x7fff) == 0x7c00 ? copysign(65536.0, gkd_st_f16_to_f32(n)) : gkd_st_f16_to_f32(n);
        if (fabs(w - dx) < fabs(v - dx)) return 0;
        if (fabs(w - dx) == fabs(v - dx) && (h & 1)) return 0;
    }
    return 1;
}

static void test_half(void) {
    /* widening then narrowing is the identity for every half, NaN payloads included */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++)
        if (gkd_st_f32_to_f16(gkd_st_f16_to_f32((uint16_t)h)) != h) bad++;
    CHECKF(bad == 0, "%d halves do not round-trip", bad);
    bad = 0;
    for (uint32_t b = 0; b < 65536; b++) {
        float x = gkd_st_bf16_to_f32((uint16_t)b);
        uint16_t back = gkd_st_f32_to_bf16(x);
        if (back != b && !(isnan(x) && (back & 0x7fc0) == 0x7fc0)) bad++;
    }
    CHECKF(bad == 0, "%d bfloat16s do not round-trip", bad);

    CHECK(gkd_st_f16_to_f32(0x3c00) == 1.0f);
    CHECK(gkd_st_f16_to_f32(0x0001) == 0x1p-24f);
    CHECK(gkd_st_f16_to_f32(0x7bff) == 65504.0f);
    CHECK(bits(gkd_st_f16_to_f32(0x8000)) == 0x80000000u);
    CHECK(gkd_st_f32_to_f16(65519.99f) == 0x7bff);
    CHECK(gkd_st_f32_to_f16(65520.0f) == 0x7c00);
    CHECK(gkd_st_f32_to_f16(0x1p-25f) == 0x0000);               /* tie between 0 and the least subnormal */
    CHECK(gkd_st_f32_to_f16(from_bits(0x33000001)) == 0x0001);  /* just above it */
    CHECK(gkd_st_f32_to_f16(0x1.8p-24f) == 0x0002);             /* tie 1.5 ulp -> even 2 */
    CHECK(gkd_st_f32_to_f16(from_bits(0x7f800001)) == 0x7c01);  /* NaN stays NaN */
    CHECK(gkd_st_f32_to_bf16(from_bits(0x3f808000)) == 0x3f80); /* tie -> even */
    CHECK(gkd_st_f32_to_bf16(from_bits(0x3f818000)) == 0x3f82);
    CHECK(gkd_st_f32_to_bf16(from_bits(0x7f7fffff)) == 0x7f80); /* overflow to inf */
    CHECK((gkd_st_f32_to_bf16(from_bits(0x7f800001)) & 0x7fff) > 0x7f80);

    /* random floats concentrated on half's range: each narrowing is the nearest half, ties to even */
    gkd_rng rng;
    gkd_rng_init(&rng, 7, GKD_RNG_STREAM_USER);
    bad = 0;
    for (int i = 0; i < 300000; i++) {
        uint32_t u = gkd_rng_u32(&rng);
        uint32_t exp = 127 - 27 + gkd_rng_below(&rng, 46); /* 2^-27 .. 2^18 */
        if (i % 3 == 0) u &= 0xffffe000u | (1u << 12);     /* many exact ties */
        float x = from_bits((u & 0x807fffffu) | (exp << 23));
        if (!f16_is_nearest(x, gkd_st_f32_to_f16(x))) {
            if (bad++ < 5) fprintf(stderr, "f16(%a) = 0x%04x is not nearest\n", x, gkd_st_f32_to_f16(x));
        }
    }
    CHECKF(bad == 0, "%d narrowings to half are not nearest-even", bad);
}

/* Test values: special cases first, then random bits, numbers in half's range, and half subnormals. */
static void fill_random(float *x, int n, uint64_t seed) {
    static const uint32_t special[] = {0x00000000u, 0x80000000u, 0x00000001u, 0x807fffffu, 0x7fc00001u,
                                       0x7f800001u, 0xffc12345u, 0x7f800000u, 0xff800000u, 0x477fe000u,
                                       0x477ff000u, 0x33000000u, 0x3f808000u, 0x7f7fffffu, 0x387fc000u};
    gkd_rng rng;
    gkd_rng_init(&rng, seed, GKD_RNG_STREAM_USER);
    for (int i = 0; i < n; i++) {
        uint32_t u = gkd_rng_u32(&rng);
        if (i < (int)(sizeof special / sizeof *special))
            u = special[i];
        else if (i % 3 == 1)
            u = (u & 0x807fffffu) | ((127 - 10 + gkd_rng_below(&rng, 26)) << 23);
        else if (i % 3 == 2)
            u = (u & 0x807fffffu) | ((127 - 24 + gkd_rng_below(&rng, 10)) << 23);
        x[i] = from_bits(u);
    }
}

static const char *const meta_keys[] = {"step", "note"};
static const char *const meta_values[] = {"100", "tab\there \"quoted\" back\\slash h\xc3\xa9llo\nnewline"};

/* Writes the checkpoint that check_safetensors.py knows: rand (7, 13) and its F16 and BF16 narrowings,
 * a scalar and an empty tensor. */
static void write_known(const char *path, const char *rand_bits_path, float *rand) {
    enum { N = 7 * 13 };
    uint16_t h[N], b[N];
    fill_random(rand, N, 42);
    for (int i = 0; i < N; i++) {
        h[i] = gkd_st_f32_to_f16(rand[i]);
        b[i] = gkd_st_f32_to_bf16(rand[i]);
    }
    int64_t shape[] = {7, 13}, empty_shape[] = {0, 4};
    float scalar = 2.5f;
    gkd_st_tensor ts[] = {
        {"rand_f16", GKD_ST_F16, 2, shape, h},   {"scalar", GKD_ST_F32, 0, NULL, &scalar},
        {"rand", GKD_ST_F32, 2, shape, rand},    {"empty", GKD_ST_F32, 2, empty_shape, NULL},
        {"rand_bf16", GKD_ST_BF16, 2, shape, b},
    };
    gkd_status s = gkd_safetensors_write(path, ts, 5, meta_keys, meta_values, 2);
    CHECKF(s == GKD_OK, "write: %s", gkd_error_message());
    if (rand_bits_path) put(rand_bits_path, rand, sizeof(float) * N);
}

static void test_roundtrip(void) {
    const char *path = "test_safetensors_rt.safetensors";
    float rand[7 * 13];
    put(path, "old contents", 12); /* the writer replaces an existing file */
    write_known(path, NULL, rand);
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    CHECK(access(tmp, F_OK) != 0);

    gkd_safetensors *st = NULL;
    gkd_status s = gkd_safetensors_open(path, &st);
    CHECKF(s == GKD_OK, "open: %s", gkd_error_message());
    if (!st) return;
    CHECK(gkd_safetensors_count(st) == 5);
    CHECK(strcmp(gkd_safetensors_path(st), path) == 0);
    /* reference layout: 4-byte dtypes first, names in order; the empty tensor sorts first at offset 0 */
    const gkd_st_info *first = gkd_safetensors_info(st, 0), *last = gkd_safetensors_info(st, 4);
    CHECK(first && strcmp(first->name, "empty") == 0 && last && strcmp(last->name, "rand_f16") == 0);
    CHECK(gkd_safetensors_info(st, 5) == NULL && gkd_safetensors_info(st, -1) == NULL);
    for (int i = 0; i < 5; i++) {
        const gkd_st_info *t = gkd_safetensors_info(st, i);
        CHECKF(t->offset % gkd_st_dtype_size(t->dtype) == 0, "%s misaligned", t->name);
    }
    CHECK(strcmp(gkd_safetensors_metadata(st, "step"), "100") == 0);
    CHECK(strcmp(gkd_safetensors_metadata(st, "note"), meta_values[1]) == 0);
    CHECK(gkd_safetensors_metadata(st, "absent") == NULL);
    CHECK(gkd_safetensors_metadata_count(st) == 2 &&
          strcmp(gkd_safetensors_metadata_key(st, 0), "step") == 0);

    int64_t shape[] = {7, 13};
    float got[7 * 13];
    uint16_t raw[7 * 13];
    CHECK(gkd_safetensors_read_f32(st, "rand", got, 2, shape) == GKD_OK);
    int bad = 0;
    for (int i = 0; i < 7 * 13; i++) bad += bits(got[i]) != bits(rand[i]);
    CHECKF(bad == 0, "%d floats changed in the round trip", bad);

    const char *narrow[] = {"rand_f16", "rand_bf16"};
    for (int k = 0; k < 2; k++) {
        CHECK(gkd_safetensors_read_f32(st, narrow[k], got, 2, shape) == GKD_OK);
        CHECK(gkd_safetensors_read_raw(st, narrow[k], k ? GKD_ST_BF16 : GKD_ST_F16, raw, 2, shape) == GKD_OK);
        bad = 0;
        for (int i = 0; i < 7 * 13; i++) {
            uint16_t want = k ? gkd_st_f32_to_bf16(rand[i]) : gkd_st_f32_to_f16(rand[i]);
            float wide = k ? gkd_st_bf16_to_f32(want) : gkd_st_f16_to_f32(want);
            bad += raw[i] != want || bits(got[i]) != bits(wide);
        }
        CHECKF(bad == 0, "%s: %d values differ", narrow[k], bad);
    }
    float scalar = 0;
    CHECK(gkd_safetensors_read_f32(st, "scalar", &scalar, 0, NULL) == GKD_OK && scalar == 2.5f);
    int64_t empty_shape[] = {0, 4};
    CHECK(gkd_safetensors_read_f32(st, "empty", NULL, 2, empty_shape) == GKD_OK);

    /* asking for the wrong shape or dtype names the tensor and both shapes or dtypes */
    int64_t wrong[] = {13, 7};
    s = gkd_safetensors_read_f32(st, "rand", got, 2, wrong);
    CHECK(s == GKD_ERR_SHAPE);
    CHECKF(strstr(gkd_error_message(), "'rand'") && strstr(gkd_error_message(), "[13, 7]") &&
               strstr(gkd_error_message(), "[7, 13]") && strstr(gkd_error_message(), path),
           "%s", gkd_error_message());
    CHECK(gkd_safetensors_read_f32(st, "rand", got, 1, shape) == GKD_ERR_SHAPE);
    s = gkd_safetensors_read_raw(st, "rand_f16", GKD_ST_BF16, raw, 2, shape);
    CHECK(s == GKD_ERR_SHAPE);
    CHECKF(strstr(gkd_error_message(), "BF16") && strstr(gkd_error_message(), "F16") &&
               strstr(gkd_error_message(), "'rand_f16'"),
           "%s", gkd_error_message());
    CHECK(gkd_safetensors_read_f32(st, "missing", got, 2, shape) == GKD_ERR_NOT_FOUND);
    CHECK(gkd_safetensors_find(st, "missing") == NULL);
    gkd_safetensors_close(st);
    gkd_safetensors_close(NULL);
    remove(path);
}

static float *read_floats(const char *path, size_t *n) {
    size_t len = 0;
    char *data = slurp(path, &len);
    *n = len / 4;
    return (float *)data;
}

static void test_python_fixture(void) {
    const char *path = FIXTURES "python.safetensors";
    size_t n_expected = 0;
    float *expected = read_floats(FIXTURES "python.safetensors.f32", &n_expected);
    CHECK(expected && n_expected == 12 + 12 + 5 + 1);
    gkd_safetensors *st = NULL;
    gkd_status s = gkd_safetensors_open(path, &st);
    CHECKF(s == GKD_OK, "%s", gkd_error_message());
    if (!st || !expected || n_expected != 30) {
        free(expected);
        gkd_safetensors_close(st);
        return;
    }
    CHECK(gkd_safetensors_count(st) == 6);
    CHECK(strcmp(gkd_safetensors_metadata(st, "format"), "pt") == 0);
    CHECK(strcmp(gkd_safetensors_metadata(st, "note"), "h\xc3\xa9llo \"quoted\"") == 0);

    struct {
        const char *name;
        gkd_st_dtype dtype;
        int ndim;
        int64_t shape[3];
        int n;
    } cases[] = {{"f32", GKD_ST_F32, 2, {3, 4}, 12},
                 {"f16", GKD_ST_F16, 3, {2, 3, 2}, 12},
                 {"bf16", GKD_ST_BF16, 1, {5}, 5},
                 {"scalar", GKD_ST_F32, 0, {0}, 1}};
    const float *want = expected;
    for (int c = 0; c < 4; c++) {
        const gkd_st_info *t = gkd_safetensors_find(st, cases[c].name);
        CHECKF(t && t->dtype == cases[c].dtype && t->ndim == cases[c].ndim && t->n_elements == cases[c].n,
               "%s", cases[c].name);
        float got[12];
        s = gkd_safetensors_read_f32(st, cases[c].name, got, cases[c].ndim, cases[c].shape);
        CHECKF(s == GKD_OK, "%s", gkd_error_message());
        int bad = 0;
        for (int i = 0; i < cases[c].n; i++) bad += bits(got[i]) != bits(want[i]);
        CHECKF(bad == 0, "%s: %d values differ from numpy's", cases[c].name, bad);
        want += cases[c].n;
    }
    int64_t i64_shape[] = {3}, i64[3];
    CHECK(gkd_safetensors_read_raw(st, "i64", GKD_ST_I64, i64, 1, i64_shape) == GKD_OK);
    CHECK(i64[0] == 1 && i64[1] == -2 && i64[2] == (int64_t)1 << 40);
    float f[3];
    s = gkd_safetensors_read_f32(st, "i64", f, 1, i64_shape);
    CHECKF(s == GKD_ERR_SHAPE && strstr(gkd_error_message(), "I64"), "%s", gkd_error_message());
    const gkd_st_info *e = gkd_safetensors_find(st, "empty");
    CHECK(e && e->n_elements == 0 && e->nbytes == 0 && e->shape[0] == 0 && e->shape[1] == 3);
    gkd_safetensors_close(st);
    free(expected);
}

static void test_python_check(void) {
    if (system("python3 -c 'import numpy, safetensors' >/dev/null 2>&1") != 0) {
        fprintf(stderr, "SKIPPED part: python3 with numpy and safetensors not found; gkd-written file not "
                        "checked with the reference package\n");
        return;
    }
    const char *path = "test_safetensors_py.safetensors", *rand_path = "test_safetensors_py.rand";
    float rand[7 * 13];
    write_known(path, rand_path, rand);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "python3 '%s' '%s' '%s'", FIXTURES "check_safetensors.py", path, rand_path);
    int rc = system(cmd);
    CHECKF(rc == 0, "check_safetensors.py failed (%d)", rc);
    remove(path);
    remove(rand_path);
}

static void test_corrupt(void) {
    const char *good = "test_safetensors_good.safetensors", *bad = "test_safetensors_bad.safetensors";
    float rand[7 * 13];
    write_known(good, NULL, rand);
    size_t len = 0;
    char *data = slurp(good, &len);
    CHECK(data != NULL);
    if (!data) return;
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | (unsigned char)data[i];

    /* truncated anywhere: inside the length, inside the header, at the data, one byte short */
    size_t cuts[] = {0, 3, 8, 9, 8 + hl / 2, 8 + hl - 1, 8 + hl, 8 + hl + 5, len / 2 + 7, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        put(bad, data, cuts[i]);
        expect_open_error(bad, GKD_ERR_FORMAT, cuts[i] < 8 ? "too short" : "offset");
    }
    /* a byte too many is also not the file the header describes */
    char *longer = malloc(len + 1);
    memcpy(longer, data, len);
    longer[len] = 0;
    put(bad, longer, len + 1);
    expect_open_error(bad, GKD_ERR_FORMAT, "after the last tensor");
    free(longer);

    /* header length beyond the file */
    char *copy = malloc(len);
    memcpy(copy, data, len);
    uint64_t huge = len;
    for (int i = 0; i < 8; i++) copy[i] = (char)(huge >> (8 * i));
    put(bad, copy, len);
    expect_open_error(bad, GKD_ERR_FORMAT, "header length");
    for (int i = 0; i < 8; i++) copy[i] = (char)0xff;
    put(bad, copy, len);
    expect_open_error(bad, GKD_ERR_FORMAT, "header length");
    free(copy);

    /* bad JSON: the message names the file and the offset */
    put_st(bad, "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},}", 4);
    expect_open_error(bad, GKD_ERR_FORMAT, "offset 61 (column 62)");
    put_st(bad, "[1, 2]", 0);
    expect_open_error(bad, GKD_ERR_FORMAT, "not a JSON object");

    struct {
        const char *header;
        size_t data_len;
        const char *needle;
    } cases[] = {
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "'a'"}, /* out of range */
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 4, "'a'"}, /* out of range */
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
         4, "overlap"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[2,10]}}",
         10, "overlap"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "unused bytes"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, "'a'"}, /* size != shape */
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8, "'a'"}, /* end < begin */
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4, "'a'"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0.5,4]}}", 4, "'a'"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "shape[0]"},
        {"{\"a\":{\"dtype\":\"F31\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "F31"},
        {"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "shape"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "data_offsets"},
        {"{\"a\":[]}", 0, "'a'"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,4]}}", 4,
         "'a'"},
        {"{\"__metadata__\":{\"k\":1}}", 0, "\"k\""}, /* non-string metadata */
        {"{\"__metadata__\":{\"cfg\":\"a\\u0000b\"}}", 0, "NUL"}, /* would be read cut short */
        {"{\"__metadata__\":[]}", 0, "__metadata__"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
         8, "twice"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        put_st(bad, cases[i].header, cases[i].data_len);
        expect_open_error(bad, GKD_ERR_FORMAT, cases[i].needle);
    }
    /* a missing file is an I/O error, not a format error */
    expect_open_error("test_safetensors_no_such_file.safetensors", GKD_ERR_IO, "cannot open");

    /* random damage to the header and length: any outcome but a crash; whatever opens reads in bounds */
    gkd_rng rng;
    gkd_rng_init(&rng, 3, GKD_RNG_STREAM_USER);
    char *mutant = malloc(len);
    int opened = 0;
    for (int iter = 0; iter < 3000; iter++) {
        memcpy(mutant, data, len);
        int flips = 1 + (int)gkd_rng_below(&rng, 4);
        for (int k = 0; k < flips; k++) {
            size_t at = gkd_rng_below(&rng, (uint32_t)(8 + hl));
            mutant[at] =
                (iter & 1) ? (char)gkd_rng_u32(&rng) : "{}[],:\"0123456789 e-.\\"[gkd_rng_below(&rng, 22)];
        }
        put(bad, mutant, len);
        gkd_safetensors *st = NULL;
        if (gkd_safetensors_open(bad, &st) != GKD_OK) continue;
        opened++;
        for (int i = 0; i < gkd_safetensors_count(st); i++) {
            const gkd_st_info *t = gkd_safetensors_info(st, i);
            float *dst = malloc((size_t)t->n_elements * sizeof(float) + 1);
            gkd_safetensors_read_f32(st, t->name, dst, t->ndim, t->shape);
            free(dst);
        }
        gkd_safetensors_close(st);
    }
    fprintf(stderr, "random header damage: %d of 3000 files still opened\n", opened);
    free(mutant);
    free(data);
    remove(good);
    remove(bad);
}

static void test_write_errors(void) {
    const char *path = "test_safetensors_werr.safetensors";
    remove(path);
    float x[2] = {1, 2};
    int64_t shape[] = {2}, neg[] = {-1};
    gkd_st_tensor dup[] = {{"a", GKD_ST_F32, 1, shape, x}, {"a", GKD_ST_F32, 1, shape, x}};
    CHECK(gkd_safetensors_write(path, dup, 2, NULL, NULL, 0) == GKD_ERR_ARG);
    gkd_st_tensor reserved[] = {{"__metadata__", GKD_ST_F32, 1, shape, x}};
    CHECK(gkd_safetensors_write(path, reserved, 1, NULL, NULL, 0) == GKD_ERR_ARG);
    gkd_st_tensor no_data[] = {{"a", GKD_ST_F32, 1, shape, NULL}};
    CHECK(gkd_safetensors_write(path, no_data, 1, NULL, NULL, 0) == GKD_ERR_ARG);
    gkd_st_tensor negative[] = {{"a", GKD_ST_F32, 1, neg, x}};
    CHECK(gkd_safetensors_write(path, negative, 1, NULL, NULL, 0) == GKD_ERR_ARG);
    const char *k2[] = {"k", "k"}, *v2[] = {"1", "2"};
    gkd_st_tensor ok[] = {{"a", GKD_ST_F32, 1, shape, x}};
    CHECK(gkd_safetensors_write(path, ok, 1, k2, v2, 2) == GKD_ERR_ARG);
    CHECK(access(path, F_OK) != 0); /* nothing written by a refused call */
    gkd_status s = gkd_safetensors_write("test_safetensors_no_such_dir/x.safetensors", ok, 1, NULL, NULL, 0);
    CHECKF(s == GKD_ERR_IO && strstr(gkd_error_message(), "no_such_dir"), "%s", gkd_error_message());

    /* no tensors and no metadata is still a valid file */
    CHECK(gkd_safetensors_write(path, NULL, 0, NULL, NULL, 0) == GKD_OK);
    gkd_safetensors *st = NULL;
    CHECK(gkd_safetensors_open(path, &st) == GKD_OK && st && gkd_safetensors_count(st) == 0);
    gkd_safetensors_close(st);
    remove(path);
}

int main(void) {
    test_half();
    test_roundtrip();
    test_python_fixture();
    test_python_check();
    test_corrupt();
    test_write_errors();
    return check_exit();
}
