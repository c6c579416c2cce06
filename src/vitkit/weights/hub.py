"""Names from model cards -> files in the Hugging Face cache: ``hf-hub:google/vit-base-patch16-224``,
``timm/vit_base_patch16_224.augreg2_in21k_ft_in1k``, and registry names for ``create_model(..., pretrained=True)``.

Files go through ``huggingface_hub``'s cache (``$HF_HUB_CACHE``, else ``~/.cache/huggingface/hub``): downloaded
when online, read from the cache when offline (``HF_HUB_OFFLINE=1``) or when the hub cannot be reached. A file
that is neither cached nor downloadable raises one line naming it and the path where it would go. The folder
returned is an ordinary checkpoint folder that ``read_checkpoint`` recognises from its contents (a transformers
``config.json`` with ``model_type``, or timm's hub ``config.json`` with ``architecture``).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from vitkit.weights.errors import CheckpointError

HF_PREFIX = "hf-hub:"
TIMM_ORG = "timm/"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # preferred first; safetensors needs no unpickling
OPTIONAL_FILES = ("preprocessor_config.json",)  # transformers repos only; timm keeps preprocessing in config.json

# timm's default weights per architecture (the first tag of each in timm's default_cfgs), so that
# create_model("vit_base_patch16_224", pretrained=True) means what it means in timm.
DEFAULT_TAGS = {
    "vit_base_patch16_224": "augreg2_in21k_ft_in1k",
    "vit_base_patch16_384": "augreg2_in21k_ft_in1k",
    "vit_base_patch8_224": "augreg2_in21k_ft_in1k",
    **{
        name: "augreg_in21k_ft_in1k"
        for name in (
            "vit_tiny_patch16_224",
            "vit_tiny_patch16_384",
            "vit_small_patch32_224",
            "vit_small_patch32_384",
            "vit_small_patch16_224",
            "vit_small_patch16_384",
            "vit_base_patch32_224",
            "vit_base_patch32_384",
            "vit_large_patch16_224",
            "vit_large_patch16_384",
        )
    },
    "vit_large_patch32_384": "orig_in21k_ft_in1k",
    "vit_large_patch32_224": "orig_in21k",
    "vit_huge_patch14_224": "orig_in21k",
    "vit_small_patch8_224": "dino",
    **{
        f"deit_{size}_{kind}patch16_224": "fb_in1k" for size in ("tiny", "small", "base") for kind in ("", "distilled_")
    },
    "deit_base_patch16_384": "fb_in1k",
    "deit_base_distilled_patch16_384": "fb_in1k",
}


def is_hub_name(source: object) -> bool:
    """True for ``hf-hub:ORG/NAME[@REVISION]``, and for ``timm/NAME`` unless such a local path exists."""
    if not isinstance(source, str):
        return False
    return source.startswith(HF_PREFIX) or (source.startswith(TIMM_ORG) and not Path(source).exists())


def parse_hub_name(name: str) -> tuple[str, str | None]:
    """``hf-hub:org/name@rev`` or ``timm/name`` -> (repo id, revision or None)."""
    repo = name[len(HF_PREFIX) :] if name.startswith(HF_PREFIX) else name
    repo, _, revision = repo.partition("@")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise ValueError(f"{name!r} is not a hub name; write hf-hub:ORG/NAME (e.g. hf-hub:google/vit-base-patch16-224)")
    return repo, revision or None


def timm_repo(name: str) -> str:
    """The timm hub repository of a registry name, with its tag (``vit_base_patch16_224`` ->
    ``timm/vit_base_patch16_224.augreg2_in21k_ft_in1k``); a name with a tag keeps it."""
    if "." in name:
        return TIMM_ORG + name
    if name not in DEFAULT_TAGS:
        raise ValueError(
            f"no default pretrained weights are known for {name!r}; name them with a tag as timm does, e.g. "
            f"create_model('{name}.augreg_in21k_ft_in1k', pretrained=True), or load_pretrained('timm/{name}.TAG')"
        )
    return f"{TIMM_ORG}{name}.{DEFAULT_TAGS[name]}"


def hub_library() -> Any:
    """``huggingface_hub``, or a one-line ModuleNotFoundError naming the extra that installs it."""
    try:
        return importlib.import_module("huggingface_hub")
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            "hub names (hf-hub:..., timm/...) need huggingface_hub, which is not installed: pip install 'vitkit[hub]'",
            name="huggingface_hub",
        ) from None


def cache_dir() -> Path:
    """The hub cache in use: ``$HF_HUB_CACHE`` read now (tests and users may set it after import), else the
    library's default."""
    return Path(os.environ.get("HF_HUB_CACHE") or hub_library().constants.HF_HUB_CACHE)


def offline() -> bool:
    flag = os.environ.get("HF_HUB_OFFLINE")
    if flag is not None:
        return flag.strip().upper() in ("1", "ON", "YES", "TRUE")
    return bool(hub_library().constants.HF_HUB_OFFLINE)


def cache_path(repo: str, filename: str, revision: str | None = None) -> Path:
    """Where ``filename`` of ``repo`` lies (or would lie) in the cache: ``models--ORG--NAME/snapshots/COMMIT/``."""
    hub_library()
    from huggingface_hub.file_download import repo_folder_name

    folder = cache_dir() / repo_folder_name(repo_id=repo, repo_type="model")
    ref = folder / "refs" / (revision or "main")
    commit = ref.read_text().strip() if ref.is_file() else (revision or "<commit>")
    return folder / "snapshots" / commit / filename


class _Missing(Exception):
    """A file the hub does not have (as opposed to one we could not get)."""


def _fetch(repo: str, filename: str, revision: str | None) -> Path:
    """One file through the cache; _Missing when the repository has no such file, CheckpointError when it
    could not be had (offline and not cached, no network, no such repository)."""
    hub = hub_library()
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        path = hub.hf_hub_download(
            repo,
            filename,
            revision=revision,
            cache_dir=cache_dir(),
            local_files_only=offline(),
            endpoint=os.environ.get("HF_ENDPOINT") or None,  # read now, like the cache and offline settings
        )
        return Path(path)
    except LocalEntryNotFoundError:
        why = "offline (HF_HUB_OFFLINE=1)" if offline() else "the hub could not be reached"
        raise CheckpointError(
            f"{repo}: {filename} is not in the Hugging Face cache and {why}; it would go to "
            f"{cache_path(repo, filename, revision)} (download it there, or go online once)"
        ) from None
    except EntryNotFoundError:  # the hub answered: no such file
        raise _Missing(filename) from None
    except RevisionNotFoundError:
        raise CheckpointError(f"{repo}: no revision {revision!r} on the Hugging Face hub") from None
    except RepositoryNotFoundError:
        raise CheckpointError(
            f"{repo}: no such repository on the Hugging Face hub, or it is private or gated (log in with `hf auth "
            "login` if you have access)"
        ) from None
    except HfHubHTTPError as err:
        raise CheckpointError(f"{repo}: the hub refused {filename} ({str(err).splitlines()[0]})") from None


def _cached(repo: str, filename: str, revision: str | None) -> bool:
    return cache_path(repo, filename, revision).is_file()


def download(name: str) -> Path:
    """The cache folder holding a hub name's ``config.json`` and weights (fetched first when needed)."""
    repo, revision = parse_hub_name(name)
    try:
        config = _fetch(repo, "config.json", revision)
    except _Missing:
        raise CheckpointError(f"{repo}: the repository has no config.json, so vitkit cannot tell its model") from None
    candidates = list(WEIGHT_FILES)
    if offline():  # a cached pytorch_model.bin serves when model.safetensors was never downloaded
        candidates = [f for f in WEIGHT_FILES if _cached(repo, f, revision)] or candidates
    for filename in candidates:
        try:
            _fetch(repo, filename, revision)
            break
        except _Missing:
            continue
    else:
        raise CheckpointError(f"{repo}: the repository has none of {list(WEIGHT_FILES)}")
    for filename in OPTIONAL_FILES:
        try:
            _fetch(repo, filename, revision)
        except (_Missing, CheckpointError):  # optional: defaults apply without it
            pass
    return config.parent
