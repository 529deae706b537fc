"""Alignment analysis: image tokens vs the LLM vocabulary (nearest tokens, baselines, spectra, PCA, ablation)."""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.decomposition import PCA
from threadpoolctl import ThreadpoolController  # installed with scikit-learn
from torch import nn

# worst |bf16 - fp32| cosine of unit vectors: inputs rounded (2u), output rounded (u), u = 2^-8; + fp32 accumulation
BF16_EPS = 2.0**-7 + 2.0**-8 + 2.0**-10
CANDIDATE_MARGIN = 64  # bf16 shortlist = top (k + margin), rescored exactly in fp32
CACHE_SIZE = 2  # LLM vocabularies kept in memory
SPACE_MARK = "\u2423"  # shown for a space inside token labels
_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r", " ": SPACE_MARK, SPACE_MARK: "\\u2423"}
_UNESCAPES = {"\\": "\\", "n": "\n", "t": "\t", "r": "\r"}
_THREADS = ThreadpoolController()


def one_blas_thread():
    """Context for numpy/scikit-learn linear algebra: one BLAS thread. Right after torch ops, OpenBLAS threads fight
    torch's spinning OpenMP threads; on 2 shared cores that made a 576x576 eigh take seconds instead of ~50 ms."""
    return _THREADS.limit(limits=1, user_api="blas")


def _byte_tables() -> tuple[dict[int, str], dict[str, int]]:
    """GPT-2's byte <-> printable-character table that byte-level BPE vocabularies are written in."""
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("\xa1"), ord("\xac") + 1), *range(ord("\xae"), ord("\xff") + 1)]
    codes, shifted = list(kept), 0
    for byte in range(256):
        if byte not in kept:  # unprintable bytes map to chr(256), chr(257), ...
            kept.append(byte)
            codes.append(256 + shifted)
            shifted += 1
    encoder = {byte: chr(code) for byte, code in zip(kept, codes)}
    return encoder, {char: byte for byte, char in encoder.items()}


BYTE_ENCODER, BYTE_DECODER = _byte_tables()


def readable(data: bytes) -> str:
    """A one-line, reversible label: spaces as the open-box sign, controls and stray UTF-8 bytes escaped."""
    out = []
    for char in data.decode("utf-8", "surrogateescape"):
        code = ord(char)
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif 0xDC80 <= code <= 0xDCFF:  # a byte that is not (yet) valid UTF-8, e.g. half a CJK character
            out.append(f"\\x{code - 0xDC00:02x}")
        elif not char.isprintable():
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(char)
    return "".join(out)


def unreadable(label: str) -> bytes:
    """The bytes a `readable` label stands for."""
    chars, index = [], 0
    while index < len(label):
        char = label[index]
        if char == SPACE_MARK:
            chars.append(" ")
        elif char == "\\":
            kind = label[index + 1]
            width = {"x": 2, "u": 4, "U": 8}.get(kind, 0)
            if kind in _UNESCAPES:
                chars.append(_UNESCAPES[kind])
            elif width:
                code = int(label[index + 2:index + 2 + width], 16)
                chars.append(chr(0xDC00 + code) if kind == "x" else chr(code))
            else:
                raise ValueError(f"bad escape in token label {label!r}")
            index += 1 + width
        else:
            chars.append(char)
        index += 1
    return "".join(chars).encode("utf-8", "surrogateescape")


def piece_bytes(piece: str, byte_level: bool) -> bytes:
    """The bytes a tokenizer piece stands for (byte-level BPE, SentencePiece '<0xNN>' bytes and '\u2581' spaces)."""
    if byte_level and all(char in BYTE_DECODER for char in piece):
        return bytes(BYTE_DECODER[char] for char in piece)
    match = re.fullmatch(r"<0x([0-9A-Fa-f]{2})>", piece)
    return bytes([int(match[1], 16)]) if match else piece.replace("\u2581", " ").encode("utf-8")


def label_piece(label: str, byte_level: bool) -> str:
    """Inverse of `readable(piece_bytes(piece))`: the tokenizer piece a label names."""
    data = unreadable(label)
    if byte_level:
        return "".join(BYTE_ENCODER[byte] for byte in data)
    if len(data) == 1 and data[0] >= 0x80:
        return f"<0x{data[0]:02X}>"
    return data.decode("utf-8", "surrogateescape").replace(" ", "\u2581")


def is_byte_level(tokenizer) -> bool:
    decoder = getattr(getattr(tokenizer, "backend_tokenizer", None), "decoder", None)
    return "ByteLevel" in repr(decoder) or "\u0120the" in (tokenizer.get_vocab() if tokenizer is not None else {})


def fingerprint(matrix: torch.Tensor) -> str:
    """Checksum of an embedding table: shape, every column sum and a strided sample of rows."""
    data = matrix.detach().float().cpu()
    digest = hashlib.blake2b(str(tuple(data.shape)).encode(), digest_size=12)
    digest.update(data.sum(dim=0).numpy().tobytes())
    digest.update(data[:: max(1, data.shape[0] // 512)].contiguous().numpy().tobytes())
    return digest.hexdigest()


class Vocabulary:
    """One LLM's embedding table ready for comparisons; its caches (labels, PCA bases, baseline) live here."""

    def __init__(self, name: str, matrix: torch.Tensor, tokenizer=None, checksum: str | None = None) -> None:
        self.name, self.tokenizer = name, tokenizer
        self.embeddings = matrix.detach().float().cpu()
        self.checksum = checksum or fingerprint(self.embeddings)
        self.norms = self.embeddings.norm(dim=1)
        self.inverse_norms = 1 / self.norms.clamp_min(1e-12)  # cosines divide by norms: no unit-length copy
        self.byte_level = tokenizer is not None and is_byte_level(tokenizer)
        self.precision: str | None = None  # "fp32" or "bf16", measured on first search
        self.timings: dict[str, float] = {}
        self.cache: dict = {}  # PCA bases, projections, baseline, scatter matrix
        self._quick: tuple = ()
        self._unit_bf16: torch.Tensor | None = None
        self._pieces: list[str] | None = None
        self._labels: list[str] | None = None

    def __len__(self) -> int:
        return self.embeddings.shape[0]

    @property
    def unit(self) -> torch.Tensor:
        """Unit-length rows [V, H], computed on each call (the app keeps no fp32 copy of the table)."""
        return self.embeddings * self.inverse_norms[:, None]

    @property
    def unit_bf16(self) -> torch.Tensor:
        if self._unit_bf16 is None:
            chunks = zip(self.embeddings.split(4096), self.inverse_norms.split(4096))
            self._unit_bf16 = torch.cat([(rows * inverse[:, None]).bfloat16() for rows, inverse in chunks])
        return self._unit_bf16

    def cosines(self, unit: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Cosines of unit-length queries [N, H] with every row -> [N, V], with shared `rows` [M] -> [N, M], or
        with each query's own `rows` [N, M] -> [N, M]."""
        if rows is None:
            return (unit @ self.embeddings.T) * self.inverse_norms
        if rows.dim() == 2:
            return torch.einsum("nh,nmh->nm", unit, self.embeddings[rows]) * self.inverse_norms[rows]
        return (unit @ self.embeddings[rows].T) * self.inverse_norms[rows]

    @property
    def pieces(self) -> list[str]:
        if self._pieces is None:
            known = self.tokenizer.convert_ids_to_tokens(list(range(len(self)))) if self.tokenizer else []
            self._pieces = [(known[i] if i < len(known) else None) or f"<row {i}>" for i in range(len(self))]
        return self._pieces

    @property
    def labels(self) -> list[str]:
        """Readable, reversible label for every row (see `readable`)."""
        if self._labels is None:
            self._labels = [readable(piece_bytes(piece, self.byte_level)) for piece in self.pieces]
        return self._labels

    def text(self, token_id: int) -> str:
        """The token as plain text (undecodable bytes as \\xNN)."""
        return piece_bytes(self.pieces[token_id], self.byte_level).decode("utf-8", "backslashreplace")


_VOCABULARIES: OrderedDict[str, Vocabulary] = OrderedDict()


def vocabulary(llm) -> Vocabulary:
    """The cached Vocabulary of a LanguageModel; rebuilt when its name, embedding shape or checksum changes."""
    weight = llm.vocabulary_embeddings()
    version = -1 if weight.is_inference() else weight._version  # in-place updates (training) bump the version
    quick = (tuple(weight.shape), weight.dtype, weight.data_ptr(), version)
    entry = _VOCABULARIES.get(llm.name)
    if entry is None or entry._quick != quick or version < 0:  # same table as cached? else compare checksums
        checksum = fingerprint(weight)
        if entry is None or entry.checksum != checksum:
            entry = Vocabulary(llm.name, weight, llm.tokenizer, checksum)
        entry._quick, entry.tokenizer = quick, llm.tokenizer
    _VOCABULARIES[llm.name] = entry
    _VOCABULARIES.move_to_end(llm.name)
    while len(_VOCABULARIES) > CACHE_SIZE:
        _VOCABULARIES.popitem(last=False)
    return entry


def clear_caches() -> None:
    _VOCABULARIES.clear()


# ---------------------------------------------------------------- nearest vocabulary tokens

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


# ---------------------------------------------------------------- baselines and statistics

def expected_max_gaussian(count: int) -> float:
    """E[max of `count` independent N(0, 1)] by numerical integration of 1 - Phi(x)^count."""
    x = torch.linspace(0.0, 12.0, 24001, dtype=torch.float64)
    upper = 1 - torch.exp(count * torch.special.log_ndtr(x))
    lower = torch.exp(count * torch.special.log_ndtr(-x))
    return float(torch.trapezoid(upper, x) - torch.trapezoid(lower, x))


def expected_gaussian_norm(dim: int) -> float:
    """E||g|| for g ~ N(0, I_dim): sqrt(2) Gamma((d+1)/2) / Gamma(d/2)."""
    return math.sqrt(2.0) * math.exp(math.lgamma((dim + 1) / 2) - math.lgamma(dim / 2))


def random_baseline_closed_form(rows: int, dim: int) -> float:
    """E[best cosine of a Gaussian vector against `rows` unit vectors in R^dim], as if they were orthonormal.

    g = |g| * direction with the two independent, so E[max cos] = E[max_j <u_j, g>] / E|g|. For orthonormal u_j the
    <u_j, g> are independent N(0, 1), which makes this exact when rows <= dim; for a real vocabulary (rows >> dim,
    correlated rows) it is the independence approximation, typically a little above the measured value.
    """
    return expected_max_gaussian(rows) / expected_gaussian_norm(dim)


def random_baseline(vocab: Vocabulary, samples: int = 256, seed: int = 0) -> tuple[float, float]:
    """Monte-Carlo mean and standard error of the best cosine of a Gaussian vector against the vocabulary (cached)."""
    key = ("baseline", samples, seed)
    if key not in vocab.cache:
        generator = torch.Generator().manual_seed(seed)
        draws = F.normalize(torch.randn(samples, vocab.embeddings.shape[1], generator=generator), dim=1)
        best = torch.cat([vocab.cosines(chunk).max(dim=1).values for chunk in draws.split(64)])
        vocab.cache[key] = (float(best.mean()), float(best.std() / math.sqrt(samples)) if samples > 1 else 0.0)
    return vocab.cache[key]


def norm_ratio(tokens: torch.Tensor, vocab: Vocabulary) -> float:
    """Mean image-token norm over the vocabulary's mean norm."""
    return float(tokens.detach().float().reshape(-1, vocab.embeddings.shape[1]).norm(dim=1).mean() / vocab.norms.mean())


def effective_rank(singular_values: np.ndarray | torch.Tensor) -> float:
    """Roy & Vetterli (2007) entropy effective rank: exp(H(p)), p_i = s_i / sum(s)."""
    s = np.asarray(singular_values, dtype=np.float64)
    p = s[s > 0] / s.sum() if s.sum() > 0 else np.ones(1)
    return float(np.exp(-(p * np.log(p)).sum()))


@dataclass
class Spectrum:
    name: str
    shape: tuple[int, int]
    singular_values: np.ndarray
    effective_rank: float
    numerical_rank: int  # singular values above max(s) * max(shape) * fp32 eps


def weight_spectra(module: nn.Module) -> list[Spectrum]:
    """Singular values and effective rank of every Linear weight (for a linear adapter: its single `proj`)."""
    spectra = []
    for name, layer in module.named_modules():
        if isinstance(layer, nn.Linear):
            weight = layer.weight.detach().float().cpu()
            with one_blas_thread():
                s = np.linalg.svd(weight.numpy(), compute_uv=False)
            tolerance = s.max(initial=0.0) * max(weight.shape) * np.finfo(np.float32).eps
            spectra.append(Spectrum(name, tuple(weight.shape), s, effective_rank(s), int((s > tolerance).sum())))
    return spectra


# ---------------------------------------------------------------- PCA

def _rows(x: np.ndarray | torch.Tensor, width: int | None = None) -> np.ndarray:
    """Any tensor/array of vectors as a float32 numpy matrix [N, width]."""
    x = x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)
    return x.reshape(-1, width or x.shape[-1])


@dataclass
class Basis:
    mean: np.ndarray  # [H]
    components: np.ndarray  # [c, H]
    explained: np.ndarray  # share of the fitted data's variance per component
    fit_on: str
    model: PCA | None = field(default=None, repr=False)

    def project(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        with one_blas_thread():
            return (_rows(x, self.mean.shape[0]) - self.mean) @ self.components.T


def vocabulary_basis(vocab: Vocabulary, n_components: int = 2, seed: int = 0) -> Basis:
    """Randomized PCA of the whole vocabulary, fitted once per LLM."""
    key = ("basis", n_components, seed)
    if key not in vocab.cache:
        with one_blas_thread():
            model = PCA(n_components, svd_solver="randomized", random_state=seed).fit(vocab.embeddings.numpy())
        vocab.cache[key] = Basis(model.mean_, model.components_, model.explained_variance_ratio_, "vocab", model)
    return vocab.cache[key]


def joint_basis(vocab: Vocabulary, extra: np.ndarray | torch.Tensor, n_components: int = 2) -> Basis:
    """Exact PCA of vocabulary + extra rows, from the vocabulary's cached scatter matrix (no refit of the vocabulary).

    Equals scikit-learn's full-solver PCA of the stacked rows (same sign rule: largest loading positive).
    """
    if "scatter" not in vocab.cache:
        mean = vocab.embeddings.mean(dim=0)
        centred = vocab.embeddings - mean
        vocab.cache["scatter"] = (mean.double().numpy(), (centred.T @ centred).double().numpy())
    mean_v, scatter_v = vocab.cache["scatter"]
    extra = _rows(extra, mean_v.shape[0]).astype(np.float64)
    n, m = len(vocab), len(extra)
    mean_e = extra.mean(axis=0)
    mean = (n * mean_v + m * mean_e) / (n + m)
    with one_blas_thread():
        total = scatter_v + (extra - mean_e).T @ (extra - mean_e)
        total += n * np.outer(mean_v - mean, mean_v - mean) + m * np.outer(mean_e - mean, mean_e - mean)
        values, vectors = np.linalg.eigh(total)
    top = np.argsort(values)[::-1][:n_components]
    components = vectors[:, top].T
    components *= np.sign(components[np.arange(len(top)), np.abs(components).argmax(axis=1)])[:, None]
    return Basis(mean.astype(np.float32), components.astype(np.float32), values[top] / np.trace(total), "vocab+image")


def components_for_variance(x: np.ndarray | torch.Tensor, threshold: float = 0.8) -> int:
    """How many principal components of x's rows explain at least `threshold` of their variance."""
    x = _rows(x)
    if len(x) < 2:
        return 0
    with one_blas_thread():
        ratios = PCA(svd_solver="full").fit(x).explained_variance_ratio_
    return int(min(np.searchsorted(np.cumsum(ratios), threshold - 1e-12) + 1, len(ratios)))


def captured_variance(x: np.ndarray | torch.Tensor, basis: Basis) -> float:
    """Share of x's own variance that lies in the basis' plane."""
    x = _rows(x, basis.mean.shape[0])
    centred = x - x.mean(axis=0)
    total = float((centred**2).sum())
    with one_blas_thread():
        return float(((centred @ basis.components.T) ** 2).sum() / total) if total > 0 else 0.0


# ---------------------------------------------------------------- ablation

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
