"""The simulated people: each holds a conversation (or sends emails), thinks, asks again.

A side (:class:`Arm`) is where the requests go: the engine direct, our gateway's ``/v1``
or ``/api/chat/stream`` (with a session: only the new message is sent, the gateway keeps the
history and truncates it), LiteLLM, or the bare relay floor. Email work goes to the email
endpoints on our gateway's sides and, as the same job in a plain non-streamed completion,
to the sides that have no such endpoints.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
import orjson

from llm_api.loadsim.prompts import Kind, Work, draw, email_prompt
from llm_api.loadsim.stats import Sample

Route = Literal["openai", "chat"]
_JSON = {"Content-Type": "application/json"}


@dataclass(frozen=True, slots=True)
class Arm:
    name: str  # direct | v1 | chat | litellm | floor
    url: str  # base URL, no trailing slash
    route: Route
    model: str
    pids: tuple[int, ...] = ()  # the relay's processes, for CPU and memory; () for the engine
    email_endpoints: bool = False  # our gateway: email work goes to /api/tasks|summarization


@dataclass(slots=True)
class Crowd:
    """What every person of one run shares."""

    http: aiohttp.ClientSession
    mix: dict[Kind, float]
    think: float  # mean think time between turns, seconds (exponential)
    max_tokens: int
    long_max_tokens: int
    seed: int
    samples: list[Sample] = field(default_factory=list)


def _error_kind(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connect"
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return "disconnected"
    return type(exc).__name__


async def stream_turn(
    crowd: Crowd, arm: Arm, body: dict[str, Any], path: str
) -> tuple[Sample, str, str | None]:
    """One streamed request: (what it measured, the reply's text, the session id)."""
    sample = Sample("stream", time.perf_counter())
    parts: list[str] = []
    session_id: str | None = None
    finished = False
    try:
        async with crowd.http.post(arm.url + path, data=orjson.dumps(body), headers=_JSON) as r:
            if r.status != 200:
                await r.read()
                sample.error = f"http_{r.status}"
                return sample, "", None
            session_id = r.headers.get("X-Session-ID")
            last = 0.0
            async for line in r.content:
                if not line.startswith(b"data:"):
                    continue
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    finished = True
                    break
                event = orjson.loads(payload)
                text = _text(event, arm.route)
                if text is None:
                    if "error" in event:
                        sample.error = "stream_error"
                        break
                    if event.get("type") == "done":
                        finished = True
                        session_id = event.get("session_id") or session_id
                    continue
                now = time.perf_counter()
                if sample.first_token is None:
                    sample.first_token = now
                else:
                    sample.gaps.append(now - last)
                last = now
                sample.tokens += 1
                parts.append(text)
    except (TimeoutError, aiohttp.ClientError) as exc:
        sample.error = _error_kind(exc)
    sample.ended = time.perf_counter()
    if sample.error is None and not finished:
        sample.error = "incomplete"
    elif sample.error is None and sample.tokens == 0:
        sample.error = "empty"
    return sample, "".join(parts), session_id


def _text(event: dict[str, Any], route: Route) -> str | None:
    """The content an event carries, or None for events without text."""
    if route == "chat":
        return event.get("content") if event.get("type") == "content" else None
    choices = event.get("choices")
    if not choices:
        return None
    content = (choices[0].get("delta") or {}).get("content")
    return content or None


async def call(crowd: Crowd, arm: Arm, path: str, body: dict[str, Any]) -> Sample:
    """One non-streamed request (an email endpoint, or a plain completion)."""
    sample = Sample("call", time.perf_counter())
    try:
        async with crowd.http.post(arm.url + path, data=orjson.dumps(body), headers=_JSON) as r:
            await r.read()
            if r.status != 200:
                sample.error = f"http_{r.status}"
            else:
                sample.tokens = 1
    except (TimeoutError, aiohttp.ClientError) as exc:
        sample.error = _error_kind(exc)
    sample.ended = time.perf_counter()
    return sample


async def email_turn(crowd: Crowd, arm: Arm, work: Work, email: str) -> Sample:
    if arm.email_endpoints:
        if work.kind == "extract":
            return await call(crowd, arm, "/api/tasks/extract", {"email_content": email})
        body = {"email_content": email, "length": 100}
        return await call(crowd, arm, "/api/summarization/summarize", body)
    messages = [{"role": "user", "content": email_prompt(work.kind, email)}]
    body = {"model": arm.model, "messages": messages, "max_tokens": crowd.max_tokens}
    return await call(crowd, arm, "/v1/chat/completions", body)


async def person(crowd: Crowd, arm: Arm, index: int, deadline: float) -> None:
    """Conversations one after another until the deadline; a request under way finishes."""
    rng = random.Random(crowd.seed * 100_003 + index)  # noqa: S311 - a simulation, not secrets
    if crowd.think > 0:  # people arrive spread over one think time, not in one burst
        await asyncio.sleep(rng.uniform(0, crowd.think))
    while time.perf_counter() < deadline:
        work = draw(crowd.mix, rng)
        history: list[dict[str, str]] = []
        session_id: str | None = None
        for turn in work.turns:
            if time.perf_counter() >= deadline:
                return
            if work.kind in ("extract", "summary"):
                sample = await email_turn(crowd, arm, work, turn)
            else:
                tokens = crowd.long_max_tokens if len(turn) > 400 else crowd.max_tokens
                history.append({"role": "user", "content": turn})
                if arm.route == "chat":
                    body: dict[str, Any] = {
                        "messages": [history[-1]],
                        "language": work.language,
                        "stream": True,
                        "max_tokens": tokens,
                    }
                    if session_id:
                        body["session_id"] = session_id
                    path = "/api/chat/stream"
                else:
                    body = {
                        "model": arm.model,
                        "messages": history,
                        "stream": True,
                        "max_tokens": tokens,
                    }
                    path = "/v1/chat/completions"
                sample, reply, sid = await stream_turn(crowd, arm, body, path)
                session_id = sid or session_id
                history.append({"role": "assistant", "content": reply})
            crowd.samples.append(sample)
            if sample.error is not None:
                break  # a failed turn ends the conversation; the person starts another
            if crowd.think > 0:
                pause = rng.expovariate(1 / crowd.think)
                await asyncio.sleep(max(0.0, min(pause, deadline - time.perf_counter())))
