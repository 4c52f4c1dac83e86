"""boxlite: micro-VM sandboxes for untrusted code.

``Boxlite`` is a home (``~/.boxlite``) and its boxes; ``Box`` one box (an OCI image booted as
a small VM); ``Execution`` a command in it with streamed output. ``SimpleBox``, ``CodeBox``,
``BrowserBox``, ``ComputerBox`` and ``InteractiveBox`` are ready-made boxes for the common
jobs. Everything here is async; ``boxlite.sync_api`` is the same API blocking.
"""

from __future__ import annotations

from . import _native
from .browserbox import BrowserBox, BrowserBoxOptions
from .codebox import CodeBox, CodeError, CodeResult
from .computerbox import ComputerBox
from .errors import *  # noqa: F403 - the exception classes
from .errors import __all__ as _errors
from .exec import ExecResult
from .interactivebox import InteractiveBox
from .options import (
    AdvancedBoxOptions,
    BoxOptions,
    ContainerCapabilities,
    CopyOptions,
    HealthCheckOptions,
    ImageRegistry,
    NetworkSpec,
    Options,
    Secret,
    SecurityOptions,
)
from .runtime import (
    Box,
    BoxInfo,
    BoxMetrics,
    Boxlite,
    BoxStateInfo,
    ExecStderr,
    ExecStdin,
    ExecStdout,
    Execution,
    ExecutionResult,
    ImageHandle,
    ImageInfo,
    RuntimeMetrics,
    SnapshotHandle,
    SnapshotInfo,
    SnapshotOptions,
)
from .simplebox import SimpleBox

__version__: str = _native.__version__


def version(distribution_name: str = "boxlite") -> str:
    """The installed version (the reference's ``boxlite.version``)."""
    from importlib.metadata import version as _version

    return _version(distribution_name)


__all__ = [
    "AdvancedBoxOptions",
    "Box",
    "BoxInfo",
    "BoxMetrics",
    "BoxOptions",
    "BoxStateInfo",
    "Boxlite",
    "BrowserBox",
    "BrowserBoxOptions",
    "CodeBox",
    "CodeError",
    "CodeResult",
    "ComputerBox",
    "ContainerCapabilities",
    "CopyOptions",
    "ExecResult",
    "ExecStderr",
    "ExecStdin",
    "ExecStdout",
    "Execution",
    "ExecutionResult",
    "HealthCheckOptions",
    "ImageHandle",
    "ImageInfo",
    "ImageRegistry",
    "InteractiveBox",
    "NetworkSpec",
    "Options",
    "RuntimeMetrics",
    "Secret",
    "SecurityOptions",
    "SimpleBox",
    "SnapshotHandle",
    "SnapshotInfo",
    "SnapshotOptions",
    "version",
    *_errors,
]
