"""The token map: the image under the encoder's grid, each cell labelled with the nearest vocabulary word of the image
token that comes from it, shaded by that cosine; hover shows the top five words."""

from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from PIL import Image

from vlm_demo.analysis.neighbors import NeighborTable

TOP_HOVER = 5


@dataclass
class Grid:
    """How image tokens map onto the encoder grid: `side` x `side` cells (the first side**2 tokens, row by row), or
    no map and the reason."""

    side: int | None
    reason: str = ""
    note: str = ""


def grid_of(vlm) -> Grid:
    """The token grid of a loaded combination, as its adapter family declares it (`Adapter.token_grid`)."""
    side, text = vlm.adapter.token_grid()
    return Grid(side, note=text) if side else Grid(None, reason=text)


def short(label: str, most: int = 8) -> str:
    """A word that fits its cell; the hover shows it whole."""
    return label if len(label) <= most else label[:most - 1] + "\u2026"


def figure(image: Image.Image, table: NeighborTable, side: int, title: str = "", size: int = 560) -> go.Figure:
    """The image (resized to the encoder's square input) with a side x side grid over it; each cell shows its
    token's nearest word, shaded by the cosine; hovering a cell lists the top five words."""
    rows = table.per_token[:side * side]
    cosine = np.array([row[0].cosine for row in rows]).reshape(side, side)
    words = np.array([html.escape(short(row[0].label)) for row in rows], dtype=object).reshape(side, side)
    hover = np.array([f"token {i} (row {i // side + 1}, column {i % side + 1})<br>" +
                      "<br>".join(f"{html.escape(n.label)}  {n.cosine:.3f}" for n in row[:TOP_HOVER])
                      for i, row in enumerate(rows)], dtype=object).reshape(side, side)
    centres = np.arange(side) + 0.5
    heat = go.Heatmap(z=cosine.tolist(), x=centres.tolist(), y=centres.tolist(), text=words.tolist(),
                      customdata=hover, texttemplate="%{text}",
                      textfont={"size": max(7, min(14, int(size / side / 4)))}, hovertemplate="%{customdata}"
                      "<extra></extra>", colorscale="Viridis", opacity=0.55, xgap=1, ygap=1,
                      colorbar={"title": {"text": "cosine"}, "thickness": 12})
    fig = go.Figure(heat)
    fig.add_layout_image(source=image.convert("RGB").resize((size, size)), xref="x", yref="y", x=0, y=0,
                         sizex=side, sizey=side, sizing="stretch", layer="below")
    fig.update_xaxes(range=[0, side], showgrid=False, zeroline=False, showticklabels=False, constrain="domain")
    fig.update_yaxes(range=[side, 0], showgrid=False, zeroline=False, showticklabels=False, scaleanchor="x")
    fig.update_layout(title={"text": title, "font": {"size": 14}}, height=size + 90, autosize=True,
                      margin={"t": 60, "l": 10, "r": 10, "b": 10}, plot_bgcolor="white")
    return fig
