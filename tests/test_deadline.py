"""The Lambda deadline against servers that hang, trickle or read slowly (real sockets on
127.0.0.1): whatever S3 does, the handler returns with at least MIN_REMAINING_MS - 5 s
left, the record back in SQS, its retryable failure recorded and its temp folder gone.

Each test gives the handler 12 s (the upload tests 16 s) with MIN_REMAINING_MS=8000 and the original README's
S3 settings (3 attempts, 1000 ms apart, 10 s to connect, 60 s to read): one 60 s read
alone would overrun the Lambda by far.
"""

import socket
import threading

import pytest
from conftest import sqs_event
from faultproxy import FaultProxy

import app
import config

ORIGINAL_README = {"S3_RETRIES": 3, "S3_RETRY_DELAY": 1000.0, "S3_CONNECT_TIMEOUT": 10.0, "S3_READ_TIMEOUT": 60.0,
                   "MIN_REMAINING_MS": 8000}
SECONDS = 12
FLOOR_MS = 8000 - 5000  # MIN_REMAINING_MS - 5 s


class Silent:
    """A server that accepts connections and never reads or answers."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.held, self.stopped = [], threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self):
        self.stopped.set()
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def original(service, monkeypatch):
    for name, value in ORIGINAL_README.items():
        monkeypatch.setattr(config, name, value)
    return service


def run_with_deadline(service, code, seconds=SECONDS):
    context = app.LocalContext(seconds)
    response = app.lambda_handler(sqs_event({"shortcode": code, "platform": "ig"}), context)
    return response, context.get_remaining_time_in_millis()


def assert_gave_up_in_time(service, response, left_ms, code, stage):
    [result] = response["results"]
    assert response["batchItemFailures"] == [{"itemIdentifier": "msg-0"}], result
    assert (result["status"], result["stage"]) == ("retry", stage), result
    assert left_ms >= FLOOR_MS, f"returned with {left_ms} ms left: {result}"
    assert service.video_row(code)[1] == "f"
    assert list(service.tmp_dir.iterdir()) == []
    [row] = service.retries()  # the failure left a row
    assert row[:4] == [code, stage, "1", "f"]


def test_head_to_a_server_that_never_answers(original, clip, monkeypatch):
    original.add_video("silent", video=clip)
    silent = Silent()
    monkeypatch.setenv("AWS_ENDPOINT_URL", silent.url)
    app.reset_clients()
    try:
        response, left_ms = run_with_deadline(original, "silent")
    finally:
        silent.close()
        app.reset_clients()
    assert_gave_up_in_time(original, response, left_ms, "silent", "download")
    assert "head_object" in response["results"][0]["error"]


@pytest.mark.parametrize("method,fault", [
    ("HEAD", "trickle"),  # the headers, 20 bytes a second
    ("GET", "hang"),
    ("GET", "trickle"),  # the body, 2 KB a second
])
def test_download_from_a_server_that_hangs_or_trickles(original, clip, s3_proxy, method, fault):
    original.add_video("slowget", video=clip)
    s3_proxy.match, s3_proxy.method = "/video.mp4", method
    if fault == "hang":
        s3_proxy.hang_next(100)
    else:
        s3_proxy.trickle_next(100, 20 if method == "HEAD" else 2000)
    response, left_ms = run_with_deadline(original, "slowget")
    assert_gave_up_in_time(original, response, left_ms, "slowget", "download")


@pytest.mark.parametrize("fault", ["hang", "slow_body", "trickle"])
def test_upload_to_a_server_that_hangs_reads_slowly_or_trickles(original, clip, s3_proxy, fault):
    original.add_video("slowput", video=clip)
    s3_proxy.match, s3_proxy.method = "/frames/", "PUT"
    {"hang": lambda: s3_proxy.hang_next(100), "slow_body": lambda: s3_proxy.slow_body_next(100, 100),
     "trickle": lambda: s3_proxy.trickle_next(100, 10)}[fault]()
    # 16 s: the download and the extraction come first, on a machine that may be busy.
    response, left_ms = run_with_deadline(original, "slowput", seconds=16)
    assert_gave_up_in_time(original, response, left_ms, "slowput", "upload")
    s3_proxy.clear()
    assert "ig/slowput/frames/manifest.json" not in original.frame_keys("slowput")


def test_supabase_that_never_answers(original, clip, monkeypatch):
    """The status read hangs, and so does the error row's insert (which may use 4 s of the
    reserve): the log line is the record, and the handler still returns in time."""
    original.add_video("dbhang", video=clip)
    proxy = FaultProxy(original.env["SUPABASE_URL"])
    proxy.hang_next(100)
    monkeypatch.setattr(config, "SUPABASE_URL", proxy.url)
    monkeypatch.setattr(config, "SUPABASE_TIMEOUT", 60.0)
    app.reset_clients()
    try:
        response, left_ms = run_with_deadline(original, "dbhang")
    finally:
        proxy.close()
        app.reset_clients()
    [result] = response["results"]
    assert response["batchItemFailures"] == [{"itemIdentifier": "msg-0"}]
    assert (result["status"], result["stage"]) == ("retry", "status"), result
    assert left_ms >= FLOOR_MS, f"returned with {left_ms} ms left: {result}"
    assert original.retries() == []  # Supabase never took the row: the log line is the record
