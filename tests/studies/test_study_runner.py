"""The study runner with a study registered here and nowhere else: resuming after a crash (checked against an
uninterrupted run of the same recipe), skipping finished runs, refusing a folder that holds something else,
``--fresh``; and the command line's listing and one-line errors."""

from __future__ import annotations

import pytest
import torch

from train_data import make_image_folder
from vitkit.cli.main import main
from vitkit.studies import RunSpec, Study, register_study, run_study, unregister_study
from vitkit.studies.common import MODELS, study_recipe
from vitkit.studies.report import Column, write_csv
from vitkit.train.callbacks import Callback
from vitkit.weights.load import load_pretrained


class TwinStudy(Study):
    """Two runs of one recipe (only their names differ), so one can be interrupted and compared with the other."""

    name = "twin-test"
    summary = "two identical tiny runs"

    def __init__(self, steps: int = 8) -> None:
        self.steps = steps

    def plan(self, ctx):
        model = MODELS["vit"].section(True)
        return [
            RunSpec(
                name,
                study_recipe(
                    name,
                    model,
                    ctx.data,
                    ctx.runs_dir,
                    self.steps,
                    cache=False,
                    batch_size=16,
                    checkpoint_every_steps=2,
                    log_every_steps=1,
                ),
                {"twin": name},
            )  # fmt: skip
            for name in ("a", "b")
        ]

    def summarise(self, records, ctx):
        rows = [{"name": r.name, "top1": r.final["top1"], "steps": r.steps} for r in records]
        return [write_csv(rows, [Column(k, k) for k in rows[0]], ctx.out / "results.csv")]


class CrashAt(Callback):
    def __init__(self, run: str, step: int) -> None:
        self.run, self.step = run, step

    def on_step(self, trainer, row):
        if trainer.run_dir.name == self.run and trainer.global_step == self.step:
            raise RuntimeError("simulated crash")


class Starts(Callback):
    """Where each run began: (its name, resumed?, its step)."""

    def __init__(self) -> None:
        self.seen = []

    def on_start(self, trainer):
        self.seen.append((trainer.run_dir.name, trainer.resumed, trainer.global_step))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("twin_data"), train_per_class=16, test_per_class=4, size=32)


@pytest.fixture
def twin():
    study = register_study(TwinStudy())
    yield study
    unregister_study(study.name)


def _run(study, data, out, **kw):
    return run_study(study, quick=True, out=out, data=data, jobs=1, threads=1, cache=False, **kw)


def test_a_stopped_study_resumes_where_it_stopped(twin, data, tmp_path):
    out = tmp_path / "twin"
    with pytest.raises(RuntimeError, match="simulated crash"):
        _run("twin-test", data, out, callbacks=[CrashAt("b", 5)])
    assert (out / "runs" / "a" / "result.json").is_file() and not (out / "runs" / "b" / "result.json").exists()
    stamp = (out / "runs" / "a" / "result.json").stat().st_mtime_ns
    starts = Starts()
    result = _run("twin-test", data, out, callbacks=[starts])
    assert starts.seen == [("b", True, 4)]  # a is finished; b continues from its step-4 checkpoint
    assert (out / "runs" / "a" / "result.json").stat().st_mtime_ns == stamp
    assert [(r.name, r.steps) for r in result.records] == [("a", 8), ("b", 8)]
    # b, stopped and resumed, ends with the weights of a, trained in one go from the same recipe.
    a, b = (load_pretrained(out / "runs" / n / "model.safetensors").state_dict() for n in "ab")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    assert (out / "results.csv").read_text().count("\n") == 3


def test_folders_of_something_else_are_refused(twin, data, tmp_path):
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty and holds no study"):
        _run("twin-test", data, stray)
    with pytest.raises(ValueError, match="not empty and holds no study"):
        _run("twin-test", data, stray, fresh=True)  # --fresh deletes studies only
    assert (stray / "notes.txt").read_text() == "mine"

    out = tmp_path / "twin"
    _run("twin-test", data, out, plan_only=True)  # --plan: prints, trains and writes nothing
    assert not out.exists()
    _run("twin-test", data, out)
    with pytest.raises(ValueError, match="holds the study 'twin-test', not 'data-scale'"):
        _run("data-scale", data, out)
    with pytest.raises(ValueError, match="another configuration"):
        _run(TwinStudy(steps=6), data, out)
    _run(TwinStudy(steps=6), data, out, fresh=True, plan_only=True)  # --plan --fresh deletes nothing
    assert (out / "runs" / "a" / "result.json").is_file()
    result = _run(TwinStudy(steps=6), data, out, fresh=True)
    assert [r.steps for r in result.records] == [6, 6]


def test_cli_lists_studies_and_names_the_known_ones(capsys, tmp_path):
    assert main(["study", "--list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in ("data-scale", "pos-embed", "inductive-bias"))
    assert main(["study", "no-such-study"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown study 'no-such-study'" in err and "'pos-embed'" in err
    assert main(["study", "data-scale", "--data", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--data" in err and "train/<class>/" in err
    (tmp_path / "only_train" / "train" / "cat").mkdir(parents=True)
    assert main(["study", "pos-embed", "--data", str(tmp_path / "only_train")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "has no test/ folder" in err
