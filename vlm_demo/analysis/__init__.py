"""Alignment analysis: image tokens against the LLM vocabulary (nearest tokens, baselines, spectra, PCA, ablation).

The numeric parts are re-exported here (`from vlm_demo import analysis; analysis.neighbor_table(...)`); the figures
(`vlm_demo.analysis.figures`, plotly and matplotlib) and the CLI verbs (`vlm_demo.analysis.cli`) import on demand.
"""

from vlm_demo.analysis.labels import label_piece, readable, unreadable
from vlm_demo.analysis.neighbors import (
    Ablation,
    Neighbor,
    NeighborTable,
    choose_precision,
    nearest_token_ablation,
    neighbor_table,
    top_k,
)
from vlm_demo.analysis.pca import (
    Basis,
    captured_variance,
    components_for_variance,
    joint_basis,
    vocabulary_basis,
)
from vlm_demo.analysis.stats import (
    Spectrum,
    effective_rank,
    expected_gaussian_norm,
    expected_max_gaussian,
    matrix_spectrum,
    norm_ratio,
    one_blas_thread,
    random_baseline,
    random_baseline_closed_form,
    weight_spectra,
)
from vlm_demo.analysis.vocabulary import Vocabulary, clear_caches, vocabulary

__all__ = [
    "Ablation", "Basis", "Neighbor", "NeighborTable", "Spectrum", "Vocabulary", "captured_variance",
    "choose_precision", "clear_caches", "components_for_variance", "effective_rank", "expected_gaussian_norm",
    "expected_max_gaussian", "joint_basis", "label_piece", "matrix_spectrum", "nearest_token_ablation",
    "neighbor_table", "norm_ratio", "one_blas_thread", "random_baseline", "random_baseline_closed_form", "readable",
    "top_k", "unreadable", "vocabulary", "vocabulary_basis", "weight_spectra",
]
