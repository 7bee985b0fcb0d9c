"""The gateway serves the built web app: strict CSP, hashed long-cached assets, gzip."""

from __future__ import annotations

import re

import httpx
import pytest

from llm_api.webapp.router import STATIC_DIR
from tests.conftest import gateway_settings, serve_gateway
from tests.fakes import FakeEngine

pytestmark = pytest.mark.skipif(
    not (STATIC_DIR / "index.html").is_file(), reason="web app not built (./start-api.sh setup)"
)


async def test_index_and_assets_are_served_with_csp_cache_and_gzip(
    fake_engine: FakeEngine,
) -> None:
    async with (
        serve_gateway(gateway_settings(fake_engine.url, auth="required")) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        page = await http.get("/")
        assert page.status_code == 200  # the sign-in page itself needs no sign-in
        assert page.headers["cache-control"] == "no-cache"
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp
        assert "connect-src 'self'" in csp
        assert "default-src 'none'" in csp
        assert "unsafe-inline" not in csp.split("style-src-attr")[0]
        assert page.headers.get_list("content-security-policy") == [csp]  # one policy, not two
        assert '<html lang="he" dir="rtl">' in page.text
        assert "<script>" not in page.text  # no inline script
        assert not re.search(r"(src|href)=\"(https?:)?//", page.text)  # nothing from elsewhere
        script = re.search(r'src="(/assets/index-[\w-]+\.js)"', page.text)
        assert script
        js = await http.get(script.group(1), headers={"Accept-Encoding": "gzip"})
        assert js.status_code == 200
        assert js.headers["content-encoding"] == "gzip"
        assert js.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert js.headers["content-type"].startswith("text/javascript")
        raw = await http.get(script.group(1), headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in raw.headers
        assert js.content == raw.content  # httpx decoded the gzip body
        for bad in ("/assets/..%2Fstatic%2Findex.html", "/assets/.source-hash", "/assets/nope.js"):
            assert (await http.get(bad)).status_code == 404
