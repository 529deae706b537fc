"""The arms the later claims share, so that one arm and seed is trained once for all of them: the LLM-free align
stage per family (several epochs, for the per-epoch snapshots), caption runs on captions plus shapes questions per
family (for asking), and those caption runs continued from the align stage."""

from __future__ import annotations

from typing import Any

from train.config import load_config
from train.study import Budget
from train.study.runs import data_override, toml_value
from train.sweep import Arm
from vlm_demo.combos import COMBOS

STUDY_FAMILIES = ("mlp", "attention", "linear", "query", "perceiver", "tinylm")
THESIS_FAMILIES = ("mlp", "attention", "query")  # the TerraAlign thesis's three adapters
DEVIATIONS: dict[str, dict[str, Any]] = {  # where an arm departs from its family's registered options
    "mlp": {"stage_features": [], "stage_subgrid": [], "input_norm": False, "class_tokens": 0},  # plain per-token MLP
    "query": {"num_queries": 24},  # the thesis's query adapter halves the tokens (255 -> 128): 49 -> 24
}
FAMILY_OPTIONS: dict[str, dict[str, Any]] = {  # each family's registered combination, then the arm's deviation
    family: {**COMBOS[family].adapter_options, **DEVIATIONS.get(family, {})} for family in STUDY_FAMILIES}
TINY_OPTIONS: dict[str, dict[str, Any]] = {  # the --tiny budget's transformers: one narrow block (seconds, not minutes)
    "attention": {"width": 32, "num_blocks": 1}, "query": {"width": 32, "num_blocks": 1},
    "perceiver": {"width": 32, "depth": 1, "num_heads": 4, "num_latents": 4},
    "tinylm": {"lm_width": 32, "lm_layers": 1, "lm_heads": 4, "num_latents": 4},
}
ALIGN_EPOCHS = 4  # the thesis's pre-training epochs (Tables 4-6)
TRAIN_QUESTIONS, EVAL_QUESTIONS = 2, 4  # shapes questions per image: count, colour, shape, position


def adapter(family: str, budget: Budget, **changes: Any) -> list[str]:
    """The family and its options with `changes` (smaller transformers at the --tiny budget)."""
    options = {**FAMILY_OPTIONS[family], **(TINY_OPTIONS.get(family, {}) if budget.name == "tiny" else {}), **changes}
    if family == "tinylm" and budget.name == "tiny":  # the tiny LM shares the tiny LLM's (small) vocabulary
        options["vocab_size"] = llm_config(budget).vocab_size
    return [f'model.adapter="{family}"'] + ([f"model.adapter_options={toml_value(options)}"] if options else [])


def llm_config(budget: Budget) -> Any:
    """The transformers config of the budget's LLM: a registered one's packaged folder (or hub id), else the folder
    or hub id the budget names."""
    from transformers import AutoConfig

    from vlm_demo.llms import LLMS

    name = load_config(None, budget.base).model.llm
    spec = LLMS.get(name)
    source = (spec.local_dir() if spec.local_dir else spec.hub_id) if spec else name
    return AutoConfig.from_pretrained(source)


def align(family: str, budget: Budget) -> Arm:
    """EMD to the caption's token embeddings, no LLM forward, for ALIGN_EPOCHS epochs of the budget's captions."""
    return Arm(f"align-{family}", [("align", [*adapter(family, budget), "train.max_steps=0",
                                              f"train.epochs={ALIGN_EPOCHS}"])])


def qa_data(budget: Budget) -> list[str]:
    """Training on each image's caption plus TRAIN_QUESTIONS shapes questions."""
    return [data_override(budget, "train", vqa_per_image=TRAIN_QUESTIONS)]


def qa_eval(budget: Budget) -> list[str]:
    """Evaluation on each image's caption plus up to EVAL_QUESTIONS questions (every type a one-object image has)."""
    return [data_override(budget, "eval", vqa_per_image=EVAL_QUESTIONS)]


def fine_tuned(family: str, budget: Budget) -> Arm:
    """The family's align stage, then LoRA fine-tuning with the adapter on the budget's captions: the thesis's
    pre-training and fine-tuning."""
    return Arm(f"align-{family}-lora", [("caption", [*adapter(family, budget), 'caption.llm_mode="lora"'])],
               after=align(family, budget))


KIND_TEST_IMAGES = 1000  # the 40-way task's held-out items at the full budget: enough to separate a few points
KIND_DATA = {"max_objects": 1, "vqa_per_image": 1, "question_types": ["kind"], "with_captions": False}


def kind(family: str, budget: Budget) -> Arm:
    """The family's align stage, then LoRA fine-tuning with the adapter on one fixed question about single-shape images,
    "What colour and shape is the object?" (8 colours x 5 shapes): as the thesis fine-tuned its pre-trained adapters
    and the LLM to name Food101's classes."""
    data = [data_override(budget, split, **KIND_DATA) for split in ("train", "val")]
    return Arm(f"kind-{family}", [("caption", [*adapter(family, budget), 'caption.llm_mode="lora"', *data])],
               after=align(family, budget))


def kind_eval(budget: Budget) -> list[str]:
    """The 40-way question on held-out single-shape images (KIND_TEST_IMAGES beyond the tiny budget)."""
    size = {"count": KIND_TEST_IMAGES} if budget.name != "tiny" else {}
    return [data_override(budget, "eval", **KIND_DATA, **size)]


def finer_validation(budget: Budget, factor: int = 2) -> list[str]:
    """Validation `factor` times as often as the budget's (for steps to a loss threshold or the area under the curve;
    it does not change the training); nothing when the budget validates once an epoch."""
    every = load_config(None, budget.base).train.val_every
    return [f"train.val_every={max(1, every // factor)}"] if every else []


def qa(family: str, budget: Budget) -> Arm:
    """Caption stage (frozen LLM) from scratch on captions and questions (the attention family's validates more often:
    emd-prealign counts its steps)."""
    extra = finer_validation(budget) if family == "attention" else []
    return Arm(f"qa-{family}", [("caption", [*adapter(family, budget), *qa_data(budget), *extra])])


def aligned_qa(family: str, budget: Budget) -> Arm:
    """The same caption stage, continuing the family's align stage (its runs are those of `align(family)`)."""
    return Arm(f"align-{family}-qa", [("caption", [*adapter(family, budget), *qa_data(budget),
                                                   *finer_validation(budget)])], after=align(family, budget))
