"""Models fetched from the Hugging Face hub by id: the id checked (never a local path), the size read from the hub's
metadata and compared with the memory budget before anything is downloaded, one hub load at a time, and an optional
allowlist (VLM_DEMO_HUB_ALLOW) for public Spaces."""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

from vlm_demo.sources import hub_offline

HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
ALLOW_ENV = "VLM_DEMO_HUB_ALLOW"  # comma-separated ids or patterns (owner/*); when set, no other hub id is loaded
BUDGET_ENV, DEFAULT_BUDGET_MB = "VLM_DEMO_MEMORY_BUDGET_MB", 4096  # model weights one app process may hold
FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "tokenizer*"]  # never pickled weights
_ONE_LOAD = threading.Lock()
_REACHABLE: list = []  # [checked at (monotonic seconds), reachable]


class HubError(ValueError):
    """A hub model that will not be loaded; the message says why in one line."""


def memory_budget() -> int:
    """Bytes of model weights this process may hold (VLM_DEMO_MEMORY_BUDGET_MB, default 4096)."""
    return int(os.environ.get(BUDGET_ENV) or DEFAULT_BUDGET_MB) * 2**20


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers on its port (remembered for a minute); False in HF_HUB_OFFLINE mode."""
    if hub_offline():
        return False
    now = time.monotonic()
    if _REACHABLE and now - _REACHABLE[0] < 60:
        return _REACHABLE[1]
    host = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        reachable = True
    except OSError:
        reachable = False
    _REACHABLE[:] = [now, reachable]
    return reachable


def check_hub_id(repo_id: str, typed: bool = True) -> str:
    """`repo_id` if it is an owner/name hub id this server may load; paths and unlisted ids raise HubError (with the
    same message whether or not a folder of that name exists here). The allowlist applies to `typed` ids, not to
    the registry's own."""
    if not isinstance(repo_id, str) or not HUB_ID.match(repo_id) or ".." in repo_id:
        raise HubError(f"'{str(repo_id)[:100]}' is not a hub model id (owner/name)")
    allowed = [item.strip() for item in os.environ.get(ALLOW_ENV, "").split(",") if item.strip()]
    if typed and allowed and not any(fnmatch.fnmatchcase(repo_id, pattern) for pattern in allowed):
        raise HubError(f"'{repo_id}' is not among the hub models this server loads ({', '.join(allowed)})")
    return repo_id


def _check_size(repo_id: str, parameters: int, bytes_per_parameter: float) -> None:
    need, budget = parameters * bytes_per_parameter, memory_budget()
    if need > budget:
        raise HubError(f"'{repo_id}' has {parameters / 1e9:.2f} B parameters, about {need / 2**30:.1f} GB loaded, "
                       f"over this server's memory budget of {budget / 2**30:.1f} GB ({BUDGET_ENV})")


def local_parameters(folder: Path) -> int:
    """Parameters in a folder's safetensors files, counted from their headers (no tensor is read)."""
    from safetensors import safe_open

    total = 0
    for path in folder.glob("*.safetensors"):
        with safe_open(str(path), framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
                shape = handle.get_slice(name).get_shape()
                count = 1
                for size in shape:
                    count *= size
                total += count
    return total


def _remote_snapshot(repo_id: str, bytes_per_parameter: float) -> Path:
    from huggingface_hub import HfApi, snapshot_download

    try:
        info = HfApi().model_info(repo_id, files_metadata=True)
    except Exception as error:  # noqa: BLE001 - not found, gated, private, network: all one line
        raise HubError(f"'{repo_id}' cannot be found on the hub ({type(error).__name__})") from None
    files = {sibling.rfilename: sibling.size or 0 for sibling in info.siblings or []}
    weights = [name for name in files if name.endswith(".safetensors")]
    if not weights:
        raise HubError(f"'{repo_id}' has no safetensors weights (other formats are never loaded)")
    parameters = info.safetensors.total if info.safetensors else sum(files[name] for name in weights) // 2
    _check_size(repo_id, parameters, bytes_per_parameter)
    download = sum(size for name, size in files.items() if any(fnmatch.fnmatch(name, p) for p in FILES))
    cache = Path(os.environ.get("HF_HUB_CACHE") or Path.home() / ".cache" / "huggingface")
    cache.mkdir(parents=True, exist_ok=True)
    if download > shutil.disk_usage(cache).free:
        raise HubError(f"'{repo_id}' is {download / 2**30:.1f} GB, more than the free disk space")
    return Path(snapshot_download(repo_id, revision=info.sha, allow_patterns=FILES))


@contextmanager
def one_at_a_time() -> Iterator[None]:
    """Hold the hub lock: one hub download and load at a time in this process."""
    with _ONE_LOAD:
        yield


@contextmanager
def fetched(repo_id: str, bytes_per_parameter: float = 4.0, typed: bool = True) -> Iterator[Path]:
    """The downloaded (or cached) folder of a hub model that fits the memory budget, for loading inside the block;
    the hub lock is held throughout, so big loads never overlap. `typed`: a visitor's id, not the registry's."""
    from huggingface_hub import snapshot_download

    check_hub_id(repo_id, typed)
    with _ONE_LOAD:
        if hub_reachable():
            folder = _remote_snapshot(repo_id, bytes_per_parameter)
        else:
            try:
                folder = Path(snapshot_download(repo_id, allow_patterns=FILES, local_files_only=True))
            except Exception:  # noqa: BLE001 - any miss is the same answer
                raise HubError(f"'{repo_id}' is not in the local hub cache and the hub cannot be reached (a local "
                               "folder is named ./path or /path)") from None
        _check_size(repo_id, local_parameters(folder), bytes_per_parameter)
        yield folder
