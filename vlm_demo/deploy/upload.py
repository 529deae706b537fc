"""Create or update a Space through huggingface_hub (create_repo, upload_folder, Space variables); every failure is
one line."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from vlm_demo.deploy.build import DeployError, build_space, folder_size
from vlm_demo.deploy.manifest import SPACEFILE, Manifest, load_manifest
from vlm_demo.hub import HUB_ID


def upload(manifest: Manifest, space: str, folder: Path, token: str | None = None) -> str:
    """Create the Space if needed (Gradio SDK, the manifest's hardware and variables), upload the folder in one
    commit (large files go through the hub's own storage, no git history) and set the variables; returns its URL."""
    import httpx
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError, OfflineModeIsEnabled

    api = HfApi(token=token)
    variables = [{"key": key, "value": value} for key, value in manifest.variables.items()]
    try:
        if token is None and get_token() is None:
            raise LocalTokenNotFoundError("no token")
        url = api.create_repo(space, repo_type="space", space_sdk="gradio", space_hardware=manifest.hardware,
                              space_variables=variables, exist_ok=True)
        sdk = getattr(api.space_info(space), "sdk", "gradio")
        if sdk not in (None, "gradio"):
            raise DeployError(f"{space} is already a {sdk} Space; deploy to a new name or change its SDK to gradio")
        api.upload_folder(repo_id=space, repo_type="space", folder_path=str(folder),
                          commit_message="Deploy with python -m vlm_demo deploy", delete_patterns=["*"])
        for key, value in manifest.variables.items():
            api.add_space_variable(space, key, value)
    except LocalTokenNotFoundError:
        raise DeployError("no Hugging Face token: run `hf auth login` or set HF_TOKEN (one with write access)") \
            from None
    except (OfflineModeIsEnabled, httpx.TransportError, ConnectionError, TimeoutError) as error:
        raise DeployError(f"cannot reach the Hugging Face hub ({type(error).__name__}); check the network and "
                          "HF_HUB_OFFLINE") from None
    except HfHubHTTPError as error:
        raise DeployError(_http_reason(space, error)) from None
    return str(url)


def _http_reason(space: str, error: Exception) -> str:
    status = getattr(getattr(error, "response", None), "status_code", None)
    message = (str(error).strip().splitlines() or [type(error).__name__])[0]
    if status == 409:
        return f"{space} is taken by a repository of another type; pick another name ({message})"
    if status in (401, 403):
        return f"the hub refused the token for {space} (HTTP {status}): it needs write access to that owner"
    return f"the hub refused the deploy of {space}: {message}"


def cmd_deploy(args: argparse.Namespace) -> int:
    """Build the Space's folder (into --out with --dry-run, else a temporary folder) and upload it."""
    if not HUB_ID.match(args.space or ""):
        raise DeployError(f"--space must look like OWNER/NAME, not '{args.space}'")
    manifest = load_manifest(args.manifest)
    if args.dry_run:
        if not args.out:
            raise DeployError("--dry-run needs --out DIR, the folder to write the Space into")
        folder = build_space(manifest, Path(args.out))
        size, largest = folder_size(folder)
        print(f"{folder}: {size / 2**20:.1f} MiB, largest file {largest.relative_to(folder)} "
              f"({largest.stat().st_size / 2**20:.1f} MiB); nothing uploaded")
        return 0
    with tempfile.TemporaryDirectory(prefix="vlm-demo-space-") as staging:
        folder = build_space(manifest, Path(staging) / "space")
        print(upload(manifest, args.space, folder))
    return 0


def register(verbs: argparse._SubParsersAction) -> None:
    """The `deploy` verb of `python -m vlm_demo`."""
    deploy = verbs.add_parser("deploy", help="build the Hugging Face Space from the Spacefile and upload it")
    deploy.add_argument("--space", required=True, help="OWNER/NAME of the Space to create or update")
    deploy.add_argument("--dry-run", action="store_true", help="write the Space's folder to --out, upload nothing")
    deploy.add_argument("--out", help="with --dry-run: the folder to write (new or empty)")
    deploy.add_argument("--manifest", default=str(SPACEFILE), help="the deploy manifest (default: Spacefile)")
    deploy.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from vlm_demo.deploy.manifest import ManifestError

    try:
        return cmd_deploy(args)
    except (DeployError, ManifestError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
