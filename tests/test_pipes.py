"""Output captured as a pipe or a CI log captures it (CliRunner: not a terminal) keeps its cells and
lines whole: no "validat…", no value broken at 80 columns."""
import re

import pytest

from helpers import cli


def test_summary_s_footnote_and_totals_are_whole_lines():
    result = cli("summary")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    footnote = [line for line in lines if line.startswith("FLOPs count 2 per multiply-add")]
    assert len(footnote) == 1 and footnote[0].endswith("adds that layer's input gradient: 215,296 more.")
    assert "Training step: 34,526,936 FLOPs per image (forward + backward); prediction: 11,580,744" in lines
    assert "…" not in result.output


def test_a_sweep_s_table_and_run_lines_are_whole_in_a_pipe(tmp_path):
    pytest.importorskip("optuna", reason="the sweep extra is not installed")
    from helpers import write_image_folder

    data = write_image_folder(tmp_path / "photos", train=6, test=2)
    # Four swept settings: run lines and table rows wider than 80 columns.
    result = cli("sweep", "--data", data, "--lr", "1e-3,1e-2", "--optimizer", "adam,momentum", "--hidden", "6",
                 "--hidden", "6,5", "--kernels", "2", "--kernel-size", "5", "--epochs", "1", "--seeds", "1",
                 "--no-prune", "--workers", "0", "--out", tmp_path / "sweep")
    assert result.exit_code == 0, result.output
    runs = [line for line in result.stderr.splitlines() if line.startswith("trial ")]
    assert len(runs) == 8
    for line in runs:
        assert re.fullmatch(r"trial \d+ lr=\S+ hidden=\S+ optimizer=\S+ seed=0: finished, validation \S+%, "
                            r"test \S+% \[\d+\.\d s\]", line), line
    out = result.stdout
    assert "…" not in out
    header = next(line for line in out.splitlines() if "validation %" in line)
    for name in ("lr", "hidden", "optimizer", "validation %", "test %", "best val loss", "s / run", "runs", "state"):
        assert f" {name} " in header
    rows = [line for line in out.splitlines() if line.startswith("│")]
    assert len(rows) == 8 and all(line.rstrip().endswith("│ finished │") for line in rows)
    assert max(map(len, rows)) > 80
    (spearman,) = [line for line in out.splitlines() if line.startswith("Validation vs test")]
    assert re.search(r"\(medians: validation \S+%, test \S+%\)$", spearman)
