"""mmsegmentation release files -> vitkit segmentors, without executing anything in them.

A release file (ViT-Adapter's ``upernet_*_adapter_*_ade20k.pth`` and mmseg's own) is ``torch.save`` of::

    {"meta": {"config": <the whole mmseg config as Python source>, "CLASSES": (...), "PALETTE": [[r, g, b], ...]},
     "state_dict": {"backbone.*": ..., "decode_head.*": ..., "auxiliary_head.*": ...}}

The config text is read with :func:`read_config`: the source is parsed (``ast``) and only literals, names bound by
earlier assignments, ``dict(...)`` calls and ``+``/``*`` on them are evaluated, so no code from the file runs.
What vitkit needs from it: the backbone's arguments, the heads' settings, the input normalisation and the crop.
Head tensors keep their names (vitkit's heads use mmseg's); the backbone's are renamed by its own converter.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from typing import Any

import torch

from vitkit.config.base import ModelConfig
from vitkit.config.segmentor import SegmentorConfig
from vitkit.weights.errors import CheckpointError
from vitkit.weights.vit_adapter import config_from_mmseg, from_original

_BINARY = {ast.Add: operator.add, ast.Mult: operator.mul, ast.Sub: operator.sub, ast.Div: operator.truediv}


class _Unreadable:
    """A value the safe reader does not evaluate (a call or an expression beyond literals); kept as its source."""

    def __init__(self, source: str) -> None:
        self.source = source

    def __repr__(self) -> str:
        return f"<not evaluated: {self.source}>"


def read_config(text: str, source: str = "mmseg config") -> dict[str, Any]:
    """The top-level names of an mmseg/mmcv config given as Python source, evaluated safely (see the module
    docstring). Values beyond literals, ``dict(...)``, names and arithmetic on them become :class:`_Unreadable`."""
    try:
        tree = ast.parse(text)
    except SyntaxError as err:
        raise CheckpointError(f"{source}: meta['config'] is not valid Python ({err.msg}, line {err.lineno})") from None
    names: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            names[node.targets[0].id] = _value(node.value, names, text)
    return names


def _value(node: ast.AST, names: Mapping[str, Any], text: str) -> Any:
    read: Callable[[ast.AST], Any] = lambda n: _value(n, names, text)  # noqa: E731
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [read(e) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Dict):
        return {read(k): read(v) for k, v in zip(node.keys, node.values) if k is not None}
    if isinstance(node, ast.Name):
        if node.id in names:
            return names[node.id]
        return {"True": True, "False": False, "None": None}.get(node.id, _Unreadable(node.id))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
        return {kw.arg: read(kw.value) for kw in node.keywords if kw.arg is not None}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        value = read(node.operand)
        return -value if isinstance(value, (int, float)) else _Unreadable(ast.get_source_segment(text, node) or "")
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = read(node.left), read(node.right)
        try:
            return _BINARY[type(node.op)](left, right)
        except TypeError:
            pass
    return _Unreadable(ast.get_source_segment(text, node) or type(node).__name__)


def _model(names: Mapping[str, Any], source: str) -> dict[str, Any]:
    model = names.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("backbone"), dict):
        raise CheckpointError(f"{source}: meta['config'] has no model=dict(backbone=dict(...)); not an mmseg config")
    return model


def backbone_type(text: str) -> str | None:
    """The ``model.backbone.type`` of a config text, or None when the text is not an mmseg model config."""
    try:
        return _model(read_config(text), "config").get("backbone", {}).get("type")
    except CheckpointError:
        return None


def _normalisation(names: Mapping[str, Any]) -> dict[str, Any]:
    """mean/std (0-255 in mmseg) as 0-1 fractions, from ``img_norm_cfg`` (mmseg 0.x) or the data preprocessor."""
    norm = names.get("img_norm_cfg") or (names.get("model") or {}).get("data_preprocessor") or {}
    if not isinstance(norm, dict) or "mean" not in norm:
        return {}
    return {"mean": tuple(float(v) / 255 for v in norm["mean"]), "std": tuple(float(v) / 255 for v in norm["std"])}


def _crop(names: Mapping[str, Any]) -> tuple[int, int] | None:
    crop = names.get("crop_size") or ((names.get("model") or {}).get("test_cfg") or {}).get("crop_size")
    return (int(crop[0]), int(crop[1])) if isinstance(crop, (list, tuple)) and len(crop) == 2 else None


def _head_fields(model: Mapping[str, Any], source: str) -> dict[str, Any]:
    decode, aux = model.get("decode_head") or {}, model.get("auxiliary_head")
    if decode.get("type") != "UPerHead":
        raise CheckpointError(f"{source}: decode head {decode.get('type')!r}; vitkit reads UPerHead release files")
    fields: dict[str, Any] = dict(
        head="upernet", channels=int(decode["channels"]), pool_scales=tuple(decode.get("pool_scales", (1, 2, 3, 6))),
        dropout=float(decode.get("dropout_ratio", 0.1)), num_classes=int(decode["num_classes"]),
        ignore_index=int(decode.get("ignore_index", 255)),
    )  # fmt: skip
    if decode.get("align_corners"):
        raise CheckpointError(
            f"{source}: align_corners=True heads are not supported (vitkit resizes as mmseg's ADE20K)"
        )
    if isinstance(aux, list):
        raise CheckpointError(f"{source}: several auxiliary heads; vitkit supports one FCNHead")
    if isinstance(aux, dict):
        if aux.get("type") != "FCNHead":
            raise CheckpointError(f"{source}: auxiliary head {aux.get('type')!r}; vitkit supports FCNHead")
        weight = (aux.get("loss_decode") or {}).get("loss_weight", 0.4)
        fields.update(aux_head=True, aux_index=int(aux.get("in_index", 2)), aux_channels=int(aux["channels"]),
                      aux_num_convs=int(aux.get("num_convs", 2)), aux_concat_input=bool(aux.get("concat_input", True)),
                      aux_weight=float(weight))  # fmt: skip
    else:
        fields["aux_head"] = False
    return fields


def _backbone(model: Mapping[str, Any], crop: tuple[int, int] | None, norm: dict[str, Any], source: str):
    args = dict(model["backbone"])
    kind = args.get("type")
    if kind != "ViTAdapter":
        raise CheckpointError(
            f"{source}: backbone {kind!r}; vitkit reads ViT-Adapter release files (type='ViTAdapter')"
        )
    size = crop or (int(args.get("img_size", 512)),) * 2
    return config_from_mmseg(args, img_size=size, **norm), from_original


def convert_mmseg(
    tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any], base: ModelConfig | None = None, source: str = ""
) -> tuple[dict[str, torch.Tensor], SegmentorConfig]:
    """A release file's state dict and meta -> (vitkit segmentor state dict, config). Pure: builds no model.

    The architecture comes from ``meta['config']``; without one, ``base`` (a named vitkit segmentor, the
    ``model=`` argument of ``load_pretrained``) supplies it, and without either the error says so.
    """
    text = meta.get("config")
    if not isinstance(text, str):
        if base is None:
            raise CheckpointError(
                f"{source}: the file has no meta['config'] to build the model from; name the model it holds with "
                "load_pretrained(PATH, model='upernet_vit_adapter_tiny_patch16') (see `vitkit models 'upernet*'`)"
            )
        cfg, rename = base, from_original
    else:
        names = read_config(text, source)
        model = _model(names, source)
        backbone, rename = _backbone(model, _crop(names), _normalisation(names), source)
        cfg = SegmentorConfig(backbone=backbone, **_head_fields(model, source))
    classes = [str(c) for c in meta.get("CLASSES") or ()]
    palette = [[int(v) for v in rgb] for rgb in meta.get("PALETTE") or ()]
    extra = {**({"classes": classes} if classes else {}), **({"palette": palette} if palette else {})}
    if extra:
        cfg = cfg.replace(extra={**cfg.extra, **extra})
    state = {"backbone." + k: v for k, v in rename(tensors).items()}
    state.update({k: v for k, v in tensors.items() if k.startswith(("decode_head.", "auxiliary_head."))})
    leftover = sorted(k for k in tensors if not k.startswith(("backbone.", "decode_head.", "auxiliary_head.")))
    if leftover:
        raise CheckpointError(f"{source}: tensors outside backbone and heads: {leftover[:5]}; not an mmseg segmentor")
    return state, cfg
