"""Rules about the code itself, checked by the suite so CI enforces them: the lint rules and the import
layering declared in pyproject.toml ([tool.ruff], [tool.importlinter]), a headless core, a window that starts."""
import subprocess
import sys

from .conftest import ROOT

LINTED = ["workbench", "tests", "benchmarks"]  # the project's code (not scratch files beside it)


def test_ruff_finds_nothing():
    """pyflakes, pycodestyle errors, bugbear, pyupgrade, simplify and the complexity limit (pyproject [tool.ruff])."""
    res = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", *LINTED],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-2000:]


def test_import_contracts_hold():
    """The core never imports Qt, pyqtgraph, the window or the CLI; the front ends sit above the core; inside the
    core, the loop sits above the parts it composes (pyproject [tool.importlinter])."""
    code = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True, no_logo=True))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-2000:]


def test_core_never_imports_qt_at_run_time():
    """Also what import-linter cannot see: modules imported dynamically when every core module is loaded."""
    code = ("import pkgutil, importlib, sys, workbench.core as c\n"
            "[importlib.import_module(m.name) for m in pkgutil.walk_packages(c.__path__, 'workbench.core.')]\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph', 'shiboken6')]\n"
            "print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_importing_workbench_is_cheap():
    """`import workbench` (the notebook API) loads nothing heavy until a name is used."""
    code = "import sys, workbench; print(sorted(m for m in ('torch', 'PySide6', 'numpy') if m in sys.modules))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.strip() == "[]", res.stdout + res.stderr


def test_gui_launches_in_a_subprocess(tmp_path):
    settings = str(tmp_path / "s.ini")
    code = (f"import os; os.environ['QT_QPA_PLATFORM']='offscreen'; os.environ['WORKBENCH_SETTINGS']={settings!r}\n"
            "from PySide6.QtCore import QTimer; from PySide6.QtWidgets import QApplication\n"
            "app = QApplication([]); QTimer.singleShot(1500, app.quit)\n"
            "from workbench.cli import main; raise SystemExit(main([]))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr


def import_cycles(package: str = "workbench") -> list[list[str]]:
    """The import circles among the package's modules: the groups of two or more modules that each reach all the
    others through imports (strongly connected components of grimp's import graph, as import-linter reads it:
    imports inside functions and under TYPE_CHECKING count)."""
    import grimp

    graph = grimp.build_graph(package, include_external_packages=False)
    edges = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for m in edges[todo.pop()] - seen:
                seen.add(m)
                todo.append(m)
        return seen

    reached = {m: reach(m) for m in edges}
    groups = {frozenset({m} | {n for n in reached[m] if m in reached[n]}) for m in edges if m in reached[m]}
    return sorted(sorted(g) for g in groups if len(g) > 1)


def test_no_import_circles():
    """No module imports, directly or through others, a module that imports it back: each can be read (and changed)
    knowing only what is below it."""
    assert import_cycles() == []


def test_import_cycles_are_found():
    """The counter itself: the package's graph with a circle added has one."""
    import grimp

    graph = grimp.build_graph("workbench", include_external_packages=False)
    assert graph.find_modules_directly_imported_by("workbench.core.keys") == set()  # the bottom of the core
    real = grimp.build_graph
    try:
        def with_circle(*args, **kwargs):
            g = real(*args, **kwargs)
            g.add_import(importer="workbench.core.keys", imported="workbench.core.api")
            return g

        grimp.build_graph = with_circle
        cycles = import_cycles()
    finally:
        grimp.build_graph = real
    assert len(cycles) == 1 and {"workbench.core.keys", "workbench.core.api"} <= set(cycles[0])


def test_the_core_layers_name_every_core_module():
    """Every module and sub-package of workbench.core has its place in the layers contract, so a new one says where it
    sits (and import-linter checks it) instead of escaping the rule."""
    import pkgutil
    import re

    from workbench.core.config import tomllib

    import workbench.core as core

    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    (layers,) = [c["layers"] for c in contracts if c.get("containers") == ["workbench.core"]]
    named = {m.strip("() ") for layer in layers for m in re.split(r"[|:]", layer)}
    modules = {m.name for m in pkgutil.iter_modules(core.__path__)}
    assert modules - named == set(), f"not in the layers of pyproject.toml: {sorted(modules - named)}"
    assert named - modules == set(), f"named in the layers but not in workbench/core: {sorted(named - modules)}"


def test_no_two_classes_share_a_name():
    """A class name says which class it is: none is defined twice in the package (tests may define their own)."""
    import ast

    seen: dict[str, list[str]] = {}
    for path in sorted((ROOT / "workbench").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                seen.setdefault(node.name, []).append(str(path.relative_to(ROOT)))
    assert {name: where for name, where in seen.items() if len(where) > 1} == {}
