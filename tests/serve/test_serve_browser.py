"""End to end in a browser: WhisperLiveKit's server (embedded whisper-base, `--translation-backend alignatt`)
pointed at `alignheads serve` (embedded Gemma 3 270M), its own web page in headless Chromium with a shipped
talk as the fake microphone; translated text must appear on the page.

Needs whisperlivekit (+ the [whisperlivekit] extra), playwright's Python package, Debian's chromium
(`apt-get install -y chromium chromium-driver`) and the embedded models (prepared on first use); skips otherwise.
`ALIGNHEADS_BROWSER_SCREENSHOT=figures/whisperlivekit_alignheads.png` saves the page (README figure).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from alignheads.speech.talks import TALKS_DIR
from tests.browser import CHROMIUM_FLAGS, chromium_path, free_port, wait_http

pytest.importorskip("whisperlivekit", reason="whisperlivekit is not installed (`make venv` installs it)")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (`make venv` installs it)")

CHROMIUM = chromium_path()
TALK = TALKS_DIR / "talk04.wav"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install -y chromium chromium-driver)"),
    pytest.mark.skipif(os.environ.get("ALIGNHEADS_SKIP_EMBEDDED") == "1", reason="ALIGNHEADS_SKIP_EMBEDDED=1"),
]


def test_whisperlivekit_web_page_shows_alignheads_translation(embedded, tmp_path):
    from alignheads.heads.headset import HeadEntry, HeadSet
    from alignheads.serve.engine import Engine
    from alignheads.serve.server import MTServer, ServeConfig, ServerThread, session_config
    from alignheads.speech.asr import prepare_whisper

    whisper_dir = prepare_whisper(deep=False)  # the embedded whisper-base, assembled into the cache once
    f = embedded.facts  # the en-de head set `alignheads score` exports on the shipped dev set (README)
    hs = HeadSet([HeadEntry(11, 2, query="emit"), HeadEntry(3, 3), HeadEntry(6, 0)], f.model_id, "en", "de",
                 f.num_layers, f.num_heads)
    engine = Engine(embedded, {"en-de": hs}, threads=1)
    engine.warmup(session_config("server", {}))  # WhisperLiveKit's client gives each call 15 s (120 s for the first)
    mt = MTServer(engine, ServeConfig(port=0))
    port = free_port()
    wlk_cmd = [sys.executable, "-m", "whisperlivekit.basic_server", "--host", "127.0.0.1", "--port", str(port),
               "--backend", "faster-whisper", "--backend-policy", "localagreement", "--model_dir", str(whisper_dir),
               "--lan", "en", "--target-language", "de", "--translation-backend", "alignatt", "--pcm-input",
               "--warmup-file", "", "--log-level", "INFO"]
    log = (tmp_path / "whisperlivekit.log").open("w")
    with ServerThread(mt) as mt_url:
        wlk = subprocess.Popen([*wlk_cmd, "--alignatt-url", mt_url], stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, "HF_HUB_OFFLINE": "1"})
        try:
            wait_http(f"http://127.0.0.1:{port}/health", wlk, 180)
            with playwright.sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
                    *CHROMIUM_FLAGS, "--use-fake-ui-for-media-stream",
                    "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={TALK}",
                    "--autoplay-policy=no-user-gesture-required"])
                page = browser.new_page(viewport={"width": 1000, "height": 460})
                page.goto(f"http://127.0.0.1:{port}/")
                page.click("#recordButton")
                page.wait_for_function("() => [...document.querySelectorAll('.translation_text')]"
                                       ".some(e => e.innerText.trim().length > 8)", timeout=240_000)
                page.wait_for_timeout(30_000)  # let a few more lines arrive for the screenshot
                texts = page.eval_on_selector_all(".translation_text", "els => els.map(e => e.innerText.trim())")
                if shot := os.environ.get("ALIGNHEADS_BROWSER_SCREENSHOT"):
                    page.screenshot(path=shot)
                browser.close()
        finally:
            wlk.terminate()
            wlk.wait(30)
            log.close()
    engine.close()
    assert any(len(t) > 8 for t in texts), texts
    assert mt.stats.sessions_total >= 1 and mt.stats.translations > 0
    assert not mt.stats.errors, mt.stats.errors
