"""Boxlite, Box and Execution (async) on real VMs: lifecycle, streaming, stdin, errors,
copies, metrics, images from a registry."""

from __future__ import annotations

import asyncio
import os
import pathlib

import pytest

import boxlite
from boxlite import BoxOptions, Boxlite, CopyOptions, ImageRegistry, Options

from conftest import READY_TIMEOUT


def options(image: str, **kwargs) -> BoxOptions:
    kwargs.setdefault("memory_mib", 256)
    return BoxOptions(image=image, ready_timeout=READY_TIMEOUT, **kwargs)


async def test_a_box_lives_runs_streams_and_is_removed(home, busybox, tmp_path):
    runtime = Boxlite(Options(home_dir=home))
    box = await runtime.create(options(busybox, auto_remove=False, env=[("GREETING", "hi")]), name="first")
    assert box.name == "first"
    assert box.info().status == "configured"
    assert [i.name for i in await runtime.list_info()] == ["first"]

    # Output streams line by line, stderr apart; the exit code comes back.
    execution = await box.exec("sh", ["-c", "echo $GREETING; echo two; echo oops >&2; exit 3"])
    assert isinstance(execution.id, str) and execution.id() == execution.id
    assert [line async for line in execution.stdout()] == ["hi", "two"]
    assert [line async for line in execution.stderr()] == ["oops"]
    result = await execution.wait()
    assert (result.exit_code, result.error_message, result.success) == (3, None, False)
    info = box.info()
    assert info.status == "running" and info.state.running and info.pid

    # stdin: written with backpressure, end-of-file by close().
    cat = await box.exec("cat")
    stdin = cat.stdin()
    await stdin.write(b"line one\n")
    await stdin.send_input("line two\n")
    await stdin.close()
    assert [line async for line in cat.stdout()] == ["line one", "line two"]
    assert (await cat.wait()).exit_code == 0

    # Working directory, user, environment per exec; a timeout ends the command.
    pwd = await box.exec("sh", ["-c", "pwd; id -u; echo $X"], env={"X": "y"}, cwd="/tmp", user="root")
    assert [line async for line in pwd.stdout()] == ["/tmp", "0", "y"]
    slow = await box.exec("sleep", ["30"], timeout_secs=1)
    ended = await slow.wait()
    assert ended.exit_code != 0 and ended.error_message

    # kill with a signal.
    sleeper = await box.exec("sleep", ["30"])
    await sleeper.kill()
    killed = await sleeper.wait()
    assert killed.signal == 9 and killed.exit_code == -1 and killed.error_message

    # Copies both ways.
    source = tmp_path / "in.txt"
    source.write_text("payload")
    await box.copy_in(str(source), "/root/in.txt")
    await box.copy_out("/root/in.txt", tmp_path / "out.txt", CopyOptions())
    assert (tmp_path / "out.txt").read_text() == "payload"

    metrics = await box.metrics()
    assert metrics.commands_executed_total >= 5 and metrics.memory_bytes
    runtime_metrics = await runtime.metrics()
    assert runtime_metrics.boxes_created_total == 1 and runtime_metrics.num_running_boxes == 1

    # Another handle on the same box, by name; a running command re-attached by id.
    again = await runtime.get("first")
    assert again is not None and again.id == box.id
    running = await box.exec("sh", ["-c", "echo early; sleep 1; echo late"])
    reattached = await again.attach(running.id)
    assert [line async for line in reattached.stdout()] == ["early", "late"]

    await box.stop()
    assert box.info().status == "stopped"
    await runtime.remove("first")
    assert await runtime.get("first") is None
    assert await runtime.get_info("first") is None


async def test_errors_are_typed_and_say_what_was_wrong(home, busybox):
    runtime = Boxlite(Options(home_dir=home))
    with pytest.raises(boxlite.NotFoundError) as missing:
        await runtime.remove("nothing-here")
    assert missing.value.code == 2 and isinstance(missing.value, RuntimeError)
    assert isinstance(missing.value, boxlite.BoxliteError)
    assert "nothing-here" in str(missing.value)

    await runtime.create(options(busybox), name="taken")
    with pytest.raises(boxlite.AlreadyExistsError):
        await runtime.create(options(busybox), name="taken")
    with pytest.raises(boxlite.InvalidArgumentError, match="cpus"):
        await runtime.create(options(busybox, cpus=0))
    with pytest.raises(boxlite.InvalidArgumentError, match="ports"):
        await runtime.create(options(busybox, ports=["not-a-port"]))
    with pytest.raises(boxlite.UnsupportedError, match="entrypoint"):
        await runtime.create(options(busybox, entrypoint=["/bin/sh"]))
    with pytest.raises(boxlite.InvalidArgumentError, match="volume"):
        BoxOptions(volumes=["just-one-part"])._to_native()
    # A command that does not exist: the box stays usable.
    box = await runtime.create(options(busybox))
    try:
        missing_program = await (await box.exec("no-such-program")).wait()
        assert missing_program.exit_code == 127
    except boxlite.ExecutionError as refused:
        assert "no-such-program" in str(refused)
    ok = await box.exec("true")
    assert (await ok.wait()).exit_code == 0
    await box.stop()
    # The defaults: auto_remove, so a stopped box is gone.
    assert await runtime.get(box.id) is None


async def test_the_event_loop_keeps_running_while_boxes_work(home, busybox):
    runtime = Boxlite(Options(home_dir=home))
    box = await runtime.create(options(busybox))
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    execution = await box.exec("sleep", ["1"])
    await execution.wait()
    task.cancel()
    assert ticks > 20, "the loop was blocked while the box booted and the command ran"
    # A cancelled await leaves the runtime usable.
    waiting = asyncio.ensure_future((await box.exec("sleep", ["30"])).wait())
    await asyncio.sleep(0.1)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert (await (await box.exec("true")).wait()).exit_code == 0
    await box.stop()


async def test_images_come_from_the_registries_of_the_options(home, busybox, registry):
    # The reference's form (ImageRegistry with transport="http") and plain host names.
    for tag, registries in (
        ("first", [ImageRegistry(host=registry.host, transport="http")]),
        ("second", [registry.host]),
    ):
        registry.push(busybox, f"busybox:{tag}")
        runtime = Boxlite(Options(home_dir=home, image_registries=registries))
        async with boxlite.SimpleBox(image=f"busybox:{tag}", runtime=runtime, memory_mib=256,
                                     ready_timeout=READY_TIMEOUT) as box:
            assert (await box.exec("echo", "pulled")).stdout == "pulled\n"
        assert f"busybox:{tag}" in [i.reference for i in runtime.list_images()]
    with pytest.raises(boxlite.UnsupportedError, match="credentials"):
        Boxlite(Options(home_dir=home, image_registries=[ImageRegistry(host="x", password="p")]))


async def test_simple_box_collects_output_and_cleans_up(home, busybox, tmp_path):
    runtime = Boxlite(Options(home_dir=home))
    async with boxlite.SimpleBox(image=busybox, runtime=runtime, memory_mib=256,
                                 ready_timeout=READY_TIMEOUT, name="simple") as box:
        result = await box.exec("sh", "-c", "echo out; echo err >&2; exit 4")
        assert (result.exit_code, result.stdout, result.stderr) == (4, "out\n", "err\n")
        assert isinstance(result, boxlite.ExecResult)
        with pytest.raises(boxlite.ExecError) as failed:
            await box.exec("false", check=True)
        assert failed.value.exit_code == 1
        env = await box.exec("sh", "-c", "echo $A", env={"A": "b"}, cwd="/tmp")
        assert env.stdout == "b\n"
        (tmp_path / "f").write_text("x")
        await box.copy_in(str(tmp_path / "f"), "/root/f")
        assert (await box.exec("cat", "/root/f")).stdout == "x"
        assert (await box.info()).status == "running" and box.created
    assert await runtime.get("simple") is None
    with pytest.raises(boxlite.InvalidStateError, match="not started"):
        boxlite.SimpleBox(image=busybox).id
