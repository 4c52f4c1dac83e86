"""One round of the Python SDK's exec round trips against a running box, for
tests/benches/python_sdk.rs: ``python_exec.py HOME BOX N`` prints
``{"async": [ms...], "sync": [ms...]}``. Each round trip is ``exec("true")`` and ``wait()``
(no stdin), what the Rust side times too."""

import asyncio
import json
import sys
import time

from boxlite import Boxlite, Options
from boxlite.sync_api import SyncBoxlite

home, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])


async def async_round() -> list[float]:
    box = await Boxlite(Options(home_dir=home)).get(name)
    times = []
    for _ in range(n):
        start = time.perf_counter()
        execution = await box.exec("true", stdin=False)
        await execution.wait()
        times.append((time.perf_counter() - start) * 1000)
    return times


def sync_round() -> list[float]:
    box = SyncBoxlite(Options(home_dir=home)).get(name)
    times = []
    for _ in range(n):
        start = time.perf_counter()
        box.exec("true", stdin=False).wait()
        times.append((time.perf_counter() - start) * 1000)
    return times


print(json.dumps({"async": asyncio.run(async_round()), "sync": sync_round()}))
