"""load_splits over every source kind on tiny generated data: image folders (with and without
train/val/test), CSV, digits, torchvision sets; splits, sizes, channels, errors and the cache."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vitkit.data.decode as decode_module
from tests.conftest import COLOURS, make_class_folder
from vitkit.data import load_splits
from vitkit.data.cache import clear_memory_cache
from vitkit.data.transforms import normalize, resize_batch, resize_crop

pytestmark = pytest.mark.usefixtures("private_cache")  # a cold cache in memory for each test


@pytest.fixture
def cache(tmp_path) -> str:
    return str(tmp_path / "cache")


def _colour_ok(dataset) -> bool:
    """Every image's strongest channel is its class colour's channel."""
    names = list(COLOURS)
    channel = {n: int(np.argmax(COLOURS[n])) for n in names}
    strongest = dataset.images.float().mean(dim=(2, 3)).argmax(dim=1)
    expected = torch.tensor([channel[dataset.classes[t]] for t in dataset.targets])
    return bool((strongest == expected).all())


def test_single_folder_with_val_split(tmp_path, cache):
    root = make_class_folder(tmp_path / "pets", {"cat": 10, "dog": 10, "emu": 5})
    splits = load_splits(str(root), val_split=0.2, seed=3, cache_dir=cache, progress=False)
    assert splits.name == "pets" and splits.test is None
    assert splits.train.classes == ["cat", "dog", "emu"]
    assert len(splits.train) + len(splits.val) == 25
    assert torch.bincount(splits.val.targets).tolist() == [2, 2, 1]  # stratified
    assert splits.train.images.dtype == torch.uint8
    assert splits.train.image_shape == (3, 8, 8)
    assert _colour_ok(splits.train) and _colour_ok(splits.val)


def test_val_split_is_deterministic_per_seed(tmp_path, cache):
    root = make_class_folder(tmp_path / "pets", {"cat": 12, "dog": 12})

    def val_images(seed):
        clear_memory_cache()
        val = load_splits(str(root), val_split=0.25, seed=seed, cache_dir=cache,
                          progress=False).val
        return val.images

    assert torch.equal(val_images(1), val_images(1))
    assert not torch.equal(val_images(1), val_images(2))


def _spy_decoding(monkeypatch) -> list[str]:
    """The files `decode_image` is asked for from now on (one entry per attempt)."""
    calls: list[str] = []
    real = decode_module.decode_image
    monkeypatch.setattr(decode_module, "decode_image",
                        lambda path, mode, **kw: calls.append(path) or real(path, mode, **kw))
    return calls


def _val_full_and_alone(root, tmp_path, monkeypatch, **options):
    """The val of a full load and of a load of val alone (each from a cold cache), and the
    files each decoded."""
    calls = _spy_decoding(monkeypatch)
    full = load_splits(str(root), cache_dir=str(tmp_path / "c1"), progress=False, **options)
    full_calls = list(calls)
    calls.clear()
    clear_memory_cache()
    alone = load_splits(str(root), cache_dir=str(tmp_path / "c2"), progress=False, only="val",
                        **options)
    return full, full_calls, alone, list(calls)


def test_val_alone_decodes_only_the_val_files_and_matches_a_full_load(tmp_path, monkeypatch):
    # 8 images at 8x8 and 7 at 12x16: the most common size of all is 8x8, but val alone
    # (2 cats, 2 dogs, 4 emus) would tie and pick 12x16; val must keep train's size.
    root = make_class_folder(tmp_path / "pets", {"cat": 4, "dog": 4})
    make_class_folder(root, {"emu": 7}, size=(12, 16))
    full, full_calls, alone, alone_calls = _val_full_and_alone(
        root, tmp_path, monkeypatch, val_split=0.5, seed=7)
    assert len(full_calls) == 15 and len(full.train) + len(full.val) == 15
    assert alone.train is None and alone.test is None
    assert len(alone_calls) == len(full.val) == 8  # only the val files were decoded
    assert set(alone_calls) < set(full_calls)
    assert alone.val.image_shape == full.val.image_shape == (3, 8, 8)
    assert torch.equal(alone.val.images, full.val.images)
    assert torch.equal(alone.val.targets, full.val.targets)
    assert torch.bincount(alone.val.targets).tolist() == [2, 2, 4]
    other_seed = load_splits(str(root), cache_dir=str(tmp_path / "c3"), progress=False,
                             only="val", val_split=0.5, seed=8)
    assert not torch.equal(other_seed.val.images, full.val.images)


def test_val_alone_matches_a_full_load_with_broken_files(tmp_path, monkeypatch):
    root = make_class_folder(tmp_path / "pets", {"cat": 6, "dog": 6})
    for i in range(3):
        (root / "cat" / f"{i}broken.png").write_bytes(b"not a png")
    broken_in_val = []
    for seed in range(4):
        clear_memory_cache()
        full, _, alone, alone_calls = _val_full_and_alone(
            root, tmp_path / str(seed), monkeypatch, val_split=0.3, seed=seed)
        assert torch.equal(alone.val.images, full.val.images)
        assert torch.equal(alone.val.targets, full.val.targets)
        assert alone.val.skipped == full.val.skipped
        assert len(alone_calls) == len(full.val) + len(full.val.skipped)
        skipped = [path for path, _ in full.train.skipped + full.val.skipped]
        assert sorted(os.path.basename(path) for path in skipped) == [
            "0broken.png", "1broken.png", "2broken.png"]  # each listed once
        broken_in_val.append(len(full.val.skipped))
    assert max(broken_in_val) > 0 and min(broken_in_val) < 3  # both parts had broken files


def test_val_folder_alone_is_decoded_alone_at_the_size_of_train(tmp_path, monkeypatch):
    make_class_folder(tmp_path / "d" / "train", {"cat": 3, "dog": 3})
    make_class_folder(tmp_path / "d" / "val", {"cat": 2, "dog": 2}, size=(12, 16))
    # val/ wins over val_split, so train/ need not be decoded even with one given
    full, _, alone, alone_calls = _val_full_and_alone(tmp_path / "d", tmp_path, monkeypatch,
                                                      val_split=0.5)
    assert len(full.val) == 4 and full.val.image_shape == (3, 8, 8)
    assert len(alone_calls) == 4 and all("/val/" in path for path in alone_calls)
    assert torch.equal(alone.val.images, full.val.images)


def test_train_val_test_layout(tmp_path, cache):
    make_class_folder(tmp_path / "d" / "train", {"cat": 4, "dog": 4})
    make_class_folder(tmp_path / "d" / "val", {"cat": 2, "dog": 1})
    make_class_folder(tmp_path / "d" / "test", {"cat": 1, "dog": 3}, fmt="jpg")
    splits = load_splits(str(tmp_path / "d"), cache_dir=cache, progress=False)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (8, 3, 4)
    assert splits.test.targets.tolist() == [0, 1, 1, 1]
    assert _colour_ok(splits.test)
    assert splits.get("val") is splits.val
    with pytest.raises(ValueError, match="split"):
        splits.get("dev")


def test_train_with_test_only_and_val_split(tmp_path, cache):
    make_class_folder(tmp_path / "d" / "train", {"cat": 6, "dog": 6})
    make_class_folder(tmp_path / "d" / "test", {"cat": 1, "dog": 1})
    splits = load_splits(str(tmp_path / "d"), val_split=0.5, cache_dir=cache, progress=False)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (6, 6, 2)
    with pytest.raises(ValueError, match="no val split"):
        load_splits(str(tmp_path / "d"), cache_dir=cache, progress=False).get("val")


def test_class_mismatch_names_the_difference(tmp_path, cache):
    make_class_folder(tmp_path / "d" / "train", {"cat": 2, "dog": 2})
    make_class_folder(tmp_path / "d" / "val", {"cat": 1, "emu": 1})
    with pytest.raises(ValueError, match=r"val.*'dog'.*'emu'|'dog'.*val.*'emu'"):
        load_splits(str(tmp_path / "d"), cache_dir=cache, progress=False)


def test_csv_source(tmp_path, cache):
    root = make_class_folder(tmp_path / "imgs", {"cat": 3, "dog": 3})
    lines = ["path,label"] + [f"imgs/{c}/{i}.png,{c}" for c in ("dog", "cat") for i in range(3)]
    (tmp_path / "list.csv").write_text("\n".join(lines) + "\n")
    splits = load_splits(str(tmp_path / "list.csv"), cache_dir=cache, progress=False)
    assert splits.train.classes == ["cat", "dog"] and len(splits.train) == 6
    assert splits.train.targets.tolist() == [1, 1, 1, 0, 0, 0]
    assert _colour_ok(splits.train)
    assert root.exists()
    (tmp_path / "bad.csv").write_text("only-one-column\n")
    with pytest.raises(ValueError, match="path,label"):
        load_splits(str(tmp_path / "bad.csv"), cache_dir=cache, progress=False)


def test_digits_builtin():
    splits = load_splits("digits", val_split=0.1, progress=False)
    assert splits.train.image_shape == (1, 8, 8)
    assert len(splits.train) + len(splits.val) + len(splits.test) == 1797
    assert len(splits.test) == 360
    bigger = load_splits("digits", img_size=16, in_chans=3, progress=False)
    assert bigger.test.image_shape == (3, 16, 16)


def test_mixed_sizes_go_to_most_common_or_asked(tmp_path, cache):
    root = make_class_folder(tmp_path / "d", {"cat": 3, "dog": 2}, size=(12, 16))
    make_class_folder(root, {"emu": 2}, size=(30, 20))
    splits = load_splits(str(root), cache_dir=cache, progress=False)
    assert splits.train.image_shape == (3, 12, 16)
    assert _colour_ok(splits.train)
    asked = load_splits(str(root), img_size=(8, 4), in_chans=1, cache_dir=cache, progress=False)
    assert asked.train.image_shape == (1, 8, 4)


def test_bad_images_are_skipped_listed_and_logged(tmp_path, cache, caplog):
    root = make_class_folder(tmp_path / "d", {"cat": 3, "dog": 3})
    (root / "cat" / "empty.png").write_bytes(b"")
    (root / "dog" / "text.jpg").write_text("hello")
    data = (root / "dog" / "0.png").read_bytes()
    (root / "dog" / "cut.png").write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING, logger="vitkit"):
        splits = load_splits(str(root), cache_dir=cache, progress=False)
    assert len(splits.train) == 6
    skipped = dict(splits.train.skipped)
    assert set(map(os.path.basename, skipped)) == {"empty.png", "text.jpg", "cut.png"}
    assert "empty" in skipped[str(root / "cat" / "empty.png")]
    assert "skipped 3 of 9 files" in caplog.text
    clear_memory_cache()  # the list survives a reload from the disk cache
    again = load_splits(str(root), cache_dir=cache, progress=False)
    assert dict(again.train.skipped) == skipped


def test_all_files_bad_is_an_error(tmp_path, cache):
    for name in ("a", "b"):
        (tmp_path / "d" / name).mkdir(parents=True)
        (tmp_path / "d" / name / "x.png").write_text("not an image")
    with pytest.raises(ValueError, match="could be"):
        load_splits(str(tmp_path / "d"), cache_dir=cache, progress=False)


def test_missing_empty_and_single_class_errors(tmp_path, cache):
    with pytest.raises(FileNotFoundError, match="no data at"):
        load_splits(str(tmp_path / "nowhere"), cache_dir=cache)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no class sub-folders"):
        load_splits(str(tmp_path / "empty"), cache_dir=cache)
    make_class_folder(tmp_path / "one", {"cat": 3})
    with pytest.raises(ValueError, match="single class"):
        load_splits(str(tmp_path / "one"), cache_dir=cache)
    make_class_folder(tmp_path / "hollow", {"cat": 2})
    (tmp_path / "hollow" / "dog").mkdir()
    with pytest.raises(ValueError, match=r"\['dog'\].*hold no image"):
        load_splits(str(tmp_path / "hollow"), cache_dir=cache)
    with pytest.raises(ValueError, match=r"val_split=1.5 must be a fraction"):
        load_splits("digits", val_split=1.5)
    make_class_folder(tmp_path / "two", {"cat": 2, "dog": 2})
    with pytest.raises(ValueError, match=r"val_split=1.0 must be a fraction"):
        load_splits(str(tmp_path / "two"), val_split=1.0, only="val", cache_dir=cache)


def test_disk_cache_is_reused_and_invalidated(tmp_path, cache, monkeypatch):
    root = make_class_folder(tmp_path / "d", {"cat": 4, "dog": 4})
    calls = []
    real = decode_module.decode_image
    monkeypatch.setattr(decode_module, "decode_image",
                        lambda path, mode, **kw: calls.append(path) or real(path, mode, **kw))
    first = load_splits(str(root), cache_dir=cache, progress=False).train
    assert len(calls) == 8
    assert list(Path(cache).glob("*.safetensors")) and list(Path(cache).glob("*.json"))
    assert not list(Path(cache).glob("*.pkl"))
    clear_memory_cache()
    second = load_splits(str(root), cache_dir=cache, progress=False).train
    assert len(calls) == 8  # no decoding the second time
    assert torch.equal(first.images, second.images) and first.classes == second.classes
    load_splits(str(root), img_size=4, cache_dir=cache, progress=False)
    assert len(calls) == 16  # another size is another cache entry
    changed = root / "cat" / "0.png"
    Image.new("RGB", (8, 8), (200, 0, 0)).save(changed)
    os.utime(changed, ns=(1, 1))
    clear_memory_cache()
    load_splits(str(root), cache_dir=cache, progress=False)
    assert len(calls) == 24  # a changed file decodes afresh


def test_damaged_cache_entry_is_rebuilt(tmp_path, cache, caplog):
    root = make_class_folder(tmp_path / "d", {"cat": 2, "dog": 2})
    first = load_splits(str(root), cache_dir=cache, progress=False).train
    for entry in Path(cache).glob("*.safetensors"):
        entry.write_bytes(entry.read_bytes()[:40])
    clear_memory_cache()
    with caplog.at_level(logging.WARNING, logger="vitkit"):
        again = load_splits(str(root), cache_dir=cache, progress=False).train
    assert "damaged dataset cache" in caplog.text
    assert torch.equal(first.images, again.images)


def _write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_mnist_from_data_dir(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 12), ("t10k", 5)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 255, (n, 28, 28)), 0x803)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10, 0x801)
    splits = load_splits("mnist", data_dir=str(tmp_path), progress=False)
    assert splits.train.image_shape == (1, 28, 28) and len(splits.test) == 5
    assert splits.train.targets.tolist() == [i % 10 for i in range(12)]
    assert len(splits.train.classes) == 10
    rgb = load_splits("mnist", data_dir=str(tmp_path), img_size=32, in_chans=3)
    assert rgb.train.image_shape == (3, 32, 32)


def test_torchvision_offline_and_absent_says_data_dir(tmp_path, monkeypatch):
    monkeypatch.setattr("vitkit.data.tvsets.is_online", lambda host, timeout=3.0: False)
    with pytest.raises(FileNotFoundError, match="data_dir="):
        load_splits("cifar10", cache_dir=str(tmp_path / "c"))
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        load_splits("cifar10", data_dir=str(tmp_path))


def test_transforms():
    images = torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)
    out = normalize(images, [0.5] * 3, [0.5] * 3)
    assert out.dtype == torch.float32 and torch.allclose(out, torch.ones_like(out))
    assert normalize(images, [0.5] * 3, [0.5] * 3, torch.bfloat16).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="channels"):
        normalize(images, [0.5], [0.5])
    resized = resize_batch(images, (8, 6))
    assert resized.shape == (2, 3, 8, 6) and resized.dtype == torch.uint8
    assert resize_batch(images, 4) is images
    wide = torch.zeros(3, 10, 20, dtype=torch.uint8)
    wide[:, :, 5:15] = 255  # a white centre, black sides
    crop = resize_crop(wide, 10, crop_pct=1.0)
    assert crop.shape == (3, 10, 10) and (crop[:, :, 1:9] == 255).all()
    assert resize_crop(wide, 8, crop_pct=0.8).shape == (3, 8, 8)
