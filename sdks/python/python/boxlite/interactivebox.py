"""``InteractiveBox``: a shell on a pseudo-terminal in a box, driven by a program (write
keys, read what the terminal shows, resize it, wait for the shell to end)."""

from __future__ import annotations

from typing import Any, Union

from . import _native
from .runtime import Boxlite, ExecutionResult
from .simplebox import TypedBox


class InteractiveBox(TypedBox):
    """A box running ``shell`` on a 24×80 terminal once entered."""

    def __init__(
        self,
        image: str,
        shell: str = "/bin/sh",
        tty: bool | None = None,
        memory_mib: int | None = None,
        cpus: int | None = None,
        runtime: Boxlite | None = None,
        name: str | None = None,
        auto_remove: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            image=image,
            memory_mib=memory_mib,
            cpus=cpus,
            runtime=runtime,
            name=name,
            auto_remove=auto_remove,
            **kwargs,
        )
        self._shell = shell

    async def _make_native(self, runtime: Boxlite, options: dict[str, Any]) -> Any:
        return await _native.InteractiveBox.create(runtime._native, options, self._shell)

    async def write(self, data: Union[bytes, str]) -> None:
        """Types ``data`` (a line needs its ``\\n``; Ctrl-C is ``\\x03``)."""
        await self._handle.write(data.encode() if isinstance(data, str) else bytes(data))

    async def read(self) -> bytes | None:
        """The next terminal output (echo and escape sequences included); None once the
        shell ended and everything was read."""
        return await self._handle.read()

    async def read_until(self, pattern: str, timeout: float = 10.0) -> str:
        """Terminal output up to and including ``pattern``; what follows is kept for the
        next read. Raises ``ExecutionError`` when it does not appear within ``timeout``
        (nothing read is lost)."""
        return await self._handle.read_until(pattern, float(timeout))

    async def resize(self, rows: int, cols: int) -> None:
        await self._handle.resize(rows, cols)

    async def wait(self) -> ExecutionResult:
        """Waits for the shell to end (``exit``, or a signal)."""
        return ExecutionResult._from_native(await self._handle.wait())
