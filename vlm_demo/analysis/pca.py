"""PCA of image tokens against the vocabulary: a cached vocabulary basis, an exact joint basis, variance counts."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.decomposition import PCA

from vlm_demo.analysis.stats import one_blas_thread
from vlm_demo.analysis.vocabulary import Vocabulary


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

