"""``cutover diff-report``: summarise the dual-run sample log and its rotated backups."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cutover.shadow.compare import DiffReason
from cutover.shadow.log import RecordKind
from cutover.vocabulary import ShadowResult

DEFAULT_LOG = "./cutover-shadow.jsonl"
DEFAULT_TOP = 10
VALUE_WIDTH = 60


class MalformedLineError(ValueError):
    """A log line that is not a mismatch record."""


@dataclass(frozen=True, slots=True)
class Example:
    primary: Any
    shadow: Any
    reason: str
    method: str
    path: str  # the request path


@dataclass(frozen=True, slots=True)
class PathCount:
    path: str
    count: int
    example: Example


@dataclass(frozen=True, slots=True)
class ResultCounts:
    """How many mirrored requests ended in each ``ShadowResult`` (a field per result)."""

    match: int = 0
    mismatch: int = 0
    error: int = 0
    dropped: int = 0

    def __add__(self, other: ResultCounts) -> ResultCounts:
        return ResultCounts(
            **{result: getattr(self, result) + getattr(other, result) for result in ShadowResult}
        )


@dataclass(frozen=True, slots=True)
class Report:
    samples: int  # mismatch lines in the log
    malformed: int
    status_samples: int  # samples whose difference is the status code
    paths: tuple[PathCount, ...]  # most frequent first
    runs: int  # process runs with totals
    totals: ResultCounts | None  # summed over runs, from each run's last line

    @property
    def comparisons(self) -> int | None:
        return None if self.totals is None else self.totals.match + self.totals.mismatch

    @property
    def mismatch_rate(self) -> float | None:
        comparisons = self.comparisons
        if not comparisons or self.totals is None:
            return None
        return self.totals.mismatch / comparisons


@dataclass(frozen=True, slots=True)
class _Sample:
    kind: RecordKind
    run_id: str | None
    method: str
    path: str
    diffs: list[dict[str, Any]]
    totals: ResultCounts | None


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MalformedLineError(f"a count is not a non-negative integer: {value!r}")
    return value


def _totals(value: Any) -> ResultCounts | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise MalformedLineError("totals is not an object")
    return ResultCounts(**{result: _count(value.get(result, 0)) for result in ShadowResult})


def _sample(line: str) -> _Sample:
    try:
        record = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise MalformedLineError(f"not JSON: {exc}") from None
    if not isinstance(record, dict):
        raise MalformedLineError("not a JSON object")
    kind = RecordKind.TOTALS if record.get("kind") == RecordKind.TOTALS else RecordKind.MISMATCH
    diffs = record.get("diffs", [] if kind is RecordKind.TOTALS else None)
    if not isinstance(diffs, list) or not all(
        isinstance(diff, dict) and isinstance(diff.get("path"), str) for diff in diffs
    ):
        raise MalformedLineError("diffs is not a list of differences")
    run_id = record.get("run_id")
    if run_id is not None and not isinstance(run_id, str):
        raise MalformedLineError("run_id is not a string")
    method, path = record.get("method"), record.get("path")
    return _Sample(
        kind=kind,
        run_id=run_id,
        method=method if isinstance(method, str) else "?",
        path=path if isinstance(path, str) else "?",
        diffs=diffs,
        totals=_totals(record.get("totals")),
    )


def summarize(lines: Iterable[str]) -> Report:
    """Blank lines are skipped; lines that are not mismatch records are counted as malformed."""
    samples = malformed = status_samples = 0
    counts: Counter[str] = Counter()
    examples: dict[str, Example] = {}
    last_totals: dict[str | None, ResultCounts] = {}
    for line in lines:
        if not line.strip():
            continue
        try:
            sample = _sample(line)
        except MalformedLineError:
            malformed += 1
            continue
        if sample.totals is not None:
            last_totals[sample.run_id] = sample.totals
        if sample.kind is RecordKind.TOTALS:
            continue  # a run's closing counts, not a sample
        samples += 1
        if any(diff.get("reason") == DiffReason.STATUS for diff in sample.diffs):
            status_samples += 1
        for diff in sample.diffs:
            counts[diff["path"]] += 1
            examples.setdefault(
                diff["path"],
                Example(
                    primary=diff.get("primary"),
                    shadow=diff.get("shadow"),
                    reason=str(diff.get("reason", "?")),
                    method=sample.method,
                    path=sample.path,
                ),
            )
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return Report(
        samples=samples,
        malformed=malformed,
        status_samples=status_samples,
        paths=tuple(PathCount(path, count, examples[path]) for path, count in ranked),
        runs=len(last_totals),
        totals=sum(last_totals.values(), ResultCounts()) if last_totals else None,
    )


def _value(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= VALUE_WIDTH else f"{text[: VALUE_WIDTH - 3]}..."


def _percent(part: int, whole: int) -> str:
    return f"{part / whole:.2%}"


def format_report(report: Report, top: int = DEFAULT_TOP) -> str:
    malformed = f"malformed lines   {report.malformed} skipped" if report.malformed else None
    if report.samples == 0:
        return "\n".join(filter(None, ["no mismatches recorded", malformed]))
    lines = [f"mismatch samples  {report.samples}"]
    totals, comparisons = report.totals, report.comparisons
    if totals is None or comparisons is None:
        lines += ["comparisons       unknown (no totals in the log)", "mismatch rate     unknown"]
    else:
        runs = f"{report.runs} run{'' if report.runs == 1 else 's'}"
        lines.append(f"comparisons       {comparisons} in {runs}")
        rate = "unknown" if not comparisons else _percent(totals.mismatch, comparisons)
        lines.append(f"mismatch rate     {rate} ({totals.mismatch} of {comparisons})")
        lines.append(f"shadow errors     {totals.error}, dropped {totals.dropped}")
    status_share = _percent(report.status_samples, report.samples)
    lines.append(
        f"status mismatches {report.status_samples} of {report.samples} samples ({status_share})"
    )
    if malformed:
        lines.append(malformed)
    shown = report.paths[:top]
    if len(shown) == len(report.paths):
        lines.append("differing paths")
    else:
        lines.append(f"top {len(shown)} of {len(report.paths)} differing paths")
    width = max((len(str(entry.count)) for entry in shown), default=1)
    for entry in shown:
        example = entry.example
        lines.append(f"  {entry.count:>{width}}  {entry.path}  ({example.reason})")
        lines.append(
            f"  {'':>{width}}    e.g. primary {_value(example.primary)} vs shadow "
            f"{_value(example.shadow)}  ({example.method} {example.path})"
        )
    return "\n".join(lines)


def log_files(path: Path) -> list[Path]:
    """The rotated backups oldest first (``path.3``, ``path.2``, ``path.1``), then path."""
    backups = []
    index = 1
    while (backup := path.with_name(f"{path.name}.{index}")).exists():
        backups.append(backup)
        index += 1
    files = list(reversed(backups))
    if path.exists():
        files.append(path)
    return files


def read_lines(files: Sequence[Path]) -> Iterator[str]:
    for file in files:
        with file.open(encoding="utf-8", errors="replace") as handle:
            yield from handle


def cmd_diff_report(args: argparse.Namespace) -> int:
    path = Path(args.log)
    files = log_files(path)
    if not files:
        print(
            f"cutover: no shadow log at {path} (is dual run on? pass --log PATH)", file=sys.stderr
        )
        return 1
    try:
        report = summarize(read_lines(files))
    except OSError as exc:
        print(f"cutover: cannot read {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(format_report(report, args.top))
    return 0


def positive_int(text: str) -> int:
    """argparse type for a count given on the command line (also `cutover run --workers`)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def add_diff_report_command(subparsers: Any) -> None:
    """Register ``diff-report`` on the ``cutover`` argparse subparsers."""
    report = subparsers.add_parser("diff-report", help="summarise the dual-run mismatch log")
    report.add_argument(
        "--log",
        metavar="PATH",
        default=DEFAULT_LOG,
        help=f"the shadow log, read with its backups PATH.1, ... (default: {DEFAULT_LOG})",
    )
    report.add_argument(
        "--top",
        metavar="N",
        type=positive_int,
        default=DEFAULT_TOP,
        help=f"how many differing paths to show (default: {DEFAULT_TOP})",
    )
    report.set_defaults(func=cmd_diff_report)
