"""Render an HTML file in headless Chromium (Debian's) and save a full-page PNG.

docs/screenshots/digest.png was made from the digest `make run` writes:
    .venv/bin/digest preview demo@example.org --html > /tmp/digest.html   # or the HTML part of var/outbox/new/*
    .venv/bin/python docs/screenshot.py /tmp/digest.html docs/screenshots/digest.png
"""

import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"]

with sync_playwright() as playwright:
    browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
    page = browser.new_page(viewport={"width": 760, "height": 900})
    page.set_content(Path(sys.argv[1]).read_text(encoding="utf-8"))
    page.screenshot(path=sys.argv[2], full_page=True)
    browser.close()
