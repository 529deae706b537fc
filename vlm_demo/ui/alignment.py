"""The Alignment tab: where the adapter puts the image in the LLM's word space (PCA, nearest tokens, ablation)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gradio as gr
import torch

from vlm_demo import analysis
from vlm_demo.analysis import figures, token_map
from vlm_demo.pipeline import DEFAULT_PROMPT
from vlm_demo.ui.common import gpu, load_image, user_errors
from vlm_demo.ui.sidebar import Controls, SidebarValues, sidebar_handler

TOP_K = 10
FITS = {"the vocabulary": "vocab", "vocabulary + image tokens": "vocab+image"}
AGGREGATE_HEADERS = ["#", "Token", "Cosine", "Best image token", "In top 10 of"]
PER_TOKEN_HEADERS = ["Image token", "Norm", "Nearest", "Cosine", "Next four (cosine)"]


def figure_for(vlm: Any, tokens: torch.Tensor, caption: str | None, fit_on: str) -> Any:
    """The analysis module's PCA figure, sized for the tab."""
    view = figures.pca_view(vlm, {"image tokens": tokens}, {"caption": caption} if caption else None, fit_on=fit_on)
    figure = figures.plotly_figure(view)
    figure.update_layout(width=None, height=640, autosize=True, margin={"t": 120, "l": 60, "r": 20, "b": 60},
                         title_font_size=14, legend={"x": 0.99, "xanchor": "right", "y": 0.99})
    return figure


def stats_html(measured: float, best: float, baseline: tuple[float, float], closed_form: float, ratio: float,
               trained: bool, count: int) -> str:
    """The measured cosines beside the random-Gaussian baseline, with one line on how to read them."""
    mean, error = baseline
    lift = measured / mean if mean > 0 else float("nan")
    verdict = ("closer to real words than random vectors are" if lift > 1.5 else
               "about as close to real words as random vectors are" if lift > 0.67 else
               "further from real words than random vectors are")
    warn = "" if trained else ('<div class="vd-note vd-warn-text">Untrained adapter: these numbers describe random '
                               'weights, useful only as a reference for a trained checkpoint.</div>')
    cells = [
        ("Nearest-token cosine", f"{measured:.3f}", f"mean over the {count} image tokens"),
        ("Random baseline", f"{mean:.3f} \u00b1 {error:.3f}", f"Gaussian vectors (closed form {closed_form:.3f})"),
        ("Best single match", f"{best:.3f}", "over all image tokens"),
        ("Norm ratio", f"{ratio:.2f}\u00d7", "image-token norm / vocabulary norm"),
    ]
    body = "".join(f'<div class="vd-fact"><div class="vd-fact-k">{k}</div><div class="vd-fact-v">{v}</div>'
                   f'<div class="vd-fact-s">{s}</div></div>' for k, v, s in cells)
    return (f'<div class="vd-facts">{body}</div><div class="vd-note">The image tokens are <b>{lift:.1f}\u00d7</b> the '
            f'baseline: {verdict}.</div>{warn}')


def tables(table: analysis.NeighborTable) -> tuple[list[list[Any]], list[list[Any]]]:
    aggregate = [[rank, n.label, round(n.cosine, 4), n.image_token, n.hits]
                 for rank, n in enumerate(table.aggregate, start=1)]
    per_token = [[index, round(norm, 2), row[0].label, round(row[0].cosine, 4),
                  "  ".join(f"{n.label} ({n.cosine:.3f})" for n in row[1:5])]
                 for index, (row, norm) in enumerate(zip(table.per_token, table.norms))]
    return aggregate, per_token


@user_errors
@gpu
@sidebar_handler()
def analyse(image: Any, fit: str, sidebar: SidebarValues,
            progress: gr.Progress = gr.Progress()) -> Iterator[tuple]:  # noqa: B008
    """Tokens, nearest vocabulary, baseline and PCA first; then the nearest-token ablation captions."""
    picture = load_image(image)
    fit_on = FITS.get(fit, "vocab")
    _, options, vlm = sidebar.pick(progress)
    progress(0.2, desc="Comparing image tokens with the vocabulary\u2026")
    tokens = vlm.image_tokens([picture])[0]
    vocab = analysis.vocabulary(vlm.llm)
    table = analysis.neighbor_table(tokens, vocab, k=TOP_K)
    baseline = analysis.random_baseline(vocab)
    closed = analysis.random_baseline_closed_form(len(vocab), vocab.embeddings.shape[1])
    measured = sum(row[0].cosine for row in table.per_token) / len(table.per_token)
    stats = stats_html(measured, table.aggregate[0].cosine, baseline, closed, analysis.norm_ratio(tokens, vocab),
                       vlm.trained, len(table.per_token))
    aggregate, per_token = tables(table)
    progress(0.5, desc="Projecting onto the vocabulary's principal components\u2026")
    figure = figure_for(vlm, tokens, None, fit_on)
    grid_map, grid_note = map_parts(vlm, picture, table)
    waiting = "generating\u2026"
    # a copy: Gradio takes the value out of an update it sends, and the map goes out again with the captions
    yield figure, stats, aggregate, per_token, waiting, waiting, dict(grid_map), grid_note
    ablation = analysis.nearest_token_ablation(vlm, [picture], DEFAULT_PROMPT, options)[0]
    yield (figure_for(vlm, tokens, ablation.caption, fit_on), stats, aggregate, per_token,
           ablation.caption or "(empty)", ablation.ablated or "(empty)", grid_map, grid_note)


def map_parts(vlm: Any, picture: Any, table: analysis.NeighborTable) -> tuple[Any, str]:
    """The token map and a line about it, or no map and why this adapter has none."""
    grid = token_map.grid_of(vlm)
    if grid.side is None:
        return gr.update(value=None, visible=False), f'<div class="vd-note">No token map: {grid.reason}.</div>'
    cells = grid.side * grid.side
    title = f"Each of the {cells} cells: its image token's nearest vocabulary word (shade: cosine)"
    note = (f'<div class="vd-note">The encoder sees the image as a {grid.side}\u00d7{grid.side} grid (shown over the '
            f'image resized to its square input); hover a cell for its top five words'
            + (f"; {grid.note}" if grid.note else "") + ".</div>")
    return gr.update(value=token_map.figure(picture, table, grid.side, title), visible=True), note


def build(controls: Controls) -> None:
    """Render the Alignment tab."""
    gr.Markdown("Where does the adapter put the image? Its pseudo-tokens are compared with every token embedding of "
                "the LLM: a PCA plane of the vocabulary, the nearest vocabulary tokens by cosine beside a random "
                "baseline, and the caption you get when each image token is swapped for its nearest real token.",
                elem_classes=["vd-lead"])
    with gr.Row(equal_height=True):
        fit = gr.Radio(list(FITS), value="the vocabulary", label="PCA fitted on", scale=3, elem_id="vd-fit")
        run = gr.Button("Analyse the image", variant="primary", scale=1, min_width=150, elem_id="vd-analyse")
    stats = gr.HTML('<div class="vd-empty">Press <b>Analyse the image</b> to measure the current image and adapter.'
                    '</div>', elem_id="vd-align-stats")
    grid_note = gr.HTML(elem_id="vd-token-map-note")
    grid_map = gr.Plot(label="Token map", elem_id="vd-token-map", visible=False)
    plot = gr.Plot(label="Image tokens against the vocabulary (PCA)", elem_id="vd-pca")
    with gr.Row():
        caption = gr.Textbox(label="Caption with the image tokens", lines=2, interactive=False, elem_id="vd-abl-real")
        ablated = gr.Textbox(label="Caption with each image token replaced by its nearest vocabulary token", lines=2,
                             interactive=False, elem_id="vd-abl-nearest")
    aggregate = gr.Dataframe(headers=AGGREGATE_HEADERS, label=f"Top {TOP_K} vocabulary tokens over all image tokens",
                             interactive=False, elem_id="vd-agg-table", max_height=460,
                             column_widths=["6%", "34%", "20%", "20%", "20%"])
    per_token = gr.Dataframe(headers=PER_TOKEN_HEADERS, label="Nearest tokens of each image token",
                             interactive=False, elem_id="vd-token-table", max_height=460,
                             column_widths=["12%", "10%", "18%", "12%", "48%"])
    run.click(analyse, [controls.image, fit, *controls.values],
              [plot, stats, aggregate, per_token, caption, ablated, grid_map, grid_note], api_name="alignment",
              concurrency_id="generate", concurrency_limit=2)

