"""Feeding the device: a streamed feed (background gather, prefetch) gives exactly the batches
of the in-place one, so training from it ends with the same weights; the EMA is a lerp."""

from __future__ import annotations

import torch

from tests.conftest import digits_subset, tiny_model
from vitkit.train import TrainRun, get_recipe, train
from vitkit.train.ema import ModelEMA
from vitkit.train.feed import make_feeder

RECIPE = get_recipe("small-data", epochs=1, batch_size=16, warmup_epochs=0.25, ema_decay=0.9)


def test_a_streamed_feed_gives_the_batches_of_the_in_place_one():
    data = digits_subset(64)
    in_place = make_feeder(data, torch.device("cpu"))
    streamed = make_feeder(data, torch.device("cpu"), on_device=False)
    assert in_place.on_device and not streamed.on_device and "forced" in streamed.how
    first, second = torch.randperm(64)[:16], torch.randperm(64)[:16]
    streamed.prefetch(first)
    for indices in (first, second, first):  # prefetched, not prefetched, again
        a, b = in_place.get(indices), streamed.get(indices)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    streamed.close()


def test_training_from_a_streamed_feed_ends_with_the_same_weights(tmp_path):
    states = []
    for name, on_device in (("in-place", True), ("streamed", False)):
        train(TrainRun(model=tiny_model(), train_set=digits_subset(64), recipe=RECIPE,
                       out_dir=tmp_path / name, seed=2, progress=False, precision="fp32",
                       data_on_device=on_device))
        states.append(torch.load(tmp_path / name / "state" / "last.pt", weights_only=True))
    for part in ("model", "ema"):
        for key, tensor in states[0][part].items():
            assert torch.equal(tensor, states[1][part][key]), f"{part}.{key}"


def test_the_ema_moves_a_fixed_fraction_towards_the_weights():
    model = tiny_model()
    ema = ModelEMA(model, decay=0.75)
    before = {k: v.clone() for k, v in ema.module.state_dict().items()}
    with torch.no_grad():
        for param in model.parameters():
            param.add_(1.0)
    ema.update_parameters(model)
    for key, value in ema.module.state_dict().items():
        expected = 0.75 * before[key] + 0.25 * model.state_dict()[key]
        assert torch.allclose(value, expected, atol=1e-6), key
    assert not any(p.requires_grad for p in ema.parameters())
