"""What ``pip install ipseclab`` puts in site-packages: the package alone, the cases as ``ipseclab.testcases``.

The cases live in ``testcases/`` at the top of the repository (the user's layout); pyproject.toml maps
them to ``ipseclab.testcases`` so that installing ipseclab adds no generic top-level ``testcases`` package
to anyone's site-packages.  setuptools itself is the oracle: its ``egg_info`` and ``build_py`` (the steps
a wheel is made of) run on a copy of the tracked files, and the test reads what they produced.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _tracked_copy(dest: Path) -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout (git ls-files) to copy the tracked files")
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True).stdout
    for name in filter(None, files.decode().split("\0")):
        src, dst = ROOT / name, dest / name
        if not src.exists() and not src.is_symlink():
            continue  # deleted in the work tree, not yet committed
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            dst.symlink_to(src.readlink())
        else:
            shutil.copy2(src, dst)


def test_the_built_package_holds_the_cases_as_ipseclab_testcases_and_nothing_else_at_the_top(tmp_path):
    src, out, meta = tmp_path / "src", tmp_path / "build", tmp_path / "meta"
    _tracked_copy(src)
    meta.mkdir()
    subprocess.run([sys.executable, "-c", "from setuptools import setup; setup()", "-q", "egg_info", "--egg-base",
                    str(meta), "build_py", "--build-lib", str(out)], cwd=src, check=True, capture_output=True)
    assert sorted(p.name for p in out.iterdir()) == ["ipseclab"]
    (info,) = meta.glob("*.egg-info")
    assert (info / "top_level.txt").read_text().split() == ["ipseclab"]
    cases = out / "ipseclab" / "testcases"
    assert not cases.is_symlink() and (cases / "__init__.py").is_file() and (cases / "base.py").is_file()
    assert sorted(p.name for p in cases.glob("*.py")) == sorted(p.name for p in (ROOT / "testcases").glob("*.py"))


def test_the_checkout_imports_the_cases_under_the_same_name():
    import ipseclab.testcases as cases

    assert Path(cases.__file__).resolve() == (ROOT / "testcases" / "__init__.py").resolve()
    assert "testcases" not in sys.modules, "something imported a top-level testcases package"


def test_no_code_imports_a_top_level_testcases_package():
    pattern = re.compile(r"^\s*(from testcases[\s.]|import testcases\b)", re.M)
    files = {p.resolve() for d in ("ipseclab", "tests", "testcases", "examples") for p in (ROOT / d).rglob("*.py")}
    offenders = sorted(str(p) for p in files if pattern.search(p.read_text()))
    assert not offenders, offenders
