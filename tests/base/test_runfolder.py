"""One writer per run (`RunFolder`): a lock against a second run, a re-run replacing the previous set, inputs never
overwritten, and a failed write (a full disk) leaving a summary marked partial instead of a mixed folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from alignheads.base.errors import AlignheadsError
from alignheads.base.runfolder import RUN_RECORD, RunFolder


def test_a_second_run_into_the_same_folder_is_refused(tmp_path):
    """Two runs into one folder are refused by the lock, not mixed; the folder is free again afterwards."""
    with RunFolder(tmp_path / "out"):
        with pytest.raises(AlignheadsError, match="another alignheads run is writing into this folder"):
            with RunFolder(tmp_path / "out"):
                pass
    with RunFolder(tmp_path / "out") as again:
        again.add("a.txt", "x")
        again.commit()


def test_a_rerun_replaces_the_previous_files_as_a_set(tmp_path):
    """Files the previous run wrote and this one did not are removed; other files in the folder are left alone."""
    (tmp_path / "notes.md").write_text("mine")
    with RunFolder(tmp_path) as run:
        run.add("instances.log", "1")
        run.add_json("coverage.json", {"n": 1})
        run.commit()
    with RunFolder(tmp_path) as run:
        run.add("instances.log", "2")
        assert (tmp_path / "instances.log").read_text() == "1"  # staged, not yet in place
        run.commit()
    assert (tmp_path / "instances.log").read_text() == "2"
    assert not (tmp_path / "coverage.json").exists()
    assert (tmp_path / "notes.md").read_text() == "mine"
    assert json.loads((tmp_path / RUN_RECORD).read_text()) == {"files": ["instances.log"]}
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == []


def test_an_aborted_run_leaves_the_previous_set(tmp_path):
    with RunFolder(tmp_path) as run:
        run.add("scores.json", "{}")
        run.commit()
    with pytest.raises(RuntimeError), RunFolder(tmp_path) as run:
        run.add("scores.json", '{"new": 1}')
        raise RuntimeError("the run failed")
    assert (tmp_path / "scores.json").read_text() == "{}"
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []


def test_inputs_are_never_overwritten_by_path_or_inode(tmp_path):
    """A run file that is one of the run's inputs — the same path, or another name of the same inode — is refused."""
    data = tmp_path / "instances.log"
    data.write_text("input")
    with RunFolder(tmp_path, inputs=[data]) as run, pytest.raises(AlignheadsError, match="would replace the input"):
        run.add("instances.log", "output")
    linked = tmp_path / "elsewhere.log"
    os.link(data, linked)
    with RunFolder(tmp_path, inputs=[linked]) as run, pytest.raises(AlignheadsError, match="would replace the input"):
        run.add("instances.log", "output")
    assert data.read_text() == "input"


@pytest.mark.slow  # a fresh interpreter with a file-size limit
def test_a_full_disk_leaves_scores_marked_partial(tmp_path):
    """With files limited to 4 KiB (RLIMIT_FSIZE, as a full disk), the large file fails: nothing of the set is
    committed but scores.json, which says partial and why; the error is one clear line."""
    code = textwrap.dedent(f"""
        import resource
        from alignheads.base.runfolder import RunFolder
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        with RunFolder({str(tmp_path)!r}) as run:
            try:
                run.add("decisions.jsonl", "x" * 100_000)
                run.add_json("scores.json", {{"bleu": 1.0, "partial": False}})
            except OSError as e:
                run.commit_partial({{"bleu": 1.0, "partial": False}}, e)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode != 0 and "could not write the run's files" in r.stderr
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert scores["partial"] is True and "could not write" in scores["stopped"]
    assert not (tmp_path / "decisions.jsonl").exists()
