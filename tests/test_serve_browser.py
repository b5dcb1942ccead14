"""The search page in a real browser: Debian's headless Chromium driven by Playwright, against `xdr serve` on
the demo index (me5-small over examples/demo), with questions in Arabic, Japanese and Russian."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from serve_fixtures import Server

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "examples" / "demo" / "corpus.jsonl"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

# (question, its language, the passage that answers it, a word of that passage's title)
QUESTIONS = [
    ("في أي بحر يصب نهر النيل؟", "ar", "d01", "Nile"),
    ("エベレストの標高は何メートルですか？", "ja", "d07", "Everest"),
    ("В каком городе родился Иоганн Себастьян Бах?", "ru", "d04", "Bach"),
]


def _chromium() -> str:
    """Debian's chromium; CI must have it (`make test` installs it), elsewhere the test says why it skips."""
    if not Path(CHROMIUM).exists():
        reason = "needs Debian's chromium (apt-get install -y chromium; `make test` does it)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser test: {reason}")
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture(scope="module")
def demo_server(me5_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """`xdr serve` on the demo index, built as `make demo` builds it (me5-small over the demo corpus)."""
    from xdr.data import read_passages
    from xdr.encode import encode_passages
    from xdr.index import build_index
    from xdr.models.encoder import Encoder
    from xdr.models.registry import resolve_spec

    root = tmp_path_factory.mktemp("demo")
    encoder = Encoder.load(resolve_spec("me5-small"), device="cpu")
    emb = encode_passages(list(read_passages(DEMO)), encoder, root / "emb", progress=False)
    index = build_index(emb, root / "index", use_gpu=False, progress=False)
    env = {"XDR_CACHE": os.environ["XDR_CACHE"]}
    with Server([str(index), "--corpus", str(DEMO), "--texts-cache", str(root / "texts")], env=env) as server:
        yield server


def test_the_page_searches_in_three_scripts_and_shows_errors(demo_server: Server, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone-width screen
            page.goto(demo_server.url)
            expect(page.locator("#about")).to_contain_text("40 passages")
            for question, lang, answer, title in QUESTIONS:
                page.fill("#q", question)
                page.click("#go")
                expect(page.locator("#detected-lang")).to_have_text(lang, timeout=30_000)
                hits = page.locator("#results li.hit")
                expect(hits).to_have_count(10)
                scores = [float(t.rsplit("score ", 1)[1]) for t in hits.locator(".meta").all_inner_texts()]
                assert scores == sorted(scores, reverse=True)
                assert hits.first.get_attribute("data-docid") == answer
                expect(hits.first.locator("h2")).to_contain_text(title)
            # a word shared across languages (a name, a number) is highlighted
            page.fill("#q", "Nile 6,650 km ?")
            page.click("#go")
            expect(page.locator("#results li.hit").first.locator("mark").first).to_have_text("Nile", timeout=30_000)
            # the error state for an empty query, and no stale results under it
            page.fill("#q", "   ")
            page.click("#go")
            expect(page.locator("#status")).to_have_class("error")
            expect(page.locator("#status")).to_contain_text("query is empty")
            expect(page.locator("#results li")).to_have_count(0)
            # usable at phone width: nothing wider than the screen
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
            page.fill("#q", QUESTIONS[2][0])
            page.click("#go")
            expect(page.locator("#detected-lang")).to_have_text("ru", timeout=30_000)
            page.screenshot(path=str(tmp_path / "serve.png"), full_page=False)
            assert (tmp_path / "serve.png").stat().st_size > 10_000
        finally:
            browser.close()
