/* Fuzz harness: the JSON parser and writer (core/base/json.c) and the model configuration read from JSON
 * (gkd_model_config_from_json, core/format/checkpoint.c: gkd's fields and Hugging Face's config.json). The input
 * is parsed; a document that parses is written back compactly, and that text must parse again and write back
 * to the same bytes (the writer's numbers read back as the same doubles, its strings keep embedded NULs). A
 * configuration that reads must write JSON that reads back to the same configuration. */
#include <stdlib.h>
#include <string.h>

#include "core/format/checkpoint.h"
#include "core/base/json.h"
#include "core/tensor/model.h"
#include "tests/fuzz/fuzz.h"

int gkd_fuzz_json(const uint8_t *data, size_t size);

/* Visits every node through the public getters, as readers of config.json do (the parser bounds the
 * depth). */
static void walk(const gkd_json *v) {
    if (v->type == GKD_JSON_OBJECT)
        for (size_t i = 0; i < v->len; i++) {
            if (!gkd_json_get(v, v->keys[i])) abort();
            gkd_json_get_number(v, v->keys[i], 0.0);
            gkd_json_get_string(v, v->keys[i], NULL);
        }
    if (v->type == GKD_JSON_OBJECT || v->type == GKD_JSON_ARRAY)
        for (size_t i = 0; i < v->len; i++) walk(v->items[i]);
}

static void read_config(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    if (!text) abort();
    memcpy(text, data, size);
    text[size] = '\0';
    gkd_model_config cfg, again;
    if (gkd_model_config_from_json(text, "fuzz", &cfg) == GKD_OK) {
        gkd_buf out = {0};
        gkd_model_config_to_json(&cfg, &out);
        if (!out.failed) {
            if (gkd_model_config_from_json(out.data, "fuzz (written back)", &again) != GKD_OK) abort();
            gkd_buf back = {0};
            gkd_model_config_to_json(&again, &back);
            if (!back.failed && (back.len != out.len || memcmp(back.data, out.data, out.len) != 0)) abort();
            gkd_buf_free(&back);
        }
        gkd_buf_free(&out);
    }
    free(text);
}

int gkd_fuzz_json(const uint8_t *data, size_t size) {
    read_config(data, size);
    gkd_json *doc = NULL;
    if (gkd_json_parse((const char *)data, size, "fuzz", &doc) != GKD_OK) return 0;
    walk(doc);
    gkd_buf once = {0}, twice = {0};
    gkd_buf_json_value(&once, doc);
    gkd_json *again = NULL;
    if (!once.failed) {
        if (gkd_json_parse(once.data ? once.data : "", once.len, "fuzz (written back)", &again) != GKD_OK)
            abort();
        gkd_buf_json_value(&twice, again);
        if (!twice.failed && (twice.len != once.len || memcmp(twice.data, once.data, once.len) != 0)) abort();
    }
    gkd_json_free(again);
    gkd_json_free(doc);
    gkd_buf_free(&once);
    gkd_buf_free(&twice);
    return 0;
}

GKD_FUZZ_ENTRY(json)
