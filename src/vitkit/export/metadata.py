"""The metadata vitkit writes into an ONNX file ('vitkit.*' keys, JSON values): class names,
preprocessing, image size and channels, so a runtime prepares inputs as vitkit does."""

from __future__ import annotations

import json
import os
from typing import Any

from ..errors import require
from ..files import atomic_write
from ..models import VisionTransformer

INPUT_NAME = "pixel_values"
OUTPUT_NAME = "logits"
METADATA_PREFIX = "vitkit."


def metadata_for(model: VisionTransformer, quantization: str = "none") -> dict[str, str]:
    """The ONNX metadata_props vitkit writes: JSON values under 'vitkit.*' keys."""
    config = model.config
    names = model.meta.class_names or [str(i) for i in range(config.num_classes)]
    values: dict[str, Any] = {
        "name": model.meta.name,
        "class_names": names,
        "preprocessing": model.meta.preprocessing.to_dict(),
        "img_size": list(config.img_size),
        "in_chans": config.in_chans,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "config": config.to_dict(),
        "quantization": quantization,
    }
    return {METADATA_PREFIX + key: json.dumps(value) for key, value in values.items()}


def set_metadata(path: str | os.PathLike, metadata: dict[str, str]) -> None:
    """Write `metadata` into the ONNX file's metadata_props (replacing keys already there)."""
    onnx = require("onnx", "serve", "ONNX export")
    proto = onnx.load(str(path))
    kept = [p for p in proto.metadata_props if p.key not in metadata]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name = "vitkit"
    atomic_write(path, lambda tmp: onnx.save(proto, tmp))


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The 'vitkit.*' metadata of an ONNX file exported by vitkit, decoded from JSON, keys
    without the prefix; raises ValueError for a file without it."""
    onnx = require("onnx", "serve", "reading an ONNX file")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except FileNotFoundError:
        raise
    except Exception as error:  # noqa: BLE001 - protobuf raises several kinds
        raise ValueError(f"{path} is not an ONNX file onnx can read ({error})") from error
    found = {p.key[len(METADATA_PREFIX):]: json.loads(p.value) for p in proto.metadata_props
             if p.key.startswith(METADATA_PREFIX)}
    missing = {"class_names", "preprocessing", "img_size", "in_chans"} - set(found)
    if missing:
        raise ValueError(f"{path} was not exported by vitkit (its metadata lacks "
                         f"{', '.join(sorted(missing))}); export it with `vitkit export`")
    return found
