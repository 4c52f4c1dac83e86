"""Glue for the native layer: results of Rust tasks handed to asyncio futures, and the
awaitable that makes one Python layer serve the async and the sync API."""

from __future__ import annotations

import asyncio
import weakref

from . import _native

# Each event loop's inbox of finished native calls (see bridge.rs): an eventfd the loop
# watches, closed when the loop is garbage collected.
_INBOXES: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _native.Completions]" = (
    weakref.WeakKeyDictionary()
)


def completions(loop: asyncio.AbstractEventLoop) -> "_native.Completions":
    """The loop's inbox, made and registered with ``loop.add_reader`` on first use."""
    inbox = _INBOXES.get(loop)
    if inbox is None:
        inbox = _native.Completions()
        loop.add_reader(inbox.fd, inbox.drain)
        _INBOXES[loop] = inbox
    return inbox


def settle(future: asyncio.Future, ok: bool, value: object) -> None:
    """Called on the future's loop (by ``Completions.drain``): a cancelled future keeps its
    cancellation."""
    if future.done():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)  # type: ignore[arg-type]


class Ready:
    """An awaitable that is done already: what a blocking-mode native call returns, so that
    the async classes serve the sync API too (``boxlite.sync_api`` drives their coroutines,
    which never suspend then)."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def __await__(self):  # type: ignore[no-untyped-def]
        return self.value
        yield  # pragma: no cover - makes this a generator


def run_sync(coroutine):  # type: ignore[no-untyped-def]
    """Runs a coroutine of the async classes whose native calls all block: it finishes in
    one step. Anything else is a bug of this package."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError("boxlite.sync_api: a call awaited something that was not ready (a bug)")
