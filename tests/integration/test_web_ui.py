"""The Temporal Web UI in a real browser: an operator finds a failed start and what was undone.

Debian's Chromium, driven by Playwright's Python driver (no browser download). Screenshots go to
``test-artifacts/web-ui/``.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

from berth.errors import System
from berth.steps import start_workflow_id
from tests.integration.conftest import ROOT, Stack
from tests.support.stack import SuiteStack

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts" / "web-ui"
# Headless, and nothing that reaches outside this machine.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
COMPENSATIONS = ["delete_shim", "drop_spec", "detach_network", "release_rootfs"]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


async def test_web_ui_shows_failed_start_step_and_every_compensation(
    stack: Stack, browser: Browser, suite_stack: SuiteStack
) -> None:
    container_id = await stack.create(cmd=["/no/such/binary"])
    name = (await stack.berth.get(container_id)).name
    with pytest.raises(System):
        await stack.berth.start(container_id)
    namespace = stack.settings.temporal_namespace
    page = await browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(20_000)

    query = urllib.parse.quote(f'ContainerName="{name}"')
    web_ui = suite_stack.temporal.web_ui  # the session's own dev server's UI
    await page.goto(f"{web_ui}/namespaces/{namespace}/workflows?query={query}")
    link = page.get_by_role("link", name=start_workflow_id(container_id))
    await link.first.wait_for()
    assert (await screenshot(page, "1-workflows-by-container-name")).exists()
    await link.first.click()
    await page.get_by_text("release_rootfs").first.wait_for()
    body = await page.inner_text("body")
    assert (await screenshot(page, "2-failed-start")).exists()

    assert "failed" in body.lower()
    assert "ContainerStartOnNode" in body
    assert "no such file or directory" in body
    # The failed step, then every undo last-in-first-out, then the recorded failure.
    timeline = ["create_shim", *COMPENSATIONS, "fail_start"]
    positions = [body.find(step) for step in timeline]
    assert -1 not in positions, dict(zip(timeline, positions, strict=True))
    assert positions == sorted(positions)
