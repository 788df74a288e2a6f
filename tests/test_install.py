"""The app as users install it: the wheel holds everything the app needs, pipx installs it into a throw-away home,
and the installed commands work there: ``--version``, ``install-shortcut`` (its .desktop file passes
``desktop-file-validate``) and ``uninstall-shortcut`` (the home exactly as before).

With ``WORKBENCH_TEST_INSTALL=1`` (the slow part: about a minute more) the same install also trains a few steps on
the bundled data from the current folder and opens the window (``workbench-gui --check``).

Dependencies are not downloaded: the throw-away pipx environment first gets a one-file wheel whose ``.pth`` line
points at this test environment's site-packages (``pipx install --preinstall``), so pip finds torch, PySide6 and the
rest already installed, checks them against the wheel's requirements (``PIP_NO_INDEX=1``: nothing else to take)
and installs only the app. The app's own files come from the wheel alone, never from this checkout.
"""
import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from base64 import urlsafe_b64encode
from importlib.util import find_spec
from pathlib import Path

import pytest

from tests.conftest import ROOT

SLOW = pytest.mark.skipif(not os.environ.get("WORKBENCH_TEST_INSTALL"),
                          reason="the installed app's training and window: set WORKBENCH_TEST_INSTALL=1 to run")
SOURCES = ("pyproject.toml", "setup.py", "README.md", "workbench", "resources", "examples")
SHIPPED = ["workbench/resources/fashion-mnist/LICENSE", "workbench/resources/fashion-mnist/t10k-images-idx3-ubyte.gz",
           "workbench/resources/fashion-mnist/t10k-labels-idx1-ubyte.gz", "workbench/resources/icons/contrastive-workbench.svg",
           "workbench/resources/icons/contrastive-workbench.ico", "workbench/resources/icons/contrastive-workbench.icns",
           *[f"workbench/resources/icons/contrastive-workbench-{s}.png" for s in (16, 32, 48, 256, 512)],
           "workbench/examples/bundled_quick.toml", "workbench/core/train.py", "workbench/gui/main_window.py"]


def _record(name: str, data: bytes) -> str:
    digest = urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def link_wheel(folder: Path) -> Path:
    """A wheel holding one .pth file that adds this environment's site-packages to the environment it goes into."""
    dirs = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    files = {"workbench_test_env.pth": "".join(f"{d}\n" for d in dirs).encode(),
             "workbench_test_env-0.0.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: workbench-test-env\nVersion: 0.0.0\n",
             "workbench_test_env-0.0.0.dist-info/WHEEL":
                 b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    path = folder / "workbench_test_env-0.0.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
        z.writestr("workbench_test_env-0.0.0.dist-info/RECORD",
                   "".join(_record(n, d) + "\n" for n, d in files.items()) + "workbench_test_env-0.0.0.dist-info/RECORD,,\n")
    return path


def build_wheel(tmp: Path) -> Path:
    """``python -m build --wheel`` on a copy of the sources (the checkout gets no build/ or egg-info)."""
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, src / name)
    res = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp / "dist"), str(src)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    [wheel] = (tmp / "dist").glob("*.whl")
    return wheel


class Installed:
    def __init__(self, tmp: Path, wheel: Path):
        self.tmp, self.wheel = tmp, wheel
        self.home, self.bin = tmp / "home", tmp / "pipx-bin"
        self.home.mkdir()
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("XDG_", "PIPX_", "WORKBENCH_")) and k not in ("PYTHONPATH", "VIRTUAL_ENV", "PIP_FIND_LINKS")}
        self.env = dict(env, HOME=str(self.home), PIPX_HOME=str(tmp / "pipx"), PIPX_BIN_DIR=str(self.bin),
                        PIPX_MAN_DIR=str(tmp / "pipx-man"), PIP_NO_INDEX="1", PIPX_DISABLE_SHARED_LIBS_AUTO_UPGRADE="1",
                        WORKBENCH_CACHE=str(tmp / "cache"))
        self.venv = tmp / "pipx" / "venvs" / "contrastive-workbench"

    def run(self, *cmd, cwd=None, timeout=300, **env) -> subprocess.CompletedProcess:
        return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=cwd or self.tmp,
                              env=dict(self.env, **env), timeout=timeout)

    def python(self, code: str) -> str:
        res = self.run(self.venv / "bin" / "python", "-c", code)
        assert res.returncode == 0, res.stderr
        return res.stdout.strip()


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    for module in ("build", "pipx", "setuptools"):
        if find_spec(module) is None:
            pytest.skip(f"'{module}' is not installed (pip install -e '.[dev]' brings it)")
    if sys.platform == "win32":
        pytest.skip("the pipx test drives Linux/macOS paths")
    tmp = tmp_path_factory.mktemp("install")
    wheel = build_wheel(tmp)
    inst = Installed(tmp, wheel)
    res = inst.run(sys.executable, "-m", "pipx", "install", "--python", sys.executable, "--preinstall", link_wheel(tmp), wheel,
                   timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return inst


def tree(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def test_the_wheel_ships_the_data_its_licence_icons_and_examples(installed):
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    assert not [n for n in SHIPPED if n not in names]
    meta = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    entry_points = zipfile.ZipFile(installed.wheel).read(meta).decode()
    assert "[console_scripts]\nworkbench = workbench.cli:main" in entry_points
    assert "[gui_scripts]\nworkbench-gui = workbench.cli:gui_main" in entry_points  # no console window on Windows
    assert not [n for n in names if "__pycache__" in n or n.startswith(("tests/", "resources/", "examples/"))]


def test_pipx_puts_both_commands_on_the_path_and_version_answers(installed):
    assert sorted(p.name for p in installed.bin.iterdir()) == ["workbench", "workbench-gui"]
    wheel_version = installed.wheel.name.split("-")[1]
    res = installed.run(installed.bin / "workbench", "--version")
    assert res.returncode == 0 and res.stdout == f"workbench {wheel_version}\n", res.stderr
    where = installed.python("import workbench; from workbench.core.paths import resources_dir, examples_dir; "
                             "print(workbench.__file__, resources_dir(), examples_dir(), sep='\\n')").splitlines()
    package = Path(where[0]).parent
    assert package.is_relative_to(installed.venv) and Path(where[1]) == package / "resources"
    assert Path(where[2]) == package / "examples" and not Path(where[1]).is_relative_to(ROOT)


def test_the_installed_shortcut_validates_and_uninstalls_to_nothing(installed):
    before = tree(installed.home)
    res = installed.run(installed.bin / "workbench", "install-shortcut")
    assert res.returncode == 0, res.stderr
    entry = installed.home / ".local" / "share" / "applications" / "contrastive-workbench.desktop"
    text = entry.read_text()
    exec_line = next(line for line in text.splitlines() if line.startswith("Exec="))
    assert exec_line == f"Exec={installed.venv / 'bin' / 'workbench-gui'}"  # the installed entry point, not the checkout
    assert (installed.home / ".local/share/icons/hicolor/256x256/apps/contrastive-workbench.png").is_file()
    assert str(entry) in res.stdout
    copy = installed.tmp / "copy" / entry.name
    copy.parent.mkdir()
    copy.write_text(text)
    res = installed.run(installed.bin / "workbench", "uninstall-shortcut")
    assert res.returncode == 0 and "menu entry removed" in res.stdout, res.stderr
    assert tree(installed.home) == before
    if shutil.which("desktop-file-validate") is None:
        pytest.skip("desktop-file-validate (Debian: desktop-file-utils) is not installed; the rest passed")
    res = subprocess.run(["desktop-file-validate", str(copy)], capture_output=True, text=True)
    assert res.returncode == 0 and not res.stdout.strip(), res.stdout


@SLOW
def test_the_installed_app_trains_in_the_current_folder(installed):
    work = installed.tmp / "work"
    work.mkdir()
    example = Path(installed.python("from workbench.core.paths import examples_dir; print(examples_dir())")) / "bundled_quick.toml"
    res = installed.run(installed.bin / "workbench", "train", example, "--set", "data.subset=512", "--set", "train.batch_size=64",
                        "--set", "train.max_steps=6", "--set", "eval.test_size=200", "--set", "eval.bank_size=512",
                        "--set", "eval.embed_points=100", cwd=work, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    [run] = (work / "runs").iterdir()  # the command line's rule: runs/ in the current folder
    assert (run / "checkpoints" / "last.pt").is_file() and "finished" in (run / "status.json").read_text()


@SLOW
def test_the_installed_window_opens_on_the_bundled_data(installed):
    res = installed.run(installed.bin / "workbench-gui", "--check", QT_QPA_PLATFORM="offscreen", timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    assert "data: 9,000 training / 1,000 held-out images" in res.stdout and "first-run guide: shown" in res.stdout
    assert f"runs: {installed.home / 'Documents' / 'Contrastive Workbench' / 'runs'}" in res.stdout
