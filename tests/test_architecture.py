"""The package's shape: no import cycles (imports inside functions included), one place that assembles a cascade,
the same data and model flags on every subcommand that reads a corpus or loads a model."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "alignheads"


def import_graph() -> dict[str, set[str]]:
    """alignheads module -> the alignheads modules it imports anywhere in its body (functions included)."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.glob("*.py"):
        name = path.stem
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:
                    deps.add(node.module.split(".")[0])
                else:  # from . import a, b
                    deps.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("alignheads."):
                deps.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                deps.update(a.name.split(".")[1] for a in node.names if a.name.startswith("alignheads."))
        graph[name] = {d for d in deps if (PACKAGE / f"{d}.py").is_file() and d != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path [a, b, ..., a], or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (cycle := visit(m)):
                return cycle
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (cycle := visit(n)):
            return cycle
    return None


def test_no_import_cycles():
    graph = import_graph()
    assert "capture" in graph and "qk" in graph["capture"]  # the walk sees real imports
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("low, high", [("translator", "evaluation"), ("silver", "scoring"), ("policy", "translator"),
                                       ("headset", "translator"), ("languages", "data")])
def test_lower_stages_do_not_import_higher_ones(low, high):
    assert high not in import_graph()[low]


def test_one_place_assembles_a_cascade():
    """Only alignheads.pipeline constructs SpeechCascade; everything else calls build_cascade."""
    constructing = []
    for path in [*PACKAGE.glob("*.py"), *(PACKAGE.parent / "notebooks").glob("*.py"),
                 *(PACKAGE.parent / "benchmarks").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            name = getattr(node, "func", None) and getattr(node.func, "id", getattr(node.func, "attr", None))
            if isinstance(node, ast.Call) and name == "SpeechCascade":
                constructing.append(path.name)
    assert constructing == ["pipeline.py"]


def test_public_api_resolves():
    import alignheads

    missing = [name for name in alignheads.__all__ if getattr(alignheads, name, None) is None]
    assert not missing
    with pytest.raises(AttributeError):
        alignheads.no_such_thing  # noqa: B018


DATA_FLAGS = {"--data", "--format", "--src", "--tgt", "--gold", "--tgt-file", "--swap", "--limit"}
MODEL_FLAGS = {"--model", "--device", "--dtype", "--threads"}


def _flags(command: list[str]) -> set[str]:
    from alignheads.cli import build_parser

    parser = build_parser()
    for name in command:
        sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
        parser = sub.choices[name]
    return {s for a in parser._actions for s in a.option_strings}


@pytest.mark.parametrize("command", [["score"], ["heads-eval"], ["simulate"], ["policy-eval"], ["align"],
                                     ["data", "validate"]])
def test_every_corpus_command_takes_the_same_data_flags(command):
    assert DATA_FLAGS <= _flags(command)


@pytest.mark.parametrize("command", [["score"], ["heads-eval"], ["simulate"], ["policy-eval"], ["translate"]])
def test_every_model_command_takes_the_same_model_flags(command):
    assert MODEL_FLAGS <= _flags(command)
