"""The benchmarks start: each imports and answers --help, and the fidelity benchmark's loss table (quick) runs and
shows every loss equal to its reference. The long benchmarks' measuring code runs only when they are run."""
import re
import subprocess
import sys

import pytest

from .conftest import ROOT

BENCHMARKS = sorted((ROOT / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("script", BENCHMARKS, ids=[p.stem for p in BENCHMARKS])
def test_every_benchmark_answers_help(script):
    res = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert res.returncode == 0 and "usage:" in res.stdout, res.stderr[-2000:]


@pytest.mark.filterwarnings("ignore:To copy construct from a tensor:UserWarning")  # inside lightly's DCLLoss
def test_fidelity_loss_table_matches_every_reference(capsys):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import fidelity
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    fidelity.losses()
    rows = re.findall(r"^  (\S.*?)\s{2,}.*\|diff\| = (\S+)$", capsys.readouterr().out, re.M)
    assert len(rows) >= 12
    scaled = {"byol"}  # the official BYOL scale (2 - 2 cos per view, summed) differs from lightly's; the next row undoes it
    assert all(float(diff) < 1e-5 for name, diff in rows if name not in scaled), rows
