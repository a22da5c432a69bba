"""A small fault-injecting reverse proxy on 127.0.0.1, for S3 (moto) or PostgREST (nginx).

Point the service at it instead of the real server; every request is forwarded, except
those a fault picks: an HTTP error status, a dropped connection (reset), or a delay.
Faults are planned as "the next N requests" or as a share of all requests (seeded).
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

    def fail_share(self, share, fault=("status", 503)):
        with self.lock:
            self.share, self.share_fault = share, fault

    def clear(self):
        with self.lock:
            self.plan, self.share = [], 0.0

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    # --- serving -----------------------------------------------------------------------

    def _pick(self, path):
        with self.lock:
            self.requests += 1
            if self.match and self.match not in path:
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
        body = handler.rfile.read(length) if length else None
        fault = self._pick(handler.path)
        if fault and fault[0] == "pass":
            fault = None
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
