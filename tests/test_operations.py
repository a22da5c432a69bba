"""Operating the service: metrics lines (CloudWatch embedded metric format), request ids
and cold starts in the logs, back-off through SQS visibility timeouts (moto's SQS), and
the Supabase key read from Secrets Manager (moto's)."""

import json
import os
import subprocess
import sys
import time

import pytest
from conftest import ROOT, FakeContext, sqs_event
from media import make_video

import app
import config


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clips") / "three.mp4"
    make_video(path, [30, 30, 30])
    return path


def body(code, platform="ig"):
    return {"shortcode": code, "platform": platform}


def metrics_lines(logs):
    return [line for line in logs.records if "_aws" in line]


def assert_conforms_to_emf(line):
    """The rules of CloudWatch's embedded metric format specification this service relies on."""
    meta = line["_aws"]
    assert isinstance(meta["Timestamp"], int) and abs(meta["Timestamp"] - time.time() * 1000) < 600_000
    for directive in meta["CloudWatchMetrics"]:
        assert isinstance(directive["Namespace"], str) and 1 <= len(directive["Namespace"]) <= 1024
        assert set(directive) == {"Namespace", "Dimensions", "Metrics"}
        for dimension_set in directive["Dimensions"]:
            assert 1 <= len(dimension_set) <= 30
            for key in dimension_set:
                assert isinstance(line[key], str) and line[key]  # a top-level string member
        assert 1 <= len(directive["Metrics"]) <= 100
        for metric in directive["Metrics"]:
            assert set(metric) <= {"Name", "Unit", "StorageResolution"}
            value = line[metric["Name"]]  # a top-level numeric member
            assert isinstance(value, int | float) and not isinstance(value, bool)
            assert metric["Unit"] in ("Count", "Seconds")


# --- 1. Metrics -------------------------------------------------------------------------


def test_one_emf_line_per_record_with_status_stage_and_values(service, clip, tmp_path, logs):
    service.add_video("m_ok", video=clip)
    service.add_video("m_missing")  # no object: a recorded permanent error
    response = app.lambda_handler(sqs_event(body("m_ok"), body("m_missing"), "not json", body("m_ok")), FakeContext())
    assert [r["status"] for r in response["results"]] == ["extracted", "error", "invalid", "duplicate"]
    lines = metrics_lines(logs)
    assert sorted(line["message_id"] for line in lines) == ["msg-0", "msg-1", "msg-2", "msg-3"]
    for line in lines:
        assert_conforms_to_emf(line)
        [directive] = line["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "FrameExtractor"
        assert line["Records"] == 1
    by_id = {line["message_id"]: line for line in lines}
    ok, missing, invalid = by_id["msg-0"], by_id["msg-1"], by_id["msg-2"]
    manifest = json.loads(service.get_frame("ig/m_ok/frames/manifest.json")["Body"].read())
    assert (ok["Status"], ok["Frames"], ok["VideoSeconds"]) == ("extracted", 3, manifest["duration_s"])
    assert "Stage" not in ok and ok["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Status"]]
    assert ok["ProcessingSeconds"] == response["results"][0]["seconds"]
    assert [m["Name"] for m in ok["_aws"]["CloudWatchMetrics"][0]["Metrics"]] == \
        ["Records", "Frames", "ProcessingSeconds", "VideoSeconds"]
    assert (missing["Status"], missing["Stage"], missing["Frames"]) == ("error", "download", 0)
    assert missing["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Status"], ["Status", "Stage"]]
    assert "VideoSeconds" not in missing  # never decoded: the duration is unknown, so no metric
    assert "VideoSeconds" not in [m["Name"] for m in missing["_aws"]["CloudWatchMetrics"][0]["Metrics"]]
    assert (invalid["Status"], invalid["Stage"]) == ("invalid", "validate")


def test_metrics_namespace_setting(service, monkeypatch, logs):
    monkeypatch.setattr(config, "METRICS_NAMESPACE", "Video/Frames")
    app.lambda_handler(sqs_event("garbage"), FakeContext())
    [line] = metrics_lines(logs)
    assert line["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Video/Frames"


# --- 2. Request ids and the cold start ----------------------------------------------------


def test_every_line_carries_the_request_id(service, clip, logs):
    service.add_video("rid1", video=clip)
    app.lambda_handler(sqs_event(body("rid1"), "garbage"), FakeContext())
    assert len(logs.records) >= 5
    assert all(line["request_id"] == "req-1" for line in logs.records)
    # Including the handler's own lines after the records: the back-off of the garbage one.
    assert any(line["msg"].startswith("could not change the visibility") for line in logs.records)


def test_outside_lambda_the_request_id_is_null(service, logs):
    app.lambda_handler(sqs_event("garbage"), None)
    assert logs.records and all(line["request_id"] is None for line in logs.records)


COLD_START = """
import json, logging, sys
import app
lines = []
handler = logging.Handler()
handler.emit = lambda record: lines.append(json.loads(handler.format(record)))
handler.setFormatter(app.JsonFormatter())
app.log.addHandler(handler)

class Context:
    aws_request_id = "r-1"
    def get_remaining_time_in_millis(self):
        return 900_000

records = [{"messageId": f"m{i}", "body": "garbage"} for i in range(3)]
app.lambda_handler({"Records": records}, Context())
Context.aws_request_id = "r-2"
app.lambda_handler({"Records": [{"messageId": "m3", "body": "garbage"}]}, Context())
print(json.dumps(lines))
"""


def test_the_first_record_of_a_process_is_its_cold_start():
    run = subprocess.run([sys.executable, "-c", COLD_START], capture_output=True, text=True, cwd=ROOT, timeout=120,
                         env=dict(os.environ, CONCURRENCY_LIMIT="2"))
    assert run.returncode == 0, run.stderr
    lines = json.loads(run.stdout.splitlines()[-1])
    cold = {line["message_id"] for line in lines if line.get("cold_start") is True}
    warm = {line["message_id"] for line in lines if line.get("cold_start") is False}
    assert cold == {"m0"} and warm == {"m1", "m2", "m3"}
    assert all(line["request_id"] == ("r-2" if line["message_id"] == "m3" else "r-1") for line in lines)


# --- 3. Back-off through SQS --------------------------------------------------------------


@pytest.mark.parametrize("receives,low,high", [(1, 48, 72), (2, 96, 144), (3, 192, 288), (6, 1536, 2304), (7, 2457, 3600)])
def test_backoff_doubles_with_each_receive_with_jitter_and_a_cap(monkeypatch, receives, low, high):
    monkeypatch.setattr(config, "RETRY_BACKOFF_S", 60)
    monkeypatch.setattr(config, "RETRY_BACKOFF_MAX_S", 3600)
    seen = {app.backoff_seconds("retry", receives) for _ in range(300)}
    assert min(seen) >= low and max(seen) <= high
    assert len(seen) > 10  # jittered, not one value


@pytest.mark.parametrize("base,receives,allowed", [(1, 1, {1}), (2, 1, {2}), (3, 2, {5, 6, 7})])
def test_backoff_of_a_few_seconds_stays_within_its_jitter(monkeypatch, base, receives, allowed):
    """Whole seconds, rounded: truncating 0.8-1.2 s gave 0 (visible again at once)."""
    monkeypatch.setattr(config, "RETRY_BACKOFF_S", base)
    monkeypatch.setattr(config, "RETRY_BACKOFF_MAX_S", 3600)
    assert {app.backoff_seconds("retry", receives) for _ in range(300)} <= allowed


def test_backoff_limits_and_fates(monkeypatch):
    monkeypatch.setattr(config, "RETRY_BACKOFF_S", 60)
    monkeypatch.setattr(config, "RETRY_BACKOFF_MAX_S", 3600)
    assert {app.backoff_seconds("retry", 20) for _ in range(50)} == {3600}
    assert app.backoff_seconds("invalid", 1) == 0 and app.backoff_seconds("invalid", 4) == 0
    for status in ("extracted", "skipped", "duplicate", "error"):
        assert app.backoff_seconds(status, 1) is None
    monkeypatch.setattr(config, "RETRY_BACKOFF_MAX_S", 43200)
    assert app.backoff_seconds("retry", 10_000) == 43200  # SQS's own limit
    monkeypatch.setattr(config, "RETRY_BACKOFF_S", 0)
    assert app.backoff_seconds("retry", 3) == 0


def test_receive_count_of_a_record():
    assert app.receive_count({"attributes": {"ApproximateReceiveCount": "4"}}) == 4
    assert app.receive_count({}) is None and app.receive_count({"attributes": {"ApproximateReceiveCount": "x"}}) is None


def test_queue_url_of_an_event_source_arn(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_SQS", raising=False)
    assert app.queue_url_of("arn:aws:sqs:eu-west-1:123456789012:videos") == "https://sqs.eu-west-1.amazonaws.com/123456789012/videos"
    assert app.queue_url_of("arn:aws-cn:sqs:cn-north-1:123456789012:v.fifo") == \
        "https://sqs.cn-north-1.amazonaws.com.cn/123456789012/v.fifo"
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5000/")
    assert app.queue_url_of("arn:aws:sqs:us-east-1:123456789012:q") == "http://127.0.0.1:5000/123456789012/q"
    for bad in (None, "", "arn:aws:s3:::bucket", "arn:aws:sqs:us-east-1:123:q", "arn:aws:sqs:us-east-1:123456789012:a/b"):
        assert app.queue_url_of(bad) is None


def _received_event(sqs, url, arn, count):
    """Receive `count` messages and hand them over as the event source mapping would."""
    messages, deadline = [], time.monotonic() + 10
    while len(messages) < count and time.monotonic() < deadline:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, AttributeNames=["All"])
        messages += got.get("Messages", [])
    return {"Records": [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                         "attributes": m["Attributes"], "messageAttributes": {}, "eventSource": "aws:sqs",
                         "eventSourceARN": arn, "awsRegion": "us-east-1"} for m in messages]}


def _wait_for_message(sqs, url, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, AttributeNames=["All"])
        if got.get("Messages"):
            return got["Messages"]
    return []


def test_sqs_brings_a_retry_back_after_the_backoff_and_a_malformed_body_at_once(service, monkeypatch, logs):
    sqs = service.stack.boto3("sqs")
    url, _ = service.stack.create_queue("backoff", visibility_s=60, max_receives=5)
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    monkeypatch.setattr(config, "RETRY_BACKOFF_S", 3)
    service.add_video("bk1")
    monkeypatch.setattr(config, "SUPABASE_URL", "http://127.0.0.1:9")  # Supabase unreachable: retryable
    app.reset_clients()
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(body("bk1")))
    sqs.send_message(QueueUrl=url, MessageBody="not json")
    try:
        event = _received_event(sqs, url, arn, 2)
        started = time.monotonic()
        response = app.lambda_handler(event, FakeContext())
        statuses = {json.loads(r["body"]).get("shortcode") if r["body"] != "not json" else "bad": res["status"]
                    for r, res in zip(event["Records"], response["results"], strict=True)}
        assert statuses == {"bk1": "retry", "bad": "invalid"}
        assert len(response["batchItemFailures"]) == 2  # the fates are unchanged
        # The malformed body is back at once (visibility 0), not after the queue's 60 s.
        [first] = _wait_for_message(sqs, url, 2)
        assert first["Body"] == "not json"
        # The retry comes back after 3 s +-20 %, long before the queue's own 60 s.
        [again] = _wait_for_message(sqs, url, 20)
        assert json.loads(again["Body"]) == body("bk1") and again["Attributes"]["ApproximateReceiveCount"] == "2"
        assert time.monotonic() - started >= 2.0
    finally:
        for queue in (url, url + "-dlq"):
            sqs.delete_queue(QueueUrl=queue)
    returned = {line["message_id"]: line for line in logs.records if line["msg"] == "returned to SQS"}
    assert sorted(line["visibility_s"] for line in returned.values())[0] == 0
    assert 2 <= sorted(line["visibility_s"] for line in returned.values())[1] <= 4


def test_a_failed_visibility_change_is_logged_and_changes_no_fate(service, logs):
    # conftest's events name a queue that does not exist in moto.
    response = app.lambda_handler(sqs_event("garbage", "{}"), FakeContext())
    assert response["batchItemFailures"] == [{"itemIdentifier": "msg-0"}, {"itemIdentifier": "msg-1"}]
    warnings = [line for line in logs.records if line["msg"].startswith("could not change the visibility")]
    assert sorted(line["message_id"] for line in warnings) == ["msg-0", "msg-1"]
    assert all(line["level"] == "WARNING" and line["error"] for line in warnings)


def test_no_visibility_call_when_the_lambda_is_about_to_end(service, logs):
    response = app.lambda_handler(sqs_event("garbage"), FakeContext(remaining_ms=app.VISIBILITY_CALL_MS - 1))
    assert response["batchItemFailures"] == [{"itemIdentifier": "msg-0"}]
    [warning] = [line for line in logs.records if line["msg"].startswith("could not change the visibility")]
    assert "ms left before the Lambda timeout" in warning["error"]


def test_the_worker_backs_off_on_its_own_queue(service, monkeypatch):
    sqs = service.stack.boto3("sqs")
    url, _ = service.stack.create_queue("backoff-worker", visibility_s=60, max_receives=5)
    try:
        sqs.send_message(QueueUrl=url, MessageBody="[1, 2]")
        messages = _wait_for_message(sqs, url, 5)
        response = app.process_batch(sqs, url, messages, batch_seconds=120)
        assert response["results"][0]["status"] == "invalid"
        [back] = _wait_for_message(sqs, url, 2)  # at once, not after 60 s
        assert back["Body"] == "[1, 2]"
    finally:
        for queue in (url, url + "-dlq"):
            sqs.delete_queue(QueueUrl=queue)


# --- 4. The Supabase key in Secrets Manager -------------------------------------------------


@pytest.fixture
def key_secret(service, monkeypatch):
    """The service_role key in moto's Secrets Manager, SUPABASE_KEY empty."""
    secrets = service.stack.boto3("secretsmanager")
    name = f"frames/key-{time.monotonic_ns()}"
    arn = secrets.create_secret(Name=name, SecretString=service.env["SUPABASE_KEY"])["ARN"]
    monkeypatch.setattr(config, "SUPABASE_KEY", "")
    monkeypatch.setattr(config, "SUPABASE_KEY_SECRET", name)
    yield secrets, name, arn
    secrets.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)


def test_the_key_is_read_from_its_secret_once_per_container(service, clip, key_secret, monkeypatch):
    secrets, _, arn = key_secret
    service.add_video("sk1", video=clip)
    service.add_video("sk2", video=clip)
    assert app.lambda_handler(sqs_event(body("sk1")), FakeContext())["results"][0]["status"] == "extracted"
    # The secret changes: this container keeps the key it read.
    secrets.put_secret_value(SecretId=arn, SecretString="not-the-key-any-more")
    assert app.lambda_handler(sqs_event(body("sk2")), FakeContext())["results"][0]["status"] == "extracted"
    # A new container (clients forgotten) reads it again.
    app.reset_clients()
    service.add_video("sk3", video=clip)
    assert app.lambda_handler(sqs_event(body("sk3")), FakeContext())["results"][0]["status"] == "retry"


def test_the_secret_may_be_named_by_its_arn_and_its_key_is_masked(service, clip, key_secret, monkeypatch, logs):
    _, _, arn = key_secret
    monkeypatch.setattr(config, "SUPABASE_KEY_SECRET", arn)
    service.add_video("sk4", video=clip)
    assert app.lambda_handler(sqs_event(body("sk4")), FakeContext())["results"][0]["status"] == "extracted"
    app.emit(20, "oops", value=f"key={service.env['SUPABASE_KEY']}")
    assert service.env["SUPABASE_KEY"] not in logs.lines[-1] and "***" in logs.lines[-1]


def test_supabase_key_wins_over_the_secret(service, clip, key_secret, monkeypatch):
    secrets, _, arn = key_secret
    secrets.put_secret_value(SecretId=arn, SecretString="wrong")
    monkeypatch.setattr(config, "SUPABASE_KEY", service.env["SUPABASE_KEY"])
    service.add_video("sk5", video=clip)
    assert app.lambda_handler(sqs_event(body("sk5")), FakeContext())["results"][0]["status"] == "extracted"


@pytest.mark.parametrize("case", ["missing", "json"])
def test_an_unreadable_secret_is_retried_with_an_error_naming_the_setting(service, clip, key_secret, monkeypatch, logs, case):
    secrets, _, arn = key_secret
    if case == "missing":
        monkeypatch.setattr(config, "SUPABASE_KEY_SECRET", "frames/no-such-secret")
    else:
        secrets.put_secret_value(SecretId=arn, SecretString=json.dumps({"SUPABASE_KEY": service.env["SUPABASE_KEY"]}))
    service.add_video("sk6", video=clip)
    service.add_video("sk7")  # a permanent error that cannot be recorded either
    response = app.lambda_handler(sqs_event(body("sk6"), body("sk7")), FakeContext())
    assert [r["status"] for r in response["results"]] == ["retry", "retry"]
    assert len(response["batchItemFailures"]) == 2  # a misconfiguration is never acknowledged
    assert all("SUPABASE_KEY_SECRET" in r["error"] for r in response["results"])
    errors = [line for line in logs.records if line["level"] == "ERROR" and "SUPABASE_KEY_SECRET" in line["msg"]]
    assert errors and all(line["secret"] == config.SUPABASE_KEY_SECRET for line in errors)
    assert ("ResourceNotFoundException" if case == "missing" else "JSON") in errors[0]["error"]
    assert service.errors() == [] and service.video_row("sk6")[1] == "f"


def test_the_new_settings_are_documented_and_validated(monkeypatch):
    sample, readme = (ROOT / ".env.sample").read_text(), (ROOT / "README.md").read_text()
    for name in ("SUPABASE_KEY_SECRET", "METRICS_NAMESPACE", "RETRY_BACKOFF_S", "RETRY_BACKOFF_MAX_S", "SQS_QUEUE_URL",
                 "FUNCTION_TIMEOUT_S"):
        assert f"\n{name}=" in sample and f"| `{name}` |" in readme
    for name, value in (("RETRY_BACKOFF_S", "-1"), ("RETRY_BACKOFF_MAX_S", "50000"), ("FUNCTION_TIMEOUT_S", "0"),
                        ("METRICS_NAMESPACE", "AWS/Lambda")):
        run = subprocess.run([sys.executable, "-c", "import config"], capture_output=True, text=True, cwd=ROOT,
                             env=dict(os.environ, **{name: value}))
        assert run.returncode == 1 and f"ConfigError: {name} must" in run.stderr
