"""A minimal Vision Transformer to read next to the paper (Dosovitskiy et al. 2020, Sec. 3.1, Eq. 1-4).

    z_0 = [x_class; x_p^1 E; ...; x_p^N E] + E_pos      (Eq. 1)
    z'_l = MSA(LN(z_{l-1})) + z_{l-1},  l = 1..L        (Eq. 2)
    z_l = MLP(LN(z'_l)) + z'_l,         l = 1..L        (Eq. 3)
    y = LN(z_L^0)                                       (Eq. 4)

ViT-B/16 at 224 px with nothing configurable: the model uses torch only, so every step is on this page.
``from_vitkit`` loads a vitkit ViT's weights into it; running this file checks that both give the same logits:

    python examples/minimal_vit.py
"""

from __future__ import annotations

import torch
from torch import nn

IMG, PATCH, CHANS = 224, 16, 3  # image side, patch side P, colour channels C
D, DEPTH, HEADS, MLP_DIM, CLASSES = 768, 12, 12, 3072, 1000  # ViT-Base (paper Table 1), ImageNet classes
N = (IMG // PATCH) ** 2  # 196 patches
EPS = 1e-6  # LayerNorm epsilon of the released checkpoints


class Block(nn.Module):
    """One pre-norm Transformer encoder layer: Eq. 2, then Eq. 3."""

    def __init__(self) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(D, eps=EPS)
        # batch_first=True: the default (False) reads a (B, N, D) tensor as (N, B, D), so attention would mix the
        # images of a batch instead of the tokens of one image.
        self.attn = nn.MultiheadAttention(D, HEADS, batch_first=True)
        self.norm2 = nn.LayerNorm(D, eps=EPS)
        self.mlp = nn.Sequential(nn.Linear(D, MLP_DIM), nn.GELU(), nn.Linear(MLP_DIM, D))  # two layers, GELU (Sec. 3.1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(B, 1 + N, D) -> (B, 1 + N, D)."""
        h = self.norm1(z)
        z = self.attn(h, h, h, need_weights=False)[0] + z  # Eq. 2: queries, keys and values all come from LN(z)
        return self.mlp(self.norm2(z)) + z  # Eq. 3


class MinimalViT(nn.Module):
    """ViT-B/16: (B, 3, 224, 224) images -> (B, 1000) logits."""

    def __init__(self) -> None:
        super().__init__()
        # E of Eq. 1: a convolution with kernel = stride = P multiplies each flattened PxP patch by E (P^2 C, D).
        self.patch_embed = nn.Conv2d(CHANS, D, kernel_size=PATCH, stride=PATCH)
        self.cls_token = nn.Parameter(0.02 * torch.randn(1, 1, D))  # x_class, learned
        self.pos_embed = nn.Parameter(0.02 * torch.randn(1, 1 + N, D))  # E_pos, learned, one row per token
        self.blocks = nn.Sequential(*[Block() for _ in range(DEPTH)])  # Eq. 2-3, L times
        self.norm = nn.LayerNorm(D, eps=EPS)  # LN of Eq. 4
        self.head = nn.Linear(D, CLASSES)  # the fine-tuning head: one linear layer (Sec. 3.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1:] != (CHANS, IMG, IMG):  # another size would silently drop pixels or misplace E_pos
            raise ValueError(f"expected (B, {CHANS}, {IMG}, {IMG}) images, got {tuple(x.shape)}; resize to {IMG}x{IMG}")
        x = self.patch_embed(x)  # (B, C, H, W) -> (B, D, H/P, W/P)
        x = x.flatten(2).transpose(1, 2)  # (B, D, H/P, W/P) -> (B, N, D), patches in row-major order
        cls = self.cls_token.expand(x.shape[0], -1, -1)  # (1, 1, D) -> (B, 1, D)
        z = torch.cat([cls, x], dim=1) + self.pos_embed  # Eq. 1: (B, 1 + N, D)
        z = self.blocks(z)  # Eq. 2-3: (B, 1 + N, D)
        y = self.norm(z[:, 0])  # Eq. 4: the class token's final state, (B, D)
        return self.head(y)  # (B, D) -> (B, classes)


# vitkit (timm) name -> name here; every other key is the same in both.
_RENAMES = (
    ("patch_embed.proj.", "patch_embed."),
    ("attn.qkv.", "attn.in_proj_"),  # both stack the query, key and value projections as rows [q; k; v]
    ("attn.proj.", "attn.out_proj."),
    ("mlp.fc1.", "mlp.0."),
    ("mlp.fc2.", "mlp.2."),
)


def from_vitkit(model: nn.Module) -> MinimalViT:
    """A MinimalViT holding the weights of a vitkit ViT-B/16 at 224 px (e.g. ``create_model("vit_base_patch16_224")``).

    The state dict's shapes check sizes and parts; the settings below change no shape, so they are checked here.
    """
    want = {"num_heads": HEADS, "global_pool": "token", "pre_norm": True, "norm_eps": EPS, "act_layer": "gelu"}
    wrong = {k: getattr(model.cfg, k) for k, v in want.items() if getattr(model.cfg, k) != v}
    if wrong:
        raise ValueError(f"the minimal ViT has {want}, this model has {wrong}; convert a plain ViT-B/16 instead")
    state = {}
    for key, value in model.state_dict().items():
        for old, new in _RENAMES:
            key = key.replace(old, new)
        state[key] = value
    minimal = MinimalViT()
    minimal.load_state_dict(state)  # strict: a missing, extra or misshapen tensor raises
    return minimal


if __name__ == "__main__":
    import vitkit

    torch.manual_seed(0)
    reference = vitkit.create_model("vit_base_patch16_224").eval()
    minimal = from_vitkit(reference).eval()
    images = torch.randn(2, CHANS, IMG, IMG)
    with torch.no_grad():
        diff = (minimal(images) - reference(images)).abs().max()
    print(f"largest logit difference, minimal vs vitkit ViT-B/16: {diff.item():.2e}")
