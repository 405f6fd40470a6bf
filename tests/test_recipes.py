"""Recipes: the paper's and small-data values, overrides, parameter groups, schedules, and
a couple of training steps of each on digits."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import digits_subset, tiny_model
from vitkit.train import TrainRun, get_recipe, list_recipes, train
from vitkit.train.optim import build_optimizer, lr_at, param_groups


def test_paper_recipes_follow_the_issue():
    pre, fine, small = (get_recipe(n) for n in ("paper-pretrain", "paper-finetune", "small-data"))
    assert (pre.optimizer, pre.beta1, pre.beta2, pre.weight_decay) == ("adam", 0.9, 0.999, 0.1)
    assert pre.schedule == "linear" and pre.label_smoothing == 0 and pre.representation_size
    assert (fine.optimizer, fine.momentum, fine.weight_decay, fine.grad_clip) == ("sgd", 0.9, 0, 1)
    assert fine.schedule == "cosine" and fine.zero_head
    assert small.optimizer == "adamw" and small.schedule == "cosine"
    assert small.label_smoothing == 0.1 and small.randaugment and small.ema
    assert small.mixup > 0 and small.cutmix > 0 and small.random_erasing > 0
    assert small.drop_path > 0


def test_overrides_and_bad_values():
    assert get_recipe("small-data", lr=0.5, hflip=False).lr == 0.5
    with pytest.raises(ValueError, match="unknown recipe fields: colour"):
        get_recipe("small-data", colour=1)
    with pytest.raises(ValueError, match="unknown recipe"):
        get_recipe("fast")
    with pytest.raises(ValueError, match="multiple of accum_steps"):
        get_recipe("small-data", batch_size=10, accum_steps=3)


def test_no_weight_decay_on_biases_norms_pos_embed_cls_token():
    model = tiny_model(global_pool="token")  # the final `norm` on all tokens
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    skipped = {names[id(p)] for p in no_decay["params"]}
    assert {"pos_embed", "cls_token", "norm.weight", "norm.bias", "blocks.0.norm1.weight",
            "blocks.0.attn.qkv.bias", "head.bias"} <= skipped
    assert {names[id(p)] for p in decay["params"]} >= {"blocks.0.attn.qkv.weight", "head.weight"}
    assert no_decay["weight_decay"] == 0 and decay["weight_decay"] == 0.1
    optimizer = build_optimizer(model, get_recipe("paper-pretrain"))
    assert isinstance(optimizer, torch.optim.Adam) and optimizer.defaults["decoupled_weight_decay"]


def test_schedules_warm_up_then_decay():
    cosine = get_recipe("small-data", lr=1.0, min_lr_ratio=0.0)
    lrs = [lr_at(s, 100, 10, cosine) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:], strict=False))
    assert lrs[-1] < 0.01
    linear = get_recipe("paper-pretrain", lr=1.0)
    assert lr_at(55, 100, 10, linear) == pytest.approx(0.5)


@pytest.mark.parametrize("name", list_recipes())
def test_each_recipe_trains_a_few_steps(tmp_path, name):
    recipe = get_recipe(name, epochs=1, batch_size=32, warmup_epochs=0.5, hflip=False,
                        accum_steps=2)
    data, val = digits_subset(64), digits_subset(40, "test")
    model = tiny_model(representation_size=32 if recipe.representation_size else None)
    result = train(TrainRun(model=model, train_set=data, val_set=val, recipe=recipe,
                            out_dir=tmp_path, progress=False))
    assert result.steps == 2 and result.finished
    assert json.loads((tmp_path / "recipe.json").read_text())["name"] == name
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert any("val_top1" in line for line in lines) and any("loss" in line for line in lines)
    loaded = __import__("vitkit").create_model(None, pretrained=tmp_path / "checkpoint")
    assert loaded.meta.class_names == data.classes
    assert loaded.meta.preprocessing.mean == model.meta.preprocessing.mean
    state = torch.load(tmp_path / "state" / "last.pt", weights_only=True)
    assert state["step"] == 2 and (state["ema"] is not None) == recipe.ema
