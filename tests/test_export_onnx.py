"""ONNX export: fp32 logits match vitkit's within 1e-4 on random and real (file) images at any
batch size, the metadata carries what a runtime needs, int8 dynamic and static quantize only
the matrix products, and `vitkit export` / `vitkit predict --backend onnx` work end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import vitkit
from tests.conftest import TOLERANCE, max_diff, one_line_error, tiny_vit
from vitkit.cli.main import main
from vitkit.data import find_images
from vitkit.errors import install_hint
from vitkit.infer.batches import model_inputs
from vitkit.infer.predict import prepare_input

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from vitkit.export import OnnxClassifier, export_onnx, read_metadata  # noqa: E402

CLASSES = ["cat", "dog", "emu"]


def trained_like(**overrides) -> vitkit.VisionTransformer:
    model = tiny_vit(**overrides)
    model.meta.class_names = CLASSES
    model.meta.preprocessing = model.meta.preprocessing.replace(
        mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), crop_pct=0.875)
    return model


def write_images(folder, count: int = 6, seed: int = 0):
    """Photos of odd sizes (smooth gradients plus noise), PNG and JPEG."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        height, width = 30 + 7 * i, 50 - 3 * i
        ramp = np.linspace(0, 255, width)[None, :, None] * rng.uniform(0.2, 1, (1, 1, 3))
        pixels = np.clip(ramp + rng.normal(0, 25, (height, width, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.{'png' if i % 2 else 'jpg'}")
    return folder


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx")
    model = trained_like()
    images = write_images(root / "images")
    paths = {"fp32": export_onnx(model, root / "fp32.onnx"),
             "dynamic": export_onnx(model, root / "dynamic.onnx", int8="dynamic"),
             "static": export_onnx(model, root / "static.onnx", int8="static",
                                   calibration=[images])}
    return model, images, paths


def test_fp32_matches_vitkit_on_random_inputs_at_any_batch_size(exported):
    model, _, paths = exported
    runner = OnnxClassifier(paths["fp32"])
    for batch in (1, 2, 7):
        x = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            expected = model(x)
        got = runner.logits(x)
        assert got.shape == (batch, 3)
        assert max_diff(got, expected) <= TOLERANCE


def test_fp32_matches_vitkit_on_image_files_through_the_metadata(exported):
    model, images, paths = exported
    runner = OnnxClassifier(paths["fp32"])
    files = find_images([str(images)])
    # vitkit's path: the model's own preprocessing; ONNX's: what the file's metadata says.
    pixels = torch.stack([prepare_input(model, f) for f in files])
    with torch.no_grad():
        expected = model(model_inputs(model, pixels))
    got = runner.logits(runner.inputs(torch.stack([runner.load(f) for f in files])))
    assert max_diff(got, expected) <= TOLERANCE
    assert expected.std() > 0.05  # the images really give different logits


def test_metadata_round_trips(exported):
    model, _, paths = exported
    meta = read_metadata(paths["fp32"])
    assert meta["class_names"] == CLASSES
    assert meta["img_size"] == [32, 32] and meta["in_chans"] == 3
    assert meta["preprocessing"] == model.meta.preprocessing.to_dict()
    assert meta["num_parameters"] == sum(p.numel() for p in model.parameters())
    assert meta["quantization"] == "none"
    runner = OnnxClassifier(paths["static"])
    assert runner.preprocessing == model.meta.preprocessing
    assert runner.class_names == CLASSES and runner.metadata["quantization"] == "int8-static"


def _op_types(path) -> set[str]:
    import onnx

    return {node.op_type for node in onnx.load(str(path)).graph.node}


def test_int8_quantizes_matrix_products_and_keeps_norms_softmax_gelu_in_float(exported):
    _, _, paths = exported
    dynamic, static, fp32 = (_op_types(paths[k]) for k in ("dynamic", "static", "fp32"))
    assert "MatMul" in fp32 and not ({"MatMulInteger", "DynamicQuantizeLinear"} & fp32)
    assert {"MatMulInteger", "DynamicQuantizeLinear"} & dynamic
    assert {"QLinearMatMul", "QuantizeLinear", "DequantizeLinear"} <= static
    # the patch projection: float in dynamic int8 (ConvInteger is slow), int8 in static
    assert "Conv" in dynamic and "ConvInteger" not in dynamic
    assert "QLinearConv" in static and "Conv" not in static
    # dynamic: each attention is one QAttention (its softmax inside, in float), but the last
    # block's, which computes the [class] query alone (not ONNX Runtime's Attention)
    assert "QAttention" in dynamic
    assert "Softmax" in static and "QAttention" not in static
    for ops in (dynamic, static):
        assert "Erf" in ops and "LayerNormalization" in ops  # GELU and the norms in float
    assert paths["dynamic"].stat().st_size < 0.5 * paths["fp32"].stat().st_size


def test_onnx_runtime_threads_spin_during_a_run_and_stop_after_it(exported):
    """Spinning between operators is what makes batch 1 fast; threads still spinning after
    run() returns would take the CPU from whatever the process does next (measured, not
    tested here: CPU seconds of an idle process differ by ~0.02 s, too close for a test)."""
    _, _, paths = exported
    options = OnnxClassifier(paths["dynamic"], threads=2).session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    assert options.get_session_config_entry("session.force_spinning_stop") == "1"


def test_int8_logits_stay_close_to_fp32(exported):
    model, images, paths = exported
    files = find_images([str(images)])
    fp32 = OnnxClassifier(paths["fp32"])
    inputs = fp32.inputs(torch.stack([fp32.load(f) for f in files]))
    reference = fp32.logits(inputs)
    for kind in ("dynamic", "static"):
        got = OnnxClassifier(paths[kind]).logits(inputs)
        assert torch.isfinite(got).all()
        # int8 error well under the spread of the logits themselves
        assert max_diff(got, reference) < 0.5 * (reference.max() - reference.min()), kind


def test_static_needs_calibration_images(tmp_path):
    with pytest.raises(ValueError, match="calibration"):
        export_onnx(trained_like(), tmp_path / "s.onnx", int8="static")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        export_onnx(trained_like(), tmp_path / "s.onnx", int8="static",
                    calibration=[tmp_path / "empty"])
    assert not (tmp_path / "s.onnx").exists()


def test_cli_export_then_predict_with_onnx_backend(tmp_path, capsys):
    model = trained_like()
    vitkit.save_pretrained(model, tmp_path / "ckpt", class_names=CLASSES)
    images = write_images(tmp_path / "images", count=4, seed=1)
    (images / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "model.onnx"
    assert main(["export", str(tmp_path / "ckpt"), str(out), "--format", "onnx"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert main(["predict", "--checkpoint", str(tmp_path / "ckpt"), str(images), "--format",
                 "json", "--fp32", "--topk", "3"]) == 0
    torch_rows = json.loads(capsys.readouterr().out)
    assert main(["predict", "--checkpoint", str(out), "--backend", "onnx", str(images),
                 "--format", "json", "--top-k", "3"]) == 0
    onnx_rows = json.loads(capsys.readouterr().out)
    assert [r["source"] for r in onnx_rows] == [r["source"] for r in torch_rows]
    for a, b in zip(onnx_rows, torch_rows, strict=True):
        assert a["labels"] == b["labels"] and a["error"] == b["error"]
        assert np.allclose(a["probs"], b["probs"], atol=1e-4)
    assert sum(r["error"] is not None for r in onnx_rows) == 1


def test_predict_onnx_takes_top_k_and_the_old_topk_with_a_warning(tmp_path):
    from vitkit.infer import predict_onnx

    export_onnx(trained_like(), tmp_path / "m.onnx")
    classifier = OnnxClassifier(tmp_path / "m.onnx")
    images = find_images([write_images(tmp_path / "images", count=2)])
    rows = predict_onnx(classifier, images, top_k=2)
    assert [len(row.labels) for row in rows] == [2, 2]
    with pytest.warns(DeprecationWarning, match=r"predict_onnx\(topk=\.\.\.\) is deprecated"):
        old = predict_onnx(classifier, images, topk=2)
    assert [row.labels for row in old] == [row.labels for row in rows]
    with pytest.raises(ValueError, match=r"^top_k=0 must be at least 1$"):
        predict_onnx(classifier, images, top_k=0)


def test_predict_onnx_takes_what_predict_takes(tmp_path):
    """A file, the same image opened with PIL, its uint8 pixels: the same prediction, as
    through `predict` (pixels at another size are resized the same way); anything else an
    error row, not a crash."""
    from vitkit.infer import predict, predict_onnx

    model = trained_like()
    export_onnx(model, tmp_path / "m.onnx")
    classifier = OnnxClassifier(tmp_path / "m.onnx")
    [path] = find_images([write_images(tmp_path / "images", count=1)])
    image = Image.open(path).convert("RGB")
    pixels = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)
    rows = predict_onnx(classifier, [path, image, pixels, "missing.png", 3.5], top_k=3)
    assert rows[0].labels == rows[1].labels == rows[2].labels
    assert max(abs(a - b) for a, b in zip(rows[0].probs, rows[2].probs, strict=True)) < 1e-6
    assert rows[1].source == "<Image 1>" and rows[2].source == "<Tensor 2>"
    assert not rows[3].ok and "expected a file" in rows[4].error
    eager = predict(model, [path], top_k=3, backend="eager", fp32=True)
    assert eager[0].labels == rows[0].labels


def test_cli_export_errors_are_one_line(tmp_path, capsys):
    vitkit.save_pretrained(trained_like(), tmp_path / "ckpt", class_names=CLASSES)
    code = main(["export", str(tmp_path / "ckpt"), str(tmp_path / "m.txt")])
    one_line_error(capsys, code, ".onnx")
    code = main(["export", str(tmp_path / "ckpt"), str(tmp_path / "m.onnx"), "--int8", "static"])
    one_line_error(capsys, code, "--calibration")
    code = main(["export", str(tmp_path / "ckpt"), str(tmp_path / "m.onnx"), "--opset", "11"])
    one_line_error(capsys, code, "opset")
    images = write_images(tmp_path / "images", count=1)
    code = main(["predict", "--checkpoint", str(tmp_path / "nothing.onnx"), str(images)])
    one_line_error(capsys, code, "nothing.onnx")


def test_missing_extra_is_one_line_naming_it(tmp_path, capsys, monkeypatch):
    vitkit.save_pretrained(trained_like(), tmp_path / "ckpt", class_names=CLASSES)
    monkeypatch.setitem(__import__("sys").modules, "onnx", None)  # as if not installed
    code = main(["export", str(tmp_path / "ckpt"), str(tmp_path / "m.onnx")])
    one_line_error(capsys, code, install_hint("serve"))


def test_predict_onnx_moved_says_where():
    with pytest.raises(ImportError, match="from vitkit.infer import predict_onnx"):
        from vitkit.export import predict_onnx  # noqa: F401


def _nodes(path):
    import onnx

    return list(onnx.load(str(path)).graph.node)


@pytest.mark.parametrize("qkv_bias", [True, False])
def test_dynamic_int8_takes_one_qattention_per_block_or_standard_ops(tmp_path, qkv_bias):
    """Each block's attention becomes ONNX Runtime's QAttention (and the file is only for ONNX
    Runtime), but the last block's: it computes only the [class] query, which QAttention
    cannot. With standard_ops the graph keeps standard ONNX operators. Both give the same
    int8 answers, close to the model's."""
    model = trained_like(depth=3, qkv_bias=qkv_bias)
    fused = export_onnx(model, tmp_path / "fused.onnx", int8="dynamic")
    standard = export_onnx(model, tmp_path / "standard.onnx", int8="dynamic",
                           standard_ops=True)
    attention = [n for n in _nodes(fused) if n.op_type == "QAttention"]
    assert len(attention) == 2 and all(n.domain == "com.microsoft" for n in attention)
    assert [n.op_type for n in _nodes(fused)].count("Softmax") == 1  # the last block's
    assert {n.domain for n in _nodes(standard)} <= {"", "ai.onnx"}
    assert "Softmax" in _op_types(standard)
    inputs = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        reference = model(inputs)
    spread = reference.max() - reference.min()
    for path in (fused, standard):
        assert max_diff(OnnxClassifier(path).logits(inputs), reference) < 0.1 * spread, path


def test_attention_fusion_is_exact_in_fp32_and_refused_when_it_would_change_outputs(
        tmp_path, caplog):
    """The fused fp32 graph gives the exported graph's logits (summation order aside); the
    last block's attention, which computes the [class] query alone, is left as exported; a
    fusion that would change the logits (here: the wrong head count) is dropped with a
    warning."""
    import onnx
    import onnxruntime as ort

    from vitkit.export.fusion import fuse_attention, fused_attention_checked

    model = trained_like(depth=2)
    path = export_onnx(model, tmp_path / "fp32.onnx")
    proto = onnx.load(str(path))
    fused = onnx.ModelProto()
    fused.CopyFrom(proto)
    assert fuse_attention(fused, num_heads=model.config.num_heads) == 1  # not the last's
    assert [n.op_type for n in fused.graph.node].count("Softmax") == 1
    batch = np.random.default_rng(1).standard_normal((3, 3, 32, 32)).astype(np.float32)
    outputs = [ort.InferenceSession(p.SerializeToString(), providers=["CPUExecutionProvider"])
               .run(None, {"pixel_values": batch})[0] for p in (proto, fused)]
    assert np.abs(outputs[0] - outputs[1]).max() < 1e-5 * max(1, np.abs(outputs[0]).max())
    assert fused_attention_checked(proto, model.config.num_heads, (2, 3, 32, 32)) is not proto
    with caplog.at_level("WARNING", logger="vitkit"):
        assert fused_attention_checked(proto, 1, (2, 3, 32, 32)) is proto
    assert "changed the outputs" in caplog.text


def test_a_fused_graph_onnx_runtime_cannot_run_is_refused(tmp_path, caplog, monkeypatch):
    """Without the ranks of its tensors the matcher cannot tell the last block's cut queries
    from index arithmetic, fuses that attention too, and ONNX Runtime fails on the result:
    the exported graph is kept, with a warning, not an error."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from vitkit.export.fusion import fused_attention_checked

    def without_shapes(model):
        bare = onnx.ModelProto()
        bare.CopyFrom(model)
        del bare.graph.value_info[:]
        return bare

    model = trained_like(depth=2)
    # as the int8 export fuses it: after ONNX Runtime's pre-processing, whose fixed shapes
    # are what the wrongly fused graph breaks (the raw graph broadcasts its way through)
    quant_pre_process(str(export_onnx(model, tmp_path / "fp32.onnx")), str(tmp_path / "pre"),
                      skip_symbolic_shape=False)
    proto = onnx.load(str(tmp_path / "pre"))
    monkeypatch.setattr(onnx.shape_inference, "infer_shapes", without_shapes)
    with caplog.at_level("WARNING", logger="vitkit"):
        assert fused_attention_checked(proto, model.config.num_heads, (2, 3, 32, 32)) is proto
    assert "could not run the fused attention" in caplog.text


def test_cli_standard_ops_only_with_int8_dynamic(tmp_path, capsys):
    checkpoint = tmp_path / "ckpt"
    vitkit.save_pretrained(trained_like(), checkpoint, class_names=CLASSES)
    code = main(["export", str(checkpoint), str(tmp_path / "m.onnx"), "--standard-ops"])
    one_line_error(capsys, code, "--standard-ops is only used with --int8 dynamic")
    assert main(["export", str(checkpoint), str(tmp_path / "m.onnx"), "--int8", "dynamic",
                 "--standard-ops"]) == 0
    assert "QAttention" not in _op_types(tmp_path / "m.onnx")


@pytest.mark.parametrize("name", ["deit_tiny_distilled_patch16_224",
                                  "vit_small_patch14_reg4_dinov2",
                                  "vit_base_patch16_clip_quickgelu_224",
                                  "vit_base_patch16_siglip_224", "vit_base_r50_s16_224"])
def test_attention_fuses_in_every_family_as_initialised(tmp_path, name):
    """Every block's attention fuses in each family vitkit builds (distillation token,
    registers, CLIP's pre-norm, SigLIP's attention-pooling head left alone, the hybrid), but a
    last block computing the [class] query alone, with vitkit's own initialisation: its equal
    zero biases reach the graph through Identity nodes."""
    import onnx

    from vitkit.export.fusion import fused_attention_checked

    size = 56 if "patch14" in name else 64
    model = vitkit.create_model(name, depth=2, embed_dim=64, num_heads=2, num_classes=3,
                                img_size=size).eval()
    proto = onnx.load(str(export_onnx(model, tmp_path / "fp32.onnx")))
    fused = fused_attention_checked(proto, 2, (2, 3, size, size))
    # all but the last block's where it computes only what the head reads (not SigLIP's)
    blocks = 2 if model.config.head_tokens is None else 1
    assert sum(node.op_type == "Attention" for node in fused.graph.node) == blocks
