"""Knowledge distillation as in DeiT (Touvron et al. 2021, Sec. 4): a frozen teacher supervises the student.

With ``Z_s`` / ``Z_t`` the student's / teacher's logits, ``psi`` the softmax and ``y`` the (possibly mixed) labels:

    soft:  L = (1 - alpha) CE(psi(Z_s), y) + alpha tau^2 KL(psi(Z_t / tau) || psi(Z_s / tau))       (DeiT Eq. 2)
    hard:  L = (1 - alpha) CE(psi(Z_s), y) + alpha CE(psi(Z_s), y_t),  y_t = argmax_c Z_t(c)        (DeiT Eq. 3)

DeiT's default is hard distillation with alpha = 1/2 ("half and half") and tau = 1 for soft. A student with a
distillation token (``deit_*_distilled``) trains its class head on the labels and its distillation head on the
teacher (the first term through ``Z_s = Z_cls``, the second through ``Z_s = Z_dist``); at inference the two heads
are averaged. A student without one distils through its class head (the paper's "usual distillation").
``type: none`` trains on the labels only (both heads, for a distilled student).

The KL term is averaged over the batch (``batchmean``), as in the equation; DeiT's code divides the summed KL by
B x K instead, which scales the soft term down by the number of classes.

The teacher is frozen, kept in eval mode, runs without gradients on the very same augmented batch as the student
(Mixup/CutMix included, since ``loss`` receives the batch after augmentation) and under the run's autocast. Its
identity (where it came from and a SHA-256 of its weights file, or of its tensors for an in-memory module) is
part of the objective's options, which the run writes into its recipe and checkpoints; resuming with another
teacher is refused.

``cache_mb`` > 0 memoises the teacher's logits per distinct input image (``teacher_cache``): exact, and where
the augmentation repeats inputs (flips only) it runs the teacher on about two epochs' worth of images in all.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from vitkit.train.objectives.base import Batch, register_objective
from vitkit.train.objectives.classification import Classification, soft_cross_entropy
from vitkit.train.objectives.teacher_cache import TeacherCache

TYPES = ("hard", "soft", "none")
TRAIN_TEACHER = "train one with `vitkit train --config recipes/cifar10_teacher.yaml`"


def hard_distillation_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """CE between the student's logits (B, K) and the teacher's decisions argmax Z_t (DeiT Eq. 3, second term)."""
    return F.cross_entropy(student, teacher.argmax(dim=-1))


def soft_distillation_loss(student: torch.Tensor, teacher: torch.Tensor, tau: float) -> torch.Tensor:
    """tau^2 KL(softmax(Z_t / tau) || softmax(Z_s / tau)), averaged over the batch (DeiT Eq. 2, second term)."""
    log_p_s = F.log_softmax(student / tau, dim=-1)
    log_p_t = F.log_softmax(teacher / tau, dim=-1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * tau * tau


def file_sha256(path: Path) -> str:
    """SHA-256 of a weights file, or of a folder's files in name order."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        with open(file, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def module_sha256(module: nn.Module) -> str:
    """SHA-256 of a module's state dict (names, shapes, dtypes, values): its identity when it has no file."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def load_teacher(teacher: str, checkpoint: str | None = None) -> tuple[nn.Module, str, str]:
    """(teacher model, where it came from, SHA-256) from a checkpoint path, or a registry name plus checkpoint."""
    from vitkit.registry import MODEL_CONFIGS
    from vitkit.weights.load import load_pretrained

    if checkpoint is None and teacher in MODEL_CONFIGS and not Path(teacher).exists():
        raise ValueError(
            f"distill.teacher {teacher!r} is a model name without weights; add distill.teacher_checkpoint: <path> "
            f"(an untrained teacher teaches nothing), or {TRAIN_TEACHER}"
        )
    path = Path(checkpoint if checkpoint is not None else teacher)
    try:
        model = load_pretrained(path, model=teacher if checkpoint is not None else None)
    except Exception as err:  # any reason it cannot be read: one line naming it and the fix
        reason = str(err).splitlines()[0]
        raise ValueError(
            f"distill.teacher: cannot load {str(path)!r} ({reason}); point it at a checkpoint "
            f"vitkit.load_pretrained reads, or {TRAIN_TEACHER}"
        ) from None
    return model, str(path), file_sha256(path)


@register_objective
@dataclass
class Distillation(Classification):
    """DeiT's objective: labels plus a frozen teacher, hard or soft (module docstring); evaluation as classification.

    ``teacher`` is a checkpoint path, a registry name with ``teacher_checkpoint``, or (from Python) an
    ``nn.Module``. ``teacher_sha256``, when given, must match the teacher's weights; the run records it.
    """

    name: ClassVar[str] = "distillation"

    teacher: Any = None
    teacher_checkpoint: str | None = None
    type: str = "hard"
    alpha: float = 0.5
    tau: float = 1.0
    teacher_sha256: str | None = None
    cache_mb: float = 0.0

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"distill.type must be one of {TYPES}, got {self.type!r}; DeiT's default is hard")
        if not 0.0 <= float(self.alpha) <= 1.0:
            raise ValueError(f"distill.alpha must lie in [0, 1] (the distillation term's weight), got {self.alpha}; "
                             "DeiT uses 0.5")  # fmt: skip
        if float(self.tau) <= 0:
            raise ValueError(f"distill.tau must be > 0 (the soft term's temperature), got {self.tau}; DeiT uses 1.0")
        if self.type != "none" and self.teacher is None:
            raise ValueError(f"distill.type {self.type!r} needs a teacher: set distill.teacher: <checkpoint>, or "
                             f"{TRAIN_TEACHER}")  # fmt: skip
        if float(self.cache_mb) < 0:
            raise ValueError(f"distill.cache_mb must be >= 0 (0: no teacher cache), got {self.cache_mb}")
        self._cache = TeacherCache(int(float(self.cache_mb) * 2**20)) if self.cache_mb and self.type != "none" else None
        self._teacher: nn.Module | None = None
        self._ask_pair = False
        self._source: str | None = None
        if isinstance(self.teacher, nn.Module):
            self._teacher, self._source = self.teacher, f"<{type(self.teacher).__name__} from Python>"
            self.teacher_sha256 = self._checked_hash(module_sha256(self.teacher))
            self._teacher.eval().requires_grad_(False)
        elif self.teacher is not None and self.type != "none":
            # The weights load in setup (before training); a file present now is identified now, so the recipe
            # the run writes records its hash. A missing one is reported by setup, as is any unreadable one.
            path = Path(self.teacher_checkpoint or str(self.teacher))
            self._source = str(path)
            if path.exists():
                self.teacher_sha256 = self._checked_hash(file_sha256(path))

    def _load_teacher(self) -> nn.Module:
        if self._teacher is None:
            model, self._source, digest = load_teacher(str(self.teacher), self.teacher_checkpoint)
            self.teacher_sha256 = self._checked_hash(digest)
            self._teacher = model.eval().requires_grad_(False)
        return self._teacher

    def _checked_hash(self, digest: str) -> str:
        if self.teacher_sha256 not in (None, digest):
            raise ValueError(
                f"distill.teacher {self._source or self.teacher!r} has weights sha256 {digest[:12]}..., but the run "
                f"was started with teacher {self.teacher_sha256[:12]}...; resume with the original teacher or "
                "start a new run (a different teacher changes the objective)"
            )
        return digest

    # ------------------------------------------------------------------------------------------------ engine
    @property
    def teacher_model(self) -> nn.Module | None:
        return self._teacher

    def setup(self, model: nn.Module, device: torch.device) -> None:
        """Move the teacher to ``device`` and check it fits the student's data. A student whose forward takes
        ``distillation`` (a ViT) is asked for its (class logits, distillation logits) pair by :meth:`loss`."""
        cfg = getattr(model, "cfg", None)
        self._ask_pair = "distillation" in inspect.signature(model.forward).parameters
        if self.type == "none":
            return
        self._load_teacher().to(device).eval()
        student_size = tuple(getattr(cfg, "img_size", ()) or ())
        teacher_size = tuple(getattr(getattr(self._teacher, "cfg", None), "img_size", ()) or ())
        if student_size and teacher_size and student_size != teacher_size:
            raise ValueError(
                f"the teacher expects {teacher_size[0]}x{teacher_size[1]} images but the data gives "
                f"{student_size[0]}x{student_size[1]}; use a teacher trained at the student's resolution"
            )
        classes = getattr(cfg, "num_classes", None)
        if student_size and classes:
            with torch.no_grad():
                probe = self._teacher(torch.zeros(1, getattr(cfg, "in_chans", 3), *student_size, device=device))
            if probe.shape[-1] != classes:
                raise ValueError(
                    f"the teacher predicts {probe.shape[-1]} classes but the data has {classes}; use a teacher "
                    "trained on the same classes"
                )

    @torch.no_grad()
    def teacher_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, K) logits of the frozen teacher on the student's very batch, under the caller's autocast."""
        self._load_teacher()
        if self._teacher.training:  # someone called .train() on the whole tree: the teacher stays in eval
            self._teacher.eval()
        if self._cache is not None:
            return self._cache(self._teacher, x)
        return self._teacher(x)

    def loss(self, model: Callable[..., Any], batch: Batch) -> tuple[torch.Tensor, Mapping[str, Any]]:
        x, targets = batch
        if targets is None:
            raise ValueError("distillation needs labels for its first term; this data set yields none")
        out = model(x, distillation=True) if self._ask_pair else model(x)
        cls_logits, dist_logits = out if isinstance(out, tuple) else (out, out)  # (B, K) each
        teacher = self.teacher_logits(x) if self.type != "none" else None
        with torch.autocast(cls_logits.device.type, enabled=False):
            base = soft_cross_entropy(cls_logits.float(), targets)
            if teacher is None:
                if dist_logits is cls_logits:
                    return base, {}
                return (base + soft_cross_entropy(dist_logits.float(), targets)) / 2, {}
            if self.type == "hard":
                kd = hard_distillation_loss(dist_logits.float(), teacher.float())
            else:
                kd = soft_distillation_loss(dist_logits.float(), teacher.float(), float(self.tau))
            loss = (1 - self.alpha) * base + self.alpha * kd
        metrics = {"label_loss": base.detach(), "distill_loss": kd.detach()}
        if self._cache is not None:
            metrics["teacher_cached"] = torch.tensor(self._cache.hit_rate(), device=loss.device)
        return loss, metrics

    # ------------------------------------------------------------------------------------------------ resume
    def state_dict(self) -> dict[str, Any]:
        state = {"teacher": self._source, "teacher_sha256": self.teacher_sha256}
        if self._cache is not None:  # a resumed run then reads the very logits an uninterrupted one would
            state["teacher_cache"] = self._cache.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        saved = state.get("teacher_sha256")
        if saved and self.teacher_sha256 and saved != self.teacher_sha256:
            raise ValueError(
                f"this checkpoint was trained with teacher {state.get('teacher')!r} (sha256 {saved[:12]}...), not "
                f"{self._source!r} (sha256 {self.teacher_sha256[:12]}...); resume with the original teacher or "
                "start a new run"
            )
        if self._cache is not None and state.get("teacher_cache") is not None:
            self._cache.load_state_dict(state["teacher_cache"])

    def options(self) -> dict[str, Any]:
        """The recipe section that rebuilds this objective, with the teacher's recorded identity."""
        opts = super().options()
        if isinstance(self.teacher, nn.Module):
            opts["teacher"] = self._source
        return opts


def distill_section(data: dict[str, Any]) -> dict[str, Any]:
    """A recipe's ``distill:`` section (issue text, DeiT's flags) as the engine's ``objective:`` section."""
    if "distill" not in data:
        return data
    data = dict(data)
    section = data.pop("distill") or {}
    if not isinstance(section, dict):
        raise ValueError(f"distill: expected a mapping such as {{teacher: path, type: hard}}, got {section!r}")
    objective = data.get("objective") or {}
    if objective.get("name", "distillation") != "distillation":
        raise ValueError(
            f"a recipe with distill: trains the distillation objective, but objective.name is {objective['name']!r}; "
            "drop one of the two sections"
        )
    data["objective"] = {**objective, **section, "name": "distillation"}
    return data
