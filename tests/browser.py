"""Drive notebook 00's head explorer in JupyterLab with headless Chromium (Playwright on Debian's chromium).

Used by `tests/lab/test_browser.py`, and to take the README's screenshot on the embedded model:
`python -m tests.browser --model embedded --screenshot figures/explorer.png`.

`lab_root` lays out a throw-away JupyterLab root (the notebook's `.ipynb` twin, the shipped data), so nothing
in the checkout changes; `jupyterlab` starts a server on a free localhost port with a token and private
settings; `drive_explorer` opens the notebook, runs all cells and works the widget, returning what it saw.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "notebooks/00_quick_look.ipynb"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
# Private JupyterLab settings: every cell in the DOM (no windowing), no news or update checks.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                       "checkForUpdates": False},
}


def chromium_path() -> str | None:
    """Debian's chromium, or whatever `chromium` / `chromium-browser` is on PATH."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lab_root(root: Path) -> Path:
    """A JupyterLab root holding notebook 00's `.ipynb` (outputs cleared, so every output seen later comes from
    this run) and a link to the shipped data; returns the notebook path."""
    import nbformat

    nb = nbformat.read(ROOT / NOTEBOOK, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    (root / "notebooks").mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, root / NOTEBOOK)
    (root / "data").symlink_to(ROOT / "data", target_is_directory=True)
    return root / NOTEBOOK


@contextlib.contextmanager
def jupyterlab(root: Path, env: dict[str, str], log: Path) -> Iterator[tuple[str, str]]:
    """JupyterLab serving `root` on 127.0.0.1 (free port, random token); yields (base URL, token)."""
    settings = root / ".lab-settings"
    for name, values in LAB_SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(values))
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, **env, "JUPYTERLAB_SETTINGS_DIR": str(settings),
           "JUPYTERLAB_WORKSPACES_DIR": str(root / ".lab-workspaces"), "JUPYTER_RUNTIME_DIR": str(root / ".runtime"),
           "JUPYTER_CONFIG_DIR": str(root / ".jupyter-config")}
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           "--ServerApp.port_retries=0", f"--ServerApp.root_dir={root}", f"--IdentityProvider.token={token}",
           "--LabApp.extension_manager=readonly", *(["--allow-root"] if os.geteuid() == 0 else [])]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=root)
    try:
        wait_http(f"http://127.0.0.1:{port}/api/status?token={token}", proc, log=log)
        yield f"http://127.0.0.1:{port}", token
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 90, log: Path | None = None) -> None:
    """Wait until `url` answers 200; fail with the log's tail if `proc` exits or the time runs out."""
    tail = (lambda: "\n" + log.read_text()[-3000:]) if log is not None else (lambda: "")
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}:{tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s:{tail()}")


@dataclass
class Observed:
    """What the browser saw while working the explorer."""

    heatmap_size: tuple[int, int] = (0, 0)  # natural size of the score-map image
    errors_in_page: list[str] = field(default_factory=list)  # text of error outputs
    selector_redrew: bool = False  # picking another head replaced the attention-map image
    selected_after_pick: str = ""
    click_selected: str = ""  # the head a click on the score map selected ("" if none)
    readouts: list[str] = field(default_factory=list)  # the head-set line: start, after add/remove, after the undo
    export_status: str = ""
    screenshot: Path | None = None


def drive_explorer(url: str, token: str, workdir: Path, screenshot: Path | None = None,
                   timeout_s: float = 300) -> Observed:
    """Open notebook 00, run all cells, then work the explorer widget: pick a head, click the map, add/remove a
    head, export. Saves the notebook afterwards (so its outputs can be checked on disk)."""
    from playwright.sync_api import sync_playwright

    seen = Observed()
    ms = timeout_s * 1000
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(workdir / "chromium-profile"), executable_path=chromium_path(), headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1900, "height": 1300})
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(60_000)  # for a redraw; running the notebook gets `timeout_s`
            page.goto(f"{url}/lab/tree/{NOTEBOOK}?token={token}")
            page.wait_for_selector(".jp-Notebook .jp-Cell")
            _wait_for_kernel(url, token, timeout_s)
            _run_all(page)
            explorer = page.locator(".jp-OutputArea .alignheads-explorer")
            explorer.wait_for(timeout=ms)
            page.wait_for_function(
                "() => [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')].every("
                "e => /\\[\\d+\\]/.test(e.textContent))", timeout=ms)
            seen.errors_in_page = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
                                               ).filter(has_text="Traceback").all_text_contents()
            heatmap = explorer.locator("img.alignheads-heatmap")
            heatmap.scroll_into_view_if_needed()
            page.wait_for_function("el => el.complete && el.naturalWidth > 0", arg=heatmap.element_handle())
            seen.heatmap_size = tuple(heatmap.evaluate("el => [el.naturalWidth, el.naturalHeight]"))
            maps = explorer.locator("img.alignheads-maps")
            info = explorer.locator(".alignheads-info")

            def changed(locator, attr_or_text: str, before: str) -> None:
                js = ("el => el.getAttribute('src') !== b" if attr_or_text == "src" else "el => el.textContent !== b")
                page.wait_for_function(f"([el, b]) => ({js})(el)", arg=[locator.element_handle(), before])

            # 1. the pickers: another layer, then another head -> each redraws the attention map
            for select in (explorer.locator(".alignheads-layer select"), explorer.locator(".alignheads-head select")):
                options = select.locator("option").all_text_contents()
                current = select.evaluate("el => el.options[el.selectedIndex].text")
                before = maps.get_attribute("src")
                select.select_option(label=options[-1] if current != options[-1] else options[0])
                changed(maps, "src", before)
            seen.selector_redrew = True
            seen.selected_after_pick = info.text_content()
            # 2. a click in the middle of the score map selects the head under it
            box = heatmap.bounding_box()
            before = info.text_content()
            heatmap.click(position={"x": box["width"] * 0.42, "y": box["height"] * 0.5})
            with contextlib.suppress(Exception):
                changed(info, "text", before)
            seen.click_selected = info.text_content() if info.text_content() != before else ""
            # 3. add / remove the selected head: the ensemble read-out follows; then export
            readout = explorer.locator(".alignheads-readout")
            add, remove = explorer.locator("button.alignheads-add"), explorer.locator("button.alignheads-remove")
            seen.readouts.append(readout.text_content())
            first, second = (remove, add) if add.is_disabled() else (add, remove)
            for button in (first, second):
                before = readout.text_content()
                button.click()
                changed(readout, "text", before)
                seen.readouts.append(readout.text_content())
                if button is add:
                    status = explorer.locator(".alignheads-status")
                    explorer.locator("button.alignheads-export").click()
                    page.wait_for_function("el => el.textContent.length > 0", arg=status.element_handle())
                    seen.export_status = status.text_content()
            if screenshot is not None:
                explorer.screenshot(path=str(screenshot))
                seen.screenshot = screenshot
            page.keyboard.press("Control+s")
            page.wait_for_function("() => !document.querySelector('.jp-mod-dirty')")
        except Exception:
            if context.pages:  # what the page showed when it failed, next to the test's other files
                context.pages[0].screenshot(path=str(workdir / "failure.png"))
            raise
        finally:
            context.close()
    return seen


def _wait_for_kernel(url: str, token: str, timeout_s: float) -> None:
    """Until the notebook's kernel is idle with the page connected to it (the server's /api/kernels says so)."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(f"{url}/api/kernels?token={token}", timeout=5) as r:
                kernels = json.load(r)
        except OSError:  # the server may answer 500 while the kernel is starting
            kernels = []
        if any(k["execution_state"] == "idle" and k["connections"] > 0 for k in kernels):
            return
        time.sleep(0.3)
    raise RuntimeError(f"no idle kernel with a connection after {timeout_s:.0f} s")


def _run_all(page, attempts: int = 8) -> None:
    """Run > Run All Cells, again until the cells are queued: right after the page loads, the notebook may not be
    connected to its kernel yet and the command then only clears the outputs."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for _ in range(attempts):
        page.click(".jp-Notebook .jp-CodeCell .jp-InputPrompt >> nth=0")  # the notebook is what "Run All" runs
        page.click(".lm-MenuBar-itemLabel:text-is('Run')")
        page.click(".lm-Menu-itemLabel:text-is('Run All Cells')")
        try:
            page.wait_for_function("() => /\\[(\\*|\\d+)\\]/.test(document.querySelector("
                                   "'.jp-Notebook .jp-CodeCell .jp-InputPrompt').textContent)", timeout=5000)
            return
        except PlaywrightTimeout:
            continue
    raise RuntimeError(f"Run All Cells did not start the notebook in {attempts} tries")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.browser", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="embedded", help="ALIGNHEADS_MODEL for the notebook (default: embedded)")
    p.add_argument("--screenshot", type=Path, default=ROOT / "figures" / "explorer.png")
    p.add_argument("--timeout", type=float, default=300, help="seconds for the notebook to run (default 300)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="alignheads-lab-") as tmp:
        root = Path(tmp)
        lab_root(root)
        env = {"ALIGNHEADS_MODEL": args.model, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
               "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "TQDM_DISABLE": "1"}
        with jupyterlab(root, env, root / "lab.log") as (url, token):
            try:
                seen = drive_explorer(url, token, root, screenshot=args.screenshot.resolve(), timeout_s=args.timeout)
            finally:
                if (root / "failure.png").exists():
                    shutil.copy(root / "failure.png", args.screenshot.with_name("failure.png"))
    print(seen)
    return 0


if __name__ == "__main__":
    sys.exit(main())
