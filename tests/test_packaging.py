"""What pyproject.toml declares covers what the code imports: `snapkit demo` runs on a plain `pip install snapkit`,
the experiments on `.[experiments]`, and the tests on `.[dev]` (what `make install` installs).

Imports are read from the source (every ``import`` statement, including those inside functions), not by importing,
so an import that only runs on some path is still checked."""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import re
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the tests run on 3.11+; tomli is what 3.10 would need
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
# Local packages, never a dependency.
LOCAL = {"snapkit", "tests", "experiments"}
# Imported only to stand in for it when missing (dcase_util imports it; see tests/test_scoring.py).
SHIMMED = {"pkg_resources"}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared(extras: Iterable[str] = ()) -> set[str]:
    """Normalised distribution names of the base dependencies plus ``extras`` (self-references expanded)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    optional = project.get("optional-dependencies", {})
    names: set[str] = set()
    pending, seen = [*project["dependencies"]], set()
    for extra in extras:
        pending += optional[extra]
    while pending:
        requirement = pending.pop()
        match = re.match(r"\s*([A-Za-z0-9._-]+)\s*(?:\[([^\]]*)\])?", requirement)
        assert match, requirement
        name = _normalise(match.group(1))
        if name == "snapkit":
            for extra in (match.group(2) or "").split(","):
                if extra.strip() and extra.strip() not in seen:
                    seen.add(extra.strip())
                    pending += optional[extra.strip()]
        else:
            names.add(name)
    return names


def _imports(path: Path, *, guarded: bool = True) -> set[str]:
    """Every absolute module name ``path`` imports, and for ``from a import b`` also ``a.b`` (b may be a module).

    With ``guarded=False``, imports inside ``try: ... except ImportError`` are left out: code that carries on (or
    says what to install) without the package does not need it declared."""
    tree = ast.parse(path.read_text(), filename=str(path))
    skipped: set[int] = set()
    if not guarded:
        for node in ast.walk(tree):
            if isinstance(node, ast.Try) and any(_catches_import_error(h.type) for h in node.handlers):
                skipped.update(id(inner) for stmt in node.body for inner in ast.walk(stmt))
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _catches_import_error(handler_type: ast.expr | None) -> bool:
    names = handler_type.elts if isinstance(handler_type, ast.Tuple) else [handler_type]
    return any(isinstance(n, ast.Name) and n.id in {"ImportError", "ModuleNotFoundError"} for n in names)


def _third_party(names: Iterable[str]) -> set[str]:
    tops = {name.split(".")[0] for name in names}
    return {top for top in tops if top not in sys.stdlib_module_names and top not in LOCAL | SHIMMED}


def _reachable_third_party(start: str) -> dict[str, str]:
    """Third-party top-level imports reachable from snapkit module ``start`` -> a snapkit module importing each."""
    seen: set[str] = set()
    todo = [start]
    found: dict[str, str] = {}
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
            continue
        names = _imports(Path(spec.origin), guarded=False)
        # A package's __init__ runs before any of its submodules.
        parents = [".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)]
        todo += [n for n in names if n.split(".")[0] == "snapkit" and _is_module(n)] + parents
        for top in _third_party(names):
            found.setdefault(top, module)
    return found


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # "a.b" where b is a name in module a, not a submodule
        return False


def _distributions(import_name: str) -> set[str]:
    """Normalised names of the installed distributions providing top-level module ``import_name``."""
    provided = importlib.metadata.packages_distributions().get(import_name, [import_name])
    return {_normalise(name) for name in provided}


def _undeclared(imports: dict[str, str], declared: set[str]) -> dict[str, str]:
    return {name: where for name, where in imports.items() if not _distributions(name) & declared}


def test_demo_runs_on_the_base_dependencies() -> None:
    imports = _reachable_third_party("snapkit.cli.demo")
    assert {"scipy", "numpy", "torch"} <= set(imports)  # the walk reached synth and training
    assert _undeclared(imports, _declared()) == {}


def test_the_cli_needs_only_the_base_and_the_export_extra() -> None:
    assert _undeclared(_reachable_third_party("snapkit.cli.app"), _declared(["export"])) == {}


def test_experiments_need_only_the_experiments_extra() -> None:
    imports = {top: path.name for path in (ROOT / "experiments").glob("*.py") for top in _third_party(_imports(path))}
    assert "sklearn" in imports
    assert _undeclared(imports, _declared(["experiments"])) == {}


def test_dev_covers_the_tests_and_the_experiments() -> None:
    paths = [*(ROOT / "tests").glob("*.py"), *(ROOT / "experiments").glob("*.py")]
    imports = {top: path.name for path in paths for top in _third_party(_imports(path))}
    assert _undeclared(imports, _declared(["dev"])) == {}


def test_runtime_layers_do_not_import_the_eval_package() -> None:
    """Evaluation material stays optional: only `snapkit demo` (which trains on generated sounds) reaches it."""
    importers = sorted(
        str(path.relative_to(ROOT))
        for path in (ROOT / "snapkit").rglob("*.py")
        if "eval" not in path.relative_to(ROOT / "snapkit").parts[:1]
        and any(name.startswith("snapkit.eval") for name in _imports(path))
    )
    assert importers == ["snapkit/cli/demo.py"]
