"""The README's REPL sessions against live peers, run as written: each ``<!-- session: NAME -->`` block.

Each block is a doctest: its statements run in order in a fresh namespace and every output line the
README shows must be what the session printed (``...`` stands for what changes between runs: SPIs,
times).  So the README cannot drift from what the lab does.  Whatever the session left up (a failed
line before ``lab.down()``) is torn down here.
"""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import pytest

from ipseclab.lab.live import LiveLab

README = Path(__file__).resolve().parents[2] / "README.md"
SESSION = re.compile(r"<!-- session: (?P<name>[\w-]+) -->\n```python\n(?P<code>.*?)```", re.S)
SESSIONS = {m["name"]: m["code"] for m in SESSION.finditer(README.read_text())}

pytestmark = pytest.mark.interop


def test_the_readme_has_the_sessions_of_the_issue():
    assert set(SESSIONS) >= {"ike-no-proposal", "esp-replay"}, sorted(SESSIONS)


@pytest.mark.parametrize("name", sorted(SESSIONS))
def test_readme_session_runs_as_written(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the labs' run directories (runs/...) go here
    globs: dict[str, object] = {}
    test = doctest.DocTestParser().get_doctest(SESSIONS[name], globs, f"README.md session {name}", str(README), 0)
    out: list[str] = []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    try:
        failed = runner.run(test, out=out.append).failed
    finally:
        for value in list(globs.values()):
            if isinstance(value, LiveLab):
                value.down()
    if failed:
        runs = sorted(str(p) for p in tmp_path.glob("runs/*/*"))
        pytest.fail(f"README session {name}: {failed} example(s) differ from the README\n" + "".join(out)
                    + f"\nrun directories: {runs}")
