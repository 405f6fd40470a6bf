"""`vitkit.Classifier`: the Python one-liner for prediction, taking what `vitkit predict` takes
(paths, PIL images, uint8 tensors) and giving its answers."""

from __future__ import annotations

import pytest

import vitkit
from tests.conftest import TINY


def test_classifier_takes_paths_pil_images_and_tensors_as_predict_does(tmp_path):
    import torch
    from PIL import Image

    from vitkit.infer import predict

    model = tiny_random_model()
    path = tmp_path / "a.png"
    Image.new("RGB", (9, 12), (10, 200, 30)).save(path)
    pil = Image.new("RGB", (8, 8), (250, 10, 10))
    pixels = torch.randint(0, 256, (3, 10, 10), dtype=torch.uint8)
    classify = vitkit.Classifier(model, fp32=True)
    answers = classify([path, pil, pixels], top_k=2)
    expected = predict(model, [path, pil, pixels], top_k=2, fp32=True)
    for answer, row in zip(answers, expected, strict=True):
        assert [a["label"] for a in answer] == row.labels
        assert [a["score"] for a in answer] == pytest.approx(row.probs)
    # Scores of one image alone and in a batch of three agree to a tolerance only: oneDNN
    # blocks the matrix products differently per batch size (on AMX CPUs, say).
    alone = classify(pil, top_k=1)
    assert [a["label"] for a in alone] == [answers[1][0]["label"]]
    assert alone[0]["score"] == pytest.approx(answers[1][0]["score"], abs=1e-5)
    stacked = classify(torch.stack([pixels, pixels]), top_k=2)[1]
    assert [a["label"] for a in stacked] == [a["label"] for a in answers[2]]
    assert [a["score"] for a in stacked] == pytest.approx([a["score"] for a in answers[2]],
                                                          abs=1e-5)
    (tmp_path / "bad.png").write_bytes(b"no")
    with pytest.raises(ValueError, match="bad.png"):
        classify(tmp_path / "bad.png")


def tiny_random_model() -> vitkit.VisionTransformer:
    from tests.conftest import randomise

    model = randomise(vitkit.create_model("vit_digits_patch2_8", **{**TINY, "num_classes": 3,
                                                                      "in_chans": 3})).eval()
    model.meta.class_names = ["cat", "dog", "emu"]
    return model
