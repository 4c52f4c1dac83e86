"""Exceptions of boxlite.

Every error of the Rust core arrives as the class of its kind (``NotFoundError``,
``InvalidStateError``, ...): subclasses of ``BoxliteError`` and ``RuntimeError``, each with the
kind's numeric ``code`` (the C SDK's). ``ExecError``, ``TimeoutError`` and ``ParseError`` are
raised by the Python layer.
"""

from __future__ import annotations


class BoxliteError(Exception):
    """Base of every boxlite exception."""


class _NativeError(BoxliteError, RuntimeError):
    """An error of the Rust core. ``code`` is its kind's number, ``kind`` its name."""

    code: int = 0
    kind: str = ""


class InternalError(_NativeError):
    """Something failed that should not have: a bug."""

    code, kind = 1, "Internal"


class NotFoundError(_NativeError):
    """No box, execution or image by that id or name."""

    code, kind = 2, "NotFound"


class AlreadyExistsError(_NativeError):
    """A box of that name exists already."""

    code, kind = 3, "AlreadyExists"


class InvalidStateError(_NativeError):
    """The box is not in a state that allows the operation."""

    code, kind = 4, "InvalidState"


class InvalidArgumentError(_NativeError, ValueError):
    """An option or argument is wrong; the message says which and why."""

    code, kind = 5, "InvalidArgument"


class ConfigError(_NativeError):
    """The host or home is not set up for this; the message says what to change."""

    code, kind = 6, "Config"


class StorageError(_NativeError):
    """Files, locks and copies on the host."""

    code, kind = 7, "Storage"


class ImageError(_NativeError):
    """Pulling, storing or unpacking an image."""

    code, kind = 8, "Image"


class NetworkError(_NativeError):
    """The box's network or port forwards."""

    code, kind = 9, "Network"


class ExecutionError(_NativeError):
    """A command in the box could not run (or a copy in the box failed)."""

    code, kind = 10, "Execution"


class StoppedError(_NativeError):
    """The box is stopped: start it first."""

    code, kind = 11, "Stopped"


class EngineError(_NativeError):
    """The VM could not be started or prepared."""

    code, kind = 12, "Engine"


class UnsupportedError(_NativeError):
    """Not supported here, or not yet; the message says which."""

    code, kind = 13, "Unsupported"


class DatabaseError(_NativeError):
    """The home's databases."""

    code, kind = 14, "Database"


class PortalError(_NativeError):
    """The host-guest channel."""

    code, kind = 15, "Portal"


class RpcError(_NativeError):
    """Talking to the box's shim or guest agent failed."""

    code, kind = 16, "Rpc"


# Kinds of the reference's service-backed runtime; never raised by a local runtime, present
# so that ``except`` clauses written for the reference keep working.
class MetadataError(_NativeError):
    code, kind = 17, "Metadata"


class ResourceExhaustedError(_NativeError):
    code, kind = 18, "ResourceExhausted"


class SessionReapedError(_NativeError):
    code, kind = 19, "SessionReaped"


class UpstreamUnavailableError(_NativeError):
    code, kind = 20, "UpstreamUnavailable"


class ExecError(BoxliteError):
    """A command run by ``SimpleBox.exec(..., check=True)`` failed."""

    def __init__(self, command: str, exit_code: int, stderr: str) -> None:
        self.command = command
        self.exit_code = exit_code
        self.stderr = stderr
        super().__init__(f"command {command!r} exited with code {exit_code}: {stderr.strip()}")


class TimeoutError(BoxliteError):  # noqa: A001 - the reference's name
    """Something did not happen within its time."""


class ParseError(BoxliteError):
    """Output of a box could not be understood."""


_BY_KIND: dict[str, type[_NativeError]] = {
    cls.kind: cls
    for cls in (
        InternalError,
        NotFoundError,
        AlreadyExistsError,
        InvalidStateError,
        InvalidArgumentError,
        ConfigError,
        StorageError,
        ImageError,
        NetworkError,
        ExecutionError,
        StoppedError,
        EngineError,
        UnsupportedError,
        DatabaseError,
        PortalError,
        RpcError,
    )
}

__all__ = [name for name in dir() if name.endswith("Error") and not name.startswith("_")]
