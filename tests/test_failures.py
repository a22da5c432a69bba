"""Misconfiguration is never acknowledged, and every failure leaves a row (or, when
Supabase itself is down, a log line): against the local stack and the fault proxy."""

import json
import threading
import time

import pytest
from conftest import FakeContext, sqs_event

import app
import config
from stack import jwt


def run(*codes, receive_count=1):
    event = sqs_event(*[{"shortcode": code, "platform": "ig"} for code in codes])
    for record in event["Records"]:
        record["attributes"]["ApproximateReceiveCount"] = str(receive_count)
    return app.lambda_handler(event, FakeContext())


def assert_setup_error(service, logs, response, stage, *words):
    """Returned to SQS, logged at ERROR with what to fix, a retryable row, no permanent row."""
    [result] = response["results"]
    assert response["batchItemFailures"] == [{"itemIdentifier": "msg-0"}]
    assert (result["status"], result["stage"]) == ("retry", stage), result
    for word in words:
        assert word in result["error"], result["error"]
    [line] = [line for line in logs.records if line.get("status") == "retry"]
    assert line["level"] == "ERROR" and line["msg"].startswith("setup error, fix it")
    assert not any(line["msg"] == "unexpected error" for line in logs.records)
    assert service.errors() == []
    [row] = service.retries()
    assert row[1:4] == [stage, "1", "f"]


def test_a_videos_bucket_that_does_not_exist_is_a_setting_to_fix(service, clip, logs, monkeypatch):
    service.add_video("nob1", video=clip)
    monkeypatch.setattr(config, "S3_BUCKET_VIDEOS", "no-such-bucket")
    assert_setup_error(service, logs, run("nob1"), "download", "'no-such-bucket' does not exist", "S3_BUCKET_VIDEOS")


def test_a_frames_bucket_that_does_not_exist_is_a_setting_to_fix(service, clip, logs, monkeypatch):
    service.add_video("nob2", video=clip)
    monkeypatch.setattr(config, "S3_BUCKET_FRAMES", "no-such-frames")
    assert_setup_error(service, logs, run("nob2"), "upload", "'no-such-frames' does not exist", "S3_BUCKET_FRAMES")
    assert service.video_row("nob2")[1] == "f"


def test_a_missing_key_in_an_existing_bucket_is_the_only_permanent_s3_error(service, logs):
    service.add_video("nokey")
    response = run("nokey")
    assert response["batchItemFailures"] == []
    assert service.errors() == [["nokey", "ig", "download", "s3://local-videos/ig/nokey/video.mp4 does not exist", "msg-0"]]


@pytest.mark.parametrize("method", ["HEAD", "GET"])
def test_access_denied_is_a_setting_to_fix(service, clip, logs, s3_proxy, method):
    service.add_video("denied", video=clip)
    s3_proxy.match, s3_proxy.method = "/video.mp4", method
    body = b"" if method == "HEAD" else (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
                                         b"<Message>Access Denied</Message></Error>")
    s3_proxy.respond_next(5, 403, body)
    assert_setup_error(service, logs, run("denied"), "download", "access denied", "s3:GetObject")
    assert s3_proxy.injected == 1  # not retried within the invocation: it cannot fix itself


def test_a_head_that_times_out_is_retried_not_unexpected(service, clip, logs, s3_proxy, monkeypatch):
    """botocore's ReadTimeoutError has no `response`: it must reach our retries."""
    monkeypatch.setattr(config, "S3_READ_TIMEOUT", 0.5)
    service.add_video("hto", video=clip)
    s3_proxy.match, s3_proxy.method = "/video.mp4", "HEAD"
    s3_proxy.hang_next(config.S3_RETRIES)
    response = run("hto")
    [result] = response["results"]
    assert response["batchItemFailures"] == [{"itemIdentifier": "msg-0"}]
    assert (result["stage"], result["cause"]) == ("download", "S3 ReadTimeoutError"), result
    assert f"failed after {config.S3_RETRIES} attempts" in result["error"]
    assert not any(line["msg"] == "unexpected error" for line in logs.records)
    assert [row[1] for row in service.retries()] == ["download"]


def test_delete_objects_per_key_errors_are_failures(service, clip, logs, s3_proxy):
    service.add_video("stale1", video=clip)
    for n in range(5):
        service.s3.put_object(Bucket=service.env["S3_BUCKET_FRAMES"], Key=f"ig/stale1/frames/{n}.jpg", Body=b"old")
    s3_proxy.match, s3_proxy.method = "?delete", "POST"
    # What S3 answers when the role may not delete: 200, and an error per key.
    errors = "".join(f"<Error><Key>ig/stale1/frames/{n}.jpg</Key><Code>AccessDenied</Code><Message>Access Denied</Message>"
                     "</Error>" for n in (3, 4))
    s3_proxy.respond_next(5, 200, f'<?xml version="1.0" encoding="UTF-8"?><DeleteResult>{errors}</DeleteResult>'.encode())
    assert_setup_error(service, logs, run("stale1"), "upload", "2 stale frame(s) not deleted (AccessDenied", "s3:DeleteObject")
    assert service.video_row("stale1")[1] == "f"  # not marked extracted with stale frames left


def test_a_rejected_supabase_key_is_a_setting_to_fix(service, clip, logs, monkeypatch):
    service.add_video("badkey", video=clip)
    forged = jwt({"role": "service_role", "exp": int(time.time()) + 3600}, "not-the-project-secret")
    monkeypatch.setattr(config, "SUPABASE_KEY", forged)
    app.reset_clients()
    response = run("badkey")
    [result] = response["results"]
    assert response["batchItemFailures"] == [{"itemIdentifier": "msg-0"}]
    assert (result["stage"], result["cause"]) == ("status", "Supabase PGRST301"), result
    assert "SUPABASE_KEY" in result["error"]
    [line] = [line for line in logs.records if line.get("status") == "retry"]
    assert line["level"] == "ERROR"
    assert forged not in "".join(logs.lines)


def test_a_key_without_the_grants_is_a_setting_to_fix(service, clip, logs, monkeypatch):
    service.add_video("anon1", video=clip)
    monkeypatch.setattr(config, "SUPABASE_KEY", service.stack.key("anon"))
    app.reset_clients()
    [result] = run("anon1")["results"]
    assert (result["status"], result["cause"]) == ("retry", "Supabase 42501"), result
    assert "service_role" in result["error"]


def test_a_missing_table_is_a_setting_to_fix(service, clip, logs, monkeypatch):
    service.add_video("notable", video=clip)
    monkeypatch.setattr(config, "VIDEOS_TABLE", "no_such_videos")
    [result] = run("notable")["results"]
    assert (result["status"], result["stage"]) == ("retry", "status")
    # PostgREST 12 answers 42P01 (the relation does not exist), later versions PGRST205.
    assert result["cause"] in ("Supabase 42P01", "Supabase PGRST205") and "apply supabase/migrations" in result["error"], result


def test_a_missing_column_is_a_setting_to_fix(service, logs, monkeypatch):
    """An errors table from before the retryable/attempt/final migration: the permanent
    error cannot be recorded, so it is not acknowledged."""
    stack = service.stack
    stack.sql("create table if not exists public.old_errors (id bigint generated always as identity primary key, "
              "code text, platform text, stage text, error text, message_id text); "
              "grant select, insert on public.old_errors to service_role; notify pgrst, 'reload schema'")
    from postgrest.exceptions import APIError

    for _ in range(100):  # until PostgREST's reloaded schema cache has the table (and not the columns)
        try:
            app.supabase().table("old_errors").insert({"code": "x", "platform": "x", "stage": "x", "error": "x",
                                                       "retryable": False}).execute()
        except APIError as err:
            if err.code in ("PGRST204", "42703"):
                break
        time.sleep(0.1)
    monkeypatch.setattr(config, "ERRORS_TABLE", "old_errors")
    service.add_video("oldcols")  # no S3 object: a permanent error
    try:
        [result] = run("oldcols")["results"]
    finally:
        stack.sql("drop table public.old_errors; notify pgrst, 'reload schema'")
        for _ in range(100):  # the next test finds the schema cache reloaded
            try:
                app.supabase().table("old_errors").select("id").limit(1).execute()
            except APIError as err:
                if err.code in ("42P01", "PGRST205"):
                    break
            time.sleep(0.1)
    assert result["status"] == "retry" and "recording it failed" in result["error"], result
    assert "a column is missing" in result["error"]


def test_a_retryable_failure_is_recorded_with_its_receive_count(service, clip, monkeypatch):
    service.add_video("rc3", video=clip)
    monkeypatch.setattr(config, "S3_BUCKET_VIDEOS", "no-such-bucket")
    response = run("rc3", receive_count=3)
    assert response["batchItemFailures"] == [{"itemIdentifier": "msg-0"}]
    [row] = service.retries()
    assert row[:4] == ["rc3", "download", "3", "f"]  # SQS will try again


def test_the_last_receive_before_the_dead_letter_queue_is_recorded_as_final(service, clip, logs, monkeypatch):
    service.add_video("rc5", video=clip)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # S3 unreachable: a passing fault
    app.reset_clients()
    response = run("rc5", receive_count=config.MAX_RECEIVES)
    assert response["batchItemFailures"] == [{"itemIdentifier": "msg-0"}]  # still returned: SQS moves it
    [row] = service.retries()
    assert row[:4] == ["rc5", "download", str(config.MAX_RECEIVES), "t"]
    [line] = [line for line in logs.records if line.get("status") == "retry"]
    assert line["level"] == "ERROR" and "dead-letter queue is next" in line["msg"] and line["sqs_will_retry"] is False


def test_with_supabase_down_the_log_line_is_the_record(service, clip, logs, monkeypatch):
    service.add_video("dbgone", video=clip)
    monkeypatch.setattr(config, "SUPABASE_URL", "http://127.0.0.1:9")
    app.reset_clients()
    response = run("dbgone")
    assert response["batchItemFailures"] == [{"itemIdentifier": "msg-0"}]
    [line] = [line for line in logs.records if line.get("status") == "retry"]
    assert line["recorded"] is False and line["stage"] == "status" and line["error"]
    assert any(line["msg"].startswith("retryable error not recorded") for line in logs.records)


def test_malformed_bodies_are_logged_not_recorded(service, logs):
    response = app.lambda_handler(sqs_event("not json", json.dumps({"shortcode": "a/b", "platform": "ig"})), FakeContext())
    assert len(response["batchItemFailures"]) == 2
    assert service.stack.sql("select count(*) from extraction_errors") == [["0"]]
    assert sum(line["msg"].startswith("malformed message") for line in logs.records) == 2


def test_a_whole_batch_failing_for_one_cause_is_said_once(service, clip, logs, monkeypatch):
    for code in ("b1", "b2", "b3"):
        service.add_video(code, video=clip)
    monkeypatch.setattr(config, "S3_BUCKET_VIDEOS", "no-such-bucket")
    response = run("b1", "b2", "b3")
    assert len(response["batchItemFailures"]) == 3 and len(response["results"]) == 3  # returned, not raised
    [line] = [line for line in logs.records if line["msg"].startswith("every record of the batch failed")]
    assert line["level"] == "ERROR" and line["records"] == 3 and line["request_id"] == "req-1"
    assert line["msg"] == "every record of the batch failed for one cause: download: S3 NoSuchBucket"


def test_a_batch_failing_for_different_causes_has_no_summary(service, clip, logs, monkeypatch):
    service.add_video("d1", video=clip)  # extracts
    service.add_video("d2")  # missing object: permanent
    run("d1", "d2")
    assert not any(line["msg"].startswith("every record") for line in logs.records)


@pytest.mark.parametrize("shape", ["/", "", "/?a=1", "#frag", "/base", "/base//"])
def test_the_supabase_client_sends_what_supabase_py_sends(monkeypatch, shape):
    """app.supabase() is postgrest-py's client built as supabase-py's create_client builds
    it: each of the service's three requests (the status read, the PATCH, the error row's
    insert) reaches the server the same from both, headers (X-Client-Info too) and body,
    whatever the shape of SUPABASE_URL (a query or fragment is dropped, a path kept, as
    supabase-py does)."""
    import http.server

    import httpx

    from supabase import ClientOptions, create_client

    seen = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def answer(self):
            length = int(self.headers.get("Content-Length") or 0)
            seen.append((self.command, self.path, self.rfile.read(length),
                         {k: self.headers.get(k) for k in ("apiKey", "Authorization", "Content-Type", "Prefer",
                                                           "Accept", "Accept-Profile", "Content-Profile",
                                                           "X-Client-Info", "User-Agent")}))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'[{"code": "x"}]')

        do_GET = do_PATCH = do_POST = answer

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}{shape}"
    monkeypatch.setattr(config, "SUPABASE_URL", url)
    monkeypatch.setattr(config, "SUPABASE_KEY", "service-role-key")
    app.reset_clients()

    def requests(client):
        seen.clear()
        client.table("videos").select("is_downloaded,is_extracted").eq("code", "x").eq("platform", "ig").execute()
        client.table("videos").update({"is_extracted": True, "frame_count": 3}).eq("code", "x").execute()
        client.table("extraction_errors").insert({"code": "x", "error": "boom"}).execute()
        return list(seen)

    try:
        ours = requests(app.supabase())
        theirs = requests(create_client(url, "service-role-key", ClientOptions(postgrest_client_retry=False, httpx_client=httpx.Client())))
    finally:
        server.shutdown()
        app.reset_clients()
    if shape in ("/", ""):
        assert [r[:2] for r in ours] == [
            ("GET", "/rest/v1/videos?select=is_downloaded%2Cis_extracted&code=eq.x&platform=eq.ig"),
            ("PATCH", "/rest/v1/videos?code=eq.x"), ("POST", "/rest/v1/extraction_errors")]
    assert ours[0][3]["apiKey"] == "service-role-key" and ours[0][3]["Authorization"] == "Bearer service-role-key"
    assert ours[0][3]["X-Client-Info"].startswith("supabase-py/2.")
    assert ours == theirs


@pytest.mark.parametrize("url", ["ftp://example.supabase.co", "example.supabase.co", "http://127.0.0.1:99999",
                                 "http://[::1"])
def test_a_supabase_url_that_is_not_a_valid_http_url_is_a_misconfiguration(service, clip, monkeypatch, url):
    service.add_video("badurl", video=clip)
    monkeypatch.setattr(config, "SUPABASE_URL", url)
    app.reset_clients()
    response = run("badurl")
    assert response["batchItemFailures"] == [{"itemIdentifier": "msg-0"}]
    [result] = response["results"]
    assert result["stage"] == "status" and "fix SUPABASE_URL" in result["error"]
    assert service.frame_keys() == [] and service.errors() == []
