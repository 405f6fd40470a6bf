"""Safe image decoding: any file Pillow reads becomes an upright RGB or L image, and anything
else (empty, truncated, not an image, a decompression bomb) becomes an `ImageDecodeError`."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

# File name endings treated as images when a folder is listed.
IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm",
     ".tga", ".ico", ".jfif"}
)

MODES = ("RGB", "L")

# What an image may become. Resizing the shorter side of a 30000x1 file to a model's size
# keeps its aspect ratio and makes gigabytes out of a 172-byte PNG, so images longer than
# MAX_ASPECT_RATIO times their width (either way), or that would have more than
# MAX_RESIZED_PIXELS pixels once their shorter side is resized, are refused before decoding.
MAX_ASPECT_RATIO = 32
MAX_RESIZED_PIXELS = 4096 * 4096


class ImageDecodeError(ValueError):
    """A file that could not be decoded into an image; the message names the file and why."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def is_image_file(path: str | os.PathLike) -> bool:
    """Whether `path` has one of the image file endings vitkit lists from folders."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def pixel_limit() -> int | None:
    """Pillow's decompression-bomb pixel limit (read at call time, never raised by vitkit)."""
    return Image.MAX_IMAGE_PIXELS


def _check_pixels(path: str, size: tuple[int, int]) -> None:
    limit = pixel_limit()
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageDecodeError(path, f"the image declares an empty size {width}x{height}")
    if limit is not None and width * height > limit:
        raise ImageDecodeError(
            path,
            f"refused as a possible decompression bomb: {width}x{height} = {width * height:,} "
            f"pixels is over Pillow's limit of {limit:,}",
        )


def shape_problem(width: int, height: int, needed: tuple[int, int] | None = None) -> str | None:
    """Why a width x height image may not be used (too thin, or too large once its shorter
    side is resized to max(`needed`)), or None when it may; read from the header, so a
    refusal costs no decoding."""
    longer, shorter = max(width, height), max(1, min(width, height))
    if longer > MAX_ASPECT_RATIO * shorter:
        return (f"refused as too thin: {width}x{height} pixels has an aspect ratio of "
                f"{longer / shorter:,.0f}:1, over vitkit's limit of {MAX_ASPECT_RATIO}:1")
    if needed is not None:
        side = max(needed)
        resized = side * side * longer // shorter
        if resized > MAX_RESIZED_PIXELS:
            return (f"refused as too large once resized: {width}x{height} pixels with its "
                    f"shorter side at {side} would be {resized:,} pixels, over vitkit's "
                    f"limit of {MAX_RESIZED_PIXELS:,}")
    return None


def _check_shape(path: str, size: tuple[int, int], needed: tuple[int, int] | None) -> None:
    problem = shape_problem(size[0], size[1], needed)
    if problem is not None:
        raise ImageDecodeError(path, problem)


def to_mode(image: Image.Image, mode: str) -> Image.Image:
    """Convert any Pillow mode to RGB or L; transparency is composited onto white."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16/32-bit integer grey: scale to 8 bits (Pillow's convert('L') clips instead).
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") else max(float(array.max()), 1.0)
        image = Image.fromarray(np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    elif image.mode == "F":
        image = image.convert("L")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("LA", "La", "PA"):
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "RGBa"):
        # Pasting through the alpha channel gives alpha_composite's pixels over white, bit for
        # bit, with one full-size copy instead of two and 3x faster; and it lets go of the GIL,
        # which alpha_composite holds (0.4 s for a 49M-pixel image: a server's event loop stalls).
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        image = Image.new("RGB", rgba.size, (255, 255, 255))
        image.paste(rgba, mask=rgba)
        del rgba
    if image.mode != mode:
        image = image.convert(mode)
    return image


def decode_image(
    path: str | os.PathLike, mode: str = "RGB", min_size: tuple[int, int] | None = None
) -> Image.Image:
    """Decode `path` to a fully loaded, upright (EXIF orientation applied) image in `mode`.

    `mode` is 'RGB' or 'L'. Animated files give their first frame. `min_size` (h, w), when
    the caller will shrink the image anyway, lets large JPEGs decode at a reduced scale no
    smaller than it, and refuses images that would be too large once resized to it
    (`shape_problem`; too thin ones are refused always). Raises ImageDecodeError, with the
    reason, for anything that is not a whole, reasonably sized image.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    name = str(path)
    try:
        info = os.stat(name)
        if stat.S_ISDIR(info.st_mode):
            raise ImageDecodeError(name, "it is a folder, not a file")
        if not stat.S_ISREG(info.st_mode):  # a FIFO or device would block or never end
            raise ImageDecodeError(name, "not a regular file (a pipe, socket or device)")
        if info.st_size == 0:
            raise ImageDecodeError(name, "the file is empty (0 bytes)")
        with Image.open(name) as image:
            _check_pixels(name, image.size)
            _check_shape(name, image.size, min_size)
            image.seek(0)  # the first frame of an animated GIF/PNG/WebP
            if min_size is not None and image.format == "JPEG":
                side = max(min_size)  # either orientation: EXIF may still rotate it
                image.draft(image.mode, (side, side))  # decode at 1/2..1/8 scale, still >= it
            image.load()
            ImageOps.exif_transpose(image, in_place=True)  # no copy when already upright
            return to_mode(image, mode)
    except ImageDecodeError:
        raise
    except FileNotFoundError as error:
        raise ImageDecodeError(name, "no such file") from error
    except IsADirectoryError as error:
        raise ImageDecodeError(name, "it is a folder, not a file") from error
    except UnidentifiedImageError as error:
        raise ImageDecodeError(name, "not an image Pillow can read (unknown format)") from error
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        reason = f"refused as a possible decompression bomb ({error})"
        raise ImageDecodeError(name, reason) from error
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError, IndexError) as error:
        reason = str(error) or type(error).__name__
        if "truncated" in reason.lower():
            reason = f"the file is truncated ({reason})"
        raise ImageDecodeError(name, f"could not decode: {reason}") from error
    except Exception as error:  # a Pillow plugin bug must not end a run over one file
        reason = f"could not decode: {type(error).__name__}: {error}"
        raise ImageDecodeError(name, reason) from error


def to_tensor(image: Image.Image, mode: str = "RGB") -> torch.Tensor:
    """A PIL image of any mode as uint8 (C, H, W) pixels in `mode` ('RGB' or 'L')."""
    array = np.asarray(to_mode(image, mode), dtype=np.uint8)
    array = array[:, :, None] if array.ndim == 2 else array
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def check_header(path: str | os.PathLike, needed: tuple[int, int] | None = None) -> int:
    """The pixel count `path`'s header declares, after the checks `decode_image` makes before
    decoding (Pillow's bomb limit, `shape_problem`); 0 when the header cannot be read (the
    decoder then says why). Raises ImageDecodeError for a refused size; decodes nothing."""
    name = str(path)
    try:
        with Image.open(name) as image:
            size = image.size
    except Exception:  # noqa: BLE001 - unreadable headers are reported by decode_image
        return 0
    _check_pixels(name, size)
    _check_shape(name, size, needed)
    return size[0] * size[1]


def image_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """(height, width) of the upright image read from the header only, or None if unreadable."""
    try:
        with Image.open(str(path)) as image:
            width, height = image.size
            # getexif() of a PNG reads the whole file; its header info already has any EXIF.
            has_exif = image.format in ("JPEG", "MPO", "TIFF", "WEBP") or "exif" in image.info
            orientation = image.getexif().get(0x0112, 1) if has_exif else 1
    except Exception:  # noqa: BLE001 - any failure here is reported by decode_image later
        return None
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return height, width
