"""Pause and resume, memory snapshots (the reference's ``box.snapshot`` handle: create, list,
get, remove, restore) and forks, async and sync, on real VMs."""

from __future__ import annotations

import asyncio

import pytest

import boxlite
from boxlite import BoxOptions, Boxlite, Options
from boxlite.sync_api import SyncBoxlite

from conftest import READY_TIMEOUT


def options(image: str) -> BoxOptions:
    return BoxOptions(image=image, memory_mib=256, auto_remove=False, ready_timeout=READY_TIMEOUT)


async def sh(box, script: str) -> str:
    execution = await box.exec("sh", ["-c", script])
    lines = [line async for line in execution.stdout()]
    result = await execution.wait()
    assert result.exit_code == 0, (script, lines)
    return "\n".join(lines)


async def test_snapshots_restore_in_place_and_forks_continue(home, busybox):
    runtime = Boxlite(Options(home_dir=home))
    box = await runtime.create(options(busybox), name="src")
    # A file on the disk, one in memory (tmpfs), and a process.
    await sh(box, "echo before > /f; echo kept > /dev/shm/m; "
                  "(while :; do sleep 1; done) >/dev/null 2>&1 & echo $! > /pid")

    await box.pause()
    assert box.info().status == "paused"
    with pytest.raises(boxlite.InvalidStateError, match="resume it first"):
        await box.exec("true")
    await box.resume()
    assert box.info().status == "running"

    info = await box.snapshot.create(name="v1")
    assert isinstance(info, boxlite.SnapshotInfo)
    assert (info.name, info.box_id, info.box_name) == ("v1", box.id, "src")
    assert info.id and isinstance(info.created_at, int)
    assert info.container_disk_bytes > 0 and info.size_bytes > 0
    assert [s.name for s in await box.snapshot.list()] == ["v1"]
    assert (await box.snapshot.get("v1")).id == info.id
    assert await box.snapshot.get("nope") is None

    # Back to the snapshot: the disk, the memory and the process as they were.
    await sh(box, "echo after > /f; rm /dev/shm/m")
    await box.snapshot.restore("v1")
    assert box.info().status == "running"
    assert await sh(box, "cat /f /dev/shm/m; kill -0 $(cat /pid) && echo alive") == "before\nkept\nalive"

    # A fork continues from now and goes its own way.
    fork = await box.fork("copy")
    assert fork.name == "copy" and fork.id != box.id
    assert await sh(fork, "cat /f; kill -0 $(cat /pid) && echo alive") == "before\nalive"
    await sh(fork, "echo forked > /f")
    assert await sh(box, "cat /f") == "before"
    assert [s.name for s in await runtime.list_snapshots()] == ["v1"]
    assert await fork.snapshot.list() == []

    # Bad requests: typed errors, nothing changed.
    with pytest.raises(boxlite.AlreadyExistsError):
        await box.snapshot.create(name="v1")
    with pytest.raises(boxlite.AlreadyExistsError):
        await box.fork("copy")
    with pytest.raises(boxlite.InvalidArgumentError, match="not of box"):
        await fork.snapshot.restore("v1")
    with pytest.raises(boxlite.InvalidArgumentError, match="not of box"):
        await fork.snapshot.remove("v1")
    with pytest.raises(boxlite.NotFoundError):
        await box.snapshot.restore("nope")
    assert await sh(fork, "cat /f") == "forked"

    # A new box from the snapshot, through the runtime.
    made = await runtime.create_from_snapshot("v1", name="made")
    assert await sh(made, "cat /f /dev/shm/m") == "before\nkept"

    await box.snapshot.remove("v1")
    assert await box.snapshot.list() == [] and await runtime.list_snapshots() == []
    await box.stop()
    with pytest.raises(boxlite.InvalidStateError):
        await box.snapshot.create(name="stopped")
    for name in ("src", "copy", "made"):
        await runtime.remove(name, force=True)


def test_the_sync_api_pauses_snapshots_and_forks(home, busybox):
    runtime = SyncBoxlite(Options(home_dir=home))
    box = runtime.create(options(busybox), name="s")
    assert box.exec("sh", ["-c", "echo one > /f"]).wait().exit_code == 0
    box.pause()
    box.resume()
    handle = box.snapshot
    assert isinstance(handle, boxlite.sync_api.SyncSnapshotHandle)
    assert handle.create(name="one").name == "one"
    assert [s.name for s in handle.list()] == ["one"]
    fork = box.fork("t")
    assert isinstance(fork, boxlite.sync_api.SyncBox)
    assert list(fork.exec("cat", ["/f"]).stdout()) == ["one"]
    handle.remove("one")
    assert handle.get("one") is None and runtime.list_snapshots() == []
    runtime.remove("t", force=True)
    runtime.remove("s", force=True)


async def test_standbys_serve_first_starts(home, busybox, monkeypatch):
    monkeypatch.setenv("BOXLITE_STANDBY", "1")
    runtime = Boxlite(Options(home_dir=home))
    first = await runtime.create(options(busybox), name="first")
    await first.start()
    assert (await first.metrics()).start_mode == "template"
    deadline = asyncio.get_running_loop().time() + 120
    while runtime.standbys_ready() != 1:
        assert asyncio.get_running_loop().time() < deadline, "no standby warmed up"
        await asyncio.sleep(0.05)
    second = await runtime.create(options(busybox), name="second")
    await second.start()
    assert (await second.metrics()).start_mode == "standby"
    assert await sh(second, "hostname") == "second"
    while runtime.standbys_ready() != 1:
        assert asyncio.get_running_loop().time() < deadline, "no standby warmed up again"
        await asyncio.sleep(0.05)
    assert await runtime.retire_standbys() == 1
    assert runtime.standbys_ready() == 0
    for box in (first, second):
        await runtime.remove(box.id, force=True)
