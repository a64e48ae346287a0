"""Which asyncio event loop veil-proxy runs on.

uvloop (libuv, installed with the SDK's ``proxy`` extra) is used when it can be imported: the
proxy's point-query cost is mostly the event loop's own work per wake-up and per ``send``, which
uvloop does in C. Without it, or with ``event_loop = "asyncio"``, the proxy runs on asyncio's
own loop and behaves the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

EVENT_LOOPS = ("auto", "uvloop", "asyncio")
"""``auto``: uvloop when importable, else asyncio's; ``uvloop``: uvloop or refuse to start;
``asyncio``: asyncio's own loop even when uvloop is installed."""


class EventLoopUnavailable(Exception):
    """``uvloop`` was asked for and cannot be imported."""


def loop_factory(choice: str = "auto") -> tuple[Callable[[], asyncio.AbstractEventLoop], str]:
    """A function making the event loop ``choice`` names, and the loop's name for the log."""
    if choice not in EVENT_LOOPS:
        raise ValueError(f"event_loop must be one of {', '.join(EVENT_LOOPS)}, not {choice!r}")
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise EventLoopUnavailable(
                    "event_loop is 'uvloop' but uvloop is not installed (install veil-sdk[proxy])"
                ) from None
        else:
            return uvloop.new_event_loop, f"uvloop {uvloop.__version__}"
    return asyncio.new_event_loop, "asyncio"
