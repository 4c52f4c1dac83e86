"""Many Python processes on one home, a box outliving the process that made it, and
fork safety (os.fork, multiprocessing with fork and with spawn)."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import textwrap

import pytest

import boxlite
from boxlite import BoxOptions, Options
from boxlite.sync_api import SyncBoxlite

from conftest import READY_TIMEOUT, box_processes, wait_until


def python(script: str, *args: str) -> str:
    """Runs ``script`` in a new Python process; its stdout (it must exit 0)."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


CREATE_DETACHED = """
    import sys
    from boxlite import BoxOptions, Options
    from boxlite.sync_api import SyncBoxlite
    home, image, name = sys.argv[1:]
    runtime = SyncBoxlite(Options(home_dir=home))
    box = runtime.create(BoxOptions(image=image, memory_mib=256, detach=True, auto_remove=False,
                                    ready_timeout=120), name=name)
    execution = box.exec("sh", ["-c", "echo $$ > /root/made-by; echo started"])
    print(list(execution.stdout())[0], execution.wait().exit_code)
"""

USE_FROM_ANOTHER = """
    import asyncio, sys
    from boxlite import Boxlite, Options
    home, name = sys.argv[1:]
    async def main():
        runtime = Boxlite(Options(home_dir=home))
        box = await runtime.get(name)
        execution = await box.exec("cat", ["/root/made-by"])
        lines = [line async for line in execution.stdout()]
        print(len(lines), (await execution.wait()).exit_code, [i.name for i in await runtime.list_info()])
    asyncio.run(main())
"""


def test_two_processes_share_a_home_and_a_box_outlives_its_maker(home, busybox):
    assert python(CREATE_DETACHED, home, busybox, "shared").split() == ["started", "0"]
    # The process that made it has exited; the box runs on.
    runtime = SyncBoxlite(Options(home_dir=home))
    assert runtime.get_info("shared").status == "running"
    assert python(USE_FROM_ANOTHER, home, "shared").strip() == "1 0 ['shared']"
    # And this process creates a box the other one sees.
    runtime.create(BoxOptions(image=busybox, memory_mib=256), name="from-the-parent")
    assert "from-the-parent" in python(USE_FROM_ANOTHER, home, "shared")
    runtime.remove("shared", force=True)
    wait_until(lambda: not box_processes(__import__("pathlib").Path(home)), "the box's VM to end")


def test_a_runtime_used_after_fork_refuses_and_a_new_one_works(home, busybox):
    runtime = SyncBoxlite(Options(home_dir=home))
    runtime.create(BoxOptions(image=busybox, memory_mib=256), name="before-fork")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report through the pipe, never return into pytest
        code = 1
        try:
            try:
                runtime.list_info()
                message = "the parent's runtime worked in the child"
            except RuntimeError as refused:
                message = "refused:" + str(refused)
            fresh = SyncBoxlite(Options(home_dir=home))
            names = [i.name for i in fresh.list_info()]
            default = SyncBoxlite.default()  # made anew for the child
            message += f"|{names}|{default.home_dir != ''}"
            code = 0
        except BaseException as failed:  # noqa: BLE001 - reported to the parent
            message = f"child failed: {failed!r}"
        os.write(write, message.encode())
        os._exit(code)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    message = os.read(read, 65536).decode()
    os.close(read)
    assert os.waitstatus_to_exitcode(status) == 0, message
    refused, names, default_ok = message.split("|")
    assert refused.startswith("refused:") and "os.fork()" in refused, refused
    assert names == "['before-fork']" and default_ok == "True"
    # The parent's runtime is untouched by the child.
    assert [i.name for i in runtime.list_info()] == ["before-fork"]


def run_in_child(home: str, name: str) -> str:
    runtime = SyncBoxlite(Options(home_dir=home))
    box = runtime.get(name)
    return box.exec("echo", ["child", str(os.getpid())]).wait().exit_code.__str__() + ":" + str(
        [i.name for i in runtime.list_info()]
    )


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_multiprocessing_children_use_the_home(home, busybox, method):
    runtime = SyncBoxlite(Options(home_dir=home))
    runtime.create(BoxOptions(image=busybox, memory_mib=256, ready_timeout=READY_TIMEOUT), name="pool")
    runtime.get("pool").start()
    context = multiprocessing.get_context(method)
    with context.Pool(2) as pool:
        results = pool.starmap(run_in_child, [(home, "pool"), (home, "pool")])
    assert results == ["0:['pool']", "0:['pool']"]
    runtime.get("pool").stop()
