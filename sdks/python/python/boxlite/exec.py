"""``ExecResult``: what ``SimpleBox.exec`` returns (the reference's ``boxlite.exec``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ExecResult:
    """A command's whole output and how it ended. ``exit_code`` is -1 when a signal ended
    it; ``error_message`` says why it did not end by itself (the signal, its timeout)."""

    exit_code: int
    stdout: str
    stderr: str
    error_message: str | None = None

    @property
    def success(self) -> bool:
        return self.exit_code == 0 and self.error_message is None


__all__ = ["ExecResult"]
