"""Processes that `herald serve` starts stop when it is gone: killed outright (kill -9),
it cannot stop them itself, and an orphan would go on serving or delivering unseen."""

from __future__ import annotations

import asyncio
import os


async def parent_gone(parent_pid: int, *, every_s: float) -> None:
    """Return once ``parent_pid`` is no longer this process's parent (at once if it
    already was not when this began looking)."""
    while os.getppid() == parent_pid:
        await asyncio.sleep(every_s)
