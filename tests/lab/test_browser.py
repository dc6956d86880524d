"""Notebook 00's head explorer in a real browser: JupyterLab on a free localhost port, headless Chromium (Playwright
on Debian's chromium), run all cells on the tiny Gemma-4, then work the widget (see tests/browser.py)."""

from __future__ import annotations

import json
import os

import pytest

from tests.browser import NOTEBOOK, ROOT, chromium_path, drive_explorer, jupyterlab, lab_root

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def chromium() -> str:
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
    pytest.importorskip("jupyterlab", reason="jupyterlab is not installed (pip install -e '.[lab]')")
    path = chromium_path()
    if path is None:
        pytest.skip("no chromium on PATH: apt-get install chromium chromium-driver (.ci/run installs them)")
    return path


def test_explorer_works_in_jupyterlab(chromium, tmp_path, tiny4):
    from alignheads.heads.headset import load_headset

    notebook = lab_root(tmp_path)
    env = {"ALIGNHEADS_MODEL": "tiny-gemma4", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "TQDM_DISABLE": "1"}
    shot = tmp_path / "explorer.png"
    with jupyterlab(tmp_path, env, tmp_path / "lab.log") as (url, token):
        seen = drive_explorer(url, token, tmp_path, screenshot=shot, timeout_s=240)

    # All cells ran without an error (the saved notebook holds this run's outputs), figures included.
    nb = json.loads(notebook.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c["execution_count"] for c in code), "not every cell ran"
    outputs = [o for c in code for o in c["outputs"]]
    assert not [o for o in outputs if o["output_type"] == "error"] and not seen.errors_in_page
    assert "tiny-gemma4: 6 layers x 4 heads" in "".join("".join(o.get("text", "")) for o in outputs)
    # The live widget, not its static snapshot: the score map is an image inside the widget.
    assert seen.heatmap_size[0] > 100 and seen.heatmap_size[1] > 100
    assert seen.selector_redrew
    assert seen.click_selected.startswith("selected L") and seen.click_selected != seen.selected_after_pick
    # add, then remove (or the reverse when the selected head was in the set): the read-out follows and returns
    start, changed, back = seen.readouts
    assert changed != start and back == start and "ensemble AER" in (changed + start)
    assert seen.export_status.startswith("wrote"), seen.export_status
    (path,) = (tmp_path / "out" / "explorer").glob("translation_heads_*.json")
    hs = load_headset(path)
    hs.validate(tiny4.facts)
    assert hs.model_id == "tiny-gemma4" and hs.heads
    assert shot.stat().st_size > 10_000
    assert os.path.relpath(notebook, tmp_path) == NOTEBOOK
