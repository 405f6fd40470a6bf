"""Images: every kind of awkward or broken file either decodes to a correct upright
RGB/L image or raises ImageDecodeError with a reason; nothing else escapes, nothing hangs."""

from __future__ import annotations

import io
import os
import struct
import time
import warnings
import zlib

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from vitkit.data.decode import load_image
from vitkit.data.images import ImageDecodeError, decode_image, image_size


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image).astype(int)


def _save(image: Image.Image, path, **kwargs):
    image.save(path, **kwargs)
    return path


@pytest.fixture
def jpeg_bytes() -> bytes:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture
def png_bytes() -> bytes:
    rng = np.random.default_rng(1)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


# -- files that must be refused --------------------------------------------------------------
def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageDecodeError, match="empty"):
        decode_image(path)


def test_truncated_jpeg(tmp_path, jpeg_bytes):
    path = tmp_path / "cut.jpg"
    path.write_bytes(jpeg_bytes[: len(jpeg_bytes) // 2])
    with pytest.raises(ImageDecodeError, match="truncated"):
        decode_image(path)


def test_truncated_png(tmp_path, png_bytes):
    path = tmp_path / "cut.png"
    path.write_bytes(png_bytes[: len(png_bytes) // 2])
    with pytest.raises(ImageDecodeError) as info:
        decode_image(path)
    assert info.value.path == str(path) and info.value.reason


def test_text_named_jpg(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a picture\n" * 20)
    with pytest.raises(ImageDecodeError, match="not an image"):
        decode_image(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageDecodeError, match="no such file"):
        decode_image(tmp_path / "nope.png")
    with pytest.raises(ImageDecodeError):
        decode_image(tmp_path)


def test_pipe_named_png_does_not_block(tmp_path):
    path = tmp_path / "pipe.png"
    os.mkfifo(path)
    with pytest.raises(ImageDecodeError, match="not a regular file"):
        decode_image(path)


def test_large_jpeg_shrunk_on_decode(tmp_path):
    image = Image.new("RGB", (800, 600), (250, 10, 10))
    path = _save(image, tmp_path / "photo.jpg", quality=90)
    assert decode_image(path).size == (800, 600)
    shrunk = decode_image(path, min_size=(64, 64))
    assert 64 <= min(shrunk.size) and shrunk.size[0] <= 200  # 1/4 or 1/8 scale
    pixels = load_image(str(path), (32, 32), "RGB")
    assert pixels.shape == (3, 32, 32) and abs(int(pixels[0, 16, 16]) - 250) < 12


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_decompression_bomb_header_is_refused_quickly(tmp_path):
    # A 100,000 x 100,000 RGB PNG header (30 GB decoded) with a few bytes of data.
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    data = (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + _png_chunk(b"IEND", b""))
    path = tmp_path / "bomb.png"
    path.write_bytes(data)
    start = time.perf_counter()
    with pytest.raises(ImageDecodeError, match="decompression bomb"):
        decode_image(path)
    assert time.perf_counter() - start < 2.0


def test_bomb_over_a_lowered_limit(tmp_path, monkeypatch):
    path = _save(Image.new("RGB", (64, 64), "red"), tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 4,096 pixels is now "over"
    with pytest.raises(ImageDecodeError, match="decompression bomb"):
        decode_image(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)  # over, but Pillow only warns
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # even when warnings are errors, the reason is right
        with pytest.raises(ImageDecodeError, match="decompression bomb"):
            decode_image(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)
    assert decode_image(path).size == (64, 64)


# -- modes that must be converted correctly --------------------------------------------------
def test_cmyk_jpeg_to_rgb(tmp_path):
    image = Image.new("CMYK", (16, 16), (0, 0, 0, 0))  # white
    image.paste((0, 255, 255, 0), (0, 0, 8, 16))  # red on the left half
    path = _save(image, tmp_path / "cmyk.jpg", quality=95)
    out = decode_image(path, "RGB")
    assert out.mode == "RGB" and out.size == (16, 16)
    px = _pixels(out)
    assert np.abs(px[8, 2] - [255, 0, 0]).max() < 30
    assert np.abs(px[8, 13] - [255, 255, 255]).max() < 30


def test_16_bit_png_scaled_to_8_bits(tmp_path):
    array = np.array([[0, 65535], [32768, 1000]], dtype=np.uint16)
    path = _save(Image.fromarray(array), tmp_path / "deep.png")
    assert Image.open(path).mode.startswith("I")
    grey = _pixels(decode_image(path, "L"))
    assert grey.tolist() == [[0, 255], [128, 4]]
    rgb = _pixels(decode_image(path, "RGB"))
    assert rgb.shape == (2, 2, 3) and (rgb[..., 0] == grey).all()


def test_palette_with_transparency_on_white(tmp_path):
    image = Image.new("P", (4, 4), 0)
    image.putpalette([0, 0, 255] + [255, 0, 0] * 255)  # index 0 blue, others red
    image.putpixel((0, 0), 1)
    image.info["transparency"] = 0  # blue is transparent
    path = _save(image, tmp_path / "palette.png", transparency=0)
    px = _pixels(decode_image(path, "RGB"))
    assert px[0, 0].tolist() == [255, 0, 0]
    assert px[2, 2].tolist() == [255, 255, 255]  # transparent -> white, not blue


def test_rgba_and_la_composited(tmp_path):
    rgba = Image.new("RGBA", (2, 2), (0, 0, 0, 0))
    rgba.putpixel((0, 0), (0, 0, 0, 255))
    rgba.putpixel((1, 0), (0, 0, 0, 128))
    px = _pixels(decode_image(_save(rgba, tmp_path / "a.png"), "RGB"))
    assert px[0, 0].tolist() == [0, 0, 0]
    assert px[1, 1].tolist() == [255, 255, 255]
    assert 120 <= px[0, 1, 0] <= 135  # half-transparent black over white
    la = Image.new("LA", (2, 2), (10, 255))
    assert _pixels(decode_image(_save(la, tmp_path / "la.png"), "L")).tolist() == [[10, 10]] * 2


def test_rgba_over_white_is_alpha_composite_bit_for_bit(tmp_path):
    # to_mode pastes through the alpha channel (it frees the GIL); the pixels must be those of
    # Pillow's alpha_composite over opaque white for every colour value and alpha.
    values = np.zeros((256, 256, 4), np.uint8)
    values[..., 0] = np.arange(256)[:, None]
    values[..., 1] = 255 - np.arange(256)[:, None]
    values[..., 2] = 7
    values[..., 3] = np.arange(256)[None, :]
    rgba = Image.fromarray(values, "RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    expected = np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    assert (_pixels(decode_image(_save(rgba, tmp_path / "all.png"), "RGB")) == expected).all()


def test_grayscale_and_bilevel(tmp_path):
    grey = Image.new("L", (3, 3), 77)
    rgb = _pixels(decode_image(_save(grey, tmp_path / "g.png"), "RGB"))
    assert rgb.shape == (3, 3, 3) and (rgb == 77).all()
    bilevel = Image.new("1", (3, 3), 1)
    assert (_pixels(decode_image(_save(bilevel, tmp_path / "b.png"), "L")) == 255).all()
    colour = Image.new("RGB", (3, 3), (255, 0, 0))
    assert _pixels(decode_image(_save(colour, tmp_path / "c.png"), "L"))[0, 0] == 76


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_exif_orientation_applied(tmp_path, suffix):
    # Stored 16 wide x 8 high, red on top, blue below; orientation 6 = rotate 90 CW to show.
    image = Image.new("RGB", (16, 8), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 16, 4))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = _save(image, tmp_path / f"rotated{suffix}", exif=exif.tobytes())
    out = decode_image(path)
    assert out.size == (8, 16)  # now 8 wide x 16 high
    assert image_size(path) == (16, 8)  # (height, width) from the header, upright
    px = _pixels(out)
    assert px[8, 6, 0] > 200 and px[8, 6, 2] < 60  # top went to the right: red
    assert px[8, 1, 2] > 200 and px[8, 1, 0] < 60  # bottom went to the left: blue


def test_animated_gif_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert getattr(Image.open(path), "n_frames", 1) == 2
    px = _pixels(decode_image(path))
    assert px[4, 4].tolist() == [255, 0, 0]


def test_very_small_and_very_large(tmp_path):
    tiny = _save(Image.new("RGB", (1, 1), (9, 99, 199)), tmp_path / "tiny.png")
    resized = load_image(str(tiny), (16, 16), "RGB")
    assert resized.shape == (3, 16, 16)
    assert (resized.permute(1, 2, 0) == torch.tensor([9, 99, 199], dtype=torch.uint8)).all()
    large = Image.new("L", (6000, 4000), 200)  # 24 M pixels: under the limit, decodes
    path = _save(large, tmp_path / "large.png")
    assert decode_image(path, "L").size == (6000, 4000)
    small = load_image(str(path), (8, 8), "RGB")
    assert small.shape == (3, 8, 8) and (small == 200).all()


def test_mode_must_be_rgb_or_l(tmp_path):
    path = _save(Image.new("RGB", (2, 2)), tmp_path / "x.png")
    with pytest.raises(ValueError, match="mode"):
        decode_image(path, "CMYK")


# -- fuzzing: only images or ImageDecodeError come out --------------------------------------
@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_decode_never_raises_anything_else(tmp_path, png_bytes, jpeg_bytes, data):
    base = data.draw(st.sampled_from([png_bytes, jpeg_bytes, b"GIF89a", b""]))
    mutated = bytearray(base[: data.draw(st.integers(0, len(base)))])
    for _ in range(data.draw(st.integers(0, 8))):
        if mutated:
            position = data.draw(st.integers(0, len(mutated) - 1))
            mutated[position] = data.draw(st.integers(0, 255))
    mutated += data.draw(st.binary(max_size=64))
    path = tmp_path / f"fuzz{data.draw(st.sampled_from(['.png', '.jpg', '.gif']))}"
    path.write_bytes(bytes(mutated))
    try:
        image = decode_image(path, data.draw(st.sampled_from(["RGB", "L"])))
    except ImageDecodeError as error:
        assert error.reason
    else:
        assert image.mode in ("RGB", "L") and image.size[0] > 0
