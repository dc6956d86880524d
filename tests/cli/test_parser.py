"""The command-line parser: built without the heavy libraries, offering what the library registers."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_the_parser_loads_no_torch_and_no_matplotlib():
    """Guards the fast CLI (issue 22): `alignheads --help` and every usage error come before torch, transformers,
    matplotlib or pandas are imported (checked in a fresh interpreter)."""
    code = ("import sys; from alignheads.cli.commands import build_parser; build_parser(); "
            "print(' '.join(m for m in ('torch', 'transformers', 'matplotlib', 'pandas') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert r.stdout.strip() == ""


def test_the_parser_offers_every_policy():
    """The torch-free policy names the parser offers (simul.config.POLICY_NAMES) are the registry's."""
    from alignheads.simul.config import POLICY_NAMES
    from alignheads.simul.policy import POLICIES

    assert list(POLICY_NAMES) == list(POLICIES)
