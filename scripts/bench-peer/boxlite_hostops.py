"""Host operations of the peer, BoxLite 0.10.8 (its PyPI wheel), timed like ours: create N
configured boxes (no VM), then remove them, one at a time. Prints one JSON object:
{"create_ms": [...], "remove_ms": [...]}. It cannot boot a VM here, and these calls do not need
one. Written for boxlite's benchmarks (tests/benches/hostops.rs runs it)."""

import asyncio
import json
import sys
import tempfile
import time

import boxlite


async def main(n: int) -> None:
    home = tempfile.mkdtemp(prefix="peer-boxlite-")
    runtime = boxlite.Boxlite(boxlite.Options(home_dir=home))
    options = boxlite.BoxOptions(image="alpine:latest")
    # The first create sets the home up; it is not timed, as on our side.
    first = await runtime.create(options)
    await runtime.remove(first.id)
    creates, removes, ids = [], [], []
    for _ in range(n):
        started = time.perf_counter()
        box = await runtime.create(options)
        creates.append((time.perf_counter() - started) * 1000)
        ids.append(box.id)
    for box_id in ids:
        started = time.perf_counter()
        await runtime.remove(box_id)
        removes.append((time.perf_counter() - started) * 1000)
    print(json.dumps({"create_ms": creates, "remove_ms": removes}))


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 200))
