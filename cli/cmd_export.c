/* `gkd export --tensorboard DIR`: the runs of a store as TensorBoard event files (core/report/tensorboard.h;
 * the layout and tags: docs/reports.md, "TensorBoard").
 * Rules: the store is opened read-only, so an export can run beside live runs. Exit status: 0 ok; 2 bad
 * usage or input (unknown option, sweep or run); 1 a failure at run time (the store cannot be read, the
 * folder cannot be written). */
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

#include "core/report/tensorboard.h"
#include "core/store/store.h"

int gkd_cmd_export(int argc, char **argv) {
    gkd_cli_args a;
    if (gkd_cli_parse(&a, "export", argc, argv, 2, "") != 0) return 2;
    const char *db = gkd_cli_str(&a, "db", "runs.db");
    const char *dir = gkd_cli_str(&a, "tensorboard", NULL);
    gkd_report_tensorboard_options opt = {
        .sweep = gkd_cli_str(&a, "sweep", NULL),
        .run = gkd_cli_str(&a, "run", NULL),
    };
    if (gkd_cli_check_unused(&a) != 0) return 2;
    if (a.n_positional > 0) {
        gkd_cli_error("export", "unexpected argument '%s' (the store is --db PATH)", a.positional[0]);
        gkd_cli_usage(stderr, "export");
        return 2;
    }
    if (!dir || !*dir) {
        gkd_cli_error("export", "say where to write: --tensorboard DIR");
        gkd_cli_usage(stderr, "export");
        return 2;
    }
    gkd_store *store = NULL;
    if (gkd_store_open_readonly(db, &store) != GKD_OK) {
        gkd_cli_error("export", "%s", gkd_error_message());
        return 1;
    }
    gkd_report_tensorboard_counts n = {0};
    gkd_status st = gkd_report_write_tensorboard(store, dir, &opt, &n);
    gkd_store_close(store);
    if (st == GKD_ERR_NOT_FOUND) { /* nothing selected: say which store was searched */
        gkd_cli_error("export", "run store '%s': %s", db, gkd_error_message());
        return 2;
    }
    if (st != GKD_OK) {
        gkd_cli_error("export", "%s", gkd_error_message());
        return st == GKD_ERR_ARG ? 2 : 1;
    }
    fprintf(stderr, "gkd export: wrote %d run%s to %s (%lld scalars, %lld samples, %d hparams)\n", n.runs,
            n.runs == 1 ? "" : "s", dir, (long long)n.scalars, (long long)n.samples, n.hparams);
    return 0;
}
