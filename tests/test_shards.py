"""Data larger than memory: `vitkit shards` writes tar shards with an index; `--data DIR`
reads them decoded into memory when they fit the budget, else per batch from disk, with the
same pixels either way; training from streamed shards resumes bitwise."""

from __future__ import annotations

import json
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import TINY
from vitkit import create_model
from vitkit.cli.main import main
from vitkit.data import ImageTensorDataset, load_splits
from vitkit.data.shards import ShardedImages
from vitkit.train import TrainRun, get_recipe, train

pytestmark = pytest.mark.usefixtures("private_cache")


@pytest.fixture
def shards(tmp_path):
    """A train/val folder of small PNGs, one large JPEG and one broken file, as shards."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 12), ("val", 4)):
        for label in ("ant", "bee"):
            folder = tmp_path / "photos" / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    Image.fromarray(rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)).save(
        tmp_path / "photos" / "train" / "ant" / "big.jpg", quality=95)
    (tmp_path / "photos" / "train" / "bee" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nxx")
    out = tmp_path / "shards"
    assert main(["shards", "--data", str(tmp_path / "photos"), "--out", str(out),
                 "--img-size", "16", "--shard-size", "1"]) == 0
    return out


def test_shards_hold_every_decodable_image_and_list_the_rest(shards, tmp_path):
    index = json.loads((shards / "index.json").read_text())
    assert index["classes"] == ["ant", "bee"] and index["splits"]["train"]["count"] == 25
    assert index["splits"]["val"]["count"] == 8
    assert len(index["skipped"]) == 1 and "broken.png" in index["skipped"][0][0]
    with tarfile.open(shards / "train-000000.tar") as tar:
        names = tar.getnames()
    assert "000000000.png" in names and "000000000.cls" in names
    assert any(name.endswith(".jpg") for name in names)  # the photo stays a JPEG, shrunk
    original = (tmp_path / "photos" / "train" / "ant" / "0.png").read_bytes()
    with tarfile.open(shards / "train-000000.tar") as tar:  # small files are copied as-is
        assert original in [tar.extractfile(n).read() for n in names if n.endswith(".png")]


def test_in_memory_and_streamed_give_the_same_pixels(shards, caplog):
    caplog.set_level("INFO", logger="vitkit")
    streamed = load_splits(str(shards), img_size=8, memory_budget=0)
    assert isinstance(streamed.train, ShardedImages) and "streamed" in caplog.text
    in_memory = load_splits(str(shards), img_size=8)
    assert isinstance(in_memory.train, ImageTensorDataset) and "into memory" in caplog.text
    indices = torch.tensor([3, 0, 24, 7])
    assert torch.equal(streamed.train.images[indices], in_memory.train.images[indices])
    assert torch.equal(streamed.val.targets, in_memory.val.targets)
    assert streamed.train.images[indices].shape == (4, 3, 8, 8)


def _run(data, out, **kwargs) -> TrainRun:
    torch.manual_seed(0)
    model = create_model("vit_digits_patch2_8", in_chans=3, num_classes=2, **TINY)
    recipe = get_recipe("small-data", epochs=2, batch_size=8, warmup_epochs=0.5, ema_decay=0.9)
    return TrainRun(model=model, train_set=data, recipe=recipe, out_dir=out, seed=4,
                    progress=False, precision="fp32", **kwargs)


@pytest.mark.parametrize("workers", [0, 2], ids=["threads", "processes"])
def test_training_from_streamed_shards_resumes_bitwise_and_matches_memory(shards, tmp_path,
                                                                          workers):
    streamed = load_splits(str(shards), img_size=8, memory_budget=0).train
    in_memory = load_splits(str(shards), img_size=8).train
    train(_run(streamed, tmp_path / "whole", workers=workers))
    train(_run(streamed, tmp_path / "split", stop_after=4, workers=workers))  # mid-epoch
    train(_run(streamed, tmp_path / "split", resume=True, workers=workers))
    train(_run(in_memory, tmp_path / "memory"))
    states = [torch.load(tmp_path / name / "state" / "last.pt", weights_only=True)
              for name in ("whole", "split", "memory")]
    assert states[0]["step"] == 6
    for key, tensor in states[0]["model"].items():
        assert torch.equal(tensor, states[1]["model"][key]), key
        assert torch.equal(tensor, states[2]["model"][key]), key


def test_decoding_on_the_device_gives_the_pixels_of_pillow(shards):
    """The nvJPEG path (torchvision.io.decode_jpeg, here on the CPU) through Feed: PNGs
    exactly as Pillow decodes them, the JPEG (no reduced-scale DCT) within a few levels."""
    from vitkit.train.feed import DeviceDecode, make_feeder

    streamed = load_splits(str(shards), img_size=8, memory_budget=0).train
    jpeg = next(i for i in range(len(streamed)) if streamed.read(i)[:2] == b"\xff\xd8")
    indices = torch.tensor([0, jpeg, 5, 20])
    feed = make_feeder(streamed, torch.device("cpu"), decode_on_device=True)
    assert isinstance(feed, DeviceDecode) and "decode_jpeg" in feed.how
    images, targets = feed.get(indices)
    expected = streamed.images[indices]
    assert images.shape == expected.shape and torch.equal(targets, streamed.targets[indices])
    assert torch.equal(images[[0, 2, 3]], expected[[0, 2, 3]])
    difference = (images[1].float() - expected[1].float()).abs().mean()
    assert jpeg not in (0, 5, 20) and 0 < difference < 8  # Pillow's draft decode differs
    feed.close()


def test_eval_reads_shards(shards, tmp_path, capsys):
    model = create_model("vit_digits_patch2_8", in_chans=3, num_classes=2, img_size=8, **TINY)
    import vitkit

    vitkit.save_pretrained(model, tmp_path / "ck", class_names=["ant", "bee"])
    assert main(["eval", "--checkpoint", str(tmp_path / "ck"), "--data", str(shards),
                 "--split", "val", "--out", str(tmp_path / "ev"), "--fp32"]) == 0
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["count"] == 8
