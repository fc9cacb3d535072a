/* Text metrics against the Python packages they claim to match, and the rewards on hand-checked cases.
 * ROUGE-1/2/L (with and without the Porter stemmer) must equal rouge-score's values and sentence and
 * corpus BLEU sacreBLEU's, both tokenisers must produce the packages' tokens, and the stemmer NLTK's
 * stems: reference values come from tests/fixtures/make_metrics_fixture.py (500 pairs built from the
 * debdesc sample plus edge cases). The factual reward, exact match, length penalty and distinct-n are
 * checked on cases small enough to work out by hand.
 * Tolerances: ROUGE 1e-12 absolute (the arithmetic is the same expression on the same integers, so
 * the values are expected to be bit-identical; the slack only covers printing), BLEU 1e-9 relative
 * (exp and log come from the C library on both sides). */
// ctest-labels: cpu
#include "reward/metrics.h"
#include "reward/text.h"
#include "tests/check.h"

#include <stdint.h>
#include <string.h>

/* ---- a reader for the fixture's flat JSON objects (string and number values only) ---- */

enum { MAX_FIELDS = 64 };

typedef struct {
    char *key;
    char *str; /* NULL for a number */
    double num;
} field;

typedef struct {
    field f[MAX_FIELDS];
    int n;
} record;

static void put_utf8(char **o, uint32_t cp) {
    unsigned char *u = (unsigned char *)*o;
    if (cp < 0x80)
        *u++ = (unsigned char)cp;
    else if (cp < 0x800)
        *u++ = (unsigned char)(0xc0 | cp >> 6), *u++ = (unsigned char)(0x80 | (cp & 0x3f));
    else if (cp < 0x10000)
        *u++ = (unsigned char)(0xe0 | cp >> 12), *u++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3f)),
        *u++ = (unsigned char)(0x80 | (cp & 0x3f));
    else
        *u++ = (unsigned char)(0xf0 | cp >> 18), *u++ = (unsigned char)(0x80 | ((cp >> 12) & 0x3f)),
        *u++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3f)), *u++ = (unsigned char)(0x80 | (cp & 0x3f));
    *o = (char *)u;
}

static const char *skip_ws(const char *p) {
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    return p;
}

/* Decodes the JSON string starting at *p (on its opening quote) in place of a new buffer. */
static char *parse_string(const char **p) {
    const char *s = *p + 1;
    char *out = malloc(strlen(s) + 1), *o = out;
    while (*s && *s != '"') {
        if (*s != '\\') {
            *o++ = *s++;
            continue;
        }
        s++;
        switch (*s) {
        case 'n':
            *o++ = '\n';
            break;
        case 't':
            *o++ = '\t';
            break;
        case 'r':
            *o++ = '\r';
            break;
        case 'b':
            *o++ = '\b';
            break;
        case 'f':
            *o++ = '\f';
            break;
        case 'u': {
            uint32_t cp = (uint32_t)strtoul((char[]){s[1], s[2], s[3], s[4], 0}, NULL, 16);
            s += 4;
            if (cp >= 0xd800 && cp < 0xdc00 && s[1] == '\\' && s[2] == 'u') {
                uint32_t lo = (uint32_t)strtoul((char[]){s[3], s[4], s[5], s[6], 0}, NULL, 16);
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                s += 6;
            }
            put_utf8(&o, cp);
            break;
        }
        default:
            *o++ = *s;
            break; /* \" \\ \/ */
        }
        s++;
    }
    *o = '\0';
    *p = *s ? s + 1 : s;
    return out;
}

static int parse_record(const char *line, record *r) {
    r->n = 0;
    const char *p = skip_ws(line);
    if (*p++ != '{') return -1;
    for (;;) {
        p = skip_ws(p);
        if (*p == '}') return 0;
        if (*p != '"' || r->n == MAX_FIELDS) return -1;
        field *f = &r->f[r->n++];
        f->key = parse_string(&p);
        p = skip_ws(p);
        if (*p++ != ':') return -1;
        p = skip_ws(p);
        f->str = NULL;
        if (*p == '"') {
            f->str = parse_string(&p);
        } else {
            char *end;
            f->num = strtod(p, &end);
            if (end == p) return -1;
            p = end;
        }
        p = skip_ws(p);
        if (*p == ',') p++;
    }
}

static void free_record(record *r) {
    for (int i = 0; i < r->n; i++) {
        free(r->f[i].key);
        free(r->f[i].str);
    }
    r->n = 0;
}

static const field *find(const record *r, const char *key) {
    for (int i = 0; i < r->n; i++)
        if (strcmp(r->f[i].key, key) == 0) return &r->f[i];
    return NULL;
}

static const char *get_str(const record *r, const char *key) {
    const field *f = find(r, key);
    return f && f->str ? f->str : NULL;
}

static double get_num(const record *r, const char *key) {
    const field *f = find(r, key);
    return f && !f->str ? f->num : NAN;
}

/* ---- agreement counters: one CHECK per metric, the first few differences printed ---- */

typedef struct {
    const char *name;
    int compared, differ, exact;
    double worst;
} tally;

static void tally_close(tally *t, int pair, double got, double want, double tol) {
    double err = fabs(got - want);
    t->compared++;
    t->exact += got == want;
    if (err > t->worst || isnan(err)) t->worst = err;
    if (!(err <= tol)) {
        if (t->differ < 3)
            fprintf(stderr, "  %s pair %d: %.17g, reference %.17g\n", t->name, pair, got, want);
        t->differ++;
    }
}

static void tally_text(tally *t, int pair, const char *got, const char *want) {
    t->compared++;
    if (got && want && strcmp(got, want) == 0) {
        t->exact++;
        return;
    }
    if (t->differ < 3)
        fprintf(stderr, "  %s pair %d: [%s], reference [%s]\n", t->name, pair, got ? got : "(null)", want);
    t->differ++;
}

static void tally_report(const tally *t) {
    fprintf(stderr, "%-14s %4d compared, %4d bit-exact, worst difference %.3g\n", t->name, t->compared,
            t->exact, t->worst);
    CHECKF(t->compared > 0 && t->differ == 0, "%s: %d of %d differ from the reference", t->name, t->differ,
           t->compared);
}

enum { N_PAIRS = 500 };

typedef struct {
    char *kind, *hyp, *ref;
} pair;

static FILE *open_fixture(const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/fixtures/%s", GKD_SOURCE_DIR, name);
    FILE *f = fopen(path, "r");
    if (!f) fprintf(stderr, "cannot open %s\n", path);
    return f;
}

/* Per-pair ROUGE and sentence BLEU, then corpus BLEU and mean ROUGE per pair kind. */
static void test_against_packages(void) {
    FILE *f = open_fixture("metrics-pairs.jsonl");
    CHECK(f != NULL);
    if (!f) return;
    static const char *const rouge_keys[2][9] = {
        {"r1_p", "r1_r", "r1_f", "r2_p", "r2_r", "r2_f", "rl_p", "rl_r", "rl_f"},
        {"r1s_p", "r1s_r", "r1s_f", "r2s_p", "r2s_r", "r2s_f", "rls_p", "rls_r", "rls_f"},
    };
    tally rouge[2] = {{.name = "rouge"}, {.name = "rouge stemmed"}};
    tally rouge_single = {.name = "rouge n/l"}, tok_rouge = {.name = "rouge tokens"},
          tok_13a = {.name = "13a tokens"};
    tally bleu = {.name = "bleu sentence"}, bleu_bp = {.name = "bleu bp"},
          bleu_len = {.name = "bleu lengths"};
    tally bleu_smooth = {.name = "bleu smoothing"}, corpus = {.name = "bleu corpus"},
          means = {.name = "rouge means"};
    pair pairs[N_PAIRS];
    int n = 0, corpora = 0;
    char *line = NULL;
    size_t cap = 0;
    record r = {0};
    while (getline(&line, &cap, f) > 0) {
        CHECK(parse_record(line, &r) == 0);
        const char *kind = get_str(&r, "kind"), *corpus_name = get_str(&r, "corpus");
        if (kind && n < N_PAIRS) {
            const char *hyp = get_str(&r, "hyp"), *ref = get_str(&r, "ref");
            pairs[n] = (pair){strdup(kind), strdup(hyp), strdup(ref)};
            for (int stem = 0; stem < 2; stem++) {
                gkd_rouge_scores s;
                CHECK(gkd_rouge_all(hyp, ref, stem, &s) == GKD_OK);
                const gkd_prf *prf[3] = {&s.rouge1, &s.rouge2, &s.rougeL};
                for (int k = 0; k < 9; k++) {
                    const gkd_prf *x = prf[k / 3];
                    double got = k % 3 == 0 ? x->precision : k % 3 == 1 ? x->recall : x->f;
                    tally_close(&rouge[stem], n, got, get_num(&r, rouge_keys[stem][k]), 1e-12);
                }
            }
            gkd_prf p1, p2, pl;
            CHECK(gkd_rouge_n(hyp, ref, 1, 0, &p1) == GKD_OK);
            CHECK(gkd_rouge_n(hyp, ref, 2, 0, &p2) == GKD_OK);
            CHECK(gkd_rouge_l(hyp, ref, 0, &pl) == GKD_OK);
            tally_close(&rouge_single, n, p1.f, get_num(&r, "r1_f"), 1e-12);
            tally_close(&rouge_single, n, p2.f, get_num(&r, "r2_f"), 1e-12);
            tally_close(&rouge_single, n, pl.f, get_num(&r, "rl_f"), 1e-12);
            char *toks = NULL;
            CHECK(gkd_rouge_tokenize(hyp, 0, &toks) == GKD_OK);
            tally_text(&tok_rouge, n, toks, get_str(&r, "hyp_rouge"));
            free(toks);
            CHECK(gkd_bleu_tokenize_13a(hyp, &toks) == GKD_OK);
            tally_text(&tok_13a, n, toks, get_str(&r, "hyp_13a"));
            free(toks);

            gkd_bleu_result b;
            CHECK(gkd_bleu_sentence(hyp, ref, NULL, &b) == GKD_OK);
            double want = get_num(&r, "bleu");
            tally_close(&bleu, n, b.score, want, 1e-9 * fmax(1.0, want));
            tally_close(&bleu_bp, n, b.bp, get_num(&r, "bleu_bp"), 1e-12);
            tally_close(&bleu_len, n, (double)b.sys_len, get_num(&r, "bleu_sys_len"), 0);
            tally_close(&bleu_len, n, (double)b.ref_len, get_num(&r, "bleu_ref_len"), 0);
            static const struct {
                gkd_bleu_smooth method;
                const char *key;
            } smooth[] = {{GKD_BLEU_SMOOTH_NONE, "bleu_none"},
                          {GKD_BLEU_SMOOTH_FLOOR, "bleu_floor"},
                          {GKD_BLEU_SMOOTH_ADD_K, "bleu_addk"}};
            for (int k = 0; k < 3; k++) {
                gkd_bleu_options o = gkd_bleu_sentence_defaults();
                o.smooth = smooth[k].method;
                CHECK(gkd_bleu_sentence(hyp, ref, &o, &b) == GKD_OK);
                want = get_num(&r, smooth[k].key);
                tally_close(&bleu_smooth, n, b.score, want, 1e-9 * fmax(1.0, want));
            }
            n++;
        } else if (corpus_name) {
            /* The fixture lists "all" and then each kind in the order the pairs appear. */
            const char *hyps[N_PAIRS], *refs[N_PAIRS];
            int m = 0;
            for (int i = 0; i < n; i++) {
                if (strcmp(corpus_name, "all") == 0 || strcmp(corpus_name, pairs[i].kind) == 0) {
                    hyps[m] = pairs[i].hyp;
                    refs[m] = pairs[i].ref;
                    m++;
                }
            }
            CHECKF(m == (int)get_num(&r, "n"), "corpus %s: %d pairs, fixture says %g", corpus_name, m,
                   get_num(&r, "n"));
            gkd_bleu_result b;
            CHECK(gkd_bleu_corpus(hyps, refs, m, NULL, &b) == GKD_OK);
            double want = get_num(&r, "bleu");
            tally_close(&corpus, corpora, b.score, want, 1e-9 * fmax(1.0, want));
            tally_close(&corpus, corpora, b.bp, get_num(&r, "bleu_bp"), 1e-12);
            tally_close(&corpus, corpora, (double)b.sys_len, get_num(&r, "bleu_sys_len"), 0);
            tally_close(&corpus, corpora, (double)b.ref_len, get_num(&r, "bleu_ref_len"), 0);
            gkd_bleu_options o = gkd_bleu_corpus_defaults();
            o.smooth = GKD_BLEU_SMOOTH_NONE;
            CHECK(gkd_bleu_corpus(hyps, refs, m, &o, &b) == GKD_OK);
            want = get_num(&r, "bleu_none");
            tally_close(&corpus, corpora, b.score, want, 1e-9 * fmax(1.0, want));
            o = gkd_bleu_corpus_defaults();
            o.effective_order = 1;
            CHECK(gkd_bleu_corpus(hyps, refs, m, &o, &b) == GKD_OK);
            want = get_num(&r, "bleu_eff");
            tally_close(&corpus, corpora, b.score, want, 1e-9 * fmax(1.0, want));
            gkd_rouge_scores mean;
            CHECK(gkd_rouge_corpus_mean(hyps, refs, m, 0, &mean) == GKD_OK);
            tally_close(&means, corpora, mean.rouge1.f, get_num(&r, "r1_f_mean"), 1e-12);
            tally_close(&means, corpora, mean.rouge2.f, get_num(&r, "r2_f_mean"), 1e-12);
            tally_close(&means, corpora, mean.rougeL.f, get_num(&r, "rl_f_mean"), 1e-12);
            corpora++;
        }
        free_record(&r);
    }
    free(line);
    fclose(f);
    CHECKF(n == N_PAIRS, "read %d pairs, expected %d", n, N_PAIRS);
    CHECKF(corpora == 7, "read %d corpus lines, expected 7", corpora);
    tally *all[] = {&rouge[0], &rouge[1], &rouge_single, &tok_rouge, &tok_13a, &bleu,
                    &bleu_bp,  &bleu_len, &bleu_smooth,  &corpus,    &means};
    for (size_t k = 0; k < sizeof all / sizeof all[0]; k++) tally_report(all[k]);
    for (int i = 0; i < n; i++) {
        free(pairs[i].kind);
        free(pairs[i].hyp);
        free(pairs[i].ref);
    }
}

static void test_porter_stems(void) {
    FILE *f = open_fixture("porter-stems.tsv");
    CHECK(f != NULL);
    if (!f) return;
    tally t = {.name = "porter stems"};
    char *line = NULL, stem[256];
    size_t cap = 0;
    int i = 0;
    while (getline(&line, &cap, f) > 0) {
        char *tab = strchr(line, '\t'), *nl = strchr(line, '\n');
        if (!tab) continue;
        *tab = '\0';
        if (nl) *nl = '\0';
        size_t len = 0;
        CHECK(gkd_porter_stem(line, strlen(line), stem, sizeof stem, &len) == GKD_OK);
        CHECK(len == strlen(stem));
        tally_text(&t, i++, stem, tab + 1);
    }
    free(line);
    fclose(f);
    tally_report(&t);
    CHECK(t.compared > 4000);
    size_t len = 0;
    CHECK(gkd_porter_stem("running", 7, stem, 7, &len) == GKD_ERR_ARG); /* no room for the NUL */
}

static void check_near(double got, double want, const char *what) {
    CHECKF(fabs(got - want) < 1e-12, "%s: %.17g, expected %.17g", what, got, want);
}

static void test_rouge_bleu_by_hand(void) {
    gkd_prf p;
    /* "the cat sat" vs "the cat sat down": unigrams 3/3 and 3/4, bigrams 2/2 and 2/3. */
    CHECK(gkd_rouge_n("The cat, sat!", "the cat sat down", 1, 0, &p) == GKD_OK);
    check_near(p.precision, 1.0, "rouge1 P");
    check_near(p.recall, 0.75, "rouge1 R");
    check_near(p.f, 2 * 0.75 / 1.75, "rouge1 F");
    CHECK(gkd_rouge_n("the cat sat", "the cat sat down", 2, 0, &p) == GKD_OK);
    check_near(p.recall, 2.0 / 3.0, "rouge2 R");
    /* Clipping: "the the the" against one "the" matches once. */
    CHECK(gkd_rouge_n("the the the", "the cat", 1, 0, &p) == GKD_OK);
    check_near(p.precision, 1.0 / 3.0, "rouge1 clipped P");
    /* LCS of "a b c d" and "a c b d" is 3. */
    CHECK(gkd_rouge_l("a b c d", "a c b d", 0, &p) == GKD_OK);
    check_near(p.f, 0.75, "rougeL F");
    CHECK(gkd_rouge_n("running fast", "runs fast", 1, 1, &p) == GKD_OK);
    check_near(p.f, 1.0, "stemmed rouge1");
    CHECK(gkd_rouge_n("", "", 3, 0, &p) == GKD_OK && p.f == 0);
    CHECK(gkd_rouge_n("a", "a", 0, 0, &p) == GKD_ERR_ARG);
    CHECK(strlen(gkd_error_message()) > 0);
    CHECK(gkd_rouge_l(NULL, "a", 0, &p) == GKD_ERR_ARG);

    gkd_bleu_result b;
    CHECK(gkd_bleu_sentence("the cat sat on the mat", "the cat sat on the mat", NULL, &b) == GKD_OK);
    check_near(b.score, 100.0, "identical sentence bleu");
    CHECK(gkd_bleu_sentence("", "the cat", NULL, &b) == GKD_OK && b.score == 0 && b.bp == 0);
    gkd_bleu_options bad = gkd_bleu_sentence_defaults();
    bad.smooth = (gkd_bleu_smooth)42;
    CHECK(gkd_bleu_sentence("a", "a", &bad, &b) == GKD_ERR_ARG);
    const char *hyps[] = {"a b", NULL};
    CHECK(gkd_bleu_corpus(hyps, hyps, 2, NULL, &b) == GKD_ERR_ARG);
    CHECK(gkd_bleu_corpus(NULL, NULL, 0, NULL, &b) == GKD_OK && b.score == 0);
    char *toks = NULL;
    CHECK(gkd_bleu_tokenize_13a("Hello, world (3.5-4)!", &toks) == GKD_OK);
    CHECK(toks && strcmp(toks, "Hello , world ( 3.5 - 4 ) !") == 0);
    free(toks);
}

static void test_factual(void) {
    const char *doc = "Amazon SES support for mime-mail messages. This package provides a library for the "
                      "Haskell programming language, compiled for profiling. See http://www.haskell.org/ for "
                      "more information on Haskell.";
    const char *pkg = "libghc-mime-mail-ses-prof";
    gkd_factual_parts p;

    CHECK(gkd_factual_score(doc, doc, pkg, &p) == GKD_OK);
    check_near(p.score, 1.0, "copying the source");
    CHECK(p.n_entities > 0 && p.entity_precision == 1.0 && p.content_precision == 1.0);

    /* The real summary: all supported except "send"; entities mime-mail, Amazon, SES. */
    CHECK(gkd_factual_score("send mime-mail messages via Amazon SES; profiling libraries", doc, pkg, &p) ==
          GKD_OK);
    CHECK(p.n_content == 7 && p.n_content_supported == 6);
    CHECK(p.n_entities == 3 && p.n_entities_supported == 3);
    check_near(p.score, 0.5 * 6.0 / 7.0 + 0.5, "real summary");
    double honest = p.score;

    /* An invented product and version lower the entity precision and the score. */
    CHECK(gkd_factual_score("send mime-mail messages via Amazon SES using PostgreSQL 9.6", doc, pkg, &p) ==
          GKD_OK);
    CHECK(p.n_entities == 5 && p.n_entities_supported == 3);
    check_near(p.entity_precision, 0.6, "foreign entity precision");
    CHECK(p.score < honest);

    /* Nothing checkable scores 0. */
    CHECK(gkd_factual_score("", doc, pkg, &p) == GKD_OK && p.score == 0);
    CHECK(gkd_factual_score("the of and", doc, pkg, &p) == GKD_OK && p.score == 0 && p.n_content == 0);
    CHECK(gkd_factual_score("... !!", doc, pkg, &p) == GKD_OK && p.score == 0);

    /* The package name is part of the source only when given. */
    CHECK(gkd_factual_score("ses prof", doc, pkg, &p) == GKD_OK && p.score == 1.0);
    CHECK(gkd_factual_score("ses prof", doc, NULL, &p) == GKD_OK);
    check_near(p.content_precision, 0.5, "without the package name");

    /* A capital at a sentence start is not an entity; elsewhere it is; acronyms always are. */
    CHECK(gkd_factual_score("Haskell library", doc, NULL, &p) == GKD_OK && p.n_entities == 0);
    CHECK(gkd_factual_score("library for Haskell. Profiling support", doc, NULL, &p) == GKD_OK &&
          p.n_entities == 1);
    CHECK(gkd_factual_score("HASKELL library", doc, NULL, &p) == GKD_OK && p.n_entities == 1 &&
          p.score == 1.0);

    /* Numbers must occur in the source. */
    CHECK(gkd_factual_score("library with 3 profiles", doc, NULL, &p) == GKD_OK);
    CHECK(p.n_entities == 1 && p.n_entities_supported == 0);

    /* Compounds: the whole, or all its parts; joined source words lend their parts. */
    CHECK(gkd_factual_score("mime mail library", doc, NULL, &p) == GKD_OK && p.score == 1.0);
    CHECK(gkd_factual_score("haskell-library", doc, NULL, &p) == GKD_OK && p.score == 1.0);
    CHECK(gkd_factual_score("haskell-rust library", doc, NULL, &p) == GKD_OK && p.n_content_supported == 1);

    /* Plurals fold, "class" does not lose its s; "C" is not supported by "C++". */
    CHECK(gkd_factual_score("libraries", "a library", NULL, &p) == GKD_OK && p.score == 1.0);
    CHECK(gkd_factual_score("class", "a clas", NULL, &p) == GKD_OK && p.score == 0.0);
    CHECK(gkd_factual_score("C++ library", "A C++ library.", NULL, &p) == GKD_OK && p.score == 1.0);
    CHECK(p.n_entities == 1);
    CHECK(gkd_factual_score("C library", "A C++ library.", NULL, &p) == GKD_OK && p.n_content_supported == 1);
    CHECK(gkd_factual_score("café library", "Le café library", NULL, &p) == GKD_OK && p.score == 1.0);
    CHECK(gkd_factual_score("v1.2 of libfoo2", "libfoo2 version v1.2", NULL, &p) == GKD_OK);
    CHECK(p.n_entities == 2 && p.score == 1.0);

    CHECK(gkd_factual_score("x", NULL, NULL, &p) == GKD_ERR_ARG);
}

static void test_answers_length_diversity(void) {
    double v;
    CHECK(gkd_number_last("The answer is 1,000.", &v) == 1 && v == 1000);
    CHECK(gkd_number_last("v1.2.3", &v) == 1 && v == 3);
    CHECK(gkd_number_last("1,2,3", &v) == 1 && v == 3);
    CHECK(gkd_number_last("1,0000", &v) == 1 && v == 0);
    CHECK(gkd_number_last("costs $3.50.", &v) == 1 && v == 3.5);
    CHECK(gkd_number_last("it fell to -5", &v) == 1 && v == -5);
    CHECK(gkd_number_last("from 3-4", &v) == 1 && v == 4);
    CHECK(gkd_number_last("1,234,567.25 total", &v) == 1 && v == 1234567.25);
    CHECK(gkd_number_last("0.333333333333333333333333333333333333", &v) == 1 && fabs(v - 1.0 / 3) < 1e-15);
    CHECK(gkd_number_last("no digits", &v) == 0);
    CHECK(gkd_number_last(NULL, &v) == 0);

    CHECK(gkd_exact_match_number("The answer is 1,000.", "Step 1 ... #### 1000") == 1.0);
    CHECK(gkd_exact_match_number("so 1000.0", "1000") == 1.0);
    CHECK(gkd_exact_match_number("answer: 72", "#### 73") == 0.0);
    CHECK(gkd_exact_match_number("no number", "5") == 0.0);
    CHECK(gkd_exact_match_number("5", "no number") == 0.0);
    CHECK(gkd_exact_match_number("-5 degrees", "-5") == 1.0);
    CHECK(gkd_exact_match_number("x-5", "-5") == 0.0);
    CHECK(gkd_exact_match_number("0.1 + 0.2 = 0.3", "0.3") == 1.0);

    CHECK(gkd_word_count("  hello   world\xc2\xa0x\t") == 3);
    CHECK(gkd_word_count("") == 0 && gkd_word_count(NULL) == 0);

    double pen;
    CHECK(gkd_length_penalty(10, 5, 15, 10, &pen) == GKD_OK && pen == 0);
    CHECK(gkd_length_penalty(3, 5, 15, 4, &pen) == GKD_OK && pen == 0.5);
    CHECK(gkd_length_penalty(20, 5, 15, 10, &pen) == GKD_OK && pen == 0.5);
    CHECK(gkd_length_penalty(40, 5, 15, 10, &pen) == GKD_OK && pen == 1.0);
    CHECK(gkd_length_penalty(10, 15, 5, 10, &pen) == GKD_ERR_ARG);
    CHECK(gkd_length_penalty(10, 5, 15, 0, &pen) == GKD_ERR_ARG);

    double d;
    const char *outs[] = {"a b c", "a b d"};
    CHECK(gkd_distinct_n(outs, 2, 1, &d) == GKD_OK);
    check_near(d, 4.0 / 6.0, "distinct-1");
    CHECK(gkd_distinct_n(outs, 2, 2, &d) == GKD_OK);
    check_near(d, 3.0 / 4.0, "distinct-2");
    CHECK(gkd_distinct_n(outs, 2, 3, &d) == GKD_OK && d == 1.0);
    const char *split[] = {"a", "b"};
    CHECK(gkd_distinct_n(split, 2, 2, &d) == GKD_OK && d == 0.0); /* no n-gram spans two outputs */
    const char *same[] = {"x x x x"};
    CHECK(gkd_distinct_n(same, 1, 1, &d) == GKD_OK && d == 0.25);
    CHECK(gkd_distinct_n(same, 1, 0, &d) == GKD_ERR_ARG);
    CHECK(gkd_distinct_n(NULL, 0, 2, &d) == GKD_OK && d == 0.0);
    const char *with_null[] = {"a", NULL};
    CHECK(gkd_distinct_n(with_null, 2, 1, &d) == GKD_ERR_ARG);
}

/* The word splitter decodes with core/base/utf8.h's strict decoder: a valid non-ASCII letter joins its
 * word, while malformed UTF-8 (here a UTF-16 surrogate, which the splitter's old lenient decoder took for
 * a letter) separates words like punctuation. */
static void test_words_utf8(void) {
    gkd_word_list w = {0};
    const char valid[] = "caf\xc3\xa9 ok";
    CHECK(gkd_words_split(valid, sizeof valid - 1, &w) == GKD_OK);
    CHECK(w.n == 2 && w.v[0].len == 5);
    const char surrogate[] = "ab\xed\xa0\x80" "cd";
    CHECK(gkd_words_split(surrogate, sizeof surrogate - 1, &w) == GKD_OK);
    CHECKF(w.n == 2 && w.v[0].len == 2 && w.v[1].start == 5, "%d words", w.n);
    gkd_word_list_free(&w);
}

int main(void) {
    test_words_utf8();
    test_against_packages();
    test_porter_stems();
    test_rouge_bleu_by_hand();
    test_factual();
    test_answers_length_diversity();
    return check_exit();
}
