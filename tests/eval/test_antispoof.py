"""Anti-spoofing metrics against a hand computation on a small score table (with a tie at the threshold)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vitkit.eval.antispoof import SpoofScores, choose_threshold, eer, plot_roc_det, roc_auc, spoof_metrics

# live 0.1 0.2 0.5 0.7 | print 0.5 0.6 0.9 | replay 0.3 0.8
TEST = SpoofScores(
    np.array([0.1, 0.2, 0.5, 0.7, 0.5, 0.6, 0.9, 0.3, 0.8]),
    ["live"] * 4 + ["print"] * 3 + ["replay"] * 2,
)
# Development split whose EER candidates 0.5 and 0.9 tie on |APCER - BPCER| and on the error: the lower wins.
DEV = SpoofScores(np.array([0.2, 0.5, 0.5, 0.9]), ["live", "live", "print", "replay"])


def test_metrics_at_a_threshold_with_ties_equal_the_hand_computation() -> None:
    m = spoof_metrics(TEST, threshold=0.5)
    # score >= 0.5 is an attack: the live 0.5 is rejected, the print 0.5 is caught.
    assert m.apcer_per_type == {"print": 0.0, "replay": 0.5}  # replay 0.3 < 0.5 passes as live
    assert m.apcer == 0.5 and m.apcer_pooled == pytest.approx(1 / 5)
    assert m.bpcer == pytest.approx(2 / 4)  # live 0.5 (tie) and 0.7
    assert m.acer == pytest.approx((0.5 + 0.5) / 2)
    assert m.hter == pytest.approx((0.2 + 0.5) / 2)
    # AUC by pairs (attack > live: 1, equal: 1/2): 2.5 + 3 + 4 + 2 + 4 = 15.5 of 20.
    assert m.auc == pytest.approx(15.5 / 20)
    # EER sweep: t=0.6 gives APCER 2/5, BPCER 1/4, the closest pair; EER = (0.4 + 0.25) / 2.
    assert m.eer == pytest.approx(0.325)
    assert m.num_live == 4 and m.num_attack == {"print": 3, "replay": 2}


def test_dev_threshold_is_chosen_there_and_applied_unchanged() -> None:
    assert eer(DEV) == (pytest.approx(0.25), 0.5)
    t = choose_threshold(DEV, "eer")
    assert t == 0.5
    assert spoof_metrics(TEST, t, "eer").bpcer == pytest.approx(0.5)  # not re-tuned on test


def test_threshold_at_a_set_bpcer() -> None:
    assert choose_threshold(TEST, "bpcer=0.25") == 0.6  # lowest threshold rejecting at most 1 of 4 live
    assert choose_threshold(TEST, "bpcer=0") == 0.8
    assert choose_threshold(TEST, "bpcer=1") == 0.1


def test_auc_agrees_with_a_pairwise_count() -> None:
    rng = np.random.default_rng(0)
    scores = np.round(rng.random(60), 1)  # many ties
    types = ["live" if i % 3 else "print" for i in range(60)]
    s = SpoofScores(scores, types)
    att, live = scores[s.attack], scores[~s.attack]
    pairs = (att[:, None] > live[None]).sum() + 0.5 * (att[:, None] == live[None]).sum()
    assert roc_auc(s) == pytest.approx(pairs / (len(att) * len(live)))


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: SpoofScores(np.array([0.1, 0.2]), ["live", "live"]), "no attack"),
        (lambda: SpoofScores(np.array([0.1]), ["print"]), "no bona fide"),
        (lambda: choose_threshold(TEST, "far=0.1"), "unknown threshold rule"),
        (lambda: choose_threshold(TEST, "bpcer=5"), "fraction in"),
    ],
)
def test_bad_input(make, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        make()


def test_roc_and_det_pngs(tmp_path: Path) -> None:
    paths = plot_roc_det(TEST, 0.5, tmp_path)
    assert [p.name for p in paths] == ["roc.png", "det.png"]
    assert all(p.stat().st_size > 5000 for p in paths)


def test_cli_eval_antispoof_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A tiny live/spoof model on a generated set: the CLI's metrics equal ones from a hand-written scoring loop."""
    import json

    import torch
    from PIL import Image

    from helpers import tiny_config
    from vitkit import VisionTransformer, save_pretrained
    from vitkit.cli.main import main
    from vitkit.data.spoof import make_spoof, spoof_listing

    photos = tmp_path / "photos" / "x"
    photos.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(20):
        Image.fromarray(rng.integers(0, 255, size=(16, 16, 3), dtype=np.uint8)).save(photos / f"{i}.png")
    make_spoof(photos.parent, tmp_path / "set", num_photos=None, size=16, seed=0)
    cfg = tiny_config(num_classes=2, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), crop_pct=1.0)
    model = VisionTransformer(cfg.replace(extra={"classes": ["live", "spoof"]})).eval()
    torch.nn.init.normal_(model.head.weight, std=1.0)
    ckpt = save_pretrained(model, tmp_path / "m.safetensors")
    out = tmp_path / "report"
    assert main(["eval", "--antispoof", "--checkpoint", str(ckpt), "--data", str(tmp_path / "set"),
                 "--out", str(out), "--device", "cpu", "--workers", "0", "--json"]) == 0  # fmt: skip
    got = json.loads((out / "antispoof.json").read_text())
    assert {p.name for p in out.iterdir()} == {"antispoof.json", "roc.png", "det.png"}
    assert "APCER" not in capsys.readouterr().out  # --json prints the dict

    def scores(split: str) -> SpoofScores:
        source, types = spoof_listing(tmp_path / "set", split)
        x = torch.stack([torch.from_numpy(np.asarray(Image.open(p), dtype=np.float32) / 255) for p in source.paths])
        x = (x.permute(0, 3, 1, 2) - 0.5) / 0.5
        with torch.no_grad():
            p_live = model(x).float().softmax(-1)[:, 0]
        return SpoofScores((1 - p_live).double().numpy(), types)

    t = choose_threshold(scores("dev"), "eer")
    want = spoof_metrics(scores("test"), t, "eer")
    assert got["threshold"] == pytest.approx(want.threshold, abs=1e-6)
    for key in ("apcer", "bpcer", "acer", "hter", "eer", "auc"):
        assert got[key] == pytest.approx(getattr(want, key), abs=1e-9), key
