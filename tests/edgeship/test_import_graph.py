"""The packages import downward only: the core (edgeship's errors, run_dir, options, ...)
imports no stage and no command; convert and runtime never import each other; train, convert
and runtime have no import cycle, and no module imports itself around a loop (imports inside
functions count too)."""

import ast
from pathlib import Path

from tests.helpers import REPO

STAGES = {"train": "edgeship.train", "convert": "edgeship.convert", "runtime": "edgeship.runtime"}


def _imported_modules(path: Path) -> set[str]:
    """Every module an `import` or `from ... import` names anywhere in the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _stage_of(module: str) -> str | None:
    for stage, package in STAGES.items():
        if module == package or module.startswith(package + "."):
            return stage
    return None


def stage_imports() -> dict[str, dict[str, list[str]]]:
    """stage -> other stage -> the files of the first stage that import the second."""
    edges: dict[str, dict[str, list[str]]] = {stage: {} for stage in STAGES}
    for stage in STAGES:
        for path in sorted((REPO / stage).rglob("*.py")):
            for module in _imported_modules(path):
                target = _stage_of(module)
                if target is not None and target != stage:
                    edges[stage].setdefault(target, []).append(str(path.relative_to(REPO)))
    return edges


def test_the_parser_sees_imports_inside_functions(tmp_path):
    source = tmp_path / "probe.py"
    source.write_text("def f():\n    from edgeship.runtime.backends import open_backend\n")
    assert "edgeship.runtime.backends" in _imported_modules(source)
    assert _stage_of("edgeship.runtime.backends") == "runtime"
    assert _stage_of("edgeship.runtime_extra") is None


def test_convert_and_runtime_do_not_import_each_other():
    edges = stage_imports()
    assert "runtime" not in edges["convert"], edges["convert"].get("runtime")
    assert "convert" not in edges["runtime"], edges["runtime"].get("convert")


def test_no_import_cycle_between_train_convert_and_runtime():
    edges = stage_imports()
    for first in STAGES:
        for second in edges[first]:
            assert first not in edges[second], (
                f"{first} imports {second} ({edges[first][second][:3]}) and {second} imports "
                f"{first} ({edges[second][first][:3]})")


_PACKAGES = {"edgeship": "edgeship", "train": "edgeship.train", "convert": "edgeship.convert",
             "runtime": "edgeship.runtime"}


def _module_name(path: Path) -> str:
    relative = path.relative_to(REPO)
    parts = list(relative.with_suffix("").parts[1:])
    if parts and parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([_PACKAGES[relative.parts[0]], *parts])


def module_import_cycles() -> list[list[str]]:
    """Groups of edgeship modules that import each other, directly or around a loop (imports
    inside functions count: a lazy import is still a dependency)."""
    files = {_module_name(path): path for root in _PACKAGES
             for path in sorted((REPO / root).rglob("*.py"))}
    graph = {module: sorted((_imported_modules(path) & files.keys()) - {module})
             for module, path in files.items()}
    index, lowest, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(module: str) -> None:  # Tarjan's strongly connected components
        index[module] = lowest[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in graph[module]:
            if target not in index:
                visit(target)
                lowest[module] = min(lowest[module], lowest[target])
            elif target in on_stack:
                lowest[module] = min(lowest[module], index[target])
        if lowest[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in graph:
        if module not in index:
            visit(module)
    return cycles


def test_no_module_imports_itself_around_a_loop():
    assert module_import_cycles() == []


def test_the_cycle_finder_finds_a_cycle(tmp_path, monkeypatch):
    package = tmp_path / "edgeship"
    package.mkdir()
    (package / "first.py").write_text("def f():\n    from edgeship.second import g\n")
    (package / "second.py").write_text("from edgeship.first import f\n")
    import tests.edgeship.test_import_graph as this

    monkeypatch.setattr(this, "REPO", tmp_path)
    monkeypatch.setattr(this, "_PACKAGES", {"edgeship": "edgeship"})
    assert this.module_import_cycles() == [["edgeship.first", "edgeship.second"]]


# The core every stage shares; it imports only itself.
CORE = ("edgeship.errors", "edgeship.run_dir", "edgeship.tflite_graph", "edgeship.quantization",
        "edgeship.options", "edgeship.dataset_spec", "edgeship.artifacts", "edgeship.deps",
        "edgeship.model_check", "edgeship.records")


def core_violations(repo: Path) -> dict[str, list[str]]:
    """core module -> the edgeship modules outside the core it imports."""
    violations = {}
    for module in CORE:
        path = repo / "edgeship" / f"{module.split('.')[-1]}.py"
        outside = sorted(name for name in _imported_modules(path)
                         if name.startswith("edgeship.")
                         and not any(name == core or name.startswith(core + ".") for core in CORE))
        if outside:
            violations[module] = outside
    return violations


def test_the_core_imports_no_stage_and_no_command():
    """errors, run_dir, tflite_graph, quantization, options (and the helpers they use) import
    nothing from edgeship.commands, train, convert, runtime or the top-level commands."""
    assert core_violations(REPO) == {}


def test_the_core_check_sees_a_stage_import(tmp_path):
    (tmp_path / "edgeship").mkdir()
    for module in CORE:
        (tmp_path / "edgeship" / f"{module.split('.')[-1]}.py").write_text(
            "from edgeship.errors import UserInputError\n")
    (tmp_path / "edgeship" / "run_dir.py").write_text(
        "def spec():\n    from edgeship.train.datasets import DatasetSpec\n")
    assert core_violations(tmp_path) == {
        "edgeship.run_dir": ["edgeship.train.datasets", "edgeship.train.datasets.DatasetSpec"]}
