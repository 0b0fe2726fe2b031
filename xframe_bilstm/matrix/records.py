"""A lane's results as JSON (one record per cell under ``cells``), JUnit XML and a summary."""

from __future__ import annotations

import json
from typing import Any
from xml.etree import ElementTree

from .results import LaneResult


def lane_dict(result: LaneResult, description: str = "") -> dict[str, Any]:
    """Everything the run measured, as plain data."""
    results = result.results
    return {
        "lane": result.lane,
        "description": description,
        "shard": f"{result.shard[0]}/{result.shard[1]}",
        "passed": result.passed,
        "versions": result.versions,
        "baseline": {
            "file": None if result.baseline.path is None else str(result.baseline.path),
            "found": result.baseline.found,
            "cells": len(result.baseline.cells),
            "ratchet": result.baseline.ratchet,
        },
        "skipped_frameworks": result.skipped_frameworks,
        "summary": {
            "cells": len(results),
            "passed": sum(r.passed for r in results),
            "failed": sum(not r.within_tolerance for r in results),
            "drifted": sum(r.within_tolerance and bool(r.drifts) for r in results),
            "without_baseline": sum(r.baseline is None for r in results),
        },
        "timings": {
            "wall": result.wall_seconds,
            "jobs": result.jobs,
            "imports": result.import_seconds,
            "cells": result.cells_seconds,
            "frameworks": result.framework_seconds,
            "overhead_ratio": result.overhead_ratio,
        },
        "cells": [r.to_dict() for r in results],
    }


def lane_json(result: LaneResult, description: str = "") -> str:
    return json.dumps(lane_dict(result, description), indent=1, allow_nan=False) + "\n"


def lane_junit(result: LaneResult) -> str:
    """One test case per cell; failing and drifting cells carry their lines."""
    failed = [r for r in result.results if not r.passed]
    suite = ElementTree.Element(
        "testsuite",
        name=f"xframe_bilstm matrix {result.lane} {result.shard[0]}/{result.shard[1]}",
        tests=str(len(result.results)),
        failures=str(len(failed)),
        time=f"{result.cells_seconds:.3f}",
    )
    for cell_result in result.results:
        case = ElementTree.SubElement(
            suite,
            "testcase",
            classname=f"matrix.{result.lane}",
            name=cell_result.cell.id,
            time=f"{cell_result.seconds:.3f}",
        )
        if not cell_result.passed:
            lines = cell_result.lines()
            failure = ElementTree.SubElement(case, "failure", message=lines[0])
            failure.text = "\n".join(
                lines + [p["message"] for p in cell_result.pairs if p["message"]]
            )
    return ElementTree.tostring(suite, encoding="unicode") + "\n"


def summary_lines(result: LaneResult, slowest: int = 5) -> list[str]:
    """The summary printed after a run: counts, timings, then every failing cell's lines."""
    data = lane_dict(result)
    counts = data["summary"]
    timings = data["timings"]
    baseline = result.baseline
    if baseline.found:
        ratchet = (
            f"baseline {baseline.path.name if baseline.path else '?'} "
            f"({len(baseline.cells)} cells, ratchet {baseline.ratchet:g}x)"
        )
    else:
        ratchet = "no baseline for these framework versions: the ratchet is off"
    lines = [
        f"matrix {result.lane} {data['shard']}: {counts['cells']} cells, {counts['passed']} "
        f"passed, {counts['failed']} failed, {counts['drifted']} drifted; {ratchet}",
        f"time: {timings['wall']:.1f} s in {timings['jobs']} process(es): imports "
        f"{timings['imports']:.1f} s, cells {timings['cells']:.1f} s, of which the frameworks' "
        f"own runs {timings['frameworks']:.1f} s (overhead ratio {timings['overhead_ratio']:.2f})",
    ]
    if result.skipped_frameworks:
        lines.append(
            "not run: "
            + ", ".join(f"{name} ({why})" for name, why in result.skipped_frameworks.items())
        )
    if counts["without_baseline"] and baseline.found:
        lines.append(f"{counts['without_baseline']} cells have no baseline yet")
    ranked = sorted(result.results, key=lambda r: -r.seconds)[:slowest]
    if ranked:
        lines.append("slowest: " + ", ".join(f"{r.cell.id} {r.seconds:.2f} s" for r in ranked))
    for cell_result in result.results:
        lines.extend(cell_result.lines())
    # Last, alone on its line: the count CI logs are read for.
    lines.append(f"matrix: {counts['passed']} passed, {counts['cells'] - counts['passed']} failed")
    return lines
