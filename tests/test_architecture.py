"""The package's shape: one subpackage per stage, in pipeline order, no stage importing a later one (imports
inside functions included), no import cycle, tests mirroring the stages, one place that assembles a cascade, the
same data and model flags on every subcommand that reads a corpus or loads a model."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "alignheads"
TESTS = Path(__file__).resolve().parent
# The stages in pipeline order: a module may import its own stage and earlier ones only.
STAGES = ["base", "corpus", "model", "heads", "simul", "speech", "serve", "lab", "cli"]
TOP_LEVEL = {"__init__", "__main__"}  # the lazy public API and `python -m alignheads`


def module_name(path: Path, package: Path = PACKAGE) -> str:
    """Dotted name inside alignheads: alignheads/simul/policy.py -> simul.policy; a package's __init__: the package."""
    parts = list(path.relative_to(package).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


def _resolve(path: Path, node: ast.ImportFrom, package: Path) -> list[str]:
    """The alignheads modules an ImportFrom reads (a `from pkg import module` names the module itself)."""
    if node.level:
        here = list(path.relative_to(package).parts[:-1])
        base = here[: len(here) - node.level + 1] if node.level > 1 else here
        mod = ".".join(base + ([node.module] if node.module else []))
    elif node.module and (node.module == "alignheads" or node.module.startswith("alignheads.")):
        mod = node.module.removeprefix("alignheads").lstrip(".")
    else:
        return []
    return [f"{mod}.{a.name}".lstrip(".") for a in node.names] + [mod]


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """alignheads module -> the alignheads modules it imports anywhere in its body (functions included)."""
    paths = {module_name(p, package): p for p in package.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                deps.update(_resolve(path, node, package))
            elif isinstance(node, ast.Import):
                deps.update(a.name.removeprefix("alignheads.") for a in node.names if a.name.startswith("alignheads."))
        graph[name] = {d for d in deps if d in paths and d != name and "." in d}  # modules, not stage packages
    return graph


def stage(module: str) -> str:
    return module.split(".")[0]


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


def test_every_module_lives_in_a_stage():
    """The folder list is the pipeline: no flat module beside the stages but the public API."""
    flat = {p.stem for p in PACKAGE.glob("*.py")} - TOP_LEVEL
    assert not flat, f"modules outside a stage: {sorted(flat)}"
    assert sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()) == sorted(STAGES)


def test_no_import_cycles():
    graph = import_graph()
    assert "model.qk" in graph["model.capture"]  # the walk sees real imports
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_stage_imports_a_later_one():
    """base → corpus → model → heads → simul → speech → serve → lab → cli: imports point backwards only."""
    graph = import_graph()
    order = {s: i for i, s in enumerate(STAGES)}
    upward = sorted(f"{m} -> {d}" for m, deps in graph.items() if stage(m) in order
                    for d in deps if order[stage(d)] > order[stage(m)])
    assert not upward, "a stage imports a later one: " + ", ".join(upward)


def test_the_graph_sees_relative_imports_across_stages(tmp_path):
    """The walk resolves `from ..simul.policy import x` (what an upward import looks like) to simul.policy."""
    for s in ("base", "simul"):
        (tmp_path / s).mkdir()
        (tmp_path / s / "__init__.py").write_text("")
    (tmp_path / "simul" / "policy.py").write_text("")
    (tmp_path / "base" / "errors.py").write_text("def f():\n    from ..simul.policy import x\n")
    assert import_graph(tmp_path)["base.errors"] == {"simul.policy"}


@pytest.mark.parametrize("low, high", [("simul.translator", "simul.evaluation"), ("simul.policy", "simul.translator"),
                                       ("corpus.silver", "heads.scoring"), ("base.languages", "corpus.formats")])
def test_lower_modules_do_not_import_higher_ones(low, high):
    """Inside a stage too: the decision rules never import the translator, the translator never its evaluation."""
    assert high not in import_graph()[low]


def test_tests_mirror_the_stages():
    """tests/<stage>/ for every stage; no stage test left at the top (only cross-stage ones)."""
    assert sorted(p.name for p in TESTS.iterdir() if (p / "__init__.py").is_file()) == sorted(STAGES)
    top = sorted(p.stem for p in TESTS.glob("test_*.py"))
    assert top == ["test_architecture", "test_fuzz", "test_notebooks", "test_packaging"], top


def test_one_place_assembles_a_cascade():
    """Only alignheads.speech.pipeline constructs SpeechCascade; everything else calls build_cascade."""
    constructing = []
    for path in [*PACKAGE.rglob("*.py"), *(PACKAGE.parent / "notebooks").glob("*.py"),
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
    from alignheads.cli.commands import build_parser

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
