"""One LLM's embedding table ready for comparisons, cached per LLM (labels, PCA bases and baselines live on it)."""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import torch

from vlm_demo.analysis.labels import is_byte_level, piece_bytes, readable

CACHE_SIZE = 2  # LLM vocabularies kept in memory


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

