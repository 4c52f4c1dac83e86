"""The box types on their real images: CodeBox (python image), BrowserBox (browser image),
ComputerBox (desktop image), InteractiveBox (busybox). One box each for all its checks: a
TCG boot of these images costs seconds."""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.request

import pytest

import boxlite
from boxlite import Boxlite, Options
from boxlite.sync_api import SyncCodeBox, SyncBoxlite

from conftest import READY_TIMEOUT, built_image


async def test_code_box_keeps_state_and_gives_rich_results(home, tmp_path):
    runtime = Boxlite(Options(home_dir=home))
    async with boxlite.CodeBox(image=built_image("python"), runtime=runtime, network="disabled",
                               ready_timeout=READY_TIMEOUT) as box:
        first = await box.run("x = 41\nprint('hello')\nx + 1")
        assert first == "hello\n" and first.text == "42" and first.success
        assert (await box.run("x")).text == "41"
        failed = await box.run("def f():\n    return 1/0\nf()")
        assert failed.error.name == "ZeroDivisionError" and "ZeroDivisionError" in failed
        syntax = await box.run("def (")
        assert syntax.error.name == "SyntaxError"
        # An endless loop is interrupted at its timeout; the interpreter keeps its state.
        stuck = await box.run("while True: pass", timeout=2)
        assert stuck.error is not None
        assert (await box.run("x")).text == "41"
        plot = await box.run("import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nNone")
        assert plot.images and base64.b64decode(plot.images[0])[:8] == b"\x89PNG\r\n\x1a\n"
        script = tmp_path / "script.py"
        script.write_text("print(x * 2)\n")
        assert await box.run_script(script) == "82\n"
        # No network: pip fails with a clear error, the box stays usable.
        with pytest.raises(boxlite.BoxliteError):
            await box.install_package("surely-not-reachable")
        assert (await box.exec("python3", "-c", "print(6 * 7)")).stdout == "42\n"
    assert await runtime.list_info() == []


def test_sync_code_box(home):
    with SyncCodeBox(image=built_image("python"), runtime=SyncBoxlite(Options(home_dir=home)),
                     ready_timeout=READY_TIMEOUT) as box:
        assert box.run("print(sum(range(10)))") == "45\n"


async def test_browser_box_serves_cdp_on_the_host(home):
    runtime = Boxlite(Options(home_dir=home))
    async with boxlite.BrowserBox(runtime=runtime, image=built_image("browser"),
                                  ready_timeout=READY_TIMEOUT) as box:
        endpoint = await box.endpoint()
        assert endpoint.startswith("ws://127.0.0.1:") and "/devtools/browser/" in endpoint
        with urllib.request.urlopen(f"{await box.http_endpoint()}/json/version", timeout=30) as reply:
            version = json.load(reply)
        assert version["webSocketDebuggerUrl"] == endpoint
        assert "Chrome" in version["Browser"]
        assert await box.playwright_endpoint() == endpoint
        # A browser that crashes is seen, and started again.
        assert await box.is_running()
        await box.exec("sh", "-c", "pkill -9 chromium; true")
        for _ in range(1200):  # a 60 s deadline
            if not await box.is_running():
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the killed browser still answers")
        await box.restart()
        assert await box.is_running() and await box.endpoint() != endpoint
    with pytest.raises(boxlite.UnsupportedError):
        boxlite.BrowserBox(boxlite.BrowserBoxOptions(browser="firefox"))


async def test_computer_box_is_operated_with_its_methods(home):
    runtime = Boxlite(Options(home_dir=home))
    async with boxlite.ComputerBox(runtime=runtime, image=built_image("desktop"),
                                   memory=1024, ready_timeout=READY_TIMEOUT) as box:
        assert await box.get_screen_size() == (1024, 768)
        shot = await box.screenshot()
        assert (shot["width"], shot["height"], shot["format"]) == (1024, 768, "png")
        assert base64.b64decode(shot["data"])[:4] == b"\x89PNG"
        await box.mouse_move(100, 200)
        assert await box.cursor_position() == (100, 200)
        await box.left_click_drag(10, 10, 300, 300)
        assert await box.cursor_position() == (300, 300)
        await box.scroll(50, 50, "down", 2)
        await box.key("Escape")
        await box.type("hi")
        with pytest.raises(boxlite.InvalidArgumentError):
            await box.mouse_move(5000, 10)
        with pytest.raises(boxlite.InvalidArgumentError):
            await box.scroll(10, 10, "sideways")
        await box.left_click()  # still usable


async def test_interactive_box_drives_a_shell(home, busybox):
    runtime = Boxlite(Options(home_dir=home))
    async with boxlite.InteractiveBox(busybox, runtime=runtime, memory_mib=256,
                                      ready_timeout=READY_TIMEOUT) as shell:
        await shell.write("echo $((6 * 7))\n")
        assert "42" in await shell.read_until("42\r\n", timeout=60)
        await shell.resize(40, 120)
        await shell.write("stty size\n")
        assert "40 120" in await shell.read_until("40 120", timeout=60)
        with pytest.raises(boxlite.BoxliteError, match="did not appear"):
            await shell.read_until("never printed", timeout=0.5)
        await shell.write("exit 3\n")
        assert (await shell.wait()).exit_code == 3
