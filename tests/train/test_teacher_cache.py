"""The teacher cache: answers equal the teacher's own on the same batch, the teacher runs only on inputs it has
not seen (each flip is its own input), the byte limit holds, its state round-trips, and the distillation loss
with the cache equals the loss without it."""

from __future__ import annotations

import torch
from torch import nn

from vitkit.train.objectives import Distillation
from vitkit.train.objectives.teacher_cache import TeacherCache, input_digests


class CountingTeacher(nn.Module):
    """A small conv net that records the batch sizes it was run on."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
        self.calls: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(x.shape[0])
        return self.net(x)


def _images(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def _first_pass(max_bytes: int, n: int, seed: int) -> tuple[CountingTeacher, TeacherCache, torch.Tensor, torch.Tensor]:
    """A fresh teacher and cache, and the cache's answers for ``n`` new images: (teacher, cache, images, answers)."""
    teacher, cache, x = CountingTeacher().eval(), TeacherCache(max_bytes), _images(n, seed)
    return teacher, cache, x, cache(teacher, x)


def test_answers_equal_the_teacher_and_it_runs_only_on_unseen_inputs():
    teacher, cache, a, first = _first_pass(1 << 20, 6, 0)
    with torch.no_grad():
        torch.testing.assert_close(first, teacher.net(a), rtol=0, atol=1e-6)
        # the next batch: two seen images, two of them flipped (new inputs), two fresh
        b = torch.cat([a[[4, 1]], a[[0, 2]].flip(-1), _images(2, 1)])
        second = cache(teacher, b)
    assert teacher.calls == [6, 4]
    assert cache.hit_rate() == 2 / 12  # 6 misses, then 2 hits and 4 misses
    assert len(cache) == 10
    torch.testing.assert_close(second, teacher.net(b), rtol=0, atol=1e-6)


def test_digests_tell_apart_values_dtypes_and_flips():
    x = _images(3, 0)
    keys = input_digests(torch.cat([x, x[:1], x[:1].flip(-1)]))
    assert keys[3] == keys[0] and len(set(keys)) == 4
    assert input_digests(x.double())[0] != keys[0]
    assert input_digests(x[:1].clone())[0] == keys[0]  # the exact bytes decide, not the tensor object


def test_byte_limit_stops_growth_but_answers_stay_right():
    teacher, cache, x, out = _first_pass(3 * (5 * 4 + 200), 8, 2)  # room for three entries of 5 float32 logits
    assert len(cache) == 3 and cache.nbytes <= cache.max_bytes
    torch.testing.assert_close(out, teacher.net(x), rtol=0, atol=1e-6)


def test_state_round_trips_exactly():
    teacher, cache, x, before = _first_pass(1 << 20, 5, 3)
    restored = TeacherCache(1 << 20)
    restored.load_state_dict(cache.state_dict())
    teacher.calls.clear()
    with torch.no_grad():
        after = restored(teacher, x)
    assert teacher.calls == [] and restored.hit_rate() == 1.0
    assert torch.equal(before, after)
    empty = TeacherCache(10)
    empty.load_state_dict(TeacherCache(10).state_dict())
    assert len(empty) == 0


def test_distillation_loss_with_cache_equals_without():
    torch.manual_seed(0)
    teacher = CountingTeacher()
    student = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 5))
    x, y = _images(8, 4), torch.randint(0, 5, (8,))
    for kind in ("hard", "soft"):
        plain = Distillation(teacher=teacher, type=kind, tau=2.0)
        cached = Distillation(teacher=teacher, type=kind, tau=2.0, cache_mb=1)
        for _ in range(2):  # the second pass answers from the cache
            loss_plain, _ = plain.loss(student, (x, y))
            loss_cached, logs = cached.loss(student, (x, y))
            torch.testing.assert_close(loss_cached, loss_plain, rtol=0, atol=1e-6)
        assert logs["teacher_cached"].item() == 1.0
        assert "teacher_cache" in cached.state_dict() and "teacher_cache" not in plain.state_dict()
