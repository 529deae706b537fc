"""Baselines and statistics: the random-Gaussian cosine baseline, norm ratios, weight spectra and effective rank."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from threadpoolctl import ThreadpoolController  # installed with scikit-learn
from torch import nn

from vlm_demo.analysis.vocabulary import Vocabulary

_THREADS = ThreadpoolController()


def one_blas_thread():
    """Context for numpy/scikit-learn linear algebra: one BLAS thread. Right after torch ops, OpenBLAS threads fight
    torch's spinning OpenMP threads; on 2 shared cores that made a 576x576 eigh take seconds instead of ~50 ms."""
    return _THREADS.limit(limits=1, user_api="blas")


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


def matrix_spectrum(name: str, matrix: torch.Tensor) -> Spectrum:
    """Singular values, entropy effective rank and numerical rank of one matrix."""
    matrix = matrix.detach().float().cpu()
    with one_blas_thread():
        s = np.linalg.svd(matrix.numpy(), compute_uv=False)
    tolerance = s.max(initial=0.0) * max(matrix.shape) * np.finfo(np.float32).eps
    return Spectrum(name, tuple(matrix.shape), s, effective_rank(s), int((s > tolerance).sum()))


def weight_spectra(module: nn.Module, initial: nn.Module | None = None) -> list[Spectrum]:
    """Singular values and effective rank of every Linear weight (for a linear adapter: its single `proj`); with
    `initial` (the same adapter before training), of each weight's change since then."""
    start = dict(initial.named_modules()) if initial is not None else {}
    spectra = []
    for name, layer in module.named_modules():
        if isinstance(layer, nn.Linear):
            weight = layer.weight.detach().float()
            if initial is not None:
                weight = weight - start[name].weight.detach().float().to(weight.device)
            spectra.append(matrix_spectrum(name, weight))
    return spectra

