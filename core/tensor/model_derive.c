/* Students derived from a teacher's layers (model_derive.h). Only the public model API is used: tensors
 * are matched by their Hugging Face names. */
#include "core/tensor/model_derive.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

gkd_status gkd_model_spread_layers(int n_src, int n, int *layers) {
    if (n < 1 || n > n_src)
        return gkd_error_set(GKD_ERR_ARG, "spread layers: %d layers of %d: must be in [1, %d]", n, n_src, n_src);
    for (int i = 0; i < n; i++)
        layers[i] = n == 1 ? n_src - 1 : (int)(((long long)i * (n_src - 1) * 2 + (n - 1)) / (2LL * (n - 1)));
    return GKD_OK;
}

/* The source tensor name for a derived tensor name: "model.layers.<i>.rest" -> "model.layers.<layers[i]>.rest";
 * other names unchanged. */
static void source_name(const char *name, const int *layers, char *out, size_t cap) {
    const char *prefix = "model.layers.";
    size_t plen = strlen(prefix);
    if (strncmp(name, prefix, plen) != 0) {
        snprintf(out, cap, "%s", name);
        return;
    }
    char *end = NULL;
    long i = strtol(name + plen, &end, 10);
    snprintf(out, cap, "%s%d%s", prefix, layers[i], end);
}

gkd_status gkd_model_from_layers(gkd_model *src, const int *layers, int n, const gkd_backend *be, unsigned flags,
                                 gkd_model **out) {
    *out = NULL;
    if (!src || !layers || !be) return gkd_error_set(GKD_ERR_ARG, "model from layers: NULL argument");
    if (!gkd_model_params(src))
        return gkd_error_set(GKD_ERR_ARG, "model from layers: the source's weights are packed (%s): derive from a model "
                             "with fp32 weights",
                             gkd_weight_format_name(gkd_model_weight_format(src)));
    gkd_model_config cfg = *gkd_model_get_config(src);
    if (n < 1) return gkd_error_set(GKD_ERR_ARG, "model from layers: no layers chosen");
    for (int i = 0; i < n; i++)
        if (layers[i] < 0 || layers[i] >= cfg.n_layers)
            return gkd_error_set(GKD_ERR_ARG, "model from layers: layers[%d] = %d is not a layer of the source (0..%d)",
                                 i, layers[i], cfg.n_layers - 1);
    cfg.n_layers = n;
    gkd_model *m = NULL;
    gkd_status st = gkd_model_create_ex(&cfg, be, flags, &m);
    if (st != GKD_OK) return st;
    const gkd_backend *src_be = gkd_model_backend(src);
    float *dst_params = gkd_model_params(m);
    const float *src_params = gkd_model_params(src);
    float *staging = NULL; /* host copy of one tensor when the backends differ */
    for (int t = 0; t < gkd_model_num_tensors(m) && st == GKD_OK; t++) {
        const gkd_tensor_info *d = gkd_model_tensor(m, t);
        char name[128];
        source_name(d->name, layers, name, sizeof name);
        int si = gkd_model_tensor_find(src, name);
        const gkd_tensor_info *s = si >= 0 ? gkd_model_tensor(src, si) : NULL;
        if (!s || s->numel != d->numel) {
            st = gkd_error_set(GKD_ERR_SHAPE, "model from layers: tensor %s has no counterpart %s in the source", d->name,
                               name);
            break;
        }
        size_t bytes = d->numel * sizeof(float);
        if (src_be == be) {
            be->copy(dst_params + d->offset, src_params + s->offset, bytes);
            continue;
        }
        float *grown = realloc(staging, bytes);
        if (!grown) {
            st = gkd_error_set(GKD_ERR_NOMEM, "model from layers: out of memory staging %s", d->name);
            break;
        }
        staging = grown;
        src_be->copy_out(staging, src_params + s->offset, bytes);
        be->copy_in(dst_params + d->offset, staging, bytes);
    }
    free(staging);
    if (st != GKD_OK) {
        gkd_model_free(m);
        return st;
    }
    *out = m;
    return GKD_OK;
}
