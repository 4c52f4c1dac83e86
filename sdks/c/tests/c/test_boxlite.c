/* The C SDK against real VMs: lifecycle, output streamed through the callback, exit codes,
 * JSON info and metrics, errors for NULL and malformed input, pause, snapshots and forks,
 * standbys, the simple API. Run by
 * scripts/c-sdk-test.sh with BOXLITE_TEST_IMAGE (an image reference) and BOXLITE_HOME (a new
 * home); it ends with "N passed, N failed". */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "boxlite.h"

static int passed, failed;

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (cond) {                                                        \
            passed++;                                                      \
        } else {                                                           \
            failed++;                                                      \
            fprintf(stderr, "FAILED %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                  \
            fputc('\n', stderr);                                           \
        }                                                                  \
    } while (0)

/* Output collected by the callback. */
struct output {
    char *out, *err;
    size_t out_len, err_len;
    int calls;
};

static void append(char **buf, size_t *len, const char *text) {
    size_t add = strlen(text);
    *buf = realloc(*buf, *len + add + 1);
    memcpy(*buf + *len, text, add + 1);
    *len += add;
}

static void collect(const char *text, int is_stderr, void *user_data) {
    struct output *o = user_data;
    o->calls++;
    if (is_stderr)
        append(&o->err, &o->err_len, text);
    else
        append(&o->out, &o->out_len, text);
}

static void output_free(struct output *o) {
    free(o->out);
    free(o->err);
    memset(o, 0, sizeof *o);
}

static const char *str(const char *s) { return s ? s : "(null)"; }

static void test_bad_input(CBoxliteRuntime *rt) {
    CBoxliteError err = {0};
    CBoxliteRuntime *none = NULL;
    CHECK(boxlite_runtime_new(NULL, NULL, NULL, &err) == InvalidArgument, "%s", str(err.message));
    CHECK(err.code == InvalidArgument && err.message && strstr(err.message, "out_runtime"),
          "%s", str(err.message));
    boxlite_error_free(&err);
    CHECK(err.message == NULL, "message left after boxlite_error_free");
    CHECK(boxlite_runtime_new(NULL, "not json", &none, &err) == InvalidArgument, "%s", str(err.message));
    boxlite_error_free(&err);

    CBoxHandle *box = NULL;
    CHECK(boxlite_create_box(NULL, "{}", &box, &err) == InvalidArgument, "%s", str(err.message));
    boxlite_error_free(&err);
    CHECK(boxlite_create_box(rt, NULL, &box, &err) == InvalidArgument, "%s", str(err.message));
    boxlite_error_free(&err);
    CHECK(boxlite_create_box(rt, "{\"rootfs\":", &box, &err) == InvalidArgument, "%s", str(err.message));
    CHECK(err.message && strstr(err.message, "options_json"), "%s", str(err.message));
    boxlite_error_free(&err);
    CHECK(boxlite_create_box(rt, "{\"cpu\":2}", &box, &err) == InvalidArgument, "%s", str(err.message));
    CHECK(err.message && strstr(err.message, "cpu"), "%s", str(err.message));
    boxlite_error_free(&err);
    CHECK(boxlite_create_box(rt, "{\"network\":\"Bridged\"}", &box, &err) == InvalidArgument,
          "%s", str(err.message));
    boxlite_error_free(&err);
    CHECK(boxlite_create_box(rt, "{\"cpus\":0}", &box, &err) == InvalidArgument, "%s", str(err.message));
    boxlite_error_free(&err);
    CHECK(box == NULL, "a box handle after failures");

    int code = 0;
    CHECK(boxlite_execute(NULL, "true", NULL, NULL, NULL, &code, &err) == InvalidArgument, "%s",
          str(err.message));
    boxlite_error_free(&err);
    CHECK(boxlite_get(rt, "no-such-box", &box, &err) == NotFound, "%s", str(err.message));
    CHECK(err.code == 2, "NotFound is 2, got %d", err.code);
    boxlite_error_free(&err);
    char *json = NULL;
    CHECK(boxlite_get_info(rt, "no-such-box", &json, &err) == NotFound, "%s", str(err.message));
    boxlite_error_free(&err);
    CHECK(boxlite_remove(rt, NULL, 0, &err) == InvalidArgument, "%s", str(err.message));
    boxlite_error_free(&err);
    /* A NULL error pointer is allowed: the code still says what happened. */
    CHECK(boxlite_remove(rt, "no-such-box", 0, NULL) == NotFound, "NULL out_error");
    /* Every free function takes NULL. */
    boxlite_free_string(NULL);
    boxlite_error_free(NULL);
    boxlite_result_free(NULL);
    boxlite_simple_free(NULL);
    boxlite_box_free(NULL);
    boxlite_runtime_free(NULL);
    CHECK(boxlite_box_id(NULL) == NULL, "box id of NULL");
}

/* A started box of `image` with 256 MiB, kept when stopped, and the options of `more` (JSON
 * members, each followed by a comma); NULL when it could not be made. */
static CBoxHandle *create_box(CBoxliteRuntime *rt, const char *image, const char *more) {
    CBoxliteError err = {0};
    char options[4096];
    snprintf(options, sizeof options,
             "{\"rootfs\":{\"Image\":\"%s\"},%s\"memory_mib\":256,\"auto_remove\":false,"
             "\"ready_timeout_secs\":120}",
             image, more);
    CBoxHandle *box = NULL;
    if (boxlite_create_box(rt, options, &box, &err) != Ok) {
        CHECK(0, "create: %s", str(err.message));
        boxlite_error_free(&err);
        return NULL;
    }
    return box;
}

static void test_lifecycle(CBoxliteRuntime *rt, const char *image) {
    CBoxliteError err = {0};
    CBoxHandle *box = create_box(
        rt, image, "\"env\":[[\"GREETING\",\"hi\"]],\"volumes\":[],\"network\":\"Isolated\",\"ports\":[],");
    if (!box)
        return;
    char *id = boxlite_box_id(box);
    CHECK(id && strlen(id) == 26, "id %s", str(id));

    /* Output through the callback, stdout and stderr apart; the exit code. */
    struct output o = {0};
    int code = -100;
    CHECK(boxlite_execute(box, "sh", "[\"-c\",\"echo $GREETING; echo err >&2; exit 3\"]", collect, &o,
                          &code, &err) == Ok,
          "%s", str(err.message));
    CHECK(code == 3, "exit code %d", code);
    CHECK(o.out && strcmp(o.out, "hi\n") == 0, "stdout %s", str(o.out));
    CHECK(o.err && strcmp(o.err, "err\n") == 0, "stderr %s", str(o.err));
    output_free(&o);

    /* Much output arrives whole, in several chunks, while the command runs. */
    CHECK(boxlite_execute(box, "seq", "[\"1\",\"100000\"]", collect, &o, &code, &err) == Ok, "%s",
          str(err.message));
    CHECK(code == 0 && o.out_len == 588895, "seq: exit %d, %zu bytes", code, o.out_len);
    CHECK(o.out && strncmp(o.out + o.out_len - 7, "100000\n", 7) == 0, "seq's end");
    CHECK(o.calls > 1, "one callback for everything (%d)", o.calls);
    output_free(&o);

    /* No callback: the output is dropped, the exit code still comes. */
    CHECK(boxlite_execute(box, "false", NULL, NULL, NULL, &code, &err) == Ok && code == 1,
          "false: %d %s", code, str(err.message));
    CHECK(boxlite_execute(box, "/no/such/program", NULL, collect, &o, &code, &err) != Ok || code == 127,
          "a missing program: code %d", code);
    boxlite_error_free(&err);
    output_free(&o);

    /* Info and metrics as JSON. */
    char *json = NULL;
    CHECK(boxlite_box_info(box, &json, &err) == Ok && strstr(json, "\"status\":\"running\""), "%s",
          str(json));
    boxlite_free_string(json);
    CHECK(boxlite_list_info(rt, &json, &err) == Ok && json[0] == '[' && strstr(json, id), "%s", str(json));
    boxlite_free_string(json);
    CHECK(boxlite_get_info(rt, id, &json, &err) == Ok && strstr(json, "\"memory_mib\":256"), "%s",
          str(json));
    boxlite_free_string(json);
    CHECK(boxlite_runtime_metrics(rt, &json, &err) == Ok && strstr(json, "\"boxes_created_total\":1"),
          "%s", str(json));
    boxlite_free_string(json);
    CHECK(boxlite_box_metrics(box, &json, &err) == Ok && strstr(json, "\"commands_executed_total\""),
          "%s", str(json));
    boxlite_free_string(json);

    /* A second handle on the same box. */
    CBoxHandle *again = NULL;
    CHECK(boxlite_get(rt, id, &again, &err) == Ok, "%s", str(err.message));
    CHECK(boxlite_execute(again, "cat", "[\"/etc/hostname\"]", collect, &o, &code, &err) == Ok && code == 0,
          "%s", str(err.message));
    output_free(&o);
    boxlite_box_free(again);

    /* Removing a running box needs force. */
    CHECK(boxlite_remove(rt, id, 0, &err) == InvalidState, "%s", str(err.message));
    CHECK(err.code == 4, "InvalidState is 4");
    boxlite_error_free(&err);

    /* Stop consumes the handle; start again through a new one; then remove. */
    CHECK(boxlite_stop_box(box, &err) == Ok, "%s", str(err.message));
    CHECK(boxlite_get_info(rt, id, &json, &err) == Ok && strstr(json, "\"status\":\"stopped\""), "%s",
          str(json));
    boxlite_free_string(json);
    CHECK(boxlite_get(rt, id, &again, &err) == Ok && boxlite_start_box(again, &err) == Ok, "%s",
          str(err.message));
    CHECK(boxlite_execute(again, "true", NULL, NULL, NULL, &code, &err) == Ok && code == 0, "%s",
          str(err.message));
    boxlite_box_free(again);
    CHECK(boxlite_remove(rt, id, 1, &err) == Ok, "%s", str(err.message));
    CHECK(boxlite_get_info(rt, id, &json, &err) == NotFound, "still there after remove");
    boxlite_error_free(&err);
    boxlite_free_string(id);
}

/* Runs `script` with sh in the box; its stdout (NULL when it failed), to be freed. */
static char *sh(CBoxHandle *box, const char *script) {
    CBoxliteError err = {0};
    struct output o = {0};
    char args[1024];
    int code = -100;
    snprintf(args, sizeof args, "[\"-c\",\"%s\"]", script);
    if (boxlite_execute(box, "sh", args, collect, &o, &code, &err) != Ok || code != 0) {
        fprintf(stderr, "sh %s: exit %d, %s %s\n", script, code, str(err.message), str(o.err));
        boxlite_error_free(&err);
        output_free(&o);
        return NULL;
    }
    free(o.err);
    return o.out ? o.out : calloc(1, 1);
}

static int sh_says(CBoxHandle *box, const char *script, const char *expected) {
    char *out = sh(box, script);
    int same = out && strcmp(out, expected) == 0;
    if (!same)
        fprintf(stderr, "sh %s printed %s, not %s", script, str(out), expected);
    free(out);
    return same;
}

/* Pause and resume, snapshots (restored in place and into a new box) and forks. */
static void test_snapshots(CBoxliteRuntime *rt, const char *image) {
    CBoxliteError err = {0};
    CBoxHandle *box = create_box(rt, image, "");
    if (!box)
        return;
    char *id = boxlite_box_id(box);
    CHECK(sh_says(box, "echo before > /f; echo kept > /dev/shm/m", ""), "setup");

    int code = -100;
    CHECK(boxlite_pause_box(box, &err) == Ok, "%s", str(err.message));
    CHECK(boxlite_execute(box, "true", NULL, NULL, NULL, &code, &err) == InvalidState, "exec while paused");
    boxlite_error_free(&err);
    CHECK(boxlite_resume_box(box, &err) == Ok, "%s", str(err.message));

    char *json = NULL;
    CHECK(boxlite_snapshot_box(box, "c1", &json, &err) == Ok && strstr(json, "\"name\":\"c1\"") &&
              strstr(json, "\"container_disk_bytes\":"),
          "%s %s", str(json), str(err.message));
    boxlite_free_string(json);
    json = NULL;
    CHECK(boxlite_box_snapshots(box, &json, &err) == Ok && strstr(json, "\"name\":\"c1\""), "%s", str(json));
    boxlite_free_string(json);
    json = NULL;
    CHECK(boxlite_snapshot_box(box, "c1", &json, &err) == AlreadyExists, "the same name twice");
    boxlite_error_free(&err);

    /* Back to the snapshot: the disk and the memory (tmpfs) as they were. */
    CHECK(sh_says(box, "echo after > /f; rm /dev/shm/m", ""), "change");
    CHECK(boxlite_restore_box(box, "c1", &err) == Ok, "%s", str(err.message));
    CHECK(sh_says(box, "cat /f /dev/shm/m", "before\nkept\n"), "restored");
    CHECK(boxlite_restore_box(box, "nope", &err) == NotFound, "a missing snapshot");
    boxlite_error_free(&err);

    /* A fork goes its own way; another box's snapshot is not its own to go back to. */
    CBoxHandle *fork = NULL;
    CHECK(boxlite_fork_box(box, "c-fork", &fork, &err) == Ok, "%s", str(err.message));
    if (fork) {
        CHECK(sh_says(fork, "cat /f; echo forked > /f", "before\n"), "fork");
        CHECK(sh_says(box, "cat /f", "before\n"), "the source's own file");
        CHECK(boxlite_restore_box(fork, "c1", &err) == InvalidArgument, "another box's snapshot");
        boxlite_error_free(&err);
        char *fork_id = boxlite_box_id(fork);
        boxlite_box_free(fork);
        CHECK(boxlite_remove(rt, fork_id, 1, &err) == Ok, "%s", str(err.message));
        boxlite_free_string(fork_id);
    }

    CBoxHandle *made = NULL;
    CHECK(boxlite_create_from_snapshot(rt, "c1", "c-made", &made, &err) == Ok, "%s", str(err.message));
    if (made) {
        CHECK(sh_says(made, "cat /dev/shm/m", "kept\n"), "made from the snapshot");
        char *made_id = boxlite_box_id(made);
        boxlite_box_free(made);
        CHECK(boxlite_remove(rt, made_id, 1, &err) == Ok, "%s", str(err.message));
        boxlite_free_string(made_id);
    }

    CHECK(boxlite_list_snapshots(rt, &json, &err) == Ok && strstr(json, "\"c1\""), "%s", str(json));
    boxlite_free_string(json);
    json = NULL;
    CHECK(boxlite_remove_snapshot(rt, "c1", &err) == Ok, "%s", str(err.message));
    CHECK(boxlite_list_snapshots(rt, &json, &err) == Ok && strcmp(json, "[]") == 0, "%s", str(json));
    boxlite_free_string(json);
    CHECK(boxlite_remove_snapshot(rt, "c1", &err) == NotFound, "removed twice");
    boxlite_error_free(&err);

    boxlite_box_free(box);
    CHECK(boxlite_remove(rt, id, 1, &err) == Ok, "%s", str(err.message));
    boxlite_error_free(&err);
    boxlite_free_string(id);
}

/* Standbys (BOXLITE_STANDBY=1): the first box of its kind leaves one warming, the next takes
 * it, and the rest are retired on request. */
static int wait_for_one_standby(CBoxliteRuntime *rt) {
    CBoxliteError err = {0};
    for (int tries = 0; tries < 2400; tries++) { /* 120 s */
        int ready = -1;
        if (boxlite_standbys_ready(rt, &ready, &err) != Ok) {
            boxlite_error_free(&err);
            return 0;
        }
        if (ready == 1)
            return 1;
        struct timespec pause = {0, 50 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    return 0;
}

static int started_as(CBoxHandle *box, const char *mode) {
    CBoxliteError err = {0};
    char *json = NULL, expected[64];
    snprintf(expected, sizeof expected, "\"start_mode\":\"%s\"", mode);
    int same = boxlite_start_box(box, &err) == Ok && boxlite_box_metrics(box, &json, &err) == Ok &&
               strstr(json, expected) != NULL;
    if (!same)
        fprintf(stderr, "metrics %s, error %s: not %s\n", str(json), str(err.message), expected);
    boxlite_free_string(json);
    boxlite_error_free(&err);
    return same;
}

static void test_standbys(CBoxliteRuntime *rt, const char *image) {
    CBoxliteError err = {0};
    setenv("BOXLITE_STANDBY", "1", 1);
    CBoxHandle *boxes[2] = {create_box(rt, image, ""), NULL};
    if (boxes[0]) {
        CHECK(started_as(boxes[0], "template"), "the first box");
        CHECK(wait_for_one_standby(rt), "a standby warmed up");
        boxes[1] = create_box(rt, image, "");
    }
    if (boxes[1]) {
        CHECK(started_as(boxes[1], "standby"), "the second box");
        CHECK(wait_for_one_standby(rt), "another standby warmed up");
        int retired = -1, ready = -1;
        CHECK(boxlite_retire_standbys(rt, &retired, &err) == Ok && retired == 1, "retired %d", retired);
        CHECK(boxlite_standbys_ready(rt, &ready, &err) == Ok && ready == 0, "ready %d", ready);
        CHECK(boxlite_standbys_ready(rt, NULL, &err) == InvalidArgument, "NULL out_count");
        boxlite_error_free(&err);
    }
    unsetenv("BOXLITE_STANDBY");
    for (int i = 0; i < 2; i++) {
        if (!boxes[i])
            continue;
        char *id = boxlite_box_id(boxes[i]);
        boxlite_box_free(boxes[i]);
        CHECK(boxlite_remove(rt, id, 1, &err) == Ok, "%s", str(err.message));
        boxlite_error_free(&err);
        boxlite_free_string(id);
    }
}

static void test_simple_api(const char *image) {
    CBoxliteError err = {0};
    CBoxliteSimple *box = NULL;
    if (boxlite_simple_new(image, 0, 256, &box, &err) != Ok) {
        CHECK(0, "simple_new: %s", str(err.message));
        boxlite_error_free(&err);
        return;
    }
    const char *args[] = {"-c", "echo simple; echo bad >&2; exit 7", NULL};
    CBoxliteExecResult *result = NULL;
    CHECK(boxlite_simple_run(box, "sh", args, 2, &result, &err) == Ok, "%s", str(err.message));
    CHECK(result && result->exit_code == 7, "exit code");
    CHECK(result && strcmp(result->stdout_text, "simple\n") == 0, "stdout %s",
          result ? str(result->stdout_text) : "");
    CHECK(result && strcmp(result->stderr_text, "bad\n") == 0, "stderr");
    boxlite_result_free(result);
    CHECK(boxlite_simple_run(box, "true", NULL, 1, &result, &err) == InvalidArgument, "argc without args");
    boxlite_error_free(&err);
    CHECK(boxlite_simple_new(image, -1, 0, &box, &err) == InvalidArgument, "negative cpus");
    boxlite_error_free(&err);
    boxlite_simple_free(box);
}

int main(void) {
    const char *image = getenv("BOXLITE_TEST_IMAGE");
    const char *home = getenv("BOXLITE_HOME");
    if (!image || !home) {
        fprintf(stderr, "set BOXLITE_TEST_IMAGE and BOXLITE_HOME (scripts/c-sdk-test.sh does)\n");
        return 2;
    }
    CHECK(boxlite_version() && strlen(boxlite_version()) > 0, "version");
    CBoxliteError err = {0};
    CBoxliteRuntime *rt = NULL;
    if (boxlite_runtime_new(home, "[]", &rt, &err) != Ok) {
        fprintf(stderr, "runtime: %s\n", str(err.message));
        boxlite_error_free(&err);
        return 1;
    }
    test_bad_input(rt);
    test_lifecycle(rt, image);
    test_snapshots(rt, image);
    test_standbys(rt, image);
    test_simple_api(image);
    CHECK(boxlite_runtime_shutdown(rt, 0, &err) == Ok, "%s", str(err.message));
    boxlite_runtime_free(rt);
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
