"""The blocking API: ``SyncBoxlite``, ``SyncBox``, ``SyncExecution``, ``SyncSimpleBox``,
``SyncCodeBox``, ``SyncBrowserBox``, ``SyncComputerBox``, ``SyncInteractiveBox``.

Each sync class wraps its async twin made over a native runtime in blocking mode: every
native call blocks on boxlite's own I/O threads with the GIL released and returns an awaitable
that is done already, so the async code runs to its end in one step. No event loop is used,
so these work in any thread, also one whose asyncio loop is running (where the reference's
greenlet design fails), and other Python threads run meanwhile.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Iterator, TypeVar

from .. import _native
from .._bridge import run_sync
from ..browserbox import BrowserBox
from ..codebox import CodeBox
from ..computerbox import ComputerBox
from ..interactivebox import InteractiveBox
from ..options import Options
from ..runtime import (
    Box,
    Boxlite,
    ExecStderr,
    ExecStdin,
    ExecStdout,
    Execution,
    ImageHandle,
    SnapshotHandle,
)
from ..simplebox import SimpleBox

F = TypeVar("F", bound=Callable[..., Any])

# async class -> its sync twin, for wrapping what the async methods return.
_SYNC_OF: dict[type, type] = {}


def _to_sync(value: Any) -> Any:
    twin = _SYNC_OF.get(type(value))
    if twin is not None:
        return twin._of(value)
    if isinstance(value, tuple):
        return tuple(_to_sync(v) for v in value)
    return value


def _blocking_runtime(value: Any) -> Any:
    """A runtime argument for an async twin: the async side of a ``SyncBoxlite``, or a
    blocking-mode copy of an async ``Boxlite``; anything else as it is."""
    if isinstance(value, SyncBoxlite):
        return value._async
    if isinstance(value, Boxlite):
        return Boxlite._wrap(value._native.with_mode(True))
    return value


def _blocking(method: F) -> F:
    """The sync form of an async method: runs it to its end."""

    @functools.wraps(method)
    def call(self: "_Sync", *args: Any, **kwargs: Any) -> Any:
        return _to_sync(run_sync(method(self._async, *args, **kwargs)))

    return call  # type: ignore[return-value]


def _plain(method: F) -> F:
    """A method that does not wait, its result wrapped in its sync twin."""

    @functools.wraps(method)
    def call(self: "_Sync", *args: Any, **kwargs: Any) -> Any:
        return _to_sync(method(self._async, *args, **kwargs))

    return call  # type: ignore[return-value]


def _forward(name: str) -> property:
    return property(lambda self: _to_sync(getattr(self._async, name)))


class _Sync:
    _async: Any
    _twin_of: type | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls._twin_of is not None:
            _SYNC_OF[cls._twin_of] = cls

    @classmethod
    def _of(cls, value: Any) -> Any:
        twin = cls.__new__(cls)
        twin._async = value
        return twin

    def __repr__(self) -> str:
        return f"Sync{self._async!r}"


class SyncExecStdout(_Sync):
    """Lines of a command's output: ``for line in stream``."""

    _twin_of = ExecStdout

    def __init__(self, ctx: Any, async_stdout: ExecStdout) -> None:
        self._async = async_stdout

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        line = self.read_line()
        if line is None:
            raise StopIteration
        return line

    read_line = _blocking(ExecStdout.read_line)


class SyncExecStderr(SyncExecStdout):
    _twin_of = ExecStderr

    def __init__(self, ctx: Any, async_stderr: ExecStderr) -> None:
        self._async = async_stderr


class SyncExecStdin(_Sync):
    _twin_of = ExecStdin
    write = _blocking(ExecStdin.write)
    send_input = _blocking(ExecStdin.send_input)
    write_str = _blocking(ExecStdin.write_str)
    close = _blocking(ExecStdin.close)


class SyncExecution(_Sync):
    _twin_of = Execution

    def __init__(self, ctx: Any, execution: Execution) -> None:
        self._async = execution
    id = _forward("id")
    stdout = _plain(Execution.stdout)
    stderr = _plain(Execution.stderr)
    stdin = _plain(Execution.stdin)
    wait = _blocking(Execution.wait)
    kill = _blocking(Execution.kill)
    signal = _blocking(Execution.signal)
    resize_tty = _blocking(Execution.resize_tty)


class SyncBox(_Sync):
    _twin_of = Box

    def __init__(self, runtime: Any, box: Box) -> None:
        self._async = box

    id = _forward("id")
    name = _forward("name")
    info = _plain(Box.info)
    start = _blocking(Box.start)
    stop = _blocking(Box.stop)

    def exec(
        self,
        cmd: str,
        args: list[str] | None = None,
        env: Any = None,
        tty: bool = False,
        user: str | None = None,
        timeout_secs: float | None = None,
        cwd: str | None = None,
        *,
        stdin: bool = True,
    ) -> "SyncExecution":
        """``Box.exec``, blocking (the reference names the command ``cmd`` here)."""
        execution = run_sync(
            self._async.exec(cmd, args, env, tty, user, timeout_secs, cwd, stdin=stdin)
        )
        return SyncExecution._of(execution)

    attach = _blocking(Box.attach)
    copy_in = _blocking(Box.copy_in)
    copy_out = _blocking(Box.copy_out)
    metrics = _blocking(Box.metrics)
    pause = _blocking(Box.pause)
    resume = _blocking(Box.resume)
    snapshot = _forward("snapshot")
    fork = _blocking(Box.fork)

    def __enter__(self) -> "SyncBox":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SyncSnapshotHandle(_Sync):
    """``SnapshotHandle``, blocking: ``box.snapshot.create(name="v1")``."""

    _twin_of = SnapshotHandle
    create = _blocking(SnapshotHandle.create)
    list = _blocking(SnapshotHandle.list)
    get = _blocking(SnapshotHandle.get)
    remove = _blocking(SnapshotHandle.remove)
    restore = _blocking(SnapshotHandle.restore)


class SyncImageHandle(_Sync):
    _twin_of = ImageHandle

    def __init__(self, runtime: Any, handle: ImageHandle) -> None:
        self._async = handle
    pull = _blocking(ImageHandle.pull)
    list = _plain(ImageHandle.list)
    remove = _blocking(ImageHandle.remove)


class SyncBoxlite(_Sync):
    """``Boxlite``, blocking. ``with SyncBoxlite(options) as runtime:`` works too."""

    _twin_of = Boxlite

    def __init__(self, options: Options | None = None) -> None:
        home, registries = (options or Options())._native_args()
        self._async = Boxlite._wrap(_native.Runtime(home, registries, True))

    @staticmethod
    def default() -> "SyncBoxlite":
        return SyncBoxlite._of(Boxlite._wrap(_native.Runtime.default(True)))

    @staticmethod
    def init_default(options: Options) -> None:
        Boxlite.init_default(options)

    @property
    def runtime(self) -> Boxlite:
        """The async runtime of the same home."""
        return Boxlite._wrap(self._async._native.with_mode(False))

    home_dir = _forward("home_dir")
    images = _forward("images")
    create = _blocking(Boxlite.create)
    get = _blocking(Boxlite.get)
    get_or_create = _blocking(Boxlite.get_or_create)
    get_info = _blocking(Boxlite.get_info)
    list_info = _blocking(Boxlite.list_info)
    remove = _blocking(Boxlite.remove)
    metrics = _blocking(Boxlite.metrics)
    shutdown = _blocking(Boxlite.shutdown)
    pull_image = _blocking(Boxlite.pull_image)
    list_images = _plain(Boxlite.list_images)
    list_snapshots = _blocking(Boxlite.list_snapshots)
    standbys_ready = _plain(Boxlite.standbys_ready)
    retire_standbys = _blocking(Boxlite.retire_standbys)
    remove_snapshot = _blocking(Boxlite.remove_snapshot)
    create_from_snapshot = _blocking(Boxlite.create_from_snapshot)
    close = _plain(Boxlite.close)

    def start(self) -> "SyncBoxlite":
        """Nothing to start (no dispatcher thread here); for the reference's scripts."""
        return self

    def stop(self) -> None:
        """Nothing to stop; boxes belong to the home."""

    def __enter__(self) -> "SyncBoxlite":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SyncSimpleBox(_Sync):
    """``SimpleBox``, blocking: ``with SyncSimpleBox(image=...) as box: box.exec("ls")``.
    ``runtime`` is a ``SyncBoxlite`` (default: ``SyncBoxlite.default()``)."""

    _twin_of = SimpleBox

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        args = tuple(_blocking_runtime(a) for a in args)
        if "runtime" in kwargs or not any(isinstance(a, Boxlite) for a in args):
            kwargs["runtime"] = _blocking_runtime(kwargs.get("runtime") or SyncBoxlite.default())
        self._async = self._twin_of(*args, **kwargs)  # type: ignore[misc]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)

        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            SyncSimpleBox.__init__(self, *args, **kwargs)

        # What editors and inspect show: the async twin's parameters.
        __init__.__signature__ = inspect.signature(cls._twin_of.__init__)  # type: ignore[attr-defined, union-attr]
        cls.__init__ = __init__  # type: ignore[method-assign]

    id = _forward("id")
    name = _forward("name")
    created = _forward("created")
    box = _forward("box")
    start = _blocking(SimpleBox.start)
    stop = _blocking(SimpleBox.stop)
    shutdown = _blocking(SimpleBox.shutdown)
    exec = _blocking(SimpleBox.exec)
    copy_in = _blocking(SimpleBox.copy_in)
    copy_out = _blocking(SimpleBox.copy_out)
    info = _blocking(SimpleBox.info)
    metrics = _blocking(SimpleBox.metrics)

    def __enter__(self) -> Any:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


SyncSimpleBox.__init__.__signature__ = inspect.signature(SimpleBox.__init__)  # type: ignore[attr-defined]


class SyncCodeBox(SyncSimpleBox):
    _twin_of = CodeBox
    run = _blocking(CodeBox.run)
    run_script = _blocking(CodeBox.run_script)
    install_package = _blocking(CodeBox.install_package)
    install_packages = _blocking(CodeBox.install_packages)


class SyncBrowserBox(SyncSimpleBox):
    _twin_of = BrowserBox
    browser = _forward("browser")
    endpoint = _blocking(BrowserBox.endpoint)
    http_endpoint = _blocking(BrowserBox.http_endpoint)
    playwright_endpoint = _blocking(BrowserBox.playwright_endpoint)
    is_running = _blocking(BrowserBox.is_running)
    restart = _blocking(BrowserBox.restart)


class SyncComputerBox(SyncSimpleBox):
    _twin_of = ComputerBox
    wait_until_ready = _blocking(ComputerBox.wait_until_ready)
    screenshot = _blocking(ComputerBox.screenshot)
    mouse_move = _blocking(ComputerBox.mouse_move)
    left_click = _blocking(ComputerBox.left_click)
    right_click = _blocking(ComputerBox.right_click)
    middle_click = _blocking(ComputerBox.middle_click)
    double_click = _blocking(ComputerBox.double_click)
    triple_click = _blocking(ComputerBox.triple_click)
    left_click_drag = _blocking(ComputerBox.left_click_drag)
    cursor_position = _blocking(ComputerBox.cursor_position)
    type = _blocking(ComputerBox.type)
    key = _blocking(ComputerBox.key)
    scroll = _blocking(ComputerBox.scroll)
    get_screen_size = _blocking(ComputerBox.get_screen_size)


class SyncInteractiveBox(SyncSimpleBox):
    _twin_of = InteractiveBox
    write = _blocking(InteractiveBox.write)
    read = _blocking(InteractiveBox.read)
    read_until = _blocking(InteractiveBox.read_until)
    resize = _blocking(InteractiveBox.resize)
    wait = _blocking(InteractiveBox.wait)


__all__ = [
    "SyncBox",
    "SyncBoxlite",
    "SyncBrowserBox",
    "SyncCodeBox",
    "SyncComputerBox",
    "SyncExecStderr",
    "SyncExecStdin",
    "SyncExecStdout",
    "SyncExecution",
    "SyncImageHandle",
    "SyncSnapshotHandle",
    "SyncInteractiveBox",
    "SyncSimpleBox",
]
