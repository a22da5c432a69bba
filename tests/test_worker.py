"""`app.py worker` as a real subprocess on moto's SQS: SIGTERM stops it gracefully."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT
from faultproxy import FaultProxy
from media import make_video


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("worker") / "long.mp4"
    make_video(path, [100, 100, 100], width=640, height=360)
    return path


def test_sigterm_mid_record_hands_it_back_to_the_queue_and_cleans_up(service, long_clip):
    stack = service.stack
    queue, _ = stack.create_queue("sigterm", visibility_s=30, max_receives=5)
    sqs = stack.boto3("sqs")
    service.add_video("term1", video=long_clip)
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"shortcode": "term1", "platform": "ig"}))
    # The video trickles in at 20 KB/s, so the record is surely in progress when SIGTERM lands.
    proxy = FaultProxy(service.env["AWS_ENDPOINT_URL"])
    proxy.match, proxy.method = "/video.mp4", "GET"
    proxy.trickle_next(10, 20_000)
    env = dict(os.environ, **service.env, TMP_DIR=str(service.tmp_dir), PYTHONPATH=str(ROOT))
    env["AWS_ENDPOINT_URL"] = proxy.url
    worker = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "worker", queue, "--batch-seconds", "900"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines = []
    try:
        for line in worker.stdout:
            lines.append(json.loads(line))
            if lines[-1]["msg"] == "started":
                worker.send_signal(signal.SIGTERM)
                break
        out, err = worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
        proxy.close()
    lines += [json.loads(line) for line in out.splitlines()]
    assert worker.returncode == 0 and "Traceback" not in err, err
    assert lines[-1]["msg"] == "worker stopped"
    [result] = [line for line in lines if line.get("status")]
    assert result["status"] == "retry" and "MIN_REMAINING_MS" in result["error"], lines
    assert list(service.tmp_dir.iterdir()) == []  # the record's temp folder is gone
    assert service.video_row("term1")[1] == "f"
    # Visible again at once (the queue's visibility timeout is 30 s), not deleted.
    started = time.monotonic()
    got = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=5, AttributeNames=["All"]).get("Messages", [])
    assert len(got) == 1 and time.monotonic() - started < 5
    assert got[0]["Attributes"]["ApproximateReceiveCount"] == "2"
