"""evaluate_model's reference: top-1 agreement and the reference's accuracy equal a hand count."""

import torch
from torch import nn

from vitkit.eval.classification import evaluate_model


def test_agreement_with_a_reference_model_matches_a_hand_count():
    torch.manual_seed(0)
    a, b = nn.Linear(6, 4), nn.Linear(6, 4)
    with torch.no_grad():
        b.weight.copy_(a.weight + 0.3 * torch.randn_like(a.weight))  # close to a, so some but not all agree
        b.bias.copy_(a.bias)
    batches = [(torch.randn(9, 6), torch.randint(0, 4, (9,))) for _ in range(3)]
    result = evaluate_model(b, batches, precision="fp32", reference=a, progress=False)
    x = torch.cat([xb for xb, _ in batches])
    y = torch.cat([yb for _, yb in batches])
    with torch.no_grad():
        pa, pb = a(x).argmax(-1), b(x).argmax(-1)
    expected = (pa == pb).float().mean().item()
    assert 0.0 < expected < 1.0  # the check can fail both ways
    assert abs(result.agreement - expected) < 1e-6
    assert abs(result.reference_top1 - (pa == y).float().mean().item()) < 1e-6
    assert abs(result.top1 - (pb == y).float().mean().item()) < 1e-6
    assert result.summary()["agreement"] == result.agreement


def test_no_reference_no_agreement():
    batches = [(torch.randn(4, 6), torch.randint(0, 4, (4,)))]
    result = evaluate_model(nn.Linear(6, 4), batches, precision="fp32", progress=False)
    assert result.agreement is None and "agreement" not in result.summary()
