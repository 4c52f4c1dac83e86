"""The CodeBox interpreter server: one persistent Python interpreter per box.

Run in the box as `python3 -c` by `CodeBox` (runtime/src/box_types/code_box.rs). Requests come on
stdin, one JSON object per line: {"id": N, "code": "..."}. Each answer goes to the protocol
descriptor (the server's original stdout, moved away from fd 1) as one JSON line:

    {"id": N, "stdout": "...", "stderr": "...", "result": {MIME: DATA} | null,
     "display": [{MIME: DATA}, ...], "error": {"name", "value", "traceback"} | null}

Code runs in one namespace that persists between requests. While it runs, fds 1 and 2 point
at temporary files, so output of print(), C extensions and child processes is all captured.
The value of a trailing expression is the result (text/plain from repr(), text/html from
_repr_html_ as pandas has it, image/png from _repr_png_); matplotlib figures left open are
sent as image/png and closed. SIGINT (the host's timeout) interrupts the running code with
KeyboardInterrupt and leaves the interpreter alive.
"""

import ast
import base64
import json
import os
import signal
import sys
import tempfile
import traceback

MAX_CAPTURE = 8 * 1024 * 1024

os.environ.setdefault("MPLBACKEND", "Agg")

protocol = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
requests = sys.stdin
namespace = {"__name__": "__main__", "__builtins__": __builtins__}


def rich(value):
    """The MIME bundle of a value."""
    bundle = {"text/plain": repr(value)}
    for method, mime in (("_repr_html_", "text/html"), ("_repr_png_", "image/png")):
        render = getattr(value, method, None)
        if callable(render):
            try:
                data = render()
            except Exception:
                continue
            if isinstance(data, bytes):
                data = base64.b64encode(data).decode("ascii")
            if isinstance(data, str):
                bundle[mime] = data
    return bundle


def open_figures():
    """PNGs of the matplotlib figures the code left open, which are then closed."""
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is None:
        return []
    shown = []
    import io

    for number in pyplot.get_fignums():
        buffer = io.BytesIO()
        pyplot.figure(number).savefig(buffer, format="png")
        shown.append({"image/png": base64.b64encode(buffer.getvalue()).decode("ascii")})
    pyplot.close("all")
    return shown


def run(code):
    tree = ast.parse(code, "<cell>", "exec")
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    exec(compile(tree, "<cell>", "exec"), namespace)
    if last is not None:
        value = eval(compile(last, "<cell>", "eval"), namespace)
        if value is not None:
            namespace["_"] = value
            return rich(value)
    return None


def read_capture(file):
    file.flush()
    file.seek(0)
    data = file.read(MAX_CAPTURE + 1)
    text = data.decode("utf-8", "replace")
    if len(data) > MAX_CAPTURE:
        text = text[:MAX_CAPTURE] + "\n[output cut at %d bytes]\n" % MAX_CAPTURE
    return text


def handle(request):
    answer = {"id": request.get("id"), "result": None, "display": [], "error": None}
    saved = (os.dup(1), os.dup(2))
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        try:
            answer["result"] = run(request.get("code", ""))
        except BaseException as e:  # noqa: BLE001 - every failure of user code is reported
            if isinstance(e, SystemExit):
                name = "SystemExit"
            else:
                name = type(e).__name__
            # The server's own frames are noise to the caller: start at the cell.
            tb = e.__traceback__
            while tb is not None and tb.tb_frame.f_code.co_filename != "<cell>":
                tb = tb.tb_next
            answer["error"] = {
                "name": name,
                "value": str(e),
                "traceback": traceback.format_exception(type(e), e, tb),
            }
        finally:
            try:
                answer["display"] = open_figures()
            except Exception as e:  # a broken figure must not lose the answer
                answer["display"] = []
                print("rendering figures failed: %r" % (e,), file=sys.stderr)
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            answer["stdout"] = read_capture(out)
            answer["stderr"] = read_capture(err)
    return answer


def main():
    # stdout now only reaches the protocol through `protocol`; fd 1 gets each run's capture.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    sys.stdout = os.fdopen(1, "w", encoding="utf-8", buffering=1, closefd=False)
    protocol.write(json.dumps({"ready": True, "python": sys.version.split()[0]}) + "\n")
    while True:
        try:
            line = requests.readline()
        except KeyboardInterrupt:
            # An interrupt that arrived between runs: nothing to stop.
            continue
        if not line:
            return
        try:
            request = json.loads(line)
        except ValueError as e:
            protocol.write(json.dumps({"id": None, "fatal": "bad request: %s" % e}) + "\n")
            continue
        try:
            answer = handle(request)
        except KeyboardInterrupt:
            answer = {
                "id": request.get("id"),
                "result": None,
                "display": [],
                "stdout": "",
                "stderr": "",
                "error": {"name": "KeyboardInterrupt", "value": "", "traceback": []},
            }
        protocol.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    main()
