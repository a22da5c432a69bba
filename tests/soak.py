"""A soak through a real queue: messages on moto's SQS, the worker (app.run_worker) doing
what Lambda's event source mapping does, faults injected between the service and S3 and
PostgREST, and poison messages. At the end, every message must be accounted for:

    extracted + recorded permanent errors + dead-lettered == sent, nothing lost.

Run by `python3 test.py soak` (make soak) with 200 messages, and by the test suite with fewer.
"""

import json
import os
import re
import time

from faultproxy import FaultProxy
from media import make_video

SOAK_QUEUE = "soak"
MAX_RECEIVES = 3
VISIBILITY_S = 2
BACKOFF_S = 1  # RETRY_BACKOFF_S for the soak: retries back after 1, 2 s (+-20 %), on the queue's scale


def run_soak(stack, workdir, messages=200, fault_share=0.10, poison_share=0.05, seed=7, log=print):
    import app
    import config

    env = stack.env
    sqs, s3 = stack.boto3("sqs"), stack.boto3("s3")
    queue_url, dlq_url = stack.create_queue(SOAK_QUEUE, VISIBILITY_S, MAX_RECEIVES)

    clip = os.path.join(workdir, "clip.mp4")
    make_video(clip, [12, 12, 12], width=160, height=96, fps=12)
    broken = os.path.join(workdir, "broken.mp4")
    with open(broken, "wb") as fh:
        fh.write(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4000))

    # Every 1/poison_share-th message is poison: alternately a malformed body (which ends
    # in the dead-letter queue) and a broken video (a recorded permanent error).
    poison_every = round(1 / poison_share) if poison_share else 0
    bodies, expected = [], {"extracted": set(), "error": set(), "dead": 0}
    for n in range(messages):
        code = f"soak{n:04d}"
        if poison_every and n % poison_every == poison_every - 1:
            if (n // poison_every) % 2 == 0:
                bodies.append(json.dumps({"shortcode": code + "/../x", "platform": "ig"}))
                expected["dead"] += 1
                continue
            video, outcome = broken, "error"
        else:
            video, outcome = clip, "extracted"
        stack.sql(f"insert into videos (code, platform, is_downloaded, is_extracted) values ('{code}', 'ig', true, false)")
        s3.upload_file(video, env["S3_BUCKET_VIDEOS"], f"ig/{code}/video.mp4")
        bodies.append(json.dumps({"shortcode": code, "platform": "ig"}))
        expected[outcome].add(code)
    for start in range(0, len(bodies), 10):
        sqs.send_message_batch(QueueUrl=queue_url, Entries=[
            {"Id": str(i), "MessageBody": body} for i, body in enumerate(bodies[start:start + 10])])

    s3_proxy, db_proxy = FaultProxy(env["AWS_ENDPOINT_URL"], seed=seed), FaultProxy(env["SUPABASE_URL"], seed=seed + 1)
    s3_proxy.fail_share(fault_share, ("status", 503))
    db_proxy.fail_share(fault_share / 2, ("status", 503))
    saved_env = os.environ.get("AWS_ENDPOINT_URL")
    saved_url, saved_backoff = config.SUPABASE_URL, config.RETRY_BACKOFF_S
    os.environ["AWS_ENDPOINT_URL"] = s3_proxy.url
    config.SUPABASE_URL, config.RETRY_BACKOFF_S = db_proxy.url, BACKOFF_S
    app.reset_clients()

    def drained():
        attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"]) == 0

    started = time.monotonic()
    try:
        # The worker's own SQS client goes straight to moto: the faults are for the service.
        os.environ["AWS_ENDPOINT_URL_SQS"] = env["AWS_ENDPOINT_URL"]
        app.run_worker(queue_url, batch_size=10, wait_seconds=1, batch_seconds=900,
                       stop=lambda: drained() or time.monotonic() - started > 600)
    finally:
        os.environ.pop("AWS_ENDPOINT_URL_SQS", None)
        if saved_env is None:
            os.environ.pop("AWS_ENDPOINT_URL", None)
        else:
            os.environ["AWS_ENDPOINT_URL"] = saved_env
        config.SUPABASE_URL, config.RETRY_BACKOFF_S = saved_url, saved_backoff
        app.reset_clients()
        s3_proxy.close()
        db_proxy.close()
    seconds = time.monotonic() - started

    extracted = {row[0] for row in stack.sql("select code from videos where is_extracted")}
    errors = {row[0] for row in stack.sql("select distinct code from extraction_errors where not retryable")}
    retry_rows = int(stack.sql("select count(*) from extraction_errors where retryable")[0][0])
    dead = 0
    while True:
        got = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not got:
            break
        dead += len(got)
        sqs.delete_message_batch(QueueUrl=dlq_url, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)])

    wrong_frames = []
    for code in sorted(extracted):
        listing = s3.list_objects_v2(Bucket=env["S3_BUCKET_FRAMES"], Prefix=f"ig/{code}/frames/")
        names = sorted(item["Key"].rsplit("/", 1)[1] for item in listing.get("Contents", []))
        count = int(stack.sql(f"select frame_count from videos where code = '{code}'")[0][0])
        if names != ["0.jpg", "1.jpg", "2.jpg", "manifest.json"] or count != 3:
            wrong_frames.append(code)
    writes = {}
    for method, path, status in s3_proxy.forwarded:
        if method == "PUT" and "/frames/" in path and status == 200:
            writes[path] = writes.get(path, 0) + 1
    rewritten = sum(1 for n in writes.values() if n > 1)
    temp_root = config.TMP_DIR or "/tmp"
    leftovers = [n for n in os.listdir(temp_root) if n.startswith(app.TEMP_PREFIX)]
    with open("/proc/self/status") as fh:
        peak_mib = int(re.search(r"VmHWM:\s+(\d+)", fh.read()).group(1)) / 1024

    report = {
        "sent": messages,
        "extracted": len(extracted),
        "recorded_permanent_errors": len(errors),
        "recorded_retries": retry_rows,
        "dead_lettered": dead,
        "lost": messages - len(extracted) - len(errors) - dead,
        "unexpected_outcomes": sorted((extracted ^ expected["extracted"]) | (errors ^ expected["error"])),
        "expected_dead": expected["dead"],
        "videos_with_wrong_frames": wrong_frames,
        "frame_writes": sum(writes.values()),
        "frame_keys_written_more_than_once": rewritten,
        "faults_injected": {"s3": s3_proxy.injected, "postgrest": db_proxy.injected},
        "requests": {"s3": s3_proxy.requests, "postgrest": db_proxy.requests},
        "temp_folders_left": leftovers,
        "seconds": round(seconds, 1),
        "peak_rss_mib": round(peak_mib),
    }
    for key, value in report.items():
        log(f"{key:>32}: {value}")
    return report


def soak_ok(report):
    return (report["lost"] == 0 and not report["unexpected_outcomes"] and report["dead_lettered"] == report["expected_dead"]
            and not report["videos_with_wrong_frames"] and not report["temp_folders_left"])
