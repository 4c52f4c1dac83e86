"""boxlite.sync_api on real VMs, also where an asyncio loop is running."""

from __future__ import annotations

import asyncio
import threading

import boxlite
from boxlite import BoxOptions, Options
from boxlite.sync_api import SyncBoxlite, SyncCodeBox, SyncExecution, SyncSimpleBox

from conftest import READY_TIMEOUT


def test_the_sync_api_runs_boxes_and_streams(home, busybox):
    with SyncBoxlite(Options(home_dir=home)) as runtime:
        box = runtime.create(BoxOptions(image=busybox, memory_mib=256, ready_timeout=READY_TIMEOUT))
        execution = box.exec("sh", ["-c", "for i in 1 2 3; do echo $i; done; exit 5"])
        assert isinstance(execution, SyncExecution)
        assert list(execution.stdout()) == ["1", "2", "3"]
        assert execution.wait().exit_code == 5
        cat = box.exec("cat")
        stdin = cat.stdin()
        stdin.write("typed\n")
        stdin.close()
        assert list(cat.stdout()) == ["typed"]
        assert box.metrics().commands_executed_total == 2
        found, created = runtime.get_or_create(BoxOptions(image=busybox), name=None)
        assert created and found.id != box.id
        box.stop()
        assert runtime.get(box.id) is None
        assert runtime.metrics().boxes_created_total == 2


def test_the_sync_api_works_inside_a_running_event_loop(home, busybox):
    """Called from a coroutine (its loop running in this thread) and from a second thread
    with a loop of its own: neither needs the loop, both block only their own thread."""
    runtime = SyncBoxlite(Options(home_dir=home))
    results = []

    async def inside_a_loop() -> None:
        with SyncSimpleBox(image=busybox, runtime=runtime, memory_mib=256,
                           ready_timeout=READY_TIMEOUT) as box:
            results.append(box.exec("echo", "from a loop").stdout)

    asyncio.run(inside_a_loop())
    thread = threading.Thread(target=lambda: asyncio.run(inside_a_loop()))
    thread.start()
    thread.join(timeout=300)
    assert not thread.is_alive()
    assert results == ["from a loop\n", "from a loop\n"]


def test_other_python_threads_run_while_a_call_blocks(home, busybox):
    runtime = SyncBoxlite(Options(home_dir=home))
    counted = 0
    stop = threading.Event()

    def count() -> None:
        nonlocal counted
        while not stop.is_set():
            counted += 1

    with SyncSimpleBox(image=busybox, runtime=runtime, memory_mib=256, ready_timeout=READY_TIMEOUT) as box:
        thread = threading.Thread(target=count)
        thread.start()
        before = counted
        box.exec("sleep", "1")
        progressed = counted - before
        stop.set()
        thread.join()
    assert progressed > 1000, "the GIL was held while the call blocked"


def test_an_async_runtime_given_to_a_sync_box_is_used_blocking(home, busybox):
    runtime = boxlite.Boxlite(Options(home_dir=home))
    with SyncSimpleBox(busybox, None, 256, None, runtime, ready_timeout=READY_TIMEOUT) as box:
        assert box.exec("echo", "ok").stdout == "ok\n"


def test_sync_classes_show_the_async_parameters():
    import inspect

    assert list(inspect.signature(SyncCodeBox).parameters)[:4] == ["image", "memory_mib", "cpus", "runtime"]
    assert "reuse_existing" in inspect.signature(SyncSimpleBox).parameters
