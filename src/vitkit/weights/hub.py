"""Checkpoints on the Hugging Face hub (timm's and Google's repos), fetched through
huggingface_hub and its cache; HF_HUB_OFFLINE=1 reads the cache only."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from urllib.parse import urlparse

from ..errors import CheckpointError

# Tried in this order; the first one present is downloaded, the rest are not.
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
SIDE_FILES = ("config.json", "preprocessor_config.json")
_HUB_ID = re.compile(r"^(?:hf[-_]hub:)?([A-Za-z0-9][\w.-]*/[\w.-]+)(?:@([\w./-]+))?$")


def parse_hub_id(source: str) -> tuple[str, str | None] | None:
    """(repo_id, revision) when `source` reads as 'org/name[@revision]', else None."""
    match = _HUB_ID.match(source)
    return (match.group(1), match.group(2)) if match else None


def _offline() -> bool:
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().lower()
    return flag in ("1", "true", "yes", "on") or bool(constants.HF_HUB_OFFLINE)


def _cache_dir() -> str | None:
    """The hub cache, read from the environment now (huggingface_hub reads it at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    return None


def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub's host answers a TCP connection within `timeout` seconds, so that no
    network fails in seconds instead of after huggingface_hub's retries (about 30 s). Behind
    a proxy the answer is left to huggingface_hub."""
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY",
                                             "all_proxy", "HTTP_PROXY", "http_proxy")):
        return True
    url = urlparse(_endpoint())
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname or "", port), timeout=timeout).close()
    except OSError:
        return False
    return True


def download(repo_id: str, revision: str | None = None) -> Path:
    """Fetch a repo's config files and one weights file into the hub cache; returns the
    snapshot folder that holds them."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    offline = _offline()
    unreachable = not offline and not _hub_reachable()
    options = dict(revision=revision, cache_dir=_cache_dir(),
                   local_files_only=offline or unreachable, library_name="vitkit")

    def fetch(filename: str) -> Path | None:
        try:
            return Path(hf_hub_download(repo_id, filename, **options))
        except GatedRepoError as error:
            raise CheckpointError(
                f"{repo_id} is gated: accept its terms on huggingface.co and log in with "
                "`hf auth login`"
            ) from error
        except RepositoryNotFoundError as error:
            raise CheckpointError(
                f"no repository {repo_id} on the Hugging Face hub (or it is private: log in "
                "with `hf auth login`); check the spelling"
            ) from error
        except RevisionNotFoundError as error:
            raise CheckpointError(f"{repo_id} has no revision {revision!r}") from error
        except LocalEntryNotFoundError as error:
            if offline or unreachable:  # not in the cache: perhaps another file is
                return None
            raise CheckpointError(  # online but unreachable: stop, trying more files won't help
                f"{repo_id} is not in the local hub cache and the hub could not be reached "
                f"({type(error).__name__}); check the network, or set HF_HUB_OFFLINE=1 to use "
                "the cache only"
            ) from error
        except EntryNotFoundError:  # the repo lacks this file
            return None

    for filename in WEIGHT_FILES:
        weights = fetch(filename)
        if weights is not None:
            break
    else:
        if offline:
            where = ("is not in the local hub cache and HF_HUB_OFFLINE is set: download it "
                     "once with network access, or unset HF_HUB_OFFLINE")
        elif unreachable:
            where = (f"is not in the local hub cache and the hub ({_endpoint()}) could not be "
                     "reached: check the network, or download it once elsewhere")
        else:
            where = "has no model.safetensors or pytorch_model.bin to download"
        raise CheckpointError(f"{repo_id} {where}")
    for filename in SIDE_FILES:
        try:
            fetch(filename)
        except CheckpointError:  # side files are optional
            pass
    return weights.parent
