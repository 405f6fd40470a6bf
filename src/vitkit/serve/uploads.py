"""Images from HTTP requests: bodies spooled to files on disk, counted, their headers checked,
and only then decoded by the same path as every file vitkit reads (`vitkit.data.load_image`),
with each way an upload can be wrong mapped to a 4xx status."""

from __future__ import annotations

import asyncio
import math
import os
import shutil
from typing import Any, NamedTuple

import torch

from ..data.images import ImageDecodeError, check_header

IMAGE_FIELDS = ("file", "files")  # the multipart field names /v1/predict and /v1/explain take
CHUNK = 1 << 16


class BadRequest(Exception):
    """A request the server refuses: HTTP `status`, a message for the JSON body, extra
    response headers, and whether the connection should close (the body was not all read)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None,
                 close: bool = False) -> None:
        super().__init__(message)
        self.status, self.message = status, message
        self.headers = {**(headers or {}), **({"Connection": "close"} if close else {})}


class ClientGone(Exception):
    """The client closed the connection before its request was read."""


class Upload(NamedTuple):
    name: str  # the client's file name (or 'body')
    path: str  # where its bytes were spooled


def decode_status(reason: str) -> int:
    """The HTTP status for an image that did not decode: 415 not an image, 413 one
    refused for its size (a decompression bomb, too thin, too large once resized), 400
    anything else (truncated, damaged, empty)."""
    if reason.startswith("refused as"):
        return 413
    if "not an image" in reason or "unknown format" in reason:
        return 415
    return 400


def too_many(max_files: int) -> BadRequest:
    """The refusal of a request with more than `max_files` images."""
    return BadRequest(413, f"more than {max_files} image(s) in one request; send at most "
                           f"{max_files} (--max-images)", close=True)


async def receive_uploads(request: Any, folder: str, max_files: int, timeout: float,
                          over: BadRequest | None = None) -> list[Upload]:
    """Each image of the request spooled to a file in `folder`: multipart fields `file`/
    `files`, or the raw body for any other content type. More than `max_files` images raise
    `over` (default `too_many`) as soon as the parser counts them; the whole body must come
    within `timeout` seconds (else 408 and the connection closes)."""
    from starlette.requests import ClientDisconnect

    async def receive() -> list[Upload]:
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            return await _form(request, folder, max_files, over or too_many(max_files))
        return [await _raw(request, folder)]

    try:
        return await asyncio.wait_for(receive(), timeout)  # asyncio.timeout needs 3.11
    except asyncio.TimeoutError as error:
        raise BadRequest(408, f"the request body did not arrive within {timeout:g} s",
                         close=True) from error
    except ClientDisconnect as error:
        raise ClientGone() from error


async def _raw(request: Any, folder: str) -> Upload:
    path, size = os.path.join(folder, "0"), 0
    with open(path, "wb") as out:
        async for chunk in request.stream():
            out.write(chunk)
            size += len(chunk)
    if not size:
        raise BadRequest(400, "the request has no image: send it as the body, or as "
                              "multipart/form-data field 'file'")
    return Upload("body", path)


async def _form(request: Any, folder: str, max_files: int, over: BadRequest) -> list[Upload]:
    from starlette.datastructures import UploadFile
    from starlette.requests import ClientDisconnect

    try:
        form = await request.form(max_files=max_files, max_fields=max_files)
    except (BadRequest, ClientDisconnect):
        raise
    except Exception as error:  # noqa: BLE001 - starlette/python-multipart parse errors
        text = str(getattr(error, "detail", error))
        if "Too many files" in text:
            raise over from error
        raise BadRequest(400, f"could not read the multipart body: {text}") from error
    try:
        uploads, unknown = [], []
        for key, value in form.multi_items():
            if key in IMAGE_FIELDS and isinstance(value, UploadFile):
                path = os.path.join(folder, str(len(uploads)))
                value.file.seek(0)
                with open(path, "wb") as out:
                    shutil.copyfileobj(value.file, out, CHUNK)
                uploads.append(Upload(value.filename or key, path))
            else:
                unknown.append(key)
    finally:
        await form.close()
    if unknown:
        raise BadRequest(422, f"unexpected form field(s) {', '.join(sorted(set(unknown)))}: "
                              f"send images as 'file' or 'files' (top_k goes in the query)")
    if not uploads:
        raise BadRequest(422, "no image in the form: send it as field 'file' (or 'files')")
    return uploads


def check_uploads(uploads: list[Upload], backend: Any, max_pixels: int) -> int:
    """Refuse a request from its images' headers alone: each one's size (Pillow's bomb limit,
    too thin, too large once resized to `backend`'s input) and their pixels in all against
    `max_pixels`. Returns the pixels in all; decodes nothing."""
    needed = tuple(math.ceil(s / backend.preprocessing.crop_pct) for s in backend.img_size)
    total = 0
    for upload in uploads:
        if os.path.getsize(upload.path) == 0:
            raise BadRequest(400, f"{upload.name}: the upload is empty (0 bytes)")
        try:
            total += check_header(upload.path, needed)
        except ImageDecodeError as error:
            raise BadRequest(decode_status(error.reason), f"{upload.name}: {error.reason}") \
                from error
    if total > max_pixels:
        raise BadRequest(413, f"the request's {len(uploads)} image(s) have {total:,} pixels in "
                              f"all, over the server's limit of {max_pixels:,} (--max-pixels)")
    return total


def decode_uploads(uploads: list[Upload], backend: Any) -> torch.Tensor:
    """uint8 (B, C, H, W) pixels of the uploads at the model's size through `backend.load`
    (`load_image`); runs on a decode lane's thread, after `check_uploads`."""
    decoded = []
    for upload in uploads:
        try:
            decoded.append(backend.load(upload.path))
        except ImageDecodeError as error:
            raise BadRequest(decode_status(error.reason), f"{upload.name}: {error.reason}") \
                from error
        except (ValueError, RuntimeError, MemoryError) as error:
            raise BadRequest(400, f"{upload.name}: could not preprocess: {error}") from error
    return torch.stack(decoded)
