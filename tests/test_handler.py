"""lambda_handler end to end against the local stack: PostgREST behind nginx, moto S3.

Every test runs on both frame picks (the `service` fixture, parametrized below): best,
the service default, and middle."""

import json
import threading

import cv2
import numpy as np
import pytest
from conftest import FakeContext, sqs_event
from media import make_video, read_barcode

import app
import config


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clips") / "three.mp4"
    make_video(path, [30, 30, 30])
    return path


# Every handler test on both frame picks: best (the service's default) and middle.
pytestmark = pytest.mark.parametrize("service", ["best", "middle"], indirect=True)


def run(*bodies, context=None):
    return app.lambda_handler(sqs_event(*bodies), context or FakeContext())


def body(code, platform="ig"):
    return {"shortcode": code, "platform": platform}


def test_happy_path_uploads_frames_and_manifest_and_marks_done(service, clip, logs):
    service.add_video("abc123", video=clip)
    response = run(body("abc123"))
    assert response["batchItemFailures"] == []
    [result] = response["results"]
    assert (result["status"], result["frames"], result["error"]) == ("extracted", 3, None)
    assert result["seconds"] > 0
    assert service.frame_keys("abc123") == [f"ig/abc123/frames/{n}" for n in ("0.jpg", "1.jpg", "2.jpg", "manifest.json")]
    manifest = json.loads(service.get_frame("ig/abc123/frames/manifest.json")["Body"].read())
    if config.FRAME_PICK == "middle":
        assert [f["frame"] for f in manifest["frames"]] == [15, 45, 75]
    else:  # the sharpest frame with content in the middle 0.3 of each 30-frame scene
        assert [(f["scene"], f["reason"]) for f in manifest["frames"]] == [(0, "sharpest"), (1, "sharpest"), (2, "sharpest")]
        assert all(abs(f["frame"] - (15 + 30 * f["scene"])) <= 4 for f in manifest["frames"]), manifest["frames"]
    assert manifest["method"] == "scenes" and len(manifest["scenes"]) == 3
    for frame in manifest["frames"]:
        obj = service.get_frame(f"ig/abc123/frames/{frame['file']}")
        assert obj["ContentType"] == "image/jpeg"
        image = cv2.imdecode(np.frombuffer(obj["Body"].read(), np.uint8), cv2.IMREAD_COLOR)
        assert read_barcode(image) == frame["frame"]
    assert service.get_frame("ig/abc123/frames/manifest.json")["ContentType"] == "application/json"
    assert service.video_row("abc123") == ["t", "t", "3", "t"]
    assert service.errors() == []
    for line in logs.records:  # every line carries its record's context
        assert (line["message_id"], line["shortcode"], line["platform"]) == ("msg-0", "abc123", "ig")
        assert line["stage"]


def test_already_extracted_is_skipped_without_an_error_row(service, clip):
    service.add_video("done1", extracted=True, video=clip)
    response = run(body("done1"))
    assert response["batchItemFailures"] == []
    assert response["results"][0]["status"] == "skipped"
    assert service.frame_keys() == [] and service.errors() == []


def test_not_downloaded_is_skipped_with_an_error_row(service):
    service.add_video("later1", downloaded=False)
    response = run(body("later1"))
    assert response["batchItemFailures"] == []
    assert response["results"][0]["status"] == "skipped"
    assert service.errors() == [["later1", "ig", "status", "video is not downloaded yet", "msg-0"]]
    assert service.video_row("later1") == ["f", "f", "0", "f"]


@pytest.mark.parametrize("case,stage,message", [
    ("no_row", "status", "no row in videos"),
    ("no_object", "download", "does not exist"),
    ("not_a_video", "extract", "not a readable video file"),
    ("too_big", "download", "over MAX_VIDEO_BYTES"),
])
def test_permanent_errors_are_recorded_and_acknowledged(service, clip, monkeypatch, tmp_path, case, stage, message):
    if case == "no_row":
        service.add_video("perm1", video=clip, row=False)
    elif case == "no_object":
        service.add_video("perm1")
    elif case == "not_a_video":
        fake = tmp_path / "fake.mp4"
        fake.write_text("this is text, not a video\n" * 20)
        service.add_video("perm1", video=fake)
    else:
        monkeypatch.setattr(config, "MAX_VIDEO_BYTES", 1000)
        service.add_video("perm1", video=clip)
    response = run(body("perm1"))
    assert response["batchItemFailures"] == []
    [result] = response["results"]
    assert (result["status"], result["stage"]) == ("error", stage)
    assert message in result["error"]
    [row] = service.errors()
    assert row[:3] == ["perm1", "ig", stage] and message in row[3] and row[4] == "msg-0"
    assert service.frame_keys() == []
    if case != "no_row":
        assert service.video_row("perm1")[1] == "f"


def test_s3_unreachable_is_retried_with_nothing_written(service, clip, monkeypatch):
    service.add_video("s3down", video=clip)
    closed = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", closed)
    app.reset_clients()
    response = run(body("s3down"))
    assert response["batchItemFailures"] == [{"itemIdentifier": "msg-0"}]
    [result] = response["results"]
    assert (result["status"], result["stage"]) == ("retry", "download")
    assert "failed after 2 attempts" in result["error"]
    monkeypatch.setenv("AWS_ENDPOINT_URL", service.env["AWS_ENDPOINT_URL"])
    assert service.frame_keys() == [] and service.errors() == []
    assert service.video_row("s3down") == ["t", "f", "0", "f"]


def test_supabase_unreachable_is_retried_with_nothing_written(service, clip, monkeypatch):
    service.add_video("dbdown", video=clip)
    monkeypatch.setattr(config, "SUPABASE_URL", f"http://127.0.0.1:{_closed_port()}")
    app.reset_clients()
    response = run(body("dbdown"))
    assert response["batchItemFailures"] == [{"itemIdentifier": "msg-0"}]
    assert response["results"][0]["stage"] == "status"
    assert service.frame_keys() == [] and service.errors() == []


def test_supabase_5xx_is_retried(service, clip, monkeypatch):
    """A server answering 503 to everything: after our retries, back to SQS."""
    import http.server

    hits = []

    class Unavailable(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(503)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"message": "service unavailable"}')

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Unavailable)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        service.add_video("dbfail", video=clip)
        monkeypatch.setattr(config, "SUPABASE_URL", f"http://127.0.0.1:{server.server_address[1]}")
        app.reset_clients()
        response = run(body("dbfail"))
    finally:
        server.shutdown()
    assert response["batchItemFailures"] == [{"itemIdentifier": "msg-0"}]
    assert response["results"][0]["stage"] == "status"
    assert len(hits) == config.SUPABASE_RETRIES
    assert service.frame_keys() == [] and service.errors() == []


def test_a_permanent_error_that_cannot_be_recorded_is_retried(service, monkeypatch):
    service.add_video("norecord")  # no S3 object: a permanent error
    monkeypatch.setattr(config, "ERRORS_TABLE", "no_such_table")
    response = run(body("norecord"))
    assert response["batchItemFailures"] == [{"itemIdentifier": "msg-0"}]
    [result] = response["results"]
    assert result["status"] == "retry" and "recording it failed" in result["error"]


def test_update_matching_no_row_is_an_error(service, clip, monkeypatch):
    service.add_video("vanish", video=clip)
    upload = app.upload

    def upload_then_delete_row(*args):
        upload(*args)
        service.stack.sql("delete from videos where code = 'vanish'")

    monkeypatch.setattr(app, "upload", upload_then_delete_row)
    response = run(body("vanish"))
    assert response["batchItemFailures"] == [{"itemIdentifier": "msg-0"}]
    assert response["results"][0]["stage"] == "mark_done"
    assert "matched no row" in response["results"][0]["error"]


def test_no_record_starts_too_close_to_the_deadline(service, clip):
    service.add_video("late1", video=clip)
    response = run(body("late1"), context=FakeContext(remaining_ms=config.MIN_REMAINING_MS - 1))
    assert response["batchItemFailures"] == [{"itemIdentifier": "msg-0"}]
    assert response["results"][0]["stage"] == "start"
    assert service.video_row("late1") == ["t", "f", "0", "f"] and service.frame_keys() == []


def test_the_deadline_is_checked_inside_the_decode_loop(service, clip, monkeypatch):
    service.add_video("late2", video=clip)
    # Plenty of time at the start; each look at the clock uses up 1 s of it.
    context = FakeContext(remaining_ms=config.MIN_REMAINING_MS + 40_000, drop_per_call_ms=1000)
    response = run(body("late2"), context=context)
    assert response["batchItemFailures"] == [{"itemIdentifier": "msg-0"}]
    [result] = response["results"]
    assert (result["status"], result["stage"]) == ("retry", "extract")
    assert "MIN_REMAINING_MS" in result["error"]
    assert service.frame_keys() == [] and service.errors() == []


def test_duplicates_in_a_batch_are_processed_once(service, clip, logs):
    service.add_video("twice", video=clip)
    response = run(body("twice"), body("twice"))
    assert response["batchItemFailures"] == []
    assert [r["status"] for r in response["results"]] == ["extracted", "duplicate"]
    assert sum(1 for line in logs.records if line["msg"] == "started") == 1


MALFORMED = [
    "not json at all",
    "[1, 2]",
    "42",
    "null",
    "{}",
    json.dumps({"shortcode": "abc"}),
    json.dumps({"platform": "ig"}),
    json.dumps({"shortcode": "", "platform": "ig"}),
    json.dumps({"shortcode": 123, "platform": "ig"}),
    json.dumps({"shortcode": ["a"], "platform": "ig"}),
    json.dumps({"shortcode": "abc", "platform": "ig", "extra": 1}),
    json.dumps({"shortcode": "../etc", "platform": "ig"}),
    json.dumps({"shortcode": "a/b", "platform": "ig"}),
    json.dumps({"shortcode": "abc", "platform": "../ig"}),
    json.dumps({"shortcode": "a b", "platform": "ig"}),
    json.dumps({"shortcode": "abc", "platform": "IG"}),
    json.dumps({"shortcode": "аbc", "platform": "ig"}),  # Cyrillic а
    json.dumps({"shortcode": "abc\n", "platform": "ig"}),
    json.dumps({"shortcode": "x" * 10_000, "platform": "ig"}),
    '{"shortcode": "abc", "shortcode": "def", "platform": "ig"}',
    json.dumps({"shortcode": "a%2Fb", "platform": "ig"}),
    json.dumps({"shortcode": "abc\u0000", "platform": "ig"}),
    json.dumps({"shortcode": "\uff21\uff22\uff23", "platform": "ig"}),  # fullwidth ABC
    json.dumps({"shortcode": None, "platform": "ig"}),
    json.dumps({"shortcode": "abc", "platform": ""}),
    json.dumps({"shortcode": "abc", "platform": "ig", "pad": "x" * 1_000_000}),  # valid JSON, 1 MB
    "",
    "true",
    '{"shortcode": "abc", "platform": "ig"',
    "[" * 2040 + "]" * 2040,  # within MAX_BODY_BYTES, nested past json's recursion limit
]


def test_malformed_bodies_go_back_to_sqs_for_the_dead_letter_queue(service, clip, logs):
    service.add_video("good1", video=clip)
    response = run(*MALFORMED, body("good1"))
    failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
    assert failed == {f"msg-{i}" for i in range(len(MALFORMED))}
    statuses = [r["status"] for r in response["results"]]
    assert statuses == ["invalid"] * len(MALFORMED) + ["extracted"]
    invalid_lines = [line for line in logs.records if line["msg"].startswith("malformed message")]
    assert sorted(line["message_id"] for line in invalid_lines) == sorted(failed)
    assert all(line["error"] and "Traceback" not in line["error"] for line in invalid_lines)
    assert len(MALFORMED) >= 25
    # Nothing reached S3 but the one valid video's own keys, and nothing was recorded.
    assert service.frame_keys() == [f"ig/good1/frames/{n}" for n in ("0.jpg", "1.jpg", "2.jpg", "manifest.json")]
    assert service.errors() == []


def test_allowed_platforms(service, clip, monkeypatch):
    monkeypatch.setattr(config, "ALLOWED_PLATFORMS", ("tiktok",))
    service.add_video("p1", video=clip)
    response = run(body("p1", "ig"))
    assert response["results"][0]["status"] == "invalid"
    assert "ALLOWED_PLATFORMS" in response["results"][0]["error"]


def test_stale_frames_from_an_earlier_run_are_removed(service, clip):
    service.add_video("again", video=clip)
    for n in range(8):
        service.s3.put_object(Bucket=service.env["S3_BUCKET_FRAMES"], Key=f"ig/again/frames/{n}.jpg", Body=b"old")
    service.s3.put_object(Bucket=service.env["S3_BUCKET_FRAMES"], Key="ig/again/frames/notes.txt", Body=b"keep")
    run(body("again"))
    assert service.frame_keys("again") == [f"ig/again/frames/{n}" for n in ("0.jpg", "1.jpg", "2.jpg", "manifest.json", "notes.txt")]
    assert service.get_frame("ig/again/frames/0.jpg")["Body"].read() != b"old"


@pytest.mark.parametrize(("image_format", "extension", "content_type"),
                         [("webp", ".webp", "image/webp"), ("png", ".png", "image/png")])
def test_image_format_sets_extension_and_content_type_and_replaces_other_formats(
        service, clip, monkeypatch, image_format, extension, content_type):
    monkeypatch.setattr(config, "IMAGE_FORMAT", image_format)
    monkeypatch.setattr(config, "MAX_EDGE", 160)
    service.add_video("fmt", video=clip)
    for n in range(4):  # an earlier run's JPEGs: stale whatever their index
        service.s3.put_object(Bucket=service.env["S3_BUCKET_FRAMES"], Key=f"ig/fmt/frames/{n}.jpg", Body=b"old")
    assert run(body("fmt"))["results"][0]["status"] == "extracted"
    names = [f"{n}{extension}" for n in range(3)]
    assert service.frame_keys("fmt") == [f"ig/fmt/frames/{n}" for n in [*names, "manifest.json"]]
    manifest = json.loads(service.get_frame("ig/fmt/frames/manifest.json")["Body"].read())
    assert manifest["format"] == image_format
    for frame, name in zip(manifest["frames"], names, strict=True):
        obj = service.get_frame(f"ig/fmt/frames/{name}")
        assert frame["file"] == name and obj["ContentType"] == content_type
        image = cv2.imdecode(np.frombuffer(obj["Body"].read(), np.uint8), cv2.IMREAD_COLOR)
        assert image.shape[:2] == (frame["height"], frame["width"]) == (120, 160)  # 320x240, MAX_EDGE=160


def test_one_bad_record_never_fails_the_others(service, clip, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 5000)
    service.add_video("ok1", video=clip)
    service.add_video("bad1", video=bad)
    response = run(body("ok1"), body("bad1"), "garbage", body("ok1x"))
    assert [r["status"] for r in response["results"]] == ["extracted", "error", "invalid", "error"]
    assert response["batchItemFailures"] == [{"itemIdentifier": "msg-2"}]


def test_concurrency_limit_is_respected(service, clip, monkeypatch, logs):
    monkeypatch.setattr(config, "CONCURRENCY_LIMIT", 2)
    running, peak, lock = [0], [0], threading.Lock()
    extract_frames = app.extract_frames

    def counted(*args):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            return extract_frames(*args)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(app, "extract_frames", counted)
    codes = [f"c{i}" for i in range(5)]
    for code in codes:
        service.add_video(code, video=clip)
    response = run(*[body(code) for code in codes])
    assert [r["status"] for r in response["results"]] == ["extracted"] * 5
    assert peak[0] == 2  # two at once, never more
    # The logs agree: between "started" and the last line of a record, at most two overlap.
    spans = {}
    for line in logs.records:
        spans.setdefault(line["message_id"], []).append(line["ts"])
    events = sorted([(min(t), 1) for t in spans.values()] + [(max(t), -1) for t in spans.values()])
    level = most = 0
    for _, step in events:
        level += step
        most = max(most, level)
    assert most <= 2


def test_no_event_records_is_an_empty_response(service):
    assert app.lambda_handler({"Records": []}, FakeContext()) == {"batchItemFailures": [], "results": []}
    assert app.lambda_handler({}, None) == {"batchItemFailures": [], "results": []}


def test_debug_logs_add_detail_and_never_the_key(service, clip, monkeypatch, logs):
    monkeypatch.setattr(config, "DEBUG", True)
    app.log.setLevel("DEBUG")
    service.add_video("dbg", video=clip)
    try:
        run(body("dbg"))
    finally:
        app.log.setLevel("INFO")
    messages = [line["msg"] for line in logs.records]
    assert "downloaded" in messages and "uploaded" in messages
    assert all(config.SUPABASE_KEY not in line for line in logs.lines)


def _closed_port():
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_leftover_temp_folders_are_swept_but_not_another_live_workers(service):
    import os
    import shutil

    own = service.tmp_dir / f"extract-{os.getpid()}-killed"
    dead = service.tmp_dir / "extract-999999999-killed"
    live = service.tmp_dir / "extract-1-busy"  # pid 1 is alive: another worker's folder
    for folder in (own, dead, live):
        folder.mkdir()
    app.lambda_handler({"Records": []}, FakeContext())
    assert not own.exists() and not dead.exists()
    assert live.exists()
    shutil.rmtree(live)
