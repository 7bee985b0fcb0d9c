"""Which model id to send to the engine: the configured one, else the engine's first."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from llm_api.engine.client import EngineClient, ModelInfo
from llm_api.errors import EngineBadResponse


class ModelCatalog:
    """Remembers the served model once the engine has named it."""

    def __init__(self, engine: EngineClient, configured: str | None) -> None:
        self._engine = engine
        self._configured = configured
        self._served: ModelInfo | None = None
        self._lock = asyncio.Lock()

    async def served(self) -> ModelInfo:
        if self._served is None:
            async with self._lock:
                if self._served is None:
                    models = await self._engine.models()
                    if not models:
                        raise EngineBadResponse("the inference engine serves no model")
                    wanted = [m for m in models if m.id == self._configured]
                    served = wanted[0] if wanted else models[0]
                    tools = await self._engine.tool_support()
                    self._served = replace(served, supports_tools=tools)
        return self._served

    async def model_id(self) -> str:
        """The id to put in requests; the configured name wins if the engine knows it."""
        return (await self.served()).id
