"""Batched augmentation against torchvision's per-image transforms, in distribution: crop
areas and aspect ratios, flip rate, how often each RandAugment op fires (and what each colour
op does), erased areas, MixUp/CutMix targets; and reproducible under the trainer's seeding."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from vitkit.models import Preprocessing
from vitkit.train import get_recipe
from vitkit.train.augment import BatchAugment, erase_boxes, mix
from vitkit.train.geometry import resample, rrc_boxes, whole_boxes
from vitkit.train.randaugment import (
    COLOUR_OPS,
    OPS,
    draw_ops,
    geometric_inverse,
    magnitude_of,
)

N = 4000  # draws per comparison: standard errors of ~1% of the spread


def _close(ours: torch.Tensor, theirs: torch.Tensor, sigmas: float = 4.0) -> None:
    """Means within `sigmas` standard errors of their difference."""
    error = math.sqrt(ours.var() / len(ours) + theirs.var() / len(theirs))
    assert abs(float(ours.mean() - theirs.mean())) < sigmas * error + 1e-9


@pytest.mark.parametrize("size,scale", [((32, 32), (0.35, 1.0)), ((48, 80), (0.08, 1.0))])
def test_random_resized_crop_areas_and_aspects_match_torchvision(size, scale):
    height, width = size
    torch.manual_seed(0)
    ours = rrc_boxes(N, height, width, scale)
    image = torch.zeros(3, height, width)
    theirs = torch.tensor([v2.RandomResizedCrop.get_params(image, list(scale), [3 / 4, 4 / 3])
                           for _ in range(N)], dtype=torch.float32)
    for boxes in (ours, theirs):  # every box lies inside the image
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 0] + boxes[:, 2] <= height).all()
        assert (boxes[:, 1] >= 0).all() and (boxes[:, 1] + boxes[:, 3] <= width).all()
    area = lambda b: b[:, 2] * b[:, 3] / (height * width)  # noqa: E731
    aspect = lambda b: torch.log(b[:, 3] / b[:, 2])  # noqa: E731
    centre = lambda b: b[:, 1] + b[:, 3] / 2  # noqa: E731
    for stat in (area, aspect, centre):
        _close(stat(ours), stat(theirs))
    assert abs(float(area(ours).std() - area(theirs).std())) < 0.02


def test_flips_half_of_the_images_and_each_exactly():
    image = torch.arange(3 * 8 * 8, dtype=torch.uint8).view(1, 3, 8, 8).expand(N // 4, 3, 8, 8)
    recipe = get_recipe("small-data", crop="none", hflip=True, randaugment=False, mixup=0,
                        cutmix=0, random_erasing=0)
    augment = BatchAugment(recipe, 2, Preprocessing(mean=(0, 0, 0), std=(1, 1, 1)), (8, 8),
                           (8, 8))
    torch.manual_seed(1)
    out, _ = augment(image, torch.zeros(len(image), dtype=torch.long))
    plain = image.float() / 255
    same = (out - plain).abs().amax(dim=(1, 2, 3)) < 1e-5
    mirrored = (out - plain.flip(-1)).abs().amax(dim=(1, 2, 3)) < 1e-5
    assert (same ^ mirrored).all()
    assert abs(float(mirrored.float().mean()) - 0.5) < 0.05


def test_randaugment_ops_fire_as_often_as_torchvisions(monkeypatch):
    torch.manual_seed(2)
    ops, signs = draw_ops(N, 2)
    ours = torch.bincount(ops.flatten(), minlength=len(OPS)).float() / ops.numel()
    seen = []
    transform = v2.RandAugment(num_ops=2, magnitude=9)
    original = transform._apply_image_or_video_transform

    def spy(image, name, *args, **kwargs):
        seen.append(name)
        return original(image, name, *args, **kwargs)

    monkeypatch.setattr(transform, "_apply_image_or_video_transform", spy)
    image = torch.zeros(3, 4, 4, dtype=torch.uint8)
    for _ in range(N):
        transform(image)
    theirs = torch.tensor([seen.count(name) for name in OPS], dtype=torch.float32) / len(seen)
    assert len(seen) == 2 * N
    # Each op's share: 1/14 with a standard error of ~0.003 at 8,000 draws.
    assert (ours - theirs).abs().max() < 0.015 and (ours - 1 / 14).abs().max() < 0.012
    assert abs(float((signs < 0).float().mean()) - 0.5) < 0.03


@pytest.mark.parametrize("name", sorted(COLOUR_OPS))
def test_each_colour_op_does_what_torchvisions_does(name):
    torch.manual_seed(3)
    pixels = torch.randint(0, 256, (4, 3, 12, 12), dtype=torch.uint8)
    x = pixels.float() / 255
    amount = magnitude_of(name, 9, (12, 12))
    factor = torch.full((4,), 1.0 + amount)
    ours = COLOUR_OPS[name](x, factor, amount)
    theirs = {
        "Brightness": lambda: TF.adjust_brightness(x, 1 + amount),
        "Color": lambda: TF.adjust_saturation(x, 1 + amount),
        "Contrast": lambda: TF.adjust_contrast(x, 1 + amount),
        "Sharpness": lambda: TF.adjust_sharpness(x, 1 + amount),
        "Posterize": lambda: TF.posterize(pixels, int(amount)).float() / 255,
        "Solarize": lambda: TF.solarize(x, amount),
        "AutoContrast": lambda: TF.autocontrast(x),
        "Equalize": lambda: TF.equalize(pixels).float() / 255,
    }[name]()
    assert (ours - theirs).abs().max() < 1.5 / 255


def test_a_translation_moves_the_image_by_its_magnitude():
    image = torch.zeros(1, 1, 32, 32)
    image[0, 0, 10, 10] = 1.0
    ops = torch.tensor([[OPS.index("TranslateX"), OPS.index("Identity")]])
    shift = magnitude_of("TranslateX", 9, (32, 32))
    inverse = geometric_inverse(ops, torch.ones(1, 2), 9, (32, 32))
    out = resample(image, whole_boxes(1, 32, 32), torch.zeros(1, dtype=torch.bool), inverse,
                   (32, 32))
    column = (out[0, 0, 10] * torch.arange(32)).sum() / out[0, 0, 10].sum()
    assert abs(float(column) - (10 + shift)) < 1e-3
    rotate = torch.tensor([[OPS.index("Rotate"), OPS.index("Identity")]])
    inverse = geometric_inverse(rotate, torch.ones(1, 2), 9, (32, 32))
    centre = torch.tensor([16.0, 16.0, 1.0])
    assert torch.allclose(inverse[0] @ centre, centre, atol=1e-5)  # about the centre


def test_erased_areas_match_torchvision():
    torch.manual_seed(4)
    ours = erase_boxes(N, 32, 32, probability=0.5)
    erased = ours[:, 2] > 0
    assert abs(float(erased.float().mean()) - 0.5) < 0.03
    image = torch.zeros(3, 32, 32)
    theirs = torch.tensor([v2.RandomErasing.get_params(image, (0.02, 0.33), (0.3, 3.3), [0.0])[:4]
                           for _ in range(N)], dtype=torch.float32)
    area = lambda b: b[:, 2] * b[:, 3] / 1024  # noqa: E731
    _close(area(ours[erased]), area(theirs[theirs[:, 2] < 32]))


@pytest.mark.parametrize("kind", ["mixup", "cutmix"])
def test_mixing_keeps_targets_probabilities_with_the_pixels_share(kind):
    torch.manual_seed(5)
    x = torch.stack([torch.zeros(3, 16, 16), torch.ones(3, 16, 16)])
    targets = torch.tensor([0, 1])
    lams = []
    for _ in range(400):
        mixed, probs = mix(x, targets, 2, kind, alpha=1.0)
        assert torch.allclose(probs.sum(dim=1), torch.ones(2))
        # image 0 is all zeros mixed with image 1 (ones): its mean is the share of class 1
        assert abs(float(mixed[0].mean()) - float(probs[0, 1])) < 1e-5
        lams.append(float(probs[0, 0]))
    # torchvision's own: Beta(1, 1) for MixUp; for CutMix the box is clipped at the border,
    # which raises the share kept.
    peer = v2.MixUp(alpha=1.0, num_classes=2) if kind == "mixup" else \
        v2.CutMix(alpha=1.0, num_classes=2)
    theirs = [float(peer(x, targets)[1][0, 0]) for _ in range(400)]
    _close(torch.tensor(lams), torch.tensor(theirs))


def test_the_whole_recipe_is_reproducible_under_the_trainers_seeding():
    recipe = get_recipe("small-data")  # crops, flips, RandAugment, erasing, MixUp/CutMix
    augment = BatchAugment(recipe, 10, Preprocessing(crop_pct=1.0), (32, 32), (40, 40))
    images = torch.randint(0, 256, (16, 3, 40, 40), dtype=torch.uint8)
    targets = torch.randint(0, 10, (16,))
    outputs = []
    for seed in (7, 7, 8):
        torch.manual_seed(seed)
        outputs.append(augment(images, targets))
    assert torch.equal(outputs[0][0], outputs[1][0]) and torch.equal(outputs[0][1], outputs[1][1])
    assert not torch.equal(outputs[0][0], outputs[2][0])
    assert outputs[0][0].shape == (16, 3, 32, 32) and torch.isfinite(outputs[0][0]).all()
    grey = BatchAugment(recipe, 10, Preprocessing.default(1), (8, 8), (8, 8))
    out, _ = grey(torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8), targets[:4])
    assert out.shape == (4, 1, 8, 8)
