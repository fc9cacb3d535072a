/* JSON reader/writer: values, escapes (including surrogate pairs), round trips, and errors that name
 * the offset, line and column; a leading byte order mark; \u0000 in values and keys; numbers at and
 * beyond 2^63 and beyond a double. */
// ctest-labels: cpu
#include "core/base/json.h"
#include "tests/check.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static gkd_json *parse(const char *s) {
    gkd_json *v = NULL;
    gkd_status st = gkd_json_parse(s, strlen(s), "test", &v);
    return st == GKD_OK ? v : NULL;
}

/* A UTF-8 byte order mark at the start of a text or file is skipped (it read as "invalid number"); anywhere
 * else it is still an error. */
static void test_bom(void) {
    const char *text = "\xEF\xBB\xBF{\"a\": 1}";
    gkd_json *v = NULL;
    gkd_status st = gkd_json_parse(text, strlen(text), "bom.json", &v);
    CHECKF(st == GKD_OK && gkd_json_get_number(v, "a", 0) == 1, "BOM text: %s", gkd_error_message());
    gkd_json_free(v);
    char path[] = "/tmp/gkd_test_json_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd >= 0) {
        FILE *f = fdopen(fd, "w");
        fputs("\xEF\xBB\xBF\n{\"b\": [2]}\n", f);
        fclose(f);
        v = NULL;
        st = gkd_json_parse_file(path, &v);
        CHECKF(st == GKD_OK && gkd_json_get(v, "b"), "BOM file: %s", gkd_error_message());
        gkd_json_free(v);
        remove(path);
    }
#define BOM "\xEF\xBB\xBF"
    const char *inside[] = {"[1, " BOM "2]", BOM BOM "1", " " BOM "1", "\xEF\xBB"};
#undef BOM
    for (size_t i = 0; i < sizeof inside / sizeof *inside; i++) {
        v = NULL;
        CHECKF(gkd_json_parse(inside[i], strlen(inside[i]), "t", &v) == GKD_ERR_FORMAT, "accepted case %zu",
               i);
        gkd_json_free(v);
    }
}

/* \u0000 in a string value keeps the whole string (its length says where it ends); in an object key, which
 * is a C string, it is refused with the position rather than cutting the key. */
static void test_nul(void) {
    const char *text = "{\"s\": \"ab\\u0000cd\"}";
    gkd_json *v = NULL;
    CHECK(gkd_json_parse(text, strlen(text), "t", &v) == GKD_OK);
    const gkd_json *s = gkd_json_get(v, "s");
    CHECKF(s && s->type == GKD_JSON_STRING && s->len == 5 && memcmp(s->string, "ab\0cd", 6) == 0, "len %zu",
           s ? s->len : 0);
    gkd_buf b = {0}; /* and it round-trips */
    if (v) gkd_buf_json_value(&b, v);
    CHECKF(b.data && strcmp(b.data, "{\"s\":\"ab\\u0000cd\"}") == 0, "%s", b.data ? b.data : "");
    gkd_buf_free(&b);
    gkd_json_free(v);
    const char *key = "{\"ok\": 1,\n \"a\\u0000b\": 2}";
    v = NULL;
    gkd_status st = gkd_json_parse(key, strlen(key), "keys.json", &v);
    CHECKF(st == GKD_ERR_FORMAT && v == NULL, "a key with \\u0000 was accepted");
    CHECKF(strstr(gkd_error_message(), "keys.json: offset 11 (line 2, column 2)") &&
               strstr(gkd_error_message(), "\\u0000"),
           "%s", gkd_error_message());
}

/* Numbers at and beyond 2^63 are written and converted without a cast out of range (undefined behaviour:
 * the sanitizer build, with float-cast-overflow, failed here); numbers beyond a double are refused. */
static void test_big_numbers(void) {
    const double xs[] = {0x1p63,
                         -0x1p63,
                         1e19,
                         -1e19,
                         1.8446744073709552e19,
                         1e300,
                         -1e300,
                         999999999999999.0,
                         -4503599627370497.0};
    for (size_t i = 0; i < sizeof xs / sizeof *xs; i++) {
        gkd_buf b = {0};
        gkd_buf_json_number(&b, xs[i]);
        CHECKF(b.data && strtod(b.data, NULL) == xs[i], "%.17g written as %s", xs[i], b.data ? b.data : "");
        gkd_buf_free(&b);
    }
    gkd_buf b = {0};
    gkd_buf_json_number(&b, 999999999999999.0);
    CHECKF(b.data && strcmp(b.data, "999999999999999") == 0, "%s", b.data ? b.data : "");
    gkd_buf_free(&b);

    const struct {
        const char *text;
        int64_t min, max;
        int ok;
        int64_t want;
    } cases[] = {
        {"7", 0, 10, 1, 7},
        {"11", 0, 10, 0, 0},
        {"-1", 0, 10, 0, 0},
        {"2.5", 0, 10, 0, 0},
        {"1e2", 0, 1000, 1, 100},
        {"9223372036854775807", INT64_MIN, INT64_MAX, 0, 0}, /* reads as 2^63 */
        {"9223372036854775808", INT64_MIN, INT64_MAX, 0, 0},
        {"1e19", INT64_MIN, INT64_MAX, 0, 0},
        {"-9223372036854775808", INT64_MIN, INT64_MAX, 1, INT64_MIN},
        {"-1e19", INT64_MIN, INT64_MAX, 0, 0},
        {"4294967297", 0, 2147483647, 0, 0},
        {"\"7\"", 0, 10, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        gkd_json *v = parse(cases[i].text);
        int64_t got = -42;
        int ok = gkd_json_integer(v, cases[i].min, cases[i].max, &got);
        CHECKF(v && ok == cases[i].ok && got == (ok ? cases[i].want : -42), "%s: ok %d, got %lld",
               cases[i].text, ok, (long long)got);
        gkd_json_free(v);
    }
    CHECK(gkd_json_integer(NULL, 0, 1, &(int64_t){0}) == 0);

    gkd_json *v = NULL;
    CHECK(gkd_json_parse("[1e999]", 7, "huge.json", &v) == GKD_ERR_FORMAT && v == NULL);
    CHECKF(strstr(gkd_error_message(), "huge.json: offset 1") && strstr(gkd_error_message(), "range"), "%s",
           gkd_error_message());
    CHECK(gkd_json_parse("[-1e999]", 8, "huge.json", &v) == GKD_ERR_FORMAT);
    CHECK(gkd_json_parse("[1e-999]", 8, "tiny.json", &v) == GKD_OK && v && v->items[0]->number == 0.0);
    gkd_json_free(v);
}

/* Text for a terminal: C0 controls, DEL and C1 controls (UTF-8) escaped; newline and tab kept on request;
 * other UTF-8 and a NUL inside the text handled by length. */
static void test_printable(void) {
    const char in[] = "a\x1b[31mb\x07\tc\nd\x7f\xc2\x9b"
                      "2J\xc3\xa9\xc2\xa0\0e";
    gkd_buf b = {0};
    gkd_buf_put_printable(&b, in, sizeof in - 1, 0);
    const char *want = "a\\x1b[31mb\\x07\\x09c\\x0ad\\x7f\\xc2\\x9b2J\xc3\xa9\xc2\xa0\\x00e";
    CHECKF(b.data && strcmp(b.data, want) == 0, "%s", b.data ? b.data : "");
    gkd_buf_free(&b);
    gkd_buf_put_printable(&b, in, sizeof in - 1, 1);
    want = "a\\x1b[31mb\\x07\tc\nd\\x7f\\xc2\\x9b2J\xc3\xa9\xc2\xa0\\x00e";
    CHECKF(b.data && strcmp(b.data, want) == 0, "%s", b.data ? b.data : "");
    gkd_buf_free(&b);
    gkd_buf_put_printable(&b, "\xc2", 1, 0); /* a lead byte at the very end is not read past */
    CHECKF(b.data && strcmp(b.data, "\xc2") == 0, "%s", b.data ? b.data : "");
    gkd_buf_free(&b);
}

int main(void) {
    gkd_json *v = parse(" {\"a\": [1, -2.5e3, true, false, null], \"b\": \"x\\u00e9\\ud83d\\ude00\\n\", \"c\": {}} ");
    CHECK(v != NULL);
    if (v) {
        const gkd_json *a = gkd_json_get(v, "a");
        CHECK(a && a->type == GKD_JSON_ARRAY && a->len == 5);
        CHECK(a && a->items[1]->number == -2500.0);
        CHECK(a && a->items[2]->type == GKD_JSON_BOOL && a->items[2]->boolean == 1);
        CHECK(strcmp(gkd_json_get_string(v, "b", ""), "x\xc3\xa9\xf0\x9f\x98\x80\n") == 0);
        CHECK(gkd_json_get(v, "c") && gkd_json_get(v, "c")->len == 0);
        CHECK(gkd_json_get(v, "missing") == NULL);
        gkd_buf b = {0};
        gkd_buf_json_value(&b, v);
        gkd_json *w = NULL;
        CHECK(gkd_json_parse(b.data, b.len, "roundtrip", &w) == GKD_OK);
        gkd_buf b2 = {0};
        if (w) gkd_buf_json_value(&b2, w);
        CHECKF(b2.data && strcmp(b.data, b2.data) == 0, "%s vs %s", b.data, b2.data ? b2.data : "");
        gkd_buf_free(&b);
        gkd_buf_free(&b2);
        gkd_json_free(w);
    }
    gkd_json_free(v);

    /* Doubles survive the writer exactly. */
    double xs[] = {0.1, 1e-300, 3.141592653589793, -7, 1e20};
    for (int i = 0; i < 5; i++) {
        gkd_buf b = {0};
        gkd_buf_json_number(&b, xs[i]);
        CHECKF(strtod(b.data, NULL) == xs[i], "%s", b.data);
        gkd_buf_free(&b);
    }

    /* Errors name the position. */
    const char *bad[] = {"{\"a\": 1,}", "[1, 2", "{\"a\" 1}", "\"abc", "01", "[1] x", "{\"a\": tru}", "\"\\q\"", ""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        gkd_json *x = NULL;
        gkd_status st = gkd_json_parse(bad[i], strlen(bad[i]), "bad.json", &x);
        CHECKF(st == GKD_ERR_FORMAT && x == NULL, "accepted %s", bad[i]);
        CHECKF(strstr(gkd_error_message(), "bad.json: offset") != NULL, "%s", gkd_error_message());
    }
    gkd_json *x = NULL;
    gkd_json_parse("{\n  \"a\": [1,\n   ]\n}", 18, "f.json", &x);
    CHECKF(strstr(gkd_error_message(), "line 3") != NULL, "%s", gkd_error_message());

    /* Deep nesting is refused, not a stack overflow. */
    char deep[2000];
    memset(deep, '[', sizeof deep);
    CHECK(gkd_json_parse(deep, sizeof deep, "deep", &x) == GKD_ERR_FORMAT);
    CHECK(gkd_json_parse_file("/nonexistent/file.json", &x) == GKD_ERR_IO);
    gkd_json_free(NULL);

    test_bom();
    test_nul();
    test_big_numbers();
    test_printable();
    return check_exit();
}
