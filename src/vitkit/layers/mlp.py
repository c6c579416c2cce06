"""The Transformer MLP: Linear(D, 4D), GELU, Linear(4D, D) (paper Eq. 3)."""

from __future__ import annotations

import torch
from torch import nn


def make_activation(name: str) -> nn.Module:
    """``gelu`` is exact (PyTorch's default); ``gelu_tanh`` is Flax's default, needed for JAX checkpoints."""
    return nn.GELU(approximate="tanh" if name == "gelu_tanh" else "none")


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden_dim: int, act_layer: str = "gelu", drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = make_activation(act_layer)
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))
