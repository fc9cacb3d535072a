/* rl/dist.h without a launcher: what the environment announces (OpenMPI, PMI, srun's step, PMIx) and that
 * a batch script's allocation (SLURM_NTASKS without srun) is one process; a plain process is rank 0 of 1 on
 * the "none" backend, whose collectives do nothing; a build without MPI refuses to start as one of several
 * ranks (in a build with MPI that part needs a real launcher: tests/test_data_parallel.sh). */
// ctest-labels: cpu
#include <stdlib.h>
#include <string.h>

#include "rl/dist.h"
#include "tests/check.h"

static const char *const launcher_vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE",     "SLURM_STEP_NUM_TASKS",
                                            "SLURM_PROCID",         "SLURM_NTASKS", "PMIX_RANK"};

static void clear_env(void) {
    for (size_t i = 0; i < sizeof launcher_vars / sizeof *launcher_vars; i++) unsetenv(launcher_vars[i]);
}

static int launched(int *found) {
    *found = -1;
    return gkd_dist_launched_size(found);
}

int main(void) {
    int found;
    clear_env();
    CHECK(launched(&found) == 1 && found == 0);
    setenv("OMPI_COMM_WORLD_SIZE", "4", 1);
    CHECK(launched(&found) == 4 && found == 1);
    clear_env();
    setenv("PMI_SIZE", "3", 1);
    CHECK(launched(&found) == 3 && found == 1);
    clear_env();
    setenv("SLURM_NTASKS", "8", 1); /* an sbatch allocation, no srun: one process */
    setenv("SLURM_PROCID", "0", 1);
    CHECK(launched(&found) == 1 && found == 0);
    setenv("SLURM_STEP_NUM_TASKS", "2", 1); /* srun's step of two tasks */
    CHECK(launched(&found) == 2 && found == 1);
    clear_env();
    setenv("PMIX_RANK", "1", 1); /* PMIx names no size */
    CHECK(launched(&found) == 0 && found == 1);
    clear_env();
    setenv("OMPI_COMM_WORLD_SIZE", "two", 1); /* not a count: ignored */
    CHECK(launched(&found) == 1 && found == 0);
    clear_env();

    if (!gkd_dist_compiled()) {
        setenv("OMPI_COMM_WORLD_SIZE", "2", 1);
        gkd_dist *d = NULL;
        CHECK(gkd_dist_world(&d) == GKD_ERR_ARG);
        CHECK(strstr(gkd_error_message(), "built without MPI") != NULL);
        clear_env();
    }
    gkd_dist *d = NULL;
    CHECK(gkd_dist_world(&d) == GKD_OK && d);
    CHECK(gkd_dist_rank(d) == 0 && gkd_dist_size(d) == 1 && strcmp(d->iface->name, "none") == 0);
    double x[2] = {1.5, -2};
    CHECK(gkd_dist_allreduce_f64(d, x, 2) == GKD_OK && x[0] == 1.5 && x[1] == -2);
    double all[2];
    CHECK(gkd_dist_allgather_f64(d, x, 2, all) == GKD_OK && all[0] == 1.5 && all[1] == -2);
    CHECK(gkd_dist_rank(NULL) == 0 && gkd_dist_size(NULL) == 1);
    return check_exit();
}
