"""Small shared helpers for the benchmarks: threads, interleaved timing, torch memory peaks, tables, JSON results."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def pin_threads(n: int) -> int:
    """Make torch use `n` intra-op threads (and 1 inter-op thread when still settable); return `n`."""
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # only settable before the first parallel work; harmless if already used
        pass
    return torch.get_num_threads()


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo, else platform.processor()."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# The instruction sets that decide which CPU kernels pay off (bf16 / int8 matrix units, vector dot products).
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8")


def cpu_flags() -> list[str]:
    """Which of CPU_FLAGS this CPU reports (from /proc/cpuinfo)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return [f for f in CPU_FLAGS if f in have]
    except OSError:
        pass
    return []


def machine_info() -> dict[str, Any]:
    """What the numbers depend on: CPU, cores, library versions, threads, and how busy the machine was."""
    import transformers

    info = {
        "cpu_model": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
    }
    if hasattr(os, "getloadavg"):
        info["loadavg_1_5_15"] = [round(x, 2) for x in os.getloadavg()]
    return info


@dataclass
class Timing:
    """Repeated measurements of one arm: wall and process-CPU seconds per repetition."""

    name: str
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    parts: dict[str, list[float]] = field(default_factory=dict)  # optional sub-phase wall times

    @property
    def median(self) -> float:
        return statistics.median(self.wall)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu)

    def summary(self) -> dict[str, Any]:
        out = {
            "repeats": len(self.wall),
            "wall_median_s": self.median,
            "wall_min_s": min(self.wall),
            "wall_max_s": max(self.wall),
            "cpu_median_s": self.cpu_median,
            "wall_s": self.wall,
            "cpu_s": self.cpu,
        }
        if self.parts:
            out["parts_median_s"] = {k: statistics.median(v) for k, v in self.parts.items()}
        return out


class Parts:
    """Sub-phase stopwatch passed to a timed function: `parts.lap("forward")` records the time since the last lap."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = self.laps.get(name, 0.0) + now - self._t
        self._t = now


def interleaved(
    arms: dict[str, Callable[[Parts], Any]],
    repeats: int,
    warmup: int = 1,
    check: Callable[[str, Any], None] | None = None,
    desc: str = "timing",
) -> dict[str, Timing]:
    """Time each arm `repeats` times, interleaved (A B, B A, A B ...) so a busy machine's drifts hit all arms alike.

    The order rotates every round so no arm always runs first (after, e.g., the other arm's memory churn).

    Each arm is called as `fn(parts)` and may mark sub-phases with `parts.lap(name)`. `warmup` untimed
    rounds run first. `check(name, result)` is called on every result (e.g. to assert identical outputs).
    """
    from tqdm import tqdm

    timings = {name: Timing(name) for name in arms}
    for _ in range(warmup):
        for name, fn in arms.items():
            result = fn(Parts())
            if check:
                check(name, result)
    names = list(arms)
    for i in tqdm(range(repeats), desc=desc, unit="round", leave=False):
        for name in names[i % len(names):] + names[: i % len(names)]:
            fn = arms[name]
            parts = Parts()
            c0, t0 = time.process_time(), time.perf_counter()
            result = fn(parts)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            t = timings[name]
            t.wall.append(wall)
            t.cpu.append(cpu)
            for k, v in parts.laps.items():
                t.parts.setdefault(k, []).append(v)
            if check:
                check(name, result)
            del result
    return timings


def torch_peak_bytes(fn: Callable[[], Any]) -> tuple[Any, int]:
    """Run `fn` once under the torch profiler; return its result and the peak of live torch CPU allocations.

    The peak is relative to the start of the call (tensors alive before it do not count), and
    includes every intermediate torch allocates (activations, logits, kernel workspaces).
    """
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
    events: list[tuple[int, int, int]] = []
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        if node.tag == _EventType.Allocation:
            f = node.extra_fields
            events.append((node.start_time_ns, f.alloc_size, f.total_allocated))
        stack.extend(node.children)
    if not events:
        return result, 0
    events.sort()
    live, peak = 0, 0
    for _, size, _total in events:  # running sum of allocations and frees seen during the call
        live += size
        peak = max(peak, live)
    return result, peak


def tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of the tensors' own elements (a view counts only what it shows)."""
    return sum(t.numel() * t.element_size() for t in tensors)


def storage_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of the distinct storages the tensors keep alive (a view keeps its whole base alive)."""
    seen: dict[int, int] = {}
    for t in tensors:
        s = t.untyped_storage()
        seen[s.data_ptr()] = s.nbytes()
    return sum(seen.values())


def mib(n: float) -> float:
    return round(n / 2**20, 3)


def print_table(rows: list[dict[str, Any]], title: str = "") -> None:
    """Print rows as a pandas DataFrame table."""
    import pandas as pd

    with pd.option_context("display.max_columns", None, "display.width", 200, "display.max_colwidth", 60):
        if title:
            print(f"\n== {title}")
        print(pd.DataFrame(rows).to_string(index=False))


def write_result(name: str, payload: dict[str, Any], results_dir: Path = RESULTS_DIR) -> Path:
    """Write `payload` plus machine info and the command line to `results/<name>.json`, atomically."""
    from alignheads.base.fileio import write_json

    path = results_dir / f"{name}.json"
    doc = {
        "benchmark": name,
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "machine": machine_info(),
        **payload,
    }
    write_json(path, _jsonable(doc))
    return path


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "__dataclass_fields__"):
        return _jsonable(asdict(obj))
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, float):
        return round(obj, 9)
    return obj
