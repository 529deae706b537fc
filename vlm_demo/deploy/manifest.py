"""The deploy manifest (`Spacefile`, YAML): a Space's hardware, Python, shipped combinations, variables and weights,
checked with one-line errors."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vlm_demo.sources import ROOT

SPACEFILE = ROOT / "Spacefile"
# Hardware flavours a Space can run on (huggingface_hub.SpaceHardware, 2026-12); ZeroGPU is `zero-a10g`.
HARDWARE = {"cpu-basic", "cpu-upgrade", "t4-small", "t4-medium", "l4x1", "l4x4", "a10g-small", "a10g-large",
            "a10g-largex2", "a10g-largex4", "a100-large", "zero-a10g"}
ZERO_GPU_PYTHON = {"3.10.13", "3.12"}  # what ZeroGPU accepts (hub documentation as of 2026-08)
WEIGHT_SOURCES = {"space"}  # bundled into the Space's weights/ folder
VARIABLE = re.compile(r"[A-Z_][A-Z0-9_]*")
RESERVED = {"PORT", "GRADIO_SERVER_PORT", "GRADIO_SERVER_NAME", "SPACE_ID", "HF_TOKEN"}  # set by Spaces itself
KEYS = {"space", "hardware", "python_version", "combinations", "weights", "variables"}
SPACE_KEYS = {"title", "emoji", "color_from", "color_to", "short_description", "license"}
COLOURS = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}


class ManifestError(ValueError):
    """The manifest is not valid; the message names the key and what it must be, in one line."""


@dataclass(frozen=True)
class Manifest:
    """What `deploy` builds: the Space card fields, hardware, Python, combinations (their checkpoints ship) and
    variables."""

    space: dict[str, str]
    hardware: str
    python_version: str
    combinations: list[str]
    weights: str = "space"
    variables: dict[str, str] = field(default_factory=dict)

    @property
    def zero_gpu(self) -> bool:
        return self.hardware == "zero-a10g"


def load_manifest(path: Path | str = SPACEFILE) -> Manifest:
    """Read and check a manifest file."""
    try:
        values = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise ManifestError(f"{path}: cannot be read ({error})") from None
    except yaml.YAMLError as error:
        raise ManifestError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    try:
        return check_manifest(values)
    except ManifestError as error:
        raise ManifestError(f"{path}: {error}") from None


def check_manifest(values: Any) -> Manifest:
    """A Manifest from parsed YAML, or a ManifestError naming the first problem."""
    if not isinstance(values, dict):
        raise ManifestError("the manifest must be a mapping of keys (space, hardware, python_version, ...)")
    unknown = sorted(set(map(str, values)) - KEYS)
    if unknown:
        raise ManifestError(f"unknown key '{unknown[0]}'; the keys are {', '.join(sorted(KEYS))}")
    missing = sorted(KEYS - {"variables"} - set(values))
    if missing:
        raise ManifestError(f"'{missing[0]}' is missing")
    hardware = _text(values, "hardware")
    if hardware not in HARDWARE:
        raise ManifestError(f"hardware '{hardware}' is not a Spaces hardware; use one of {', '.join(sorted(HARDWARE))}")
    python = _text(values, "python_version")
    if not re.fullmatch(r"3\.(1[0-9])(\.\d+)?", python):
        raise ManifestError(f"python_version '{python}' must be a Python 3 version from 3.10 on, such as \"3.12\"")
    if hardware == "zero-a10g" and python not in ZERO_GPU_PYTHON:
        accepted = ' or '.join(sorted(ZERO_GPU_PYTHON))
        raise ManifestError(f"python_version '{python}' is not one ZeroGPU accepts ({accepted})")
    weights = _text(values, "weights")
    if weights not in WEIGHT_SOURCES:
        raise ManifestError(f"weights '{weights}' is not supported; 'space' bundles them into the Space's folder")
    return Manifest(_space(values["space"]), hardware, python, _combinations(values["combinations"]), weights,
                    _variables(values.get("variables") or {}))


def _text(values: dict, key: str) -> str:
    value = values[key]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ManifestError(f"'{key}' must be a single value, not {type(value).__name__}")
    return str(value)


def _space(values: Any) -> dict[str, str]:
    if not isinstance(values, dict) or set(values) - SPACE_KEYS or not {"title", "short_description"} <= set(values):
        raise ManifestError(f"'space' must map title and short_description (and optionally "
                            f"{', '.join(sorted(SPACE_KEYS - {'title', 'short_description'}))}) to text")
    space = {key: str(value) for key, value in values.items()}
    for key in ("color_from", "color_to"):
        if key in space and space[key] not in COLOURS:
            raise ManifestError(f"space.{key} '{space[key]}' must be one of {', '.join(sorted(COLOURS))}")
    if len(space["short_description"]) > 60:
        raise ManifestError("space.short_description must be at most 60 characters (the hub's limit)")
    return space


def _combinations(values: Any) -> list[str]:
    from vlm_demo.combos import COMBOS, DEFAULT_COMBO

    if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
        raise ManifestError("'combinations' must be a list of combination names (python -m vlm_demo list)")
    for name in values:
        if name not in COMBOS or name == DEFAULT_COMBO:
            raise ManifestError(f"combination '{name}' is not registered; known: "
                                f"{', '.join(n for n in COMBOS if n != DEFAULT_COMBO)}")
        if not COMBOS[name].trained:
            raise ManifestError(f"combination '{name}' has no shipped checkpoint in assets/adapters to deploy")
    default = next(name for name, combo in COMBOS.items() if combo is COMBOS[DEFAULT_COMBO] and name != DEFAULT_COMBO)
    if default not in values:
        raise ManifestError(f"'combinations' must include the default combination '{default}'")
    return list(dict.fromkeys(values))


def _variables(values: Any) -> dict[str, str]:
    if not isinstance(values, dict):
        raise ManifestError("'variables' must map NAME: value")
    variables = {}
    for name, value in values.items():
        if not isinstance(name, str) or not VARIABLE.fullmatch(name):
            raise ManifestError(f"variable name '{name}' must be upper case letters, digits and _")
        if name in RESERVED:
            raise ManifestError(f"variable '{name}' is set by Spaces itself; leave it out")
        if isinstance(value, (dict, list)) or value is None:
            raise ManifestError(f"variable '{name}' must have a single text value")
        variables[name] = str(value).lower() if isinstance(value, bool) else str(value)
    return variables
