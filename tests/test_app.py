"""The application factory's lifespan: what a running worker looks like after start-up."""

from __future__ import annotations

import gc

from llm_api.app import create_app
from tests.conftest import gateway_settings
from tests.fakes import FakeEngine


async def test_the_start_up_heap_is_frozen_while_serving_and_released_after(
    fake_engine: FakeEngine,
) -> None:
    """A full collection must not walk the ~120,000 start-up objects under live streams."""
    app = create_app(gateway_settings(fake_engine.url))
    assert gc.get_freeze_count() == 0
    async with app.router.lifespan_context(app):
        assert gc.get_freeze_count() > 50_000
    assert gc.get_freeze_count() == 0
