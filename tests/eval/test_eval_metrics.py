"""Metrics and the few-shot probe against hand-counted values and an independent least-squares solver."""

from __future__ import annotations

import pytest
import torch

from vitkit.eval.fewshot import fewshot_accuracy, fewshot_from_features, ridge_fit, sample_shots
from vitkit.eval.metrics import MetricAccumulator, plot_confusion, topk_accuracy


def test_accumulated_metrics_match_hand_counts(tmp_path):
    # 3 classes; rows are logits, ranked so the top-1 and top-2 hits can be read off directly.
    logits = torch.tensor([[3.0, 2, 1], [1, 3, 2], [1, 2, 3], [3, 1, 2], [2, 3, 1]])
    labels = torch.tensor([0, 2, 2, 1, 0])
    acc = MetricAccumulator(3, topk=2)
    acc.update(logits[:2], labels[:2])  # in two batches: counts must add up
    acc.update(logits[2:], labels[2:])
    result = acc.compute(["a", "b", "c"])
    assert result.top1 == pytest.approx(2 / 5)  # samples 0 and 2
    assert result.top5 == pytest.approx(4 / 5)  # top-2 here: all but sample 3
    assert result.per_class == pytest.approx([1 / 2, 0.0, 1 / 2])
    assert result.confusion.tolist() == [[1, 1, 0], [1, 0, 0], [0, 1, 1]]
    expected_loss = torch.nn.functional.cross_entropy(logits, labels).item()
    assert result.loss == pytest.approx(expected_loss)
    assert topk_accuracy(logits, labels, (1, 2)) == pytest.approx([0.4, 0.8])
    png = plot_confusion(result, str(tmp_path / "cm.png"))
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_ridge_matches_an_independent_least_squares_solve():
    gen = torch.Generator().manual_seed(0)
    for n, d in [(40, 8), (6, 20)]:  # primal and dual branches
        x = torch.randn(n, d, generator=gen, dtype=torch.float64)
        y = torch.randn(n, 3, generator=gen, dtype=torch.float64)
        lam = 0.7
        # Ridge regression = ordinary least squares on [x; sqrt(lam) I] -> [y; 0].
        stacked_x = torch.cat([x, lam**0.5 * torch.eye(d, dtype=torch.float64)])
        stacked_y = torch.cat([y, torch.zeros(d, 3, dtype=torch.float64)])
        reference = torch.linalg.lstsq(stacked_x, stacked_y).solution
        torch.testing.assert_close(ridge_fit(x, y, lam), reference)


def test_fewshot_separates_clustered_features_and_reports_spread():
    gen = torch.Generator().manual_seed(1)
    centres = 4 * torch.randn(4, 16, generator=gen)
    labels = torch.arange(4).repeat_interleave(30)
    feats = centres[labels] + 0.3 * torch.randn(len(labels), 16, generator=gen)
    test_labels = torch.arange(4).repeat(25)
    test = centres[test_labels] + 0.3 * torch.randn(100, 16, generator=gen)
    assert fewshot_accuracy(feats, labels, test, test_labels, 4, l2_reg=1.0) == 1.0
    shuffled = test_labels[torch.randperm(100, generator=gen)]
    assert fewshot_accuracy(feats, labels, test, shuffled, 4, l2_reg=1.0) < 0.6  # labels carry no signal
    result = fewshot_from_features(feats, labels, test, test_labels, 4, shots=(1, 5), seeds=(0, 1, 2), l2_reg=1.0)
    assert set(result.per_seed) == {1, 5} and all(len(v) == 3 for v in result.per_seed.values())
    assert result.mean(5) == 1.0 and result.std(5) == 0.0
    assert "shots" in result.table()


def test_shot_sampling_is_balanced_seeded_and_nested():
    labels = [i % 3 for i in range(30)]
    five = sample_shots(labels, 5, 3, seed=4)
    assert sorted(labels[i] for i in five) == [0] * 5 + [1] * 5 + [2] * 5
    assert five == sample_shots(labels, 5, 3, seed=4)
    two = sample_shots(labels, 2, 3, seed=4)
    assert all(i in five for i in two)  # 2-shot draws are a subset of the 5-shot ones
    with pytest.raises(ValueError, match="fewer than 11"):
        sample_shots(labels, 11, 3, seed=0)
