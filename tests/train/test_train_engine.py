"""The engine on a tiny learnable task: it learns, writes its run folder, and each option does what it says
(accumulation, clipping, gradient checkpointing, NaN stop, time budget on an injected clock), checked against
independent runs or hand-derived values."""

from __future__ import annotations

import contextlib
import io
import json

import pytest
import torch
from torch import nn

from train_data import CLASSES, make_image_folder, one_thread, tiny_recipe  # noqa: F401 (one_thread: fixture)
from vitkit.train import NonFiniteLossError, recipe_from_dict, train_model
from vitkit.train.run import align_data, build_datasets, build_model, build_trainer
from vitkit.train.state import load_checkpoint
from vitkit.weights.load import load_pretrained


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("images"))


pytestmark = pytest.mark.usefixtures("one_thread")


def _trainer(data_root, tmp_path, model=None, clock=None, **sections):
    """A Trainer on the tiny data, silent; ``model`` replaces the recipe's network when given."""
    recipe = recipe_from_dict(tiny_recipe(data_root, tmp_path / "runs", **sections))
    data = build_datasets(recipe)
    net = model if model is not None else build_model(recipe, data.info)
    recipe = align_data(recipe, net) if model is None else recipe
    extra = {"clock": clock} if clock is not None else {}
    return build_trainer(recipe, net, tmp_path / "runs" / "t", data=data, **extra)


def _quiet(fn, *args, **kwargs):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


def test_training_learns_and_writes_the_run_folder(data_root, tmp_path):
    recipe = recipe_from_dict(
        tiny_recipe(
            data_root,
            tmp_path / "runs",
            optim={"lr": 1e-2},
            train={"epochs": 16, "precision": "bf16", "ema_decay": 0.9},
        )
    )
    result = _quiet(train_model, recipe)
    epochs = result.history
    assert len(epochs) == 16 and result.global_step == 16 * 12  # 192 images / batch 16 = 12 steps per epoch
    assert epochs[-1]["train_loss"] < 0.5 * epochs[0]["train_loss"]
    assert result.final_eval.top1 >= 0.9  # chance is 0.25
    run = result.run_dir
    for name in ("config.yaml", "metrics.jsonl", "model.safetensors", "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (run / name).is_file(), name
    for name in ("loss.png", "accuracy.png", "lr.png"):
        assert (run / "plots" / name).read_bytes()[:4] == b"\x89PNG"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {r["kind"] for r in rows} == {"step", "epoch"}
    assert all("wall_time" in r and "top1" in r for r in rows if r["kind"] == "epoch")
    # The saved EMA weights, run outside the engine, score what the engine reported.
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["progress"]["global_step"] == 192 and state["classes"] == CLASSES
    model = load_pretrained(run / "checkpoints" / "last.pt")  # EMA weights of the training checkpoint
    eval_set = build_datasets(recipe).eval
    x = (eval_set.images.float() / 255 - 0.5) / 0.5
    with torch.no_grad():
        accuracy = (model(x).argmax(-1) == eval_set.labels).float().mean().item()
    assert accuracy == pytest.approx(result.final_eval.top1, abs=1.5 / len(eval_set))  # bf16 eval vs fp32 here


def _weights_after(data_root, tmp_path, key: str, values: tuple, **train) -> list[dict[str, torch.Tensor]]:
    """Final weights of identically seeded runs that differ only in ``train.<key>``."""
    weights = []
    for value in values:
        torch.manual_seed(0)
        trainer = _trainer(data_root, tmp_path / str(value), train={key: value, **train})
        _quiet(trainer.fit)
        weights.append(trainer.model.state_dict())
    return weights


def test_gradient_accumulation_matches_the_full_batch(data_root, tmp_path):
    full, accumulated = _weights_after(data_root, tmp_path, "accum_steps", (1, 4), max_steps=6)
    for name in full:
        torch.testing.assert_close(accumulated[name], full[name], atol=2e-5, rtol=1e-4, msg=name)


def test_gradient_checkpointing_gives_the_same_training(data_root, tmp_path):
    plain, checkpointed = _weights_after(data_root, tmp_path, "grad_checkpointing", (False, True), max_steps=4)
    assert plain.keys() == checkpointed.keys()  # state-dict names unchanged by the wrapper
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], msg=name)


def test_clipping_bounds_the_global_gradient_norm(data_root, tmp_path):
    # Plain SGD (no momentum, no decay) with lr 1: the first update is -clipped gradient, of global norm 0.01.
    torch.manual_seed(0)
    optim = {"name": "sgd", "lr": 1.0, "momentum": 0.0, "weight_decay": 0.0, "clip_grad_norm": 0.01}
    trainer = _trainer(data_root, tmp_path, optim=optim, schedule={"decay": "constant", "warmup_steps": 0},
                       train={"max_steps": 1})  # fmt: skip
    before = [p.detach().clone() for p in trainer.model.parameters()]
    _quiet(trainer.fit)
    step = torch.cat([(p.detach() - b).flatten() for p, b in zip(trainer.model.parameters(), before)])
    assert step.norm().item() == pytest.approx(0.01, rel=1e-4)


class _ExplodesAt(nn.Module):
    """Wraps a model; from forward call ``at`` on, the logits are NaN (as after a blown-up update)."""

    def __init__(self, inner: nn.Module, at: int) -> None:
        super().__init__()
        self.inner, self.at, self.calls = inner, at, 0

    def forward(self, x):
        self.calls += 1
        out = self.inner(x)
        return out * float("nan") if self.calls >= self.at and self.training else out


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(data_root, tmp_path):
    recipe = recipe_from_dict(tiny_recipe(data_root, tmp_path))
    inner = build_model(recipe, {"classes": CLASSES})
    trainer = _trainer(data_root, tmp_path, model=_ExplodesAt(inner, at=8),
                       train={"checkpoint_every_steps": 3, "log_every_steps": 1})  # fmt: skip
    with pytest.raises(NonFiniteLossError, match=r"loss became nan by step 8.*last good checkpoint is"):
        _quiet(trainer.fit)
    state = load_checkpoint(tmp_path / "runs" / "t" / "checkpoints" / "last.pt")
    assert state["progress"]["global_step"] == 6
    assert all(torch.isfinite(v).all() for v in state["model"].values())


class _StepClock:
    """A fake clock: every optimiser step takes ``seconds_per_step``, everything else no time; ``jump`` seconds
    are added from step ``jump_at`` on (a machine that stalls)."""

    def __init__(self, seconds_per_step: float, jump_at: int | None = None, jump: float = 0.0) -> None:
        self.seconds_per_step, self.jump_at, self.jump, self.trainer = seconds_per_step, jump_at, jump, None

    def __call__(self) -> float:
        step = self.trainer.global_step if self.trainer is not None else 0
        stalled = self.jump if self.jump_at is not None and step >= self.jump_at else 0.0
        return step * self.seconds_per_step + stalled


def test_time_budget_lays_the_schedule_over_the_steps_that_fit(data_root, tmp_path):
    # 200 epochs of 12 steps at 0.125 s a step would take 300 s; the budget is 4 s. Calibration times steps 2-8
    # (0.125 s each; evaluations take no time on this clock); at step 8, 1 s has passed and 0.2 s is kept for
    # the final save, so 2.8 s / 0.125 = 22.4 more steps fit: 30 in all. The epoch-end refits agree (at step 12:
    # 2.3 s left -> 18 more; at step 24: 0.8 s -> 6 more), and the learning rate ends on its floor.
    clock = _StepClock(0.125)
    trainer = _trainer(data_root, tmp_path, optim={"lr": 1e-3}, schedule={"min_lr": 1e-5}, clock=clock,
                       train={"epochs": 200, "max_minutes": 4 / 60, "calibration_steps": 8})  # fmt: skip
    clock.trainer = trainer
    result = _quiet(trainer.fit)
    assert result.total_steps == result.global_step == 30 and not result.stopped_by_budget
    assert trainer.schedule(29) == pytest.approx(1e-5)
    assert result.history[-1]["wall_time"] == pytest.approx(30 * 0.125)


def test_time_budget_stops_a_stalled_run(data_root, tmp_path):
    # The same run, but the machine stalls for 10 s at step 20: the budget is spent, so the run stops there
    # (mid-epoch 2), evaluates and saves, instead of running on to step 30.
    clock = _StepClock(0.125, jump_at=20, jump=10.0)
    trainer = _trainer(data_root, tmp_path, clock=clock,
                       train={"epochs": 200, "max_minutes": 4 / 60, "calibration_steps": 8})  # fmt: skip
    clock.trainer = trainer
    result = _quiet(trainer.fit)
    assert result.stopped_by_budget and result.global_step == 20
    # The final evaluation ran on the weights it stopped with: recount it here from the evaluation images.
    eval_set = trainer.evaluator.loader.dataset
    x = (eval_set.images.float() / 255 - 0.5) / 0.5
    with torch.no_grad():
        accuracy = (trainer.model.eval()(x).argmax(-1) == eval_set.labels).float().mean().item()
    assert result.history[-1]["top1"] == pytest.approx(accuracy, abs=0.5 / len(eval_set))
    state = load_checkpoint(tmp_path / "runs" / "t" / "checkpoints" / "last.pt")
    assert state["progress"]["global_step"] == 20


@pytest.mark.slow
def test_torch_compile_trains_like_eager(data_root, tmp_path):
    eager, compiled = _weights_after(data_root, tmp_path, "compile", (False, True), max_steps=6)  # ~30 s to compile
    for name in eager:
        torch.testing.assert_close(compiled[name], eager[name], atol=1e-4, rtol=1e-3, msg=name)


def test_tensorboard_gets_the_scalars_of_metrics_jsonl(data_root, tmp_path):
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    recipe = recipe_from_dict(tiny_recipe(data_root, tmp_path / "runs", train={"max_steps": 10, "tensorboard": True}))
    result = _quiet(train_model, recipe)
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    events = accumulator.EventAccumulator(str(result.run_dir / "tensorboard"))
    events.Reload()
    steps = [r for r in rows if r["kind"] == "step"]
    logged = events.Scalars("step/loss")
    assert [e.step for e in logged] == [r["step"] for r in steps]
    assert [e.value for e in logged] == pytest.approx([r["loss"] for r in steps])
    top1 = events.Scalars("epoch/top1")
    assert [e.value for e in top1] == pytest.approx([r["top1"] for r in rows if r["kind"] == "epoch"])
    assert {"step/lr", "step/img_per_s", "epoch/train_loss"} <= set(events.Tags()["scalars"])
