"""The engine's parts, each against hand-derived values: schedules, weight-decay groups, layer-wise decay, the
resumable sampler, the time budget, the EMA and checkpoint files."""

from __future__ import annotations

import math
import pickle
import random

import numpy as np
import pytest
import torch

from helpers import tiny_config
from vitkit import VisionTransformer
from vitkit.train.budget import evaluations_until, steps_within_budget
from vitkit.train.ema import ModelEma
from vitkit.train.optim import build_optimizer, param_groups
from vitkit.train.recipe import OptimConfig, ScheduleConfig
from vitkit.train.sampler import ResumableSampler
from vitkit.train.schedule import LRSchedule
from vitkit.train.state import atomic_save, capture_rng, restore_rng


# ------------------------------------------------------------------------------------------------ schedules
def test_warmup_is_linear_and_reaches_base_lr():
    s = LRSchedule(1.0, total_steps=100, warmup_steps=10, decay="cosine", warmup_start_factor=0.0)
    assert [s(i) for i in range(10)] == pytest.approx([(i + 1) / 10 for i in range(10)])
    s = LRSchedule(2.0, total_steps=100, warmup_steps=4, warmup_start_factor=0.5)
    assert [s(i) for i in range(4)] == pytest.approx([1.25, 1.5, 1.75, 2.0])


@pytest.mark.parametrize("decay", ["cosine", "linear", "constant"])
def test_decay_shapes(decay):
    base, low, warm, total = 0.1, 0.01, 10, 111
    s = LRSchedule(base, total, warm, decay, min_lr=low)
    after = [s(i) for i in range(warm, total)]
    span = total - 1 - warm  # 100 steps from the peak to the last step
    if decay == "constant":
        assert after == pytest.approx([base] * len(after))
        return
    assert after[0] == pytest.approx(base) and after[-1] == pytest.approx(low)
    assert all(a >= b for a, b in zip(after, after[1:]))  # never increases
    quarter = s(warm + span // 4)
    if decay == "cosine":  # 0.5 * (1 + cos(pi / 4)) of the way from low to base
        assert quarter == pytest.approx(low + (base - low) * 0.5 * (1 + math.cos(math.pi / 4)))
        assert s(warm + span // 2) == pytest.approx((base + low) / 2)
    else:
        assert quarter == pytest.approx(low + (base - low) * 0.75)
    assert s(total + 50) == pytest.approx(low)  # past the end it stays at the floor


def test_schedule_rejects_impossible_warmup_and_sets_groups_with_scale():
    with pytest.raises(ValueError, match="warm-up"):
        LRSchedule(1.0, total_steps=5, warmup_steps=6)
    opt = torch.optim.SGD([{"params": [torch.zeros(1)], "lr_scale": 0.5}, {"params": [torch.zeros(1)]}], lr=1.0)
    LRSchedule(1.0, 10, decay="constant").apply(opt, 3)
    assert [g["lr"] for g in opt.param_groups] == [0.5, 1.0]


def test_fractional_warmup_follows_the_budgeted_length():
    s = LRSchedule.from_config(ScheduleConfig(warmup_fraction=0.1), 1.0, total_steps=200, steps_per_epoch=10)
    assert s.warmup_steps == 20
    short = s.resized(50)
    assert (short.total_steps, short.warmup_steps) == (50, 5) and short(4) == pytest.approx(1.0)
    fixed = LRSchedule.from_config(ScheduleConfig(warmup_epochs=3), 1.0, 200, 10)
    assert fixed.warmup_steps == 30 and fixed.resized(20).warmup_steps == 20  # capped at the new length
    again = LRSchedule.from_state_dict(short.state_dict())
    assert again.resized(100).warmup_steps == 10
    with pytest.raises(ValueError, match="not"):
        LRSchedule.from_config(ScheduleConfig(warmup_steps=3, warmup_epochs=1.0), 1.0, 200, 10)


# -------------------------------------------------------------------------------------------- weight decay
def test_weight_decay_skips_norms_biases_tokens_and_position_embeddings():
    model = VisionTransformer(tiny_config())
    groups = param_groups(model, weight_decay=0.1)
    decayed = {n for g in groups if g["weight_decay"] > 0 for n in g["names"]}
    skipped = {n for g in groups if g["weight_decay"] == 0 for n in g["names"]}
    names = {n for n, _ in model.named_parameters()}
    assert decayed | skipped == names and not decayed & skipped
    # Expected split written out from the parameter names alone.
    no_decay = {n for n in names if n.endswith(".bias") or "norm" in n or n in ("cls_token", "pos_embed")}
    assert skipped == no_decay
    assert "blocks.0.attn.qkv.weight" in decayed and "patch_embed.proj.weight" in decayed


def test_adamw_decays_only_the_decay_group():
    model = VisionTransformer(tiny_config())
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = build_optimizer(model, OptimConfig(name="adamw", lr=0.1, weight_decay=0.5))
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # no gradient: only decoupled decay can move a weight
    opt.step()
    for name, p in model.named_parameters():
        factor = 1 - 0.1 * 0.5 if p.ndim > 1 else 1.0
        if name in ("cls_token", "pos_embed"):
            factor = 1.0
        torch.testing.assert_close(p.detach(), before[name] * factor, msg=name)


def test_layer_decay_scales_by_depth():
    model = VisionTransformer(tiny_config(depth=3))
    scales = {n: g["lr_scale"] for g in param_groups(model, 0.05, layer_decay=0.5) for n in g["names"]}
    assert scales["patch_embed.proj.weight"] == scales["cls_token"] == pytest.approx(0.5**4)
    assert scales["blocks.0.mlp.fc1.weight"] == pytest.approx(0.5**3)
    assert scales["blocks.2.norm1.bias"] == pytest.approx(0.5**1)
    assert scales["head.weight"] == scales["norm.weight"] == 1.0
    opt = build_optimizer(model, OptimConfig(lr=2.0, layer_decay=0.5))
    assert sorted({g["lr"] for g in opt.param_groups}) == pytest.approx([2.0 * 0.5**k for k in (4, 3, 2, 1, 0)])


# --------------------------------------------------------------------------------------------------- sampler
def test_sampler_ranks_together_cover_the_single_process_batches():
    n, batch, world = 37, 4, 2
    single = list(ResumableSampler(n, seed=3, world_size=1, pad=True))
    ranks = [list(ResumableSampler(n, seed=3, rank=r, world_size=world)) for r in range(world)]
    assert len(ranks[0]) == len(ranks[1]) == 19  # padded to an equal share
    for j in range(len(ranks[0]) // batch):
        together = sorted(ranks[0][j * batch : (j + 1) * batch] + ranks[1][j * batch : (j + 1) * batch])
        assert together == sorted(single[j * batch * world : (j + 1) * batch * world])


def test_sampler_resumes_mid_epoch_and_reshuffles_per_epoch():
    s = ResumableSampler(50, seed=1)
    s.set_epoch(2)
    full = list(s)
    assert sorted(full) == list(range(50))
    s.set_epoch(2, start=17)
    assert list(s) == full[17:] and len(s) == 33
    s.set_epoch(3)
    assert list(s) != full
    assert list(ResumableSampler(50, seed=1, shuffle=False)) == list(range(50))


# ---------------------------------------------------------------------------------------------------- budget
def test_budget_counts_evaluations_and_fits_the_time():
    # 10 steps per epoch, eval every epoch: stopping at 25 steps means evals after 10, 20 and 25.
    assert evaluations_until(25, 0, 10, 1) == 3
    assert evaluations_until(25, 12, 10, 1) == 2
    assert evaluations_until(40, 0, 10, 2) == 2  # epochs 2 and 4
    # 1 s per step, 5 s per eval, 100 s left: 10 + 5 + 10 + 5 + ... -> 60 steps cost 60 + 6 * 5 = 90,
    # 66 steps cost 66 + 7 * 5 = 101 (too much), 65 steps cost 65 + 7 * 5 = 100 (fits exactly).
    assert steps_within_budget(100.0, 1.0, 5.0, 0, 1000, 10) == 65
    assert steps_within_budget(1e9, 1.0, 5.0, 0, 300, 10) == 300  # capped by the recipe's length
    assert steps_within_budget(0.0, 1.0, 5.0, 7, 300, 10) == 8  # always finishes the current step
    # 2 s more per epoch end: 50 steps cost 50 + 5 * 5 + 5 * 2 = 85, 60 steps 60 + 6 * 7 = 102 > 100,
    # 58 steps 58 + 6 * 7 = 100 (fits exactly).
    assert steps_within_budget(100.0, 1.0, 5.0, 0, 1000, 10, seconds_per_epoch_end=2.0) == 58


def test_budget_opens_no_last_epoch_it_cannot_take_a_quarter_of():
    # 40 steps per epoch: 85 steps would fit (85 + 3 evals * 5 = 100 s), but epoch 3 would get 5 of its 40 steps
    # (under a quarter) and pay a whole evaluation for them; the run stops at the end of epoch 2 instead.
    assert steps_within_budget(100.0, 1.0, 5.0, 0, 1000, 40) == 80
    assert steps_within_budget(110.0, 1.0, 5.0, 0, 1000, 40) == 95  # 95 + 15 = 110: epoch 3 gets 15 steps, kept
    assert steps_within_budget(18.0, 1.0, 5.0, 82, 1000, 40) == 95  # already inside epoch 3: it is finished as fits
    assert steps_within_budget(1e9, 1.0, 5.0, 0, 85, 40) == 85  # the recipe's own length is never cut


# ------------------------------------------------------------------------------------------------------ EMA
def test_ema_follows_the_update_rule():
    model = torch.nn.Linear(3, 2)
    ema = ModelEma(model, decay=0.9, warmup=False)
    expected = model.weight.detach().clone()
    for _ in range(3):
        with torch.no_grad():
            model.weight.add_(1.0)
        ema.update(model)
        expected = 0.9 * expected + 0.1 * model.weight.detach()
    torch.testing.assert_close(ema.module.weight, expected)
    warm = ModelEma(model, decay=0.999, warmup=True)
    assert warm.current_decay() == pytest.approx(1 / 10)


# ----------------------------------------------------------------------------------------------- checkpoint
def test_atomic_save_keeps_the_previous_file_when_writing_fails(tmp_path):
    path = tmp_path / "last.pt"
    atomic_save({"step": torch.tensor(1)}, path)
    with pytest.raises((AttributeError, TypeError, pickle.PicklingError)):
        atomic_save({"step": torch.tensor(2), "bad": lambda: None}, path)  # a lambda cannot be pickled
    assert torch.load(path, weights_only=True)["step"].item() == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left behind


def test_rng_state_round_trips_through_a_safe_checkpoint(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    atomic_save({"rng": capture_rng()}, tmp_path / "rng.pt")
    draws = (random.random(), np.random.rand(), torch.rand(2))
    state = torch.load(tmp_path / "rng.pt", weights_only=True)["rng"]
    restore_rng(state)
    again = (random.random(), np.random.rand(), torch.rand(2))
    assert draws[:2] == again[:2]
    torch.testing.assert_close(draws[2], again[2])


def test_soft_target_loss_matches_torch_label_smoothing():
    from vitkit.data import smooth_one_hot
    from vitkit.train.loop import soft_cross_entropy

    logits, labels = torch.randn(6, 5), torch.tensor([0, 1, 2, 3, 4, 0])
    smoothed = soft_cross_entropy(logits, smooth_one_hot(labels, 5, 0.1))
    torch.testing.assert_close(smoothed, torch.nn.functional.cross_entropy(logits, labels, label_smoothing=0.1))
    torch.testing.assert_close(soft_cross_entropy(logits, labels), torch.nn.functional.cross_entropy(logits, labels))
