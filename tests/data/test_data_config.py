"""DataConfig: validation, unknown keys, presets from the model config; named data sets and downloads."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import urllib.error
from pathlib import Path

import pytest

import vitkit
from data_images import write_cifar
from vitkit.data import DataConfig, RandAugmentSpec, build_dataset, data_roots, norm_preset, resolve_named
from vitkit.data import download as download_mod
from vitkit.data import named as named_mod


def test_unknown_keys_raise_listing_the_valid_ones():
    for make in (
        lambda: DataConfig(img_sise=32),
        lambda: DataConfig().replace(img_sise=32),
        lambda: DataConfig.from_dict({"img_sise": 32}),
        lambda: DataConfig.from_model_config("vit_tiny_patch4_32", img_sise=32),
    ):
        with pytest.raises(TypeError, match=r"unknown DataConfig field\(s\) \['img_sise'\].*valid fields.*img_size"):
            make()


def test_round_trip_and_normalised_fields():
    cfg = DataConfig(img_size=32, color_jitter=0.4, scale=(0.5, 1), randaugment="rand-m9-n2-mstd0.5")
    assert cfg.img_size == (32, 32) and cfg.color_jitter == (0.4, 0.4, 0.4)
    assert DataConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.randaugment_spec == RandAugmentSpec(magnitude=9.0, num_ops=2, magnitude_std=0.5)


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"train_crop": "center"}, "train_crop"),
        ({"crop_pct": 0}, "crop_pct"),
        ({"scale": (0.5, 0.2)}, "scale"),
        ({"hflip": 1.5}, "hflip"),
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"randaugment": "rand-x9"}, "RandAugment"),
        ({"randaugment": "rand-m11-n2"}, "magnitude"),
        ({"randaugment": "rand-m9-n2", "trivialaugment": True}, "not both"),
        ({"mean": (0.5, 0.5)}, "three"),
    ],
)
def test_invalid_settings_are_named(changes, match):
    with pytest.raises(ValueError, match=match):
        DataConfig(**changes)


def test_normalisation_travels_with_the_model_config():
    vit = DataConfig.from_model_config("vit_tiny_patch4_32", dataset="cifar10")
    assert vit.img_size == (32, 32) and vit.mean == (0.5,) * 3 and vit.std == (0.5,) * 3 and vit.crop_pct == 1.0
    deit = DataConfig.from_model_config(vitkit.get_config("deit_small_patch16_224"))
    assert deit.mean == norm_preset("imagenet")["mean"] and deit.std == norm_preset("imagenet")["std"]
    assert deit.crop_pct == 0.875 and deit.img_size == (224, 224)
    assert DataConfig(**norm_preset("vit")).mean == (0.5, 0.5, 0.5)
    with pytest.raises(ValueError, match="imagenet"):
        norm_preset("imagenett")


# --------------------------------------------------------------------------------------- named data sets
@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Working directory and environment that hold no data, so only what a test puts there is found."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VITKIT_DATA", raising=False)
    monkeypatch.setattr(named_mod, "data_roots", lambda data_root=None: _roots(tmp_path, data_root))
    return tmp_path


def _roots(tmp_path: Path, data_root: str | None) -> list[Path]:
    # The real search order minus the repository's own ../shared/data (which holds the real CIFAR-10 here).
    roots = [Path(data_root)] if data_root else []
    if os.environ.get("VITKIT_DATA"):
        roots.append(Path(os.environ["VITKIT_DATA"]))
    return roots + [tmp_path / "data", tmp_path.parent / "shared" / "data"]


def test_search_order_of_data_roots(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VITKIT_DATA", str(tmp_path / "env"))
    roots = data_roots(str(tmp_path / "flag"))
    assert roots[:4] == [tmp_path / "flag", tmp_path / "env", tmp_path / "data", tmp_path.parent / "shared" / "data"]
    repo = Path(vitkit.__file__).resolve().parents[2]
    assert roots[4] == repo.parent / "shared" / "data"  # ../shared/data next to the checkout, from any cwd


def test_named_dataset_found_under_each_root(isolated, monkeypatch):
    write_cifar(isolated / "data" / "cifar10" / "cifar-10-batches-py", per_batch=2)
    assert resolve_named("cifar10") == isolated / "data" / "cifar10" / "cifar-10-batches-py"
    write_cifar(isolated / "env" / "cifar-10-batches-py", per_batch=2)
    monkeypatch.setenv("VITKIT_DATA", str(isolated / "env"))
    assert resolve_named("cifar10") == isolated / "env" / "cifar-10-batches-py"  # $VITKIT_DATA before ./data
    flag = isolated / "flag" / "cifar10"
    (flag / "train" / "cat").mkdir(parents=True)  # image-folder layout counts too
    assert resolve_named("cifar10", str(isolated / "flag")) == flag
    cfg = DataConfig(dataset="cifar10", img_size=32, crop_pct=1.0)
    assert len(build_dataset(cfg, "train")) == 10 and len(build_dataset(cfg, "test")) == 2


def test_offline_download_failure_says_where_to_put_the_files(isolated, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(download_mod, "urlopen", offline)
    with pytest.raises(FileNotFoundError) as err:
        build_dataset(DataConfig(dataset="cifar100", data_root=str(isolated / "mine")), "train")
    text = str(err.value)
    assert "network is unreachable" in text
    assert "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz" in text and "md5" in text
    assert str(isolated / "mine" / "cifar100") in text and "--data-root" in text
    assert not (isolated / "mine" / "cifar100").exists() or not any((isolated / "mine" / "cifar100").iterdir())
    with pytest.raises(FileNotFoundError, match="download=False"):
        resolve_named("cifar10", allow_download=False)


class _Response(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}


def _fake_archive(tmp_path: Path) -> bytes:
    write_cifar(tmp_path / "src" / "cifar-10-batches-py", per_batch=2)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return buf.getvalue()


def test_download_checks_the_checksum_and_unpacks(isolated, monkeypatch):
    data = _fake_archive(isolated)
    calls = []
    monkeypatch.setattr(download_mod, "urlopen", lambda url, timeout: calls.append(url) or _Response(data))
    spec = named_mod.NAMED["cifar10"]
    monkeypatch.setitem(named_mod.NAMED, "cifar10", spec.__class__(**{**spec.__dict__, "md5": "0" * 32}))
    with pytest.raises(ValueError, match="checksum mismatch"):
        resolve_named("cifar10")
    leftovers = [p for p in (isolated / "data").rglob("*") if p.is_file()]
    assert leftovers == []  # no partial or damaged file left behind
    good = spec.__class__(**{**spec.__dict__, "md5": hashlib.md5(data).hexdigest()})
    monkeypatch.setitem(named_mod.NAMED, "cifar10", good)
    path = resolve_named("cifar10")
    assert path == isolated / "data" / "cifar10" / "cifar-10-batches-py" and calls[-1] == spec.url
    assert len(build_dataset(DataConfig(dataset="cifar10", img_size=32), "train")) == 10
