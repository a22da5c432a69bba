"""Faults between the service and its servers, injected by a real proxy on 127.0.0.1.

Each scenario ends in the documented fate: success without duplicate frames, or the
message back in batchItemFailures with nothing marked done and the temp folder empty.
"""

import time

import pytest
from conftest import FakeContext, sqs_event
from faultproxy import FaultProxy

import app
import config

FRAMES = ["0.jpg", "1.jpg", "2.jpg", "manifest.json"]


@pytest.fixture
def db_proxy(service, monkeypatch):
    proxy = FaultProxy(service.env["SUPABASE_URL"])
    monkeypatch.setattr(config, "SUPABASE_URL", proxy.url)
    app.reset_clients()
    yield proxy
    proxy.close()


def run(code):
    started = time.monotonic()
    response = app.lambda_handler(sqs_event({"shortcode": code, "platform": "ig"}), FakeContext())
    return response, time.monotonic() - started


def assert_extracted(service, response, code):
    assert response["batchItemFailures"] == [], response
    assert service.frame_keys(code) == [f"ig/{code}/frames/{name}" for name in FRAMES]
    assert service.video_row(code) == ["t", "t", "3", "t"]


def assert_retried_and_clean(service, response, code, stage):
    assert response["batchItemFailures"] == [{"itemIdentifier": "msg-0"}], response
    assert response["results"][0]["stage"] == stage
    assert service.video_row(code)[1] == "f"
    assert list(service.tmp_dir.iterdir()) == []


def test_s3_5xx_burst_within_the_retry_budget_succeeds(service, clip, s3_proxy):
    service.add_video("burst", video=clip)
    s3_proxy.fail_next(config.S3_RETRIES - 1, status=503)
    response, _ = run("burst")
    assert_extracted(service, response, "burst")
    assert s3_proxy.injected == config.S3_RETRIES - 1


def test_s3_5xx_that_never_recovers_is_retried_with_nothing_marked(service, clip, s3_proxy):
    service.add_video("down", video=clip)
    s3_proxy.fail_share(1.0, ("status", 500))
    response, seconds = run("down")
    assert_retried_and_clean(service, response, "down", "download")
    assert seconds < config.MIN_REMAINING_MS / 1000
    s3_proxy.clear()
    assert service.frame_keys("down") == []


def test_connection_reset_mid_download_is_retried_within_the_call(service, clip, s3_proxy):
    service.add_video("reset1", video=clip)
    s3_proxy.match = "/video.mp4"
    s3_proxy.pass_next(1)  # the HEAD passes, the GET is reset
    s3_proxy.reset_next(1)
    response, _ = run("reset1")
    assert_extracted(service, response, "reset1")
    assert s3_proxy.injected == 1


def test_connection_reset_mid_upload_is_retried_without_duplicates(service, clip, s3_proxy):
    service.add_video("reset2", video=clip)
    s3_proxy.match = "/frames/"
    s3_proxy.reset_next(2)
    response, _ = run("reset2")
    assert_extracted(service, response, "reset2")


def test_response_slower_than_the_read_timeout_is_retried(service, clip, s3_proxy, monkeypatch):
    monkeypatch.setattr(config, "S3_READ_TIMEOUT", 0.5)
    app.reset_clients()
    service.add_video("slow", video=clip)
    s3_proxy.match = "/video.mp4"
    s3_proxy.delay_next(1, 1.5)
    response, _ = run("slow")
    assert_extracted(service, response, "slow")


def test_postgrest_down_during_the_status_read(service, clip, db_proxy):
    service.add_video("dbread", video=clip)
    db_proxy.fail_share(1.0, ("status", 502))
    response, seconds = run("dbread")
    assert_retried_and_clean(service, response, "dbread", "status")
    assert service.frame_keys("dbread") == []
    assert seconds < config.MIN_REMAINING_MS / 1000


def test_postgrest_down_during_the_final_update_converges_on_retry(service, clip, db_proxy):
    service.add_video("dbupd", video=clip)
    db_proxy.pass_next(1)  # the status read
    db_proxy.fail_next(config.SUPABASE_RETRIES, status=503)  # every attempt of the update
    response, _ = run("dbupd")
    assert_retried_and_clean(service, response, "dbupd", "mark_done")
    assert service.frame_keys("dbupd") == [f"ig/dbupd/frames/{name}" for name in FRAMES]  # uploaded, not marked
    first = {key: service.get_frame(key)["ETag"] for key in service.frame_keys("dbupd")}
    response, _ = run("dbupd")  # SQS delivers it again
    assert_extracted(service, response, "dbupd")
    assert {key: service.get_frame(key)["ETag"] for key in service.frame_keys("dbupd")} == first


def test_error_row_insert_failing_means_retry_not_drop(service, db_proxy):
    service.add_video("norow", row=False)
    db_proxy.pass_next(1)  # the status read finds no row: a permanent error...
    db_proxy.fail_share(1.0, ("status", 503))  # ...which cannot be recorded
    response, _ = run("norow")
    assert response["batchItemFailures"] == [{"itemIdentifier": "msg-0"}]
    assert "recording it failed" in response["results"][0]["error"]
    db_proxy.clear()
    assert service.errors() == []


def test_no_retry_starts_inside_the_deadline_reserve(service, clip, s3_proxy, monkeypatch):
    monkeypatch.setattr(config, "S3_RETRIES", 5)
    monkeypatch.setattr(config, "S3_RETRY_DELAY", 200)
    app.reset_clients()
    service.add_video("reserve", video=clip)
    s3_proxy.fail_share(1.0, ("status", 500))
    # Enough time to start, read the status and try S3 once; each look at the clock then
    # uses up 20 s of it.
    context = FakeContext(remaining_ms=config.MIN_REMAINING_MS + 70_000, drop_per_call_ms=20_000)
    response = app.lambda_handler(sqs_event({"shortcode": "reserve", "platform": "ig"}), context)
    assert_retried_and_clean(service, response, "reserve", "download")
    assert "MIN_REMAINING_MS" in response["results"][0]["error"]
    assert s3_proxy.injected < 5 * 5  # gave up before using every attempt


def test_soak_through_a_real_queue_loses_nothing(stack, service, tmp_path):
    """A short soak (make soak runs 200 messages): faults, poison, redelivery, the DLQ."""
    from soak import run_soak, soak_ok

    report = run_soak(stack, str(tmp_path), messages=40, log=lambda line: None)
    assert soak_ok(report), report
    assert report["extracted"] + report["recorded_permanent_errors"] + report["dead_lettered"] == 40
    assert report["dead_lettered"] == 1 and report["recorded_permanent_errors"] == 1
    assert report["faults_injected"]["s3"] > 0
