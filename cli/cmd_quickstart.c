/* gkd quickstart: the main job. It runs experiments/quickstart.lua through `gkd run`, the path every
 * experiment takes (a teacher learns 3-digit addition, a smaller student gets an SFT warm start, then
 * supervised KD and on-policy GKD from that start over three seeds; the script says what it prints).
 *
 *   gkd quickstart [--device cpu|cuda|auto|sim] [--db FILE] [script arguments: --out DIR --seeds 1,2,3
 *                  --ablation --warm-gate X --teacher-gate X --smoke]
 *
 * GKD_QUICKSTART_SCRIPT overrides the script's path (default: the source tree the binary was built from). */
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

int gkd_cmd_quickstart(int argc, char **argv) {
    const char *script = getenv("GKD_QUICKSTART_SCRIPT");
    if (!script || !*script) script = GKD_SOURCE_DIR "/experiments/quickstart.lua";
    /* gkd run [--device D] [--db F] SCRIPT [args...]: gkd run's options before the script, the rest after. */
    char **v = calloc((size_t)argc + 4, sizeof *v);
    if (!v) {
        gkd_cli_error("quickstart", "out of memory");
        return 1;
    }
    int n = 0, i = 2;
    v[n++] = argv[0];
    v[n++] = "run";
    for (; i < argc; i++) {
        if ((strcmp(argv[i], "--device") == 0 || strcmp(argv[i], "--db") == 0) && i + 1 < argc) {
            v[n++] = argv[i];
            v[n++] = argv[++i];
        } else if (strncmp(argv[i], "--device=", 9) == 0 || strncmp(argv[i], "--db=", 5) == 0) {
            v[n++] = argv[i];
        } else {
            break;
        }
    }
    v[n++] = (char *)script;
    for (; i < argc; i++) v[n++] = argv[i];
    int rc = gkd_cmd_run(n, v);
    free(v);
    return rc;
}
