"""Scene-based video frame extractor: the SQS-triggered Lambda handler and the local CLI.

Each SQS message names one video: {"shortcode": "...", "platform": "..."}. For each,
in this order (one function per stage below):

    validate -> check_status -> download -> extract_frames -> upload -> mark_done

The frame logic itself lives in `extract.py` and touches no cloud. Every message ends
in exactly one fate, decided in one place (`handle_record`):

- extracted, or skipped (already extracted, duplicate in the batch)  -> acknowledged;
- a PermanentError (bad video, missing object, unknown video, not downloaded)
  -> an `extraction_errors` row, then acknowledged;
- a RetryableError (S3 or Supabase unreachable, the Lambda deadline), a malformed
  body, or anything unexpected -> `batchItemFailures`: SQS delivers it again (after a
  back-off the handler sets as the message's visibility timeout; a malformed body at
  once) and, after maxReceiveCount, moves it to the dead-letter queue. Nothing is dropped.

Every record also leaves one metrics line (CloudWatch's embedded metric format).

Run locally: `python3 app.py VIDEO [-o OUT_DIR]` (see `main` at the bottom).
"""

import argparse
import contextlib
import contextvars
import json
import logging
import os
import random
import re
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import config
from extract import CONTENT_TYPES, Settings, VideoError, extract

# --- Errors: a stage and a cause; the type decides the message's fate ----------------------


class StageError(Exception):
    """A record failed at `stage` because of `cause` (a short human sentence)."""

    def __init__(self, stage, cause):
        self.stage, self.cause = stage, str(cause)
        super().__init__(f"{stage}: {cause}")


class PermanentError(StageError):
    """Retrying cannot help: record it in extraction_errors and acknowledge the message."""


class RetryableError(StageError):
    """A passing fault (network, 5xx, timeout, deadline): return the message to SQS."""


class Skip(Exception):
    """Nothing to do for this message; `record` says whether it deserves an error row."""

    def __init__(self, stage, reason, record=False):
        self.stage, self.reason, self.record = stage, reason, record
        super().__init__(reason)


class InvalidMessage(Exception):
    """The body is not a valid request. It cannot be fixed by retrying, but it must not
    vanish either: it goes back to SQS and so, in the end, to the dead-letter queue."""


# --- Structured logs: one JSON line per event, with the record's context ---------------------

_context = {name: contextvars.ContextVar(name, default=None)
            for name in ("request_id", "message_id", "shortcode", "platform", "stage")}
# True on every line of the first record this process handles, false on the others' lines;
# absent outside records. Set with request_id by `_record_context`.
_cold_start = contextvars.ContextVar("cold_start", default=None)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line. The context lives in contextvars, so lines from
    concurrent records never mix up their shortcodes. Known secrets are masked."""

    def format(self, record):
        line = {"ts": round(record.created, 3), "level": record.levelname, "msg": record.getMessage()}
        line.update({name: var.get() for name, var in _context.items()})
        if _cold_start.get() is not None:
            line["cold_start"] = _cold_start.get()
        line.update(getattr(record, "fields", {}))
        if record.exc_info and config.DEBUG:
            line["traceback"] = self.formatException(record.exc_info)
        return _mask(json.dumps(line, default=str))


def _mask(text):
    for secret in (config.SUPABASE_KEY, os.environ.get("AWS_SECRET_ACCESS_KEY"), os.environ.get("AWS_SESSION_TOKEN"),
                   *_secrets_read):
        if secret and len(secret) >= 8:
            text = text.replace(secret, "***")
    return text


log = logging.getLogger("extractor")
if not log.handlers:
    _handler = logging.StreamHandler(sys.stdout)
    _handler.setFormatter(JsonFormatter())
    log.addHandler(_handler)
    log.propagate = False
log.setLevel(logging.DEBUG if config.DEBUG else logging.INFO)


def emit(level, msg, **fields):
    log.log(level, msg, extra={"fields": fields})


def set_stage(stage):
    _context["stage"].set(stage)


# --- Clients: created once per process, imported on first use ------------------------------
# Performance: boto3 and supabase take most of a cold start to import; the local CLI
# never needs them, and the handler pays for them only once.

_clients = {}
_clients_lock = threading.Lock()


def s3():
    with _clients_lock:
        if "s3" not in _clients:
            import boto3
            from botocore.config import Config

            _clients["s3"] = boto3.client("s3", config=Config(
                retries={"total_max_attempts": config.S3_RETRIES, "mode": "standard"},
                connect_timeout=config.S3_CONNECT_TIMEOUT,
                read_timeout=config.S3_READ_TIMEOUT,
                max_pool_connections=max(10, config.UPLOAD_WORKERS * config.CONCURRENCY_LIMIT),
            ))
        return _clients["s3"]


def supabase():
    config.require("SUPABASE_URL", "SUPABASE_KEY")
    key = supabase_key()
    with _clients_lock:
        if "supabase" not in _clients:
            import httpx

            from supabase import ClientOptions, create_client

            # supabase-py truncates a float timeout to an int (and deprecates passing one):
            # give it an httpx client with an httpx.Timeout. Its own retries sleep 1+2+4 s;
            # ours (SUPABASE_RETRIES) are shorter.
            http = httpx.Client(timeout=httpx.Timeout(config.SUPABASE_TIMEOUT), follow_redirects=True)
            options = ClientOptions(httpx_client=http, postgrest_client_retry=False)
            _clients["supabase"] = create_client(config.SUPABASE_URL, key, options)
        return _clients["supabase"]


# Keys read from Secrets Manager: masked in every log line like SUPABASE_KEY. Never emptied.
_secrets_read = []


def supabase_key():
    """The service_role key: SUPABASE_KEY, or else the SecretString of the secret
    SUPABASE_KEY_SECRET names (its name or ARN), read from Secrets Manager once per
    container, so the key need not sit in the function's environment. A failure to read
    it is a misconfiguration (a wrong name, a missing permission) or an outage: a
    RetryableError, logged at ERROR naming SUPABASE_KEY_SECRET, never acknowledged."""
    if config.SUPABASE_KEY:
        return config.SUPABASE_KEY
    with _clients_lock:
        if "supabase_key" not in _clients:
            config.require("SUPABASE_KEY")
            _clients["supabase_key"] = _read_key_secret(config.SUPABASE_KEY_SECRET)
        return _clients["supabase_key"]


def _read_key_secret(secret_id):
    import boto3
    from botocore.config import Config

    client = boto3.client("secretsmanager", config=Config(
        retries={"total_max_attempts": 2, "mode": "standard"},
        connect_timeout=min(5.0, config.SUPABASE_TIMEOUT), read_timeout=config.SUPABASE_TIMEOUT))
    stage = _context["stage"].get() or "config"
    try:
        value = (client.get_secret_value(SecretId=secret_id).get("SecretString") or "").strip()
        problem = None if value else "it has no SecretString"
        if value.startswith("{"):
            problem = "its SecretString is JSON; it must be the service_role key itself"
    except Exception as err:  # any Secrets Manager or network error: the same fate
        problem = _describe(err)
    if problem:
        emit(logging.ERROR, "cannot read the Supabase key from SUPABASE_KEY_SECRET: fix the setting, the secret "
             "or the secretsmanager:GetSecretValue permission", secret=secret_id, error=problem)
        raise RetryableError(stage, f"cannot read the Supabase key from SUPABASE_KEY_SECRET={secret_id}: {problem}")
    _secrets_read.append(value)
    return value


def reset_clients():
    """Forget the clients (tests point the service at another server)."""
    with _clients_lock:
        _clients.clear()


def with_retries(stage, what, call, attempts, delay, permanent=lambda err: None):
    """Run `call()`, retrying passing failures. `permanent(err)` may turn an error into a
    PermanentError message instead (e.g. a 404); anything else left after the last
    attempt becomes a RetryableError. No retry starts inside the Lambda deadline's reserve."""
    for attempt in range(1, attempts + 1):
        if attempt > 1:
            deadline().check(stage)
        try:
            return call()
        except StageError:
            raise
        except Exception as err:  # any library error: classified right here
            reason = permanent(err)
            if reason:
                raise PermanentError(stage, reason) from None
            emit(logging.WARNING, f"{what} failed", attempt=attempt, attempts=attempts, error=_describe(err))
            if attempt == attempts:
                raise RetryableError(stage, f"{what} failed after {attempts} attempts: {_describe(err)}") from None
            time.sleep(delay)


def s3_call(stage, what, call, permanent=lambda err: None):
    return with_retries(stage, what, call, config.S3_RETRIES, config.S3_RETRY_DELAY, permanent)


def db_call(stage, what, call):
    return with_retries(stage, what, call, config.SUPABASE_RETRIES, config.SUPABASE_RETRY_DELAY)


def _describe(err):
    text = str(err) or type(err).__name__
    return f"{type(err).__name__}: {text}"[:500]


def _s3_status(err):
    return getattr(err, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode")


# --- The deadline --------------------------------------------------------------------------


class Deadline:
    """Lambda's remaining time. MIN_REMAINING_MS is kept for cleanup and reporting: no
    record starts, and no decoding goes on, inside it. Without a context: no deadline."""

    def __init__(self, context):
        self.remaining_ms = getattr(context, "get_remaining_time_in_millis", None)

    def expired(self):
        return self.remaining_ms is not None and self.remaining_ms() < config.MIN_REMAINING_MS

    def check(self, stage="extract"):
        if self.expired():
            raise RetryableError(stage, f"less than MIN_REMAINING_MS={config.MIN_REMAINING_MS} ms left before the Lambda timeout")


# The deadline of the record this thread works on (set by handle_record; none elsewhere).
_deadline = contextvars.ContextVar("deadline", default=None)
_NO_DEADLINE = Deadline(None)


def deadline():
    return _deadline.get() or _NO_DEADLINE


# --- Stages ----------------------------------------------------------------------------------

SHORTCODE = re.compile(r"[A-Za-z0-9_-]{1,64}")
PLATFORM = re.compile(r"[a-z0-9_-]{1,32}")
MAX_BODY_BYTES = 4096


def validate(body):
    """Stage 1: parse the body into (shortcode, platform). Both go into S3 keys, so only
    plain ASCII letters, digits, '_' and '-' get through: no '/', '..', spaces or
    look-alike characters."""
    if not isinstance(body, str) or len(body.encode("utf-8", "replace")) > MAX_BODY_BYTES:
        raise InvalidMessage(f"body must be a JSON object of at most {MAX_BODY_BYTES} bytes")
    try:
        data = json.loads(body, object_pairs_hook=_no_duplicate_keys)
    except ValueError as err:
        raise InvalidMessage(f"body is not valid JSON ({str(err)[:80]})") from None
    if not isinstance(data, dict):
        raise InvalidMessage(f"body must be a JSON object, got {type(data).__name__}")
    extra = sorted(set(data) - {"shortcode", "platform"})
    if extra:
        raise InvalidMessage(f"unexpected field(s): {', '.join(extra)[:100]}")
    shortcode, platform = data.get("shortcode"), data.get("platform")
    if not isinstance(shortcode, str) or not SHORTCODE.fullmatch(shortcode):
        raise InvalidMessage("shortcode must be 1-64 characters of A-Z a-z 0-9 _ -")
    if not isinstance(platform, str) or not PLATFORM.fullmatch(platform):
        raise InvalidMessage("platform must be 1-32 characters of a-z 0-9 _ -")
    if config.ALLOWED_PLATFORMS and platform not in config.ALLOWED_PLATFORMS:
        raise InvalidMessage(f"platform {platform!r} is not in ALLOWED_PLATFORMS")
    return shortcode, platform


def _no_duplicate_keys(pairs):
    keys = [key for key, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("duplicate keys")
    return dict(pairs)


def check_status(shortcode, platform):
    """Stage 2: is the video downloaded and not yet extracted?"""
    def read():
        return (supabase().table(config.VIDEOS_TABLE).select("is_downloaded,is_extracted")
                .eq("code", shortcode).eq("platform", platform).limit(1).execute())

    rows = db_call("status", "status read", read).data
    if not rows:
        raise PermanentError("status", f"no row in {config.VIDEOS_TABLE} for this video")
    if rows[0].get("is_extracted"):
        raise Skip("status", "already extracted")
    if not rows[0].get("is_downloaded"):
        raise Skip("status", "video is not downloaded yet", record=True)


def download(shortcode, platform, workdir):
    """Stage 3: fetch `{platform}/{code}/video.mp4` into the record's temp folder, after
    checking its size against MAX_VIDEO_BYTES and the free space there."""
    bucket, key = config.S3_BUCKET_VIDEOS, f"{platform}/{shortcode}/video.mp4"
    path = os.path.join(workdir, "video.mp4")

    def missing(err):
        if _s3_status(err) == 404 or getattr(err, "response", {}).get("Error", {}).get("Code") in ("404", "NoSuchKey", "NoSuchBucket"):
            return f"s3://{bucket}/{key} does not exist"
        return None

    head = s3_call("download", "S3 head_object", lambda: s3().head_object(Bucket=bucket, Key=key), missing)
    size = head["ContentLength"]
    if size > config.MAX_VIDEO_BYTES:
        raise PermanentError("download", f"video is {size} bytes, over MAX_VIDEO_BYTES={config.MAX_VIDEO_BYTES}")
    if size == 0:
        raise PermanentError("download", f"s3://{bucket}/{key} is empty (0 bytes)")
    free = shutil.disk_usage(workdir).free
    if size * 1.5 > free:  # the video plus room for its frames
        raise RetryableError("download", f"not enough temp space: video is {size} bytes, {free} free")

    def fetch():
        s3().download_file(bucket, key, path)
        got = os.path.getsize(path)
        if got != size:
            raise OSError(f"downloaded {got} bytes, expected {size}")

    s3_call("download", "S3 download", fetch, missing)
    emit(logging.DEBUG, "downloaded", bytes=size)
    return path


def settings_from_config(**overrides):
    """The extraction settings of config.py, with the CLI's flags on top."""
    return Settings(**{
        "threshold": config.SCENE_THRESHOLD, "min_scene_len": config.MIN_SCENE_LEN,
        "min_frames": config.MIN_FRAMES, "max_frames": config.MAX_FRAMES, "jpeg_quality": config.JPEG_QUALITY,
        "image_format": config.IMAGE_FORMAT, "max_edge": config.MAX_EDGE,
        "max_pixels": config.MAX_PIXELS, "max_duration_s": config.MAX_DURATION_S,
        "frame_pick": config.FRAME_PICK, "frame_pick_window": config.FRAME_PICK_WINDOW,
        "detect_gradual": config.DETECT_GRADUAL, "dedupe_distance": config.DEDUPE_DISTANCE,
        **overrides,
    })


def extract_frames(video_path, frames_dir):
    """Stage 4: scenes -> JPEGs and manifest.json in `frames_dir` (see extract.py)."""
    try:
        return extract(video_path, frames_dir, settings_from_config(), check=deadline().check, contact_sheet=False)
    except VideoError as err:
        raise PermanentError("extract", err.problem) from None


def upload(shortcode, platform, frames_dir, manifest):
    """Stage 5: put the JPEGs in parallel, then manifest.json, then delete frames that an
    earlier run left with a higher index. The manifest goes last: a reader who finds it
    finds every frame it lists."""
    bucket, prefix = config.S3_BUCKET_FRAMES, f"{platform}/{shortcode}/frames/"

    def put(name, content_type):
        def call():
            with open(os.path.join(frames_dir, name), "rb") as body:
                s3().put_object(Bucket=bucket, Key=prefix + name, Body=body, ContentType=content_type)
        s3_call("upload", f"S3 put {name}", call)

    names = [frame["file"] for frame in manifest["frames"]]
    context = contextvars.copy_context()
    with ThreadPoolExecutor(max_workers=config.UPLOAD_WORKERS) as pool:
        # Each thread runs in a copy of this record's log context.
        futures = [pool.submit(context.copy().run, put, name, CONTENT_TYPES[os.path.splitext(name)[1]]) for name in names]
        for future in futures:
            future.result()
    put("manifest.json", "application/json")

    def stale():
        found, written = [], set(names)
        for page in s3().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                name = item["Key"][len(prefix):]  # a numbered frame of any format, not of this run
                if re.fullmatch(r"\d+\.(?:jpg|webp|png)", name) and name not in written:
                    found.append({"Key": item["Key"]})
        for start in range(0, len(found), 1000):
            s3().delete_objects(Bucket=bucket, Delete={"Objects": found[start:start + 1000], "Quiet": True})
        return len(found)

    removed = s3_call("upload", "S3 stale frame cleanup", stale)
    emit(logging.DEBUG, "uploaded", frames=len(names), stale_removed=removed)


def mark_done(shortcode, platform, frame_count):
    """Stage 6: is_extracted, frame_count, extracted_at. supabase-py answers a PATCH that
    matched no row with an empty list and no error: that is an error here."""
    def update():
        return (supabase().table(config.VIDEOS_TABLE)
                .update({"is_extracted": True, "frame_count": frame_count, "extracted_at": _now()})
                .eq("code", shortcode).eq("platform", platform).execute())

    rows = db_call("mark_done", "status update", update).data
    if not rows:
        raise RetryableError("mark_done", f"the update matched no row in {config.VIDEOS_TABLE} (row deleted, or the key may not update it)")


def record_error(shortcode, platform, stage, error, message_id):
    """Write an extraction_errors row. If this fails, the caller returns the message to
    SQS: an error that was not recorded must not be acknowledged."""
    row = {"code": shortcode, "platform": platform, "stage": stage, "error": error[:2000], "message_id": message_id}
    db_call("record_error", "error row insert", lambda: supabase().table(config.ERRORS_TABLE).insert(row).execute())


def _now():
    return datetime.now(UTC).isoformat()


# --- One record, start to finish ------------------------------------------------------------


def process_video(shortcode, platform):
    """The pipeline for one valid request. Returns the number of frames uploaded."""
    set_stage("status")
    check_status(shortcode, platform)
    workdir = tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-", dir=config.TMP_DIR or None)
    try:
        set_stage("download")
        video_path = download(shortcode, platform, workdir)
        set_stage("extract")
        deadline().check("extract")
        manifest = extract_frames(video_path, os.path.join(workdir, "frames"))
        _video_seconds.set(manifest.get("duration_s"))
        os.remove(video_path)  # Free /tmp space before the upload.
        set_stage("upload")
        deadline().check("upload")
        upload(shortcode, platform, os.path.join(workdir, "frames"), manifest)
        set_stage("mark_done")
        mark_done(shortcode, platform, len(manifest["frames"]))
        return len(manifest["frames"])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def handle_record(record, request, record_deadline, duplicate=False):
    """Run one SQS record and decide its fate. Never raises.

    `request` is what `validate` made of the body: (shortcode, platform), or the
    InvalidMessage it raised."""
    message_id = record.get("messageId")
    _context["message_id"].set(message_id)
    _deadline.set(record_deadline)
    shortcode, platform = request if isinstance(request, tuple) else (None, None)
    _context["shortcode"].set(shortcode)
    _context["platform"].set(platform)
    set_stage("validate")
    started = time.monotonic()
    result = {"message_id": message_id, "shortcode": shortcode, "platform": platform,
              "status": None, "frames": None, "seconds": None, "stage": None, "error": None}

    def finish(status, level, msg, stage=None, error=None, frames=None):
        result.update(status=status, stage=stage, error=error, frames=frames,
                      seconds=round(time.monotonic() - started, 3))
        emit(level, msg, status=status, frames=frames, error=error, seconds=result["seconds"])
        emit_metrics(result)
        return result

    if isinstance(request, InvalidMessage):
        return finish("invalid", logging.ERROR, "malformed message: returned to SQS for the dead-letter queue",
                      stage="validate", error=str(request))
    if duplicate:
        return finish("duplicate", logging.INFO, "duplicate of an earlier record in this batch: skipped")
    try:
        if record_deadline.expired():
            raise RetryableError("start", "too close to the Lambda timeout to start")
        set_stage("start")
        emit(logging.INFO, "started")
        frames = process_video(shortcode, platform)
        return finish("extracted", logging.INFO, "extracted", frames=frames)
    except Skip as skip:
        if skip.record:
            try:
                record_error(shortcode, platform, skip.stage, skip.reason, message_id)
            except RetryableError as err:
                return finish("retry", logging.ERROR, "could not record the skip: retrying", err.stage, err.cause)
        return finish("skipped", logging.INFO, f"skipped: {skip.reason}", stage=skip.stage, error=skip.reason if skip.record else None)
    except PermanentError as err:
        try:
            record_error(shortcode, platform, err.stage, err.cause, message_id)
        except RetryableError as failed:
            return finish("retry", logging.ERROR, "permanent error not recorded: retrying", err.stage,
                          f"{err.cause} (and recording it failed: {failed.cause})")
        return finish("error", logging.ERROR, "permanent error recorded", err.stage, err.cause)
    except RetryableError as err:
        return finish("retry", logging.WARNING, "retryable error: returned to SQS", err.stage, err.cause)
    except Exception as err:  # a bug must not lose the message
        log.exception("unexpected error: returned to SQS", extra={"fields": {"error": _describe(err)}})
        return finish("retry", logging.ERROR, "unexpected error", _context["stage"].get(), _describe(err))


# --- Metrics: CloudWatch's embedded metric format ---------------------------------------------

# The decoded video's duration (manifest duration_s) of the record this thread works on.
_video_seconds = contextvars.ContextVar("video_seconds", default=None)


def emit_metrics(result: dict) -> None:
    """One log line per record in CloudWatch's embedded metric format: CloudWatch Logs
    turns it into the metrics Records (1), Frames, ProcessingSeconds and, once the video
    was decoded, VideoSeconds, by Status and, where the record has one, by Status and
    Stage. No API call, nothing to wait for: the line is the metric.

    The specification's rules this keeps: every metric named under Metrics and every
    dimension key is a top-level member, metric values are numbers, dimension values
    strings, a dimension set has at most 30 keys, Timestamp is epoch milliseconds.
    Performance: by hand, with json and time only; aws-lambda-powertools' Metrics costs
    about 65 ms more at each cold start (README, Operations)."""
    values = {"Records": (1, "Count"), "Frames": (result["frames"] or 0, "Count"),
              "ProcessingSeconds": (result["seconds"], "Seconds")}
    if isinstance(_video_seconds.get(), int | float):
        values["VideoSeconds"] = (_video_seconds.get(), "Seconds")
    dimensions = {"Status": str(result["status"])}
    if result["stage"]:
        dimensions["Stage"] = str(result["stage"])
    directive = {"Namespace": config.METRICS_NAMESPACE,
                 "Dimensions": [["Status"], ["Status", "Stage"]] if "Stage" in dimensions else [["Status"]],
                 "Metrics": [{"Name": name, "Unit": unit} for name, (_, unit) in values.items()]}
    emit(logging.INFO, "metrics", _aws={"Timestamp": int(time.time() * 1000), "CloudWatchMetrics": [directive]},
         **dimensions, **{name: value for name, (value, _) in values.items()})


# --- Back-off through SQS: a retry waits longer each time, a malformed body none -------------

SQS_MAX_VISIBILITY_S = 43200  # SQS's bounds on a visibility timeout: 0 to 12 hours
# One ChangeMessageVisibilityBatch call at worst: one attempt, 1 s to connect, 3 s to answer.
VISIBILITY_CALL_MS = 4000


def receive_count(record: dict) -> int:
    """How many times SQS has delivered this record (1 for the first delivery)."""
    try:
        return max(1, int((record.get("attributes") or {}).get("ApproximateReceiveCount", 1)))
    except (TypeError, ValueError):
        return 1


def backoff_seconds(status: str, receives: int) -> int | None:
    """How long SQS keeps a record hidden before delivering it again: for a retryable
    failure RETRY_BACKOFF_S x 2^(receives - 1), +-20 % so records that failed together do
    not come back together, at most RETRY_BACKOFF_MAX_S (and SQS's 43200 s); 0 for a
    malformed body, which only has to reach the dead-letter queue, so it does within
    seconds instead of after maxReceiveCount visibility timeouts; None for a record that
    is acknowledged."""
    if status == "invalid":
        return 0
    if status != "retry":
        return None
    seconds = config.RETRY_BACKOFF_S * 2 ** min(max(receives, 1) - 1, 30) * random.uniform(0.8, 1.2)
    return int(max(0, min(seconds, config.RETRY_BACKOFF_MAX_S, SQS_MAX_VISIBILITY_S)))


def queue_url_of(arn: str | None) -> str | None:
    """The queue URL of a record's eventSourceARN (arn:PARTITION:sqs:REGION:ACCOUNT:NAME):
    https://sqs.REGION.amazonaws.com/ACCOUNT/NAME, or ENDPOINT/ACCOUNT/NAME when
    AWS_ENDPOINT_URL_SQS or AWS_ENDPOINT_URL points boto3 elsewhere (the local stack: moto
    takes URLs of that shape). No call needed, unlike GetQueueUrl. None for anything else."""
    match = re.fullmatch(r"arn:(aws[a-z-]*):sqs:([a-z0-9-]+):(\d{12}):([A-Za-z0-9_-]{1,80}(?:\.fifo)?)", arn or "")
    if not match:
        return None
    partition, region, account, name = match.groups()
    endpoint = os.environ.get("AWS_ENDPOINT_URL_SQS") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        return f"{endpoint.rstrip('/')}/{account}/{name}"
    domain = "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com"
    return f"https://sqs.{region}.{domain}/{account}/{name}"


def sqs_client(region: str | None = None):
    """The client for visibility changes: one short attempt (a failure only means the
    record comes back after the queue's own visibility timeout)."""
    with _clients_lock:
        if ("sqs", region) not in _clients:
            import boto3
            from botocore.config import Config

            _clients[("sqs", region)] = boto3.client("sqs", region_name=region, config=Config(
                retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=1, read_timeout=3))
        return _clients[("sqs", region)]


def back_off(client, queue_url: str, records: list, results: list, *, batch_deadline: "Deadline") -> None:
    """Set the visibility timeout of every record going back to the queue to its
    `backoff_seconds`, ten per ChangeMessageVisibilityBatch call. Runs after the records,
    inside the MIN_REMAINING_MS reserve (kept for reporting like this), unless less than a
    call's worst case is left. A failed change is logged and changes no record's fate:
    the record still goes back, after the queue's own visibility timeout."""
    entries = [(record, seconds) for record, result in zip(records, results, strict=True)
               if record.get("receiptHandle")
               and (seconds := backoff_seconds(result["status"], receive_count(record))) is not None]
    for start in range(0, len(entries), 10):
        chunk = entries[start:start + 10]
        remaining = batch_deadline.remaining_ms() if batch_deadline.remaining_ms else None
        if remaining is not None and remaining < VISIBILITY_CALL_MS:
            problem = f"only {remaining} ms left before the Lambda timeout"
            failed = {str(i): problem for i in range(len(chunk))}
        else:
            try:
                answer = client.change_message_visibility_batch(QueueUrl=queue_url, Entries=[
                    {"Id": str(i), "ReceiptHandle": record["receiptHandle"], "VisibilityTimeout": seconds}
                    for i, (record, seconds) in enumerate(chunk)])
                failed = {f["Id"]: f"{f.get('Code')}: {f.get('Message')}" for f in answer.get("Failed", [])}
            except Exception as err:  # best effort: the fate is decided already
                failed = {str(i): _describe(err) for i in range(len(chunk))}
        for i, (record, seconds) in enumerate(chunk):
            if str(i) in failed:
                emit(logging.WARNING, "could not change the visibility timeout: the record comes back after the "
                     "queue's own", message_id=record.get("messageId"), visibility_s=seconds, error=failed[str(i)])
            else:
                emit(logging.INFO, "returned to SQS", message_id=record.get("messageId"), visibility_s=seconds,
                     receive_count=receive_count(record))


def _back_off_by_source(records, results, batch_deadline):
    """lambda_handler's back-off: each record on the queue its eventSourceARN names (one,
    under an event source mapping). Records from elsewhere (test.py single) have none."""
    by_arn = {}
    for record, result in zip(records, results, strict=True):
        if queue_url_of(record.get("eventSourceARN")):
            by_arn.setdefault(record["eventSourceARN"], []).append((record, result))
    for arn, pairs in by_arn.items():
        region = arn.split(":")[3]
        back_off(sqs_client(region), queue_url_of(arn), [record for record, _ in pairs], [result for _, result in pairs],
                 batch_deadline=batch_deadline)


# --- The handler -----------------------------------------------------------------------------

TEMP_PREFIX = "extract-"
RETRY_STATUSES = ("retry", "invalid")
_first_record = [True]  # the first record this process handles is its cold start
_first_record_lock = threading.Lock()


def _record_context(request_id):
    """A fresh log context for one record: nothing of another record's, the invocation's
    request id, and cold_start true for the first record of the process only."""
    with _first_record_lock:
        cold, _first_record[0] = _first_record[0], False
    context = contextvars.Context()
    context.run(_context["request_id"].set, request_id)
    context.run(_cold_start.set, cold)
    return context


def lambda_handler(event, context):
    """SQS batch in, partial batch response out.

    Records run CONCURRENCY_LIMIT at a time. Returns {"batchItemFailures": [...],
    "results": [...]}: the failures go back to the queue, everything else is deleted.
    """
    records = [r for r in (event or {}).get("Records", []) if isinstance(r, dict)]
    batch_deadline = Deadline(context)
    request_id = getattr(context, "aws_request_id", None)
    _remove_stale_temp_folders()
    jobs, seen = [], set()
    for record in records:
        try:
            request = validate(record.get("body"))
        except InvalidMessage as err:
            request = err
        jobs.append((record, request, batch_deadline, request in seen))
        if isinstance(request, tuple):
            seen.add(request)

    with ThreadPoolExecutor(max_workers=config.CONCURRENCY_LIMIT) as pool:
        # Each record runs in a fresh log context of its own.
        futures = [pool.submit(_record_context(request_id).run, handle_record, *job) for job in jobs]
        results = [future.result() for future in futures]
    invocation = contextvars.Context()
    invocation.run(_context["request_id"].set, request_id)
    invocation.run(_back_off_by_source, records, results, batch_deadline)
    failures = [{"itemIdentifier": r["message_id"]} for r in results if r["status"] in RETRY_STATUSES]
    return {"batchItemFailures": failures, "results": results}


def _remove_stale_temp_folders():
    """Lambda keeps /tmp between invocations; a killed one may have left its folder.
    Folders are named extract-PID-…: those of this process (no record of it is running
    when a batch starts) and of dead processes go; another live worker's stay."""
    root = config.TMP_DIR or tempfile.gettempdir()
    try:
        names = os.listdir(root)
    except OSError:
        return
    for name in names:
        match = re.fullmatch(re.escape(TEMP_PREFIX) + r"(\d+)-.*", name)
        if match and (int(match.group(1)) == os.getpid() or not _process_alive(int(match.group(1)))):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)


def _process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- Outside Lambda: a worker on the queue --------------------------------------------------


class LocalContext:
    """Lambda's context as far as the handler uses it: `seconds` to go from now."""

    def __init__(self, seconds):
        self.deadline = time.monotonic() + seconds

    def get_remaining_time_in_millis(self):
        return int((self.deadline - time.monotonic()) * 1000)


def run_worker(queue_url, batch_size=10, wait_seconds=5, batch_seconds=900, stop=None):
    """Do what Lambda's SQS event source mapping does, for videos too long for Lambda or
    machines of your own: receive up to `batch_size` messages, run lambda_handler with a
    deadline `batch_seconds` away, delete the acknowledged messages and leave the
    batchItemFailures to reappear after the visibility timeout (and, after the queue's
    maxReceiveCount, to move to its dead-letter queue). Runs until `stop()` is true."""
    import boto3

    sqs = boto3.client("sqs")
    handled = 0
    while not (stop and stop()):
        try:
            messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=batch_size,
                                           WaitTimeSeconds=wait_seconds, AttributeNames=["All"]).get("Messages", [])
            if messages:
                process_batch(sqs, queue_url, messages, batch_seconds)
                handled += len(messages)
        except Exception as err:  # a worker outlives a queue hiccup
            # Messages not deleted come back after their visibility timeout: nothing is lost.
            emit(logging.WARNING, "queue call failed; retrying", error=_describe(err))
            time.sleep(max(1, wait_seconds))
    return handled


def process_batch(sqs, queue_url, messages, batch_seconds=900):
    """One batch of received SQS messages through lambda_handler, as the event source
    mapping hands it over; the acknowledged messages are deleted. Returns the response."""
    event = {"Records": [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                          "attributes": m.get("Attributes", {}), "messageAttributes": {},
                          "eventSource": "aws:sqs"} for m in messages]}
    context = LocalContext(batch_seconds)
    response = lambda_handler(event, context)
    # The records carry no eventSourceARN: the worker backs off on its own queue.
    back_off(sqs, queue_url, event["Records"], response["results"], batch_deadline=Deadline(context))
    failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
    done = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages) if m["MessageId"] not in failed]
    if done:
        sqs.delete_message_batch(QueueUrl=queue_url, Entries=done)
    return response


# --- Local CLI ------------------------------------------------------------------------------


def _number(kind, minimum):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {text}")
        return value
    return parse


def main(argv=None):
    """`python3 app.py VIDEO [-o OUT_DIR]`: the same extraction, on a local file.
    `python3 app.py worker QUEUE_URL`: the service as a long-running worker on a queue."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["worker"]:
        return worker_main(argv[1:])
    parser = argparse.ArgumentParser(prog="app.py", description="Extract one key frame per scene from a video.")
    parser.add_argument("video", help="a video file")
    parser.add_argument("-o", "--out", help="output folder (default: ./frames/<video name>/)")
    parser.add_argument("--threshold", type=_number(float, 0), default=config.SCENE_THRESHOLD,
                        help=f"ContentDetector threshold (default {config.SCENE_THRESHOLD})")
    parser.add_argument("--min-frames", type=_number(int, 1), default=config.MIN_FRAMES,
                        help=f"frames to take evenly when there are fewer scenes (default {config.MIN_FRAMES})")
    parser.add_argument("--max-frames", type=_number(int, 0), default=config.MAX_FRAMES,
                        help=f"keep at most this many frames, 0 for no cap (default {config.MAX_FRAMES})")
    parser.add_argument("--frame-pick", choices=("middle", "best"), default=config.FRAME_PICK,
                        help=f"middle frame of each scene, or the sharpest with content near it (default {config.FRAME_PICK})")
    parser.add_argument("--image-format", choices=("jpeg", "webp", "png"), default=config.IMAGE_FORMAT,
                        help=f"format of the frames written (default {config.IMAGE_FORMAT})")
    parser.add_argument("--max-edge", type=_number(int, 0), default=config.MAX_EDGE,
                        help=f"long side of a frame at most this many pixels, 0 for full size (default {config.MAX_EDGE})")
    args = parser.parse_args(argv)

    out_dir = args.out or os.path.join("frames", os.path.splitext(os.path.basename(args.video))[0])
    settings = settings_from_config(threshold=args.threshold, min_frames=args.min_frames,
                                    max_frames=args.max_frames, frame_pick=args.frame_pick,
                                    image_format=args.image_format, max_edge=args.max_edge)
    started = time.monotonic()
    _remove_numbered_frames(out_dir)
    try:
        with progress_bar() as progress:
            manifest = extract(args.video, out_dir, settings, progress=progress)
    except VideoError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{os.path.basename(args.video)}: {len(manifest['scenes'])} scene(s), "
          f"{len(manifest['frames'])} frame(s) ({manifest['method']}) in {time.monotonic() - started:.1f}s "
          f"-> {out_dir}/ (manifest.json, contact_sheet.jpg)")
    return 0


@contextlib.contextmanager
def progress_bar(stream=None):
    """tqdm's bar (frames, rate, ETA) for the CLI's pass 1, on a terminal only; the core
    just reports `progress(done, total)`. Yields that callback, or None off a terminal."""
    stream = stream or sys.stderr
    if not stream.isatty():
        yield None
        return
    from tqdm import tqdm  # only here: the handler never pays for the import

    with tqdm(total=None, unit="frame", desc="decoding", file=stream) as bar:

        def progress(done, total):
            if total and bar.total != total:
                bar.total = total
            bar.update(done - bar.n)

        yield progress


def worker_main(argv):
    parser = argparse.ArgumentParser(prog="app.py worker", description="Process an SQS queue like Lambda would.")
    parser.add_argument("queue_url", help="the queue's URL")
    parser.add_argument("--batch-size", type=_number(int, 1), default=10, help="messages per batch, 1-10")
    parser.add_argument("--batch-seconds", type=_number(int, 60), default=3600,
                        help="time allowed per batch (Lambda's is 900; a worker may allow more)")
    args = parser.parse_args(argv)
    try:
        config.require("S3_BUCKET_VIDEOS", "S3_BUCKET_FRAMES", "SUPABASE_URL", "SUPABASE_KEY")
    except config.ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    emit(logging.INFO, "worker started", queue=args.queue_url)
    try:
        run_worker(args.queue_url, min(args.batch_size, 10), batch_seconds=args.batch_seconds)
    except KeyboardInterrupt:
        emit(logging.INFO, "worker stopped")
    return 0


def _remove_numbered_frames(out_dir):
    """A rerun with fewer scenes must not leave the old run's extra frames behind."""
    if os.path.isdir(out_dir):
        for name in os.listdir(out_dir):
            if re.fullmatch(r"\d+\.(?:jpg|webp|png)", name):
                os.remove(os.path.join(out_dir, name))


if __name__ == "__main__":
    sys.exit(main())
