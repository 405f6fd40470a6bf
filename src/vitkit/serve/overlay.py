"""The attention rollout laid over the input image, as PNG bytes for the browser."""

from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from PIL import Image

DISPLAY = 256  # pixels on the longer side, at least


def overlay_png(pixels: torch.Tensor, rollout: torch.Tensor, alpha: float = 0.55) -> bytes:
    """uint8 (C, H, W) pixels and a (gh, gw) rollout map: the grey image with the map (scaled
    to its maximum, inferno colours) blended over it, upscaled to at least DISPLAY pixels."""
    height, width = pixels.shape[-2:]
    scale = max(1, -(-DISPLAY // max(height, width)))
    size = (height * scale, width * scale)
    image = F.interpolate(pixels.float()[None], size=size, mode="nearest")[0]
    grey = image.mean(dim=0).numpy() / 255.0
    heat = rollout.detach().float().cpu()
    heat = heat / heat.max().clamp_min(1e-12)
    heat = F.interpolate(heat[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
    colours = colormaps["inferno"](heat.clamp(0, 1).numpy())[..., :3]
    blended = (1 - alpha) * grey[..., None] + alpha * colours
    out = Image.fromarray(np.clip(blended * 255 + 0.5, 0, 255).astype(np.uint8), "RGB")
    buffer = io.BytesIO()
    out.save(buffer, format="PNG")
    return buffer.getvalue()
