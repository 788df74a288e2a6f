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
