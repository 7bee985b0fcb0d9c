"""One parser decides for the body guard and the route; a body that is not JSON gets 415.

On the tree before json_body.py, the guard parsed with orjson and skipped its message-count
check when orjson refused the body, and FastAPI then parsed the same bytes with the standard
library (NaN, a BOM or UTF-16 accepted): 10,001 messages were stored. And /v1 took
``text/plain``, which a web page can send to another origin without a preflight.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from fastapi.routing import APIRoute

from llm_api.app import create_app
from llm_api.json_body import JsonRoute, is_json_media_type
from tests.conftest import gateway_settings, serve_gateway
from tests.fakes import FakeEngine

MANY = [{"role": "user", "content": "שלום"}] * 10_001
V1 = {"model": "default", "messages": [{"role": "user", "content": "שלום"}]}
CHAT = {"messages": [{"role": "user", "content": "שלום"}], "stream": False}


def _bodies_the_stdlib_takes(document: dict[str, object]) -> dict[str, bytes]:
    plain = orjson.dumps(document)
    return {
        "NaN": plain[:-1] + b', "x": NaN}',
        "Infinity": plain[:-1] + b', "x": -Infinity}',
        "BOM": b"\xef\xbb\xbf" + plain,
        "UTF-16": plain.decode().encode("utf-16"),
    }


@pytest.mark.parametrize("path", ["/api/chat/stream", "/v1/chat/completions"])
async def test_a_body_the_guard_cannot_parse_is_refused_not_waved_through(
    client: httpx.AsyncClient, fake_engine: FakeEngine, path: str
) -> None:
    document: dict[str, object] = {"model": "default", "messages": MANY}
    for what, raw in _bodies_the_stdlib_takes(document).items():
        response = await client.post(
            path, content=raw, headers={"Content-Type": "application/json"}
        )
        expected = 400 if path.startswith("/v1/") else 422
        assert response.status_code == expected, (what, response.text[:200])
        error = response.json()["error"]
        assert error["message"].endswith("request body is not valid JSON"), what
    assert fake_engine.state.requests == []
    sessions = (await client.get("/api/sessions")).json()
    assert sessions["sessions"] == []


async def test_nesting_and_lone_surrogates_are_refused_in_the_envelope(
    client: httpx.AsyncClient,
) -> None:
    deep = b'{"email_content": "x", "extra": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    surrogate = b'{"user_message": "\\ud800 \xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d"}'
    for path, raw in (
        ("/api/tasks/extract", deep),
        ("/api/title/generate", surrogate),
        ("/api/summarization/summarize", b'{"email_content": "\\udfff"}'),
    ):
        response = await client.post(
            path, content=raw, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 422, (path, response.text[:200])
        assert response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("content_type", "path"),
    [
        ("text/plain", "/v1/chat/completions"),
        ("text/plain;charset=UTF-8", "/api/chat/stream"),
        ("application/x-www-form-urlencoded", "/api/title/generate"),
        ("multipart/form-data; boundary=x", "/api/tasks/extract"),
        ("application/json; charset=utf-16", "/api/chat/stream"),
        ("application/jsonx", "/v1/chat/completions"),
        (None, "/api/chat/stream"),
    ],
)
async def test_a_body_that_is_not_json_gets_415_before_the_engine(
    client: httpx.AsyncClient, fake_engine: FakeEngine, content_type: str | None, path: str
) -> None:
    body = orjson.dumps(V1 if path.startswith("/v1/") else CHAT)
    request = client.build_request("POST", path, content=body)
    if content_type is not None:
        request.headers["content-type"] = content_type
    response = await client.send(request)
    assert response.status_code == 415, response.text[:200]
    assert response.json()["error"]["type"] == "unsupported_media_type"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert fake_engine.state.requests == []


async def test_json_with_or_without_a_utf8_charset_is_served(
    client: httpx.AsyncClient,
) -> None:
    for content_type in ("application/json", "application/json; charset=UTF-8",
                         'Application/JSON;charset="utf-8"'):  # fmt: skip
        response = await client.post(
            "/api/chat/stream", content=orjson.dumps(CHAT), headers={"Content-Type": content_type}
        )
        assert response.status_code == 200, (content_type, response.text[:200])
    # A request without a body needs no content type (DELETE, or a POST with nothing in it).
    assert (await client.delete("/api/sessions/chat_nonexistent-0001")).status_code == 404


def test_media_type_rule() -> None:
    assert is_json_media_type(b"application/json")
    assert is_json_media_type(b"application/json ; charset=utf8")
    assert not is_json_media_type(b"application/json; charset=latin-1")
    assert not is_json_media_type(b"text/json")
    assert not is_json_media_type("application/json\u05d0".encode())


def _api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "effective_candidates"):  # FastAPI >= 0.16x keeps routers nested
            for item in route.effective_candidates():
                inner = getattr(item, "original_route", item)
                yield from _api_routes([inner])


async def test_every_route_that_takes_a_body_parses_with_the_one_parser(
    fake_engine: FakeEngine,
) -> None:
    app = create_app(gateway_settings(fake_engine.url))
    body_routes = [
        r
        for r in _api_routes(list(app.routes))
        if (r.methods or set()) & {"POST", "PUT", "PATCH", "DELETE"}
    ]
    assert len(body_routes) >= 6
    left_out = [r.path for r in body_routes if not isinstance(r, JsonRoute)]
    assert left_out == []


async def test_the_guard_and_the_route_share_one_parse(fake_engine: FakeEngine) -> None:
    """Duplicate keys: both parsers take the last, but only one parse may happen. A body
    whose last ``messages`` is over the limit is refused, whatever came first."""
    settings = gateway_settings(fake_engine.url, max_messages=2)
    three = orjson.dumps([{"role": "user", "content": "א"}] * 3).decode()
    raw = ('{"messages": [{"role": "user", "content": "ב"}], "messages": ' + three + "}").encode()
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        for path in ("/api/chat/stream", "/v1/chat/completions"):
            response = await http.post(
                path, content=raw, headers={"Content-Type": "application/json"}
            )
            assert response.status_code in (400, 422), response.text[:200]
            assert response.json()["error"]["param"] == "messages"
