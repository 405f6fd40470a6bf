"""Images from HTTP requests, decoded by the same path as every file vitkit reads
(`vitkit.data.load_image`), with each way an upload can be wrong mapped to a 4xx status."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable

import torch

from ..data.images import ImageDecodeError

IMAGE_FIELDS = ("file", "files")  # the multipart field names /v1/predict and /v1/explain take
RAW_TYPES = ("image/", "application/octet-stream")


class BadRequest(Exception):
    """A request the server refuses: HTTP `status` and a message for the JSON body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def decode_status(reason: str) -> int:
    """The HTTP status for an image that did not decode: 415 not an image, 413 a
    decompression bomb, 400 anything else (truncated, damaged, empty)."""
    if "decompression bomb" in reason:
        return 413
    if "not an image" in reason or "unknown format" in reason:
        return 415
    return 400


def decode_upload(data: bytes, name: str,
                  load: Callable[[str], torch.Tensor]) -> torch.Tensor:
    """Pixels of one uploaded image through `load` (a `load_image` at the model's size),
    read from a private temporary file so uploads take exactly the path files take."""
    if not data:
        raise BadRequest(400, f"{name}: the upload is empty (0 bytes)")
    handle, path = tempfile.mkstemp(prefix="vitkit-upload-")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        try:
            return load(path)
        except ImageDecodeError as error:
            raise BadRequest(decode_status(error.reason), f"{name}: {error.reason}") from error
        except (ValueError, RuntimeError, MemoryError) as error:
            raise BadRequest(400, f"{name}: could not preprocess: {error}") from error
    finally:
        os.unlink(path)
