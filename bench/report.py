"""The results as a markdown table, PASS/FAIL lines and a JSON document."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.common import Outcome, Row

HEADER = ("scenario", "figure", "dispatcher", "baseline / reference", "ratio", "target", "result")


def table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for r in rows:
        cells = (r.scenario, r.figure, r.dispatcher, r.reference, r.ratio, r.target, r.verdict)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def summary(rows: list[Row]) -> str:
    """The last line: how many gating targets failed, and how many reported-only ones were missed."""
    failed = sum(r.failed for r in rows)
    missed = sum(r.verdict == "MISS" for r in rows)
    head = f"FAIL: {failed} target(s) failed" if failed else "PASS: every target met"
    return head + (f" ({missed} reported-only target(s) missed)" if missed else "")


def verdicts(rows: list[Row]) -> list[str]:
    return [
        f"{r.verdict}  {r.scenario}: {r.figure}: {r.dispatcher} (target {r.target})"
        for r in rows
        if r.verdict
    ]


def markdown(outcomes: list[Outcome], meta: dict[str, Any]) -> str:
    rows = [r for o in outcomes for r in o.rows]
    command = "python -m bench" + {"quick": " --quick", "soak": " --soak"}.get(meta["mode"], "")
    head = (
        f"Benchmark ({meta['mode']} run, {meta['finished']}"
        + (f", commit {meta['commit']}" if meta.get("commit") else "")
        + f"): sandbox latency {meta['latency_ms']} ms "
        f"per call, {meta['cpus']} CPUs, Python {meta['python']}. Times and memory are medians over the "
        f"repetitions; call counts are the worst repetition. Reproduce with `{command}`."
    )
    notes = "\n".join(f"- {n}" for n in meta.get("notes", []))
    return f"{head}\n\n{table(rows)}\n" + (f"\n{notes}\n" if notes else "")


def write(out_dir: Path, outcomes: list[Outcome], meta: dict[str, Any]) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [r for o in outcomes for r in o.rows]
    doc = {
        **meta,
        "passed": not any(r.failed for r in rows),
        "targets": [_row_dict(r) for r in rows if r.passed is not None],
        "scenarios": {o.name: {"rows": [_row_dict(r) for r in o.rows], "data": o.data} for o in outcomes},
    }
    json_path, md_path = out_dir / "latest.json", out_dir / "latest.md"
    json_path.write_text(json.dumps(doc, ensure_ascii=False, indent=2, default=str) + "\n", encoding="utf-8")
    md_path.write_text(markdown(outcomes, meta), encoding="utf-8")
    return json_path, md_path


def _row_dict(row: Row) -> dict[str, Any]:
    return {
        "figure": row.figure,
        "dispatcher": row.dispatcher,
        "reference": row.reference,
        "ratio": row.ratio,
        "target": row.target,
        "passed": row.passed,
        "gates": row.gates,
    }


SOAK_HEADING = "\n## The hour-long soak (scenario 10)\n"
SECTION = "\n## "  # every dated section of RESULTS.md (and the soak's) starts so


def with_soak(full: str, results: Path) -> str:
    """RESULTS.md with a full run's table in place of the old one at the top, and every section
    after it kept: the hour-long soak's (`python -m bench --soak`) and the dated ones of each round,
    written by hand, which a full run must not drop."""
    old = results.read_text(encoding="utf-8") if results.exists() else ""
    start = old.find(SECTION)
    return full.rstrip("\n") + "\n" + (old[start:] if start >= 0 else "")


def soak_section(results: Path, soak: str) -> str:
    """RESULTS.md with its soak section replaced by this run's (added at the end if it has none);
    the sections after it stay."""
    old = results.read_text(encoding="utf-8") if results.exists() else ""
    start = old.find(SOAK_HEADING)
    end = old.find(SECTION, start + 1) if start >= 0 else -1
    before, after = (old[:start], old[end:] if end >= 0 else "") if start >= 0 else (old, "")
    return before.rstrip("\n") + "\n" + SOAK_HEADING + "\n" + soak.rstrip("\n") + "\n" + after
