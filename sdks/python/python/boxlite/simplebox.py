"""``SimpleBox``: a box for running commands to completion, as an async context manager.

The box types (``CodeBox``, ``BrowserBox``, ``ComputerBox``, ``InteractiveBox``) are
``SimpleBox``es made by the Rust core's box types: they override ``_make``.
"""

from __future__ import annotations

import os
from typing import Any, Union

from .errors import ExecError, InvalidStateError, UnsupportedError
from .exec import ExecResult
from .options import BoxOptions, CopyOptions
from .runtime import Box, BoxInfo, BoxMetrics, Boxlite, _exec_args


class SimpleBox:
    """A box that starts when entered (``async with``, or ``await start()``) and is stopped
    (and, with ``auto_remove``, removed) when left. Extra keyword arguments are
    ``BoxOptions`` fields (``env``, ``volumes``, ``ports``, ``working_dir``, ...)."""

    def __init__(
        self,
        image: str | None = None,
        rootfs_path: str | None = None,
        memory_mib: int | None = None,
        cpus: int | None = None,
        runtime: Boxlite | None = None,
        name: str | None = None,
        auto_remove: bool = True,
        reuse_existing: bool = False,
        **kwargs: Any,
    ) -> None:
        self._runtime = runtime
        self._name = name
        self._reuse_existing = reuse_existing
        self._options = BoxOptions(
            image=image,
            rootfs_path=rootfs_path,
            memory_mib=memory_mib,
            cpus=cpus,
            auto_remove=auto_remove,
            **kwargs,
        )
        self._box: Box | None = None
        self._created = False

    # -- what the box types override -----------------------------------------------------

    async def _make(self, runtime: Boxlite) -> Box:
        """Creates (or, with ``reuse_existing``, finds) and starts the box."""
        options = self._options._to_native()
        if self._reuse_existing and self._name is not None:
            native, self._created = await runtime._native.get_or_create(options, self._name)
        else:
            native = await runtime._native.create(options, self._name)
            self._created = True
        box = Box(native, runtime)
        await box.start()
        return box

    async def _end(self) -> None:
        """Stops the box (``auto_remove`` removes it too)."""
        if self._box is not None:
            await self._box.stop()

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def box(self) -> Box:
        """The box underneath (for streaming execs, attach, ...)."""
        if self._box is None:
            raise InvalidStateError(
                f"{type(self).__name__} is not started: use `async with` or `await start()`"
            )
        return self._box

    async def start(self) -> "SimpleBox":
        if self._box is None:
            self._box = await self._make(self._runtime or Boxlite.default())
        else:
            await self._box.start()
        return self

    async def stop(self) -> None:
        await self._end()

    async def shutdown(self) -> None:
        await self._end()

    async def __aenter__(self) -> "SimpleBox":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self._end()

    @property
    def id(self) -> str:
        return self.box.id

    @property
    def name(self) -> str | None:
        return self.box.name if self._box is not None else self._name

    @property
    def created(self) -> bool:
        """Whether entering made a new box (``False`` when ``reuse_existing`` found one)."""
        return self._created

    # -- using it ------------------------------------------------------------------------

    async def exec(
        self,
        cmd: str,
        *args: str,
        env: dict[str, str] | None = None,
        user: str | None = None,
        timeout: float | None = None,
        cwd: str | None = None,
        check: bool = False,
    ) -> ExecResult:
        """Runs ``cmd`` with ``args`` to its end: its whole stdout and stderr and how it
        ended. ``check=True`` raises ``ExecError`` when it does not exit 0."""
        arguments, pairs = _exec_args(list(args), env)
        stdout, stderr, end = await self.box._native.run(cmd, arguments, pairs, user, timeout, cwd)
        exit_code, error_message, _signal, _timed_out = end
        result = ExecResult(exit_code, stdout, stderr, error_message)
        if check and not (exit_code == 0 and error_message is None):
            raise ExecError(" ".join([cmd, *args]), exit_code, stderr)
        return result

    async def copy_in(
        self,
        host_path: Union[str, os.PathLike],
        container_dest: str,
        *,
        overwrite: bool = True,
        follow_symlinks: bool = False,
    ) -> None:
        options = CopyOptions(overwrite=overwrite, follow_symlinks=follow_symlinks)
        await self.box.copy_in(host_path, container_dest, options)

    async def copy_out(
        self,
        container_src: str,
        host_dest: Union[str, os.PathLike],
        *,
        overwrite: bool = True,
        follow_symlinks: bool = False,
    ) -> None:
        options = CopyOptions(overwrite=overwrite, follow_symlinks=follow_symlinks)
        await self.box.copy_out(container_src, host_dest, options)

    async def info(self) -> BoxInfo:
        return self.box.info()

    async def metrics(self) -> BoxMetrics:
        return await self.box.metrics()

    def __repr__(self) -> str:
        state = self._box.id if self._box is not None else "not started"
        return f"{type(self).__name__}({state})"


class TypedBox(SimpleBox):
    """A ``SimpleBox`` made by one of the Rust core's box types (``_make_native``), which
    adds its own methods on the native handle (``_handle``) and is removed when it ends."""

    def __init__(self, **kwargs: Any) -> None:
        if kwargs.pop("auto_remove", True) is not True:
            raise UnsupportedError(f"{type(self).__name__} is always removed when it ends")
        if kwargs.pop("reuse_existing", False):
            raise UnsupportedError(f"{type(self).__name__} cannot reuse an existing box")
        super().__init__(**kwargs)
        self._typed: Any = None

    async def _make_native(self, runtime: Boxlite, options: dict[str, Any]) -> Any:
        raise NotImplementedError

    async def _make(self, runtime: Boxlite) -> Box:
        options = self._options._to_native()
        # The box type's own defaults (image, memory, ...) stay where the caller gave none.
        options.pop("auto_remove", None)
        self._typed = await self._make_native(runtime, options)
        self._created = True
        return Box(self._typed.litebox(), runtime)

    async def _end(self) -> None:
        if self._typed is not None:
            typed, self._typed = self._typed, None
            await typed.remove()

    @property
    def _handle(self) -> Any:
        """The native box type (raises when not started, or after the end)."""
        self.box
        if self._typed is None:
            raise InvalidStateError(f"{type(self).__name__} has ended; create a new one")
        return self._typed
