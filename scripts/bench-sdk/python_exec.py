"""One round of the Python SDK's calls against a running box, for
tests/benches/sdks.rs: ``python_exec.py HOME BOX N`` prints
``{"async": [ms...], "sync": [ms...], "async_info": [ms...], "sync_info": [ms...]}``: N
round trips of ``exec("true")`` + ``wait()`` (no stdin), and N ``get_info`` calls (a database
read, no VM: the SDK's own cost shows there), what the Rust side times too."""

import asyncio
import json
import sys
import time

from boxlite import Boxlite, Options
from boxlite.sync_api import SyncBoxlite

home, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])


async def async_round() -> tuple[list[float], list[float]]:
    runtime = Boxlite(Options(home_dir=home))
    box = await runtime.get(name)
    execs, infos = [], []
    for _ in range(n):
        start = time.perf_counter()
        execution = await box.exec("true", stdin=False)
        await execution.wait()
        execs.append((time.perf_counter() - start) * 1000)
    for _ in range(n):
        start = time.perf_counter()
        await runtime.get_info(name)
        infos.append((time.perf_counter() - start) * 1000)
    return execs, infos


def sync_round() -> tuple[list[float], list[float]]:
    runtime = SyncBoxlite(Options(home_dir=home))
    box = runtime.get(name)
    execs, infos = [], []
    for _ in range(n):
        start = time.perf_counter()
        box.exec("true", stdin=False).wait()
        execs.append((time.perf_counter() - start) * 1000)
    for _ in range(n):
        start = time.perf_counter()
        runtime.get_info(name)
        infos.append((time.perf_counter() - start) * 1000)
    return execs, infos


async_execs, async_infos = asyncio.run(async_round())
sync_execs, sync_infos = sync_round()
print(json.dumps({"async": async_execs, "sync": sync_execs,
                  "async_info": async_infos, "sync_info": sync_infos}))
