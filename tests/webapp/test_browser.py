"""The web app in a real browser (Debian's chromium driven by Playwright) against the gateway.

These use the loopback fake engine so that they stay fast; the figures the issue asks for
(first-load JavaScript, time to interactive, longest main-thread task while a 4,000-token
answer streams) are measured here and printed.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from llm_api.settings import Settings
from llm_api.webapp.router import STATIC_DIR
from tests.conftest import serve_gateway
from tests.fakes import FakeEngine
from tests.people.conftest import add_user, people_settings

pytestmark = pytest.mark.skipif(
    not (STATIC_DIR / "index.html").is_file() or shutil.which("chromium") is None,
    reason="needs the built web app and Debian's chromium (./start-api.sh test installs both)",
)

ADMIN, ADMIN_PASSWORD = "dana", "סיסמה-ארוכה-1234"
BUDGETS = os.environ.get("LLM_API_WEB_BUDGETS") == "1"  # assert the time budgets too
SHOTS = os.environ.get("LLM_API_WEB_SCREENSHOTS")  # a folder: write the README's screenshots


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        found = await p.chromium.launch(executable_path=shutil.which("chromium"), headless=True)
        yield found
        await found.close()


@pytest.fixture
def settings(fake_engine: FakeEngine) -> Settings:
    return people_settings(fake_engine.url)


async def sign_in(page: Page, url: str, username: str, password: str) -> None:
    await page.goto(url + "/")
    await page.get_by_label("שם משתמש").fill(username)
    await page.get_by_label("סיסמה").fill(password)
    await page.get_by_role("button", name="כניסה").click()
    await page.get_by_role("button", name="שיחה חדשה").wait_for()


async def test_chat_search_inert_markdown_admin_and_one_origin(  # noqa: PLR0915  # one browser session walks the whole journey
    browser: Browser, settings: Settings, fake_engine: FakeEngine
) -> None:
    await add_user(settings, ADMIN, ADMIN_PASSWORD, role="admin")
    fake_engine.state.chunks = [
        "שלום! ",
        '<img src=x onerror="window.__xss=1"> ',
        "[לחצו כאן](javascript:window.__xss=2) ",
        "**מודגש** וגם `code` ",
        "\n\n| א | ב |\n|---|---|\n| 1 | 2 |\n",
    ]
    fake_engine.state.chunk_delay = 0.05
    async with serve_gateway(settings) as url:
        context = await browser.new_context()
        page = await context.new_page()
        foreign: list[str] = []
        page.on("request", lambda r: None if r.url.startswith(url) else foreign.append(r.url))

        # The browser process's own start-up is not the app's: warm it on another context
        # (its cache is not shared), then time a cold-cache load of the app.
        warm = await browser.new_context()
        await (await warm.new_page()).goto(url + "/api/auth/methods")
        await warm.close()
        await page.goto(url + "/")
        await page.get_by_label("שם משתמש").wait_for()
        await page.wait_for_function("() => performance.getEntriesByName('interactive').length")
        # From navigation start to the sign-in form usable, measured by the browser itself.
        interactive = await page.evaluate(
            "performance.getEntriesByName('interactive')[0].startTime / 1000"
        )
        print(f"load average: {os.getloadavg()}")
        js_bytes = await page.evaluate(
            "performance.getEntriesByType('resource').filter(e => e.name.endsWith('.js'))"
            ".reduce((n, e) => n + e.transferSize, 0)"
        )
        print(f"first load: {js_bytes} B of JS on the wire, sign-in form in {interactive:.3f} s")
        assert js_bytes <= 300_000
        if BUDGETS:  # timing on a shared, overloaded CI box is noise; measured runs set it
            assert interactive <= 1.0

        await sign_in(page, url, ADMIN, ADMIN_PASSWORD)
        await page.get_by_label("הודעה").first.fill("ספר לי על הקְרוֹקוֹדִיל בבקשה")
        await page.keyboard.press("Enter")
        await page.get_by_role("button", name="עצירה", exact=True).wait_for()  # streaming
        answer = page.locator(".msg.assistant .md")
        await answer.locator("table").wait_for()
        await page.get_by_role("button", name="שליחה", exact=True).wait_for()  # done
        assert await answer.locator("strong").inner_text() == "מודגש"
        assert await answer.locator("img").count() == 0
        assert await page.locator("a[href^='javascript']").count() == 0
        assert "<img" in await answer.inner_text()  # shown as text, not run
        assert await page.evaluate("window.__xss") is None
        assert await answer.get_attribute("dir") == "auto"
        if SHOTS:
            await page.screenshot(path=str(Path(SHOTS) / "chat-rtl-light.png"))
            await page.get_by_role("button", name="ערכת צבעים").click()
            await page.screenshot(path=str(Path(SHOTS) / "chat-dark.png"))
            await page.set_viewport_size({"width": 390, "height": 800})
            await page.screenshot(path=str(Path(SHOTS) / "chat-phone.png"))
            await page.set_viewport_size({"width": 1280, "height": 720})

        # Reload: the conversation comes back from the server.
        await page.reload()
        await page.locator(".msg.user", has_text="קְרוֹקוֹדִיל").wait_for()
        assert await page.locator(".sidebar li").count() == 1

        # Search: without niqqud and with it.
        search = page.get_by_label("חיפוש בשיחות")
        for query, count in (("קרוקודיל", 1), ("קְרוֹקוֹדִיל", 1), ("ג׳ירפה", 0)):
            await search.fill(query)
            await expect(page.locator(".sidebar li")).to_have_count(count)
        await search.fill("")

        # The admin creates a member, who signs in and sees none of the admin's chats.
        await page.goto(url + "/#/admin")
        await page.get_by_label("שם משתמש").fill("yossi")
        await page.get_by_label("סיסמה").fill("סוד-של-יוסי-5678")
        await page.get_by_role("button", name="יצירה").click()
        await page.locator("td", has_text="yossi").wait_for()
        other = await browser.new_context()
        member = await other.new_page()
        member.on("request", lambda r: None if r.url.startswith(url) else foreign.append(r.url))
        await sign_in(member, url, "yossi", "סוד-של-יוסי-5678")
        await member.wait_for_load_state("networkidle")
        assert await member.locator(".sidebar li").count() == 0
        assert await member.get_by_role("link", name="ניהול").count() == 0
        await other.close()
        await context.close()
        assert foreign == []


async def test_long_answer_streams_without_long_tasks(
    browser: Browser, settings: Settings, fake_engine: FakeEngine
) -> None:
    await add_user(settings, ADMIN, ADMIN_PASSWORD, role="admin")
    fake_engine.state.chunks = [
        f"מילה{i} " if i % 50 else f"\n\n**פסקה {i}** " for i in range(4000)
    ]
    fake_engine.state.chunk_delay = 0.001
    async with serve_gateway(settings) as url:
        page = await browser.new_page()
        await sign_in(page, url, ADMIN, ADMIN_PASSWORD)
        await page.evaluate(
            "window.__longest = 0; new PerformanceObserver(l => { for (const e of l.getEntries())"
            " window.__longest = Math.max(window.__longest, e.duration) })"
            ".observe({type: 'longtask'})"
        )
        await page.get_by_label("הודעה").first.fill("כתוב לי חיבור ארוך")
        await page.keyboard.press("Enter")
        await page.get_by_role("button", name="עצירה", exact=True).wait_for()
        await page.get_by_role("button", name="שליחה", exact=True).wait_for(timeout=120_000)
        assert await page.locator(".msg.assistant").inner_text()
        longest = await page.evaluate("window.__longest")
        print(f"4,000-token answer: longest main-thread task {longest:.0f} ms")
        if BUDGETS:
            assert longest <= 50
