"""Browser tests: Playwright's sync API driving Debian's chromium against pytest-django's live_server.

Run with `pytest tests/e2e` (marker `e2e`). Nothing is downloaded: the browser is /usr/bin/chromium
(override with E2E_CHROMIUM), never one fetched by `playwright install`.
"""

import os
import shutil

import pytest

CHROMIUM = os.environ.get("E2E_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    from playwright import sync_api

    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        # `make test` installs Debian's chromium first (bin/install-test-browser); a missing browser is a failure.
        pytest.fail(f"no chromium at {CHROMIUM}: run bin/install-test-browser (Debian's chromium package)")
    # Playwright's sync API keeps an asyncio event loop alive in the main thread from start() to
    # stop() (it hops between that loop and the test code with greenlets), so while it runs
    # asyncio.get_running_loop() succeeds in the test thread and Django's @async_unsafe guard refuses
    # every ORM call of the test and its fixtures with SynchronousOnlyOperation. The test code is
    # plain synchronous code that never runs concurrently with that loop, so the guard is a false
    # alarm here (the live server answers from its own thread and is unaffected). Django reads the
    # variable at each call, so it is set only while Playwright runs (module scope) and restored after,
    # leaving the guard on for the rest of the session.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    playwright = sync_api.sync_playwright().start()
    try:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
    finally:
        playwright.stop()
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page_problems():
    """Uncaught JavaScript errors and failed (>= 400) responses seen by `page`; tests assert it stays empty."""
    return []


@pytest.fixture
def page(browser, page_problems):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    context.set_default_timeout(10_000)
    context.set_default_navigation_timeout(15_000)
    page = context.new_page()
    page.on("pageerror", lambda exc: page_problems.append(f"JS error: {exc}"))
    page.on("response", lambda r: page_problems.append(f"HTTP {r.status} {r.url}")
            if r.status >= 400 and not r.url.endswith("/favicon.ico") else None)
    try:
        yield page
    finally:
        context.close()

