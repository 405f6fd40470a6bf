"""Checkpoints: a damaged checkpoint of any format either loads into a working model or
raises CheckpointError naming the file; no other exception escapes, nothing allocates memory a
header merely claims.

Each format starts from a small valid file (written once per session): vitkit's
model.safetensors, a timm state dict (.safetensors), torch.save files (zip and legacy pickle)
and Google's .npz; hypothesis then overwrites bytes or flips bits (mostly where the structure
is: the first and last 4 KiB), truncates, inserts junk, cuts ranges out, empties the file or
replaces it with random bytes. Structured mutations go further: safetensors headers replaced by
random JSON or with one tensor's dtype, shape or offsets rewritten, .npz members whose array
headers claim other shapes and dtypes (inside a valid zip), and the config.json of vitkit, timm
and Hugging Face folders damaged or given fields of random JSON.
"""

from __future__ import annotations

import functools
import io
import json
import pathlib
import struct
import tempfile
import zipfile

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

import vitkit
from tests.conftest import tiny_vit
from vitkit.weights import CheckpointError, export_npz

KINDS = ("vitkit", "timm", "pth", "pth-legacy", "npz")
SUFFIX = {"vitkit": ".safetensors", "timm": ".safetensors", "pth": ".pth", "pth-legacy": ".pth",
          "npz": ".npz"}
# Examples per format: 100 damaged files, 60 of each structured mutation; the whole file runs
# in about 25 s on two cores. derandomize: CI sees the same examples every run.
FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])
BATCH = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The model is tiny: one thread is faster, and steady on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@functools.cache
def original(kind: str) -> bytes:
    """A valid checkpoint of `kind` for tiny_vit() (vit_tiny, 2 blocks, 32 px, 3 classes)."""
    model = tiny_vit()
    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / f"model{SUFFIX[kind]}"
        if kind == "vitkit":
            path = vitkit.save_pretrained(model, folder) / "model.safetensors"
        elif kind == "timm":
            save_file(model.state_dict(), path)
        elif kind in ("pth", "pth-legacy"):
            torch.save(model.state_dict(), path, _use_new_zipfile_serialization=kind == "pth")
        else:
            export_npz(model, path)
        return path.read_bytes()


def load(path: pathlib.Path) -> vitkit.VisionTransformer:
    return vitkit.create_model("vit_tiny_patch16_224", pretrained=path, depth=2, img_size=32,
                               num_classes=3)


def loads_or_refuses(path: pathlib.Path, loader=load) -> str:
    """The property: a working model, or a CheckpointError naming the file. Returns which."""
    try:
        model = loader(path)
    except CheckpointError as error:
        assert path.name in str(error), f"the message does not name the file: {error}"
        return "refused"
    with torch.no_grad():
        logits = model(BATCH)
    assert logits.shape == (2, 3)
    if not torch.isfinite(logits).all():
        # Only a file whose tensor bytes were overwritten with absurd (finite) values may give
        # non-finite logits: no checksum in safetensors or a pickle can catch that.
        largest = max(p.abs().max().item() for p in model.parameters())
        assert largest > 1e6, f"non-finite logits from weights no larger than {largest}"
    return "loaded"


# -- mutations --------------------------------------------------------------------------------
def _position(data: st.DataObject, size: int) -> int:
    """An offset, biased to where the structure is: the start, the end, or anywhere."""
    where = data.draw(st.sampled_from(["head", "tail", "anywhere"]))
    if where == "head":
        return data.draw(st.integers(0, min(size - 1, 4095)))
    if where == "tail":
        return data.draw(st.integers(max(0, size - 4096), size - 1))
    return data.draw(st.integers(0, size - 1))


def mutate(data: st.DataObject, base: bytes) -> bytes:
    """One of: overwrite bytes, flip bits, truncate, insert junk, delete a range, empty,
    random bytes (behind a checkpoint's magic bytes or not)."""
    operation = data.draw(st.sampled_from(
        ["overwrite", "flip", "truncate", "insert", "delete", "empty", "random"]))
    out = bytearray(base)
    if operation in ("overwrite", "flip"):
        for _ in range(data.draw(st.integers(1, 8))):
            position = _position(data, len(out))
            if operation == "overwrite":
                out[position] = data.draw(st.integers(0, 255))
            else:
                out[position] ^= 1 << data.draw(st.integers(0, 7))
    elif operation == "truncate":
        out = out[: _position(data, len(out))]
    elif operation == "insert":
        position = _position(data, len(out))
        out[position:position] = data.draw(st.binary(min_size=1, max_size=64))
    elif operation == "delete":
        position = _position(data, len(out))
        del out[position: position + data.draw(st.integers(1, 256))]
    elif operation == "empty":
        out = bytearray()
    else:
        magic = data.draw(st.sampled_from(
            [b"", b"PK\x03\x04", b"\x80\x02", b"\x80\x04", struct.pack("<Q", 2) + b"{}"]))
        out = bytearray(magic + data.draw(st.binary(max_size=256)))
    return bytes(out)


@pytest.mark.parametrize("kind", KINDS)
def test_the_unmutated_files_load(tmp_path, kind):
    path = tmp_path / f"model{SUFFIX[kind]}"
    path.write_bytes(original(kind))
    assert loads_or_refuses(path) == "loaded"


@pytest.mark.parametrize("kind", KINDS)
@settings(FUZZ, max_examples=100)
@given(data=st.data())
def test_fuzz_damaged_files(tmp_path, kind, data):
    path = tmp_path / f"model{SUFFIX[kind]}"
    path.write_bytes(mutate(data, original(kind)))
    loads_or_refuses(path)


# -- folders: config.json --------------------------------------------------------------------
FOLDERS = ("vitkit", "timm", "hf")


@functools.cache
def folder_files(kind: str) -> dict[str, bytes]:
    """The files of a checkpoint folder of `kind` for tiny_vit()."""
    model = tiny_vit()
    with tempfile.TemporaryDirectory() as folder:
        vitkit.weights.export(model, pathlib.Path(folder) / "x", to=kind)
        return {p.name: p.read_bytes() for p in (pathlib.Path(folder) / "x").iterdir()}


@pytest.mark.parametrize("kind", FOLDERS)
@FUZZ
@given(data=st.data())
def test_fuzz_folder_configs(tmp_path, kind, data):
    """config.json (and HF's preprocessor_config.json) damaged, replaced by other JSON, or
    with one field's value replaced."""
    files = folder_files(kind)
    folder = tmp_path / "checkpoint"
    folder.mkdir(exist_ok=True)
    for name, blob in files.items():
        if not (folder / name).exists() or name.endswith(".json"):
            (folder / name).write_bytes(blob)
    name = data.draw(st.sampled_from(sorted(n for n in files if n.endswith(".json"))))
    document = json.loads(files[name])
    operation = data.draw(st.sampled_from(["bytes", "json", "field", "nested"]))
    if operation == "bytes":
        blob = mutate(data, files[name])
    else:
        if operation == "json":
            document = data.draw(JSON)
        elif operation == "field" or not any(isinstance(v, dict) for v in document.values()):
            document[data.draw(st.sampled_from(sorted(document)))] = data.draw(JSON)
        else:
            inner = document[data.draw(st.sampled_from(
                sorted(k for k, v in document.items() if isinstance(v, dict))))]
            inner[data.draw(st.sampled_from(sorted(inner)))] = data.draw(JSON)
        blob = json.dumps(document).encode()
    (folder / name).write_bytes(blob)
    loads_or_refuses(folder)
    if kind == "vitkit":
        loads_or_refuses(folder, vitkit.load_pretrained)


# -- safetensors headers ----------------------------------------------------------------------
def _split_safetensors(blob: bytes) -> tuple[dict, bytes]:
    length = struct.unpack("<Q", blob[:8])[0]
    return json.loads(blob[8: 8 + length]), blob[8 + length:]


def _join_safetensors(header: object, body: bytes) -> bytes:
    text = json.dumps(header).encode() if not isinstance(header, bytes) else header
    return struct.pack("<Q", len(text)) + text + body


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)


@pytest.mark.parametrize("kind", ["vitkit", "timm"])
@FUZZ
@given(data=st.data())
def test_fuzz_safetensors_headers(tmp_path, kind, data):
    """The JSON header replaced, or one tensor's entry (dtype, shape, offsets) or the metadata
    rewritten: shapes far beyond the file must be refused without being allocated."""
    header, body = _split_safetensors(original(kind))
    names = sorted(key for key in header if key != "__metadata__")
    operation = data.draw(st.sampled_from(["json", "entry", "shape", "offsets", "metadata"]))
    if operation == "json":
        header = data.draw(JSON)
    elif operation == "entry":
        header[data.draw(st.sampled_from(names))] = data.draw(JSON)
    elif operation == "shape":
        entry = header[data.draw(st.sampled_from(names))]
        entry["shape"] = data.draw(st.lists(st.integers(0, 2**62), max_size=5))
        entry["dtype"] = data.draw(st.sampled_from([entry["dtype"], "F16", "BF16", "I64", "U8",
                                                    "BOOL", "F64", "F8_E4M3", "X"]))
    elif operation == "offsets":
        entry = header[data.draw(st.sampled_from(names))]
        entry["data_offsets"] = data.draw(st.lists(st.integers(-1, 2**64 - 1), max_size=3))
    else:
        metadata = header.setdefault("__metadata__", {})
        key = data.draw(st.sampled_from(["vitkit_config", "format", "other"]))
        value = data.draw(JSON)
        if data.draw(st.booleans()):  # a vitkit document with one field replaced
            document = json.loads(metadata.get("vitkit_config", "{}"))
            document[data.draw(st.sampled_from(["config", "model_name", "class_names",
                                                "preprocessing", "library"]))] = value
            value = json.dumps(document)
        metadata[key] = value
    path = tmp_path / "model.safetensors"
    path.write_bytes(_join_safetensors(header, body))
    loads_or_refuses(path)
    if kind == "vitkit":  # how eval, predict and info read a checkpoint
        loads_or_refuses(path, vitkit.load_pretrained)


def test_a_safetensors_header_claiming_a_huge_tensor_is_refused(tmp_path):
    header, body = _split_safetensors(original("timm"))
    header["pos_embed"]["shape"] = [1, 2**40, 192]  # 768 TiB of float32
    path = tmp_path / "huge.safetensors"
    path.write_bytes(_join_safetensors(header, body))
    with pytest.raises(CheckpointError, match="huge.safetensors"):
        load(path)


# -- .npz: array headers ----------------------------------------------------------------------
def _npz_with(members: dict[str, bytes], deflated: str | None = None) -> bytes:
    """A zip of `members`, stored as np.savez does, but the member `deflated` compressed."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, blob in members.items():
            compression = zipfile.ZIP_DEFLATED if name == deflated else zipfile.ZIP_STORED
            archive.writestr(name, blob, compression, compresslevel=1)
    return buffer.getvalue()


def _npz_members() -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(original("npz"))) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _npy_header(shape: tuple[int, ...], dtype: str = "<f4") -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


@FUZZ
@given(data=st.data())
def test_fuzz_npz_array_headers(tmp_path, data):
    """Valid zip archives (CRCs right) whose .npy members claim other shapes or dtypes, or
    whose bytes are damaged inside: what a corrupted export would look like."""
    members = _npz_members()
    name = data.draw(st.sampled_from(sorted(members)))
    blob = members[name]
    operation = data.draw(st.sampled_from(["header", "mutate"]))
    if operation == "header":
        payload = blob[len(_npy_header(np.load(io.BytesIO(blob)).shape)):]
        shape = tuple(data.draw(st.lists(st.integers(0, 2**40), max_size=4)))
        dtype = data.draw(st.sampled_from(["<f4", "<f2", "<f8", "<i8", "|u1", "|b1", "<c8"]))
        members[name] = _npy_header(shape, dtype) + payload
    else:
        members[name] = mutate(data, blob)
    path = tmp_path / "model.npz"
    path.write_bytes(_npz_with(members, name if data.draw(st.booleans()) else None))
    loads_or_refuses(path)


def test_an_npz_array_claiming_a_huge_shape_is_refused_unallocated(tmp_path):
    members = _npz_members()
    name = "Transformer/posembed_input/pos_embedding.npy"
    payload = members[name][len(_npy_header((1, 5, 192))):]
    members[name] = _npy_header((1, 2**40, 192)) + payload  # 768 TiB of float32
    path = tmp_path / "huge.npz"
    path.write_bytes(_npz_with(members, deflated=name))
    with pytest.raises(CheckpointError, match="huge.npz"):
        load(path)


# -- regressions: what the fuzzing found, one plain test each ---------------------------------
def _vitkit_with(tmp_path, change) -> pathlib.Path:
    """vitkit's model.safetensors with `change` applied to the document in its metadata."""
    header, body = _split_safetensors(original("vitkit"))
    document = json.loads(header["__metadata__"]["vitkit_config"])
    change(document)
    header["__metadata__"]["vitkit_config"] = json.dumps(document)
    path = tmp_path / "changed.safetensors"
    path.write_bytes(_join_safetensors(header, body))
    return path


def test_a_torch_file_named_safetensors_is_read_by_its_contents(tmp_path):
    """torch.load given a name ending .safetensors hands it to safetensors whatever it holds
    (SafetensorError escaped); the file is now opened by vitkit and read as what it is."""
    path = tmp_path / "weights.safetensors"
    path.write_bytes(original("pth"))
    assert loads_or_refuses(path) == "loaded"


@pytest.mark.parametrize("blob, reason", [
    (b"\x80\x02" + b"\x00" * 7, "damaged pickle: Unsupported operand 0"),  # was 'run code'
    (b"\x80\x02." + b"\x00" * 7, "IndexError"),  # escaped as IndexError
])
def test_a_damaged_pickle_is_called_damaged_not_dangerous(tmp_path, blob, reason):
    path = tmp_path / "bad.pth"
    path.write_bytes(blob)
    with pytest.raises(CheckpointError) as info:
        load(path)
    message = str(info.value)
    assert "bad.pth is not a readable PyTorch checkpoint" in message and reason in message
    assert "arbitrary code" not in message


def test_a_zip_with_an_undecodable_member_name(tmp_path):
    """zipfile raised UnicodeDecodeError from sniff()."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("é.npy", b"x")  # a non-ASCII name is written with the UTF-8 flag
    path = tmp_path / "names.npz"
    path.write_bytes(buffer.getvalue().replace("é".encode(), b"\xff\xfe"))
    with pytest.raises(CheckpointError, match="names.npz is a damaged zip archive"):
        load(path)


def test_npz_damage_is_not_called_a_pickle(tmp_path):
    """Any ValueError from numpy was reported as 'holds pickled Python objects'."""
    members = _npz_members()
    members["cls.npy"] = members["cls.npy"][:-4]  # the array's data cut short
    path = tmp_path / "short.npz"
    path.write_bytes(_npz_with(members))
    with pytest.raises(CheckpointError, match="short.npz: array cls.npy claims shape") as info:
        load(path)
    assert "pickled" not in str(info.value)


def test_npz_object_arrays_are_still_refused(tmp_path):
    members = _npz_members()
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    members["cls.npy"] = buffer.getvalue()
    path = tmp_path / "objects.npz"
    path.write_bytes(_npz_with(members))
    with pytest.raises(CheckpointError, match="refused to load .*objects.npz.*pickled"):
        load(path)


def test_an_npz_member_that_is_no_array_is_ignored(tmp_path):
    """A member without the .npy ending came back as bytes, under the array's key, and raised
    AttributeError in the conversion; such members are now left out."""
    members = _npz_members()
    members["README.txt"] = b"notes"
    path = tmp_path / "extra.npz"
    path.write_bytes(_npz_with(members))
    assert loads_or_refuses(path) == "loaded"
    del members["cls.npy"]
    members["cls"] = b"not an array"  # np.load gave these bytes as the array 'cls'
    path.write_bytes(_npz_with(members))
    with pytest.raises(CheckpointError, match="extra.npz"):
        load(path)


def test_npz_arrays_of_the_wrong_shape_name_the_file(tmp_path):
    """A mis-shaped array raised RuntimeError from reshape inside flax_to_vitkit."""
    members = _npz_members()
    name = "Transformer/encoderblock_0/MultiHeadDotProductAttention_1/key/bias.npy"
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(1, np.float32))
    members[name] = buffer.getvalue()
    path = tmp_path / "shapes.npz"
    path.write_bytes(_npz_with(members))
    with pytest.raises(CheckpointError, match="shapes.npz: the arrays do not have the shapes"):
        load(path)


def test_npz_integer_arrays_name_the_file(tmp_path):
    members = _npz_members()
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((1, 1, 192), np.int64))
    members["cls.npy"] = buffer.getvalue()
    path = tmp_path / "ints.npz"
    path.write_bytes(_npz_with(members))
    with pytest.raises(CheckpointError, match="ints.npz: unsupported array type int64"):
        load(path)


@pytest.mark.parametrize("change, message", [
    (lambda d: d["config"].update(layr_norm_eps=1e-6), "unknown field 'layr_norm_eps'"),
    (lambda d: d["config"].update(embed_dim="192"), "embed_dim='192'"),
    (lambda d: d["config"].update(depth=10**6), "depth 1000000 but its tensors show 2"),
    (lambda d: d["config"].update(img_size=[2**16, 2**16]), "img_size 65536x65536"),
    (lambda d: d["config"].update(representation_size=2**40), "representation_size"),
    (lambda d: d.update(config=[1, 2]), "'config' in the vitkit description is a list"),
    (lambda d: d.update(class_names=["a"]), "names 1 classes for a 3-class head"),
    (lambda d: d.update(preprocessing={"std": [0, 0, 0]}), "invalid preprocessing (std="),
])
def test_vitkit_metadata_that_disagrees_is_refused(tmp_path, change, message):
    """ValueError, TypeError or AttributeError escaped, or a model of whatever size the
    metadata claimed was built (depth=10**6 blocks, a 2**40-wide representation layer)."""
    path = _vitkit_with(tmp_path, change)
    for loader in (load, lambda p: vitkit.create_model(None, pretrained=p), vitkit.load_pretrained):
        with pytest.raises(CheckpointError) as info:
            loader(path)
        assert "changed.safetensors" in str(info.value) and message in str(info.value)


def test_vitkit_metadata_that_is_not_json(tmp_path):
    header, body = _split_safetensors(original("vitkit"))
    header["__metadata__"]["vitkit_config"] = "{not json"
    path = tmp_path / "notjson.safetensors"
    path.write_bytes(_join_safetensors(header, body))
    with pytest.raises(CheckpointError, match="notjson.safetensors: the vitkit description is "
                                              "not valid JSON"):
        load(path)


def test_integer_tensors_where_the_model_has_weights(tmp_path):
    state = tiny_vit().state_dict()
    state["blocks.0.norm1.weight"] = torch.ones(192, dtype=torch.int64)
    path = tmp_path / "ints.safetensors"
    save_file(state, path)
    with pytest.raises(CheckpointError, match="ints.safetensors: .*not floating point.*"
                                              r"blocks\.0\.norm1\.weight \(int64\)"):
        load(path)


def test_tensors_of_the_wrong_rank_are_named(tmp_path):
    """infer_config unpacked patch_embed.proj.weight's shape: ValueError escaped."""
    state = tiny_vit().state_dict()
    state["patch_embed.proj.weight"] = state["patch_embed.proj.weight"].flatten()
    path = tmp_path / "rank.safetensors"
    save_file(state, path)
    with pytest.raises(CheckpointError, match=r"rank.safetensors: tensor patch_embed\.proj\.weight"
                                              " has shape"):
        load(path)


@pytest.mark.parametrize("kind, name, change, outcome", [
    ("timm", "config.json", lambda d: d.update(architecture=["vit_tiny_patch16_224"]), "loaded"),
    ("timm", "config.json", lambda d: d.update(model_args=[1]), "refused"),
    ("timm", "config.json", lambda d: d["pretrained_cfg"].update(input_size=3), "refused"),
    ("hf", "config.json", lambda d: d.update(image_size=32.5), "refused"),
    ("hf", "preprocessor_config.json", lambda d: d.update(image_mean=1), "refused"),
    ("vitkit", "config.json", lambda d: d.update(config=None), "loaded"),
])
def test_folder_configs_with_fields_of_the_wrong_type(tmp_path, kind, name, change, outcome):
    """TypeError/AttributeError escaped from reading timm and HF config.json fields; a field
    the model asked for doesn't need (the architecture's name) is now just not used."""
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    for file, blob in folder_files(kind).items():
        (folder / file).write_bytes(blob)
    document = json.loads((folder / name).read_text())
    change(document)
    (folder / name).write_text(json.dumps(document))
    assert loads_or_refuses(folder) == outcome
