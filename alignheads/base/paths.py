"""Where the shipped data lives in a checkout of the repository (one place; absent from an installed wheel)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GOLD_DIR = REPO / "data" / "gold"  # the hand-aligned en-de / en-it / en-zh dev and test sets
TALKS_DIR = REPO / "data" / "talks"  # the shipped talks: audio, transcripts, sentence times
RESULTS_DIR = REPO / "benchmarks" / "results"  # benchmark JSON the figures and README are made from
GOLD_DIRECTIONS = ("en-de", "en-it", "en-zh")  # the directions GOLD_DIR holds
POLICY_RESULTS = RESULTS_DIR / "policies.json"  # benchmarks/bench_policies.py's summary
READINESS_RESULTS = RESULTS_DIR / "readiness.json"  # benchmarks/bench_readiness.py's summary
HELDOUT_RESULTS = RESULTS_DIR / "heldout.json"  # benchmarks/bench_heldout.py's summary
