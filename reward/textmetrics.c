/* Small rewards on generated text: exact match of a final numeric answer (arithmetic tasks), a
 * length penalty, and distinct-n (diversity of a set of samples).
 * Rules: numbers are parsed by hand rather than with strtod(), so a locale's decimal comma (a Lua
 * script may call os.setlocale) cannot change what an answer means; values are exact for integers
 * up to 2^53 and within about 1e-16 relative for decimals, far inside the 1e-9 match tolerance. */
#include "reward/metrics.h"
#include "reward/text.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int is_digit(char c) {
    return c >= '0' && c <= '9';
}

static int is_alnum(char c) {
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Parses the number whose first digit is at s[i]; returns the index just past it. A ",ddd" group
 * belongs to the number only after at most three leading digits and when no fourth digit follows,
 * so "1,000" is one thousand but "1,2,3" is three numbers and "1,0000" is 1 then 0. */
static size_t parse_number(const char *s, size_t n, size_t i, double *value) {
    double v = 0;
    size_t j = i;
    while (j < n && is_digit(s[j])) v = v * 10 + (s[j++] - '0');
    if (j - i <= 3) {
        while (j + 3 < n && s[j] == ',' && is_digit(s[j + 1]) && is_digit(s[j + 2]) && is_digit(s[j + 3]) &&
               (j + 4 >= n || !is_digit(s[j + 4]))) {
            v = v * 1000 + (s[j + 1] - '0') * 100 + (s[j + 2] - '0') * 10 + (s[j + 3] - '0');
            j += 4;
        }
    }
    if (j + 1 < n && s[j] == '.' && is_digit(s[j + 1])) {
        double frac = 0, scale = 1;
        /* Digits past the 18th cannot change a double; skipping them keeps scale finite. */
        for (j++; j < n && is_digit(s[j]); j++) {
            if (scale >= 1e18) continue;
            frac = frac * 10 + (s[j] - '0');
            scale *= 10;
        }
        v += frac / scale;
    }
    *value = v;
    return j;
}

int gkd_number_last(const char *text, double *value) {
    if (value) *value = 0;
    if (!text) return 0;
    size_t n = strlen(text);
    int found = 0;
    double last = 0;
    for (size_t i = 0; i < n;) {
        if (!is_digit(text[i])) {
            i++;
            continue;
        }
        /* A minus sign glued to a word ("x-1", "3-4") is a hyphen, not a sign. */
        int negative = i > 0 && text[i - 1] == '-' && (i < 2 || !is_alnum(text[i - 2]));
        double v;
        i = parse_number(text, n, i, &v);
        last = negative ? -v : v;
        found = 1;
    }
    if (found && value) *value = last;
    return found;
}

double gkd_exact_match_number(const char *output, const char *reference) {
    double a, b;
    if (!gkd_number_last(output, &a) || !gkd_number_last(reference, &b)) return 0.0;
    double scale = fmax(1.0, fmax(fabs(a), fabs(b)));
    return fabs(a - b) <= 1e-9 * scale ? 1.0 : 0.0;
}

int gkd_word_count(const char *text) {
    if (!text) return 0;
    size_t n = strlen(text);
    int words = 0, in_word = 0;
    for (size_t i = 0; i < n;) {
        int w = gkd_utf8_space_len(text + i, n - i);
        if (w) {
            in_word = 0;
            i += (size_t)w;
        } else {
            words += !in_word;
            in_word = 1;
            i++;
        }
    }
    return words;
}

gkd_status gkd_length_penalty(int length, int min_len, int max_len, double scale, double *penalty) {
    *penalty = 0;
    if (min_len < 0 || min_len > max_len || !(scale > 0))
        return gkd_error_set(GKD_ERR_ARG, "length penalty: range [%d, %d] with scale %g", min_len, max_len,
                             scale);
    double distance = length < min_len ? min_len - length : length > max_len ? length - max_len : 0;
    *penalty = fmin(1.0, distance / scale);
    return GKD_OK;
}

gkd_status gkd_distinct_n(const char *const *outputs, int n_outputs, int order, double *distinct) {
    *distinct = 0;
    if (order < 1) return gkd_error_set(GKD_ERR_ARG, "distinct-n: order %d, must be >= 1", order);
    if (n_outputs < 0 || (n_outputs > 0 && !outputs))
        return gkd_error_set(GKD_ERR_ARG, "distinct-n: %d outputs, NULL array", n_outputs);
    gkd_toklist *lists = calloc((size_t)n_outputs + 1, sizeof *lists);
    const gkd_toklist **views = calloc((size_t)n_outputs + 1, sizeof *views);
    gkd_seqset s = {0};
    int *grams = NULL;
    gkd_status st =
        lists && views ? GKD_OK : gkd_error_set(GKD_ERR_NOMEM, "distinct-n: %d outputs", n_outputs);
    for (int i = 0; i < n_outputs && st == GKD_OK; i++) {
        if (!outputs[i])
            st = gkd_error_set(GKD_ERR_ARG, "distinct-n: output %d is NULL", i);
        else
            st = gkd_toklist_split(&lists[i], outputs[i], strlen(outputs[i]));
        views[i] = &lists[i];
    }
    if (st == GKD_OK) st = gkd_seqset_build(views, n_outputs, &s);
    int total = s.offset ? s.offset[n_outputs] : 0, n_ids = s.vocab;
    if (st == GKD_OK) {
        grams = malloc((size_t)(2 * total + 1) * sizeof *grams);
        if (!grams)
            st = gkd_error_set(GKD_ERR_NOMEM, "distinct-n over %d tokens", total);
        else
            memcpy(grams, s.ids, (size_t)total * sizeof *grams);
    }
    for (int k = 2; k <= order && st == GKD_OK; k++) {
        st = gkd_ngram_extend(&s, grams, k, grams + total, &n_ids);
        if (st == GKD_OK) memcpy(grams, grams + total, (size_t)total * sizeof *grams);
    }
    if (st == GKD_OK) {
        long count = 0;
        for (int i = 0; i < total; i++) count += grams[i] >= 0;
        *distinct = count ? (double)n_ids / (double)count : 0.0;
    }
    free(grams);
    gkd_seqset_free(&s);
    for (int i = 0; lists && i < n_outputs; i++) gkd_toklist_free(&lists[i]);
    free(lists);
    free(views);
    return st;
}
