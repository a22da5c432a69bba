import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The modules of the service (what the Lambda image copies; see test_deploy).
SERVICE_MODULES = ["app.py", "choose.py", "config.py", "cpus.py", "decode.py", "detect.py", "extract.py", "output.py",
                   "quality.py", "transitions.py"]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

SHARED = Path(os.environ.get("SHARED_DIR", ROOT.parent / "shared"))


@pytest.fixture
def shared_videos():
    folder = SHARED / "videos"
    if not (folder / "README.md").exists():
        pytest.skip(f"extended tier: {folder} is absent (it sits beside the repo in CI; a user's checkout does not have it)")
    return folder


# --- The local stack, started once per test run ----------------------------------------


@pytest.fixture(scope="session")
def stack():
    from stack import Stack

    with Stack() as running:
        yield running


class LogCapture:
    """Collects the service's JSON log lines, as Lambda would see them."""

    def __init__(self):
        import logging

        import app

        self.lines = []
        self.handler = logging.Handler()
        self.handler.emit = lambda record: self.lines.append(self.handler.format(record))
        self.handler.setFormatter(app.JsonFormatter())
        app.log.addHandler(self.handler)

    @property
    def records(self):
        import json

        return [json.loads(line) for line in self.lines]

    def close(self):
        import app

        app.log.removeHandler(self.handler)


class Service:
    """The handler pointed at the local stack, with helpers to arrange and inspect."""

    def __init__(self, stack, tmp_dir, videos_dir):
        self.stack, self.tmp_dir, self.videos_dir = stack, tmp_dir, videos_dir
        self.s3 = stack.boto3("s3")
        self.env = stack.env

    def add_video(self, code, platform="ig", downloaded=True, extracted=False, video=None, row=True):
        if row:
            self.stack.sql(
                "insert into videos (code, platform, is_downloaded, is_extracted) "
                f"values ('{code}', '{platform}', {downloaded}, {extracted})")
        if video is not None:
            self.s3.upload_file(str(video), self.env["S3_BUCKET_VIDEOS"], f"{platform}/{code}/video.mp4")

    def video_row(self, code, platform="ig"):
        rows = self.stack.sql(
            f"select is_downloaded, is_extracted, frame_count, extracted_at is not null "
            f"from videos where code = '{code}' and platform = '{platform}'")
        return rows[0] if rows else None

    def errors(self):
        """The rows of acknowledged failures (permanent errors, skips)."""
        return self.stack.sql("select code, platform, stage, error, message_id from extraction_errors "
                              "where not retryable order by id")

    def retries(self):
        """The rows of retryable failures: code, stage, attempt, final, error."""
        return self.stack.sql("select code, stage, coalesce(attempt::text, ''), final, error from extraction_errors "
                              "where retryable order by id")

    def frame_keys(self, code=None, platform="ig"):
        prefix = f"{platform}/{code}/" if code else ""
        found = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.env["S3_BUCKET_FRAMES"], Prefix=prefix):
            found += [item["Key"] for item in page.get("Contents", [])]
        return sorted(found)

    def get_frame(self, key):
        return self.s3.get_object(Bucket=self.env["S3_BUCKET_FRAMES"], Key=key)


def sqs_event(*bodies):
    """An SQS event as the Lambda event source mapping delivers it."""
    import json

    records = []
    for i, body in enumerate(bodies):
        text = body if isinstance(body, str) else json.dumps(body)
        records.append({"messageId": f"msg-{i}", "receiptHandle": f"rh-{i}", "body": text,
                        "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
                        "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:frames",
                        "awsRegion": "us-east-1"})
    return {"Records": records}


class FakeContext:
    """The two things the handler reads from Lambda's context object."""

    def __init__(self, remaining_ms=900_000, drop_per_call_ms=0):
        self.remaining, self.drop = remaining_ms, drop_per_call_ms
        self.function_name, self.aws_request_id = "frame-extractor", "req-1"

    def get_remaining_time_in_millis(self):
        self.remaining -= self.drop
        return self.remaining


@pytest.fixture(scope="session")
def clip(tmp_path_factory):
    """Three 30-frame scenes with hard cuts (frames 15, 45, 75 are their middles)."""
    from media import make_video

    path = tmp_path_factory.mktemp("clips") / "three.mp4"
    make_video(path, [30, 30, 30])
    return path


@pytest.fixture
def s3_proxy(service, monkeypatch):
    """A FaultProxy between the service and moto's S3."""
    from faultproxy import FaultProxy

    import app

    proxy = FaultProxy(service.env["AWS_ENDPOINT_URL"])
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    app.reset_clients()
    yield proxy
    proxy.close()
    app.reset_clients()


@pytest.fixture
def logs():
    capture = LogCapture()
    yield capture
    capture.close()


@pytest.fixture
def service(stack, monkeypatch, tmp_path, logs, request):
    """The handler on the local stack, with the service's frame settings (FRAME_PICK=best,
    DETECT_GRADUAL=true: what production runs), or the frame pick a test module
    parametrizes it with (`indirect`)."""
    import app
    import config

    env = stack.env
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(name, env[name])
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    for name in ("SUPABASE_URL", "SUPABASE_KEY", "S3_BUCKET_VIDEOS", "S3_BUCKET_FRAMES"):
        monkeypatch.setattr(config, name, env[name])
    work = tmp_path / "lambda-tmp"
    work.mkdir()
    settings = {"TMP_DIR": str(work), "S3_RETRY_DELAY": 50, "SUPABASE_RETRY_DELAY": 0.05, "S3_RETRIES": 2,
                "SUPABASE_RETRIES": 2, "S3_CONNECT_TIMEOUT": 2.0, "S3_READ_TIMEOUT": 10.0, "SUPABASE_TIMEOUT": 5.0,
                "CONCURRENCY_LIMIT": 2, "MIN_REMAINING_MS": 30000, "MIN_FRAMES": 3, "MAX_FRAMES": 0,
                "SCENE_THRESHOLD": 27.0, "MIN_SCENE_LEN": 15, "ALLOWED_PLATFORMS": (), "DEBUG": False,
                "VIDEOS_TABLE": "videos", "ERRORS_TABLE": "extraction_errors", "MAX_VIDEO_BYTES": 1024**3,
                "MAX_PIXELS": 4096 * 2304, "MAX_DURATION_S": 1800.0, "FRAME_PICK": getattr(request, "param", "best"),
                "FRAME_PICK_WINDOW": 0.3, "DETECT_GRADUAL": True, "DEDUPE_DISTANCE": 6, "MAX_RECEIVES": 5}
    for name, value in settings.items():
        monkeypatch.setattr(config, name, value)
    stack.reset()
    app.reset_clients()
    yield Service(stack, work, tmp_path)
    app.reset_clients()
    assert list(work.iterdir()) == [], "a temp folder was left behind"
    for line in logs.lines:
        assert env["SUPABASE_KEY"] not in line and env["SUPABASE_KEY"].split(".")[2] not in line
