"""Security checks: signatures verified, secrets kept out of logs and out of git."""

import json
import os
import subprocess
import sys
import time
import urllib.request

import boto3
import pytest
from botocore.exceptions import ClientError
from conftest import ROOT, SERVICE_MODULES, FakeContext, sqs_event
from media import make_video

import app


@pytest.fixture
def moto_with_auth(tmp_path):
    """A moto server that checks access keys and request signatures (IAM auth on after the
    first few unauthenticated calls, which create the user and its key)."""
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="3")
    proc = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1)
            break
        except OSError:
            time.sleep(0.05)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def client(service, url, key, secret):
    return boto3.client(service, endpoint_url=url, region_name="us-east-1", aws_access_key_id=key, aws_secret_access_key=secret)


def test_wrong_credentials_are_rejected(moto_with_auth):
    iam = client("iam", moto_with_auth, "bootstrap", "bootstrap")
    iam.create_user(UserName="extractor")
    iam.put_user_policy(UserName="extractor", PolicyName="s3", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    key = iam.create_access_key(UserName="extractor")["AccessKey"]
    good = client("s3", moto_with_auth, key["AccessKeyId"], key["SecretAccessKey"])
    good.create_bucket(Bucket="signed")
    good.put_object(Bucket="signed", Key="ig/a/video.mp4", Body=b"x")
    with pytest.raises(ClientError) as wrong_secret:
        client("s3", moto_with_auth, key["AccessKeyId"], "not-the-secret").get_object(Bucket="signed", Key="ig/a/video.mp4")
    assert wrong_secret.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    with pytest.raises(ClientError) as unknown_key:
        client("s3", moto_with_auth, "AKIAUNKNOWN000000000", "whatever").get_object(Bucket="signed", Key="ig/a/video.mp4")
    assert unknown_key.value.response["Error"]["Code"] == "InvalidAccessKeyId"


def test_no_secret_reaches_the_logs_on_any_path(service, logs, tmp_path, monkeypatch):
    """Success, permanent errors, retryable errors, debug detail: scan every captured line."""
    import config

    monkeypatch.setattr(config, "DEBUG", True)
    app.log.setLevel("DEBUG")
    try:
        make_video(tmp_path / "v.mp4", [20, 20, 20])
        service.add_video("sec1", video=tmp_path / "v.mp4")
        service.add_video("sec2")  # no object: permanent error
        bad = tmp_path / "bad.mp4"
        bad.write_text("nope")
        service.add_video("sec3", video=bad)
        app.lambda_handler(sqs_event({"shortcode": "sec1", "platform": "ig"}, {"shortcode": "sec2", "platform": "ig"},
                                     {"shortcode": "sec3", "platform": "ig"}, "not json"), FakeContext())
        monkeypatch.setattr(config, "SUPABASE_URL", "http://127.0.0.1:9")  # unreachable: retryable
        app.reset_clients()
        app.lambda_handler(sqs_event({"shortcode": "sec1", "platform": "ig"}), FakeContext())
    finally:
        app.log.setLevel("INFO")
    secrets = [service.env["SUPABASE_KEY"], service.env["SUPABASE_KEY"].split(".")[2], service.env["AWS_SECRET_ACCESS_KEY"]]
    assert len(logs.lines) > 8
    for line in logs.lines:
        for secret in secrets:
            assert secret not in line


def test_a_leaked_secret_is_masked_by_the_formatter(service, logs):
    app.emit(20, "oops", value=f"key={service.env['SUPABASE_KEY']}")
    assert service.env["SUPABASE_KEY"] not in logs.lines[-1] and "***" in logs.lines[-1]


def test_dotenv_is_ignored_by_git_and_secrets_are_read_from_the_environment_only():
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=ROOT)
    assert ignored.returncode == 0
    source = "\n".join((ROOT / name).read_text() for name in SERVICE_MODULES)
    assert "aws_secret_access_key=" not in source.lower()  # boto3 finds credentials in the environment itself
    assert 'SUPABASE_KEY = _raw("SUPABASE_KEY", "")' in source
