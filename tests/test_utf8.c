/* core/base's UTF-8 decoder and encoder (every scalar value both ways; malformed and truncated input),
 * the two whitespace sets, and the byte buffer (appends, NUL termination, reader space, failure flag). */
// ctest-labels: cpu
#include "core/base/buf.h"
#include "core/base/utf8.h"
#include "tests/check.h"

#include <string.h>

static void test_round_trip(void) {
    int bad = 0;
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
        if (cp >= 0xD800 && cp <= 0xDFFF) continue;
        char s[4];
        size_t n = gkd_utf8_encode(cp, s);
        uint32_t back;
        size_t m = gkd_utf8_decode(s, n, &back);
        size_t want = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
        if (n != want || m != n || back != cp) bad++;
        if (n > 1 && gkd_utf8_decode(s, n - 1, &back) != 1)
            bad++; /* truncated: one byte, invalid */
        else if (n > 1 && back != GKD_UTF8_INVALID)
            bad++;
    }
    CHECKF(bad == 0, "%d scalar values do not round-trip", bad);
}

static void test_malformed(void) {
    const char *bad[] = {"\x80",
                         "\xBF",
                         "\xC0\x80",
                         "\xC1\xBF",
                         "\xE0\x80\x80",
                         "\xE0\x9F\xBF",
                         "\xED\xA0\x80",
                         "\xED\xBF\xBF",
                         "\xF0\x80\x80\x80",
                         "\xF0\x8F\xBF\xBF",
                         "\xF4\x90\x80\x80",
                         "\xF5\x80\x80\x80",
                         "\xFF",
                         "\xC3\x28",
                         "\xE2\x28\xA1",
                         "\xF0\x9F\x98\x28"};
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        uint32_t cp = 0;
        size_t n = gkd_utf8_decode(bad[k], strlen(bad[k]), &cp);
        CHECKF(n == 1 && cp == GKD_UTF8_INVALID, "case %zu decoded as U+%04X of %zu bytes", k, (unsigned)cp,
               n);
    }
}

static void test_spaces(void) {
    const uint32_t white[] = {0x09,   0x0A,   0x0B,   0x0C,   0x0D,   0x20,   0x85,   0xA0,
                              0x1680, 0x2000, 0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000};
    for (size_t k = 0; k < sizeof white / sizeof *white; k++) {
        char s[4];
        size_t n = gkd_utf8_encode(white[k], s);
        CHECKF(gkd_utf8_is_white_space(white[k]), "U+%04X", (unsigned)white[k]);
        CHECKF(gkd_utf8_space_len(s, n) == (int)n, "U+%04X", (unsigned)white[k]);
        CHECKF(n == 1 || gkd_utf8_space_len(s, n - 1) == 0, "truncated U+%04X", (unsigned)white[k]);
    }
    /* Python also splits on the information separators; White_Space does not hold them. */
    CHECK(gkd_utf8_space_len("\x1C", 1) == 1 && !gkd_utf8_is_white_space(0x1C));
    CHECK(gkd_utf8_space_len("a", 1) == 0 && gkd_utf8_space_len("\xE2\x80\x8B", 3) == 0); /* ZWSP is not */
    CHECK(gkd_utf8_space_len("", 0) == 0);
}

static void test_buf(void) {
    gkd_buf b = {0};
    gkd_buf_put(&b, "", 0);
    CHECK(b.data && b.len == 0 && b.data[0] == '\0');
    gkd_buf_puts(&b, "ab");
    gkd_buf_printf(&b, "%d-%s", 42, "x");
    CHECK(b.len == 6 && strcmp(b.data, "ab42-x") == 0);
    char *at = gkd_buf_space(&b, 100000);
    CHECK(at == b.data + 6 && b.cap >= 6 + 100000 + 1);
    memcpy(at, "yz", 2);
    b.len += 2;
    b.data[b.len] = '\0';
    CHECK(strcmp(b.data, "ab42-xyz") == 0 && gkd_buf_check(&b, "test") == GKD_OK);
    b.failed = 1;
    gkd_buf_puts(&b, "more");
    CHECK(b.len == 8 && gkd_buf_space(&b, 1) == NULL && gkd_buf_check(&b, "test") == GKD_ERR_NOMEM);
    gkd_buf_free(&b);
    CHECK(!b.data && !b.len && !b.cap && !b.failed);
    gkd_buf_free(NULL);
}

int main(void) {
    test_round_trip();
    test_malformed();
    test_spaces();
    test_buf();
    return check_exit();
}
