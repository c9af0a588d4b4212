"""The results matrix as data: cells, shards, the files a run writes (JSON, Markdown, JUnit XML), and merging.

Nothing here boots or runs anything, so CI can merge the shards' results on a machine without root,
and the unit tests can build matrices in memory.

**Shards.** A cell belongs to shard ``I/N`` when the SHA-256 of ``case|initiator|responder`` taken
modulo N is I-1.  A cell's shard therefore depends on nothing but its own name: not on the order of
``--case``/``--pair`` on the command line, not on which other cells exist, and not on the Python
process (``hash()`` is salted per process, so it would not do).  The price is that shards are balanced
only on average.

**results.json** is an object: the ``selection`` (the cases and pairs asked for, in the order the full
matrix is laid out), the ``shard`` (``null`` for a whole run) and the ``results``, one per cell run.
The selection is what makes a merge checkable: shards of one matrix name the same selection and shard
count, and between them hold every cell of it exactly once.
"""

from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from .errors import ConfigError

PASSED, FAILED, UNSUPPORTED, ERROR = "passed", "failed", "unsupported", "error"
STATUSES = (PASSED, FAILED, UNSUPPORTED, ERROR)
FORMAT = 1  # results.json's layout; a merge refuses another

# the files of a run directory worth attaching to a report: captures and Wireshark's key files
ARTIFACT_GLOBS = ("*.pcap", "ikev2_decryption_table", "esp_sa")


@dataclass(frozen=True, slots=True)
class CaseResult:
    case: str
    initiator: str
    responder: str
    status: str
    reason: str
    run_dir: str
    seconds: float

    @property
    def pair(self) -> str:
        return f"{self.initiator} -> {self.responder}"


@dataclass(frozen=True, slots=True)
class Cell:
    """One case for one initiator->responder pair."""

    case: str
    initiator: str
    responder: str

    def __str__(self) -> str:
        return f"{self.case} {self.initiator}->{self.responder}"


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard ``index`` (1-based) of ``count``."""

    index: int
    count: int

    @classmethod
    def parse(cls, spec: str) -> Shard:
        """``I/N`` with 1 <= I <= N; ConfigError (one line for the CLI) otherwise."""
        i, sep, n = spec.partition("/")
        if sep and i.strip().isdigit() and n.strip().isdigit():
            shard = cls(int(i), int(n))
            if 1 <= shard.index <= shard.count:
                return shard
        raise ConfigError(f"--shard {spec!r}: write I/N with 1 <= I <= N, e.g. 2/4")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def holds(self, cell: Cell) -> bool:
        digest = hashlib.sha256(f"{cell.case}|{cell.initiator}|{cell.responder}".encode()).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index - 1


def pair_id(initiator: str, responder: str) -> str:
    """A pair's name in ids, run directories and scopes (``INIT-to-RESP``)."""
    return f"{initiator}-to-{responder}"


def cell_id(case: str, initiator: str, responder: str) -> str:
    """A cell's run directory name (``CASE--INIT-to-RESP``)."""
    return f"{case}--{pair_id(initiator, responder)}"


@dataclass(frozen=True, slots=True)
class Selection:
    """The cases and pairs a run was asked for, in matrix order (cases as rows, pairs as columns)."""

    cases: tuple[str, ...]
    pairs: tuple[tuple[str, str], ...]

    def cells(self, shard: Shard | None = None) -> list[Cell]:
        """Every cell in matrix order (case by case, each over every pair), or only ``shard``'s."""
        every = [Cell(c, i, r) for c in self.cases for i, r in self.pairs]
        return [c for c in every if shard is None or shard.holds(c)]


def order(results: Iterable[CaseResult], selection: Selection) -> list[CaseResult]:
    """``results`` in the selection's matrix order, so a merged matrix reads as the full run's."""
    rank = {(c.case, c.initiator, c.responder): n for n, c in enumerate(selection.cells())}
    return sorted(results, key=lambda r: rank.get((r.case, r.initiator, r.responder), len(rank)))


# --- writing ------------------------------------------------------------------------------------------


def write_results(results: Sequence[CaseResult], out_dir: Path, selection: Selection | None = None,
                  shard: Shard | None = None) -> None:
    """results.json, results.md and results.xml (JUnit) of ``results`` into ``out_dir``.

    Without a selection (a pytest session that collects cells as they come) it is the cells run, in
    their order; such a results.json cannot be merged with others.
    """
    if selection is None:
        selection = Selection(tuple(dict.fromkeys(r.case for r in results)),
                              tuple(dict.fromkeys((r.initiator, r.responder) for r in results)))
    doc = {
        "format": FORMAT,
        "selection": {"cases": list(selection.cases), "pairs": [f"{i}:{r}" for i, r in selection.pairs]},
        "shard": str(shard) if shard else None,
        "results": [asdict(r) for r in results],
    }
    (out_dir / "results.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out_dir / "results.md").write_text(matrix_markdown(results))
    (out_dir / "results.xml").write_text(junit_xml(results))


def matrix_markdown(results: Sequence[CaseResult]) -> str:
    """Cases as rows, initiator->responder pairs as columns; then the reason of every cell that did not pass."""
    pairs = list(dict.fromkeys(r.pair for r in results))
    cases = list(dict.fromkeys(r.case for r in results))
    cell = {(r.case, r.pair): r for r in results}
    lines = ["| case | " + " | ".join(pairs) + " |", "|---|" + "---|" * len(pairs)]
    for c in cases:
        row = []
        for p in pairs:
            r = cell.get((c, p))
            row.append("" if r is None else f"{r.status.upper()} ({r.seconds:.0f}s)")
        lines.append(f"| {c} | " + " | ".join(row) + " |")
    notes = [f"- {r.case}, {r.pair}: {r.reason.splitlines()[0]}" for r in results if r.status != PASSED and r.reason]
    return "\n".join(lines) + "\n" + ("\n" + "\n".join(notes) + "\n" if notes else "")


def artifacts(run_dir: str) -> list[Path]:
    """The captures and key files a cell left in its run directory (none when it never booted)."""
    d = Path(run_dir)
    return [p for pattern in ARTIFACT_GLOBS for p in sorted(d.glob(pattern))] if d.is_dir() else []


def junit_xml(results: Sequence[CaseResult], suite: str = "ipseclab-interop") -> str:
    """JUnit XML, one testcase per cell: FAILED a failure, ERROR an error, UNSUPPORTED skipped with the driver's
    reason; the run directory and its captures and key files are properties (CI systems link them)."""
    root = ET.Element("testsuites")
    ts = ET.SubElement(root, "testsuite", name=suite, tests=str(len(results)),
                       failures=str(sum(r.status == FAILED for r in results)),
                       errors=str(sum(r.status == ERROR for r in results)),
                       skipped=str(sum(r.status == UNSUPPORTED for r in results)),
                       time=f"{sum(r.seconds for r in results):.1f}")
    for r in results:
        tc = ET.SubElement(ts, "testcase", classname=f"interop.{r.case}",
                           name=f"{r.case}[{pair_id(r.initiator, r.responder)}]", time=f"{r.seconds:.1f}")
        props = ET.SubElement(tc, "properties")
        ET.SubElement(props, "property", name="run_dir", value=r.run_dir)
        for path in artifacts(r.run_dir):
            ET.SubElement(props, "property", name="artifact", value=str(path))
        first = r.reason.splitlines()[0] if r.reason else r.status
        if r.status == UNSUPPORTED:
            ET.SubElement(tc, "skipped", message=f"UNSUPPORTED: {first}")
        elif r.status in (FAILED, ERROR):
            ET.SubElement(tc, "failure" if r.status == FAILED else "error", message=first).text = (
                f"{r.reason}\nrun directory (pcaps, keys, logs): {r.run_dir}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# --- reading and merging ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResultsFile:
    path: Path
    selection: Selection
    shard: Shard | None
    results: tuple[CaseResult, ...]


def read_results(path: Path) -> ResultsFile:
    """A results.json (or the directory holding one); ConfigError naming the file and what is wrong."""
    if path.is_dir():
        path = path / "results.json"
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ConfigError(f"{path}: not a results.json of format {FORMAT} (written by `ipseclab interop`)")
    names = {f.name for f in fields(CaseResult)}
    try:
        sel = doc["selection"]
        selection = Selection(tuple(str(c) for c in sel["cases"]),
                              tuple(_pair(p) for p in sel["pairs"]))
        shard = Shard.parse(doc["shard"]) if doc["shard"] is not None else None
        results = []
        for n, item in enumerate(doc["results"]):
            if not isinstance(item, dict) or set(item) != names:
                raise ValueError(f"result {n + 1} does not have exactly the fields {', '.join(sorted(names))}")
            res = CaseResult(**item)
            if res.status not in STATUSES:
                raise ValueError(f"result {n + 1} has status {res.status!r}, not one of {', '.join(STATUSES)}")
            results.append(res)
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        raise ConfigError(f"{path}: malformed results: {exc}") from None
    return ResultsFile(path, selection, shard, tuple(results))


def _pair(spec: object) -> tuple[str, str]:
    init, sep, resp = str(spec).partition(":")
    if not sep:
        raise ValueError(f"pair {spec!r} is not INITIATOR:RESPONDER")
    return init, resp


def merge(files: Sequence[ResultsFile]) -> tuple[Selection, list[CaseResult]]:
    """The one matrix the shards make, in matrix order; ConfigError (one line) when they do not make one.

    Refused: inputs from different selections or shard counts, a shard given twice, a shard missing, a
    cell in two inputs, a cell outside the selection or outside its shard, a cell of the selection's
    shard that no input holds (a shard that stopped early).
    """
    if not files:
        raise ConfigError("give the directories (or results.json files) of the shards to merge")
    first = files[0]
    for f in files[1:]:
        if f.selection != first.selection:
            raise ConfigError(f"{f.path} and {first.path} are shards of different matrices (cases or pairs differ)")
        if _count(f) != _count(first):
            raise ConfigError(f"{f.path} is {_which(f)} and {first.path} is {_which(first)}: not one split of the "
                              "matrix")
    seen_shards: dict[int, Path] = {}
    for f in files:
        if f.shard is None:
            continue
        if f.shard.index in seen_shards:
            raise ConfigError(f"{f.path} and {seen_shards[f.shard.index]} are both shard {f.shard}")
        seen_shards[f.shard.index] = f.path
    if first.shard is not None and len(seen_shards) != first.shard.count:
        missing = [f"{i}/{first.shard.count}" for i in range(1, first.shard.count + 1) if i not in seen_shards]
        raise ConfigError(f"shard {', '.join(missing)} missing: the merge would not be the whole matrix")
    wanted = set(first.selection.cells())
    where: dict[Cell, Path] = {}
    merged = []
    for f in files:
        for r in f.results:
            cell = Cell(r.case, r.initiator, r.responder)
            if cell not in wanted:
                raise ConfigError(f"{f.path}: cell {cell} is not in its selection")
            if f.shard is not None and not f.shard.holds(cell):
                raise ConfigError(f"{f.path}: cell {cell} does not belong to shard {f.shard}")
            if cell in where:
                raise ConfigError(f"cell {cell} is in both {where[cell]} and {f.path}")
            where[cell] = f.path
            merged.append(r)
    absent = [c for c in first.selection.cells() if c not in where]
    if absent:
        more = f" and {len(absent) - 1} more" if len(absent) > 1 else ""
        raise ConfigError(f"no input holds cell {absent[0]}{more}: a shard did not finish")
    return first.selection, order(merged, first.selection)


def _count(f: ResultsFile) -> int | None:
    return f.shard.count if f.shard else None


def _which(f: ResultsFile) -> str:
    return f"shard {f.shard}" if f.shard else "a whole run"
