/* JSON reader/writer: values, escapes (including surrogate pairs), round trips, and errors that name
 * the offset, line and column. */
#include "core/json.h"
#include "tests/check.h"

#include <string.h>

static gkd_json *parse(const char *s) {
    gkd_json *v = NULL;
    gkd_status st = gkd_json_parse(s, strlen(s), "test", &v);
    return st == GKD_OK ? v : NULL;
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
    return check_exit();
}
