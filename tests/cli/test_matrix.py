"""``python -m xframe_bilstm matrix``: records, exit status, shards and baseline updates."""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree

import pytest

from xframe_bilstm.cli import main
from xframe_bilstm.frameworks import FRAMEWORKS, TorchFramework
from xframe_bilstm.matrix import lane_cells, load_table, shard

from ..matrix.drift import past_the_ratchet

pytest.importorskip("torch")
pytest.importorskip("keras")

SHARD = "13/80"  # a few cells of the default lane: a handful of structures
CELLS = shard(lane_cells(load_table(), "default", available=set(FRAMEWORKS))[0], 13, 80)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    status = main(["matrix", "--lane", "default", "--shard", SHARD, *argv])
    return status, capsys.readouterr().out


def test_a_shard_writes_one_record_per_cell(tmp_path: Path, capsys) -> None:
    records, junit = tmp_path / "cells.json", tmp_path / "cells.xml"
    status, out = run(
        capsys, "--json", str(records), "--junit", str(junit), "--baselines", str(tmp_path)
    )
    assert status == 0, out
    assert f"matrix default {SHARD}: {len(CELLS)} cells, {len(CELLS)} passed, 0 failed" in out
    data = json.loads(records.read_text())
    assert [cell["id"] for cell in data["cells"]] == [cell.id for cell in CELLS]
    first = data["cells"][0]
    assert {"config", "frameworks", "devices", "errors", "passed", "timings"} <= set(first)
    assert first["passed"] is True and first["errors"] == []
    assert first["config"]["steps"] == CELLS[0].steps
    assert set(first["max_errors"]) == {
        f"{name}[cpu,{CELLS[0].dtype}]" for name in CELLS[0].frameworks
    }
    assert all(0 < error < 1e-4 for error in first["max_errors"].values())
    assert data["summary"]["cells"] == len(CELLS) and data["passed"] is True
    assert data["timings"]["frameworks"] > 0
    assert data["baseline"]["found"] is False  # an empty folder: the ratchet is off
    suite = ElementTree.parse(junit).getroot()
    assert suite.get("tests") == str(len(CELLS)) and suite.get("failures") == "0"


def test_a_failing_cell_fails_the_run_and_says_which(tmp_path: Path, capsys, monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("kernel exploded")

    monkeypatch.setattr(TorchFramework, "run", broken)
    records = tmp_path / "cells.json"
    status, out = run(capsys, "--json", str(records), "--baselines", str(tmp_path))
    assert status == 1
    assert f"FAILED | {CELLS[0].id} | torch[cpu," in out and "kernel exploded" in out
    data = json.loads(records.read_text())
    assert data["passed"] is False and data["summary"]["failed"] == len(CELLS)
    assert "kernel exploded" in data["cells"][0]["errors"][0]


def _refuse(literal: str) -> None:
    raise ValueError(f"{literal} is not JSON")


def test_non_finite_outputs_fail_and_still_give_valid_json(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    original = TorchFramework.run

    def nan_run(self, stack, x, spec, *, initial_states, lengths):
        outputs, settings = original(
            self, stack, x, spec, initial_states=initial_states, lengths=lengths
        )
        return tuple(o * float("nan") for o in outputs), settings

    monkeypatch.setattr(TorchFramework, "run", nan_run)
    records = tmp_path / "cells.json"
    status, out = run(capsys, "--json", str(records), "--baselines", str(tmp_path))
    assert status == 1 and "non-finite values" in out
    data = json.loads(records.read_text(), parse_constant=_refuse)  # no NaN or Infinity
    first = data["cells"][0]
    assert first["max_errors"][f"torch[cpu,{CELLS[0].dtype}]"] in ("inf", "nan")


def test_updated_baselines_ratchet_later_runs(tmp_path: Path, capsys, monkeypatch) -> None:
    status, out = run(capsys, "--update-baselines", "--baselines", str(tmp_path))
    assert status == 0, out
    (written,) = (tmp_path / "default").glob("*.json")
    recorded = json.loads(written.read_text())["cells"]
    assert set(recorded) == {cell.id for cell in CELLS}

    status, out = run(capsys, "--baselines", str(tmp_path))
    assert status == 0, out
    assert f"baseline {written.name} ({len(CELLS)} cells, ratchet 4x)" in out

    # torch's outputs moved past the ratchet, but not past the tolerance, where there is
    # room between the two: exactly those cells drift, and the run fails.
    drifted: list[float] = []
    monkeypatch.setattr(TorchFramework, "run", past_the_ratchet(4.0, drifted))
    status, out = run(capsys, "--baselines", str(tmp_path))
    drifts = [line for line in out.splitlines() if line.startswith("DRIFT | ")]
    assert drifted, "no cell left room between the ratchet and the tolerance"
    assert status == 1
    assert len(drifts) == len(drifted)
    assert all("| torch[cpu," in line and "the ratchet allows 4x" in line for line in drifts)
    assert not [line for line in out.splitlines() if line.startswith("FAILED | ")]


def test_two_processes_measure_what_one_does(tmp_path: Path, capsys) -> None:
    """--jobs splits the cells over fresh processes; the records come back in lane order,
    with the same errors (each cell's numbers depend on the cell only)."""
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    assert run(capsys, "--json", str(one), "--baselines", str(tmp_path))[0] == 0
    status, out = run(capsys, "--jobs", "2", "--json", str(two), "--baselines", str(tmp_path))
    assert status == 0, out
    first, second = json.loads(one.read_text()), json.loads(two.read_text())
    assert second["timings"]["jobs"] == 2
    assert [c["id"] for c in second["cells"]] == [c["id"] for c in first["cells"]]
    assert [c["max_errors"] for c in second["cells"]] == [c["max_errors"] for c in first["cells"]]


def test_listing_and_usage_errors(capsys) -> None:
    assert main(["matrix", "--lane", "default", "--list"]) == 0
    listed = capsys.readouterr().out.split()
    assert len(listed) >= 200 and listed[0].startswith("lstm-")
    assert main(["matrix", "--lane", "nightly"]) == 2
    assert "lane 'nightly' is not one of" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["matrix", "--shard", "3/2"])
    assert exit_info.value.code == 2
