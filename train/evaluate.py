"""Held-out metrics: BLEU-4/CIDEr, VQA exact match per type (and the majority-answer baseline), classification
(lenient/strict), shapes attributes; ablations of the image tokens (real | nearest | random | none) and a prompt
override, written beside the plain evaluation as eval-<ablation>.json."""

from __future__ import annotations

import json
import re
import statistics
from collections import defaultdict
from pathlib import Path

import torch
from tqdm import tqdm

from train.config import TrainConfig
from train.data import Sample
from train.data.classify import DIGIT_WORDS, TEXTILE_CLASSES
from train.data.shapes import NUMBERS
from train.loop import gather_samples, teacher_tokens
from vlm_demo.checkpoint import Checkpoint
from vlm_demo.llms import GenerationSettings
from vlm_demo.pipeline import VisionLanguageModel

ARTICLES = {"a", "an", "the"}


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def normalise_answer(text: str) -> str:
    return " ".join(w for w in words(text) if w not in ARTICLES)


def caption_scores(predictions: list[str], references: list[list[str]]) -> dict[str, float]:
    """Corpus BLEU-4 (sacrebleu, 0-100) and CIDEr-D (pycocoevalcap's pure-Python scorer: the mean of the captions'
    own scores)."""
    import sacrebleu

    most = max(len(r) for r in references)
    streams = [[refs[i] if i < len(refs) else refs[0] for refs in references] for i in range(most)]
    bleu = sacrebleu.corpus_bleu(predictions, streams).score
    return {"bleu4": bleu, "cider": float(statistics.fmean(caption_item_scores(predictions, references)))}


def shapes_attributes(prediction: str, objects: list[dict]) -> dict[str, bool]:
    """Whether a caption names every object's colour, every shape, and the right count."""
    said = set(words(prediction))
    colours = all(o["colour"] in said for o in objects)
    shapes = all(o["shape"] in said or o["shape"] + "s" in said for o in objects)
    named_numbers = {NUMBERS.index(w) for w in said if w in NUMBERS[2:]} | {int(w) for w in said if w in "234"}
    count = (not named_numbers) if len(objects) == 1 else named_numbers == {len(objects)}
    return {"colour": colours, "shape": shapes, "count": count, "all": colours and shapes and count}


def names_object(text: str, keywords: list[str]) -> bool:
    """Whether a caption names the main object: one of its words (or a plural), or a multi-word name, appears."""
    said = words(text)
    joined = " " + " ".join(said) + " "
    return any((f" {' '.join(words(k))} " in joined) if " " in k else (k in said or k + "s" in said or k + "es" in said)
               for k in keywords)


def photo_baselines(encoder, photos: list[Sample]) -> dict[str, float]:
    """The baselines a photo score is set beside: how often one of the encoder's own top-1 or top-3 ImageNet labels
    names the object, by the class name alone and (an ImageNet-1k head) in the everyday words the pseudo-captions say
    it in ("Egyptian Mau, a type of cat"); none for an encoder without a head."""
    from vlm_demo.adapters.label import IMAGENET_CLASSES, everyday_names

    head = encoder.class_head
    if head is None or not photos:
        return {}
    with torch.inference_mode():
        best = head.logits(encoder([s.load_image() for s in photos]).pooled).topk(3, dim=-1).indices.tolist()
    wordings = {"": head.names, "_everyday": everyday_names() if len(head.names) == IMAGENET_CLASSES else None}
    return {f"encoder_top{k}{suffix}_baseline": sum(any(names_object(names[i], s.meta["keywords"]) for i in top[:k])
                                                    for top, s in zip(best, photos)) / len(photos)
            for suffix, names in wordings.items() if names for k in (1, 3)}


def classification_correct(prediction: str, sample: Sample) -> tuple[bool, bool]:
    """(lenient: the class name appears, as the thesis counted; strict: it is the only class named)."""
    said = words(prediction)
    if sample.qtype == "digits":
        named = {w for w in said if w.isdigit() and len(w) == 1} | {str(DIGIT_WORDS.index(w)) for w in said
                                                                     if w in DIGIT_WORDS}
    else:
        named = {w for w in said if w in TEXTILE_CLASSES}
    return sample.label in named, named == {sample.label}


def ablated_tokens(tokens: torch.Tensor, mode: str, llm, seed: int = 0) -> torch.Tensor:
    """Image tokens [B, T, H] as an ablation sees them: `real` as they are, `nearest` each replaced by its nearest
    vocabulary row (cosine), `random` Gaussian directions at the real tokens' norms, `none` no tokens at all."""
    if mode == "real":
        return tokens
    if mode == "none":
        return tokens[:, :0]
    if mode == "random":
        draws = torch.randn(tokens.shape, generator=torch.Generator().manual_seed(seed)).to(tokens.device)
        unit = draws / draws.norm(dim=-1, keepdim=True)
        return (unit * tokens.float().norm(dim=-1, keepdim=True)).to(tokens.dtype)
    if mode == "nearest":
        from vlm_demo.analysis import top_k, vocabulary

        _, ids = top_k(tokens, vocabulary(llm), k=1)
        table = llm.vocabulary_embeddings()
        return table[ids[:, 0].reshape(tokens.shape[:2]).to(table.device)].to(tokens.device, tokens.dtype)
    raise ValueError(f"unknown image-token ablation '{mode}'; known: real, nearest, random, none")


def answer_all(vlm: VisionLanguageModel, samples: list[Sample], max_new_tokens: int, batch_size: int,
               progress: bool = True, image_tokens: str = "real", prompt: str = "") -> list[str]:
    """Generated answers; `image_tokens` ablates the tokens, `prompt` replaces every sample's own prompt."""
    settings = GenerationSettings(max_new_tokens=max_new_tokens, repetition_penalty=1.0)
    answers = []
    for start in tqdm(range(0, len(samples), batch_size), desc="eval", unit="batch", disable=not progress):
        chunk = samples[start:start + batch_size]
        images = [s.load_image() for s in chunk]
        tokens = ablated_tokens(vlm.image_tokens(images), image_tokens, vlm.llm, seed=start)
        inputs = vlm.prepare(images, [prompt or s.prompt for s in chunk], image_tokens=tokens)
        answers.extend(vlm.generate(inputs, settings))
    return answers


def majority_answers(samples: list[Sample]) -> dict[str, float]:
    """The VQA score of always giving each question type's most common answer (and overall)."""
    answers = defaultdict(list)
    for sample in samples:
        if sample.task == "vqa":
            answers[sample.qtype].append(normalise_answer(sample.label))
    best = {q: max(a.count(x) for x in set(a)) for q, a in answers.items()}
    result = {q: best[q] / len(answers[q]) for q in sorted(answers)}
    if answers:
        result["overall"] = sum(best.values()) / sum(len(a) for a in answers.values())
    return result


def compute_metrics(samples: list[Sample], answers: list[str]) -> dict:
    metrics: dict = {}
    captions = [(s, a) for s, a in zip(samples, answers) if s.task == "caption"]
    if captions:
        metrics["caption"] = caption_scores([a for _, a in captions], [s.references or [s.target] for s, _ in captions])
        metrics["caption"]["count"] = len(captions)
        shaped = [shapes_attributes(a, s.meta["objects"]) for s, a in captions if "objects" in s.meta]
        if shaped:
            metrics["shapes_attributes"] = {key: sum(r[key] for r in shaped) / len(shaped)
                                            for key in ("colour", "shape", "count", "all")}
            single = [r for r, (s, _) in zip(shaped, [c for c in captions if "objects" in c[0].meta])
                      if len(s.meta["objects"]) == 1]
            if single:
                metrics["shapes_attributes"]["single_object_colour_and_shape"] = (
                    sum(r["colour"] and r["shape"] for r in single) / len(single))
            metrics["shapes_attributes"]["count_images"] = len(shaped)
    named = [names_object(a, s.meta["keywords"]) for s, a in zip(samples, answers) if s.task == "name"]
    if named:
        metrics["photos_object_named"] = {"score": sum(named) / len(named), "count": len(named)}
    vqa = defaultdict(list)
    for sample, answer in zip(samples, answers):
        if sample.task == "vqa":
            vqa[sample.qtype].append(answer_matches(answer, sample.label))
    if vqa:
        metrics["vqa_exact_match"] = {q: sum(v) / len(v) for q, v in sorted(vqa.items())}
        metrics["vqa_exact_match"]["overall"] = sum(sum(v) for v in vqa.values()) / sum(len(v) for v in vqa.values())
        metrics["vqa_majority_answer_baseline"] = majority_answers(samples)
    classes, labels = defaultdict(list), defaultdict(list)
    for sample, answer in zip(samples, answers):
        if sample.task == "classify":
            classes[sample.qtype].append(classification_correct(answer, sample))
            labels[sample.qtype].append(sample.label)
    for name, results in sorted(classes.items()):
        majority = max(labels[name].count(label) for label in set(labels[name])) / len(results)
        metrics[f"{name}_accuracy"] = {"lenient": sum(r[0] for r in results) / len(results),
                                       "strict": sum(r[1] for r in results) / len(results), "count": len(results),
                                       "majority_class_baseline": majority}
    return metrics


def feature_mse(encoder, adapter, teacher, samples: list[Sample]) -> dict[str, float]:
    """Per-image MSE between adapter outputs and the teacher's tokens (the ResNet seed's table)."""
    errors = []
    with torch.inference_mode():
        for sample in {s.image_id: s for s in samples}.values():
            image = sample.load_image()
            student = adapter.eval()(encoder([image]))
            target = teacher_tokens(teacher([image]).tokens, student.shape[1])
            errors.append(torch.mean((student - target) ** 2).item())
    return {"mse_mean": statistics.mean(errors), "mse_std": statistics.pstdev(errors), "images": len(errors)}


def results_name(config: TrainConfig) -> str:
    """`eval` for the plain evaluation; `eval-<image_tokens>[-prompt]` for an ablation (never overwrites it); either
    ends in `-<precision>` when the LLM's weights are not fp32."""
    settings = config.eval
    precision = "" if settings.llm_precision == "fp32" else f"-{settings.llm_precision}"
    if settings.image_tokens == "real" and not settings.prompt:
        return "eval" + precision
    return f"eval-{settings.image_tokens}" + ("-prompt" if settings.prompt else "") + precision


def prediction_rows(samples: list[Sample], answers: list[str]) -> list[dict]:
    """What `<results>_predictions.jsonl` keeps of each answer."""
    return [{"image": sample.image_id, "task": sample.task, "qtype": sample.qtype, "prompt": sample.prompt,
             "answer": answer, "target": sample.target} for sample, answer in zip(samples, answers)]


def write_results(folder: Path, samples: list[Sample], answers: list[str], metrics: dict, name: str = "eval") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(metrics, indent=2))
    rows = prediction_rows(samples, answers)
    (folder / f"{name}_predictions.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


def distilled_parts(checkpoint: Checkpoint, teacher_name: str) -> tuple:
    """(encoder, adapter, teacher) of an adapter distilled to imitate a teacher encoder's tokens."""
    from vlm_demo.adapters import adapter_for
    from vlm_demo.encoders import build_encoder

    encoder, teacher = checkpoint.vision_encoder(), build_encoder(teacher_name)
    return encoder, adapter_for(encoder, teacher.name, teacher.embed_dim, checkpoint=checkpoint), teacher


def evaluate(config: TrainConfig, checkpoint: Checkpoint | str | None = None, progress: bool = True) -> dict:
    """Held-out metrics of a checkpoint (by default the run's adapter), resolved once: feature MSE against the teacher
    for a distilled adapter, else the generated answers' scores; written beside the run."""
    folder = Path(config.output_dir)
    checkpoint = Checkpoint.resolve(checkpoint or folder / "adapter")
    samples = gather_samples(config.data.eval, "test")
    if config.align.loss != "emd" and checkpoint.config.get("llm") == config.align.teacher:
        encoder, adapter, teacher = distilled_parts(checkpoint, config.align.teacher)
        metrics = {"feature_mse": feature_mse(encoder, adapter, teacher, samples)}
        write_results(folder, [], [], metrics)
        return metrics
    settings = config.eval
    vlm = VisionLanguageModel.from_checkpoint(checkpoint, name=config.name, precision=settings.llm_precision)
    answers = answer_all(vlm, samples, settings.max_new_tokens, settings.batch_size, progress, settings.image_tokens,
                         settings.prompt)
    metrics = compute_metrics(samples, answers)
    if "photos_object_named" in metrics:
        photos = [s for s in samples if s.task == "name"]
        metrics["photos_object_named"] |= {"split": "test"} | photo_baselines(vlm.encoder, photos)
    name = results_name(config)
    if settings.image_tokens != "real" or settings.prompt:
        metrics["ablation"] = {"image_tokens": settings.image_tokens, "prompt": settings.prompt or None}
    if vlm.llm.precision != "fp32":
        metrics["llm_precision"] = vlm.llm.precision
    write_results(folder, samples, answers, metrics, name)
    return metrics


def caption_item_scores(predictions: list[str], references: list[list[str]]) -> list[float]:
    """Each caption's own CIDEr-D (pycocoevalcap's per-item scores, tokenised as caption_scores does; their mean is
    its corpus CIDEr, the document frequencies coming from every reference)."""
    from pycocoevalcap.cider.cider import Cider

    refs = {index: [" ".join(words(text)) for text in group] for index, group in enumerate(references)}
    said = {index: [" ".join(words(text)) or "empty"] for index, text in enumerate(predictions)}
    _, scores = Cider().compute_score(refs, said)
    return [float(score) for score in scores]


def answer_matches(answer: str, label: str) -> bool:
    """The VQA exact match compute_metrics counts: the normalised answer equals the normalised label."""
    return normalise_answer(answer) == normalise_answer(label)


def feature_errors(config: TrainConfig) -> list[float]:
    """Each evaluation image's MSE to the teacher's tokens (the per-image values whose mean is feature_mse's) for the
    run's distilled adapter; nothing is written."""
    encoder, adapter, teacher = distilled_parts(Checkpoint.resolve(Path(config.output_dir) / "adapter"),
                                                config.align.teacher)
    images = {s.image_id: s for s in gather_samples(config.data.eval, "test")}.values()
    return [feature_mse(encoder, adapter, teacher, [sample])["mse_mean"] for sample in images]
