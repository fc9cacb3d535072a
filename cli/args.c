/* Command-line option parsing shared by the subcommands (see cli.h). */
#include "cli/cli.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void gkd_cli_error(const char *command, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "gkd %s: ", command);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int gkd_cli_is_flag(const char *flags, const char *name) {
    size_t n = strlen(name);
    for (const char *p = flags; p && *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == n && strncmp(p, name, n) == 0) return 1;
        p = comma ? comma + 1 : NULL;
    }
    return 0;
}

int gkd_cli_parse(gkd_cli_args *a, const char *command, int argc, char **argv, int first, const char *flags) {
    memset(a, 0, sizeof *a);
    a->argc = argc;
    a->argv = argv;
    a->command = command;
    for (int i = first; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--") == 0) { /* the end of the options: the rest are arguments, even "--x" */
            for (i++; i < argc; i++) {
                if (a->n_positional == 64) {
                    gkd_cli_error(command, "too many arguments");
                    return 2;
                }
                a->positional[a->n_positional++] = argv[i];
            }
            break;
        }
        if (strncmp(arg, "--", 2) == 0 && arg[2]) {
            if (a->n_options == 64) {
                gkd_cli_error(command, "too many options");
                return 2;
            }
            const char *name = arg + 2, *eq = strchr(name, '=');
            static char names_buf[64][64];
            if (eq) {
                size_t n = (size_t)(eq - name) < 63 ? (size_t)(eq - name) : 63;
                memcpy(names_buf[a->n_options], name, n);
                names_buf[a->n_options][n] = '\0';
                a->names[a->n_options] = names_buf[a->n_options];
                a->values[a->n_options] = eq + 1;
            } else if (gkd_cli_is_flag(flags, name)) {
                a->names[a->n_options] = name;
                a->values[a->n_options] = NULL;
            } else {
                if (i + 1 >= argc) {
                    gkd_cli_error(command, "option --%s needs a value", name);
                    return 2;
                }
                a->names[a->n_options] = name;
                a->values[a->n_options] = argv[++i];
            }
            a->n_options++;
        } else {
            if (a->n_positional == 64) {
                gkd_cli_error(command, "too many arguments");
                return 2;
            }
            a->positional[a->n_positional++] = arg;
        }
    }
    return 0;
}

static int find(gkd_cli_args *a, const char *name) {
    int found = -1;
    for (int i = 0; i < a->n_options; i++)
        if (strcmp(a->names[i], name) == 0) {
            a->used[i] = 1;
            found = i; /* the last occurrence wins */
        }
    return found;
}

const char *gkd_cli_str(gkd_cli_args *a, const char *name, const char *fallback) {
    int i = find(a, name);
    return i >= 0 && a->values[i] ? a->values[i] : fallback;
}

int gkd_cli_flag(gkd_cli_args *a, const char *name) {
    return find(a, name) >= 0;
}

long long gkd_cli_int(gkd_cli_args *a, const char *name, long long fallback, int *bad) {
    int i = find(a, name);
    if (i < 0 || !a->values[i]) return fallback;
    char *end;
    errno = 0;
    long long v = strtoll(a->values[i], &end, 10);
    if (errno || *end || end == a->values[i]) {
        gkd_cli_error(a->command, "--%s: expected an integer, got \"%s\"", name, a->values[i]);
        *bad = 1;
    }
    return v;
}

int gkd_cli_size(gkd_cli_args *a, const char *name, int fallback, int *bad) {
    long long v = gkd_cli_int(a, name, fallback, bad);
    /* Checked before narrowing: --max-new-tokens 4294967297 is refused, not read as 1. */
    if (v < 0 || v > INT_MAX) {
        gkd_cli_error(a->command, "--%s: %lld is out of range [0, %d]", name, v, INT_MAX);
        *bad = 1;
        return fallback;
    }
    return (int)v;
}

double gkd_cli_double(gkd_cli_args *a, const char *name, double fallback, int *bad) {
    int i = find(a, name);
    if (i < 0 || !a->values[i]) return fallback;
    char *end;
    errno = 0;
    double v = strtod(a->values[i], &end);
    if (errno || *end || end == a->values[i]) {
        gkd_cli_error(a->command, "--%s: expected a number, got \"%s\"", name, a->values[i]);
        *bad = 1;
    }
    return v;
}

int gkd_cli_check_unused(gkd_cli_args *a) {
    int bad = 0;
    for (int i = 0; i < a->n_options; i++)
        if (!a->used[i]) {
            gkd_cli_error(a->command, "unknown option --%s (see gkd help)", a->names[i]);
            bad = 1;
        }
    return bad ? 2 : 0;
}
