"""The bare-Python relay floor now lives in the package, for ``llm-api bench relay``.

Kept under this name for ``bench/openai_relay_bench.py --floor`` (uvicorn
``bench.relay_floor:create_app``); see :mod:`llm_api.loadsim.floor`.
"""

from llm_api.loadsim.floor import RelayFloor, create_app

__all__ = ["RelayFloor", "create_app"]
