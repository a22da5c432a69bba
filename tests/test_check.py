"""`python3 test.py check` against the local stack, run as the user runs it: good, and
broken in the ways a `.env` goes wrong."""

import os
import subprocess
import sys
import time
from typing import NamedTuple

import pytest
from conftest import ROOT

from check import key_role


class Checked(NamedTuple):
    status: int
    verdicts: dict  # check name -> "ok" or "FAIL", in the order printed
    lines: dict  # check name -> what it said
    out: str


def check(stack, **settings):
    """Run `python3 test.py check` with the stack's environment and `settings` on top."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("SUPABASE_", "S3_", "SQS_", "AWS_"))}
    env.update(stack.env, FUNCTION_TIMEOUT_S="900", SUPABASE_KEY_SECRET="", SUPABASE_TIMEOUT="5")
    env.update(settings)
    run = subprocess.run([sys.executable, str(ROOT / "test.py"), "check"], capture_output=True, text=True, env=env,
                         timeout=120)
    assert "Traceback" not in run.stdout + run.stderr
    lines = dict(line[6:].split(": ", 1) for line in run.stdout.splitlines())
    verdicts = {line[6:].split(": ", 1)[0]: line[:4].strip() for line in run.stdout.splitlines()}
    return Checked(run.returncode, verdicts, lines, run.stdout)


@pytest.fixture
def queues(stack):
    """A queue as template.yaml makes it, and one without a dead-letter queue or enough visibility."""
    sqs = stack.boto3("sqs")
    tag = time.monotonic_ns()
    good, dlq = stack.create_queue(f"check-good-{tag}", visibility_s=5400, max_receives=5)
    bare = sqs.create_queue(QueueName=f"check-bare-{tag}", Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
    yield good, bare
    for url in (good, dlq, bare):
        sqs.delete_queue(QueueUrl=url)


NAMES = ["settings", "videos bucket", "frames bucket", "supabase", "supabase key", "table videos",
         "table extraction_errors", "queue"]


def frames_bucket_keys(stack):
    return [item["Key"] for item in stack.boto3("s3").list_objects_v2(Bucket=stack.env["S3_BUCKET_FRAMES"]).get("Contents", [])]


def test_a_good_setup_passes_every_check_and_leaves_nothing_behind(stack, queues):
    good, _ = queues
    stack.boto3("s3").put_object(Bucket=stack.env["S3_BUCKET_FRAMES"], Key="ig/keep/frames/0.jpg", Body=b"x")
    before = frames_bucket_keys(stack)
    run = check(stack, SQS_QUEUE_URL=good)
    assert run.status == 0, run.out
    assert list(run.verdicts) == NAMES and set(run.verdicts.values()) == {"ok"}
    assert run.lines["supabase key"] == "role service_role (from SUPABASE_KEY)"
    assert "visibility timeout of 5400 s >= 6 x FUNCTION_TIMEOUT_S (900 s)" in run.lines["queue"]
    assert frames_bucket_keys(stack) == before  # the probe was put and deleted, nothing else touched
    stack.reset()


def test_without_a_queue_url_the_queue_is_not_checked(stack):
    run = check(stack, SQS_QUEUE_URL="")
    assert run.status == 0, run.out
    assert run.lines["queue"] == "SQS_QUEUE_URL is not set: not checked"


def test_wrong_bucket_anon_key_and_a_bare_queue_each_fail_naming_the_setting(stack, queues):
    _, bare = queues
    run = check(stack, S3_BUCKET_VIDEOS="no-such-videos", SUPABASE_KEY=stack.key("anon"),
                                         SQS_QUEUE_URL=bare)
    assert run.status == 1
    assert list(run.verdicts) == NAMES
    assert {name for name, verdict in run.verdicts.items() if verdict == "FAIL"} == \
        {"videos bucket", "supabase key", "table videos", "table extraction_errors", "queue"}
    assert run.lines["videos bucket"] == "s3://no-such-videos does not exist: fix S3_BUCKET_VIDEOS"
    assert run.lines["supabase key"].startswith("the key's role is anon, not service_role: fix SUPABASE_KEY")
    assert "permission denied for table videos" in run.lines["table videos"] and "SUPABASE_KEY" in run.lines["table videos"]
    assert "has no redrive policy" in run.lines["queue"]
    assert "visibility timeout 30 s is below 6 x FUNCTION_TIMEOUT_S = 5400 s" in run.lines["queue"]


def test_frames_bucket_and_supabase_unreachable_and_short_visibility(stack, queues):
    good, _ = queues
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    run = check(stack, S3_BUCKET_FRAMES="no-such-frames", SUPABASE_URL=f"http://127.0.0.1:{closed}",
                                         SQS_QUEUE_URL=good, FUNCTION_TIMEOUT_S="901", SUPABASE_RETRIES="1")
    assert run.status == 1
    assert run.verdicts["videos bucket"] == "ok" and run.verdicts["supabase key"] == "ok"  # the key itself is right
    assert run.lines["frames bucket"] == "s3://no-such-frames does not exist: fix S3_BUCKET_FRAMES"
    assert "does not answer" in run.lines["supabase"] and run.lines["supabase"].endswith("fix SUPABASE_URL")
    assert run.verdicts["table videos"] == "FAIL"
    assert run.lines["queue"].endswith("visibility timeout 5400 s is below 6 x FUNCTION_TIMEOUT_S = 5406 s: "
                                   "fix the queue, SQS_QUEUE_URL or FUNCTION_TIMEOUT_S")


def test_a_missing_column_fails_its_table(stack):
    stack.sql("alter table public.extraction_errors rename column message_id to message_ref")
    try:
        run = check(stack, SQS_QUEUE_URL="")
    finally:
        stack.sql("alter table public.extraction_errors rename column message_ref to message_id")
    assert run.status == 1
    assert [name for name, verdict in run.verdicts.items() if verdict == "FAIL"] == ["table extraction_errors"]
    assert "message_id" in run.lines["table extraction_errors"] and "apply supabase/migrations" in run.lines["table extraction_errors"]


def test_the_key_from_its_secret_and_a_missing_secret(stack):
    secrets = stack.boto3("secretsmanager")
    arn = secrets.create_secret(Name=f"check/key-{time.monotonic_ns()}", SecretString=stack.env["SUPABASE_KEY"])["ARN"]
    try:
        run = check(stack, SUPABASE_KEY="", SUPABASE_KEY_SECRET=arn, SQS_QUEUE_URL="")
        assert run.status == 0, run.out
        assert run.lines["supabase key"] == "role service_role (from SUPABASE_KEY_SECRET)"
        assert stack.env["SUPABASE_KEY"] not in run.out
        run = check(stack, SUPABASE_KEY="", SUPABASE_KEY_SECRET="no/such/secret", SQS_QUEUE_URL="")
        assert run.status == 1
        assert "SUPABASE_KEY_SECRET=no/such/secret" in run.lines["supabase key"] and "ResourceNotFound" in run.lines["supabase key"]
    finally:
        secrets.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)


def test_a_bad_setting_is_one_line_and_exit_2(stack):
    run = check(stack, RETRY_BACKOFF_S="soon")
    assert run.status == 2
    assert run.out.splitlines() == ["FAIL  settings: RETRY_BACKOFF_S must be a whole number, got 'soon'"]


def test_key_role_reads_the_jwt_payload_without_verifying(stack):
    assert key_role(stack.key()) == "service_role" and key_role(stack.key("anon")) == "anon"
    assert key_role("sb_secret_abcdefghijklmnop") is None  # new-style keys do not say
    assert key_role("sb_publishable_abc") == "publishable"
    for bad in ("plainpassword", "a.b", "a.!!!.c"):
        with pytest.raises(ValueError):
            key_role(bad)


def test_an_http_server_that_is_not_postgrest_fails_the_table_checks(stack):
    """A server answering 200 and `[]` to everything (found by an adversarial run: every
    check said ok): PostgREST sends a Content-Range on a select, it does not."""
    import http.server
    import threading

    class Empty(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"[]")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Empty)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        run = check(stack, SUPABASE_URL=f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
    assert run.status == 1
    assert run.verdicts["table videos"] == "FAIL" and run.verdicts["table extraction_errors"] == "FAIL"
    assert "not as PostgREST does" in run.lines["table videos"] and "SUPABASE_URL" in run.lines["table videos"]
