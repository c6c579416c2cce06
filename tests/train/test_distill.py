"""DeiT distillation (hard / soft) as an objective: the losses against a hand computation, the teacher frozen and
in eval mode, each head's gradient from its own term, Mixup reaching teacher and student alike, teacher identity,
and the bad inputs that must stop a run before it starts."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
import torch
from torch import nn

import vitkit
from vitkit.config import ViTConfig
from vitkit.models.vit import VisionTransformer
from vitkit.train.objectives import Distillation, build_objective
from vitkit.train.objectives.distill import hard_distillation_loss, soft_distillation_loss

STUDENT = ViTConfig(img_size=8, patch_size=4, embed_dim=16, depth=1, num_heads=2, mlp_dim=32, num_classes=3)
S = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.3, 0.2]])
T = torch.tensor([[0.0, 3.0, 1.0], [1.5, -0.5, 0.0]])


def _teacher(classes: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, classes))


def _log_softmax(z):
    z = np.asarray(z, dtype=np.float64)
    return z - np.log(np.exp(z).sum())


def test_hard_loss_by_hand():
    # teacher decisions: class 1, class 0 -> CE = mean(-log softmax(S_i)[y_t])
    expected = -(_log_softmax([2.0, 0.5, -1.0])[1] + _log_softmax([0.1, 0.3, 0.2])[0]) / 2
    assert hard_distillation_loss(S, T).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("tau", [1.0, 3.0])
def test_soft_loss_by_hand(tau):
    total = 0.0
    for s, t in zip(S.tolist(), T.tolist()):
        ls, lt = _log_softmax(np.array(s) / tau), _log_softmax(np.array(t) / tau)
        total += float((np.exp(lt) * (lt - ls)).sum())  # KL(p_t || p_s)
    expected = tau * tau * total / 2  # averaged over the batch
    assert soft_distillation_loss(S, T, tau).item() == pytest.approx(expected, rel=1e-6)


def test_objective_combines_half_and_half_with_labels():
    teacher = _teacher()
    obj = Distillation(teacher=teacher, type="hard")  # DeiT's defaults: alpha 0.5
    torch.manual_seed(1)
    student = VisionTransformer(STUDENT)
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 1])
    loss, logs = obj.loss(student, (x, y))
    with torch.no_grad():
        z_s, z_t = student(x), teacher(x)
    ce = -np.mean([_log_softmax(z_s[i].numpy())[y[i]] for i in range(4)])
    kd = -np.mean([_log_softmax(z_s[i].numpy())[int(z_t[i].argmax())] for i in range(4)])
    assert loss.item() == pytest.approx(0.5 * ce + 0.5 * kd, rel=1e-5)
    assert set(logs) == {"label_loss", "distill_loss"}


def test_teacher_is_frozen_in_eval_and_gets_no_gradient():
    teacher = _teacher().train()
    obj = Distillation(teacher=teacher, type="soft", tau=2.0)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    student = VisionTransformer(STUDENT)
    obj.setup(student, torch.device("cpu"))
    teacher.train()  # e.g. a caller switching a whole module tree to training mode
    loss, _ = obj.loss(student, (torch.randn(2, 3, 8, 8), torch.tensor([0, 2])))
    loss.backward()
    assert not teacher.training
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is not None for p in student.parameters() if p.requires_grad)


@pytest.mark.parametrize("kind", ["hard", "soft"])
def test_each_head_learns_from_its_own_term(kind):
    """A distilled student: the class token's output and head learn only from the labels, the distillation token's
    output and head only from the teacher. (The tokens' input embeddings see both terms through attention.)"""
    torch.manual_seed(2)
    student, teacher = VisionTransformer(STUDENT.replace(distilled=True)), _teacher()
    tokens: dict[str, torch.Tensor] = {}

    def keep(module, inputs, out):  # the final token states (B, 2 + N, D), with their gradient kept
        if out.requires_grad:
            out.retain_grad()
            tokens["z"] = out

    student.norm.register_forward_hook(keep)
    obj = Distillation(teacher=teacher, type=kind, alpha=0.3, tau=2.0)
    obj.setup(student, torch.device("cpu"))
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 1])
    obj.loss(student, (x, y))[0].backward()
    got = {n: p.grad.clone() for n, p in student.named_parameters() if n.startswith(("head.", "head_dist."))}
    got_tokens = tokens["z"].grad[:, :2].clone()  # [class], [dist]

    student.zero_grad()
    z_cls, z_dist = student(x, distillation=True)
    z_t = teacher(x).detach()
    kd = hard_distillation_loss(z_dist, z_t) if kind == "hard" else soft_distillation_loss(z_dist, z_t, 2.0)
    (0.3 * kd).backward()
    torch.testing.assert_close(got["head_dist.weight"], student.head_dist.weight.grad)
    torch.testing.assert_close(got_tokens[:, 1], tokens["z"].grad[:, 1])
    assert student.head.weight.grad is None and tokens["z"].grad[:, 0].abs().max() == 0

    student.zero_grad()
    z_cls, _ = student(x, distillation=True)
    (0.7 * nn.functional.cross_entropy(z_cls, y)).backward()
    torch.testing.assert_close(got["head.weight"], student.head.weight.grad)
    torch.testing.assert_close(got_tokens[:, 0], tokens["z"].grad[:, 0])
    assert tokens["z"].grad[:, 1].abs().max() == 0
    student.eval()  # inference: the two heads' average
    with torch.no_grad():
        feats = student.forward_features(x)
        torch.testing.assert_close(student(x), (student.head(feats[:, 0]) + student.head_dist(feats[:, 1])) / 2)


def test_mixup_batch_reaches_teacher_and_student_identically():
    from vitkit.data.mix import mix_batch

    seen: dict[str, torch.Tensor] = {}
    teacher, student = _teacher(), VisionTransformer(STUDENT)
    teacher.register_forward_hook(lambda m, inp, out: seen.__setitem__("teacher", inp[0].clone()))
    student.register_forward_hook(lambda m, inp, out: seen.__setitem__("student", inp[0].clone()))
    obj = Distillation(teacher=teacher)
    torch.manual_seed(3)
    x, y, lam = mix_batch(torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 1]), 3, mixup_alpha=0.8)
    assert y.ndim == 2 and lam < 1.0  # soft, mixed targets
    obj.loss(student, (x, y))
    assert torch.equal(seen["teacher"], x) and torch.equal(seen["student"], x)


def test_teacher_identity_is_recorded_and_another_teacher_refused(tmp_path):
    teacher = vitkit.create_model("resnet_cifar20", img_size=8, num_classes=3)
    path = vitkit.save_pretrained(teacher, tmp_path / "teacher.safetensors")
    obj = Distillation(teacher=str(path))
    assert obj.teacher_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert build_objective(obj.options()).teacher_sha256 == obj.teacher_sha256  # the recipe rebuilds it
    other = vitkit.create_model("resnet_cifar20", img_size=8, num_classes=3)
    with torch.no_grad():
        other.head.fc.bias.fill_(1.0)
    other_path = vitkit.save_pretrained(other, tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="resume with the original teacher"):
        Distillation(teacher=str(other_path)).load_state_dict(obj.state_dict())
    with pytest.raises(ValueError, match="resume with the original teacher"):
        Distillation(teacher=str(other_path), teacher_sha256=obj.teacher_sha256)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"alpha": 1.5}, r"alpha must lie in \[0, 1\]"),
        ({"alpha": -0.1}, r"alpha must lie in \[0, 1\]"),
        ({"tau": 0.0}, "tau must be > 0"),
        ({"type": "medium"}, "type must be one of"),
        ({"teacher": "no/such/teacher.safetensors"}, "cannot load 'no/such/teacher.safetensors'"),
        ({"teacher": "resnet_cifar20"}, "model name without weights; add distill.teacher_checkpoint"),
        ({"teacher": None}, "needs a teacher"),
        ({"cache_mb": -1}, "cache_mb must be >= 0"),
    ],
)
def test_bad_options_stop_with_one_line(kwargs, match):
    """Option errors stop at the recipe; an unloadable teacher at setup, which the engine runs before training."""
    options = {"teacher": _teacher(), **kwargs}
    with pytest.raises(ValueError, match=match) as info:
        Distillation(**options).setup(VisionTransformer(STUDENT), torch.device("cpu"))
    assert "\n" not in str(info.value)


def test_teacher_that_does_not_fit_the_data_is_refused():
    student = VisionTransformer(STUDENT)
    with pytest.raises(ValueError, match="teacher predicts 5 classes but the data has 3"):
        Distillation(teacher=_teacher(classes=5)).setup(student, torch.device("cpu"))
    big = vitkit.create_model("resnet_cifar20", num_classes=3)  # trained for 32 px, the student sees 8 px
    with pytest.raises(ValueError, match="teacher expects 32x32 images but the data gives 8x8"):
        Distillation(teacher=big).setup(student, torch.device("cpu"))


def test_none_trains_both_heads_on_labels_without_a_teacher():
    torch.manual_seed(4)
    student = VisionTransformer(STUDENT.replace(distilled=True))
    obj = Distillation(type="none")
    obj.setup(student, torch.device("cpu"))
    x, y = torch.randn(2, 3, 8, 8), torch.tensor([0, 2])
    loss, _ = obj.loss(student, (x, y))
    z_cls, z_dist = student(x, distillation=True)
    expected = (nn.functional.cross_entropy(z_cls, y) + nn.functional.cross_entropy(z_dist, y)) / 2
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert math.isfinite(loss.item())


def test_teacher_runs_under_the_callers_precision():
    """The engine calls loss() inside its autocast; the teacher's forward inherits it (bf16 runs: bf16 teacher)."""
    obj = Distillation(teacher=_teacher())
    x = torch.randn(2, 3, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert obj.teacher_logits(x).dtype == torch.bfloat16
    assert obj.teacher_logits(x).dtype == torch.float32
