"""Named data sets (``cifar10``, ``cifar100``): found under a data root, else downloaded from their source.

Roots are searched in order: ``data_root`` (``--data-root``), ``$VITKIT_DATA``, ``./data``, ``../shared/data``
relative to the working directory and, for a source checkout, relative to the repository.
"""

from __future__ import annotations

import os
import urllib.error
from dataclasses import dataclass
from pathlib import Path

from vitkit.data import download
from vitkit.data.sources import SPLIT_DIRS, is_cifar_dir


@dataclass(frozen=True)
class NamedDataset:
    dirs: tuple[str, ...]  # folder names under a data root; the first is where a download goes
    pickle_dir: str  # the folder the canonical archive unpacks to
    url: str
    md5: str
    num_classes: int


NAMED: dict[str, NamedDataset] = {
    "cifar10": NamedDataset(
        dirs=("cifar10", "cifar-10"),
        pickle_dir="cifar-10-batches-py",
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a",
        num_classes=10,
    ),
    "cifar100": NamedDataset(
        dirs=("cifar100", "cifar-100"),
        pickle_dir="cifar-100-python",
        url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        md5="eb9058c3a382ffc7106e4002c42a8d85",
        num_classes=100,
    ),
}


def data_roots(data_root: str | os.PathLike | None = None) -> list[Path]:
    """The folders searched for named data sets, in order, without duplicates."""
    roots = [Path(data_root)] if data_root else []
    if os.environ.get("VITKIT_DATA"):
        roots.append(Path(os.environ["VITKIT_DATA"]))
    cwd = Path.cwd()
    roots += [cwd / "data", cwd.parent / "shared" / "data"]
    repo = Path(__file__).resolve().parents[3]  # src/vitkit/data/named.py -> repository root
    if (repo / "pyproject.toml").is_file():
        roots.append(repo.parent / "shared" / "data")
    unique: list[Path] = []
    for root in roots:
        root = root.expanduser().absolute()
        if root not in unique:
            unique.append(root)
    return unique


def _has_splits(path: Path) -> bool:
    return any((path / n).is_dir() or (path / f"{n}.csv").is_file() for n in SPLIT_DIRS["train"])


def find_named(name: str, roots: list[Path]) -> Path | None:
    """The first location under ``roots`` holding ``name`` as pickles or as split image folders."""
    spec = NAMED[name]
    for root in roots:
        candidates = [root / d / spec.pickle_dir for d in spec.dirs] + [root / spec.pickle_dir]
        candidates += [root / d for d in spec.dirs]
        for path in candidates:
            if path.is_dir() and (is_cifar_dir(path) or _has_splits(path)):
                return path
    return None


def resolve_named(name: str, data_root: str | None = None, allow_download: bool = True) -> Path:
    """Local path of a named data set, downloading it into the first writable root if it is missing."""
    name = name.lower()
    if name not in NAMED:
        raise ValueError(f"unknown data set {name!r}; named data sets are {sorted(NAMED)}, or pass a path")
    roots = data_roots(data_root)
    found = find_named(name, roots)
    if found is not None:
        return found
    spec = NAMED[name]
    target = roots[0] / spec.dirs[0]  # --data-root, else $VITKIT_DATA, else ./data
    if not allow_download:
        raise FileNotFoundError(_missing_message(name, roots, target, "downloads are switched off (download=False)"))
    archive = target / Path(spec.url).name
    try:
        download.fetch(spec.url, archive, spec.md5)
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        reason = getattr(err, "reason", None) or err
        raise FileNotFoundError(_missing_message(name, roots, target, f"the download failed: {reason}")) from None
    download.extract(archive, target)
    archive.unlink()
    found = find_named(name, [target.parent])
    if found is None:
        raise FileNotFoundError(f"{archive.name} from {spec.url} did not unpack to {target / spec.pickle_dir}")
    return found


def _missing_message(name: str, roots: list[Path], target: Path, why: str) -> str:
    spec = NAMED[name]
    searched = "\n".join(f"  {r}/{{{','.join(spec.dirs)}}}" for r in roots)
    return (
        f"data set {name!r} was not found locally and {why}.\n"
        f"Searched:\n{searched}\n"
        f"To fix, put it in one of those places, for example {target}, as either\n"
        f"  - the python version: download {spec.url} (md5 {spec.md5}) and unpack it there, giving "
        f"{target / spec.pickle_dir}/..., or\n"
        f"  - image folders: {target}/train/<class>/*.png and {target}/test/<class>/*.png;\n"
        f"or point --data-root / $VITKIT_DATA at a folder that holds {spec.dirs[0]}/."
    )
