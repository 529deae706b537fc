"""Who is asking and whether anyone still listens: at most PER_CLIENT queued or running events of a kind per client
(IP or page session); a generation ends when its visitor leaves or presses Stop, or when nobody opened its result."""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import gradio as gr

_STOPS: dict[str, weakref.WeakSet] = {}  # page session -> stop flags of its running generations
_STOPS_LOCK = threading.Lock()
PER_CLIENT = 2  # events of one concurrency group a client (IP or page session) may have waiting or running
UNREAD_GRACE_S = 10.0  # a queued result whose stream nobody opened within this long is cancelled


def client_ip(request: Any) -> str:
    """The caller's address: behind a proxy we trust (on a Space, or with VLM_DEMO_TRUST_PROXY=1), the last address
    it added to X-Forwarded-For; otherwise the connection's own."""
    trusted = os.environ.get("VLM_DEMO_TRUST_PROXY", "1" if os.environ.get("SPACE_ID") else "0") == "1"
    headers = getattr(request, "headers", None) or {}
    forwarded = headers.get("x-forwarded-for", "") if trusted else ""
    if forwarded.strip():
        return forwarded.split(",")[-1].strip()
    client = getattr(request, "client", None)
    return getattr(client, "host", None) or "unknown"


def limit_per_client(app: gr.Blocks) -> None:
    """Queue pushes beyond PER_CLIENT waiting or running events of one concurrency group, from one IP or one page
    session, are refused with a message; the queue's own events are counted, so nothing leaks when one ends."""
    queue = app._queue
    push = queue.push

    async def limited_push(body: Any, request: Any, username: str | None) -> tuple:
        fn = app.fns.get(body.fn_index) if body.fn_index is not None else None
        if fn is not None:
            ip, session = client_ip(request), body.session_hash
            mine = [event for event in list(queue.event_ids_to_events.values())
                    if event.concurrency_id == fn.concurrency_id
                    and (client_ip(event.request) == ip or (session and event.session_hash == session))]
            if len(mine) >= PER_CLIENT:
                return (False, f"You already have {len(mine)} requests of this kind waiting or running: wait for "
                               "one to finish.", "queue_full")
        return await push(body, request, username)

    queue.push = limited_push


_listened: OrderedDict[str, float] = OrderedDict()  # session hash or event id -> when its result stream opened
_listened_lock = threading.Lock()


def listening(key: str) -> None:
    """Note that the result stream of `key` (a session hash or an event id) was opened now."""
    with _listened_lock:
        _listened[key] = time.monotonic()
        _listened.move_to_end(key)
        while len(_listened) > 50_000:
            _listened.popitem(last=False)


def unread(event: Any) -> bool:
    """True for a queued event whose result stream (the page's /queue/data or a /call/ GET) nobody opened within
    UNREAD_GRACE_S of its joining the queue; a reader who leaves later is Gradio's to notice (it marks the event
    dead)."""
    with _listened_lock:
        opened = event.session_hash in _listened or event._id in _listened
    return not opened and time.monotonic() - event.enqueue_time > UNREAD_GRACE_S


def request_gone() -> Callable[[], bool]:
    """For the Gradio event being served: a check that turns true once nobody waits for its answer (the visitor
    disconnected or cancelled and Gradio marked the event dead, or nobody opened its result: `unread`). A
    streamed answer also stops when Gradio closes its iterator; a plain function such as the caption API has only
    this. Outside a queued event it is never true."""
    from gradio.context import LocalContext

    queue = getattr(LocalContext.blocks.get(None), "_queue", None)
    event_id = LocalContext.event_id.get(None)
    if queue is None or event_id is None:
        return lambda: False
    seen: list[bool] = []
    stopped = threading.Event()
    session = getattr(LocalContext.request.get(None), "session_hash", None)
    if session:
        with _STOPS_LOCK:
            _STOPS.setdefault(session, weakref.WeakSet()).add(stopped)

    def gone() -> bool:
        if stopped.is_set():
            return True
        try:
            for jobs in list(queue.active_jobs):
                for event in jobs or ():
                    if event._id == event_id:
                        seen.append(True)
                        return not event.alive or unread(event)
        except (AttributeError, TypeError):  # Gradio's queue changed shape: rely on it closing our iterators
            return False
        return bool(seen)  # it was running and is no longer: finished or dropped

    return gone


def stop_generations(request: gr.Request | None) -> None:
    """The visitor pressed Stop: every generation of their page ends after its current token (Gradio's own cancel
    frees the event, but a token already being computed and the thread hand-over take a few more)."""
    session = getattr(request, "session_hash", None)
    with _STOPS_LOCK:
        for stopped in list(_STOPS.pop(session, ())):
            stopped.set()
