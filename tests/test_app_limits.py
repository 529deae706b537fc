"""What one visitor can ask of the shared app: queued upload checks, message and history caps, temp files, URLs."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def app():
    from vlm_demo.ui import build_app

    return build_app()


def _event(app, name: str):
    return next(block for block in app.fns.values() if getattr(block.fn, "__name__", "") == name)


def test_upload_checks_are_queued_with_a_limit(app):
    check = _event(app, "check_upload")
    assert check.queue is not False and check.concurrency_limit == 2
