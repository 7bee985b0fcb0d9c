"""Who may read the metrics when keys are required: admin, or anyone for /metrics alone
with ``LLM_API_METRICS_PUBLIC=true``."""

from __future__ import annotations

import httpx

from llm_api.app import create_app
from tests.auth.conftest import bearer, make_key, secured_settings
from tests.auth.test_access import ALLOWLIST, PUBLIC, SIGNED_IN, _routes
from tests.conftest import serve_gateway
from tests.fakes import FakeEngine


async def test_metrics_need_the_admin_scope_by_default(fake_engine: FakeEngine) -> None:
    settings = secured_settings(fake_engine.url)
    assert settings.metrics_public is False
    admin = await make_key(settings, "ops", "admin")
    chat = await make_key(settings, "chatter", "chat")
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        for path in ("/metrics", "/api/metrics"):
            assert (await http.get(path)).status_code == 401, path
            assert (await http.get(path, headers=bearer(chat))).status_code == 403, path
            assert (await http.get(path, headers=bearer(admin))).status_code == 200, path


async def test_metrics_public_opens_prometheus_metrics_only(fake_engine: FakeEngine) -> None:
    settings = secured_settings(fake_engine.url, metrics_public=True)
    admin = await make_key(settings, "ops", "admin")
    chat = await make_key(settings, "chatter", "chat")
    async with serve_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        scraped = await http.get("/metrics")
        assert scraped.status_code == 200
        assert scraped.headers["content-type"].startswith("text/plain")
        assert "llm_api_requests_total" in scraped.text
        assert (await http.get("/metrics", headers=bearer(admin))).status_code == 200
        # The JSON figures and every other route keep their keys and scopes.
        assert (await http.get("/api/metrics")).status_code == 401
        assert (await http.get("/api/metrics", headers=bearer(chat))).status_code == 403
        assert (await http.get("/api/metrics", headers=bearer(admin))).status_code == 200
        assert (await http.get("/v1/models")).status_code == 401
        assert (await http.get("/api/sessions")).status_code == 401


def test_metrics_public_leaves_every_other_route_scoped(fake_engine: FakeEngine) -> None:
    """The route audit of tests/auth, run with the switch on: /metrics is the one change."""
    for public, open_paths in ((False, set()), (True, {"/metrics"})):
        app = create_app(secured_settings(fake_engine.url, metrics_public=public))
        unguarded = {
            path
            for path, guards, api in _routes(list(app.routes))
            # Sign-in routes have audiences of their own (public, signed in), audited in
            # tests/auth/test_access.py; the switch must not change any of them either.
            if api
            and path not in ALLOWLIST | PUBLIC | SIGNED_IN
            and not guards & {"chat", "email", "admin"}
        }
        assert unguarded == open_paths, public
