"""Frozen-feature evaluation: the few-shot closed form equals a reference ridge solution, well
separated features score 100% with every classifier, shots are class-balanced and seeded,
the features are the pre-logits of any family (or a block's pooled tokens), and `vitkit eval
--few-shot/--linear-probe/--knn` writes them into metrics.json with one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.linear_model import Ridge

import vitkit
from tests.conftest import TINY, digits_subset, no_decoding, one_line_error, tiny_model
from vitkit.cli.main import main
from vitkit.infer import (
    evaluate_frozen,
    extract_features,
    few_shot_accuracy,
    knn_accuracy,
    linear_probe_accuracy,
)
from vitkit.infer.batches import model_inputs
from vitkit.infer.fewshot import BIAS_FEATURE, few_shot_predict, ridge_weights, sample_shots
from vitkit.models import MaskedPatchPrediction

pytestmark = pytest.mark.usefixtures("private_cache")


# -- the few-shot closed form ------------------------------------------------------------------
@pytest.mark.parametrize("rows, cols", [(40, 7), (6, 30)])  # the primal and the dual solve
def test_closed_form_equals_a_reference_ridge_solution(rows, cols):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(rows, cols)), rng.choice([-1.0, 1.0], size=(rows, 4))
    weights = ridge_weights(torch.from_numpy(x), torch.from_numpy(y), 2.0**10).numpy()
    explicit = np.linalg.solve(x.T @ x + 2.0**10 * np.eye(cols), x.T @ y)
    reference = Ridge(alpha=2.0**10, fit_intercept=False, solver="cholesky").fit(x, y).coef_.T
    assert np.abs(weights - explicit).max() < 1e-5
    assert np.abs(weights - reference).max() < 1e-5
    assert np.abs(weights).max() > 1e-3  # not trivially zero


def test_few_shot_predictions_are_big_visions_recipe_by_hand():
    rng = np.random.default_rng(1)
    train, test = rng.normal(size=(12, 5)) * 3 + 1, rng.normal(size=(50, 5)) * 3 + 1
    labels = np.repeat(np.arange(3), 4)
    mean, std = train.mean(0), train.std(0) + 1e-5  # standardised by the sampled images
    bias = np.full((len(train), 1), BIAS_FEATURE)
    x = np.hstack([(train - mean) / std, bias])
    targets = 2.0 * np.eye(3)[labels] - 1  # one-vs-rest in {-1, 1}
    ridge = Ridge(alpha=0.5, fit_intercept=False).fit(x, targets)
    expected = ridge.predict(np.hstack([(test - mean) / std, bias[:1].repeat(50, 0)])).argmax(1)
    got = few_shot_predict(torch.from_numpy(train), torch.from_numpy(labels),
                           torch.from_numpy(test), 3, l2=0.5)
    assert got.tolist() == expected.tolist()
    assert len(set(expected.tolist())) > 1  # the answer is not one class everywhere


# -- known answers on separable features -------------------------------------------------------
def separable(count_per_class: int, classes: int = 4, seed: int = 0):
    """Features clustered tightly around far-apart class centres (which differ in every
    dimension, so standardising amplifies no pure-noise dimension), and their labels."""
    centres = 10 * torch.randn(classes, 16, generator=torch.Generator().manual_seed(99))
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes).repeat_interleave(count_per_class)
    feats = centres[labels] + 0.1 * torch.randn(len(labels), 16, generator=generator)
    return feats, labels


def test_separable_features_give_100_percent_with_every_classifier():
    train_x, train_y = separable(30)
    test_x, test_y = separable(20, seed=1)
    few = few_shot_accuracy(train_x, train_y, test_x, test_y, shots=(1, 5, 25), seeds=3)
    assert {shots: r["mean"] for shots, r in few.items()} == {1: 1.0, 5: 1.0, 25: 1.0}
    assert all(r["std"] == 0 and len(r["per_seed"]) == 3 for r in few.values())
    assert linear_probe_accuracy(train_x, train_y, test_x, test_y)["top1"] == 1.0
    assert knn_accuracy(train_x, train_y, test_x, test_y, k=5)["top1"] == 1.0


def test_shuffled_labels_score_near_chance():
    train_x, train_y = separable(30)
    test_x, test_y = separable(50, seed=1)
    shuffled = train_y[torch.randperm(len(train_y), generator=torch.Generator().manual_seed(0))]
    few = few_shot_accuracy(train_x, shuffled, test_x, test_y, shots=(25,), seeds=2)
    assert few[25]["mean"] < 0.6
    assert knn_accuracy(train_x, shuffled, test_x, test_y, k=15)["top1"] < 0.6


# -- the shots ---------------------------------------------------------------------------------
def test_shots_are_class_balanced_seeded_and_nested():
    labels = torch.tensor([0] * 9 + [1] * 30 + [2] * 12)[torch.randperm(51)]
    first = sample_shots(labels, 5, 3, seed=0)
    assert torch.bincount(labels[first], minlength=3).tolist() == [5, 5, 5]
    assert torch.equal(first, sample_shots(labels, 5, 3, seed=0))
    assert not torch.equal(first, sample_shots(labels, 5, 3, seed=1))
    assert set(sample_shots(labels, 1, 3, seed=0).tolist()) <= set(first.tolist())


def test_more_shots_than_a_class_has_is_a_clear_error():
    feats, labels = separable(3)
    with pytest.raises(ValueError, match="shots=5 needs 5 training images.*has 3"):
        few_shot_accuracy(feats, labels, feats, labels, shots=(1, 5))


# -- features from models ----------------------------------------------------------------------
def test_features_are_the_pre_logits_of_a_vit_at_any_batch_size():
    model = vitkit.create_model("vit_digits_patch2_8", **TINY, representation_size=24).eval()
    data = digits_subset(20)
    feats, labels = extract_features(model, data, batch_size=7)
    assert feats.shape == (20, 24) and feats.dtype == torch.float32
    assert torch.equal(labels, data.targets)
    with torch.no_grad():
        direct = model.forward_head(model.forward_features(model_inputs(model, data.images)),
                                    pre_logits=True)
    assert torch.allclose(feats, direct, atol=1e-5)
    block0, _ = extract_features(model, data, layer=0)
    assert block0.shape == (20, TINY["embed_dim"]) and not torch.allclose(block0[:, :24], feats)
    wrapped, _ = extract_features(MaskedPatchPrediction(model), data)
    assert torch.allclose(wrapped, feats, atol=1e-5)


@pytest.mark.parametrize("name, overrides, dim", [
    ("vit_digits_patch2_8", TINY, TINY["embed_dim"]),
    ("resnet20", {"img_size": 8, "in_chans": 1}, 64),
])
def test_evaluate_frozen_runs_on_a_saved_checkpoint(tmp_path, name, overrides, dim):
    torch.manual_seed(0)
    model = vitkit.create_model(name, num_classes=10, **overrides)
    loaded = vitkit.load_pretrained(vitkit.save_pretrained(model, tmp_path / "checkpoint"))
    train, test = digits_subset(100), digits_subset(40, split="test")
    result = evaluate_frozen(loaded, train, test, few_shot=(1, 3), seeds=2, probe_c=1.0, knn=3)
    assert result["features"]["dim"] == dim and result["features"]["train_images"] == 100
    assert set(result) == {"features", "few_shot", "linear_probe", "knn"}
    assert set(result["few_shot"]["shots"]) == {1, 3}
    assert 0.1 < result["linear_probe"]["top1"] <= 1.0  # better than chance on digits
    assert result["knn"]["k"] == 3


def test_a_layer_is_for_transformers_and_within_their_depth():
    data = digits_subset(10)
    with pytest.raises(ValueError, match="layer=2 is outside this model's 2 blocks"):
        evaluate_frozen(tiny_model(), data, data, layer=2)
    resnet = vitkit.create_model("resnet20", num_classes=10, img_size=8, in_chans=1)
    with pytest.raises(ValueError, match="layer=1 picks a transformer block"):
        extract_features(resnet, data, layer=1)


# -- the command line --------------------------------------------------------------------------
def test_vitkit_eval_writes_frozen_numbers_beside_the_plain_ones(tmp_path, capsys):
    checkpoint = vitkit.save_pretrained(tiny_model(), tmp_path / "run" / "checkpoint")
    base = ["eval", "--checkpoint", str(checkpoint), "--data", "digits", "--no-progress"]
    assert main(base) == 0
    code = main([*base, "--few-shot", "1", "5", "--seeds", "2", "--linear-probe", "--probe-c",
                 "0.1", "--knn", "5"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "5-shot" in out and "linear probe (C 0.1)" in out and "5-NN" in out
    metrics = json.loads((tmp_path / "run" / "eval" / "metrics.json").read_text())
    assert "top1" in metrics  # the plain evaluation's numbers are kept
    frozen = metrics["frozen"]
    assert frozen["split"] == "test" and frozen["features"]["test_images"] == 360
    assert set(frozen["few_shot"]["shots"]) == {"1", "5"}
    assert frozen["few_shot"]["seeds"] == [0, 1]
    assert 0 <= frozen["linear_probe"]["top1"] <= 1 and frozen["linear_probe"]["c"] == 0.1


def test_vitkit_eval_frozen_errors_name_the_flags(tmp_path, capsys, monkeypatch):
    checkpoint = vitkit.save_pretrained(tiny_model(), tmp_path / "checkpoint")
    base = ["eval", "--checkpoint", str(checkpoint), "--data", "digits", "--no-progress"]
    code = main([*base, "--few-shot", "500"])
    one_line_error(capsys, code, "--few-shot 500 needs 500 training images")
    no_decoding(monkeypatch)  # what needs no data is checked before decoding
    one_line_error(capsys, main([*base, "--knn", "0"]), "--knn 0 must be at least 1")
    one_line_error(capsys, main([*base, "--knn", "3", "--feature-layer", "7"]),
                   "--feature-layer 7 is outside")


def test_vitkit_eval_frozen_needs_no_head_matching_the_data(tmp_path, capsys):
    headless = tiny_model(num_classes=0)  # as masked-patch pre-training saves a ViT
    checkpoint = vitkit.save_pretrained(headless, tmp_path / "checkpoint")
    code = main(["eval", "--checkpoint", str(checkpoint), "--data", "digits", "--no-progress",
                 "--few-shot", "2", "--knn", "3", "--out", str(tmp_path / "eval")])
    assert code == 0, capsys.readouterr().err
    frozen = json.loads((tmp_path / "eval" / "metrics.json").read_text())["frozen"]
    assert frozen["features"]["dim"] == TINY["embed_dim"] and "linear_probe" not in frozen
    assert 0.1 < frozen["knn"]["top1"] <= 1  # better than chance on digits
