"""Training configuration: TOML file + `key=value` overrides, checked against dataclasses at start."""

from __future__ import annotations

import difflib
import json
import tomllib
import types
import typing
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A bad key or value in a training config; the message names it."""


def _default_part(part: str) -> Any:
    """A default of `ModelConfig`: `part` of the app's default combination (vlm_demo.combos names it, once), looked
    up when a config is made, so importing this module stays light."""
    def default() -> str:
        from vlm_demo.combos import COMBOS, DEFAULT_COMBO

        return getattr(COMBOS[DEFAULT_COMBO], part)

    return field(default_factory=default)


@dataclass
class ModelConfig:
    combo: str = ""  # a registered combination (vlm_demo.combos) supplying encoder, adapter, llm and adapter_options
    # without a combo or these keys: the default combination's parts (its adapter family with the family's defaults)
    encoder: str = _default_part("encoder")
    adapter: str = _default_part("adapter")
    llm: str = _default_part("llm")
    adapter_options: dict[str, Any] = field(default_factory=dict)
    init_from: str = ""  # adapter checkpoint folder to start from (e.g. the align stage's output)
    # frozen: cached features; joint: the encoder trains with the adapter (BatchNorm stays frozen) at encoder_lr;
    # sequential: the jointly tuned encoder from init_from's encoder.safetensors, frozen, while the adapter trains
    encoder_mode: str = "frozen"
    encoder_lr: float = 1e-4


@dataclass
class DataConfig:
    train: list[dict[str, Any]] = field(default_factory=lambda: [{"name": "shapes", "count": 200}])
    eval: list[dict[str, Any]] = field(default_factory=lambda: [{"name": "shapes", "count": 50}])
    val: list[dict[str, Any]] = field(default_factory=list)  # validation splits: loss logged during training


@dataclass
class AlignConfig:
    loss: str = "emd"  # emd (to caption token embeddings) | mse | cosine (to a teacher encoder's tokens)
    emd_method: str = "auto"  # auto (exact on CPU, batched on a GPU) | exact | batched | sinkhorn
    sinkhorn_reg: float = 0.05
    batched_reg: float = 0.01  # the batched solver's entropic regularisation, relative to the largest cost
    teacher: str = ""  # teacher encoder name for mse/cosine distillation


@dataclass
class CaptionConfig:
    llm_mode: str = "frozen"  # frozen | lora | qlora
    lora_r: int = 8
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    lora_lr: float = 0.0  # the LoRA's own peak learning rate; 0 = train.lr, the adapter's


@dataclass
class LoopConfig:
    epochs: int = 1
    max_steps: int = 0  # 0 = run all epochs
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 5e-4
    weight_decay: float = 0.0
    warmup_steps: int = 20
    seed: int = 0
    precision: str = "auto"  # auto (bf16 where the device multiplies bf16 in hardware, else fp32) | fp32 | bf16 | fp16
    trackers: list[str] = field(default_factory=list)  # accelerate trackers (e.g. "tensorboard"), none by default
    log_every: int = 10
    save_every: int = 100
    keep_checkpoints: int = 2
    val_every: int = 0  # steps between validation losses (0 = at the end of each epoch); needs data.val
    snapshots: bool = False  # loadable adapter folders under snapshots/: step-0000000 and epoch-001, epoch-002, ...


@dataclass
class EvalConfig:
    max_new_tokens: int = 32
    batch_size: int = 16
    # ablations: real | nearest (each image token replaced by its nearest vocabulary row) | random (Gaussian
    # directions at the real tokens' norms) | none (no image tokens: the blind baseline)
    image_tokens: str = "real"
    prompt: str = ""  # asked instead of every sample's own prompt (empty: the samples' prompts)
    llm_precision: str = "fp32"  # the LLM's weights: fp32 | bf16 | int8 | auto (what the app uses on this machine)


@dataclass
class TrainConfig:
    name: str = "run"
    output_dir: str = "runs/run"
    ship_as: str = ""  # the folder under assets/adapters that `ship` writes (default: <encoder>--<adapter>--<llm>)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    align: AlignConfig = field(default_factory=AlignConfig)
    caption: CaptionConfig = field(default_factory=CaptionConfig)
    train: LoopConfig = field(default_factory=LoopConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


CHOICES = {
    "align.loss": {"emd", "mse", "cosine"},
    "align.emd_method": {"auto", "exact", "batched", "sinkhorn"},
    "caption.llm_mode": {"frozen", "lora", "qlora"},
    "train.precision": {"auto", "fp32", "bf16", "fp16"},
    "model.encoder_mode": {"frozen", "joint", "sequential"},
    "eval.image_tokens": {"real", "nearest", "random", "none"},
    "eval.llm_precision": {"fp32", "bf16", "int8", "auto"},
}
POSITIVE = {"train.batch_size", "train.grad_accum", "train.lr", "train.log_every", "train.save_every",
            "train.epochs", "eval.max_new_tokens", "eval.batch_size", "caption.lora_r", "align.batched_reg",
            "model.encoder_lr"}


def _check_value(key: str, value: Any, expected: Any) -> Any:
    origin = typing.get_origin(expected) or expected
    if origin in (types.UnionType, typing.Union):
        origin = next(a for a in typing.get_args(expected) if a is not type(None))
    if origin is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if origin is typing.Any:
        return value
    if not isinstance(value, origin) or (origin is int and isinstance(value, bool)):
        raise ConfigError(f"'{key}' must be {getattr(origin, '__name__', origin)}, got {value!r}")
    if key in CHOICES and value not in CHOICES[key]:
        raise ConfigError(f"'{key}' must be one of {sorted(CHOICES[key])}, got {value!r}")
    if key in POSITIVE and value <= 0:
        raise ConfigError(f"'{key}' must be positive, got {value!r}")
    if key == "caption.lora_lr" and value < 0:
        raise ConfigError(f"'{key}' must be positive, or 0 for train.lr; got {value!r}")
    return value


def _build(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    kwargs = {}
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise ConfigError(f"unknown config key '{dotted}'{hint}")
        if is_dataclass(hints[key]):
            if not isinstance(value, dict):
                raise ConfigError(f"'{dotted}' must be a table")
            kwargs[key] = _build(hints[key], value, f"{dotted}.")
        else:
            kwargs[key] = _check_value(dotted, value, hints[key])
    return cls(**kwargs)


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key=value (e.g. train.lr=1e-3)")
    key, raw = text.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare string
    return key.strip().split("."), value


def _fill_from_combo(values: dict[str, Any]) -> None:
    """`model.combo`: the registered combination's encoder, adapter, llm and adapter_options, unless set explicitly."""
    model = values.get("model")
    if not isinstance(model, dict) or not model.get("combo"):
        return
    from vlm_demo.combos import COMBOS

    combo = COMBOS.get(str(model["combo"]))
    if combo is None:
        raise ConfigError(f"'model.combo' must be a registered combination, got {model['combo']!r}; known: "
                          f"{', '.join(COMBOS)}")
    for key in ("encoder", "adapter", "llm"):
        model.setdefault(key, getattr(combo, key))
    model.setdefault("adapter_options", dict(combo.adapter_options))


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a TOML config (or the defaults), apply overrides, and validate everything."""
    values: dict[str, Any] = {}
    if path:
        try:
            values = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such config file") from None
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{path}: not valid TOML ({error})") from None
    for text in overrides or []:
        keys, value = _parse_override(text)
        target = values
        for key in keys[:-1]:
            target = target.setdefault(key, {})
            if not isinstance(target, dict):
                raise ConfigError(f"override '{text}': '{key}' is not a table")
        target[keys[-1]] = value
    _fill_from_combo(values)
    config = _build(TrainConfig, values)
    for entry in config.data.train + config.data.eval + config.data.val:
        if "name" not in entry:
            raise ConfigError(f"every data entry needs a 'name' (a dataset or a caption file), got {entry}")
    return config


def toml_value(value: Any) -> str:
    """A value as a TOML inline literal (strings, numbers, booleans, lists and tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{key}={toml_value(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(toml_value(item) for item in value) + "]"
    return repr(value)
