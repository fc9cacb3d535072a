/* The Porter stemmer as NLTK's PorterStemmer runs it in its default NLTK_EXTENSIONS mode, which is
 * what rouge-score's use_stemmer=True calls. NLTK's mode departs from the 1980 paper in places (an
 * irregular-forms table, "ies"/"ied" on four-letter words, y -> i only after a consonant, "alli",
 * "fulli", "logi", a two-letter *o), and rouge-score's numbers depend on every one of them, so each
 * step below follows NLTK's rule order and conditions, including where a suffix that matches but
 * fails its condition stops the step.
 * Rules: the word is edited in place in the caller's buffer; no step ever makes it longer than the
 * input, so len + 1 bytes always suffice. Letters other than a, e, i, o, u (and y after a
 * consonant) count as consonants, digits included, as in NLTK. */
#include "reward/metrics.h"

#include <string.h>

static int is_vowel(char c) {
    return c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u';
}

/* A 'y' is a consonant when it starts the word or follows a vowel; walking back over a run of y's
 * flips the answer once per y. */
static int is_consonant(const char *w, int i) {
    if (is_vowel(w[i])) return 0;
    if (w[i] != 'y') return 1;
    int flip = 0;
    while (i > 0 && w[i] == 'y') {
        flip = !flip;
        i--;
    }
    return (!is_vowel(w[i])) != flip;
}

/* m in [C](VC)^m[V] of w[0..n): the number of vowel -> consonant transitions. */
static int measure(const char *w, int n) {
    /* One pass, since a 'y' is a consonant exactly when the letter before it is not (is_consonant()
     * per letter would rescan runs of y's). */
    int m = 0, prev_consonant = 1;
    for (int i = 0; i < n; i++) {
        int c = is_vowel(w[i]) ? 0 : w[i] == 'y' ? (i == 0 || !prev_consonant) : 1;
        if (!prev_consonant && c) m++;
        prev_consonant = c;
    }
    return m;
}

static int contains_vowel(const char *w, int n) {
    for (int i = 0; i < n; i++)
        if (!is_consonant(w, i)) return 1;
    return 0;
}

static int ends_double_consonant(const char *w, int n) {
    return n >= 2 && w[n - 1] == w[n - 2] && is_consonant(w, n - 1);
}

static int ends_cvc(const char *w, int n) {
    if (n >= 3 && is_consonant(w, n - 3) && !is_consonant(w, n - 2) && is_consonant(w, n - 1) &&
        w[n - 1] != 'w' && w[n - 1] != 'x' && w[n - 1] != 'y')
        return 1;
    return n == 2 && !is_consonant(w, 0) && is_consonant(w, 1);
}

static int ends_with(const char *w, int n, const char *suffix) {
    int k = (int)strlen(suffix);
    return k <= n && memcmp(w + n - k, suffix, (size_t)k) == 0;
}

/* A rule's condition sees the stem length and the whole word's length: NLTK's "logi" and "ll" rules
 * look at the word, not the stem. */
typedef int (*rule_condition)(const char *w, int stem_len, int word_len);

typedef struct {
    const char *suffix, *replacement;
    rule_condition condition; /* NULL: unconditional */
} rule;

static int m_positive(const char *w, int stem_len, int word_len) {
    (void)word_len;
    return measure(w, stem_len) > 0;
}

static int m_above_one(const char *w, int stem_len, int word_len) {
    (void)word_len;
    return measure(w, stem_len) > 1;
}

static int ion_condition(const char *w, int stem_len, int word_len) {
    (void)word_len;
    return measure(w, stem_len) > 1 && (w[stem_len - 1] == 's' || w[stem_len - 1] == 't');
}

static int logi_condition(const char *w, int stem_len, int word_len) {
    (void)stem_len;
    return measure(w, word_len - 3) > 0;
}

static int y_condition(const char *w, int stem_len, int word_len) {
    (void)word_len;
    return stem_len > 1 && is_consonant(w, stem_len - 1);
}

/* The first rule whose suffix matches decides: applied if its condition holds, else the word stays
 * as it is and later rules are not tried. Returns the new length. */
static int apply_rules(char *w, int n, const rule *rules, int nrules) {
    for (int r = 0; r < nrules; r++) {
        if (!ends_with(w, n, rules[r].suffix)) continue;
        int stem = n - (int)strlen(rules[r].suffix);
        if (rules[r].condition && !rules[r].condition(w, stem, n)) return n;
        int k = (int)strlen(rules[r].replacement);
        memcpy(w + stem, rules[r].replacement, (size_t)k);
        return stem + k;
    }
    return n;
}

static int step1a(char *w, int n) {
    if (n == 4 && ends_with(w, n, "ies")) return 3; /* "ties" -> "tie" */
    static const rule rules[] = {
        {"sses", "ss", NULL}, {"ies", "i", NULL}, {"ss", "ss", NULL}, {"s", "", NULL}};
    return apply_rules(w, n, rules, 4);
}

static int step1b(char *w, int n) {
    if (ends_with(w, n, "ied")) {
        return n == 4 ? 3 : n - 2; /* "died" -> "die", "cried" -> "cri" */
    }
    if (ends_with(w, n, "eed")) return measure(w, n - 3) > 0 ? n - 1 : n;
    int stem = -1;
    if (ends_with(w, n, "ed") && contains_vowel(w, n - 2))
        stem = n - 2;
    else if (ends_with(w, n, "ing") && contains_vowel(w, n - 3))
        stem = n - 3;
    if (stem < 0) return n;
    if (ends_with(w, stem, "at") || ends_with(w, stem, "bl") || ends_with(w, stem, "iz")) {
        w[stem] = 'e';
        return stem + 1;
    }
    if (ends_double_consonant(w, stem)) {
        char last = w[stem - 1];
        return (last != 'l' && last != 's' && last != 'z') ? stem - 1 : stem;
    }
    if (measure(w, stem) == 1 && ends_cvc(w, stem)) {
        w[stem] = 'e';
        return stem + 1;
    }
    return stem;
}

static int step1c(char *w, int n) {
    static const rule rules[] = {{"y", "i", y_condition}};
    return apply_rules(w, n, rules, 1);
}

static int step2(char *w, int n) {
    if (ends_with(w, n, "alli") && measure(w, n - 4) > 0) return step2(w, n - 2); /* "alli" -> "al" */
    static const rule rules[] = {
        {"ational", "ate", m_positive},  {"tional", "tion", m_positive}, {"enci", "ence", m_positive},
        {"anci", "ance", m_positive},    {"izer", "ize", m_positive},    {"bli", "ble", m_positive},
        {"alli", "al", m_positive},      {"entli", "ent", m_positive},   {"eli", "e", m_positive},
        {"ousli", "ous", m_positive},    {"ization", "ize", m_positive}, {"ation", "ate", m_positive},
        {"ator", "ate", m_positive},     {"alism", "al", m_positive},    {"iveness", "ive", m_positive},
        {"fulness", "ful", m_positive},  {"ousness", "ous", m_positive}, {"aliti", "al", m_positive},
        {"iviti", "ive", m_positive},    {"biliti", "ble", m_positive},  {"fulli", "ful", m_positive},
        {"logi", "log", logi_condition},
    };
    return apply_rules(w, n, rules, (int)(sizeof rules / sizeof rules[0]));
}

static int step3(char *w, int n) {
    static const rule rules[] = {
        {"icate", "ic", m_positive}, {"ative", "", m_positive},  {"alize", "al", m_positive},
        {"iciti", "ic", m_positive}, {"ical", "ic", m_positive}, {"ful", "", m_positive},
        {"ness", "", m_positive},
    };
    return apply_rules(w, n, rules, (int)(sizeof rules / sizeof rules[0]));
}

static int step4(char *w, int n) {
    static const rule rules[] = {
        {"al", "", m_above_one},   {"ance", "", m_above_one}, {"ence", "", m_above_one},
        {"er", "", m_above_one},   {"ic", "", m_above_one},   {"able", "", m_above_one},
        {"ible", "", m_above_one}, {"ant", "", m_above_one},  {"ement", "", m_above_one},
        {"ment", "", m_above_one}, {"ent", "", m_above_one},  {"ion", "", ion_condition},
        {"ou", "", m_above_one},   {"ism", "", m_above_one},  {"ate", "", m_above_one},
        {"iti", "", m_above_one},  {"ous", "", m_above_one},  {"ive", "", m_above_one},
        {"ize", "", m_above_one},
    };
    return apply_rules(w, n, rules, (int)(sizeof rules / sizeof rules[0]));
}

static int step5a(char *w, int n) {
    if (!ends_with(w, n, "e")) return n;
    int m = measure(w, n - 1);
    if (m > 1 || (m == 1 && !ends_cvc(w, n - 1))) return n - 1;
    return n;
}

static int step5b(char *w, int n) {
    return ends_with(w, n, "ll") && measure(w, n - 1) > 1 ? n - 1 : n;
}

/* NLTK's irregular forms, looked up before any step. */
static const char *const irregular[][2] = {
    {"sky", "sky"},        {"skies", "sky"},       {"dying", "die"},        {"lying", "lie"},
    {"tying", "tie"},      {"news", "news"},       {"innings", "inning"},   {"inning", "inning"},
    {"outings", "outing"}, {"outing", "outing"},   {"cannings", "canning"}, {"canning", "canning"},
    {"howe", "howe"},      {"proceed", "proceed"}, {"exceed", "exceed"},    {"succeed", "succeed"},
};

gkd_status gkd_porter_stem(const char *word, size_t len, char *out, size_t cap, size_t *stem_len) {
    if (stem_len) *stem_len = 0;
    if (!word || !out || !stem_len) return gkd_error_set(GKD_ERR_ARG, "porter stem: NULL argument");
    if (cap < len + 1)
        return gkd_error_set(GKD_ERR_ARG, "porter stem: buffer of %zu bytes for a %zu-byte word", cap, len);
    if (len > (size_t)1 << 30) return gkd_error_set(GKD_ERR_ARG, "porter stem: word of %zu bytes", len);
    for (size_t i = 0; i < len; i++)
        out[i] = (word[i] >= 'A' && word[i] <= 'Z') ? (char)(word[i] - 'A' + 'a') : word[i];
    int n = (int)len;
    for (size_t k = 0; k < sizeof irregular / sizeof irregular[0]; k++) {
        if (strlen(irregular[k][0]) == len && memcmp(out, irregular[k][0], len) == 0) {
            n = (int)strlen(irregular[k][1]);
            memcpy(out, irregular[k][1], (size_t)n);
            out[n] = '\0';
            *stem_len = (size_t)n;
            return GKD_OK;
        }
    }
    if (n > 2) {
        n = step1a(out, n);
        n = step1b(out, n);
        n = step1c(out, n);
        n = step2(out, n);
        n = step3(out, n);
        n = step4(out, n);
        n = step5a(out, n);
        n = step5b(out, n);
    }
    out[n] = '\0';
    *stem_len = (size_t)n;
    return GKD_OK;
}
