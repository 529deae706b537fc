"""Nearest vocabulary tokens of image tokens (exact fp32 cosines, bf16 shortlist when faster) and the ablation that
replaces each image token by its nearest vocabulary row."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vlm_demo.analysis.vocabulary import Vocabulary, vocabulary

# worst |bf16 - fp32| cosine of unit vectors: inputs rounded (2u), output rounded (u), u = 2^-8; + fp32 accumulation
BF16_EPS = 2.0**-7 + 2.0**-8 + 2.0**-10
CANDIDATE_MARGIN = 64  # bf16 shortlist = top (k + margin), rescored exactly in fp32


@dataclass
class Neighbor:
    token_id: int
    token: str  # plain text
    label: str  # readable label
    cosine: float
    image_token: int | None = None  # aggregate only: the image token with the best cosine
    hits: int | None = None  # aggregate only: image tokens that have this token in their own top k

    def to_dict(self) -> dict:
        extra = {} if self.image_token is None else {"image_token": self.image_token, "hits": self.hits}
        return {"token": self.token, "token_id": self.token_id, "cosine": round(self.cosine, 6), **extra}


@dataclass
class NeighborTable:
    per_token: list[list[Neighbor]]
    aggregate: list[Neighbor]  # best cosine over all image tokens per vocabulary row
    norms: list[float]


def _search(unit: torch.Tensor, vocab: Vocabulary, k: int, precision: str):
    """(values, ids) per row and (values, ids, row) of the max-over-rows aggregate; exact fp32 cosines."""
    size = len(vocab)
    if precision == "bf16":
        approx = unit.bfloat16() @ vocab.unit_bf16.T
        shortlist = min(size, k + CANDIDATE_MARGIN)
        cut, cand = approx.topk(shortlist, dim=1)
        exact = vocab.cosines(unit, cand)
        values, order = exact.topk(k, dim=1)
        agg_cut, agg_cand = approx.amax(dim=0).topk(shortlist)
        best, row = vocab.cosines(unit, agg_cand).max(dim=0)
        agg_values, agg_order = best.topk(k)
        # anything outside a shortlist scores at most cutoff + eps exactly; fall back if that could beat rank k
        if shortlist == size or (bool((values[:, -1] >= cut[:, -1].float() + BF16_EPS).all())
                                 and float(agg_values[-1]) >= float(agg_cut[-1]) + BF16_EPS):
            return values, cand.gather(1, order), agg_values, agg_cand[agg_order], row[agg_order]
    scores = vocab.cosines(unit)
    values, ids = scores.topk(k, dim=1)
    best, row = scores.max(dim=0)
    agg_values, agg_ids = best.topk(k)
    return values, ids, agg_values, agg_ids, row[agg_ids]


def choose_precision(vocab: Vocabulary, unit: torch.Tensor, k: int = 10) -> str:
    """Time fp32 and bf16-shortlist search once per vocabulary and keep the faster (both give fp32 cosines)."""
    if vocab.precision is None:
        times: dict[str, list[float]] = {"fp32": [], "bf16": []}
        for round_ in range(4):  # interleaved, so load from other processes hits both alike; round 0 warms up
            for precision, seconds in times.items():
                start = time.perf_counter()
                _search(unit, vocab, k, precision)
                seconds.append(time.perf_counter() - start if round_ else math.inf)
        vocab.timings = {precision: min(seconds) for precision, seconds in times.items()}
        vocab.precision = min(("fp32", "bf16"), key=vocab.timings.__getitem__)
    return vocab.precision


def top_k(tokens: torch.Tensor, vocab: Vocabulary, k: int = 10, precision: str | None = None):
    """Top-k vocabulary rows by cosine for each row of tokens [N, H]: (cosines [N, k], ids [N, k])."""
    unit = F.normalize(tokens.detach().float().cpu().reshape(-1, vocab.embeddings.shape[1]), dim=-1)
    k = min(k, len(vocab))
    values, ids, *_ = _search(unit, vocab, k, precision or choose_precision(vocab, unit, k))
    return values, ids


def neighbor_table(tokens: torch.Tensor, vocab: Vocabulary, k: int = 10, precision: str | None = None) -> NeighborTable:
    """Per image token top-k and the aggregate over all of them (Table III of the single-FC-layer paper)."""
    flat = tokens.detach().float().cpu().reshape(-1, vocab.embeddings.shape[1])
    unit = F.normalize(flat, dim=-1)
    k = min(k, len(vocab))
    values, ids, agg_values, agg_ids, agg_rows = _search(unit, vocab, k, precision or choose_precision(vocab, unit, k))

    def entry(token_id: int, cosine: float, **extra) -> Neighbor:
        return Neighbor(token_id, vocab.text(token_id), vocab.labels[token_id], cosine, **extra)

    id_rows = ids.tolist()
    per_token = [[entry(i, c) for i, c in zip(row, cos)] for row, cos in zip(id_rows, values.tolist())]
    hits = [sum(token_id in row for row in id_rows) for token_id in agg_ids.tolist()]
    aggregate = [entry(i, c, image_token=r, hits=h)
                 for i, c, r, h in zip(agg_ids.tolist(), agg_values.tolist(), agg_rows.tolist(), hits)]
    return NeighborTable(per_token, aggregate, flat.norm(dim=1).tolist())


@dataclass
class Ablation:
    caption: str
    ablated: str  # caption with every image token replaced by its nearest vocabulary embedding
    replaced_ids: list[int]


def nearest_token_ablation(vlm, images: list, prompt: str | None = None, settings=None) -> list[Ablation]:
    """Caption with the real image tokens and with each replaced by its nearest vocabulary row, side by side."""
    from vlm_demo.pipeline import DEFAULT_PROMPT

    prompts = [prompt or DEFAULT_PROMPT] * len(images)
    tokens = vlm.image_tokens(images)
    _, ids = top_k(tokens, vocabulary(vlm.llm), k=1)
    ids = ids[:, 0].reshape(tokens.shape[:2])
    replaced = vlm.llm.vocabulary_embeddings()[ids.to(vlm.llm.device)].to(tokens.dtype)
    real = vlm.generate(vlm.prepare(images, prompts, image_tokens=tokens), settings)
    ablated = vlm.generate(vlm.prepare(images, prompts, image_tokens=replaced), settings)
    return [Ablation(a, b, row) for a, b, row in zip(real, ablated, ids.tolist())]
