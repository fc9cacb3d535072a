/* Preference pairs for the reward model (reward_model.h): the Bradley-Terry pair loss and the JSONL
 * reader of (prompt, chosen, rejected) pairs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/json.h"
#include "reward/reward_model.h"

/* log(1 + exp(x)) without overflow, and sigmoid. */
static double softplus(double x) {
    return (x > 0 ? x : 0) + log1p(exp(-fabs(x)));
}

static double sigmoid(double x) {
    return x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x));
}

double gkd_reward_model_bt_loss(double d, double margin, int tie, double *grad) {
    if (tie) {
        /* -(log sigmoid(d) + log sigmoid(-d)) / 2 = (softplus(-d) + softplus(d)) / 2 */
        if (grad) *grad = sigmoid(d) - 0.5;
        return 0.5 * (softplus(-d) + softplus(d));
    }
    if (grad) *grad = sigmoid(d - margin) - 1.0;
    return softplus(-(d - margin));
}

static char *dup_string(const gkd_json *v) {
    char *s = malloc(v->len + 1);
    if (s) memcpy(s, v->string, v->len + 1);
    return s;
}

/* Appends the chosen and rejected items of one parsed line to out (capacity checked by the caller). */
static gkd_status add_pair(const gkd_json *j, const char *path, int line, gkd_reward_model_pairs *out) {
    static const char *const keys[3] = {"prompt", "chosen", "rejected"};
    const gkd_json *v[3];
    for (int k = 0; k < 3; k++) {
        v[k] = gkd_json_get(j, keys[k]);
        if (!v[k] || v[k]->type != GKD_JSON_STRING || strlen(v[k]->string) != v[k]->len)
            return gkd_error_set(GKD_ERR_FORMAT, "%s:%d: \"%s\" is missing or not a string", path, line,
                                 keys[k]);
    }
    const gkd_json *m = gkd_json_get(j, "margin"), *t = gkd_json_get(j, "tie");
    if (m && (m->type != GKD_JSON_NUMBER || !isfinite(m->number)))
        return gkd_error_set(GKD_ERR_FORMAT, "%s:%d: \"margin\" is not a finite number", path, line);
    if (t && t->type != GKD_JSON_BOOL)
        return gkd_error_set(GKD_ERR_FORMAT, "%s:%d: \"tie\" is not true or false", path, line);
    int pair = out->n / 2;
    for (int r = 0; r < 2; r++) {
        gkd_reward_model_pair *p = &out->items[out->n];
        *p = (gkd_reward_model_pair){
            .label = r == 0, .example = pair, .margin = m ? m->number : 0.0, .tie = t && t->boolean};
        p->source = dup_string(v[0]);
        p->summary = dup_string(v[1 + r]);
        out->n++;
        if (!p->source || !p->summary)
            return gkd_error_set(GKD_ERR_NOMEM, "%s:%d: out of memory", path, line);
    }
    return GKD_OK;
}

gkd_status gkd_reward_model_read_preferences(const char *path, gkd_reward_model_pairs *out) {
    *out = (gkd_reward_model_pairs){0};
    FILE *f = fopen(path, "rb");
    if (!f) return gkd_error_set(GKD_ERR_IO, "cannot open %s", path);
    char *buf = NULL;
    size_t cap = 0;
    int line = 0, cap_items = 0;
    gkd_status st = GKD_OK;
    ssize_t len;
    while (st == GKD_OK && (len = getline(&buf, &cap, f)) >= 0) {
        line++;
        while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' ')) len--;
        if (len == 0) continue;
        if (out->n + 2 > cap_items) {
            int nc = cap_items ? 2 * cap_items : 64;
            gkd_reward_model_pair *items = realloc(out->items, (size_t)nc * sizeof *items);
            if (!items) {
                st = gkd_error_set(GKD_ERR_NOMEM, "%s:%d: out of memory", path, line);
                break;
            }
            out->items = items;
            cap_items = nc;
        }
        char where[512];
        snprintf(where, sizeof where, "%s:%d", path, line);
        gkd_json *j = NULL;
        st = gkd_json_parse(buf, (size_t)len, where, &j);
        if (st == GKD_OK && j->type != GKD_JSON_OBJECT)
            st = gkd_error_set(GKD_ERR_FORMAT, "%s: not a JSON object", where);
        if (st == GKD_OK) st = add_pair(j, path, line, out);
        gkd_json_free(j);
    }
    free(buf);
    fclose(f);
    if (st == GKD_OK && out->n == 0) st = gkd_error_set(GKD_ERR_FORMAT, "%s: no preference pairs", path);
    if (st != GKD_OK) gkd_reward_model_pairs_free(out);
    return st;
}
