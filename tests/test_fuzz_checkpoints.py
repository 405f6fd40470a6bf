"""Issue 6, checkpoints: a damaged checkpoint of any format either loads into a working model or
raises CheckpointError naming the file; no other exception escapes, nothing allocates memory a
header merely claims.

Each format starts from a small valid file (written once per session); hypothesis then
overwrites bytes, truncates, inserts junk, cuts ranges out, or (safetensors) rewrites the JSON
header. The runs are derandomised, so CI sees the same examples every time.
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
from vitkit.weights import CheckpointError, export_npz

from .test_weights_bad import tiny

KINDS = ("vitkit", "timm", "pth", "pth-legacy", "npz")
SUFFIX = {"vitkit": ".safetensors", "timm": ".safetensors", "pth": ".pth", "pth-legacy": ".pth",
          "npz": ".npz"}
EXAMPLES = 60  # per format; the whole file stays well under 30 s on two cores
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])
BATCH = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@functools.cache
def original(kind: str) -> bytes:
    """The bytes of a valid checkpoint of `kind` for tiny() (vit_tiny, 2 blocks, 32 px, 3 classes)."""
    model = tiny()
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


def loads_or_refuses(path: pathlib.Path) -> str:
    """The property: a working model, or a CheckpointError naming the file. Returns which."""
    try:
        model = load(path)
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
@FUZZ
@given(data=st.data())
def test_fuzz_damaged_files(tmp_path, kind, data):
    path = tmp_path / f"model{SUFFIX[kind]}"
    path.write_bytes(mutate(data, original(kind)))
    loads_or_refuses(path)


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


def test_a_safetensors_header_claiming_a_huge_tensor_is_refused(tmp_path):
    header, body = _split_safetensors(original("timm"))
    header["pos_embed"]["shape"] = [1, 2**40, 192]  # 768 TiB of float32
    path = tmp_path / "huge.safetensors"
    path.write_bytes(_join_safetensors(header, body))
    with pytest.raises(CheckpointError, match="huge.safetensors"):
        load(path)


# -- .npz: array headers ----------------------------------------------------------------------
def _npz_with(members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, blob in members.items():
            archive.writestr(name, blob)
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
    compression = data.draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
    path = tmp_path / "model.npz"
    path.write_bytes(_npz_with(members, compression))
    loads_or_refuses(path)


def test_an_npz_array_claiming_a_huge_shape_is_refused_unallocated(tmp_path):
    members = _npz_members()
    name = "Transformer/posembed_input/pos_embedding.npy"
    payload = members[name][len(_npy_header((1, 5, 192))):]
    members[name] = _npy_header((1, 2**40, 192)) + payload  # 768 TiB of float32
    path = tmp_path / "huge.npz"
    path.write_bytes(_npz_with(members, zipfile.ZIP_DEFLATED))
    with pytest.raises(CheckpointError, match="huge.npz"):
        load(path)
