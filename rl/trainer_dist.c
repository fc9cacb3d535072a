/* Data parallelism of the GKD trainer (cfg.dist, rl/dist.h): the batch's loss normaliser and the step's sums
 * over ranks.
 * Rules: a rank's loss is its shard's, normalised by the global batch's counts (rows with outputs, or masked
 * positions), so the sum of the ranks' gradients is the gradient one process gets from the whole batch;
 * every function here that communicates is called by every rank at the same point of the step; with one
 * rank nothing is computed differently (share 1, no sums), so single-process results keep their bits. */
#include "rl/trainer_internal.h"

gkd_status gkd_trainer_check_dist(const gkd_train_config *c) {
    int N = gkd_dist_size(c->dist);
    if (N == 1) return GKD_OK;
    if (c->batch_size % N != 0)
        return gkd_error_set(GKD_ERR_ARG,
                             "batch (%d) must be a multiple of the number of ranks (%d): each rank trains on batch / "
                             "ranks rows of every global batch (docs/data-parallel.md)",
                             c->batch_size, N);
    if (c->reward)
        return gkd_error_set(GKD_ERR_ARG,
                             "GKD + RL (a reward) runs in one process for now: its baselines and advantages are "
                             "batch statistics not yet gathered over ranks (docs/data-parallel.md); run it without "
                             "mpirun/srun");
    return GKD_OK;
}

gkd_status gkd_trainer_batch_share(gkd_trainer *t, int B, int T, double *share) {
    *share = 1.0;
    if (gkd_dist_size(t->cfg.dist) == 1) return GKD_OK;
    double counts[2] = {0, 0}; /* rows with outputs, masked positions */
    for (int b = 0; b < B; b++) {
        double in_row = 0;
        for (int i = 0; i < T; i++) in_row += t->batch.mask[(size_t)b * T + i];
        counts[0] += in_row > 0;
        counts[1] += in_row;
    }
    double local = t->cfg.norm == GKD_NORM_SEQUENCE ? counts[0] : counts[1];
    gkd_status st = gkd_dist_allreduce_f64(t->cfg.dist, counts, 2);
    if (st != GKD_OK) return gkd_error_prefix(st, "data parallel: the batch's token counts");
    double global = t->cfg.norm == GKD_NORM_SEQUENCE ? counts[0] : counts[1];
    *share = global > 0 ? local / global : 0.0;
    return GKD_OK;
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
    /* One message for the logged sums; the times stay this rank's (rank 0 logs its own). */
    double sums[] = {stats->loss,
                     stats->div.forward_kl,
                     stats->div.reverse_kl,
                     stats->div.jsd_half,
                     stats->div.teacher_entropy,
                     stats->div.student_entropy,
                     stats->div.divergence,
                     stats->div.positions,
                     (double)*tokens,
                     *out_total};
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
    st = gkd_dist_allreduce_f32(d, t->be, gkd_model_grads(t->student), gkd_model_num_params(t->student));
    return st == GKD_OK ? GKD_OK : gkd_error_prefix(st, "data parallel: the gradient all-reduce");
}
