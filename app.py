"""Gradio entry point (also the Hugging Face Spaces `app_file`): build the app, warm the default combination, serve."""

from __future__ import annotations

import logging
import os
import threading

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no telemetry or version check unless asked for


def server_address() -> tuple[str, int]:
    """Host from GRADIO_SERVER_NAME (default loopback); port from GRADIO_SERVER_PORT, else PORT, else 7860."""
    host = os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1"
    port = os.environ.get("GRADIO_SERVER_PORT") or os.environ.get("PORT") or "7860"
    return host, int(port)


def warm_up() -> None:
    """Load the default combination in the background so the first answer does not wait for it."""
    from vlm_demo.combos import COMBOS, DEFAULT_COMBO
    from vlm_demo.ui.models_cache import get_cache

    try:
        get_cache().vlm(COMBOS[DEFAULT_COMBO])
    except Exception:  # noqa: BLE001 - the app still serves; the first request reports the problem
        logging.getLogger("app").exception("warming up the default combination failed")


def main() -> None:
    from vlm_demo.ui import build_app, launch

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if os.environ.get("VLM_DEMO_PRELOAD", "1") != "0":
        threading.Thread(target=warm_up, name="warm-up", daemon=True).start()
    host, port = server_address()
    launch(build_app(), host=host, port=port)


if __name__ == "__main__":
    main()
