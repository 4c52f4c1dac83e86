"""``CodeBox``: a persistent Python interpreter in a box (state kept between runs), with
rich results. ``run`` returns a ``str`` (the output, as the reference's does) that also
carries the structured result: ``.stdout``, ``.stderr``, ``.result``, ``.display``,
``.error``."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Union

from . import _native
from .errors import InvalidArgumentError
from .runtime import Boxlite
from .simplebox import TypedBox


@dataclass
class CodeError:
    """An exception raised by the code: its class name, its message, the traceback lines
    (of the code's own frames)."""

    name: str
    value: str
    traceback: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return "".join(self.traceback) or f"{self.name}: {self.value}\n"


class CodeResult(str):
    """What a run produced. As a string: stdout, then stderr, then the error's traceback
    (so ``print(await box.run(code))`` shows what a terminal would)."""

    stdout: str
    stderr: str
    result: dict[str, str] | None
    display: list[dict[str, str]]
    error: CodeError | None

    def __new__(cls, raw: dict[str, Any]) -> "CodeResult":
        error = raw.get("error")
        code_error = CodeError(**error) if error else None
        text = raw.get("stdout", "") + raw.get("stderr", "") + (str(code_error) if code_error else "")
        self = super().__new__(cls, text)
        self.stdout = raw.get("stdout", "")
        self.stderr = raw.get("stderr", "")
        self.result = raw.get("result")
        self.display = raw.get("display", [])
        self.error = code_error
        return self

    @property
    def success(self) -> bool:
        return self.error is None

    @property
    def text(self) -> str | None:
        """The value of the code's last expression, as ``repr`` shows it (None when the
        code ended with a statement)."""
        return self.result.get("text/plain") if self.result else None

    @property
    def images(self) -> list[str]:
        """PNG images (base64) the code displayed or returned, such as matplotlib figures."""
        bundles = ([self.result] if self.result else []) + list(self.display)
        return [b["image/png"] for b in bundles if "image/png" in b]


class CodeBox(TypedBox):
    """A box running a Python interpreter whose state persists between ``run`` calls. The
    default image is the python image ``scripts/build-images.sh python`` builds (numpy,
    pandas, matplotlib, pillow); any image with ``python3`` works."""

    def __init__(
        self,
        image: str | None = None,
        memory_mib: int | None = None,
        cpus: int | None = None,
        runtime: Boxlite | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(image=image, memory_mib=memory_mib, cpus=cpus, runtime=runtime, **kwargs)

    async def _make_native(self, runtime: Boxlite, options: dict[str, Any]) -> Any:
        return await _native.CodeBox.create(runtime._native, options)

    async def run(self, code: str, timeout: float | None = None) -> CodeResult:
        """Runs ``code``; its last expression is the result. Past ``timeout`` seconds
        (default 300) it is interrupted (KeyboardInterrupt, state kept) and the result's
        ``error`` says so."""
        return CodeResult(json.loads(await self._handle.run(code, timeout)))

    async def run_script(self, script_path: Union[str, os.PathLike]) -> CodeResult:
        """Runs the Python file at ``script_path`` on this host."""
        return CodeResult(json.loads(await self._handle.run_script(os.fspath(script_path))))

    async def install_package(self, package: str) -> str:
        return await self.install_packages(package)

    async def install_packages(self, *packages: str) -> str:
        """pip-installs ``packages`` in the box (needs an index it can reach); pip's
        output. A failure raises ``ExecutionError`` saying why."""
        if not packages:
            raise InvalidArgumentError("install_packages: name at least one package")
        stdout, _stderr, _code, _message = await self._handle.install_packages(list(packages))
        return stdout
