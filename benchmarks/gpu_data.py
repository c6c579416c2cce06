"""Carry an image folder to the lent GPU machine, which sees only the repository (64 MiB) and no network.

A tar of CIFAR-10 costs a 512-byte header per 1 KB JPEG; this packs the files' exact bytes end to end in one blob
with a JSON index (relative path, offset, length), so the 60,000 images travel in 56 MB and unpack bit-identical.

    python benchmarks/gpu_data.py pack ../shared/data/cifar10 gpu_data/cifar10      # here (gpu_data/ is ignored)
    python benchmarks/gpu_data.py unpack gpu_data/cifar10 /tmp/data/cifar10         # there
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def pack(src: Path, out: Path) -> None:
    files = sorted(p for p in src.rglob("*") if p.is_file())
    out.mkdir(parents=True, exist_ok=True)
    index, offset = [], 0
    with open(out / "blob.bin", "wb") as blob:
        for path in files:
            data = path.read_bytes()
            blob.write(data)
            index.append([path.relative_to(src).as_posix(), offset, len(data)])
            offset += len(data)
    (out / "index.json").write_text(json.dumps(index))
    print(f"packed {len(files)} files, {offset / 2**20:.1f} MiB, into {out}")


def unpack(packed: Path, dest: Path) -> None:
    index = json.loads((packed / "index.json").read_text())
    blob = (packed / "blob.bin").read_bytes()
    for rel, offset, length in index:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(blob[offset : offset + length])
    print(f"unpacked {len(index)} files into {dest}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["pack", "unpack"])
    parser.add_argument("src", type=Path)
    parser.add_argument("dest", type=Path)
    args = parser.parse_args()
    (pack if args.action == "pack" else unpack)(args.src, args.dest)


if __name__ == "__main__":
    main()
