/* One round of the C SDK's calls against a running box, for tests/benches/sdks.rs:
 * `c_exec HOME BOX N` prints {"exec": [ms...], "info": [ms...]}: N round trips of
 * boxlite_execute("true") and N boxlite_get_info calls (a database read, no VM). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "boxlite.h"

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void print_series(const char *name, const double *values, int n) {
    printf("\"%s\":[", name);
    for (int i = 0; i < n; i++) printf("%s%.4f", i ? "," : "", values[i]);
    printf("]");
}

int main(int argc, char **argv) {
    if (argc != 4) return 2;
    int n = atoi(argv[3]);
    double *exec = calloc(n, sizeof *exec), *info = calloc(n, sizeof *info);
    CBoxliteError error = {0};
    CBoxliteRuntime *runtime = NULL;
    CBoxHandle *box = NULL;
    if (boxlite_runtime_new(argv[1], NULL, &runtime, &error) != Ok ||
        boxlite_get(runtime, argv[2], &box, &error) != Ok) {
        fprintf(stderr, "%s\n", error.message);
        return 1;
    }
    for (int i = 0; i < n; i++) {
        int code = 0;
        double start = now_ms();
        if (boxlite_execute(box, "true", NULL, NULL, NULL, &code, &error) != Ok) {
            fprintf(stderr, "%s\n", error.message);
            return 1;
        }
        exec[i] = now_ms() - start;
    }
    for (int i = 0; i < n; i++) {
        char *json = NULL;
        double start = now_ms();
        if (boxlite_get_info(runtime, argv[2], &json, &error) != Ok) return 1;
        info[i] = now_ms() - start;
        boxlite_free_string(json);
    }
    printf("{");
    print_series("exec", exec, n);
    printf(",");
    print_series("info", info, n);
    printf("}\n");
    boxlite_box_free(box);
    boxlite_runtime_free(runtime);
    free(exec);
    free(info);
    return 0;
}
