/* The trainer's checkpoints (trainer.h: gkd_trainer_save / gkd_trainer_load): the student, the optimizer
 * moments and the run's position, so that a resumed run continues bit-identically. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/format/checkpoint.h"
#include "core/format/safetensors.h"
#include "rl/trainer_internal.h"

/* The state format: 1 without the moving-average baselines of GKD + RL, 2 with them, 3 with the optimizer's
 * update count (gkd_optimizer_updates; PPO makes several a step) and, with a value head, value_head.safetensors. */
enum { STATE_VERSION = 3 };

/* A moving-average baseline as checkpoint metadata: "unset" before its first batch, else its value in
 * full precision (%.17g reads back as the same double). */
static void baseline_text(const gkd_baseline *b, char *out, size_t cap) {
    if (b->initialised)
        snprintf(out, cap, "%.17g", b->value);
    else
        snprintf(out, cap, "unset");
}

static gkd_status baseline_read(const gkd_safetensors *sf, const char *key, const char *path, gkd_baseline *b) {
    const char *s = gkd_safetensors_metadata(sf, key);
    if (!s) return gkd_error_set(GKD_ERR_FORMAT, "%s: metadata \"%s\" is missing", path, key);
    if (strcmp(s, "unset") == 0) {
        b->initialised = 0;
        b->value = 0.0;
        return GKD_OK;
    }
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || end == s || !isfinite(v))
        return gkd_error_set(GKD_ERR_FORMAT, "%s: metadata \"%s\" is not a finite number", path, key);
    b->value = v;
    b->initialised = 1;
    return GKD_OK;
}

static gkd_status make_dir(const char *dir) {
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return gkd_error_set(GKD_ERR_IO, "%s: cannot create directory: %s", dir, strerror(errno));
    return GKD_OK;
}

gkd_status gkd_trainer_save(gkd_trainer *t, const char *dir) {
    gkd_status st = make_dir(dir);
    if (st != GKD_OK) return st;
    char path[4096], step[32], position[32], seed[32], version[16], base_r[40], base_d[40], updates[32];
    snprintf(step, sizeof step, "%lld", (long long)t->step);
    snprintf(position, sizeof position, "%lld", (long long)t->order.position);
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)t->cfg.seed);
    snprintf(updates, sizeof updates, "%lld", (long long)gkd_optim_step_count(t->opt));
    const char *keys[] = {"gkd_step"}, *values[] = {step};
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if ((st = gkd_checkpoint_save_model(t->student, path, keys, values, 1)) != GKD_OK) return st;
    size_t n = gkd_model_num_params(t->student);
    float *m = malloc(n * sizeof *m), *v = malloc(n * sizeof *v);
    if (!m || !v) {
        free(m);
        free(v);
        return gkd_error_set(GKD_ERR_NOMEM, "out of memory saving optimizer state");
    }
    t->be->copy_out(m, gkd_optim_m(t->opt), n * sizeof *m);
    t->be->copy_out(v, gkd_optim_v(t->opt), n * sizeof *v);
    int64_t shape[1] = {(int64_t)n};
    gkd_st_tensor tensors[2] = {{"adamw.m", GKD_ST_F32, 1, shape, m}, {"adamw.v", GKD_ST_F32, 1, shape, v}};
    snprintf(version, sizeof version, "%d", STATE_VERSION);
    baseline_text(&t->baselines.reward, base_r, sizeof base_r);
    baseline_text(&t->baselines.divergence, base_d, sizeof base_d);
    const char *skeys[] = {"gkd_step", "gkd_data_position", "gkd_seed", "gkd_state_version",
                           "gkd_baseline_reward", "gkd_baseline_divergence", "gkd_optimizer_updates"};
    const char *svalues[] = {step, position, seed, version, base_r, base_d, updates};
    snprintf(path, sizeof path, "%s/state.safetensors", dir);
    st = gkd_safetensors_write(path, tensors, 2, skeys, svalues, 7);
    free(m);
    free(v);
    if (st == GKD_OK && t->ppo) st = gkd_trainer_ppo_save(t, dir);
    return st;
}

static gkd_status meta_int(const gkd_safetensors *sf, const char *key, const char *path, long long *out) {
    const char *s = gkd_safetensors_metadata(sf, key);
    char *end;
    if (!s) return gkd_error_set(GKD_ERR_FORMAT, "%s: metadata \"%s\" is missing", path, key);
    errno = 0;
    *out = strtoll(s, &end, 10);
    if (errno || *end || end == s) return gkd_error_set(GKD_ERR_FORMAT, "%s: metadata \"%s\" is not an integer", path, key);
    return GKD_OK;
}

gkd_status gkd_trainer_load(gkd_trainer *t, const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/state.safetensors", dir);
    gkd_safetensors *sf = NULL;
    gkd_status st = gkd_safetensors_open(path, &sf);
    if (st != GKD_OK) return st;
    long long step = 0, position = 0, seed = 0, updates = -1;
    if ((st = meta_int(sf, "gkd_step", path, &step)) == GKD_OK && (st = meta_int(sf, "gkd_data_position", path, &position)) == GKD_OK)
        st = meta_int(sf, "gkd_seed", path, &seed);
    if (st == GKD_OK && (uint64_t)seed != t->cfg.seed)
        st = gkd_error_set(GKD_ERR_ARG, "%s: checkpoint was made with seed %lld, this run has seed %llu", path, seed,
                           (unsigned long long)t->cfg.seed);
    long long version = 1; /* a state without the key is read as version 1 */
    if (st == GKD_OK && gkd_safetensors_metadata(sf, "gkd_state_version"))
        st = meta_int(sf, "gkd_state_version", path, &version);
    if (st == GKD_OK && (version < 1 || version > STATE_VERSION))
        st = gkd_error_set(GKD_ERR_FORMAT, "%s: state version %lld is not one this gkd reads (1 to %d): a newer gkd "
                           "wrote it", path, version, STATE_VERSION);
    int moving_average = t->cfg.reward && t->cfg.baseline == GKD_BASELINE_MOVING_AVERAGE;
    if (st == GKD_OK && version < 2 && moving_average)
        st = gkd_error_set(GKD_ERR_FORMAT,
                           "%s: state version %lld does not hold the moving-average baseline of GKD + RL, so this run "
                           "cannot continue identically from it: restart the run, or resume with another baseline",
                           path, version);
    /* PPO takes several optimizer updates a step; states before version 3 hold one update a step */
    if (st == GKD_OK && gkd_safetensors_metadata(sf, "gkd_optimizer_updates"))
        st = meta_int(sf, "gkd_optimizer_updates", path, &updates);
    if (st == GKD_OK && updates < 0 && t->ppo)
        st = gkd_error_set(GKD_ERR_FORMAT, "%s: the state does not record its optimizer updates (made before PPO): "
                           "a PPO or GRPO run cannot continue from it", path);
    gkd_pg_baselines baselines = t->baselines;
    if (st == GKD_OK && version >= 2 && (st = baseline_read(sf, "gkd_baseline_reward", path, &baselines.reward)) == GKD_OK)
        st = baseline_read(sf, "gkd_baseline_divergence", path, &baselines.divergence);
    size_t n = gkd_model_num_params(t->student);
    float *m = NULL, *v = NULL;
    if (st == GKD_OK) {
        m = malloc(n * sizeof *m);
        v = malloc(n * sizeof *v);
        if (!m || !v) st = gkd_error_set(GKD_ERR_NOMEM, "out of memory loading optimizer state");
    }
    int64_t shape[1] = {(int64_t)n};
    if (st == GKD_OK) st = gkd_safetensors_read_f32(sf, "adamw.m", m, 1, shape);
    if (st == GKD_OK) st = gkd_safetensors_read_f32(sf, "adamw.v", v, 1, shape);
    gkd_safetensors_close(sf);
    if (st == GKD_OK) {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        st = gkd_checkpoint_load_into(t->student, path);
    }
    if (st == GKD_OK) {
        t->be->copy_in(gkd_optim_m(t->opt), m, n * sizeof *m);
        t->be->copy_in(gkd_optim_v(t->opt), v, n * sizeof *v);
        st = gkd_optim_set_step_count(t->opt, updates >= 0 ? updates : step);
    }
    if (st == GKD_OK && t->ppo) st = gkd_trainer_ppo_load(t, dir);
    if (st == GKD_OK) {
        t->step = step;
        gkd_data_order_seek(&t->order, position);
        t->baselines = baselines;
    }
    free(m);
    free(v);
    return st;
}
