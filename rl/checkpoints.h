/* A run's checkpoint folder: one step-N subfolder per checkpoint (what the run target's save writes,
 * rl/run.h), the newest few kept.
 * Rules: a checkpoint is written as step-N.tmp and renamed, so a crash never leaves a half checkpoint
 * that looks whole; rotation lists the folder, so the step folders of an earlier process (a run killed
 * and resumed) rotate too, and it never fails a run (it is housekeeping: the next save tries again). */
#ifndef GKD_CHECKPOINTS_H
#define GKD_CHECKPOINTS_H

#include <stddef.h>
#include <stdint.h>

#include "rl/run.h"

/* Saves the target into dir/step-%08lld (creating dir and its parents), replacing a folder of that name; the
 * folder's path goes to path (cap bytes). */
gkd_status gkd_checkpoints_save(const gkd_run_target *target, const char *dir, int64_t step, char *path, size_t cap);
/* Keeps the newest `keep` step folders of dir up to `step` (the one just saved among them) and removes
 * the older ones, with the .tmp folders of saves killed before `step`. Folders after `step` belong to
 * no history this run continues (it resumed from an earlier checkpoint) and are left alone. */
void gkd_checkpoints_rotate(const char *dir, int64_t step, int keep);

#endif
