/* Data parallelism of the GKD trainer (cfg.dist, rl/dist.h): the batch's loss normaliser and the step's sums
 * over ranks.
 * Rules: a rank's loss is its shard's, normalised by the global batch's counts (rows with outputs, or masked
 * positions), so the sum of the ranks' gradients is the gradient one process gets from the whole batch;
 * every function here that communicates is called by every rank at the same point of the step; with one
 * rank nothing is computed differently (share 1, no sums), so single-process results keep their bits. */
#include "rl/trainer_internal.h"

#include <stdint.h>
#include <stdlib.h>

gkd_status gkd_trainer_check_dist(const gkd_train_config *c) {
    int N = gkd_dist_size(c->dist);
    if (N == 1) return GKD_OK;
    if (c->batch_size % N != 0)
        return gkd_error_set(
            GKD_ERR_ARG,
            "batch (%d) must be a multiple of the number of ranks (%d): each rank trains on batch / "
            "ranks rows of every global batch (docs/data-parallel.md)",
            c->batch_size, N);
    if (c->reward && c->rl_method != GKD_RL_REINFORCE)
        return gkd_error_set(
            GKD_ERR_ARG,
            "method \"%s\" runs in one process for now: its mini-batches and value head are not "
            "sharded over ranks (docs/data-parallel.md); run it without mpirun/srun, or use "
            "\"reinforce\"",
            c->rl_method == GKD_RL_PPO ? "ppo" : "grpo");
    return GKD_OK;
}

gkd_status gkd_trainer_batch_share(gkd_trainer *t, int B, int T, double *share, double *token_share) {
    *share = 1.0;
    if (token_share) *token_share = 1.0;
    if (gkd_dist_size(t->cfg.dist) == 1) return GKD_OK;
    double local[2] = {0, 0}; /* rows with outputs, masked positions */
    for (int b = 0; b < B; b++) {
        double in_row = 0;
        for (int i = 0; i < T; i++) in_row += t->batch.mask[(size_t)b * T + i];
        local[0] += in_row > 0;
        local[1] += in_row;
    }
    double global[2] = {local[0], local[1]};
    gkd_status st = gkd_dist_allreduce_f64(t->cfg.dist, global, 2);
    if (st != GKD_OK) return gkd_error_prefix(st, "data parallel: the batch's token counts");
    int k = t->cfg.norm == GKD_NORM_SEQUENCE ? 0 : 1;
    *share = global[k] > 0 ? local[k] / global[k] : 0.0;
    if (token_share) *token_share = global[1] > 0 ? local[1] / global[1] : 0.0;
    return GKD_OK;
}

gkd_status gkd_trainer_dist_pg_weights(gkd_trainer *t, const gkd_pg_config *pc, int B, int T, double share) {
    const gkd_train_config *c = &t->cfg;
    int K = c->group_size, B_all = c->batch_size;
    if (gkd_dist_size(c->dist) == 1)
        return gkd_pg_weights(&t->baselines, pc, t->rewards, t->row_div, t->batch.mask, B_all / K, K, T,
                              t->advantages, t->returns, t->pg_weight);
    /* Per row: reward, mean divergence, output length; rank r's rows at r * B. */
    double *mine = malloc((size_t)3 * B * sizeof *mine), *all = malloc((size_t)3 * B_all * sizeof *all);
    float *mask = NULL, *weight = NULL;
    gkd_status st = mine && all ? GKD_OK : gkd_error_set(GKD_ERR_NOMEM, "out of memory (policy gradient)");
    for (int b = 0; st == GKD_OK && b < B; b++) {
        int len = 0;
        for (int i = 0; i < T; i++) len += t->batch.mask[(size_t)b * T + i] != 0.0f;
        mine[3 * b] = t->rewards[b], mine[3 * b + 1] = t->row_div[b], mine[3 * b + 2] = len;
    }
    if (st == GKD_OK && (st = gkd_dist_allgather_f64(c->dist, mine, (size_t)3 * B, all)) != GKD_OK)
        st = gkd_error_prefix(st, "data parallel: the batch's rewards");
    /* The batch as rows of its longest output: what gkd_pg_weights reads of a mask is each row's length. */
    int Tm = 1;
    for (int i = 0; st == GKD_OK && i < B_all; i++)
        if ((int)all[3 * i + 2] > Tm) Tm = (int)all[3 * i + 2];
    if (st == GKD_OK) {
        mask = calloc((size_t)B_all * Tm, sizeof *mask);
        weight = malloc((size_t)B_all * Tm * sizeof *weight);
        if (!mask || !weight) st = gkd_error_set(GKD_ERR_NOMEM, "out of memory (policy gradient)");
    }
    if (st == GKD_OK) {
        for (int i = 0; i < B_all; i++) {
            t->rewards[i] = all[3 * i];
            t->row_div[i] = all[3 * i + 1];
            for (int p = 0; p < (int)all[3 * i + 2]; p++) mask[(size_t)i * Tm + p] = 1.0f;
        }
        st = gkd_pg_weights(&t->baselines, pc, t->rewards, t->row_div, mask, B_all / K, K, Tm, t->advantages,
                            t->returns, weight);
    }
    /* A row's weight is the same on each of its output positions (policy_gradient.h). */
    int lo = gkd_dist_rank(c->dist) * B;
    for (int b = 0; st == GKD_OK && b < B; b++)
        for (int i = 0; i < T; i++)
            t->pg_weight[(size_t)b * T + i] = t->batch.mask[(size_t)b * T + i] != 0.0f && share > 0
                                                  ? (float)(weight[(size_t)(lo + b) * Tm] / share)
                                                  : 0.0f;
    free(mine);
    free(all);
    free(mask);
    free(weight);
    return st;
}

void gkd_trainer_scale_distill_stats(gkd_distill_stats *ds, double share) {
    if (share == 1.0) return;
    ds->loss *= share;
    ds->divergence *= share;
    ds->forward_kl *= share;
    ds->reverse_kl *= share;
    ds->jsd_half *= share;
    ds->teacher_entropy *= share;
    ds->student_entropy *= share;
}

gkd_status gkd_trainer_dist_reduce(gkd_trainer *t, gkd_step_stats *stats, long *tokens, int *out_total) {
    gkd_dist *d = t->cfg.dist;
    if (gkd_dist_size(d) == 1) return GKD_OK;
    /* One message for the logged sums; the times stay this rank's (rank 0 logs its own). The reward, return
     * and advantage spread are means over the whole batch already (gkd_trainer_dist_pg_weights). */
    double sums[] = {stats->loss,
                     stats->div.forward_kl,
                     stats->div.reverse_kl,
                     stats->div.jsd_half,
                     stats->div.teacher_entropy,
                     stats->div.student_entropy,
                     stats->div.divergence,
                     stats->div.positions,
                     (double)*tokens,
                     *out_total,
                     stats->kl_reference};
    gkd_status st = gkd_dist_allreduce_f64(d, sums, sizeof sums / sizeof *sums);
    if (st != GKD_OK) return gkd_error_prefix(st, "data parallel: the step's sums");
    stats->loss = sums[0];
    stats->div.forward_kl = sums[1];
    stats->div.reverse_kl = sums[2];
    stats->div.jsd_half = sums[3];
    stats->div.teacher_entropy = sums[4];
    stats->div.student_entropy = sums[5];
    stats->div.divergence = sums[6];
    stats->div.positions = (int)sums[7];
    *tokens = (long)sums[8];
    *out_total = (int)sums[9];
    stats->kl_reference = sums[10];
    st = gkd_dist_allreduce_f32(d, t->be, gkd_model_grads(t->student), gkd_model_num_params(t->student));
    return st == GKD_OK ? GKD_OK : gkd_error_prefix(st, "data parallel: the gradient all-reduce");
}

gkd_status gkd_trainer_dist_check_weights(gkd_trainer *t) {
    gkd_dist *d = t->cfg.dist;
    if (gkd_dist_size(d) == 1) return GKD_OK;
    size_t n = gkd_model_num_params(t->student);
    float *host = malloc(n * sizeof *host);
    if (!host) return gkd_error_set(GKD_ERR_NOMEM, "out of memory (checking the ranks' weights)");
    t->be->copy_out(host, gkd_model_params(t->student), n * sizeof *host);
    /* FNV-1a over the bytes, sent as two 32-bit halves (exact in a double) */
    uint64_t h = 1469598103934665603ull;
    const unsigned char *p = (const unsigned char *)host;
    for (size_t i = 0; i < n * sizeof *host; i++) h = (h ^ p[i]) * 1099511628211ull;
    free(host);
    double mine[2] = {(double)(h >> 32), (double)(h & 0xffffffffu)};
    double *all = malloc((size_t)2 * d->size * sizeof *all);
    if (!all) return gkd_error_set(GKD_ERR_NOMEM, "out of memory (checking the ranks' weights)");
    gkd_status st = gkd_dist_allgather_f64(d, mine, 2, all);
    for (int r = 1; st == GKD_OK && r < d->size; r++)
        if (all[2 * r] != all[0] || all[2 * r + 1] != all[1])
            st = gkd_error_set(
                GKD_ERR_DEVICE,
                "data parallel: rank %d's weights differ from rank 0's after the run (the ranks "
                "took different optimizer steps: a non-deterministic all-reduce?)",
                r);
    free(all);
    return st;
}
