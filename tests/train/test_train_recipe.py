"""Recipes: the shipped YAML files parse and document themselves; typos and wrong types are errors that list
what is valid; ``--set`` overrides are typed by their field."""

from __future__ import annotations

import pytest
import yaml

from paths import REPO
from vitkit.train.catalog import named_recipes, recipe_summary, resolve_recipe
from vitkit.train.recipe import OptimConfig, dump_recipe, load_recipe, recipe_from_dict

RECIPES = sorted(named_recipes().values())  # the package's own (vitkit/recipes), then a checkout's recipes/
PACKAGED = REPO / "src" / "vitkit" / "recipes"


def test_the_issue_recipes_are_shipped_as_package_data_and_found_by_name():
    names = {p.stem for p in PACKAGED.glob("*.yaml")}
    assert {"cifar10_vit", "imagenet_vit_b16_pretrain", "finetune_vit_b16_384"} <= names
    assert resolve_recipe("cifar10_vit") == PACKAGED / "cifar10_vit.yaml"
    assert resolve_recipe("recipes/cifar10_vit.yaml") == PACKAGED / "cifar10_vit.yaml"  # the path before the move
    assert load_recipe("cifar10_vit", ["train.epochs=3"]).train.epochs == 3
    summary = recipe_summary(PACKAGED / "cifar10_vit.yaml")
    assert summary["command"].startswith("vitkit train --config cifar10_vit") and "test top-1" in summary["expected"]
    assert summary["runtime"].startswith("30 min")


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_shipped_recipes_parse_and_state_command_result_and_runtime(path):
    recipe = load_recipe(path)
    assert recipe.name == path.stem
    header = [line for line in path.read_text().splitlines() if line.startswith("#")]
    text = "\n".join(header)
    for label in ("Command:", "Expected:", "Runtime:"):
        assert label in text, f"{path.name} header lacks {label}"
    assert "vitkit" in text
    again = recipe_from_dict(yaml.safe_load(dump_recipe(recipe)))  # the resolved form written to a run folder
    assert again == recipe


def test_paper_settings_are_in_the_paper_recipes():
    pre = load_recipe("imagenet_vit_b16_pretrain")
    assert (pre.optim.name, pre.optim.betas, pre.optim.weight_decay) == ("adamw", (0.9, 0.999), 0.1)
    assert (pre.train.batch_size, pre.schedule.warmup_steps, pre.schedule.decay) == (4096, 10000, "linear")
    assert pre.data.img_size == (224, 224)
    ft = load_recipe("finetune_vit_b16_384")
    assert (ft.optim.name, ft.optim.momentum, ft.optim.weight_decay, ft.optim.clip_grad_norm) == ("sgd", 0.9, 0.0, 1.0)
    assert (ft.schedule.decay, ft.train.batch_size, ft.data.img_size) == ("cosine", 512, (384, 384))


def test_a_mistyped_key_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['weight_decayy'\] in 'optim'.*'weight_decay'"):
        recipe_from_dict({"optim": {"weight_decayy": 0.1}})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['depht'\] in 'model'.*'depth'"):
        recipe_from_dict({"model": {"depht": 3}})
    with pytest.raises(ValueError, match=r"unknown top-level key\(s\) \['optimizer'\].*'optim'"):
        recipe_from_dict({"optimizer": {}})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['imgsize'\] in 'data'.*'img_size'"):
        recipe_from_dict({"data": {"imgsize": 32}})


def test_wrong_values_name_the_key_and_the_choices():
    with pytest.raises(ValueError, match=r"optim.name: 'adam' is not one of \['adamw', 'sgd'\]"):
        recipe_from_dict({"optim": {"name": "adam"}})
    with pytest.raises(ValueError, match=r"train.epochs: expected an integer, got 'ten'"):
        recipe_from_dict({"train": {"epochs": "ten"}})
    with pytest.raises(ValueError, match=r"model.depth: expected an integer"):
        recipe_from_dict({"model": {"depth": 2.5}})
    with pytest.raises(ValueError, match=r"train.compile: expected true or false"):
        recipe_from_dict({"train": {"compile": "maybe"}})
    with pytest.raises(ValueError, match=r"invalid 'train': train.log_every_steps must be at least 1, got 0"):
        recipe_from_dict({"train": {"log_every_steps": 0}})
    with pytest.raises(ValueError, match=r"optim.layer_decay must lie in \(0, 1\], got 1.5"):
        recipe_from_dict({"optim": {"layer_decay": 1.5}})


def test_set_overrides_are_typed_by_the_field(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("optim:\n  lr: 1.0e-3\ntrain:\n  epochs: 3\n")
    recipe = load_recipe(
        path,
        [
            "optim.lr=3e-4",  # YAML alone would read this as a string
            "optim.betas=[0.9, 0.95]",
            "train.epochs=5",
            "train.max_minutes=null",
            "train.compile=true",
            "data.img_size=64",
            "model.depth=3",
            "model.name=vit_small_patch4_32",
        ],
    )
    assert recipe.optim == OptimConfig(lr=3e-4, betas=(0.9, 0.95))
    assert recipe.train.epochs == 5 and recipe.train.max_minutes is None and recipe.train.compile is True
    assert recipe.data.img_size == (64, 64)
    assert recipe.model.overrides == {"depth": 3} and recipe.model.name == "vit_small_patch4_32"
    assert recipe.name == "r"
    with pytest.raises(ValueError, match="section.key=value"):
        load_recipe(path, ["lr=3"])
    with pytest.raises(ValueError, match="unknown section 'optimizer'"):
        load_recipe(path, ["optimizer.lr=3"])
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['lrr'\] in 'optim'"):
        load_recipe(path, ["optim.lrr=3"])
    with pytest.raises(FileNotFoundError, match="not one of the named recipes.*cifar10_vit.*vitkit recipes"):
        load_recipe(tmp_path / "missing.yaml")


def test_vitkit_recipes_lists_each_with_command_result_and_runtime(capsys):
    import json

    from vitkit.cli.main import main

    assert main(["recipes", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(named_recipes())
    assert rows["cifar10_vit"]["command"].startswith("vitkit train --config cifar10_vit")
    assert all(r["command"] and r["expected"] and r["runtime"] for r in rows.values())
