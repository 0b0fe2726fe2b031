"""docs/ci.md's examples are what the tools accept: its workflow and its matrix file."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from xframe_bilstm.matrix.user import load_user_matrix, user_cells

# The venv's own copy first: the test may run without the venv on PATH.
CHECKER = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent)) or shutil.which(
    "check-jsonschema"
)
DOC = (Path(__file__).resolve().parents[2] / "docs" / "ci.md").read_text(encoding="utf-8")


def _block(language: str) -> str:
    (block,) = re.findall(rf"```{language}\n(.*?)```", DOC, flags=re.DOTALL)
    return block


@pytest.mark.skipif(CHECKER is None, reason="needs check-jsonschema")
def test_the_workflow_to_copy_is_a_valid_github_workflow(tmp_path: Path) -> None:
    workflow = tmp_path / "equivalence.yml"
    workflow.write_text(_block("yaml"))
    result = subprocess.run(
        [str(CHECKER), "--builtin-schema", "vendor.github-workflows", str(workflow)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_example_matrix_file_declares_the_cells_the_page_lists(tmp_path: Path) -> None:
    config = tmp_path / "matrix.toml"
    config.write_text(_block("toml"))
    for name in ("tagger.keras", "tagger_port.pt", "encoder.pt"):  # the files it names
        (tmp_path / "models").mkdir(exist_ok=True)
        (tmp_path / "models" / name).write_bytes(b"")
    cells, _ = user_cells(load_user_matrix(config), available={"torch", "keras"})
    listed = re.search(r"matrix\.toml --list\n(.*?)```", DOC, flags=re.DOTALL)
    assert listed is not None
    assert [cell.id for cell in cells] == listed.group(1).split()
