"""The HTTP server: one registered model version behind the MLflow scoring protocol.

Owns the HTTP/1.1 layer (a small asyncio ``Protocol``: keep-alive, Content-Length and chunked
bodies, pipelining, backpressure), the routes, the atomic model swap and graceful shutdown.

Why not a framework: a one-row prediction costs ~5 us through ``fastpath`` (~200 us through
scikit-learn), while an empty ``GET /ping`` through FastAPI and uvicorn (MLflow's server) takes
~200 us, against ~25 us here (wrk, one connection). Here a small request is parsed, predicted and
answered inline in one event-loop callback; bodies over ``OFFLOAD_BYTES`` and model loads run in
a worker thread so that they never stall the small requests of other connections.

Routes: ``POST /invocations`` (also as Databricks Model Serving's
``POST /serving-endpoints/<endpoint>/invocations`` when started with ``--endpoint-name``, so one
client, the Databricks SDK's ``serving_endpoints.query`` included, talks to both), ``GET /ping``,
``GET /health``, ``GET /version`` and ``POST /admin/model`` (``{"version": "N"}`` with header
``X-Iris-Admin-Token``; the token comes from the environment variable ``IRIS_SERVING_ADMIN_TOKEN``
and is never logged).

With ``--request-log TABLE_DIR`` every request to a scoring route is also recorded (time, version,
input, output, latency, status) into the Delta table there, through ``request_log.RequestLog``:
the request only appends to a bounded in-memory queue; a writer process commits the batches.

    python -m iris_assets.serving.server --model-name NAME --version N --port P --state-dir DIR
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import functools
import gc
import hmac
import json
import logging
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from email.utils import formatdate
from http import HTTPStatus
from importlib import metadata
from pathlib import Path

import numpy as np

from iris_assets.serving.model import LoadedModel, ModelLoadError, load_model_version
from iris_assets.serving.process import ADMIN_TOKEN_ENV, EXIT_MODEL_LOAD_FAILED, EXIT_PORT_IN_USE
from iris_assets.serving.protocol import (
    ERROR_CODES,
    BadRequest,
    format_error,
    format_predictions,
    parse_request,
)
from iris_assets.serving.request_log import (
    DEFAULT_FLUSH_SECONDS,
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_ROWS,
    RequestLog,
)

ADMIN_TOKEN_HEADER = "x-iris-admin-token"
MODEL_VERSION_HEADER = "X-Model-Version"
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_HEAD_BYTES = 16 * 1024
OFFLOAD_BYTES = 256 * 1024
IDLE_TIMEOUT_SECONDS = 75.0
SHUTDOWN_GRACE_SECONDS = 8.0
LINGER_SECONDS = 2.0
CHUNKED = -1  # the body length of a chunked request: known only at its last chunk
DATABRICKS_PREFIX = "/serving-endpoints/"
DATABRICKS_SUFFIX = "/invocations"
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")

try:
    SERVER_VERSION = metadata.version("iris-assets")
except metadata.PackageNotFoundError:
    SERVER_VERSION = "0+unknown"

log = logging.getLogger("iris_assets.serving")

# (status, body, extra header lines) — the whole response short of the common headers.
Response = tuple[int, bytes, bytes]

_ROUTES = {
    "/invocations": "POST",
    "/ping": "GET",
    "/health": "GET",
    "/version": "GET",
    "/admin/model": "POST",
}
_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}


def _error(status: int, message: str, extra: bytes = b"", code: str | None = None) -> Response:
    return status, format_error(code or ERROR_CODES.get(status, "BAD_REQUEST"), message), extra


def _json(status: int, document: dict[str, object], extra: bytes = b"") -> Response:
    return status, json.dumps(document).encode(), extra


@functools.lru_cache(maxsize=16)
def _version_header(version: str) -> bytes:
    # One object per version: the request log's frames carry a reference to it, not a copy.
    return b"%s: %s\r\n" % (MODEL_VERSION_HEADER.encode(), version.encode())


class ServingApp:
    """Routes and state: the model being served and the admin token. Transport-free."""

    def __init__(
        self,
        model_name: str,
        admin_token: str | None,
        max_body_bytes: int,
        endpoint_name: str | None = None,
    ) -> None:
        self.model_name = model_name
        self.endpoint_name = endpoint_name
        self.max_body_bytes = max_body_bytes
        self.model: LoadedModel | None = None
        self.started_at = datetime.now(UTC)
        self._admin_token = admin_token.encode() if admin_token else None
        self._swap_lock = asyncio.Lock()
        self.request_log: RequestLog | None = None
        # The paths whose requests the request log records: the scoring routes.
        self.scoring_paths = frozenset(
            ["/invocations"]
            + ([DATABRICKS_PREFIX + endpoint_name + DATABRICKS_SUFFIX] if endpoint_name else [])
        )

    def handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> Response | Awaitable[Response]:
        allowed = _ROUTES.get(path)
        if allowed is None:
            return self.databricks_invocations(method, path, headers, body)
        if method != allowed:
            return _error(405, f"use {allowed} for {path}", b"Allow: %s\r\n" % allowed.encode())
        if path == "/invocations":
            return self.invocations(body, headers.get("content-type"))
        if path == "/ping":
            return _json(200, {"status": "ok"})
        if path == "/health":
            return self.health()
        if path == "/version":
            return self.version()
        return self.admin_model(headers, body)

    # --- scoring ---------------------------------------------------------------------------------
    def invocations(self, body: bytes, content_type: str | None) -> Response | Awaitable[Response]:
        model = self.model  # one read: a concurrent swap cannot change the model mid-request
        if model is None:
            return _error(503, "no model loaded yet")
        if len(body) >= OFFLOAD_BYTES:
            loop = asyncio.get_running_loop()
            return loop.run_in_executor(None, self._score, model, body, content_type)
        return self._score(model, body, content_type)

    def _score(self, model: LoadedModel, body: bytes, content_type: str | None) -> Response:
        extra = _version_header(model.version)
        try:
            matrix = parse_request(body, content_type, model.columns)
            return 200, format_predictions(model.predict(matrix)), extra
        except BadRequest as exc:
            return _error(exc.status, exc.message, extra, exc.error_code)
        except Exception:
            log.exception("prediction failed with model version %s", model.version)
            return _error(500, "prediction failed; see the server log", extra)

    def databricks_invocations(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> Response | Awaitable[Response]:
        """``/serving-endpoints/<endpoint>/invocations``, the path Databricks clients call."""
        if not (path.startswith(DATABRICKS_PREFIX) and path.endswith(DATABRICKS_SUFFIX)):
            return _error(404, "no such endpoint; see /invocations, /ping, /health, /version")
        name = path[len(DATABRICKS_PREFIX) : -len(DATABRICKS_SUFFIX)]
        if self.endpoint_name is None or name != self.endpoint_name:
            served = f"'{self.endpoint_name}'" if self.endpoint_name else "none"
            return _error(
                404,
                f"no such serving endpoint here; this server's endpoint is {served}",
                code="RESOURCE_DOES_NOT_EXIST",
            )
        if method != "POST":
            return _error(405, f"use POST for {path}", b"Allow: POST\r\n")
        return self.invocations(body, headers.get("content-type"))

    # --- status ----------------------------------------------------------------------------------
    def health(self) -> Response:
        model = self.model
        if model is None:
            return _json(
                503,
                {
                    "error_code": ERROR_CODES[503],
                    "message": "no model loaded yet",
                    "model_name": self.model_name,
                    "version": None,
                },
            )
        request_log = self.log_stats()
        # Still answering, but not recording: a log whose writer is down says so.
        status = "degraded" if request_log.get("writer_running") is False else "ok"
        return _json(200, {"status": status, **model.describe(), "request_log": request_log})

    def log_stats(self) -> dict[str, object]:
        return self.request_log.stats() if self.request_log is not None else {"enabled": False}

    def version(self) -> Response:
        model = self.model
        described = model.describe() if model else {"model_name": self.model_name}
        return _json(
            200,
            {
                "model_name": described["model_name"],
                "version": described.get("version"),
                "loaded_at": described.get("loaded_at"),
                "server_version": SERVER_VERSION,
                "started_at": self.started_at.isoformat(timespec="seconds"),
                "pid": os.getpid(),
            },
        )

    # --- admin -----------------------------------------------------------------------------------
    def admin_model(self, headers: dict[str, str], body: bytes) -> Response | Awaitable[Response]:
        if self._admin_token is None:
            return _error(403, f"admin API disabled: {ADMIN_TOKEN_ENV} was not set at start")
        given = headers.get(ADMIN_TOKEN_HEADER, "").encode("latin-1")
        if not hmac.compare_digest(given, self._admin_token):
            return _error(403, "missing or invalid admin token")
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            return _error(400, 'expected a JSON body like {"version": "3"}')
        version = document.get("version") if isinstance(document, dict) else None
        if isinstance(version, int) and not isinstance(version, bool):
            version = str(version)
        if not isinstance(version, str) or not (version.isascii() and version.isdigit()):
            return _error(400, '"version" must be a registered version number like "3"')
        return self.swap(version)

    async def swap(self, version: str) -> Response:
        """Load ``version`` completely, then switch to it in one assignment."""
        async with self._swap_lock:
            previous = self.model
            if previous is not None and previous.version == version:
                return _json(200, {**previous.describe(), "previous_version": version})
            loop = asyncio.get_running_loop()
            try:
                loaded = await loop.run_in_executor(None, self._load_and_warm, version)
            except ModelLoadError as exc:
                log.error("model version %s not loaded: %s", version, exc)
                return _error(400, str(exc), code="INVALID_PARAMETER_VALUE")
            except Exception:
                log.exception("model version %s not loaded", version)
                return _error(500, f"could not load model version {version}; see the server log")
            self.model = loaded
            # mlflow and scikit-learn leave ~1M long-lived objects; every full collection walked
            # them (~200 ms, measured on every third 20k-row request). Freezing moves them out
            # of the collector's reach; reference counting still frees them.
            gc.freeze()
            log.info(
                "now serving %s version %s (was %s)",
                self.model_name,
                version,
                previous.version if previous else "none",
            )
            return _json(
                200,
                {**loaded.describe(), "previous_version": previous.version if previous else None},
            )

    def _load_and_warm(self, version: str) -> LoadedModel:
        loaded = load_model_version(self.model_name, version)
        # A first prediction pays lazy initialisation and proves the model works before any
        # client request can reach it.
        loaded.predict(np.ones((1, len(loaded.columns))))
        return loaded


class _Connection(asyncio.Protocol):
    """One client connection: HTTP/1.1 requests answered strictly in order."""

    def __init__(self, server: _HttpServer) -> None:
        self.server = server
        self.app = server.app
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.request: tuple[str, str, dict[str, str], bool, int] | None = None
        self.chunks: list[bytes] = []  # the chunks of a chunked body read so far
        self.chunked_bytes = 0
        self.in_trailer = False  # the last chunk was read; trailer lines until an empty one
        self.busy = False  # an awaited response (model swap, large batch) is pending
        self.write_paused = False
        self.draining = False  # shutting down: close after the response in progress
        self.discarding = False  # answered a request that cannot be framed; ignore the rest
        self.last_active = time.monotonic()
        # The last Content-Length request head framed without a refusal or a 100 Continue, and
        # its parse (the headers dict is shared by the requests that reuse it: read-only).
        self.last_head: bytes | None = None
        self.last_request: tuple[str, str, dict[str, str], bool, int] | None = None

    # --- asyncio callbacks -----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Without it small responses wait for the peer's delayed ACK (~40 ms).
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        if self.discarding:
            return
        self.last_active = time.monotonic()
        self.buffer += data
        self._process()

    def eof_received(self) -> bool:
        # Keep the socket open for a pending response to a request already received.
        return self.busy and not self.discarding

    def pause_writing(self) -> None:
        self.write_paused = True
        self._pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._resume_reading()
        self._process()

    # --- request loop ----------------------------------------------------------------------------
    def idle(self) -> bool:
        return not self.busy and self.request is None and not self.buffer

    def drain(self) -> None:
        """Stop taking new requests; close now if nothing is in progress."""
        self.draining = True
        if self.idle() and self.transport is not None:
            self.transport.close()

    def _process(self) -> None:
        transport = self.transport
        while not (self.busy or self.write_paused or self.discarding or transport.is_closing()):
            if self.request is None and not self._read_head():
                return
            method, path, headers, keep_alive, length = self.request
            if length == CHUNKED:
                body = self._read_chunks()
                if body is None:
                    return
            elif len(self.buffer) < length:
                return
            else:
                with memoryview(self.buffer) as view:
                    body = bytes(view[:length])
                del self.buffer[:length]
            self.request = None
            if self.draining and self.idle():
                keep_alive = False
            started = time.perf_counter()
            try:
                result = self.app.handle(method, path, headers, body)
            except Exception:
                log.exception("request handler failed")
                result = _error(500, "internal error; see the server log")
            if isinstance(result, tuple):
                self._respond(result, keep_alive)
                if path in self.app.scoring_paths and self.app.request_log is not None:
                    self.app.request_log.record(
                        path,
                        headers.get("content-type"),
                        body,
                        result,
                        time.perf_counter() - started,
                    )
                continue
            self.busy = True
            self._pause_reading()
            task = asyncio.ensure_future(result)
            task.add_done_callback(
                lambda t, k=keep_alive, r=(path, headers, body, started): self._finish(t, k, r)
            )
            return

    def _finish(
        self,
        task: asyncio.Future[Response],
        keep_alive: bool,
        request: tuple[str, dict[str, str], bytes, float],
    ) -> None:
        self.busy = False
        try:
            response = task.result()
        except Exception:
            log.exception("request handler failed")
            response = _error(500, "internal error; see the server log")
        path, headers, body, started = request
        if path in self.app.scoring_paths and self.app.request_log is not None:
            self.app.request_log.record(
                path, headers.get("content-type"), body, response, time.perf_counter() - started
            )
        if self.transport.is_closing():
            return
        if self.draining and self.request is None and not self.buffer:
            keep_alive = False
        self._respond(response, keep_alive)
        self._resume_reading()
        self._process()

    def _read_head(self) -> bool:
        """Parse one request head from the buffer into ``self.request``; False if incomplete."""
        buffer = self.buffer
        while buffer[:2] == b"\r\n":  # RFC 9112: ignore empty lines before a request line
            del buffer[:2]
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > MAX_HEAD_BYTES:
                self._fail(431, "request head too large")
            return False
        if end > MAX_HEAD_BYTES:
            self._fail(431, "request head too large")
            return False
        head = bytes(buffer[:end])
        del buffer[: end + 4]
        if head == self.last_head:
            # A client sends the same head request after request (only the body changes): its
            # parse is kept, and only heads that need nothing but framing are (see below).
            self.request = self.last_request
            return True
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            self._fail(400, "malformed request line")
            return False
        method, target, http_version = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name[0] in " \t" or name[-1] in " \t":
                self._fail(400, "malformed header line")
                return False
            name = name.lower()
            value = value.strip()
            if name in headers:
                if name == "content-length" and headers[name] != value:
                    self._fail(400, "conflicting Content-Length headers")
                    return False
                value = f"{headers[name]}, {value}"
            headers[name] = value
        connection = headers.get("connection", "").lower()
        if http_version == "HTTP/1.1":
            keep_alive = "close" not in connection
        elif http_version == "HTTP/1.0":
            keep_alive = False  # one request per HTTP/1.0 connection keeps the framing simple
        else:
            self._fail(505, "only HTTP/1.1 and HTTP/1.0 are supported")
            return False
        if "transfer-encoding" in headers:
            return self._chunked_head(method, target, headers, keep_alive, http_version)
        length_text = headers.get("content-length", "0").split(",")[0].strip()
        if not (length_text.isascii() and length_text.isdigit()):
            self._fail(400, "invalid Content-Length")
            return False
        length = int(length_text)
        if length > self.app.max_body_bytes:
            response = self._fail(
                413, f"request body too large (limit {self.app.max_body_bytes} bytes)"
            )
            self._log_refused(target.partition("?")[0], response)
            return False
        if length > len(buffer) and headers.get("expect", "").lower() == "100-continue":
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.request = (method, target.partition("?")[0], headers, keep_alive, length)
        if "expect" not in headers:  # then nothing but the head decides how it is framed
            self.last_head, self.last_request = head, self.request
        return True

    def _chunked_head(
        self, method: str, target: str, headers: dict[str, str], keep_alive: bool, version: str
    ) -> bool:
        # A request with both framings is how requests are smuggled past proxies: refuse it.
        if "content-length" in headers:
            self._fail(400, "both Transfer-Encoding and Content-Length; send one")
            return False
        if headers["transfer-encoding"].lower() != "chunked" or version != "HTTP/1.1":
            self._fail(501, "only the chunked transfer coding is supported (HTTP/1.1)")
            return False
        if not self.buffer and headers.get("expect", "").lower() == "100-continue":
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.request = (method, target.partition("?")[0], headers, keep_alive, CHUNKED)
        return True

    def _read_chunks(self) -> bytes | None:
        """Consume complete chunks from the buffer; the whole body once the last one arrived."""
        buffer = self.buffer
        while True:
            end = buffer.find(b"\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD_BYTES:
                    self._fail(400, "malformed chunked body")
                return None
            if self.in_trailer:
                del buffer[: end + 2]
                if end == 0:  # the empty line that ends the body
                    body = b"".join(self.chunks)
                    self.chunks, self.chunked_bytes, self.in_trailer = [], 0, False
                    return body
                continue  # a trailer field: nothing here uses them
            size_text = bytes(buffer[:end]).partition(b";")[0].strip()
            if _CHUNK_SIZE.fullmatch(size_text) is None:
                self._fail(400, "malformed chunk size")
                return None
            size = int(size_text, 16)
            if size == 0:
                del buffer[: end + 2]
                self.in_trailer = True
                continue
            if self.chunked_bytes + size > self.app.max_body_bytes:
                path = self.request[1] if self.request is not None else ""
                response = self._fail(
                    413, f"request body too large (limit {self.app.max_body_bytes} bytes)"
                )
                self._log_refused(path, response)
                return None
            start, stop = end + 2, end + 2 + size
            if len(buffer) < stop + 2:
                return None
            if buffer[stop : stop + 2] != b"\r\n":
                self._fail(400, "malformed chunk: no CRLF after its data")
                return None
            self.chunks.append(bytes(buffer[start:stop]))
            self.chunked_bytes += size
            del buffer[: stop + 2]

    def _respond(self, response: Response, keep_alive: bool) -> None:
        self._write(response, keep_alive)
        if not keep_alive:
            self.transport.close()

    def _write(self, response: Response, keep_alive: bool) -> None:
        status, body, extra = response
        if not keep_alive:
            extra += b"Connection: close\r\n"
        self.transport.write(
            b"HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n%s\r\n%s"
            % (status, _REASONS.get(status, b""), self.server.date, len(body), extra, body)
        )

    def _log_refused(self, path: str, response: Response) -> None:
        """Record a scoring request refused before it was read (too large): status only."""
        if path in self.app.scoring_paths and self.app.request_log is not None:
            self.app.request_log.record(path, None, b"", response, 0.0)

    def _fail(self, status: int, message: str) -> Response:
        """Answer a request that cannot be framed, then stop reading requests from this peer."""
        self.buffer.clear()
        self.request = None
        self.chunks = []
        self.discarding = True
        response = _error(status, message)
        self._write(response, keep_alive=False)
        # Closing with unread input makes the kernel send a reset, which can destroy the answer
        # before the client reads it (a client still sending a too-large body, say). Half-close
        # instead, drop whatever still arrives, and close for good a little later.
        if self.transport.can_write_eof():
            self.transport.write_eof()
        asyncio.get_running_loop().call_later(LINGER_SECONDS, self.transport.close)
        return response

    def _pause_reading(self) -> None:
        if not self.transport.is_closing():
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if not self.transport.is_closing() and not self.busy and not self.write_paused:
            self.transport.resume_reading()


class _HttpServer:
    """The listening socket, its connections, and the once-a-second housekeeping."""

    def __init__(self, app: ServingApp) -> None:
        self.app = app
        self.connections: set[_Connection] = set()
        self.date = formatdate(usegmt=True).encode()
        self._server: asyncio.Server | None = None
        self._tick: asyncio.TimerHandle | None = None

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), host, port, reuse_address=True, backlog=1024
        )
        self._housekeeping()

    def _housekeeping(self) -> None:
        self.date = formatdate(usegmt=True).encode()
        cutoff = time.monotonic() - IDLE_TIMEOUT_SECONDS
        for connection in list(self.connections):
            if not connection.busy and connection.last_active < cutoff:
                connection.transport.close()
        if self.app.request_log is not None:
            self.app.request_log.report_drops()
        self._tick = asyncio.get_running_loop().call_later(1.0, self._housekeeping)

    async def shutdown(self, grace: float) -> None:
        """Stop accepting, let in-flight requests finish (up to ``grace`` s), close the rest."""
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            connection.drain()
        deadline = time.monotonic() + grace
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for connection in list(self.connections):
            connection.transport.abort()
        if self._tick is not None:
            self._tick.cancel()


async def serve(
    model_name: str,
    version: str,
    host: str,
    port: int,
    admin_token: str | None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    endpoint_name: str | None = None,
    request_log: dict[str, object] | None = None,
) -> int:
    """Serve until SIGTERM or SIGINT; returns the process exit code.

    ``request_log`` holds ``RequestLog``'s arguments besides the model and endpoint names (at
    least ``table_path``); None serves without a request log.
    """
    app = ServingApp(model_name, admin_token, max_body_bytes, endpoint_name)
    server = _HttpServer(app)
    if request_log is not None:
        app.request_log = RequestLog(model_name=model_name, endpoint=endpoint_name, **request_log)
        log.info("logging requests to %s", app.request_log.table_path)
    try:
        try:
            await server.start(host, port)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                log.error(
                    "port %s on %s is in use; set IRIS_SERVING_PORT to a free port", port, host
                )
                return EXIT_PORT_IN_USE
            raise
        log.info("listening on http://%s:%s (pid %s)", host, port, os.getpid())
        return await _serve_until_stopped(app, server, version)
    finally:
        if app.request_log is not None:
            await asyncio.get_running_loop().run_in_executor(None, app.request_log.close)


async def _serve_until_stopped(app: ServingApp, server: _HttpServer, version: str) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    loading = asyncio.ensure_future(app.swap(version))
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({loading, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if loading.done() and loading.result()[0] != 200:
        log.error("could not load the first model version; exiting")
        await server.shutdown(0)
        return EXIT_MODEL_LOAD_FAILED
    await stopped
    log.info("stop signal: finishing in-flight requests")
    await server.shutdown(SHUTDOWN_GRACE_SECONDS)
    log.info("stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m iris_assets.serving.server", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--state-dir",
        type=Path,
        help="the folder process.py owns for this server; the server itself writes nothing there",
    )
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES)
    parser.add_argument(
        "--endpoint-name",
        help="answer /serving-endpoints/<this name>/invocations too, as Databricks does",
    )
    parser.add_argument(
        "--request-log",
        type=Path,
        metavar="TABLE_DIR",
        help="record every scoring request into the Delta table in this folder",
    )
    parser.add_argument("--request-log-max-rows", type=int, default=DEFAULT_MAX_ROWS)
    parser.add_argument("--request-log-max-bytes", type=int, default=DEFAULT_MAX_BYTES)
    parser.add_argument("--request-log-flush-seconds", type=float, default=DEFAULT_FLUSH_SECONDS)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Nothing below needs the token in the environment; keep it out of reach of libraries.
    admin_token = os.environ.pop(ADMIN_TOKEN_ENV, None) or None
    if admin_token is None:
        log.warning("%s is not set: the admin API is disabled", ADMIN_TOKEN_ENV)
    return asyncio.run(
        serve(
            args.model_name,
            args.version,
            args.host,
            args.port,
            admin_token,
            max_body_bytes=args.max_body_bytes,
            endpoint_name=args.endpoint_name,
            request_log=(
                {
                    "table_path": args.request_log,
                    "max_rows": args.request_log_max_rows,
                    "max_bytes": args.request_log_max_bytes,
                    "flush_seconds": args.request_log_flush_seconds,
                }
                if args.request_log
                else None
            ),
        )
    )


if __name__ == "__main__":
    sys.exit(main())
