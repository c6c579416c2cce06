"""The stand-in live/spoof set: deterministic, split by source photo, read back with attack types; the
live/spoof listing's bad input; CIFAR-10-C-style corruptions against hand formulas."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitkit.cli.main import main
from vitkit.data.corruptions import CORRUPTIONS, brightness, contrast, corrupt, make_corrupted, saturate
from vitkit.data.spoof import make_spoof, spoof_listing


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i in range(20):
        folder = root / ("cat" if i % 2 else "dog")
        folder.mkdir(exist_ok=True)
        yy, xx = np.mgrid[0:32, 0:32]
        img = np.stack([xx * 8, yy * 8, (xx + yy) * 4], -1) + rng.integers(0, 60, size=(32, 32, 3))
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"{i:03d}.jpg")
    return root


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.png")):
        h.update(str(p.relative_to(root)).encode() + p.read_bytes())
    return h.hexdigest()


def test_make_spoof_is_deterministic_and_splits_by_source_photo(photos: Path, tmp_path: Path) -> None:
    a = make_spoof(photos, tmp_path / "a", num_photos=None, size=16, seed=3)
    make_spoof(photos, tmp_path / "b", num_photos=None, size=16, seed=3)
    make_spoof(photos, tmp_path / "c", num_photos=None, size=16, seed=4)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b") != _digest(tmp_path / "c")
    with open(tmp_path / "a" / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 40  # one live and one attack per photo
    split_of: dict[str, set[str]] = {}
    for r in rows:
        split_of.setdefault(r["source"], set()).add(r["split"])
        assert (tmp_path / "a" / r["path"]).is_file()
    assert len(split_of) == 20 and all(len(s) == 1 for s in split_of.values())  # no photo in two splits
    assert sum(a.counts["train"].values()) == 28 and sum(a.counts["test"].values()) == 6
    source, types = spoof_listing(tmp_path / "a", "dev")
    assert source.classes == ["live", "spoof"] and len(source) == 6
    assert sorted(set(types)) == ["live", "print", "replay"]
    assert [t for t, y in zip(types, source.targets) if y == 0] == ["live"] * 3
    with Image.open(source.paths[0]) as img:
        assert img.size == (16, 16)


def test_attacks_differ_from_the_live_image(photos: Path, tmp_path: Path) -> None:
    make_spoof(photos, tmp_path, num_photos=4, size=16, seed=0)
    with open(tmp_path / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    by_source: dict[str, dict[str, np.ndarray]] = {}
    for r in rows:
        by_source.setdefault(r["source"], {})[r["attack_type"] or "live"] = np.asarray(
            Image.open(tmp_path / r["path"]), dtype=np.float64
        )
    for images in by_source.values():
        (kind,) = set(images) - {"live"}
        assert np.abs(images[kind] - images["live"]).mean() > 3.0


def test_listing_reads_a_csv_with_attack_types(tmp_path: Path) -> None:
    img = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(img)
    (tmp_path / "list.csv").write_text(
        "path,label,attack_type,split\nx.png,live,,test\nx.png,spoof,mask,test\nx.png,spoof,print,train\n"
    )
    source, types = spoof_listing(tmp_path / "list.csv", "test")
    assert types == ["live", "mask"] and source.targets == [0, 1]


@pytest.mark.parametrize("missing, words", [("spoof", "holds no spoof images"), ("live", "holds no live images")])
def test_a_split_without_one_class_is_refused(tmp_path: Path, missing: str, words: str) -> None:
    keep = "live/a.png" if missing == "spoof" else "spoof/print/a.png"
    (tmp_path / "test" / keep).parent.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "test" / keep)
    with pytest.raises(ValueError, match=words + ".*add them under"):
        spoof_listing(tmp_path, "test")


def test_cli_make_spoof(photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "make-spoof", str(photos), str(tmp_path / "s"), "--num", "6", "--size", "16"]) == 0
    assert "stand-in" in capsys.readouterr().out
    assert (tmp_path / "s" / "train" / "live").is_dir()


# ---------------------------------------------------------------------------------------------- corruptions
def test_corruptions_match_their_hand_formulas() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((4, 4, 3))
    np.testing.assert_allclose(contrast(x, 5, rng), (x - x.mean((0, 1))) * 0.15 + x.mean((0, 1)))
    # HSV brightness at severity 5: V + 0.3 with H, S kept, checked with colorsys per pixel.
    import colorsys

    got_b, got_s = brightness(x, 5, rng), saturate(x, 4, rng)
    for i, j in [(0, 0), (1, 2), (3, 3)]:
        h, s, v = colorsys.rgb_to_hsv(*x[i, j])
        np.testing.assert_allclose(got_b[i, j], colorsys.hsv_to_rgb(h, s, min(v + 0.3, 1.0)), atol=1e-12)
        np.testing.assert_allclose(got_s[i, j], colorsys.hsv_to_rgb(h, min(s * 2 + 0.1, 1.0), v), atol=1e-12)


def test_make_corrupted_copies_the_tree_deterministically(photos: Path, tmp_path: Path) -> None:
    assert make_corrupted(photos, tmp_path / "a", severity=5, seed=1) == 20
    make_corrupted(photos, tmp_path / "b", severity=5, seed=1)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert sorted(p.parent.name for p in (tmp_path / "a").rglob("*.png")).count("cat") == 10
    with pytest.raises(ValueError, match="severity must be 1..5"):
        corrupt(Image.new("RGB", (8, 8)), "contrast", 6, np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown corruption 'frost'"):
        make_corrupted(photos, tmp_path / "c", names=["frost"])
    assert len(CORRUPTIONS) == 11


def test_a_missing_split_names_the_splits_there(tmp_path: Path) -> None:
    (tmp_path / "train" / "live").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="has no 'dev' split \\(it has train\\); choose one"):
        spoof_listing(tmp_path, "dev")
