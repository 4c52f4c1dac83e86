"""The async API: ``Boxlite`` (a home), ``Box`` (one box), ``Execution`` (one command).

Each call that waits returns an awaitable running on boxlite's own I/O threads, so the event
loop never blocks; ``boxlite.sync_api`` is the same API blocking instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, AsyncIterator, Optional, Union

from . import _native
from .errors import InvalidArgumentError
from .options import BoxOptions, CopyOptions, Options, _pairs


class _Id(str):
    """An id that is also callable: ``execution.id`` and the reference's ``execution.id()``
    both give it."""

    def __call__(self) -> str:
        return str(self)


@dataclass
class BoxStateInfo:
    status: str
    running: bool
    pid: int | None = None
    exit_code: int | None = None


@dataclass
class BoxInfo:
    """What the home's database says about a box."""

    id: str
    name: str | None
    status: str
    state: BoxStateInfo
    created_at: datetime
    last_updated: datetime
    pid: int | None
    image: str
    cpus: int
    memory_mib: int
    engine: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    started_at: datetime | None = None
    last_activity_at: datetime | None = None
    auto_delete: Any = None
    auto_resume: Any = None
    auto_stop: Any = None
    health_status: Any = None
    network: Any = None

    @classmethod
    def _from_native(cls, d: dict[str, Any]) -> "BoxInfo":
        status = d["status"]
        return cls(
            id=d["id"],
            name=d["name"],
            status=status,
            state=BoxStateInfo(status=status, running=status == "running", pid=d["pid"]),
            created_at=datetime.fromisoformat(d["created_at"]),
            last_updated=datetime.fromisoformat(d["last_updated"]),
            pid=d["pid"],
            image=d["image"],
            cpus=d["cpus"],
            memory_mib=d["memory_mib"],
            engine=d["engine"],
            labels=d["labels"],
        )


@dataclass
class BoxMetrics:
    """A box's figures; live ones are None while it is not running. Counters are since the
    box's current boot, counted for every process."""

    cpu_percent: float | None = None
    memory_bytes: int | None = None
    guest_boot_duration_ms: int | None = None
    spawn_to_ready_ms: int | None = None
    shim_pid: int | None = None
    engine: str | None = None
    #: How the VM started: "boot", "template", "standby" or "snapshot" (ours).
    start_mode: str | None = None
    #: Why no template served the box, when it booted (ours).
    template_miss: str | None = None
    commands_executed_total: int = 0
    bytes_sent_total: int = 0
    bytes_received_total: int = 0
    exec_errors_total: int | None = None
    network_bytes_received: int | None = None
    network_bytes_sent: int | None = None
    network_tcp_connections: int | None = None
    network_tcp_errors: int | None = None
    total_create_duration_ms: int | None = None
    stage_box_config_ms: int | None = None
    stage_box_spawn_ms: int | None = None
    stage_container_init_ms: int | None = None
    stage_filesystem_setup_ms: int | None = None
    stage_guest_rootfs_ms: int | None = None
    stage_image_prepare_ms: int | None = None


@dataclass
class RuntimeMetrics:
    """This runtime object's counters, and the home's boxes as the database has them."""

    boxes_created_total: int = 0
    boxes_failed_total: int = 0
    boxes_stopped_total: int = 0
    num_running_boxes: int = 0
    total_commands_executed: int = 0
    total_exec_errors: int = 0
    boxes_total: int = 0


@dataclass
class ImageInfo:
    reference: str
    id: str
    size_bytes: int
    cached_at: datetime
    repository: str = ""
    tag: str = ""

    @classmethod
    def _from_native(cls, row: tuple[str, str, int, int]) -> "ImageInfo":
        reference, digest, size, pulled_at = row
        repository, colon, tag = reference.rpartition(":")
        if not colon or "/" in tag:
            repository, tag = reference, ""
        return cls(reference, digest, size, datetime.fromtimestamp(pulled_at), repository, tag)


@dataclass
class SnapshotInfo:
    """A snapshot: a box saved whole (memory, devices, disk) at one moment, kept in the
    home. ``created_at`` is in Unix seconds, ``container_disk_bytes`` the size of the box's
    disk as its guest sees it, ``size_bytes`` what the snapshot takes on the host."""

    id: str
    box_id: str
    name: str
    created_at: int
    container_disk_bytes: int
    size_bytes: int
    box_name: str | None = None
    image: str = ""
    cpus: int = 0
    memory_mib: int = 0


class SnapshotOptions:
    """Options of ``SnapshotHandle.create``: none yet (the reference's placeholder)."""


@dataclass
class ExecutionResult:
    """How a command ended: ``exit_code`` (-1 when a signal ended it), ``error_message`` (why
    it did not end by itself: the signal or its timeout), ``signal`` and ``timed_out``."""

    exit_code: int
    error_message: str | None = None
    signal: int = 0
    timed_out: bool = False

    @property
    def success(self) -> bool:
        return self.exit_code == 0 and self.signal == 0

    @classmethod
    def _from_native(cls, end: tuple[int, Optional[str], int, bool]) -> "ExecutionResult":
        return cls(*end)


class ExecStdout:
    """A command's output, line by line without the newline: ``async for line in stream``.
    The box keeps what is not read yet, so a slow reader slows the command, not memory."""

    def __init__(self, native: Any) -> None:
        self._native = native

    def __aiter__(self) -> AsyncIterator[str]:
        return self

    async def __anext__(self) -> str:
        line = await self._native.next_line()
        if line is None:
            raise StopAsyncIteration
        return line

    async def read_line(self) -> str | None:
        """The next line; None at the end."""
        return await self._native.next_line()


class ExecStderr(ExecStdout):
    """A command's stderr, line by line (see ``ExecStdout``)."""


class ExecStdin:
    """A command's stdin. ``close()`` sends end-of-file."""

    def __init__(self, native: Any) -> None:
        self._native = native

    async def write(self, data: Union[bytes, str]) -> None:
        await self._native.write(data)

    async def send_input(self, data: Union[bytes, str]) -> None:
        await self._native.write(data)

    async def write_str(self, text: str) -> None:
        await self._native.write(text)

    async def close(self) -> None:
        await self._native.close()


class Execution:
    """A command running in a box. Its output stays in the box until read, by this or any
    process that attaches by ``id``."""

    def __init__(self, native: Any, stdin: bool = True) -> None:
        self._native = native
        self._stdin = stdin

    @property
    def id(self) -> _Id:
        """The command's id (callable too, as the reference's ``id()``): any process can
        ``attach`` to it."""
        return _Id(self._native.id)

    def stdout(self) -> ExecStdout | None:
        """The stdout stream (once; later calls give None)."""
        stream = self._native.stdout()
        return ExecStdout(stream) if stream is not None else None

    def stderr(self) -> ExecStderr | None:
        stream = self._native.stderr()
        return ExecStderr(stream) if stream is not None else None

    def stdin(self) -> ExecStdin | None:
        """The stdin writer (once); None for a command started with ``stdin=False``."""
        stdin = self._native.stdin() if self._stdin else None
        return ExecStdin(stdin) if stdin is not None else None

    async def wait(self) -> ExecutionResult:
        return ExecutionResult._from_native(await self._native.wait())

    async def kill(self, signal: int = 9) -> None:
        """Sends ``signal`` (SIGKILL by default) to the command."""
        if signal == 9:
            await self._native.kill()
        else:
            await self._native.signal(signal)

    async def signal(self, signal: int) -> None:
        await self._native.signal(signal)

    async def resize_tty(self, rows: int, cols: int) -> None:
        await self._native.resize_tty(rows, cols)


def _exec_args(args: Any, env: Any) -> tuple[list[str], list[tuple[str, str]]]:
    if isinstance(args, str):
        args = [args]
    return [str(a) for a in (args or [])], _pairs(env or [], "env")


class Box:
    """One box of a home. ``async with box:`` starts it and stops it at the end."""

    def __init__(self, native: Any, runtime: "Boxlite | None" = None) -> None:
        self._native = native
        self._runtime = runtime

    @property
    def id(self) -> str:
        return self._native.id

    @property
    def name(self) -> str | None:
        return self._native.name

    def info(self) -> BoxInfo:
        return BoxInfo._from_native(self._native.info())

    async def start(self) -> None:
        await self._native.start()

    async def stop(self) -> None:
        """Stops the box (removed too when its options say ``auto_remove``)."""
        await self._native.stop()

    async def exec(
        self,
        command: str,
        args: Optional[list[str]] = None,
        env: Any = None,
        tty: bool = False,
        user: str | None = None,
        timeout_secs: float | None = None,
        cwd: str | None = None,
        *,
        stdin: bool = True,
    ) -> Execution:
        """Starts ``command`` with ``args``; starts the box first if needed. ``stdin=False``
        gives the command no stdin (reads see end-of-file at once)."""
        args, env = _exec_args(args, env)
        native = await self._native.exec(command, args, env, tty, user, timeout_secs, cwd, stdin)
        return Execution(native)

    async def attach(self, execution_id: str | None = None, stdin: bool = True) -> Execution:
        """A command started earlier, by any process, by its id; its output from where the
        last reader acknowledged it. ``stdin=False`` leaves its stdin to others."""
        if execution_id is None:
            raise InvalidArgumentError("attach: name the execution (its id) to attach to")
        return Execution(await self._native.attach(execution_id), stdin)

    async def copy_in(
        self, host_path: Union[str, os.PathLike], container_dest: str, copy_options: CopyOptions | None = None
    ) -> None:
        options = (copy_options or CopyOptions())._to_native()
        await self._native.copy_in(os.fspath(host_path), container_dest, options)

    async def copy_out(
        self, container_src: str, host_dest: Union[str, os.PathLike], copy_options: CopyOptions | None = None
    ) -> None:
        options = (copy_options or CopyOptions())._to_native()
        await self._native.copy_out(container_src, os.fspath(host_dest), options)

    async def metrics(self) -> BoxMetrics:
        return BoxMetrics(**await self._native.metrics())

    async def pause(self) -> None:
        """Stops the box's vCPUs; its processes and memory are kept. Commands and copies are
        refused until ``resume``; ``stop`` works."""
        await self._native.pause()

    async def resume(self) -> None:
        """Runs a paused box again, from where it stopped."""
        await self._native.resume()

    @property
    def snapshot(self) -> "SnapshotHandle":
        """This box's memory snapshots: ``await box.snapshot.create(name="v1")``."""
        return SnapshotHandle(self)

    async def fork(self, name: str) -> "Box":
        """A second box, ``name``, that continues from this moment of this one (its processes
        still running, its files and memory identical) and is independent afterwards."""
        return Box(await self._native.fork(name), self._runtime)

    async def __aenter__(self) -> "Box":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def __repr__(self) -> str:
        return f"Box(id={self.id!r}, name={self.name!r})"


class SnapshotHandle:
    """A box's snapshots (``box.snapshot``). A snapshot saves the running or paused box
    whole: memory, devices and disk; a stopped box cannot be snapshotted."""

    def __init__(self, box: Box) -> None:
        self._box = box

    async def create(self, *, options: SnapshotOptions | None = None, name: str) -> SnapshotInfo:
        """Saves the box as snapshot ``name`` (unique in the home). A running box runs on."""
        return SnapshotInfo(**await self._box._native.snapshot_create(name))

    async def list(self) -> list[SnapshotInfo]:
        """The snapshots taken of this box, oldest first."""
        return [SnapshotInfo(**s) for s in await self._box._native.snapshots()]

    async def get(self, name: str) -> SnapshotInfo | None:
        """This box's snapshot ``name``; None when it has none of that name."""
        return next((s for s in await self.list() if s.name == name), None)

    async def remove(self, name: str) -> None:
        await self._box._native.snapshot_remove(name)

    async def restore(self, name: str) -> None:
        """Puts the box back to its snapshot ``name``: what happened since is lost, and the
        box runs on from that moment (its processes still running). The snapshot is kept."""
        await self._box._native.snapshot_restore(name)


class ImageHandle:
    """The home's images."""

    def __init__(self, runtime: "Boxlite") -> None:
        self._runtime = runtime

    async def pull(self, reference: str) -> None:
        await self._runtime.pull_image(reference)

    def list(self) -> list[ImageInfo]:
        return self._runtime.list_images()

    async def remove(self, name: str) -> None:
        await self._runtime._native.remove_image(name)


class Boxlite:
    """A home (``~/.boxlite`` by default) and its boxes. Any number of processes may use one
    home at once; a box outlives the process that made it when created with ``detach=True``."""

    def __init__(self, options: Options | None = None) -> None:
        home, registries = (options or Options())._native_args()
        self._native = _native.Runtime(home, registries, False)

    @classmethod
    def _wrap(cls, native: Any) -> "Boxlite":
        runtime = cls.__new__(cls)
        runtime._native = native
        return runtime

    @staticmethod
    def default() -> "Boxlite":
        """The process's default runtime (``BOXLITE_HOME``, else ``~/.boxlite``)."""
        return Boxlite._wrap(_native.Runtime.default(False))

    @staticmethod
    def init_default(options: Options) -> None:
        """Sets the default runtime's options, before its first use in this process."""
        _native.Runtime.init_default(*options._native_args())

    @property
    def home_dir(self) -> str:
        return self._native.home_dir

    @property
    def images(self) -> ImageHandle:
        return ImageHandle(self)

    async def create(self, options: BoxOptions | None = None, name: str | None = None) -> Box:
        """A new box (started by its first ``start`` or ``exec``)."""
        native = await self._native.create((options or BoxOptions())._to_native(), name)
        return Box(native, self)

    async def get(self, id_or_name: str) -> Box | None:
        native = await self._native.get(id_or_name)
        return Box(native, self) if native is not None else None

    async def get_or_create(
        self, options: BoxOptions | None = None, name: str | None = None
    ) -> tuple[Box, bool]:
        """The box named ``name``, or a new one; ``True`` when it was created. Processes
        racing on one name all get the same box."""
        native, created = await self._native.get_or_create(
            (options or BoxOptions())._to_native(), name
        )
        return Box(native, self), created

    async def get_info(self, id_or_name: str) -> BoxInfo | None:
        info = await self._native.get_info(id_or_name)
        return BoxInfo._from_native(info) if info is not None else None

    async def list_info(self, _state: Any = None) -> list[BoxInfo]:
        infos = [BoxInfo._from_native(i) for i in await self._native.list_info()]
        if _state is not None:
            infos = [i for i in infos if i.status == str(_state).lower()]
        return infos

    async def remove(self, id_or_name: str, force: bool = False) -> None:
        await self._native.remove(id_or_name, force)

    async def metrics(self) -> RuntimeMetrics:
        return RuntimeMetrics(**await self._native.metrics())

    async def shutdown(self, timeout: int | None = None) -> None:
        """Stops every running box of the home (each given ``timeout`` seconds)."""
        await self._native.shutdown(timeout)

    def close(self) -> None:
        """Nothing to release: boxes belong to the home, not to this object."""

    async def pull_image(self, reference: str) -> None:
        await self._native.pull_image(reference)

    def list_images(self) -> list[ImageInfo]:
        return [ImageInfo._from_native(row) for row in self._native.list_images()]

    def standbys_ready(self) -> int:
        """Standbys (warm VMs kept with ``BOXLITE_STANDBY=N``) ready for boxes' first starts."""
        return self._native.standbys_ready()

    async def retire_standbys(self) -> int:
        """Powers every standby of the home off; returns how many were running."""
        return await self._native.retire_standbys()

    async def list_snapshots(self) -> list[SnapshotInfo]:
        """Every snapshot of the home, oldest first."""
        return [SnapshotInfo(**s) for s in await self._native.list_snapshots()]

    async def remove_snapshot(self, name: str) -> None:
        """Removes a snapshot; boxes made from it are not affected."""
        await self._native.remove_snapshot(name)

    async def create_from_snapshot(self, snapshot: str, name: str | None = None) -> Box:
        """A new box from ``snapshot``, started: it continues from the moment the snapshot was
        taken, with its own name and network (and no host port forwards)."""
        return Box(await self._native.create_from_snapshot(snapshot, name), self)

    def __repr__(self) -> str:
        return f"Boxlite(home_dir={self.home_dir!r})"
