"""Execute the notebooks and write their `.ipynb` twins with outputs: `make notebooks` (papermill).

`python notebooks/execute.py [NAME ...] [--model SPEC] [--out DIR]`: each `notebooks/NN_*.py` (jupytext
py:percent, the source of truth) is converted, executed top to bottom by papermill with `notebooks/` as
working directory, cleaned so that a re-run writes the same file, and written atomically beside it (or
into `--out`). The kernels read their model from `ALIGNHEADS_MODEL` (default: the embedded model);
`--model` sets it. Prints each notebook's wall time.

What "the same file" means: cell ids come from the cell's position and source, papermill's and nbclient's
timestamps and the widget state (random model ids) are dropped, widget outputs keep only their static
fallback (the explorer's PNG snapshot), progress bars are off (`TQDM_DISABLE=1`) and torch runs on one
thread. Values that are measurements of time (computation-aware latency, real-time factors) still differ
between runs.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
# Set for every kernel: deterministic, quiet output.
KERNEL_ENV = {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}


def notebook_sources(names: list[str] | None = None) -> list[Path]:
    """The `NN_*.py` notebooks, all or those whose stem starts with one of `names` (e.g. "00", "02_attention")."""
    paths = sorted(HERE.glob("[0-9][0-9]_*.py"))
    if names:
        paths = [p for p in paths if any(p.stem.startswith(n) for n in names)]
        if not paths:
            raise SystemExit(f"no notebook matches {names}; have {[p.stem for p in sorted(HERE.glob('[0-9]*.py'))]}")
    return paths


def clean(nb):
    """Drop what differs between two runs of the same code (timings, widget state, random ids)."""
    nb.metadata.pop("papermill", None)
    nb.metadata.pop("widgets", None)
    seen: set[str] = set()
    for i, cell in enumerate(nb.cells):
        digest = hashlib.sha1(f"{i}\0{cell.cell_type}\0{cell.source}".encode()).hexdigest()[:12]
        cell.id = digest if digest not in seen else f"{digest}-{i}"
        seen.add(cell.id)
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        if cell.cell_type != "code":
            continue
        outputs = []
        for out in cell.outputs:
            data = out.get("data")
            if data is not None and WIDGET_VIEW in data:
                data.pop(WIDGET_VIEW)
                if set(data) <= {"text/plain"}:  # a widget without a static picture: nothing to show offline
                    continue
            outputs.append(out)
        cell.outputs = outputs
    return nb


def execute(path: Path, timeout: int = 900):
    """Run one `.py` notebook with papermill (working directory: notebooks/); returns the cleaned notebook."""
    import jupytext
    import papermill

    nb = jupytext.read(path)
    nb.metadata.setdefault("jupytext", {})["formats"] = "ipynb,py:percent"
    nb = papermill.execute_notebook(nb, None, kernel_name="python3", cwd=str(path.parent), progress_bar=False,
                                    execution_timeout=timeout, start_timeout=120)
    return clean(nb)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python notebooks/execute.py", description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", help="notebook name prefixes (default: all), e.g. 00 02")
    p.add_argument("--model", help="model spec for every notebook (sets ALIGNHEADS_MODEL; default: embedded)")
    p.add_argument("--out", type=Path, help="write the .ipynb files here instead of beside the .py files")
    p.add_argument("--timeout", type=int, default=900, help="seconds one cell may run (default 900)")
    args = p.parse_args(argv)
    import nbformat

    from alignheads.base.fileio import atomic_open

    os.environ.update(KERNEL_ENV)
    if args.model:
        os.environ["ALIGNHEADS_MODEL"] = args.model
    times = {}
    for path in notebook_sources(args.names):
        t0 = time.perf_counter()
        nb = execute(path, args.timeout)
        times[path.stem] = time.perf_counter() - t0
        target = (args.out or path.parent) / f"{path.stem}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(target, "w") as f:
            nbformat.write(nb, f)
        print(f"{target}: {times[path.stem]:.0f} s", flush=True)
    model = os.environ.get("ALIGNHEADS_MODEL", "embedded")
    print(f"model {model}: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))  # the checkout's alignheads, also when run from elsewhere
    sys.exit(main())
