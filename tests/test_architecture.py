import subprocess
import sys


def test_core_never_imports_qt():
    code = ("import pkgutil, importlib, sys, workbench.core as c\n"
            "[importlib.import_module(m.name) for m in pkgutil.walk_packages(c.__path__, 'workbench.core.')]\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph', 'shiboken6')]\n"
            "print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_gui_launches_in_a_subprocess(tmp_path):
    code = ("import os; os.environ['QT_QPA_PLATFORM']='offscreen'; os.environ['WORKBENCH_SETTINGS']=%r\n"
            "from PySide6.QtCore import QTimer; from PySide6.QtWidgets import QApplication\n"
            "app = QApplication([]); QTimer.singleShot(1500, app.quit)\n"
            "from workbench.cli import main; raise SystemExit(main([]))") % str(tmp_path / "s.ini")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
