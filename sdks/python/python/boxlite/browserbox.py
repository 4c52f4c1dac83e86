"""``BrowserBox``: headless Chromium in a box, its DevTools (CDP) endpoint on this host's
127.0.0.1 for Playwright's ``connect_over_cdp``, Puppeteer or any CDP client."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import _native
from .errors import UnsupportedError
from .runtime import Boxlite
from .simplebox import TypedBox


@dataclass
class BrowserBoxOptions:
    """``memory`` in MiB and ``cpu`` vCPUs; only ``browser="chromium"`` is available. The
    CDP port on the host is picked free; ``cdp_port``/``port`` are not settable yet."""

    browser: str = "chromium"
    memory: int = 2048
    cpu: int = 2
    port: int | None = None
    cdp_port: int | None = None


class BrowserBox(TypedBox):
    """A box with Chromium ready: ``await box.endpoint()`` is its CDP WebSocket URL."""

    browser: str = "chromium"

    def __init__(
        self,
        options: BrowserBoxOptions | None = None,
        runtime: Boxlite | None = None,
        **kwargs: Any,
    ) -> None:
        options = options or BrowserBoxOptions()
        if options.browser != "chromium":
            raise UnsupportedError(f"BrowserBox: browser {options.browser!r}: only chromium")
        if options.port is not None or options.cdp_port is not None:
            raise UnsupportedError("BrowserBox: the CDP port is chosen free on the host")
        kwargs.setdefault("memory_mib", options.memory)
        kwargs.setdefault("cpus", options.cpu)
        super().__init__(runtime=runtime, **kwargs)
        self.browser = options.browser

    async def _make_native(self, runtime: Boxlite, options: dict[str, Any]) -> Any:
        return await _native.BrowserBox.create(runtime._native, options)

    async def endpoint(self, timeout: int = 60) -> str:
        """The browser's CDP WebSocket URL (``ws://127.0.0.1:PORT/devtools/browser/...``);
        the browser is ready once the box is entered."""
        websocket, _http = await self._handle.endpoints()
        return websocket

    async def http_endpoint(self) -> str:
        """The CDP HTTP endpoint (``http://127.0.0.1:PORT``), which ``connect_over_cdp``
        also takes."""
        _websocket, http = await self._handle.endpoints()
        return http

    async def playwright_endpoint(self, timeout: int = 60) -> str:
        """For ``playwright.chromium.connect_over_cdp``: the CDP WebSocket URL."""
        return await self.endpoint(timeout)

    async def is_running(self) -> bool:
        """Whether the browser answers now (it may have crashed)."""
        return await self._handle.is_running()

    async def restart(self) -> None:
        """Starts the browser again (after a crash); ``endpoint()`` then names the new one,
        and CDP clients must connect again."""
        await self._handle.restart()

    async def connect(self, timeout: int = 60) -> Any:
        """A Playwright ``Browser`` connected over CDP (needs the ``playwright`` package)."""
        try:
            from playwright.async_api import async_playwright  # type: ignore[import-not-found]
        except ImportError as missing:
            raise ImportError(
                "BrowserBox.connect needs Playwright (pip install playwright); or pass "
                "await box.endpoint() to any CDP client"
            ) from missing
        playwright = await async_playwright().start()
        return await playwright.chromium.connect_over_cdp(await self.endpoint(timeout), timeout=timeout * 1000)
