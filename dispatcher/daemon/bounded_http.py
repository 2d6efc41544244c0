"""An HTTP server for the loopback endpoints that idle or slow clients cannot exhaust.

`ThreadingHTTPServer` spends a thread per connection for as long as the client keeps it open:
4,700 idle connections held 4,700 threads and 125 MB (issue 22, item 16). Here one watcher thread
holds every connection until its request head has arrived whole, and only then hands it to one of a
few workers. A connection that has not sent a whole head within `timeout` seconds is closed, and
beyond `max_pending` waiting connections the oldest is closed to make room, so a flood of idle
sockets costs descriptors for a while, never threads, and a real request still gets through.
"""

from __future__ import annotations

import io
import logging
import selectors
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, cast

log = logging.getLogger(__name__)

WORKERS = 4  # requests answered at once; the endpoints answer in milliseconds
MAX_PENDING = 64  # connections still sending their request head
HEAD_LIMIT = 16 * 1024  # a longer head is handed on as is, and the handler refuses it
_HEAD_ENDS = (b"\r\n\r\n", b"\n\n")


@dataclass
class _Pending:
    address: Any
    deadline: float
    head: bytearray = field(default_factory=bytearray)


class _Received:
    """The client's socket, with the head the watcher already read served first to the handler."""

    def __init__(self, sock: socket.socket, head: bytes) -> None:
        self._sock = sock
        self._head = head

    def makefile(self, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if "r" in mode:  # GET and HEAD carry no body: the head is the whole request
            return io.BytesIO(self._head)
        return cast(Any, self._sock).makefile(mode, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class BoundedHTTPServer(HTTPServer):
    request_queue_size = 128  # the listen backlog: a burst of connections waits to be accepted

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        *,
        timeout: float,
        workers: int = WORKERS,
        max_pending: int = MAX_PENDING,
    ) -> None:
        super().__init__(address, handler)  # binds first: a port in use fails before any thread
        self.connection_timeout = timeout
        self.max_pending = max_pending
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="dispatcher-http")
        self._pending: dict[socket.socket, _Pending] = {}  # in arrival order, so oldest first
        self._arrived: list[tuple[socket.socket, Any]] = []
        self._lock = threading.Lock()
        self._closed = False
        self._selector = selectors.DefaultSelector()
        self._wake, self._waker = socket.socketpair()
        self._wake.setblocking(False)
        self._selector.register(self._wake, selectors.EVENT_READ)
        self._watcher = threading.Thread(target=self._watch, name="dispatcher-http-watch", daemon=True)
        self._watcher.start()

    def process_request(self, request: Any, client_address: Any) -> None:
        """Called by serve_forever for each accepted connection: the watcher takes it over."""
        with self._lock:
            if self._closed:
                request.close()
                return
            self._arrived.append((request, client_address))
        self._waker.send(b"\0")

    def server_close(self) -> None:
        """Close the port and every connection; safe twice, and when binding failed (no watcher)."""
        watcher = self.__dict__.pop("_watcher", None)
        if watcher is None:
            super().server_close()
            return
        with self._lock:
            self._closed = True
        self._waker.send(b"\0")
        watcher.join()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._selector.close()
        self._wake.close()
        self._waker.close()
        super().server_close()

    # -- the watcher thread: the only one that touches the selector and the pending connections

    def _watch(self) -> None:
        while True:
            with self._lock:
                closed, arrived, self._arrived = self._closed, self._arrived, []
            for sock, address in arrived:
                self._adopt(sock, address)
            if closed:
                break
            for key, _ in self._selector.select(self._next_timeout()):
                if key.fileobj is self._wake:
                    self._drain_wake()
                else:
                    self._read(cast(socket.socket, key.fileobj))
            self._expire(time.monotonic())
        for sock in list(self._pending):
            self._drop(sock)

    def _adopt(self, sock: socket.socket, address: Any) -> None:
        while len(self._pending) >= self.max_pending:
            self._drop(next(iter(self._pending)))  # the oldest has waited longest for nothing
        sock.setblocking(False)
        self._pending[sock] = _Pending(address, time.monotonic() + self.connection_timeout)
        self._selector.register(sock, selectors.EVENT_READ)

    def _next_timeout(self) -> float:
        if not self._pending:
            return 1.0
        oldest = next(iter(self._pending.values()))
        return max(0.0, min(1.0, oldest.deadline - time.monotonic()))

    def _read(self, sock: socket.socket) -> None:
        pending = self._pending[sock]
        try:
            data = sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(sock)
            return
        pending.head += data
        if len(pending.head) > HEAD_LIMIT or any(end in pending.head for end in _HEAD_ENDS):
            self._selector.unregister(sock)
            del self._pending[sock]
            self._pool.submit(self._serve, sock, pending.address, bytes(pending.head))

    def _expire(self, now: float) -> None:
        for sock, pending in list(self._pending.items()):
            if pending.deadline > now:
                break  # arrival order is deadline order
            self._drop(sock)

    def _drop(self, sock: socket.socket) -> None:
        self._selector.unregister(sock)
        del self._pending[sock]
        sock.close()

    def _drain_wake(self) -> None:
        try:
            while self._wake.recv(4096):
                pass
        except BlockingIOError:
            pass

    # -- a worker thread: one whole request, writes bounded by the same timeout

    def _serve(self, sock: socket.socket, address: Any, head: bytes) -> None:
        try:
            sock.setblocking(True)
            sock.settimeout(self.connection_timeout)
            self.finish_request(cast(Any, _Received(sock, head)), address)
        except Exception:
            self.handle_error(sock, address)
        finally:
            self.shutdown_request(sock)
