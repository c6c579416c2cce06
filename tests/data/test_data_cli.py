"""``vitkit data inspect`` on a folder made at test time: counts, size histogram, the two PNG grids."""

from __future__ import annotations

from collections import Counter

import numpy as np
from PIL import Image

from data_images import make_class_folder, make_mixed_folder
from vitkit.cli.main import main
from vitkit.data.inspection import inspect_dataset, size_histogram


def test_inspect_cli_prints_counts_and_writes_grids(tmp_path, capsys):
    make_class_folder(tmp_path / "ds" / "train", {"ant": 5, "bee": 3}, size=(24, 20))
    make_class_folder(tmp_path / "ds" / "val", {"ant": 1, "bee": 2}, size=(24, 20))
    rc = main(["data", "inspect", str(tmp_path / "ds"), "--out", str(tmp_path / "out"), "--num", "6"])
    out = capsys.readouterr().out
    assert rc == 0
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}
    assert lines["class"] == ["train", "val"]
    assert lines["ant"] == ["5", "1"] and lines["bee"] == ["3", "2"] and lines["total"] == ["8", "3"]
    assert "24x20" in out and "100.0%" in out
    for name in ("samples.png", "augmented.png"):
        with Image.open(tmp_path / "out" / name) as img:
            assert img.format == "PNG" and img.width >= 3 * 96 and img.height >= 2 * 96
            assert len(np.unique(np.asarray(img.convert("L")))) > 20  # holds pictures, not a blank sheet


def test_inspect_counts_skipped_files_and_bins_many_sizes(tmp_path, caplog):
    make_mixed_folder(tmp_path / "mixed")
    with caplog.at_level("WARNING", logger="vitkit.data"):
        report = inspect_dataset(str(tmp_path / "mixed"))
    assert "skipped 3" in caplog.text
    assert report.counts == {"all": {"cat": 9, "dog": 2}} and report.skipped == 3
    many = Counter({(w, w + 1): 1 for w in range(10, 700, 40)})  # 18 sizes, shorter sides 10, 50, ..., 690
    rows = size_histogram(many)
    labels = [r.split()[2] for r in rows]
    assert labels == ["0-15", "32-63", "64-127", "128-255", "256-511", "512-1023"]
    assert [int(r.split()[3]) for r in rows] == [1, 1, 1, 4, 6, 5]


def test_progress_lines_in_a_log_file():
    import io

    from vitkit.utils.progress import Progress

    log = io.StringIO()
    with Progress(8, "decode", unit="img", delay=0.0, stream=log) as bar:
        for _ in range(8):
            bar.update()
    lines = log.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == ["25%", "50%", "75%", "100%"]  # one line a quarter, no repeats
    quiet = io.StringIO()
    with Progress(8, "fast", stream=quiet) as bar:  # finishes within the delay: says nothing
        bar.update(8)
    assert quiet.getvalue() == ""
