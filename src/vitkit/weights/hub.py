"""Checkpoints on the Hugging Face hub (timm's and Google's repos), fetched through
huggingface_hub and its cache; HF_HUB_OFFLINE=1 reads the cache only."""

from __future__ import annotations

import os
import re
from pathlib import Path

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
    options = dict(revision=revision, cache_dir=_cache_dir(), local_files_only=offline,
                   library_name="vitkit")

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
            if offline:  # not in the cache: perhaps another file is
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
        where = (
            "is not in the local hub cache and HF_HUB_OFFLINE is set: download it once with "
            "network access, or unset HF_HUB_OFFLINE"
            if offline else
            "could not be downloaded (no network, or the repo has no model.safetensors / "
            "pytorch_model.bin)"
        )
        raise CheckpointError(f"{repo_id}: {where}")
    for filename in SIDE_FILES:
        try:
            fetch(filename)
        except CheckpointError:  # side files are optional
            pass
    return weights.parent
