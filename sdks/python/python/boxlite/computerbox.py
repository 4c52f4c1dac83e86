"""``ComputerBox``: a desktop (Xvfb and a window manager) in a box, operated with the 14
methods of the reference: screenshots, the mouse, the keyboard."""

from __future__ import annotations

import base64
from typing import Any

from . import _native
from .errors import UnsupportedError
from .runtime import Boxlite
from .simplebox import TypedBox


class ComputerBox(TypedBox):
    """A box with a ``screen_width``×``screen_height`` desktop (1024×768), ready once
    entered. ``memory`` in MiB, ``cpu`` vCPUs. There is no web GUI: ``gui_http_port`` and
    ``gui_https_port`` are accepted for the reference's scripts and must stay unset or at
    their defaults."""

    def __init__(
        self,
        cpu: int = 2,
        memory: int = 2048,
        gui_http_port: int = 3000,
        gui_https_port: int = 3001,
        runtime: Boxlite | None = None,
        *,
        screen_width: int = 1024,
        screen_height: int = 768,
        **kwargs: Any,
    ) -> None:
        if (gui_http_port, gui_https_port) != (3000, 3001):
            raise UnsupportedError("ComputerBox has no web GUI: gui_http_port/gui_https_port")
        kwargs.setdefault("cpus", cpu)
        kwargs.setdefault("memory_mib", memory)
        super().__init__(runtime=runtime, **kwargs)
        self._screen = (screen_width, screen_height)

    async def _make_native(self, runtime: Boxlite, options: dict[str, Any]) -> Any:
        return await _native.ComputerBox.create(runtime._native, options, *self._screen)

    async def wait_until_ready(self, timeout: int = 60) -> None:
        """Waits until the desktop answers (it does once entered)."""
        await self._handle.wait_until_ready(float(timeout))

    async def screenshot(self) -> dict:
        """``{"data": base64 PNG, "width": w, "height": h, "format": "png"}``."""
        png, width, height = await self._handle.screenshot()
        return {
            "data": base64.b64encode(png).decode("ascii"),
            "width": width,
            "height": height,
            "format": "png",
        }

    async def mouse_move(self, x: int, y: int) -> None:
        await self._handle.mouse_move(x, y)

    async def left_click(self) -> None:
        await self._handle.left_click()

    async def right_click(self) -> None:
        await self._handle.right_click()

    async def middle_click(self) -> None:
        await self._handle.middle_click()

    async def double_click(self) -> None:
        await self._handle.double_click()

    async def triple_click(self) -> None:
        await self._handle.triple_click()

    async def left_click_drag(self, start_x: int, start_y: int, end_x: int, end_y: int) -> None:
        await self._handle.left_click_drag(start_x, start_y, end_x, end_y)

    async def cursor_position(self) -> tuple[int, int]:
        return tuple(await self._handle.cursor_position())  # type: ignore[return-value]

    async def type(self, text: str) -> None:
        """Types ``text`` as keystrokes into the focused window."""
        await self._handle.type(text)

    async def key(self, text: str) -> None:
        """Presses keys by X name: ``"Return"``, ``"ctrl+a"``, ``"alt+F4"``."""
        await self._handle.key(text)

    async def scroll(self, x: int, y: int, direction: str, amount: int = 3) -> None:
        """Turns the wheel ``amount`` steps ``up``, ``down``, ``left`` or ``right`` at
        (``x``, ``y``)."""
        await self._handle.scroll(x, y, direction, amount)

    async def get_screen_size(self) -> tuple[int, int]:
        return tuple(await self._handle.get_screen_size())  # type: ignore[return-value]
