// ctest-labels: cpu
/* The chunked cross-entropy's traffic with the host and its chunk size (core/tensor/model_forward.c), seen
 * through a counting copy of the CPU backend's table:
 * - a call moves the targets and weights in one copy_in each and the losses back in one copy_out, however
 *   many chunks it makes (on a GPU each copy waits for the work queued before it: one per chunk left the
 *   H200 idle between chunks, issue 3's shape, 2026-12-04);
 * - the default chunk follows the backend's loss_chunk_bytes (0: about 8 MB of logits), and
 *   gkd_model_set_loss_chunk overrides it;
 * - the loss is the same bits whatever the chunk size (the per-row losses are summed in row order either
 *   way), and dhidden the same values (its products' blocking depends on the rows per product). */
#include "core/tensor/backend_select.h"
#include "core/tensor/model.h"
#include "tests/check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static gkd_backend counted;
static const gkd_backend *cpu;
static int n_in, n_out, n_ce;

static void count_in(void *dst, const void *src, size_t bytes) {
    n_in++;
    cpu->copy_in(dst, src, bytes);
}
static void count_out(void *dst, const void *src, size_t bytes) {
    n_out++;
    cpu->copy_out(dst, src, bytes);
}
static void count_ce(float *loss, float *lse, const float *logits, const int *targets, const float *weights,
                     int N, int V) {
    n_ce++;
    cpu->crossentropy_forward(loss, lse, logits, targets, weights, N, V);
}

enum { B = 3, T = 20, V = 97, C = 32 };

/* One ce_loss call with `chunk` rows per chunk (0: the default); counts, loss and dhidden out. */
static void run(gkd_model *m, const float *hidden, const int *targets, const float *mask, int chunk, int grad,
                float *loss, float *dh) {
    CHECK(gkd_model_set_loss_chunk(m, chunk) == GKD_OK);
    n_in = n_out = n_ce = 0;
    CHECKF(gkd_model_ce_loss(m, hidden, targets, mask, B, T, GKD_NORM_TOKEN, loss, grad ? dh : NULL) ==
               GKD_OK,
           "%s", gkd_error_message());
}

int main(void) {
    cpu = gkd_backend_cpu();
    counted = *cpu;
    counted.copy_in = count_in;
    counted.copy_out = count_out;
    counted.crossentropy_forward = count_ce;
    gkd_model_config c = {.vocab_size = V,
                          .dim = C,
                          .n_layers = 1,
                          .n_heads = 4,
                          .n_kv_heads = 2,
                          .hidden_dim = 48,
                          .max_seq_len = T,
                          .rope_theta = 10000.0f,
                          .norm_eps = 1e-5f};
    gkd_model *m = NULL;
    CHECKF(gkd_model_create(&c, &counted, &m) == GKD_OK, "%s", gkd_error_message());
    gkd_model_init_weights(m, 7);
    int tokens[B * T], targets[B * T];
    float mask[B * T];
    int live = 0;
    for (int i = 0; i < B * T; i++) {
        tokens[i] = (i * 37 + 11) % V;
        targets[i] = (i * 53 + 7) % V;
        mask[i] = (i % T) >= 2 && i % 5 != 1; /* gaps: rows gathered in runs */
        live += mask[i] != 0;
    }
    const float *hidden;
    CHECK(gkd_model_forward(m, tokens, B, T, &hidden) == GKD_OK);
    float *h = malloc(sizeof(float) * B * T * C), *dh_ref = malloc(sizeof(float) * B * T * C),
          *dh = malloc(sizeof(float) * B * T * C);
    memcpy(h, hidden, sizeof(float) * B * T * C); /* the next forward may reuse the buffer */

    float ref = 0, loss = 0;
    run(m, h, targets, mask, 1 << 20, 1, &ref, dh_ref); /* one chunk */
    CHECKF(n_ce == 1, "one chunk: %d cross-entropy calls", n_ce);
    const int one_in = n_in, one_out = n_out;
    CHECKF(one_in <= 2 && one_out <= 1, "one chunk: %d copy_in, %d copy_out", one_in, one_out);
    for (int chunk = 1; chunk <= 7; chunk += 3) {
        for (int grad = 0; grad < 2; grad++) {
            run(m, h, targets, mask, chunk, grad, &loss, dh);
            CHECKF(n_ce == (live + chunk - 1) / chunk, "chunk %d: %d cross-entropy calls for %d rows", chunk,
                   n_ce, live);
            CHECKF(n_in == one_in && n_out == one_out,
                   "chunk %d grad %d: %d copy_in and %d copy_out (one chunk: %d and %d): transfers per chunk",
                   chunk, grad, n_in, n_out, one_in, one_out);
            CHECKF(memcmp(&loss, &ref, sizeof loss) == 0, "chunk %d: loss %.9g, one chunk %.9g", chunk, loss,
                   ref);
            if (grad) { /* the products' blocking depends on the rows per product: same values, not same bits
                         */
                double worst = 0, scale = 0;
                for (int i = 0; i < B * T * C; i++) {
                    worst = fmax(worst, fabs((double)dh[i] - dh_ref[i]));
                    scale = fmax(scale, fabs((double)dh_ref[i]));
                }
                CHECKF(scale > 0 && worst <= 1e-5 * scale, "chunk %d: dhidden off by %.3g (largest %.3g)",
                       chunk, worst, scale);
            }
        }
    }

    /* the default chunk: about 8 MB of logits with loss_chunk_bytes 0 (far more rows than here: one
     * chunk), else loss_chunk_bytes / (4 V) rows, at least 32 */
    run(m, h, targets, mask, 0, 0, &loss, dh);
    CHECKF(n_ce == 1, "default chunk, loss_chunk_bytes 0: %d chunks", n_ce);
    gkd_model_free(m);
    counted.loss_chunk_bytes = (size_t)32 * 4 * V; /* 32 rows */
    m = NULL;
    CHECK(gkd_model_create(&c, &counted, &m) == GKD_OK);
    gkd_model_init_weights(m, 7);
    CHECK(gkd_model_forward(m, tokens, B, T, &hidden) == GKD_OK);
    run(m, h, targets, mask, 0, 1, &loss, dh);
    CHECKF(n_ce == (live + 31) / 32, "loss_chunk_bytes of 32 rows: %d chunks for %d rows", n_ce, live);
    CHECKF(memcmp(&loss, &ref, sizeof loss) == 0, "loss %.9g, one chunk %.9g", loss, ref);
    gkd_model_free(m);

    /* a chunk far larger than the call (CUDA's 256 MiB at a small vocabulary) holds scratch for the call's
     * rows only: the H200's model test held 0.5 GB of it for B*T = 64 (2026-12-04) */
    counted.loss_chunk_bytes = (size_t)256 << 20;
    m = NULL;
    CHECK(gkd_model_create(&c, &counted, &m) == GKD_OK);
    gkd_model_init_weights(m, 7);
    CHECK(gkd_model_forward(m, tokens, B, T, &hidden) == GKD_OK);
    gkd_model_memory before, after;
    gkd_model_memory_usage(m, &before);
    run(m, h, targets, mask, 0, 1, &loss, dh);
    gkd_model_memory_usage(m, &after);
    size_t ce_bytes = after.activations - before.activations;
    size_t want =
        ((size_t)2 * B * T * C + (size_t)B * T * V + (size_t)B * T + (size_t)3 * B * T) * sizeof(float);
    CHECKF(ce_bytes <= want, "cross-entropy scratch %zu bytes for %d rows, at most %zu expected", ce_bytes,
           B * T, want);
    CHECKF(n_ce == 1 && memcmp(&loss, &ref, sizeof loss) == 0, "%d chunks, loss %.9g vs %.9g", n_ce, loss,
           ref);
    gkd_model_free(m);
    free(h);
    free(dh);
    free(dh_ref);
    return check_exit();
}
