"""Look of the app: a Gradio theme with local fonts only (it runs offline), the CSS and the page header."""

from __future__ import annotations

import gradio as gr

SANS = ["Inter", "ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica Neue", "Arial",
        "sans-serif"]
MONO = ["ui-monospace", "SFMono-Regular", "Menlo", "DejaVu Sans Mono", "monospace"]

THEME = gr.themes.Soft(primary_hue="indigo", secondary_hue="slate", neutral_hue="slate", font=SANS, font_mono=MONO,
                       radius_size="md").set(block_title_text_weight="600", button_large_text_weight="600")

HEADER = """
<div class="vd-header">
  <div class="vd-logo">&#9673;&#8594;&#9638;</div>
  <div>
    <div class="vd-title">Vision-Language Adapter Lab</div>
    <div class="vd-sub">image &rarr; vision encoder &rarr; <b>adapter</b> &rarr; pseudo-tokens in the LLM prompt &rarr;
      LLM. Chat about a picture, compare adapters side by side, and see where the image lands in the LLM's word
      space.</div>
  </div>
  <div class="vd-chips"><span>runs offline on CPU</span><span>EfficientNet-Lite0</span>
    <span>SmolLM2-135M-Instruct</span></div>
</div>
"""

CSS = """
.gradio-container { max-width: 1440px !important; margin: 0 auto !important; }
.vd-header { display: flex; align-items: center; gap: 18px; padding: 14px 18px; border-radius: 14px;
  background: linear-gradient(120deg, #312e81 0%, #4338ca 55%, #6366f1 100%); color: #fff; }
.vd-header, .vd-header * { color: #fff !important; }
.vd-header b { font-weight: 700; }
.vd-logo { font-size: 26px; letter-spacing: 2px; background: rgba(255,255,255,0.14); border-radius: 12px;
  padding: 8px 12px; white-space: nowrap; }
.vd-title { font-size: 24px; font-weight: 700; line-height: 1.2; }
.vd-sub { font-size: 14px; opacity: 0.9; margin-top: 4px; max-width: 760px; }
.vd-chips { margin-left: auto; display: flex; flex-wrap: wrap; gap: 6px; justify-content: flex-end; max-width: 300px; }
.vd-chips span { font-size: 12px; background: rgba(255,255,255,0.16); border: 1px solid rgba(255,255,255,0.25);
  border-radius: 999px; padding: 3px 10px; white-space: nowrap; }
#vd-chatbot .message img { max-height: 160px; width: auto; max-width: 100%; object-fit: contain; }
.vd-status { padding: 10px 12px; border-radius: 10px; border: 1px solid var(--border-color-primary);
  background: var(--block-background-fill); font-size: 13px; line-height: 1.45; }
.vd-parts { margin-left: 8px; }
.vd-note { color: var(--body-text-color-subdued); font-size: 13px; margin-top: 4px; }
.vd-warn-text { color: #b45309; }
.vd-badge { display: inline-block; white-space: nowrap; font-size: 12px; font-weight: 700; border-radius: 999px;
  padding: 2px 10px; }
.vd-ok { background: #dcfce7; color: #166534; border: 1px solid #86efac; }
.vd-warn { background: #fef3c7; color: #92400e; border: 1px solid #fcd34d; }
.vd-default { background: #e0e7ff; color: #3730a3; border: 1px solid #a5b4fc; margin-left: 6px; }
.vd-muted-badge { background: var(--background-fill-secondary); color: var(--body-text-color-subdued);
  border: 1px solid var(--border-color-primary); font-weight: 600; }
.vd-table { width: 100%; border-collapse: collapse; font-size: 14px; }
.vd-table th { text-align: left; font-size: 12px; text-transform: uppercase; letter-spacing: .04em;
  color: var(--body-text-color-subdued); padding: 8px 10px; border-bottom: 1px solid var(--border-color-primary); }
.vd-table td { padding: 8px 10px; border-bottom: 1px solid var(--border-color-primary); vertical-align: top; }
.vd-table .vd-note { margin-top: 2px; font-size: 12px; }
.vd-num { text-align: right !important; white-space: nowrap; }
.vd-lead { font-size: 14px; color: var(--body-text-color-subdued); }
.vd-empty { padding: 28px; text-align: center; color: var(--body-text-color-subdued); border: 1px dashed
  var(--border-color-primary); border-radius: 12px; width: 100%; }
.vd-grid { display: grid; gap: 12px; }
.vd-cols-1 { grid-template-columns: 1fr; }
.vd-cols-2 { grid-template-columns: repeat(2, minmax(0, 1fr)); }
.vd-cols-3 { grid-template-columns: repeat(3, minmax(0, 1fr)); }
.vd-cols-4 { grid-template-columns: repeat(4, minmax(0, 1fr)); }
.vd-card { border: 1px solid var(--border-color-primary); border-radius: 12px; padding: 14px;
  background: var(--block-background-fill); display: flex; flex-direction: column; gap: 10px; min-height: 180px; }
.vd-card-head { display: flex; align-items: center; justify-content: space-between; gap: 8px; }
.vd-card-title { font-weight: 700; font-size: 16px; }
.vd-caption { font-size: 15px; line-height: 1.55; flex: 1; }
.vd-caption mark { background: #fde68a; color: inherit; border-radius: 3px; padding: 0 2px; }
.vd-muted { color: var(--body-text-color-subdued); }
.vd-same { font-size: 12px; color: var(--body-text-color-subdued); }
.vd-stats { display: flex; flex-wrap: wrap; gap: 6px; }
.vd-stats span { font-size: 12px; background: var(--background-fill-secondary); border-radius: 6px; padding: 3px 8px; }
.vd-cursor { color: #6366f1; animation: vd-blink 1s step-end infinite; }
@keyframes vd-blink { 50% { opacity: 0; } }
.vd-facts { display: grid; grid-template-columns: repeat(auto-fit, minmax(140px, 1fr)); gap: 10px; margin: 4px 0; }
.vd-fact { border: 1px solid var(--border-color-primary); border-radius: 10px; padding: 10px 12px;
  background: var(--block-background-fill); }
.vd-fact-k { font-size: 12px; color: var(--body-text-color-subdued); text-transform: uppercase; letter-spacing: .04em; }
.vd-fact-v { font-size: 18px; font-weight: 700; margin-top: 2px; overflow-wrap: anywhere; }
.vd-small .vd-fact-v { font-size: 15px; }
.vd-fact-s { font-size: 12px; color: var(--body-text-color-subdued); }
#vd-examples .gallery-item, #vd-examples button { border-radius: 8px; }
footer { opacity: 0.7; }
"""
