"""Fixtures shared by the tests of this folder."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.support.delivery import _IN_USE


@pytest.fixture(autouse=True)
def _providers_closed() -> Iterator[None]:
    yield

    async def close_all() -> None:
        for provider in _IN_USE:
            await provider.aclose()

    try:
        asyncio.run(close_all())
    finally:
        _IN_USE.clear()
