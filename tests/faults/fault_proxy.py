"""A small HTTP/1.1 proxy for the publish fault tests, in front of tests/hub_server.py.

It binds 127.0.0.1 only and forwards each request on a fresh connection to the server, except
where a rule matches the request's method and path: then it drops the connection after
`after_bytes` bytes of the request body (`drop`), answers a status itself (`status`, e.g. 500 or
429 with `Retry-After: 0`), or never answers (`stall`, until the proxy stops). Each rule applies
`times` times. Every request is recorded with what the proxy did to it.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from dataclasses import dataclass, field


@dataclass
class Rule:
    method: str
    path: str  # a regex matched against the request path
    action: str  # drop | status | stall
    times: int = 1
    after_bytes: int = 0
    status: int = 500
    # Set when a request hits this rule (a test can act then: kill the client).
    hit: threading.Event = field(default_factory=threading.Event)


def _read_until(conn: socket.socket, buffer: bytearray, marker: bytes) -> bool:
    while marker not in buffer:
        chunk = conn.recv(65536)
        if not chunk:
            return False
        buffer += chunk
    return True


def _read_exact(conn: socket.socket, buffer: bytearray, size: int) -> bool:
    while len(buffer) < size:
        chunk = conn.recv(65536)
        if not chunk:
            return False
        buffer += chunk
    return True


def _read_message(conn: socket.socket, buffer: bytearray, head_only_body: bool = False) -> bytes | None:
    """One HTTP message (head and body by Content-Length or chunked) taken off `buffer`."""
    if not _read_until(conn, buffer, b"\r\n\r\n"):
        return None
    end = buffer.index(b"\r\n\r\n") + 4
    head = bytes(buffer[:end]).decode("latin-1")
    length = re.search(r"(?im)^content-length:\s*(\d+)", head)
    if head_only_body:
        size = end
    elif length:
        size = end + int(length.group(1))
    elif re.search(r"(?im)^transfer-encoding:\s*chunked", head):
        size = end
        while True:
            while b"\r\n" not in buffer[size:]:
                chunk = conn.recv(65536)
                if not chunk:
                    return None
                buffer += chunk
            line_end = buffer.index(b"\r\n", size)
            chunk_size = int(bytes(buffer[size:line_end]).split(b";")[0], 16)
            size = line_end + 2 + chunk_size + 2
            if not _read_exact(conn, buffer, size):
                return None
            if chunk_size == 0:
                break
    else:
        size = end
    if not _read_exact(conn, buffer, size):
        return None
    message = bytes(buffer[:size])
    del buffer[:size]
    return message


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        match = re.fullmatch(r"http://([^:/]+):(\d+)", upstream)
        assert match, upstream
        self.upstream = (match.group(1), int(match.group(2)))
        self.rules: list[Rule] = []
        self.log: list[tuple[str, str, str]] = []  # (method, path, what the proxy did)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)  # accept() wakes up to see `stopping`
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.connections: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            with self.lock:
                self.connections.append(conn)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _rule_for(self, method: str, path: str) -> Rule | None:
        with self.lock:
            for rule in self.rules:
                if rule.times > 0 and rule.method == method and re.search(rule.path, path):
                    rule.times -= 1
                    return rule
        return None

    def _handle(self, conn: socket.socket) -> None:
        buffer = bytearray()
        try:
            while True:
                if not _read_until(conn, buffer, b"\r\n\r\n"):
                    return
                request_line = bytes(buffer[: buffer.index(b"\r\n")]).decode("latin-1")
                method, path = request_line.split(" ")[:2]
                rule = self._rule_for(method, path)
                if rule is not None and rule.action == "drop":
                    head_end = buffer.index(b"\r\n\r\n") + 4
                    _read_exact(conn, buffer, head_end + rule.after_bytes)
                    self._record(method, path, f"dropped after {rule.after_bytes} body bytes", rule)
                    return
                request = _read_message(conn, buffer)
                if request is None:
                    return
                if rule is not None and rule.action == "stall":
                    self._record(method, path, "stalled", rule)
                    self.stopping.wait()
                    return
                if rule is not None and rule.action == "status":
                    self._record(method, path, f"answered {rule.status}", rule)
                    body = b'{"error": "injected by the fault proxy"}'
                    conn.sendall(
                        f"HTTP/1.1 {rule.status} Injected\r\nContent-Type: application/json\r\n"
                        f"Retry-After: 0\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                        + body
                    )
                    continue
                self._record(method, path, "forwarded", None)
                with socket.create_connection(self.upstream) as upstream:
                    upstream.sendall(request)
                    answer = _read_message(upstream, bytearray(), head_only_body=method == "HEAD")
                if answer is None:
                    return
                conn.sendall(answer)
        except OSError:
            return
        finally:
            conn.close()

    def _record(self, method: str, path: str, action: str, rule: Rule | None) -> None:
        with self.lock:
            self.log.append((method, path, action))
        if rule is not None:
            rule.hit.set()

    def requests(self, method: str, path: str) -> list[str]:
        """What the proxy did to each request matching `method` and the regex `path`."""
        with self.lock:
            return [a for m, p, a in self.log if m == method and re.search(path, p)]

    def stop(self) -> None:
        self.stopping.set()
        self.listener.close()
        with self.lock:
            for conn in self.connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
        self.thread.join(timeout=5)
