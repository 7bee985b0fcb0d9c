"""Two llama-server replicas behind vllm-router, started by ``llm-api serve`` (real processes).

A conversation's turns stay on one replica (read from the replicas' own counters); when
that replica is killed the next turn goes to the other, and the supervisor brings the
killed one back.
"""

from __future__ import annotations

import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import free_port
from tests.test_supervisor import get, serve, wait_for


def predicted(port: int) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as r:
            text = r.read().decode()
    except OSError:
        return -1.0
    for line in text.splitlines():
        if line.startswith("llamacpp:tokens_predicted_total "):
            return float(line.split()[1])
    return 0.0


def turn(api: str, session_id: str, text: str, *, once: bool = False) -> list[dict[str, object]]:
    """The turn's events; with ``once``, a refusal before the first byte (the router's 500
    for the replica it has not yet dropped: 502 here, JSON envelope) reads as an error."""
    body = {"messages": [{"role": "user", "content": text}], "session_id": session_id,
            "max_tokens": 8, "temperature": 0}  # fmt: skip
    events = []
    with httpx.stream("POST", api + "/api/chat/stream", json=body, timeout=60) as response:
        if once and response.status_code != 200:
            response.read()
            assert response.json()["error"]["type"], response.text
            return [{"type": "error", "status": response.status_code}]
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(httpx.Response(200, content=line[6:]).json())
    return events


@pytest.fixture
def replicated(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str, list[int]]]:
    api_port, front = free_port(), free_port()
    while any(get(f"http://127.0.0.1:{p}/health") for p in (front + 1, front + 2, front + 100)):
        front = free_port()
    output = (tmp_path / "serve.log").open("w")
    process = serve(
        {
            "LLM_API_PORT": str(api_port),
            "LLM_API_HOST": "127.0.0.1",
            "LLM_API_VLLM_PORT": str(front),
            "LLM_API_ENGINE": "llamacpp",
            "LLM_API_ENGINE_REPLICAS": "2",
            "LLM_API_ENGINE_THREADS": "1",
            "LLM_API_ENGINE_PARALLEL": "1",
            "LLM_API_MAX_MODEL_LEN": "2048",
            "LLM_API_MAX_TOKENS_CAP": "512",
            "LLM_API_DEFAULT_MAX_TOKENS": "64",
            "LLM_API_ROUTER_HEALTH_INTERVAL": "1",
            "LLM_API_CHAT_TITLES": "false",
        },
        output,
    )
    try:
        yield process, f"http://127.0.0.1:{api_port}", [front + 1, front + 2]
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        output.close()


@pytest.mark.engine
def test_conversation_stays_on_one_replica_and_moves_when_it_dies(
    replicated: tuple[subprocess.Popen[str], str, list[int]],
) -> None:
    process, api, ports = replicated
    assert wait_for(lambda: get(api + "/api/health") == 200, 240), "never healthy"
    children = psutil.Process(process.pid).children(recursive=True)
    front = ports[0] - 1  # the router (it renames its process, so ask it, not ps)
    with urllib.request.urlopen(f"http://127.0.0.1:{front}/health", timeout=3) as r:
        assert r.read() == b"All servers healthy"

    for text in ("שלום", "מה שלומך היום?", "ספר לי על ירושלים", "תודה רבה"):
        assert turn(api, "chat_replica_0001", text)[-1]["type"] == "done"
    counts = [predicted(p) for p in ports]
    assert sorted(c > 0 for c in counts) == [False, True], counts
    served = ports[counts.index(max(counts))]
    other = ports[1 - ports.index(served)]

    victim = next(c for c in children if f"--port {served} " in " ".join(c.cmdline()) + " ")
    victim.kill()
    before_other = predicted(other)
    killed_at = time.monotonic()
    # Within a health-check period or two (1 s here) the conversation's next turn is served
    # by the other replica; the turn that met the dead replica ended with an error event,
    # never a hang (each turn has its own 60 s client timeout, far above what it took).
    done = False
    while not done and time.monotonic() - killed_at < 10:
        done = turn(api, "chat_replica_0001", "ואיך מגיעים לשם?", once=True)[-1]["type"] == "done"
    assert done, "no turn succeeded after the replica died"
    assert time.monotonic() - killed_at < 10
    assert predicted(other) > before_other

    # The supervisor restarts the killed replica, and it answers again.
    assert wait_for(lambda: get(f"http://127.0.0.1:{served}/health") == 200, 120)
    # It rejoins: new conversations hash onto it again once its circuit breaker half-opens.
    rejoined_by = time.monotonic() + 20
    index = 0
    while predicted(served) <= 0 and time.monotonic() < rejoined_by:
        turn(api, f"chat_rejoin_{index:04d}", "שלום", once=True)
        index += 1
    assert predicted(served) > 0, "the restarted replica never got a request again"
