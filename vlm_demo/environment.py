"""The environment every entry point starts from (app.py, `python -m vlm_demo`, `python -m train` and the `vlm_demo.ui`
package): no telemetry and quiet libraries unless the user's environment says otherwise. It imports nothing else, so
it can run before gradio, tokenizers and transformers are imported (they read these variables then)."""

from __future__ import annotations

import os

DEFAULTS = {
    "GRADIO_ANALYTICS_ENABLED": "False",  # no telemetry or version check unless asked for
    "TOKENIZERS_PARALLELISM": "false",  # no fork warning (or deadlock) from the tokenizers' thread pool
    "TRANSFORMERS_VERBOSITY": "error",  # warnings about unused weights and the like are noise here
}


def set_defaults() -> None:
    """Set each of DEFAULTS that the environment does not set already (a value the user gave wins)."""
    for name, value in DEFAULTS.items():
        os.environ.setdefault(name, value)
