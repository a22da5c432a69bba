"""A small fault-injecting reverse proxy on 127.0.0.1, for S3 (moto) or PostgREST (nginx).

Point the service at it instead of the real server; every request is forwarded, except
those a fault picks: an HTTP error status, a dropped connection (reset), or a delay.
Faults are planned as "the next N requests" or as a share of all requests (seeded).
Slow servers too: one that never answers (`hang_next`), one that trickles its answer a
few bytes at a time (`trickle_next`: a HEAD's headers, a GET's body), one that takes a
request body in slowly (`slow_body_next`), and canned answers (`respond_next`).
"""

import http.client
import http.server
import random
import socket
import struct
import threading
import time
import urllib.parse

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
              "proxy-authorization", "proxy-authenticate"}


class FaultProxy:
    def __init__(self, target, seed=1):
        parsed = urllib.parse.urlsplit(target)
        self.target_host, self.target_port = parsed.hostname, parsed.port
        self.lock = threading.Lock()
        self.plan = []  # faults for the next requests, in order
        self.share, self.share_fault = 0.0, None
        self.random = random.Random(seed)
        self.requests, self.injected = 0, 0
        self.match = None  # only requests whose path contains this string may fail
        self.forwarded = []  # (method, path, status) of every request that reached the server
        self.method = None  # only requests of this method may fail
        self.closing = threading.Event()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _any(self):
                proxy._handle(self)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _any

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # a client hanging up on a delayed answer is part of the game

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    # --- planning faults ---------------------------------------------------------------

    def fail_next(self, count, status=503):
        with self.lock:
            self.plan += [("status", status)] * count

    def pass_next(self, count):
        with self.lock:
            self.plan += [("pass", None)] * count

    def reset_next(self, count):
        with self.lock:
            self.plan += [("reset", None)] * count

    def delay_next(self, count, seconds):
        with self.lock:
            self.plan += [("delay", seconds)] * count

    def hang_next(self, count):
        """Read the request, then never answer (until the proxy closes)."""
        with self.lock:
            self.plan += [("hang", None)] * count

    def trickle_next(self, count, bytes_per_second):
        """Forward, then send the answer at this rate: all of it for a HEAD, the body for others."""
        with self.lock:
            self.plan += [("trickle", bytes_per_second)] * count

    def slow_body_next(self, count, bytes_per_second):
        """Take the request body in at this rate (the client's send blocks), then forward."""
        with self.lock:
            self.plan += [("slow_body", bytes_per_second)] * count

    def respond_next(self, count, status, body, content_type="application/xml"):
        """Answer with this status and body instead of forwarding."""
        with self.lock:
            self.plan += [("respond", (status, body, content_type))] * count

    def fail_share(self, share, fault=("status", 503)):
        with self.lock:
            self.share, self.share_fault = share, fault

    def clear(self):
        with self.lock:
            self.plan, self.share = [], 0.0

    def close(self):
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()

    # --- serving -----------------------------------------------------------------------

    def _pick(self, path, method):
        with self.lock:
            self.requests += 1
            if (self.match and self.match not in path) or (self.method and self.method != method):
                return None
            if self.plan:
                fault = self.plan.pop(0)
                self.injected += fault[0] != "pass"
                return fault
            if self.share and self.random.random() < self.share:
                self.injected += 1
                return self.share_fault
        return None

    def _handle(self, handler):
        length = int(handler.headers.get("Content-Length") or 0)
        fault = self._pick(handler.path, handler.command)
        if fault and fault[0] == "slow_body":
            body = b""
            while len(body) < length and not self.closing.is_set():
                body += handler.rfile.read(min(256, length - len(body)))
                time.sleep(256 / fault[1])
        else:
            body = handler.rfile.read(length) if length else None
        if fault and fault[0] in ("pass", "slow_body"):
            fault = None
        if fault and fault[0] == "hang":
            self.closing.wait()
            handler.close_connection = True
            return
        if fault and fault[0] == "respond":
            status, payload, content_type = fault[1]
            handler.send_response(status)
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
            return
        if fault and fault[0] == "status":
            payload = b'{"message": "injected fault"}'
            handler.send_response(fault[1])
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
            return
        if fault and fault[0] == "reset":
            # RST instead of FIN: the client sees "connection reset by peer".
            handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            handler.connection.close()
            handler.close_connection = True
            return
        if fault and fault[0] == "delay":
            time.sleep(fault[1])
        upstream = http.client.HTTPConnection(self.target_host, self.target_port, timeout=60)
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_BY_HOP}
        try:
            upstream.request(handler.command, handler.path, body=body, headers=headers)
            response = upstream.getresponse()
            payload = response.read()
        except OSError:
            handler.send_error(502)
            return
        finally:
            upstream.close()
        with self.lock:
            self.forwarded.append((handler.command, handler.path, response.status))
        if fault and fault[0] == "trickle":
            self._trickle(handler, response, payload, fault[1])
            return
        handler.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                handler.send_header(key, value)
        # A HEAD answer has no body but tells the length of the object.
        length = response.getheader("Content-Length", "0") if handler.command == "HEAD" else str(len(payload))
        handler.send_header("Content-Length", length)
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(payload)

    def _trickle(self, handler, response, payload, rate):
        """The body after prompt headers, or the whole answer when it has no body (HEAD,
        PUT), `rate` bytes a second, until done or the proxy closes."""
        lines = [f"HTTP/1.1 {response.status} {response.reason}\r\n"]
        for key, value in response.getheaders():
            if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                lines.append(f"{key}: {value}\r\n")
        length = response.getheader("Content-Length", "0") if handler.command == "HEAD" else str(len(payload))
        head = ("".join(lines) + f"Content-Length: {length}\r\n\r\n").encode()
        slow = payload if payload and handler.command != "HEAD" else head  # a PUT's answer: its headers
        if slow is payload:
            handler.wfile.write(head)
        step = max(1, rate // 10)
        try:
            for start in range(0, len(slow), step):
                if self.closing.is_set():
                    break
                handler.wfile.write(slow[start:start + step])
                handler.wfile.flush()
                time.sleep(step / rate)
        except OSError:
            pass  # the client gave up
        handler.close_connection = True
