/* Students derived from a teacher: a model with a subset of the teacher's layers, every weight copied
 * (the layer-dropping initialisation of DistilBERT-style students, which starts a student close to its
 * teacher instead of from random weights).
 * Rules: the derived model has the teacher's configuration except n_layers; layer i of the new model is
 * layer layers[i] of the teacher (0-based; any order, repeats allowed); the embeddings, the final norm and
 * the output projection are copied whole. Weights are copied bit for bit, across backends if need be. */
#ifndef GKD_MODEL_DERIVE_H
#define GKD_MODEL_DERIVE_H

#include "core/tensor/model.h"

/* A new model on backend `be` (flags as gkd_model_create_ex) with layers[0..n) of `src`. GKD_ERR_ARG
 * naming the entry for n < 1 or a layer outside [0, src's n_layers). The caller owns *out. */
gkd_status gkd_model_from_layers(gkd_model *src, const int *layers, int n, const gkd_backend *be,
                                 unsigned flags, gkd_model **out);

/* n layer indices spread evenly over [0, n_src), first and last included (n = 1: the last layer alone):
 * round(i (n_src - 1) / (n - 1)). GKD_ERR_ARG unless 1 <= n <= n_src. */
gkd_status gkd_model_spread_layers(int n_src, int n, int *layers);

#endif
