"""HTTP transport of the console (Starlette): server-rendered pages, Server-Sent Events, the token check.

Thin: every page is drawn from `ConsoleState` and `HealthBoard`; Ask goes to the `Asker` the composition
root gave; typed errors become a message on the page, never a stack trace.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.types import Message as AsgiMessage

from services.common.memory_api import MemoryUnavailable, Mode, RetrieveInvalid, RetrieveNotFound
from services.console import metrics
from services.console.backends import Asker, HealthBoard
from services.console.state import AlertView, CameraStats, ConsoleState
from services.models.answerers.base import AnswerError, AnswerUnavailable, format_time
from vigil.memory.v1 import memory_pb2
from vigil.reasoning.v1 import reasoning_pb2

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
COOKIE = "vigil_console_token"
# Paths open without the token: the kubelet's probes and the bundled assets (no data in them).
OPEN_PATHS = ("/healthz", "/readyz", "/static/", "/favicon.ico")
# A comment line this often keeps proxies from closing an idle stream.
SSE_HEARTBEAT_S = 15.0
# Evidence bytes come from a topic: only these types are served as what they say they are.
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/webp"})
# On every response: no script or style but the bundled files, no framing, no token leaking in a Referer.
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; "
        b"frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


class ConsoleApp:
    """The routes over one state, one health board and one Asker."""

    def __init__(
        self,
        state: ConsoleState,
        health: HealthBoard,
        asker: Asker,
        *,
        token: str | None,
        silent_after_s: float = 60.0,
        ask_timeout_s: float = 60.0,
        sse_max_s: float = 300.0,
        mode: str = "cluster",
        ready: Callable[[], bool] = lambda: True,
    ) -> None:
        self.state = state
        self.health = health
        self.asker = asker
        self.token = token
        self.silent_after_s = silent_after_s
        self.ask_timeout_s = ask_timeout_s
        self.sse_max_s = sse_max_s
        self.mode = mode
        self._ready = ready
        self.env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))
        self.env.filters["clock"] = _clock
        self.env.filters["media_time"] = format_time
        self.env.filters["tojson_pretty"] = lambda v: json.dumps(v, indent=2, ensure_ascii=False)
        routes = [
            Route("/", self.index),
            Route("/alerts/{event_id}", self.alert_detail),
            Route("/evidence/{event_id}/{kind}", self.evidence),
            Route("/ask", self.ask, methods=["GET", "POST"]),
            Route("/events", self.events),
            Route("/fragments/health", self.health_fragment),
            Route("/api/alerts", self.api_alerts),
            Route("/api/health", self.api_health),
            Route("/healthz", self.healthz),
            Route("/favicon.ico", lambda _r: Response(status_code=204)),
            Route("/readyz", self.readyz),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]
        starlette = Starlette(routes=routes, exception_handlers={500: self._server_error})
        self.asgi: ASGIApp = TokenGate(starlette, token)

    async def _server_error(self, request: Request, exc: Exception) -> Response:
        """A bug shows a message and is logged with its trace; the page never shows the trace."""
        log.error("console: %s %s failed", request.method, request.url.path, exc_info=exc)
        return self._render(
            "message.html", 500, title="Something went wrong", message="The console logged the error; try again."
        )

    # -- pages -----------------------------------------------------------------------------------

    def _render(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        template = self.env.get_template(name)
        return HTMLResponse(template.render(app=self, now_ns=time.time_ns(), **context), status_code=status)

    def row_html(self, view: AlertView) -> str:
        """One alert's row, as the page and the live stream both draw it."""
        return self.env.get_template("_row.html").render(a=view)

    def cameras_html(self) -> str:
        """The cameras table body."""
        return self.env.get_template("_cameras.html").render(cameras=self.camera_rows())

    def camera_rows(self) -> list[dict[str, Any]]:
        """Per-camera figures for the table."""
        now = time.time_ns()
        return [_camera_row(c, now, self.silent_after_s) for c in self.state.cameras()]

    async def index(self, request: Request) -> Response:
        """Live alerts, cameras, health, and the Ask form."""
        seq = self.state.seq
        return self._render(
            "index.html",
            alerts=self.state.recent(limit=200),
            seq=seq,
            cameras=self.camera_rows(),
            health=self.health.results(),
        )

    async def alert_detail(self, request: Request) -> Response:
        """One alert: its JSON, its boxes over the image, its delays."""
        view = self.state.alert(request.path_params["event_id"])
        if view is None:
            return self._render("message.html", 404, title="Unknown alert", message="No such alert is kept here.")
        return self._render("alert.html", a=view, record=view.as_json(), boxes=_boxes(view.event))

    async def evidence(self, request: Request) -> Response:
        """An evidence JPEG."""
        view = self.state.alert(request.path_params["event_id"])
        unit = view.evidence.get(request.path_params["kind"]) if view is not None else None
        if unit is None:
            return PlainTextResponse("no such evidence", status_code=404)
        media_type = unit.content_type if unit.content_type in IMAGE_TYPES else "application/octet-stream"
        return Response(unit.jpeg, media_type=media_type, headers={"Cache-Control": "private, max-age=3600"})

    async def ask(self, request: Request) -> Response:
        """The Ask form; on POST, the answer with its keyframes and notes, or the reason there is none."""
        form: dict[str, str] = {"question": "", "camera": "", "since": "", "until": "", "mode": Mode.AKR.value}
        cameras = [c.camera_id for c in self.state.cameras()]
        if request.method == "GET":
            return self._render("ask.html", form=form, cameras=cameras, answer=None, error=None)
        # A plain urlencoded form; parsed here because Starlette's form() needs python-multipart.
        data = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=16)
        form.update({k: data.get(k, [""])[0].strip() for k in form})
        try:
            ask_request = _ask_request(form)
        except ValueError as exc:
            metrics.ASKS.labels("invalid").inc()
            return self._render("ask.html", 400, form=form, cameras=cameras, answer=None, error=str(exc))
        t0 = time.perf_counter()
        status, error, response = 200, None, None
        try:
            response = await run_in_threadpool(self.asker, ask_request, self.ask_timeout_s)
            outcome = "answered"
            self.health.set("memory", True, "answered the last question")
        except (RetrieveInvalid, RetrieveNotFound) as exc:
            status, error, outcome = 400, str(exc), "rejected"
        except MemoryUnavailable as exc:
            status, error, outcome = 503, str(exc), "unavailable"
            self.health.set("memory", False, f"last question: {exc}")
        except AnswerUnavailable as exc:
            status, error, outcome = 503, f"the VLM backend is unavailable: {exc}", "unavailable"
        except AnswerError as exc:
            status, error, outcome = 502, f"the answerer failed: {exc}", "failed"
        metrics.ASKS.labels(outcome).inc()
        metrics.ASK_SECONDS.observe(time.perf_counter() - t0)
        answer = _answer_view(response) if response is not None else None
        return self._render("ask.html", status, form=form, cameras=cameras, answer=answer, error=error)

    async def health_fragment(self, request: Request) -> Response:
        """The health area alone (the page refreshes it)."""
        return self._render("_health.html", health=self.health.results())

    # -- live stream -----------------------------------------------------------------------------

    async def events(self, request: Request) -> Response:
        """Server-Sent Events: each changed row once, from the page's sequence number (or Last-Event-ID) on."""
        since = _int(request.headers.get("last-event-id")) or _int(request.query_params.get("since"))
        seq = since if since is not None else self.state.seq
        return StreamingResponse(
            self._stream(request, seq),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def _stream(self, request: Request, seq: int) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()

        def notify() -> None:
            loop.call_soon_threadsafe(wake.set)

        self.state.subscribe(notify)
        metrics.SSE_CLIENTS.inc()
        ends = loop.time() + self.sse_max_s
        try:
            # The browser retries after this many ms when the stream drops; Last-Event-ID then resumes it.
            yield "retry: 1000\n\n"
            while True:
                wake.clear()
                changes = self.state.changes_since(seq)
                if changes is None:
                    # The page is further behind than the change log reaches: it reloads the whole list.
                    seq = self.state.seq
                    yield f"id: {seq}\nevent: reload\ndata: {{}}\n\n"
                    continue
                for change in changes:
                    yield self._event(change.seq, change.kind, change.event_id)
                    seq = change.seq
                if changes:
                    continue
                left = ends - loop.time()
                if left <= 0:
                    return  # the browser reconnects with Last-Event-ID and resumes after `seq`
                try:
                    await asyncio.wait_for(wake.wait(), min(SSE_HEARTBEAT_S, left))
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    yield ": ping\n\n"
        finally:
            self.state.unsubscribe(notify)
            metrics.SSE_CLIENTS.dec()

    def _event(self, seq: int, kind: str, event_id: str) -> str:
        if kind == "alert":
            view = self.state.alert(event_id)
            if view is None:  # forgotten since (bounded store): nothing to draw
                return f"id: {seq}\nevent: gone\ndata: {json.dumps({'id': event_id})}\n\n"
            data = {"id": event_id, "html": self.row_html(view), "sent_time_ns": view.sent_time_ns}
        else:
            data = {"html": self.cameras_html()}
        return f"id: {seq}\nevent: {kind}\ndata: {json.dumps(data)}\n\n"

    # -- JSON and probes -------------------------------------------------------------------------

    async def api_alerts(self, request: Request) -> Response:
        """Recent alerts as JSON, newest first."""
        return JSONResponse([v.as_json() for v in self.state.recent(limit=200)])

    async def api_health(self, request: Request) -> Response:
        """Each backend's last probe as JSON."""
        return JSONResponse(
            [
                {"name": h.name, "ok": h.ok, "detail": h.detail, "checked_ns": h.checked_ns}
                for h in self.health.results()
            ]
        )

    async def healthz(self, request: Request) -> Response:
        """Liveness: the process serves HTTP."""
        return PlainTextResponse("ok")

    async def readyz(self, request: Request) -> Response:
        """Readiness: the consumers are running (backends being down shows on the page, it is not unreadiness)."""
        return PlainTextResponse("ok") if self._ready() else PlainTextResponse("starting", status_code=503)


class TokenGate:
    """Bearer-token check in front of every route but the probes and assets.

    The token comes as `Authorization: Bearer`, or in the cookie set when a page is opened once with `?token=`
    (then the browser is redirected to the same URL without it, so it stays out of history and logs).
    """

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self._app = app
        self._token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass an authorised request on; answer 401 (or a redirect setting the cookie) otherwise."""
        if scope["type"] == "http":
            send = _with_security_headers(send)
        if scope["type"] != "http" or self._token is None or scope["path"].startswith(OPEN_PATHS):
            await self._app(scope, receive, send)
            return
        request = Request(scope)
        given = request.query_params.get("token")
        if given is not None and self._valid(given):
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            target = request.url.path + (f"?{urlencode(rest)}" if rest else "")
            response: Response = RedirectResponse(target, status_code=303)
            response.set_cookie(
                COOKIE, given, httponly=True, samesite="strict", secure=request.url.scheme == "https", path="/"
            )
            await response(scope, receive, send)
            return
        auth = request.headers.get("authorization", "")
        bearer = auth[7:] if auth.lower().startswith("bearer ") else None
        if self._valid(bearer) or self._valid(request.cookies.get(COOKIE)):
            await self._app(scope, receive, send)
            return
        response = PlainTextResponse(
            "401: this console needs its token: open the URL printed at start-up (…?token=…), or send "
            "'Authorization: Bearer <token>' (in a cluster, the token is in the Secret named by console.auth).",
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="vigil-console"'},
        )
        await response(scope, receive, send)

    def _valid(self, candidate: str | None) -> bool:
        assert self._token is not None
        return candidate is not None and hmac.compare_digest(candidate.encode(), self._token.encode())


def _with_security_headers(send: Send) -> Send:
    """`send` with SECURITY_HEADERS added to the response start."""

    async def wrapped(message: AsgiMessage) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
        await send(message)

    return wrapped


# -- helpers (pure) ------------------------------------------------------------------------------


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None


def _clock(ns: int) -> str:
    """A Unix time in ns as a UTC wall-clock time."""
    if not ns:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ns / 1e9)) + f".{int(ns / 1e6) % 1000:03d}Z"


def _camera_row(cam: CameraStats, now_ns: int, silent_after_s: float) -> dict[str, Any]:
    return {
        "camera_id": cam.camera_id,
        "last_frame": _clock(cam.last_frame_ns) if cam.last_frame_ns else "not seen here",
        "last_alert": _clock(cam.last_alert_ns),
        "alerts_today": cam.alerts_today,
        "silent": cam.silent(now_ns, silent_after_s),
    }


def _boxes(event: dict[str, Any]) -> list[dict[str, Any]]:
    """The event's objects as SVG rectangles in the 0..1000 frame coordinates the schema uses."""
    out = []
    for obj in event.get("objects") or []:
        bbox = obj.get("bbox") if isinstance(obj, dict) else None
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, int | float) for v in bbox)):
            continue
        x1, y1, x2, y2 = bbox
        out.append({"label": str(obj.get("label", "")), "x": x1, "y": y1, "w": max(0, x2 - x1), "h": max(0, y2 - y1)})
    return out


def _ask_request(form: dict[str, str]) -> reasoning_pb2.AskRequest:
    """The form as an AskRequest; ValueError with a message a person can act on."""
    if not form["question"]:
        raise ValueError("the question is empty: ask something, e.g. 'when did a car crash?'")
    time_range = memory_pb2.TimeRange()
    for name in ("since", "until"):
        if form[name]:
            try:
                value = float(form[name])
            except ValueError:
                raise ValueError(f"{name} must be seconds on the camera's time axis (e.g. 12.5)") from None
            setattr(time_range, f"{name}_s", value)
    try:
        mode = Mode(form["mode"] or Mode.AKR.value)
    except ValueError:
        raise ValueError(f"unknown mode {form['mode']!r}; use akr, sample or top-k") from None
    return reasoning_pb2.AskRequest(
        question=form["question"], camera_id=form["camera"], range=time_range, mode=mode.proto, include_images=True
    )


def _answer_view(response: reasoning_pb2.AskResponse) -> dict[str, Any]:
    """An AskResponse as the page draws it: text, keyframes with images inline, notes, retrieval figures."""
    r = response.retrieval
    return {
        "text": response.answer,
        "vlm": response.vlm,
        "vlm_ran": response.vlm_ran,
        "random_init": response.random_init,
        "notes": list(response.notes),
        "embedder": r.embedder,
        "mode": Mode.from_proto(r.mode).label,
        "answer_ms": round(response.answer_ms),
        "keyframes": [
            {
                "camera_id": k.camera_id,
                "time": format_time(k.time_s),
                "time_s": k.time_s,
                "probability": k.probability,
                "similarity": k.similarity,
                "aux_text": k.aux_text,
                "src": "data:image/jpeg;base64," + base64.b64encode(k.jpeg).decode() if k.jpeg else "",
            }
            for k in response.keyframes
        ],
    }
