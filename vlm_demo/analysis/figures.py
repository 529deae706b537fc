"""PCA figures of image tokens against the LLM vocabulary: interactive plotly, and a matplotlib PNG of the same data."""

from __future__ import annotations

import html
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import torch

from vlm_demo import analysis
from vlm_demo.adapters import adapter_for
from vlm_demo.analysis import Basis

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#bcbd22"]
VOCAB_COLOR, CAPTION_COLOR = "#9a9a9a", "#111111"
FIT_NAMES = {"vocab": "vocabulary's", "vocab+image": "vocabulary + image tokens'"}
UNTRAINED = "UNTRAINED adapter (random weights): the image tokens show a random projection, not learned alignment"


@dataclass
class PointGroup:
    name: str
    kind: str  # "image" or "caption"
    xy: np.ndarray  # [n, 2]
    hover: list[str]
    labels: list[str]  # token label per caption point, image-token index per image point


@dataclass
class PCAView:
    """What a figure shows: the projected vocabulary cloud, image/caption groups and the numbers to state."""

    title: str
    status: str  # "trained adapter", "UNTRAINED adapter (random weights)", or the checkpoints shown
    basis: Basis
    vocab_xy: np.ndarray
    vocab_labels: list[str]  # readable token strings of the plotted vocabulary rows
    vocab_hover: list[str]
    groups: list[PointGroup]
    image_components_80: int  # principal components needed for 80% of the image tokens' variance
    image_variance_2d: float  # share of the image tokens' variance lying in the plotted plane
    image_token_count: int


def sample_ids(size: int, sample: int | None, seed: int = 0) -> np.ndarray:
    """Sorted random vocabulary rows for the background cloud (all rows when sample is 0/None or too big)."""
    if not sample or sample >= size:
        return np.arange(size)
    return np.sort(np.random.default_rng(seed).choice(size, sample, replace=False))


def pca_view(vlm, token_groups: dict[str, torch.Tensor], captions: dict[str, str] | None = None,
             fit_on: str = "vocab", vocab_sample: int | None = 10_000, seed: int = 0,
             status: str | None = None) -> PCAView:
    """Project a vocabulary sample, each named group of image tokens [T, H] and caption tokens into one PCA plane.

    fit_on="vocab" reuses the LLM's cached randomized PCA of the whole vocabulary; "vocab+image" is an exact PCA of
    the whole vocabulary plus these image tokens, from the cached vocabulary scatter matrix.
    """
    if fit_on not in FIT_NAMES:
        raise ValueError(f"fit_on must be 'vocab' or 'vocab+image', not '{fit_on}'")
    vocab = analysis.vocabulary(vlm.llm)
    width = vocab.embeddings.shape[1]
    flats = {name: tokens.detach().float().cpu().reshape(-1, width) for name, tokens in token_groups.items()}
    stacked = torch.cat(list(flats.values()))
    basis = analysis.vocabulary_basis(vocab) if fit_on == "vocab" else analysis.joint_basis(vocab, stacked)
    ids = sample_ids(len(vocab), vocab_sample, seed)
    hover_key, cloud_key = ("hover", len(ids), seed), ("cloud", len(ids), seed)
    if hover_key not in vocab.cache:
        labels = [vocab.labels[i] for i in ids.tolist()]
        vocab.cache[hover_key] = labels, [f"{label}   (token id {i})" for i, label in zip(ids.tolist(), labels)]
    if fit_on == "vocab" and cloud_key not in vocab.cache:
        vocab.cache[cloud_key] = basis.project(vocab.embeddings[torch.from_numpy(ids)])
    cloud = vocab.cache[cloud_key] if fit_on == "vocab" else basis.project(vocab.embeddings[torch.from_numpy(ids)])
    groups = []
    best, nearest = analysis.top_k(stacked, vocab, k=1)
    best, nearest = iter(best[:, 0].tolist()), iter(nearest[:, 0].tolist())
    for name, flat in flats.items():
        hover = [f"{name}: image token {i} (norm {n:.2f}); nearest token {vocab.labels[next(nearest)]} "
                 f"(cosine {next(best):.3f})" for i, n in enumerate(flat.norm(dim=1).tolist())]
        groups.append(PointGroup(name, "image", basis.project(flat), hover, [str(i) for i in range(len(flat))]))
    for name, text in (captions or {}).items():
        token_ids = vlm.llm.tokenizer(text, add_special_tokens=False)["input_ids"]
        if token_ids:
            labels = [vocab.labels[i] for i in token_ids]
            hover = [f"{name}, token {j}: {label}   (token id {i})"
                     for j, (i, label) in enumerate(zip(token_ids, labels))]
            groups.append(PointGroup(name, "caption", basis.project(vocab.embeddings[torch.tensor(token_ids)]),
                                     hover, labels))
    status = status or ("trained adapter" if vlm.trained else UNTRAINED)
    title = f"Image tokens in the PCA plane of the {vocab.name} vocabulary: combination '{vlm.name}'"
    return PCAView(title, status, basis, cloud, *vocab.cache[hover_key], groups,
                   analysis.components_for_variance(stacked), analysis.captured_variance(stacked, basis), len(stacked))


def checkpoint_tokens(vlm, checkpoints: list[str | Path], images: list, names: list[str]) -> dict[str, torch.Tensor]:
    """The same images' tokens from several checkpoints of one adapter (e.g. epoch 1 vs epoch 4)."""
    features = vlm.features(images)
    groups = {}
    for checkpoint in checkpoints:
        adapter = adapter_for(vlm.encoder, vlm.llm.name, vlm.llm.hidden_size, checkpoint=checkpoint)
        with torch.inference_mode():
            tokens = adapter(features.to(vlm.llm.device))
        for name, row in zip(names, tokens):
            groups[f"{name} @ {Path(checkpoint).name}"] = row
    return groups


def axis_title(view: PCAView, index: int) -> str:
    return f"PC{index + 1} ({view.basis.explained[index]:.1%} of the {FIT_NAMES[view.basis.fit_on]} variance)"


def notes(view: PCAView) -> str:
    """One line of statistics printed under the title."""
    return (f"PC1+PC2 explain {view.basis.explained[:2].sum():.1%} of the {FIT_NAMES[view.basis.fit_on]} variance; "
            f"the {view.image_token_count} image tokens keep {view.image_variance_2d:.1%} of their own variance in "
            f"this plane; {view.image_components_80} principal component(s) of their own hold 80% of it")


def _escape(texts: list[str]) -> list[str]:
    """Plotly reads <...> in labels as markup: token strings like <|im_end|> or <br> must stay literal."""
    return [html.escape(text, quote=False) for text in texts]


def plotly_figure(view: PCAView) -> go.Figure:
    """Interactive figure: hover a point for its token string (spaces as \u2423) or image-token index."""
    figure = go.Figure()
    figure.add_trace(go.Scattergl(
        x=view.vocab_xy[:, 0], y=view.vocab_xy[:, 1], mode="markers", name=f"vocabulary ({len(view.vocab_xy):,})",
        marker={"size": 3, "color": VOCAB_COLOR, "opacity": 0.45}, hovertext=_escape(view.vocab_hover),
        hovertemplate="%{hovertext}<extra>vocabulary</extra>"))
    images = [group for group in view.groups if group.kind == "image"]
    for index, group in enumerate(images):
        figure.add_trace(go.Scatter(
            x=group.xy[:, 0], y=group.xy[:, 1], mode="markers",
            name=html.escape(f"{group.name} ({len(group.xy)} image tokens)", quote=False),
            marker={"size": 9, "color": COLORS[index % len(COLORS)], "line": {"width": 0.6, "color": "white"}},
            hovertext=_escape(group.hover), hovertemplate="%{hovertext}<extra></extra>"))
    for index, group in enumerate(group for group in view.groups if group.kind == "caption"):
        figure.add_trace(go.Scatter(
            x=group.xy[:, 0], y=group.xy[:, 1], mode="markers+text",
            name=html.escape(f"{group.name} ({len(group.xy)} tokens)", quote=False),
            text=_escape(group.labels), textposition="top center", textfont={"size": 10},
            marker={"size": 9, "symbol": "diamond", "color": COLORS[(len(images) + index) % len(COLORS)]},
            hovertext=_escape(group.hover), hovertemplate="%{hovertext}<extra></extra>"))
    status_color = "#c00000" if "UNTRAINED" in view.status else "#222"
    figure.update_layout(
        title={"text": f"{html.escape(view.title, quote=False)}<br>"
                       f"<span style='color:{status_color}'><b>{html.escape(view.status, quote=False)}</b></span>"
                       f"<br><sup>{notes(view)}</sup>", "x": 0.01, "xanchor": "left"},
        xaxis_title=axis_title(view, 0), yaxis_title=axis_title(view, 1), template="plotly_white",
        legend={"itemsizing": "constant", "bgcolor": "rgba(255,255,255,0.8)"}, width=1150, height=820,
        hoverlabel={"font": {"family": "DejaVu Sans Mono, Menlo, monospace", "size": 13}}, margin={"t": 130})
    return figure


def _plain(text: str) -> str:
    """Matplotlib reads $...$ as math: keep dollar signs in token strings literal."""
    return text.replace("$", r"\$")


def save_png(view: PCAView, path: str | Path) -> Path:
    """The same projected data drawn with matplotlib (plotly's PNG export needs a browser that is not installed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(12, 8.6), dpi=110)
    axes.scatter(view.vocab_xy[:, 0], view.vocab_xy[:, 1], s=2, c=VOCAB_COLOR, alpha=0.35, linewidths=0,
                 rasterized=True, label=f"vocabulary ({len(view.vocab_xy):,} tokens)")
    extremes = {int(np.argmin(view.vocab_xy[:, 0])), int(np.argmax(view.vocab_xy[:, 0])),
                int(np.argmin(view.vocab_xy[:, 1])), int(np.argmax(view.vocab_xy[:, 1]))}
    notes_to_place = [(view.vocab_xy[row], view.vocab_labels[row], "#555") for row in extremes]
    images = [group for group in view.groups if group.kind == "image"]
    for index, group in enumerate(images):
        axes.scatter(group.xy[:, 0], group.xy[:, 1], s=30, c=COLORS[index % len(COLORS)], edgecolors="white",
                     linewidths=0.5, label=_plain(f"{group.name} ({len(group.xy)} image tokens)"), zorder=3)
    for index, group in enumerate(group for group in view.groups if group.kind == "caption"):
        color = COLORS[(len(images) + index) % len(COLORS)]
        axes.scatter(group.xy[:, 0], group.xy[:, 1], s=32, marker="D", c=color, edgecolors="white", linewidths=0.5,
                     label=_plain(f"{group.name} ({len(group.xy)} tokens)"), zorder=4)
        notes_to_place += [(xy, label, color) for xy, label in zip(group.xy, group.labels)]
    figure.canvas.draw()  # fixes the axis limits, so labels can be spaced out in pixels
    placed: list[tuple[float, float, float]] = []  # x, y and approximate width in pixels of each label drawn
    for xy, label, color in notes_to_place:  # token labels as on hover; skip those that would overlap
        x, y = axes.transData.transform(xy)
        width = 5.5 * len(label) + 6
        if x + width > axes.bbox.x1:  # near the right edge: write the label to the left of its point
            x -= width
        if all(x > px + pw or px > x + width or abs(y - py) > 11 for px, py, pw in placed):
            placed.append((x, y, width))
            left = x < axes.transData.transform(xy)[0]
            axes.annotate(_plain(label), xy, xytext=(-3 if left else 3, 3), textcoords="offset points", fontsize=7,
                          color=color, ha="right" if left else "left", zorder=5)
    axes.set_xlabel(axis_title(view, 0))
    axes.set_ylabel(axis_title(view, 1))
    axes.grid(alpha=0.3)
    legend = axes.legend(loc="best", fontsize=9, framealpha=0.9)
    for handle in legend.legend_handles:
        handle.set_alpha(1)
        handle.set_sizes([30])
    color = "#c00000" if "UNTRAINED" in view.status else "#222"
    figure.suptitle(_plain(view.title), fontsize=12, fontweight="bold", x=0.01, ha="left")
    figure.text(0.01, 0.925, _plain(view.status), fontsize=11, fontweight="bold", color=color)
    axes.set_title(notes(view), fontsize=8.5, loc="left", color="#333")
    figure.tight_layout(rect=(0, 0, 1, 0.93))
    path = Path(path)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing")
        figure.savefig(path)
    plt.close(figure)
    return path


def save_figure(view: PCAView, path: str | Path) -> Path:
    """Write .html (interactive, plotly.js embedded so it opens offline) or .png (matplotlib)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".html", ".htm"):
        plotly_figure(view).write_html(path, include_plotlyjs=True)
    elif suffix == ".png":
        save_png(view, path)
    else:
        raise ValueError(f"{path}: the figure can be written as .html or .png, not '{suffix or 'no suffix'}'")
    return path
