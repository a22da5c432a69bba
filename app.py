"""Scene-based video frame extractor: the SQS-triggered Lambda handler and the local CLI.

Each SQS message names one video: {"shortcode": "...", "platform": "..."}. For each,
in this order (one function per stage below):

    validate -> check_status -> download -> extract_frames -> upload -> mark_done

The frame logic itself lives in `extract.py` and touches no cloud. Every message ends
in exactly one fate, decided in one place (`handle_record`):

- extracted, or skipped (already extracted, duplicate in the batch)  -> acknowledged;
- a PermanentError (bad video, missing object, unknown video, not downloaded)
  -> an `extraction_errors` row, then acknowledged;
- a RetryableError (S3 or Supabase unreachable, the Lambda deadline, or a setup to fix:
  a missing bucket, access denied, a rejected key, a missing table or column, a bad
  setting), or anything unexpected -> an `extraction_errors` row where Supabase takes it
  (`retryable`, the receive count as `attempt`, `final` on the last receive), then
  `batchItemFailures`: SQS delivers it again and, after maxReceiveCount (MAX_RECEIVES),
  moves it to the dead-letter queue (after a back-off the handler sets as the message's
  visibility timeout; a malformed body at once);
- a malformed body -> an error log (no trustworthy key to record it under), then
  `batchItemFailures`, and so in the end the dead-letter queue. Nothing is dropped.

Time: no S3 or Supabase attempt starts unless it can end before the MIN_REMAINING_MS
reserve; each runs with its timeouts clamped to the time left and is abandoned when the
reserve is reached (`with_retries`), so the handler returns with at least
MIN_REMAINING_MS - 5 s left whatever S3 does.

Every record also leaves one metrics line (CloudWatch's embedded metric format).

Run locally: `python3 app.py VIDEO [-o OUT_DIR]` (see `main` at the bottom).
"""

import argparse
import contextlib
import contextvars
import json
import logging
import math
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, NamedTuple

try:
    import config

    CONFIG_ERROR = None
except ValueError as _err:  # config.ConfigError: a bad setting, named in the message
    # The CLI and the worker print it and exit 2; the handler fails every record with
    # it as a retryable error (a misconfiguration is never acknowledged).
    config, CONFIG_ERROR = None, str(_err)
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
    """A passing fault (network, 5xx, timeout, deadline) or a setup to fix: return the
    message to SQS. `code` names the cause without the record's details (a whole batch
    failing for one `code` is reported once); `setup` says a person must fix something
    (logged at ERROR with what to fix) rather than wait."""

    def __init__(self, stage, cause, code="retry", setup=False):
        super().__init__(stage, cause)
        self.code, self.setup = code, setup


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
        if record.exc_info and getattr(config, "DEBUG", False):
            line["traceback"] = self.formatException(record.exc_info)
        return _mask(json.dumps(line, default=str))


def _mask(text):
    for secret in (getattr(config, "SUPABASE_KEY", ""), os.environ.get("AWS_SECRET_ACCESS_KEY"),
                   os.environ.get("AWS_SESSION_TOKEN"), *_secrets_read):
        if secret and len(secret) >= 8:
            text = text.replace(secret, "***")
    return text


log = logging.getLogger("extractor")
if not log.handlers:
    _handler = logging.StreamHandler(sys.stdout)
    _handler.setFormatter(JsonFormatter())
    log.addHandler(_handler)
    log.propagate = False
log.setLevel(logging.DEBUG if getattr(config, "DEBUG", False) else logging.INFO)


def emit(level, msg, **fields):
    log.log(level, msg, extra={"fields": fields})


def set_stage(stage):
    _context["stage"].set(stage)


# --- Clients: created once per process, imported on first use ------------------------------
# Performance: boto3 and supabase take most of a cold start to import; the local CLI
# never needs them, and the handler pays for them only once.

_clients = {}
_clients_lock = threading.Lock()


def s3(timeout: float = math.inf):
    """The S3 client for one attempt that may last `timeout` seconds: its connect and read
    timeouts are S3_CONNECT_TIMEOUT and S3_READ_TIMEOUT clamped to that (in whole seconds,
    at least 1). botocore makes one attempt (max_attempts 1): `with_retries` owns the
    retries, so no layer of retries hides under ours.
    Performance: a client costs 19 ms to create; one is kept per clamped pair, and the
    clamping only starts within S3_READ_TIMEOUT of the reserve."""
    limit = max(1.0, math.floor(timeout)) if timeout < math.inf else math.inf
    connect, read = min(config.S3_CONNECT_TIMEOUT, limit), min(config.S3_READ_TIMEOUT, limit)
    with _clients_lock:
        if ("s3", connect, read) not in _clients:
            import boto3
            from botocore.config import Config

            _clients["s3", connect, read] = boto3.client("s3", config=Config(
                retries={"total_max_attempts": 1, "mode": "standard"},
                connect_timeout=connect, read_timeout=read,
                max_pool_connections=max(10, config.UPLOAD_WORKERS * config.CONCURRENCY_LIMIT),
            ))
        return _clients["s3", connect, read]


# The timeout of the Supabase attempt this thread makes (set by with_retries).
_attempt_timeout = contextvars.ContextVar("attempt_timeout", default=None)


def _clamp_request_timeout(request):
    """httpx request hook: the attempt's clamped timeout replaces the client's (httpx reads
    it from the request's documented `timeout` extension)."""
    seconds = _attempt_timeout.get()
    if seconds is not None:
        import httpx

        request.extensions["timeout"] = httpx.Timeout(min(config.SUPABASE_TIMEOUT, seconds)).as_dict()


def supabase():
    """The Supabase database client: postgrest-py's, as supabase-py's `create_client` builds
    it (`Client.table` is `Client.postgrest.from_`): SUPABASE_URL + /rest/v1 with the key as
    `apiKey` and `Authorization: Bearer`, on our httpx client.
    Performance: supabase-py's Client also imports and builds auth, realtime (websockets),
    storage and functions clients the service never uses: 14 MiB of peak RSS and 0.2 s of
    cold start (tests/test_failures.py pins the requests to be the same)."""
    config.require("SUPABASE_URL", "SUPABASE_KEY")
    key = supabase_key()
    with _clients_lock:
        if "supabase" not in _clients:
            import httpx
            from postgrest import SyncPostgrestClient
            from yarl import URL

            url = config.SUPABASE_URL
            if not re.match(r"^(https?)://.+", url):  # supabase-py's own check
                raise config.ConfigError(f"SUPABASE_URL {url!r} is not an http(s) URL: "
                                         "fix SUPABASE_URL (https://<ref>.supabase.co)")
            # An httpx.Timeout (supabase-py truncates a float timeout to an int). No retries in
            # postgrest-py (its own sleep 1+2+4 s); ours (SUPABASE_RETRIES) are shorter.
            http = httpx.Client(timeout=httpx.Timeout(config.SUPABASE_TIMEOUT), follow_redirects=True,
                                event_hooks={"request": [_clamp_request_timeout]})
            try:  # the REST URL as supabase-py's Client makes it (a query or fragment dropped)
                rest = URL(url if url.endswith("/") else url + "/").joinpath("rest", "v1")
                _clients["supabase"] = SyncPostgrestClient(
                    str(rest), headers={"X-Client-Info": _supabase_client_info(), "apiKey": key,
                                        "Authorization": f"Bearer {key}"},
                    http_client=http, retry_enabled=False)
            except ValueError as err:  # a port out of range, an unclosed [IPv6 ...
                raise config.ConfigError(f"SUPABASE_URL {url!r} is not a valid URL ({err}): fix SUPABASE_URL "
                                         "(https://<ref>.supabase.co)") from None
        return _clients["supabase"]


def _supabase_client_info() -> str:
    """The X-Client-Info header supabase-py sends (supabase/lib/client_options.py; postgrest-py
    alone would say postgrest-py), with the installed supabase's version, read from its
    package metadata: importing supabase would import the clients this module leaves out."""
    import importlib.metadata
    import platform

    return (f"supabase-py/{importlib.metadata.version('supabase')}; platform={platform.system()}"
            f"; platform-version={platform.release()}; runtime=python"
            f"; runtime-version={platform.python_version()}")


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


# --- Faults: what a library error means ----------------------------------------------------


class Fault(NamedTuple):
    """What an exception from S3 or Supabase means: `kind` is "permanent" (retrying cannot
    help: record and acknowledge), "setup" (retryable, but a person must fix `reason`) or
    "passing" (retry); `code` names the cause in a few words."""

    kind: str
    code: str
    reason: str


class AttemptAbandoned(TimeoutError):
    """An attempt still running when the time left for it ran out (a trickling answer)."""


S3_PASSING_CODES = {"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "Throttling",
                    "ThrottlingException", "RequestTimeTooSkewed", "OperationAborted", "500", "502", "503", "504"}
S3_CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
                       "TokenRefreshRequired", "InvalidSecurity"}


def s3_fault(err: Exception, *, bucket: str, setting: str) -> Fault:
    """Classify an S3 error. Only a missing key is permanent, and the caller decides that
    (a HEAD's 404 does not say whether the key or the bucket is missing). Everything
    that says the setup is wrong is "setup"; timeouts, resets, 5xx and throttling are
    "passing". botocore's ReadTimeoutError and ConnectTimeoutError carry no response."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        NoCredentialsError,
        NoRegionError,
        ParamValidationError,
        PartialCredentialsError,
    )

    if isinstance(err, ClientError):
        error = err.response.get("Error", {})
        code = str(error.get("Code") or "")
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        if code in S3_PASSING_CODES or status >= 500 or status == 429:
            return Fault("passing", f"S3 {code or status}", _describe(err))
        if code == "NoSuchBucket" or status == 404:  # a missing key's 404 was the caller's to take
            return Fault("setup", "S3 NoSuchBucket", f"bucket {bucket!r} does not exist: fix {setting}")
        if code in S3_CREDENTIAL_CODES:
            return Fault("setup", f"S3 {code}", f"S3 rejected the AWS credentials ({code}): fix the function's role or keys")
        if code in ("AccessDenied", "AllAccessDisabled", "AccountProblem", "403") or status == 403:
            return Fault("setup", "S3 AccessDenied",
                         f"access denied to bucket {bucket!r} ({code or status}): grant the function s3:GetObject, "
                         f"s3:PutObject, s3:DeleteObject and s3:ListBucket as template.yaml does, or fix {setting}")
        if code in ("PermanentRedirect", "AuthorizationHeaderMalformed", "301", "IllegalLocationConstraintException"):
            return Fault("setup", f"S3 {code}", f"bucket {bucket!r} is in another region ({code}): set AWS_REGION to it")
        return Fault("setup", f"S3 {code or status}", f"S3 refused the request ({_describe(err)}): check {setting} and the IAM policy")
    if isinstance(err, NoCredentialsError | PartialCredentialsError):
        return Fault("setup", "S3 no credentials", f"no AWS credentials ({_describe(err)}): give the function a role or set AWS keys")
    if isinstance(err, NoRegionError | ParamValidationError):
        return Fault("setup", f"S3 {type(err).__name__}", f"{_describe(err)}: fix {setting} or AWS_REGION")
    if isinstance(err, BotoCoreError | OSError | AttemptAbandoned):  # timeouts, resets, refused connections
        return Fault("passing", f"S3 {type(err).__name__}", _describe(err))
    return Fault("passing", f"S3 {type(err).__name__}", _describe(err))


def db_fault(err: Exception) -> Fault:
    """Classify a Supabase (PostgREST) error: a rejected key, a role without grants, a
    missing table or column are "setup"; 5xx, timeouts and lost connections "passing"."""
    from postgrest.exceptions import APIError

    if config is not None and isinstance(err, config.ConfigError):
        return Fault("setup", "config", str(err))
    if isinstance(err, APIError):
        code = str(err.code or "")
        text = _describe(err)
        if code.startswith("PGRST3") or code == "401":
            return Fault("setup", f"Supabase {code}", f"Supabase rejected SUPABASE_KEY ({text}): set the project's service_role key")
        if code in ("42501", "403"):
            return Fault("setup", f"Supabase {code}", f"the key's role may not do this ({text}): use the service_role key "
                                                      "and the grants of supabase/migrations")
        if code in ("PGRST205", "42P01", "PGRST106"):
            return Fault("setup", f"Supabase {code}", f"a table is missing ({text}): apply supabase/migrations, "
                                                      "or fix VIDEOS_TABLE / ERRORS_TABLE")
        if code in ("PGRST204", "42703", "PGRST200"):
            return Fault("setup", f"Supabase {code}", f"a column is missing ({text}): apply supabase/migrations")
        if code == "404":
            return Fault("setup", "Supabase 404", f"nothing answers at that path ({text}): fix SUPABASE_URL (https://<ref>.supabase.co)")
        if (code[:1] == "4" and code.isdigit()) or code[:2] in ("22", "23"):
            return Fault("setup", f"Supabase {code}", f"Supabase refused the request ({text}): apply supabase/migrations")
        return Fault("passing", f"Supabase {code or 'error'}", text)
    if type(err).__name__ in ("UnsupportedProtocol", "InvalidURL"):
        return Fault("setup", "Supabase URL", f"{_describe(err)}: fix SUPABASE_URL")
    return Fault("passing", f"Supabase {type(err).__name__}", _describe(err))


# --- Attempts and retries, inside the deadline ---------------------------------------------

MIN_ATTEMPT_S = 1.0  # no attempt starts with less than this left before the reserve


def with_retries(stage: str, what: str, call: Callable[[float], Any], *, attempts: int, delay_s: float,
                 classify: Callable[[Exception], Fault], reporting: bool = False):
    """Run `call(timeout)` up to `attempts` times. Each attempt starts only with at least
    MIN_ATTEMPT_S left before the reserve, gets the time left as `timeout` (the caller
    clamps its own timeouts to it) and is abandoned when that time runs out, whatever
    the server does; no delay is slept that would end inside the reserve. `classify`
    turns a failure into a Fault: "permanent" raises PermanentError, "setup" a
    RetryableError at once (retrying in this invocation cannot fix it), "passing" is
    retried and, after the last attempt, a RetryableError. `reporting` calls (the error
    row) may use REPORT_S of the reserve, and nothing more."""
    for attempt in range(1, attempts + 1):
        left = deadline().seconds_left(reporting=reporting)
        if left < MIN_ATTEMPT_S:
            raise RetryableError(stage, f"{what} not started: {max(left, 0):.1f} s left before the "
                                        f"MIN_REMAINING_MS={config.MIN_REMAINING_MS} ms reserve", code="deadline")
        try:
            return _bounded(left, call)
        except StageError:
            raise
        except Exception as err:  # any library error: classified right here
            fault = classify(err)
            if fault.kind == "permanent":
                raise PermanentError(stage, fault.reason) from None
            if fault.kind == "setup":
                raise RetryableError(stage, f"{what}: {fault.reason}", code=fault.code, setup=True) from None
            emit(logging.WARNING, f"{what} failed", attempt=attempt, attempts=attempts, error=fault.reason)
            if attempt == attempts:
                raise RetryableError(stage, f"{what} failed after {attempts} attempts: {fault.reason}", code=fault.code) from None
            if delay_s + MIN_ATTEMPT_S > deadline().seconds_left(reporting=reporting):
                raise RetryableError(stage, f"{what} failed ({fault.reason}); no time for another attempt before the "
                                            f"MIN_REMAINING_MS={config.MIN_REMAINING_MS} ms reserve", code=fault.code) from None
            time.sleep(delay_s)


def _bounded(seconds: float, call: Callable[[float], Any]):
    """`call(seconds)`, abandoned after `seconds`. Without a deadline it runs right here;
    with one, on a thread of its own (in a copy of this context), which this thread
    stops waiting for when the time is up: a server trickling its answer a byte at a
    time keeps every socket read under its timeout, and only a clock outside the call
    can end it. The abandoned thread ends at its next deadline check or socket timeout.
    Performance: a thread costs about 0.1 ms, next to a network round trip."""
    if seconds == math.inf:
        return call(seconds)
    outcome = {}
    context = contextvars.copy_context()

    def run():
        _attempt_timeout.set(seconds)
        try:
            outcome["value"] = call(seconds)
        except BaseException as err:  # handed to the waiting thread
            outcome["error"] = err

    worker = threading.Thread(target=context.run, args=(run,), daemon=True, name="attempt")
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise AttemptAbandoned(f"no complete answer in {seconds:.1f} s, the time left before the reserve")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def s3_call(stage, what, call, *, bucket, setting, permanent=lambda err: None):
    """An S3 request `call(client)` with our retries; `permanent(err)` may name a missing
    key (a PermanentError message)."""
    def classify(err):
        reason = permanent(err)
        return Fault("permanent", "S3 missing", reason) if reason else s3_fault(err, bucket=bucket, setting=setting)

    return with_retries(stage, what, lambda timeout: call(s3(timeout)), attempts=config.S3_RETRIES,
                        delay_s=config.S3_RETRY_DELAY / 1000, classify=classify)


def db_call(stage, what, call, *, reporting=False):
    return with_retries(stage, what, lambda timeout: call(), attempts=config.SUPABASE_RETRIES,
                        delay_s=config.SUPABASE_RETRY_DELAY, classify=db_fault, reporting=reporting)


def _describe(err):
    text = str(err) or type(err).__name__
    return f"{type(err).__name__}: {text}"[:500]


def _s3_status(err):
    return (getattr(err, "response", None) or {}).get("ResponseMetadata", {}).get("HTTPStatusCode")


# --- The deadline --------------------------------------------------------------------------

REPORT_S = 4.0  # of the reserve, for the error rows: the handler returns with at least
# MIN_REMAINING_MS - 5 s left (the last second for removing temp folders and returning)


class Deadline:
    """Lambda's remaining time. MIN_REMAINING_MS is kept for cleanup and reporting: no
    record starts, no decoding goes on and no S3 or Supabase attempt runs inside it,
    except the error rows, which may use its first REPORT_S. Without a context: none."""

    def __init__(self, context):
        self.remaining_ms = getattr(context, "get_remaining_time_in_millis", None)

    def seconds_left(self, reporting: bool = False) -> float:
        """Seconds until the reserve (or, `reporting`, until REPORT_S into it)."""
        if self.remaining_ms is None:
            return math.inf
        return (self.remaining_ms() - config.MIN_REMAINING_MS) / 1000 + (REPORT_S if reporting else 0)

    def expired(self):
        return self.seconds_left() <= 0

    def check(self, stage="extract"):
        if self.expired():
            raise RetryableError(stage, f"less than MIN_REMAINING_MS={config.MIN_REMAINING_MS} ms left before the Lambda timeout",
                                 code="deadline")


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
    except RecursionError:  # "[[[[...]]]]" within MAX_BODY_BYTES nests deeper than json's C stack allows
        raise InvalidMessage("body nests too deeply to be a request") from None
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


# A read returns only when its chunk is full: the deadline is checked at least this often.
# Performance: 64 KiB chunks cost about 3 us of Python each, 50 ms for a 1 GB video; a
# body trickling at 25 KB/s is checked every 2.6 s.
DOWNLOAD_CHUNK = 64 * 1024


def download(shortcode, platform, workdir):
    """Stage 3: fetch `{platform}/{code}/video.mp4` into the record's temp folder, after
    checking its size against MAX_VIDEO_BYTES and the free space there.

    The body is read in chunks by this code (get_object, not s3transfer's download_file,
    whose own retries and threads run under botocore's and ours with no deadline), so a
    body trickling in is abandoned at the reserve. A 404 is permanent only when the
    bucket exists: a missing bucket is a setting to fix."""
    bucket, key = config.S3_BUCKET_VIDEOS, f"{platform}/{shortcode}/video.mp4"
    path = os.path.join(workdir, "video.mp4")
    where = {"bucket": bucket, "setting": "S3_BUCKET_VIDEOS"}

    def not_found(err):
        code = (getattr(err, "response", None) or {}).get("Error", {}).get("Code")
        return code == "NoSuchKey" or (code in ("404", "NotFound") and _s3_status(err) == 404)

    try:
        head = s3_call("download", "S3 head_object", lambda client: client.head_object(Bucket=bucket, Key=key),
                       permanent=lambda err: "missing" if not_found(err) else None, **where)
    except PermanentError:
        # HEAD answers 404 for a missing bucket too: ask the bucket before acknowledging.
        s3_call("download", "S3 head_bucket", lambda client: client.head_bucket(Bucket=bucket),
                **where)  # a missing bucket: NoSuchBucket (404) -> setup
        raise PermanentError("download", f"s3://{bucket}/{key} does not exist") from None
    size = head["ContentLength"]
    if size > config.MAX_VIDEO_BYTES:
        raise PermanentError("download", f"video is {size} bytes, over MAX_VIDEO_BYTES={config.MAX_VIDEO_BYTES}")
    if size == 0:
        raise PermanentError("download", f"s3://{bucket}/{key} is empty (0 bytes)")
    free = shutil.disk_usage(workdir).free
    if size * 1.5 > free:  # the video plus room for its frames
        raise RetryableError("download", f"not enough temp space: video is {size} bytes, {free} free", code="temp space")

    def fetch(client):
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        try:
            with open(path, "wb") as out:
                for chunk in body.iter_chunks(DOWNLOAD_CHUNK):  # each read waits at most the read timeout
                    deadline().check("download")
                    out.write(chunk)
        finally:
            body.close()
        got = os.path.getsize(path)
        if got != size:
            raise OSError(f"downloaded {got} bytes, expected {size}")

    s3_call("download", "S3 download", fetch,
            permanent=lambda err: f"s3://{bucket}/{key} does not exist" if not_found(err) else None, **where)
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


class _DeadlineReader:
    """A frame file as an upload body: every read first checks the deadline, so a PUT
    the server takes in slowly is abandoned at the reserve. botocore needs read, seek
    and tell (it reads the body once for its checksum, then again to send it)."""

    def __init__(self, fh):
        self.fh = fh

    def read(self, size=-1):
        deadline().check("upload")
        return self.fh.read(size)

    def seek(self, offset, whence=0):
        return self.fh.seek(offset, whence)

    def tell(self):
        return self.fh.tell()


def upload(shortcode, platform, frames_dir, manifest):
    """Stage 5: put the JPEGs in parallel, then manifest.json, then delete frames that an
    earlier run left with a higher index. The manifest goes last: a reader who finds it
    finds every frame it lists. DeleteObjects answers 200 with per-key errors (what S3
    does for AccessDenied): those are failures too."""
    bucket, prefix = config.S3_BUCKET_FRAMES, f"{platform}/{shortcode}/frames/"
    where = {"bucket": bucket, "setting": "S3_BUCKET_FRAMES"}

    def put(name, content_type):
        def call(client):
            with open(os.path.join(frames_dir, name), "rb") as body:
                client.put_object(Bucket=bucket, Key=prefix + name, Body=_DeadlineReader(body), ContentType=content_type)
        s3_call("upload", f"S3 put {name}", call, **where)

    names = [frame["file"] for frame in manifest["frames"]]
    context = contextvars.copy_context()
    with ThreadPoolExecutor(max_workers=config.UPLOAD_WORKERS) as pool:
        # Each thread runs in a copy of this record's log context.
        futures = [pool.submit(context.copy().run, put, name, CONTENT_TYPES[os.path.splitext(name)[1]]) for name in names]
        for future in futures:
            future.result()
    put("manifest.json", "application/json")

    def stale(client):
        found, written = [], set(names)
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                name = item["Key"][len(prefix):]  # a numbered frame of any format, not of this run
                if re.fullmatch(r"\d+\.(?:jpg|webp|png)", name) and name not in written:
                    found.append({"Key": item["Key"]})
        for start in range(0, len(found), 1000):
            errors = client.delete_objects(Bucket=bucket, Delete={"Objects": found[start:start + 1000], "Quiet": True}).get("Errors")
            if errors:
                codes = sorted({str(e.get("Code")) for e in errors})
                setup = set(codes) <= {"AccessDenied", "AllAccessDisabled"}
                raise RetryableError("upload", f"{len(errors)} stale frame(s) not deleted ({', '.join(codes)}: "
                                               f"{errors[0].get('Key')}: {errors[0].get('Message')})"
                                     + (": grant the function s3:DeleteObject on S3_BUCKET_FRAMES" if setup else ""),
                                     code=f"S3 DeleteObjects {codes[0]}", setup=setup)
        return len(found)

    removed = s3_call("upload", "S3 stale frame cleanup", stale, **where)
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


def record_error(shortcode, platform, stage, error, message_id, *, retryable=False, attempt=None, final=True):
    """Write an extraction_errors row: `retryable` (SQS delivers the message again unless
    `final`), `attempt` (SQS's receive count). For a permanent error, a failure here
    makes the caller return the message to SQS: an error not recorded must not be
    acknowledged. The row of a retryable error is best effort and may use REPORT_S of
    the reserve (`reporting`): when Supabase is down, the log line is the record."""
    row = {"code": shortcode, "platform": platform, "stage": stage, "error": error[:2000], "message_id": message_id,
           "retryable": retryable, "attempt": attempt, "final": final}
    db_call("record_error", "error row insert", lambda: supabase().table(config.ERRORS_TABLE).insert(row).execute(),
            reporting=True)


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


def receive_count(record) -> int | None:
    """SQS's ApproximateReceiveCount of the record (None outside SQS: test.py single)."""
    try:
        return int((record.get("attributes") or {}).get("ApproximateReceiveCount"))
    except (TypeError, ValueError):
        return None


def handle_record(record, request, record_deadline, duplicate=False):
    """Run one SQS record and decide its fate. Never raises.

    `request` is what `validate` made of the body: (shortcode, platform), or the
    InvalidMessage it raised. Every failure of a valid request is recorded in
    extraction_errors: a permanent one must be (or the message goes back to SQS), a
    retryable one is best effort, with the receive count and whether it was the last
    receive before the dead-letter queue (MAX_RECEIVES)."""
    message_id = record.get("messageId")
    _context["message_id"].set(message_id)
    _deadline.set(record_deadline)
    shortcode, platform = request if isinstance(request, tuple) else (None, None)
    _context["shortcode"].set(shortcode)
    _context["platform"].set(platform)
    set_stage("validate")
    started = time.monotonic()
    attempt = receive_count(record)
    last = attempt is not None and attempt >= config.MAX_RECEIVES
    result = {"message_id": message_id, "shortcode": shortcode, "platform": platform,
              "status": None, "frames": None, "seconds": None, "stage": None, "error": None,
              "cause": None, "attempt": attempt}

    def finish(status, level, msg, stage=None, error=None, frames=None, cause=None, **fields):
        result.update(status=status, stage=stage, error=error, frames=frames, cause=cause,
                      seconds=round(time.monotonic() - started, 3))
        emit(level, msg, status=status, frames=frames, error=error, seconds=result["seconds"], **fields)
        emit_metrics(result)
        return result

    def retry(err, msg=None):
        try:
            record_error(shortcode, platform, err.stage, err.cause, message_id, retryable=True, attempt=attempt, final=last)
            recorded = True
        except RetryableError as failed:
            recorded = False
            emit(logging.WARNING, "retryable error not recorded (this line is its record)", error=failed.cause)
        if msg is None:
            msg = ("setup error, fix it: returned to SQS" if err.setup else "retryable error: returned to SQS")
        if last:
            msg += f" for the last time (receive {attempt} of MAX_RECEIVES={config.MAX_RECEIVES}): the dead-letter queue is next"
        level = logging.ERROR if err.setup or last or msg == "unexpected error" else logging.WARNING
        return finish("retry", level, msg, err.stage, err.cause, cause=err.code, recorded=recorded, attempt=attempt,
                      sqs_will_retry=not last)

    if isinstance(request, InvalidMessage):
        return finish("invalid", logging.ERROR, "malformed message: returned to SQS for the dead-letter queue",
                      stage="validate", error=str(request), cause="malformed")
    if duplicate:
        return finish("duplicate", logging.INFO, "duplicate of an earlier record in this batch: skipped")
    try:
        if record_deadline.expired():
            raise RetryableError("start", "too close to the Lambda timeout to start", code="deadline")
        set_stage("start")
        emit(logging.INFO, "started")
        frames = process_video(shortcode, platform)
        return finish("extracted", logging.INFO, "extracted", frames=frames)
    except Skip as skip:
        if skip.record:
            try:
                record_error(shortcode, platform, skip.stage, skip.reason, message_id, attempt=attempt)
            except RetryableError as err:
                return finish("retry", logging.ERROR, "could not record the skip: retrying", err.stage, err.cause, cause=err.code)
        return finish("skipped", logging.INFO, f"skipped: {skip.reason}", stage=skip.stage, error=skip.reason if skip.record else None)
    except PermanentError as err:
        try:
            record_error(shortcode, platform, err.stage, err.cause, message_id, attempt=attempt)
        except RetryableError as failed:
            return finish("retry", logging.ERROR, "permanent error not recorded: retrying", err.stage,
                          f"{err.cause} (and recording it failed: {failed.cause})", cause=failed.code)
        return finish("error", logging.ERROR, "permanent error recorded", err.stage, err.cause)
    except RetryableError as err:
        return retry(err)
    except config.ConfigError as err:  # a setting read late (config.require): never acknowledged
        return retry(RetryableError(_context["stage"].get(), str(err), code="config", setup=True))
    except Exception as err:  # a bug must not lose the message
        log.exception("unexpected error: returned to SQS", extra={"fields": {"error": _describe(err)}})
        return retry(RetryableError(_context["stage"].get(), _describe(err), code=type(err).__name__), "unexpected error")


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
    directive = {"Namespace": getattr(config, "METRICS_NAMESPACE", "FrameExtractor"),  # config None: a bad setting
                 "Dimensions": [["Status"], ["Status", "Stage"]] if "Stage" in dimensions else [["Status"]],
                 "Metrics": [{"Name": name, "Unit": unit} for name, (_, unit) in values.items()]}
    emit(logging.INFO, "metrics", _aws={"Timestamp": int(time.time() * 1000), "CloudWatchMetrics": [directive]},
         **dimensions, **{name: value for name, (value, _) in values.items()})


# --- Back-off through SQS: a retry waits longer each time, a malformed body none -------------

SQS_MAX_VISIBILITY_S = 43200  # SQS's bounds on a visibility timeout: 0 to 12 hours
# One ChangeMessageVisibilityBatch call at worst: one attempt, 1 s to connect, 3 s to answer.
VISIBILITY_CALL_MS = 4000


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
    # Rounded, not truncated: SQS takes whole seconds, and int() would fall below -20 %.
    return round(max(0, min(seconds, config.RETRY_BACKOFF_MAX_S, SQS_MAX_VISIBILITY_S)))


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
               and (seconds := backoff_seconds(result["status"], receive_count(record) or 1)) is not None]
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
    request_id = getattr(context, "aws_request_id", None)
    problem = CONFIG_ERROR or _missing_settings()
    if problem:
        return _misconfigured(records, problem, request_id)
    batch_deadline = Deadline(context)
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
    invocation = contextvars.Context()  # the batch's own lines carry its request id too
    invocation.run(_context["request_id"].set, request_id)
    invocation.run(report_batch, results)
    invocation.run(_back_off_by_source, records, results, batch_deadline)
    failures = [{"itemIdentifier": r["message_id"]} for r in results if r["status"] in RETRY_STATUSES]
    return {"batchItemFailures": failures, "results": results}


def report_batch(results):
    """One ERROR line when every record of a batch (two or more) failed for one retryable
    cause: a setup to fix or an outage, not a bad video.

    The handler returns its partial response even then, rather than raising as
    Powertools' BatchProcessor does by default: every message's fate is the same either
    way (the whole batch comes back), but a raise throws the per-record response away
    and makes the Lambda runtime log a stack trace, and AWS documents that with
    ReportBatchItemFailures Lambda does not scale down its polling on failed
    invocations, so the raise would not buy a backoff (see README, Reliability)."""
    causes = {(r["stage"], r["cause"]) for r in results}
    if len(results) >= 2 and len(causes) == 1 and all(r["status"] == "retry" for r in results):
        [(stage, cause)] = causes
        emit(logging.ERROR, f"every record of the batch failed for one cause: {stage}: {cause}",
             records=len(results), failed_stage=stage, cause=cause, error=results[0]["error"])


def _missing_settings():
    """The settings every record needs (SUPABASE_KEY is checked where the client is made)."""
    try:
        config.require("S3_BUCKET_VIDEOS", "S3_BUCKET_FRAMES", "SUPABASE_URL")
    except config.ConfigError as err:
        return str(err)
    return None


def _misconfigured(records, problem, request_id):
    """A bad setting fails every record as retryable, with an ERROR line naming it (and
    its metrics line), each in its record's log context like any other record."""
    results = [_record_context(request_id).run(_misconfigured_record, record, problem) for record in records]
    return {"batchItemFailures": [{"itemIdentifier": r["message_id"]} for r in results], "results": results}


def _misconfigured_record(record, problem):
    _context["message_id"].set(record.get("messageId"))
    emit(logging.ERROR, "configuration error, fix the setting: returned to SQS", status="retry", error=problem)
    result = {"message_id": record.get("messageId"), "shortcode": None, "platform": None, "status": "retry",
              "frames": None, "seconds": 0.0, "stage": "config", "error": problem, "cause": "config",
              "attempt": receive_count(record)}
    emit_metrics(result)
    return result


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
    """Lambda's context as far as the handler uses it: `seconds` to go from now.
    `stop()` moves the deadline to the reserve at once: records in progress stop at
    their next deadline check, go back to SQS and remove their temp folders."""

    def __init__(self, seconds):
        self.deadline = time.monotonic() + seconds

    def get_remaining_time_in_millis(self):
        return int((self.deadline - time.monotonic()) * 1000)

    def stop(self):
        self.deadline = min(self.deadline, time.monotonic() + config.MIN_REMAINING_MS / 1000)


class _Stopping:
    """The worker's stop flag, set by SIGTERM or SIGINT, and the context of the batch in
    progress, which it cuts short."""

    def __init__(self):
        self.requested, self.context = False, None

    def __call__(self):
        return self.requested

    def signal(self, signum, frame):
        self.requested = True
        if self.context is not None:
            self.context.stop()


def run_worker(queue_url, batch_size=10, wait_seconds=5, batch_seconds=900, stop=None):
    """Do what Lambda's SQS event source mapping does, for videos too long for Lambda or
    machines of your own: receive up to `batch_size` messages, run lambda_handler with a
    deadline `batch_seconds` away, delete the acknowledged messages and leave the
    batchItemFailures to reappear after the visibility timeout (and, after the queue's
    maxReceiveCount, to move to its dead-letter queue). Runs until `stop()` is true; a
    `_Stopping` also cuts the batch in progress short, and what it did not finish is
    made visible again at once."""
    import boto3

    sqs = boto3.client("sqs")
    handled = 0
    while not (stop and stop()):
        try:
            messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=batch_size,
                                           WaitTimeSeconds=wait_seconds, AttributeNames=["All"]).get("Messages", [])
            if messages and stop and stop():  # stopped during the long poll: hand them back
                _release(sqs, queue_url, messages)
            elif messages:
                process_batch(sqs, queue_url, messages, batch_seconds, stop=stop)
                handled += len(messages)
        except Exception as err:  # a worker outlives a queue hiccup
            # Messages not deleted come back after their visibility timeout: nothing is lost.
            emit(logging.WARNING, "queue call failed; retrying", error=_describe(err))
            time.sleep(max(1, wait_seconds))
    return handled


def process_batch(sqs, queue_url, messages, batch_seconds=900, stop=None):
    """One batch of received SQS messages through lambda_handler, as the event source
    mapping hands it over; the acknowledged messages are deleted. Returns the response."""
    event = {"Records": [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                          "attributes": m.get("Attributes", {}), "messageAttributes": {},
                          "eventSource": "aws:sqs"} for m in messages]}
    context = LocalContext(batch_seconds)
    if isinstance(stop, _Stopping):
        stop.context = context
    try:
        response = _awake(lambda_handler, event, context)
    finally:
        if isinstance(stop, _Stopping):
            stop.context = None
    if not (isinstance(stop, _Stopping) and stop()):  # stopped: _release below hands them back at once
        # The records carry no eventSourceARN: the worker backs off on its own queue.
        back_off(sqs, queue_url, event["Records"], response["results"], batch_deadline=Deadline(context))
    failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
    done = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages) if m["MessageId"] not in failed]
    if done:
        sqs.delete_message_batch(QueueUrl=queue_url, Entries=done)
    if isinstance(stop, _Stopping) and stop():  # interrupted: what was not finished goes back to the queue now
        _release(sqs, queue_url, [m for m in messages if m["MessageId"] in failed])
    return response


def _awake(function, *args):
    """`function(*args)` on a thread of its own while this (the main) thread wakes twice a
    second: the kernel may hand SIGTERM to any thread, and Python runs the handler only
    on the main thread, when it next runs code; asleep in a plain wait for the batch, it
    would run it only after the batch ended."""
    with ThreadPoolExecutor(max_workers=1) as one:
        future = one.submit(contextvars.copy_context().run, function, *args)
        while True:
            try:
                return future.result(timeout=0.5)
            except TimeoutError:
                continue


def _release(sqs, queue_url, messages):
    """Make messages visible again at once (visibility timeout 0)."""
    entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0} for i, m in enumerate(messages)]
    if entries:
        sqs.change_message_visibility_batch(QueueUrl=queue_url, Entries=entries)
        emit(logging.INFO, "stopping: messages handed back to the queue", messages=len(entries))


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
    if CONFIG_ERROR:
        print(f"error: {CONFIG_ERROR}", file=sys.stderr)
        return 2
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
    parser.add_argument("--batch-seconds", type=_number(int, 1), default=3600,
                        help="time allowed per batch, more than the MIN_REMAINING_MS reserve (Lambda's is 900; a worker may allow more)")
    args = parser.parse_args(argv)
    if args.batch_seconds * 1000 <= config.MIN_REMAINING_MS:
        print(f"error: --batch-seconds {args.batch_seconds} must be more than the MIN_REMAINING_MS={config.MIN_REMAINING_MS} ms "
              "reserve, or no record would ever start", file=sys.stderr)
        return 2
    try:
        config.require("S3_BUCKET_VIDEOS", "S3_BUCKET_FRAMES", "SUPABASE_URL", "SUPABASE_KEY")
    except config.ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    stop = _Stopping()
    signal.signal(signal.SIGTERM, stop.signal)
    signal.signal(signal.SIGINT, stop.signal)
    emit(logging.INFO, "worker started", queue=args.queue_url)
    run_worker(args.queue_url, min(args.batch_size, 10), batch_seconds=args.batch_seconds, stop=stop)
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
