"""Browser tests: Debian's Chromium through Playwright (tests/browser.py)."""

from tests.browser import browser, watched_page  # noqa: F401  (the fixtures, for tests/ui)
