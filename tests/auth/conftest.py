"""Gateways with API keys required, and keys made the way ``llm-api keys create`` makes them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from llm_api.auth.keys import KeyStore
from llm_api.chat.store import open_store
from llm_api.settings import Settings
from tests.conftest import gateway_settings, serve_gateway
from tests.fakes import FakeEngine

MakeKey = Callable[..., Awaitable[str]]


async def make_key(
    settings: Settings,
    name: str,
    scopes: str = "chat,email,admin",
    *,
    rpm: int | None = None,
    max_streams: int | None = None,
) -> str:
    store = await open_store(settings.database_url, settings.data_dir)
    try:
        raw, _ = await KeyStore(store.db).create(
            name, frozenset(scopes.split(",")), rpm=rpm, max_streams=max_streams
        )
    finally:
        await store.close()
    return raw


async def revoke_key(settings: Settings, name: str) -> None:
    store = await open_store(settings.database_url, settings.data_dir)
    try:
        await KeyStore(store.db).revoke(name)
    finally:
        await store.close()


def secured_settings(engine_url: str, **overrides: Any) -> Settings:
    return gateway_settings(engine_url, auth="required", **overrides)


@pytest.fixture
def settings(fake_engine: FakeEngine) -> Settings:
    return secured_settings(fake_engine.url)


@pytest.fixture
async def secured(settings: Settings) -> AsyncIterator[str]:
    async with serve_gateway(settings) as url:
        yield url


@pytest.fixture
async def http(secured: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=secured, timeout=30) as client:
        yield client


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
