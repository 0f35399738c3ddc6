"""A scripted HTTP server on 127.0.0.1 standing in for api.stripe.com, for what localstripe
does not model (Stripe's Search API, a saved 500 replayed, temporary declines). It records
every request (method, path, headers, form body) and answers with the next scripted step, or
with `otherwise(request)` when the script is empty: a JSON reply in the shape real Stripe
sends, a dropped connection, or no answer at all."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

# A Hang step holds its request until the test ends (stop()), at most this long: far longer
# than the client timeout a test sets to be tripped by it (a fraction of a second).
HANG_SECONDS = 60.0
# stop(): the server thread's end once it is shut down (at once; generous for a slow machine).
STOP_SECONDS = 30.0

# --- the scripted server ------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any] | bytes  # bytes: sent as they are (not JSON)
    headers: tuple[tuple[str, str], ...] = ()


class Drop:
    """Read the request, then close the connection without answering."""


class Hang:
    """Read the request and never answer (until the test ends)."""


Step = Reply | Drop | Hang


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes

    @property
    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)


class ScriptedStripe:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._script: list[Step] = []
        # Answers a request when the script is empty (None: a 500 "unscripted").
        self.otherwise: Callable[[Recorded], Step] | None = None
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def script(self, *steps: Step) -> None:
        with self._lock:
            self._script.extend(steps)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._released.set()  # lets a hanging handler go
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(STOP_SECONDS)
        assert not self._thread.is_alive(), f"the scripted Stripe did not stop in {STOP_SECONDS}s"

    def _take(self, request: Recorded) -> Step:
        with self._lock:
            self.requests.append(request)
            if self._script:
                return self._script.pop(0)
            if self.otherwise is not None:
                return self.otherwise(request)
            return Reply(500, {"error": {"type": "api_error", "message": "unscripted"}})

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                step = fake._take(Recorded(self.command, self.path, headers, body))
                if isinstance(step, Hang):
                    fake._released.wait(timeout=HANG_SECONDS)
                if not isinstance(step, Reply):
                    self.close_connection = True  # nothing written: the client sees EOF
                    return
                data = step.body if isinstance(step.body, bytes) else json.dumps(step.body).encode()
                self.send_response(step.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Request-Id", f"req_{len(fake.requests)}")
                for name, value in step.headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

        return Handler


# --- Stripe's shapes ----------------------------------------------------------------------


def intent(pi_id: str, status: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": pi_id,
        "object": "payment_intent",
        "status": status,
        "amount": 10000,
        "currency": "usd",
        "livemode": False,
        "last_payment_error": None,
        **extra,
    }


def error(status: int, **fields: Any) -> Reply:
    return Reply(status, {"error": fields})


def found(*intents: dict[str, Any]) -> Reply:
    """A search_result page, as GET /v1/payment_intents/search answers."""
    return Reply(
        200,
        {
            "object": "search_result",
            "url": "/v1/payment_intents/search",
            "has_more": False,
            "next_page": None,
            "data": list(intents),
        },
    )
