#!/usr/bin/env python3
"""How long the service takes to give up on an S3 that hangs or trickles (README, Reliability).

    .venv/bin/python bench/giveup.py [--settings original|defaults] [--seconds 900] [--case NAME]

Runs the download and upload stages, under a Lambda-like deadline (`--seconds` to go,
MIN_REMAINING_MS from the settings), against a local server on 127.0.0.1 that answers
HEAD with a 10 MB object and then, by case: never answers the GET, trickles the GET's
body at 25 KB/s, or never answers the PUTs. Prints one line per case: the seconds until
the stage gave up and the seconds left before the deadline. `original` is the service's
original README (3 attempts 1000 ms apart, 10 s connect, 60 s read, 60000 ms reserve);
`defaults` is config.py's. No timing claim is made from a busy machine: these are waits
on timeouts, which a slow CPU does not change.
"""

import argparse
import http.server
import os
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)

ORIGINAL = {"S3_RETRIES": "3", "S3_RETRY_DELAY": "1000", "S3_CONNECT_TIMEOUT": "10", "S3_READ_TIMEOUT": "60",
            "MIN_REMAINING_MS": "60000"}
SIZE = 10_000_000


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    case = "get-hang"
    closing = threading.Event()

    def handle_error(self, request, client_address):
        pass


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Length", str(SIZE))
        self.send_header("ETag", '"x"')
        self.end_headers()

    def do_GET(self):
        if self.server.case == "get-hang":
            self.server.closing.wait()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(SIZE))
        self.end_headers()
        for _ in range(SIZE // 2500):  # 25 KB/s
            if self.server.closing.is_set():
                return
            self.wfile.write(b"\0" * 2500)
            self.wfile.flush()
            time.sleep(0.1)

    def do_PUT(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.closing.wait()


def main(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("--settings", choices=("original", "defaults"), default="defaults")
    parser.add_argument("--seconds", type=float, default=900)
    parser.add_argument("--case", choices=("get-hang", "get-trickle", "put-hang"), action="append")
    args = parser.parse_args(argv)
    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    os.environ.update(AWS_ENDPOINT_URL=f"http://127.0.0.1:{server.server_address[1]}", AWS_ACCESS_KEY_ID="x",
                      AWS_SECRET_ACCESS_KEY="x", AWS_DEFAULT_REGION="us-east-1", S3_BUCKET_VIDEOS="v", S3_BUCKET_FRAMES="f")
    for name in ORIGINAL:
        os.environ.pop(name, None)
    if args.settings == "original":
        os.environ.update(ORIGINAL)
    import app

    for case in args.case or ["get-hang", "get-trickle", "put-hang"]:
        server.case = case
        context = app.LocalContext(args.seconds)
        app._deadline.set(app.Deadline(context))
        started = time.monotonic()
        with tempfile.TemporaryDirectory() as work:
            try:
                if case.startswith("put"):
                    os.makedirs(os.path.join(work, "frames"))
                    for name in ("0.jpg", "manifest.json"):
                        with open(os.path.join(work, "frames", name), "wb") as fh:
                            fh.write(b"\xff" * 50_000)
                    app.upload("code", "ig", os.path.join(work, "frames"), {"frames": [{"file": "0.jpg"}]})
                else:
                    app.download("code", "ig", work)
                outcome = "finished"
            except app.StageError as err:
                outcome = err.cause[:150]
        print(f"{args.settings} {case}: gave up after {time.monotonic() - started:.1f} s, "
              f"{context.get_remaining_time_in_millis() / 1000:.1f} s left of {args.seconds:g}: {outcome}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
