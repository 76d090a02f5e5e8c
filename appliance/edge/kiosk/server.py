"""The kiosk page, served by the edge daemon on 127.0.0.1 only, for Chromium in kiosk mode.

``KioskDisplay`` is a ``Display`` (``edge.hardware``): it keeps the current screen and the
preview (``kiosk.preview``) and wakes the page's streams. ``KioskServer`` serves, on the
loopback interface and nowhere else:

* ``/`` - the page in the device's language: the screen, the camera preview with the face box,
  the alternative path and the privacy notice of the point of collection (``config/notices/
  face-door.*.txt``, its version shown);
* ``/events`` - a Server-Sent Events stream: ``screen`` (state, headline, message, footer in the
  device's language) on every change, ``frame`` (preview number and face box) at the preview rate;
* ``/preview.jpg`` - the latest preview frame, from memory (404 when the preview is off);
* ``/kiosk.css``, ``/kiosk.js`` - the page's stylesheet and script (no inline script: the CSP
  allows only these).

The standard library's threading HTTP server, not uvicorn: the pass loop is a plain thread,
the page has one client (the local browser) and a few routes, and a thread per stream waiting
on a condition needs no event loop bridged to the daemon. Requests whose ``Host`` is not the
loopback address are refused (no DNS-rebinding page can read the preview).
"""
from __future__ import annotations

import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from appliance import i18n
from appliance.edge.kiosk.preview import Preview
from appliance.edge.kiosk.screen import (
    ALTERNATIVE_TEXT, DOMAIN, IDLE, PAGE_TEXTS, FaceBox, ScreenState,
)
from appliance.errors import ApplianceError, ErrorCode
from appliance.security.consent import ConsentNotice, notice

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC = {"/kiosk.css": ("kiosk.css", "text/css; charset=utf-8"),
          "/kiosk.js": ("kiosk.js", "text/javascript; charset=utf-8")}
DOOR_NOTICE_SCOPE = "face-door"  # config/notices/face-door.<language>.txt: the notice at the point of collection
STREAM_WAKE_S = 0.5  # a stream looks at least this often whether the server is closing
KEEPALIVE_S = 15.0  # an SSE comment this often keeps an idle stream open
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


class KioskDisplay:
    """The current screen and preview of the door, for the page; a ``Display``."""

    def __init__(self, language: str, preview: Preview, door_notice: ConsentNotice) -> None:
        self.language = i18n.normalise_language(language)
        self.preview_frames = preview
        self.notice = door_notice
        self.screen: ScreenState = IDLE
        self.screen_seq = 1
        self.changed = threading.Condition()

    def show(self, screen: ScreenState) -> None:
        with self.changed:
            self.screen, self.screen_seq = screen, self.screen_seq + 1
            self.changed.notify_all()

    def preview(self, image: np.ndarray, face: FaceBox | None) -> None:
        if self.preview_frames.offer(image, face):
            with self.changed:
                self.changed.notify_all()

    def text(self, message: str, **params: str) -> str:
        return i18n.gettext(self.language, DOMAIN, message).format(**params)


def door_notice(language: str) -> ConsentNotice:
    """The privacy notice shown at the door, in the screen's language (``zh_CN`` -> ``zh-CN``)."""
    return notice(i18n.normalise_language(language).replace("_", "-"), DOOR_NOTICE_SCOPE)


def kiosk_display(config) -> KioskDisplay:
    """The kiosk display of ``[kiosk]`` (``appliance.config.door_tables.KioskConfig``)."""
    return KioskDisplay(config.language, Preview(config.preview_fps, config.preview_width),
                        door_notice(config.language))


class KioskServer:
    """The page's HTTP server on ``127.0.0.1:port`` (port 0: any free one, for tests)."""

    def __init__(self, display: KioskDisplay, port: int, host: str = LOOPBACK) -> None:
        if host != LOOPBACK:
            raise ApplianceError(ErrorCode.CONFIG_INVALID, f"the kiosk page is served on {LOOPBACK} only, "
                                 f"never on {host!r}: the screen and the camera preview stay on the device")
        self.display = display
        self.closing = threading.Event()
        try:
            self.httpd = ThreadingHTTPServer((host, port), _handler(self))
        except OSError as exc:
            raise ApplianceError(ErrorCode.CONFIG_INVALID, f"the kiosk page cannot listen on {host}:{port} "
                                 f"({exc.strerror}); set another [kiosk] port") from None
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="kiosk-http", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/"

    def start(self) -> KioskServer:
        self._thread.start()
        log.info("kiosk page on %s", self.url)
        return self

    def stop(self) -> None:
        self.closing.set()
        with self.display.changed:
            self.display.changed.notify_all()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)

    def page(self) -> str:
        from jinja2 import Environment, FileSystemLoader, select_autoescape

        display = self.display
        env = Environment(loader=FileSystemLoader(STATIC_DIR), autoescape=select_autoescape(("html",)))
        screen = display.screen.as_json(display.language)
        texts = {message: display.text(message, version=display.notice.version) for message in PAGE_TEXTS}
        return env.get_template("kiosk.html").render(
            lang=display.language.replace("_", "-"), screen=screen, texts=texts,
            alternative=display.text(ALTERNATIVE_TEXT), preview=display.preview_frames.enabled,
            notice_lines=display.notice.text.strip().splitlines(), notice_version=display.notice.version)


def _handler(server: KioskServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args) -> None:  # noqa: A002 (the stdlib's name)
            log.debug("kiosk %s", format % args)

        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            if self.headers.get("Host", "") not in (f"{LOOPBACK}:{server.port}", f"localhost:{server.port}"):
                self._send(HTTPStatus.MISDIRECTED_REQUEST, b"kiosk: loopback only\n", "text/plain")
                return
            path = self.path.split("?", 1)[0]
            if path == "/":
                self._send(HTTPStatus.OK, server.page().encode("utf-8"), "text/html; charset=utf-8")
            elif path in STATIC:
                name, kind = STATIC[path]
                self._send(HTTPStatus.OK, (STATIC_DIR / name).read_bytes(), kind)
            elif path == "/preview.jpg":
                frame = server.display.preview_frames.latest()
                if frame is None or not frame.jpeg:
                    self._send(HTTPStatus.NOT_FOUND, b"no preview\n", "text/plain")
                else:
                    self._send(HTTPStatus.OK, frame.jpeg, "image/jpeg")
            elif path == "/events":
                self._events()
            else:
                self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")

        def _headers(self, status: HTTPStatus, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Security-Policy", CSP)
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "no-referrer")

        def _send(self, status: HTTPStatus, body: bytes, kind: str) -> None:
            self._headers(status, kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):  # the page moved on (a newer preview frame)
                self.close_connection = True

        def _events(self) -> None:
            """The screen and the preview's frames as they change, until the page or the server goes."""
            self._headers(HTTPStatus.OK, "text/event-stream; charset=utf-8")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            display, seen_screen, seen_frame, idle = server.display, 0, 0, 0.0
            try:
                while not server.closing.is_set():
                    with display.changed:
                        if display.screen_seq == seen_screen and display.preview_frames.seq == seen_frame:
                            display.changed.wait(STREAM_WAKE_S)
                        screen, screen_seq = display.screen, display.screen_seq
                    frame = display.preview_frames.latest() if display.preview_frames.seq != seen_frame else None
                    chunks = []
                    if screen_seq != seen_screen:
                        seen_screen = screen_seq
                        chunks.append(_event("screen", screen.as_json(display.language)))
                    if frame is not None:
                        seen_frame = frame.seq
                        chunks.append(_event("frame", {"seq": frame.seq, "face": _box(frame.face)}))
                    idle = 0.0 if chunks else idle + STREAM_WAKE_S
                    if idle >= KEEPALIVE_S:
                        chunks, idle = [b": keep-alive\n\n"], 0.0
                    if chunks:
                        self.wfile.write(b"".join(chunks))
                        self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                return  # the page went away

    return Handler


def _event(name: str, data: dict) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def _box(face: FaceBox | None) -> dict | None:
    return None if face is None else {"left": face.left, "top": face.top, "width": face.width, "height": face.height}
