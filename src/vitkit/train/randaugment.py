"""RandAugment (Cubuk et al., 2020) for a whole batch, each image with its own ops, signs and
magnitudes, as torchvision's `RandAugment` draws them (14 ops, `num_ops` per image, magnitude
`m` of 31 bins), without a Python loop over images.

The shears, translations and rotations are returned as one inverse affine map per image, for
`geometry.resample` to fold into the crop's resampling; the colour ops then run in the order
drawn, each on just the images that drew it. Ops and parameters are drawn on the CPU from
torch's global generator, so the device never waits and a seeded step is reproducible.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

OPS = ("Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness",
       "Color", "Contrast", "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize")
GEOMETRIC = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")
SIGNED = GEOMETRIC + ("Brightness", "Color", "Contrast", "Sharpness")


def magnitude_of(op: str, magnitude: int, size: tuple[int, int], bins: int = 31) -> float:
    """torchvision's magnitude of `op` at bin `magnitude` for an image of `size` (h, w)."""
    fraction = magnitude / (bins - 1)
    height, width = size
    return {
        "ShearX": 0.3 * fraction, "ShearY": 0.3 * fraction,
        "TranslateX": 150.0 / 331.0 * width * fraction,
        "TranslateY": 150.0 / 331.0 * height * fraction,
        "Rotate": 30.0 * fraction,
        "Brightness": 0.9 * fraction, "Color": 0.9 * fraction, "Contrast": 0.9 * fraction,
        "Sharpness": 0.9 * fraction,
        "Posterize": float(int(round(8 - magnitude / ((bins - 1) / 4)))),
        "Solarize": 1.0 - fraction,
    }.get(op, 0.0)


def draw_ops(count: int, num_ops: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image and slot: an op index into OPS and a sign (+1 or -1), on the CPU."""
    ops = torch.randint(len(OPS), (count, num_ops))
    signs = torch.where(torch.rand(count, num_ops) < 0.5, -1.0, 1.0)
    return ops, signs


def geometric_inverse(ops: torch.Tensor, signs: torch.Tensor, magnitude: int,
                      size: tuple[int, int]) -> torch.Tensor:
    """(B, 3, 3): for each image, the map from output pixels back to pre-RandAugment pixels,
    undoing its geometric ops in reverse order (identity for the colour ops). Each op is
    undone by the same op with the opposite amount."""
    count, num_ops = ops.shape
    height, width = size
    inverse = torch.eye(3).repeat(count, 1, 1)
    centre = torch.tensor([[1, 0, width / 2], [0, 1, height / 2], [0, 0, 1.0]])
    uncentre = torch.tensor([[1, 0, -width / 2], [0, 1, -height / 2], [0, 0, 1.0]])
    for slot in range(num_ops):  # forward: slot 0, then slot 1, ...; backward: the reverse
        undo = torch.eye(3).repeat(count, 1, 1)
        for name in GEOMETRIC:
            chosen = ops[:, slot] == OPS.index(name)
            if bool(chosen.any()):
                amount = -signs[chosen, slot] * magnitude_of(name, magnitude, size)
                undo[chosen] = _forward_map(name, amount, centre, uncentre)
        inverse = inverse @ undo
    return inverse


def _forward_map(name: str, amount: torch.Tensor, centre: torch.Tensor,
                 uncentre: torch.Tensor) -> torch.Tensor:
    """(n, 3, 3) forward pixel maps of one geometric op (shears about the top-left corner,
    as torchvision's RandAugment does; rotation about the centre)."""
    maps = torch.eye(3).repeat(len(amount), 1, 1)
    if name == "ShearX":
        maps[:, 0, 1] = amount
    elif name == "ShearY":
        maps[:, 1, 0] = amount
    elif name == "TranslateX":
        maps[:, 0, 2] = amount
    elif name == "TranslateY":
        maps[:, 1, 2] = amount
    else:  # Rotate, degrees
        radians = amount * math.pi / 180
        maps[:, 0, 0], maps[:, 0, 1] = torch.cos(radians), -torch.sin(radians)
        maps[:, 1, 0], maps[:, 1, 1] = torch.sin(radians), torch.cos(radians)
        maps = centre @ maps @ uncentre
    return maps


def apply_colour_ops(images: torch.Tensor, ops: torch.Tensor, signs: torch.Tensor,
                     magnitude: int) -> torch.Tensor:
    """RandAugment's colour ops on float images in [0, 1] (B, C, H, W), slot by slot, each op
    on the images that drew it (the indices are known on the CPU: no device sync)."""
    size = tuple(images.shape[-2:])
    images = images.clone()
    for slot in range(ops.shape[1]):
        for name in OPS:
            if name in GEOMETRIC or name == "Identity":
                continue
            chosen = torch.nonzero(ops[:, slot] == OPS.index(name)).flatten()
            if len(chosen) == 0:
                continue
            factor = 1.0 + signs[chosen, slot] * magnitude_of(name, magnitude, size)
            index = chosen.to(images.device)
            part = images.index_select(0, index)
            part = COLOUR_OPS[name](part, factor.to(images.device),
                                    magnitude_of(name, magnitude, size))
            images.index_copy_(0, index, part)
    return images


def _grey(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(1)
    return (0.2989 * r + 0.587 * g + 0.114 * b).unsqueeze(1)


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    factor = factor.view(-1, 1, 1, 1)
    return (factor * x + (1 - factor) * other).clamp_(0, 1)


def _sharpness(x: torch.Tensor, factor: torch.Tensor, _: float) -> torch.Tensor:
    """Blend with the image smoothed by PIL's kernel [[1,1,1],[1,5,1],[1,1,1]] / 13 (= 9/13 of
    the 3x3 mean plus 4/13 of the centre), the border kept, as PIL and torchvision do."""
    smooth = (9 * F.avg_pool2d(x, 3, stride=1) + 4 * x[..., 1:-1, 1:-1]) / 13
    blurred = x.clone()
    blurred[..., 1:-1, 1:-1] = smooth
    return _blend(x, blurred, factor)


def _posterize(x: torch.Tensor, _: torch.Tensor, bits: float) -> torch.Tensor:
    step = 2 ** (8 - int(bits))
    return torch.floor(torch.round(x * 255) / step) * step / 255


def _solarize(x: torch.Tensor, _: torch.Tensor, threshold: float) -> torch.Tensor:
    return torch.where(x >= threshold, 1 - x, x)


def _autocontrast(x: torch.Tensor, *_: object) -> torch.Tensor:
    low = x.amin(dim=(-2, -1), keepdim=True)
    high = x.amax(dim=(-2, -1), keepdim=True)
    scale = torch.where(high > low, 1 / (high - low).clamp_min(1e-12), torch.ones_like(high))
    low = torch.where(high > low, low, torch.zeros_like(low))
    return ((x - low) * scale).clamp_(0, 1)


def _equalize(x: torch.Tensor, *_: object) -> torch.Tensor:
    """Histogram equalisation per image and channel, torchvision's (PIL's) rule."""
    count, channels, height, width = x.shape
    values = torch.round(x * 255).long().view(count * channels, -1)
    hist = torch.zeros(count * channels, 256, device=x.device).scatter_add_(
        1, values, torch.ones_like(values, dtype=torch.float32))
    last = 255 - torch.flip(hist > 0, dims=[1]).float().argmax(dim=1)  # the top used level
    top_count = hist.gather(1, last[:, None]).squeeze(1)
    step = torch.div(hist.sum(dim=1) - top_count, 255, rounding_mode="floor")
    safe = step.clamp_min(1)[:, None]
    lut = torch.div(torch.cumsum(hist, dim=1) + torch.div(safe, 2, rounding_mode="floor"), safe,
                    rounding_mode="floor")
    lut = torch.cat([torch.zeros_like(lut[:, :1]), lut[:, :-1]], dim=1).clamp_(0, 255)
    equalised = lut.gather(1, values)
    out = torch.where(step[:, None] > 0, equalised, values.float())
    return (out / 255).view(count, channels, height, width)


COLOUR_OPS = {
    "Brightness": lambda x, f, _: (x * f.view(-1, 1, 1, 1)).clamp_(0, 1),
    "Color": lambda x, f, _: _blend(x, _grey(x), f),
    "Contrast": lambda x, f, _: _blend(x, _grey(x).mean(dim=(-3, -2, -1), keepdim=True), f),
    "Sharpness": _sharpness,
    "Posterize": _posterize,
    "Solarize": _solarize,
    "AutoContrast": _autocontrast,
    "Equalize": _equalize,
}
