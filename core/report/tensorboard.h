/* Export of a run store to TensorBoard event files: the scalars, hyperparameters (the HParams plugin)
 * and stored samples (the text plugin) of the selected runs, so TensorBoard shows gkd runs beside any
 * others. docs/reports.md ("TensorBoard") describes the layout and the tags.
 * Rules:
 * - The store is only read (gkd_store_query); the files are written by gkd itself (core/report/tfevent.h:
 *   TFRecord framing with masked CRC32C, Event protos of file_version "brain.Event:2"), no TensorFlow.
 * - One folder per run under `dir`, from the run's name: each '/'-separated part made filesystem-safe
 *   (bytes other than ASCII letters, digits and ._,=+- become '_'; a leading '.' too), a suffix -ID
 *   (the run id) when two runs would share a folder (letters compared without case). The folder holds
 *   one event file, named from the run's start time, which an export of the same run replaces (written
 *   beside it, then renamed).
 * - Every event of a run carries the run's start time as wall_time: the store keeps no time per step.
 * - Scalars are float32 in TensorBoard (Summary.simple_value): a stored double is rounded to float
 *   (beyond float's range: an infinity of its sign), a NaN (stored NULL) is written as NaN. */
#ifndef GKD_TENSORBOARD_H
#define GKD_TENSORBOARD_H

#include <stdint.h>

#include "core/base/error.h"
#include "core/store/store.h"

typedef struct {
    const char *sweep; /* only this sweep's runs; NULL: any */
    const char *run;   /* only runs of this name (all of them, if several); NULL: any */
} gkd_report_tensorboard_options;

typedef struct {
    int runs;        /* run folders written */
    int64_t scalars; /* scalar values (training metrics and evaluations) */
    int64_t samples; /* samples written as text */
    int hparams;     /* distinct hyperparameter keys in the experiment summary */
} gkd_report_tensorboard_counts;

/* Writes the selected runs under `dir` (created with its parents when missing) and the HParams
 * experiment summary (every hyperparameter key and scalar tag of the exported runs) in an event file of
 * `dir` itself. Fails with GKD_ERR_NOT_FOUND for an unknown sweep or run name or when nothing is
 * selected, GKD_ERR_IO naming the path that cannot be created or written. counts may be NULL. */
gkd_status gkd_report_write_tensorboard(gkd_store *store, const char *dir,
                                        const gkd_report_tensorboard_options *opt,
                                        gkd_report_tensorboard_counts *counts);

#endif
