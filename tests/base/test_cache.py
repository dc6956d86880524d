"""The artifact cache: per-use and deep checks, rebuilds, the per-artifact lock, stale temp folders, bad cache paths."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from filelock import FileLock

from alignheads.base.cache import MANIFEST, CacheError, _build, ensure_artifact, verify_artifact

MiB = 1 << 20


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("ALIGNHEADS_CACHE", str(root))
    return root


def _quiet(_msg: str) -> None:
    pass


def _overwrite(path: Path, offset: int, data: bytes, keep_mtime: bool) -> None:
    """Write `data` at `offset` in place (same size); optionally put the old modification time back."""
    st = path.stat()
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(data)
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size


def test_rebuilds_partial_or_corrupt(cache):
    builds = []

    def build(d):
        builds.append(1)
        (d / "weights.bin").write_bytes(b"x" * 100)

    path = ensure_artifact("thing", "v1", build, log=_quiet)
    assert verify_artifact(path, "v1", deep=True) is None and len(builds) == 1
    ensure_artifact("thing", "v1", build, log=_quiet)
    assert len(builds) == 1  # reused
    (path / "weights.bin").write_bytes(b"x" * 50)  # truncated copy
    assert "size" in verify_artifact(path, "v1")
    ensure_artifact("thing", "v1", build, log=_quiet)
    assert len(builds) == 2 and (path / "weights.bin").stat().st_size == 100
    (path / MANIFEST).unlink()  # interrupted build
    assert "no manifest" in verify_artifact(path, "v1")
    ensure_artifact("thing", "v2", build, log=_quiet)
    assert len(builds) == 3


def test_failed_build_leaves_nothing(cache):
    def build(d):
        (d / "half.bin").write_bytes(b"x")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        ensure_artifact("broken", "v1", build, log=_quiet)
    assert not (cache / "broken").exists() and [p for p in cache.iterdir() if p.is_dir()] == []


def _big(d: Path) -> None:
    (d / "model.safetensors").write_bytes(os.urandom(80 * MiB))
    (d / "config.json").write_text('{"layers": 18}')


def test_same_size_overwrite_of_50_mb_is_caught_on_use_and_rebuilt(cache):
    """The reported case: 50 MB overwritten inside model.safetensors, same size (and here even the same
    modification time, so only the sampled checksum can see it)."""
    path = ensure_artifact("model", "v1", _big, log=_quiet)
    weights = path / "model.safetensors"
    _overwrite(weights, 20 * MiB, os.urandom(50 * 10**6), keep_mtime=True)
    assert "sampled checksum mismatch" in verify_artifact(path, "v1")
    messages = []
    ensure_artifact("model", "v1", _big, log=messages.append)
    assert "sampled checksum mismatch" in messages[0]
    assert verify_artifact(path, "v1", deep=True) is None


def test_a_one_byte_write_is_caught_by_its_modification_time(cache):
    path = ensure_artifact("model", "v1", _big, log=_quiet)
    _overwrite(path / "model.safetensors", 5 * MiB + 7, b"\x00", keep_mtime=False)
    assert "checksum mismatch (the file was changed" in verify_artifact(path, "v1")


def test_deep_check_catches_what_sampling_misses(cache):
    path = ensure_artifact("model", "v1", _big, log=_quiet)
    _overwrite(path / "model.safetensors", 5 * MiB + 7, b"\x00", keep_mtime=True)  # between two slices
    assert verify_artifact(path, "v1") is None
    assert "checksum mismatch" in verify_artifact(path, "v1", deep=True)
    builds = []
    ensure_artifact("model", "v1", lambda d: (builds.append(1), _big(d)), deep=True, log=_quiet)
    assert builds == [1]


def test_small_files_are_hashed_whole_on_every_use(cache):
    path = ensure_artifact("model", "v1", _big, log=_quiet)
    _overwrite(path / "config.json", 12, b"9", keep_mtime=True)
    assert "sampled checksum mismatch" in verify_artifact(path, "v1")


def test_a_touched_file_is_rehashed_once_then_trusted_again(cache):
    path = ensure_artifact("model", "v1", _big, log=_quiet)
    os.utime(path / "model.safetensors")  # e.g. copied without -p: content equal, time new
    assert ensure_artifact("model", "v1", _big, log=_quiet) == path
    entry = json.loads((path / MANIFEST).read_text())["files"]["model.safetensors"]
    assert entry["mtime_ns"] == (path / "model.safetensors").stat().st_mtime_ns


def test_a_manifest_from_before_samples_is_verified_in_full_and_upgraded(cache):
    path = ensure_artifact("model", "v1", _big, log=_quiet)
    meta = json.loads((path / MANIFEST).read_text())
    for entry in meta["files"].values():  # what older versions wrote: size and sha256 only
        del entry["sample"], entry["mtime_ns"]
    (path / MANIFEST).write_text(json.dumps(meta))
    builds = []
    ensure_artifact("model", "v1", lambda d: builds.append(1), log=_quiet)
    assert builds == [] and "sample" in json.loads((path / MANIFEST).read_text())["files"]["config.json"]


def test_cache_path_that_is_a_file_or_cannot_be_created(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("ALIGNHEADS_CACHE", str(tmp_path / "file"))
    with pytest.raises(CacheError, match="is a file, not a folder"):
        ensure_artifact("x", "v1", _big, log=_quiet)
    monkeypatch.setenv("ALIGNHEADS_CACHE", str(tmp_path / "file" / "sub"))
    with pytest.raises(CacheError, match="cannot create the cache folder"):
        ensure_artifact("x", "v1", _big, log=_quiet)
    if sys.platform == "linux":  # even root cannot create folders in /proc
        monkeypatch.setenv("ALIGNHEADS_CACHE", "/proc/alignheads-cache")
        with pytest.raises(CacheError, match="set ALIGNHEADS_CACHE to a writable folder"):
            ensure_artifact("x", "v1", _big, log=_quiet)


# ---------------------------------------------------------------- concurrency (real processes)

def _ctx():
    return mp.get_context("fork" if sys.platform == "linux" else "spawn")


def _toy_build(d: Path) -> None:
    """A build that records itself and fails loudly if another build of the same artifact runs at once."""
    log = Path(os.environ["ALIGNHEADS_CACHE"]).parent / "builds"
    log.mkdir(exist_ok=True)
    marker = log / "running"
    fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # FileExistsError = two builds at once
    try:
        for i in range(10):
            (d / f"part{i}.bin").write_bytes(os.urandom(10_000))
        time.sleep(0.02)
        (log / f"{os.getpid()}-{time.monotonic_ns()}").touch()
    finally:
        os.close(fd)
        marker.unlink()


def _worker(root: str, force: bool, results) -> None:
    os.environ["ALIGNHEADS_CACHE"] = root
    try:
        path = ensure_artifact("toy", "v1", _toy_build, force=force, log=_quiet)
        results.put(verify_artifact(path, "v1", deep=True) or "ok")
    except Exception as e:  # reported to the test, which fails on anything but "ok"
        results.put(f"{type(e).__name__}: {e}")


def _run_workers(root: Path, n: int, force: bool) -> list[str]:
    ctx = _ctx()
    results = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(str(root), force, results)) for _ in range(n)]
    for p in procs:
        p.start()
    out = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    return out


def _builds(cache: Path) -> int:
    log = cache.parent / "builds"
    return len(list(log.iterdir())) if log.is_dir() else 0


def test_concurrent_first_use_builds_once(cache):
    assert _run_workers(cache, 4, force=False) == ["ok"] * 4
    assert _builds(cache) == 1


def test_concurrent_forced_rebuilds_never_fail(cache):
    """Reported: without a lock, 5 of 80 concurrent builds failed (FileNotFoundError / Directory not empty)."""
    results = []
    for _ in range(10):
        results += _run_workers(cache, 4, force=True)
    assert results == ["ok"] * 40
    assert [p.name for p in cache.iterdir() if p.is_dir()] == ["toy"]


def test_a_forced_rebuild_finished_while_waiting_is_not_repeated(cache):
    ctx = _ctx()
    results = ctx.Queue()
    cache.mkdir()
    lock = FileLock(cache / ".toy.lock")
    with lock:  # this test holds the artifact: the workers must wait
        procs = [ctx.Process(target=_worker, args=(str(cache), True, results)) for _ in range(3)]
        for p in procs:
            p.start()
        time.sleep(1.0)
        assert results.empty()  # all three are waiting
        _build(cache, "toy", "v1", _toy_build)  # the build they were waiting for
    assert [results.get(timeout=60) for _ in procs] == ["ok"] * 3
    for p in procs:
        p.join(timeout=60)
    assert _builds(cache) == 1


def _slow_build(d: Path) -> None:
    (d / "big.bin").write_bytes(b"x" * MiB)
    (Path(os.environ["ALIGNHEADS_CACHE"]).parent / "started").touch()
    time.sleep(120)


def _killed_build(root: str, force: bool) -> None:
    os.environ["ALIGNHEADS_CACHE"] = root
    ensure_artifact("toy", "v1", _slow_build, force=force, log=_quiet)


def _kill_during_build(cache: Path, force: bool) -> list[str]:
    started = cache.parent / "started"
    started.unlink(missing_ok=True)
    p = _ctx().Process(target=_killed_build, args=(str(cache), force))
    p.start()
    deadline = time.monotonic() + 60
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL)
    p.join()
    return sorted(x.name for x in cache.iterdir() if x.is_dir())


def test_temp_folder_of_a_killed_build_is_removed_at_the_next_run(cache):
    """Reported: a build killed with SIGKILL left its temp folder forever."""
    left = _kill_during_build(cache, force=False)
    assert len(left) == 1 and left[0].startswith(".toy.")
    messages = []
    ensure_artifact("toy", "v1", _toy_build, log=messages.append)
    assert sorted(x.name for x in cache.iterdir() if x.is_dir()) == ["toy"]
    assert any("interrupted build" in m for m in messages)
    # A killed forced rebuild next to a good artifact: the next (cheap, unlocked-path) use cleans up too.
    left = _kill_during_build(cache, force=True)
    assert len(left) == 2
    ensure_artifact("toy", "v1", _toy_build, log=_quiet)
    assert sorted(x.name for x in cache.iterdir() if x.is_dir()) == ["toy"] and _builds(cache) == 1
