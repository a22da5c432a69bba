"""`python3 test.py check`: is the configured setup right, before deploying?

Checks the settings (config.py, `.env`) against the real services, one line per check,
`ok` or what is wrong and which setting to fix:

- the settings import;
- the videos bucket exists and can be read (HeadBucket, ListObjectsV2 of one key);
- the frames bucket accepts a put and a delete under `_check/probe/frames/` (a key the
  function's IAM policy, `*/*/frames/*`, covers) — the one object this writes;
- Supabase answers, the key's role is service_role, and both tables have the columns the
  service reads and writes (a select of those columns, limit 0);
- the queue (SQS_QUEUE_URL, when set) has a redrive policy, and a visibility timeout of at
  least 6 x FUNCTION_TIMEOUT_S, as AWS advises for an SQS event source.

Exit status 0 when every check passes, 1 otherwise, 2 when the settings do not import. No
traceback: every failure is a line. It uses the service's own clients (app.s3,
app.supabase), so the key comes from SUPABASE_KEY_SECRET exactly as in Lambda. Not part
of the Lambda image.
"""

import base64
import json
import sys
from collections.abc import Callable
from typing import NamedTuple

PROBE_KEY = "_check/probe/frames/probe.txt"
# The columns app.py selects, inserts and updates, table by table.
VIDEOS_COLUMNS = ("code", "platform", "is_downloaded", "is_extracted", "frame_count", "extracted_at")
ERRORS_COLUMNS = ("code", "platform", "stage", "error", "message_id", "retryable", "attempt", "final")


class Outcome(NamedTuple):
    """One check's result: `problem` is None when it passed."""

    name: str
    detail: str
    problem: str | None = None


class Failed(Exception):
    """A check found something wrong: what, and which setting to fix."""


def run_checks(out=sys.stdout) -> int:
    """Run every check, print one line each; the exit status."""
    try:
        import app
        import config
    except Exception as err:  # ConfigError above all; no traceback, whatever it is
        print(f"FAIL  settings: {err}", file=out)
        return 2
    print("ok    settings: config.py accepts the environment and .env", file=out)
    app.log.disabled = True  # the lines below say what went wrong; no JSON log lines between them
    checks: list[tuple[str, Callable[[], str]]] = [
        ("videos bucket", lambda: check_videos_bucket(app, config)),
        ("frames bucket", lambda: check_frames_bucket(app, config)),
        ("supabase", lambda: check_supabase_answers(config)),
        ("supabase key", lambda: check_key_role(app)),
        (f"table {config.VIDEOS_TABLE}", lambda: check_columns(app, config.VIDEOS_TABLE, VIDEOS_COLUMNS, "VIDEOS_TABLE")),
        (f"table {config.ERRORS_TABLE}", lambda: check_columns(app, config.ERRORS_TABLE, ERRORS_COLUMNS, "ERRORS_TABLE")),
        ("queue", lambda: check_queue(config)),
    ]
    failures = 0
    for name, check in checks:
        outcome = _run(name, check)
        failures += outcome.problem is not None
        print(f"ok    {name}: {outcome.detail}" if outcome.problem is None else f"FAIL  {name}: {outcome.problem}", file=out)
    return 1 if failures else 0


def _run(name, check):
    try:
        return Outcome(name, check())
    except Failed as err:
        return Outcome(name, "", str(err))
    except Exception as err:  # anything unforeseen is a failed check, never a traceback
        return Outcome(name, "", f"{type(err).__name__}: {str(err)[:300]}")


def _required(config, name):
    value = getattr(config, name)
    if not value:
        raise Failed(f"{name} is not set (see .env.sample)")
    return value


def _aws_problem(err, setting, what):
    """A boto3 error as a sentence naming what to fix."""
    code = str((getattr(err, "response", None) or {}).get("Error", {}).get("Code", ""))  # a timeout's is None
    if code in ("404", "NoSuchBucket"):
        return f"{what} does not exist: fix {setting}"
    if code in ("403", "AccessDenied", "AllAccessDisabled"):
        return f"access to {what} denied: fix {setting} or the credentials' permissions"
    if code in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
        return f"{what} does not exist: fix {setting}"
    if code:
        return f"{what}: {code}: {err}"[:300]
    return f"{what} cannot be reached ({type(err).__name__}: {str(err)[:200]}): check {setting}, AWS_ENDPOINT_URL and the region"


def check_videos_bucket(app, config) -> str:
    bucket = _required(config, "S3_BUCKET_VIDEOS")
    try:
        app.s3().head_bucket(Bucket=bucket)
        app.s3().list_objects_v2(Bucket=bucket, MaxKeys=1)
    except Exception as err:
        raise Failed(_aws_problem(err, "S3_BUCKET_VIDEOS", f"s3://{bucket}")) from None
    return f"s3://{bucket} exists and can be read"


def check_frames_bucket(app, config) -> str:
    bucket = _required(config, "S3_BUCKET_FRAMES")
    try:
        app.s3().put_object(Bucket=bucket, Key=PROBE_KEY, Body=b"written and deleted by python3 test.py check\n",
                            ContentType="text/plain")
        app.s3().delete_object(Bucket=bucket, Key=PROBE_KEY)
    except Exception as err:
        raise Failed(_aws_problem(err, "S3_BUCKET_FRAMES", f"s3://{bucket}")) from None
    return f"s3://{bucket} accepts a put and a delete of {PROBE_KEY}"


def check_supabase_answers(config) -> str:
    import httpx

    url = _required(config, "SUPABASE_URL").rstrip("/")
    try:
        answer = httpx.get(f"{url}/rest/v1/", timeout=config.SUPABASE_TIMEOUT, follow_redirects=True)
    except Exception as err:
        raise Failed(f"{url} does not answer ({type(err).__name__}: {str(err)[:200]}): fix SUPABASE_URL") from None
    if answer.status_code >= 500 or answer.status_code == 404:
        raise Failed(f"{url}/rest/v1/ answers HTTP {answer.status_code}, not as Supabase does: fix SUPABASE_URL")
    return f"{url} answers"


def key_role(key: str) -> str | None:
    """The `role` claim of a JWT API key (its payload decoded, the signature not verified:
    Supabase checks that); None for a new-style `sb_secret_` key, whose role cannot be
    told from the key. Raises ValueError for anything else."""
    if key.startswith("sb_secret_"):
        return None
    if key.startswith("sb_publishable_"):
        return "publishable"
    parts = key.split(".")
    if len(parts) != 3:
        raise ValueError("not a Supabase API key (neither a JWT nor an sb_secret_ key)")
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        raise ValueError("not a Supabase API key (its JWT payload does not decode)") from None
    return str(payload.get("role")) if isinstance(payload, dict) else None


def check_key_role(app) -> str:
    import config

    setting = "SUPABASE_KEY" if config.SUPABASE_KEY else "SUPABASE_KEY_SECRET"
    try:
        key = app.supabase_key()
    except Exception as err:
        raise Failed(f"{getattr(err, 'cause', err)}") from None
    try:
        role = key_role(key)
    except ValueError as err:
        raise Failed(f"{err}: fix {setting}") from None
    if role is None:
        return "an sb_secret_ key: its role cannot be told from the key, taken as service_role"
    if role != "service_role":
        raise Failed(f"the key's role is {role}, not service_role: fix {setting} (the project's service_role key)")
    return f"role service_role (from {setting})"


def check_columns(app, table: str, columns: tuple, setting: str) -> str:
    try:
        # count="planned": PostgREST answers with a Content-Range header (its estimate, no
        # count(*)), which an HTTP server that is not PostgREST does not send.
        answer = app.supabase().table(table).select(",".join(columns), count="planned").limit(0).execute()
    except Exception as err:
        code, message = getattr(err, "code", None), getattr(err, "message", None) or str(err)
        if code == "42703":  # undefined column
            raise Failed(f"{message}: apply supabase/migrations to the project") from None
        if code in ("42P01", "PGRST205", "PGRST200"):  # no such table
            raise Failed(f"no table {table} ({message}): fix {setting} or apply supabase/migrations") from None
        if code in ("42501", "PGRST301", "PGRST302") or "permission denied" in str(message):
            import config

            setting = "SUPABASE_KEY" if config.SUPABASE_KEY else "SUPABASE_KEY_SECRET"
            raise Failed(f"{message}: fix {setting} (the service_role key may read it)") from None
        raise Failed(f"{type(err).__name__}: {str(message)[:300]}") from None
    if answer.count is None:
        raise Failed(f"{config_url()} answers, but not as PostgREST does (no Content-Range on a select): fix SUPABASE_URL")
    return "has " + ", ".join(columns)


def config_url() -> str:
    import config

    return config.SUPABASE_URL


def check_queue(config) -> str:
    import boto3

    url = config.SQS_QUEUE_URL
    if not url:
        return "SQS_QUEUE_URL is not set: not checked"
    host = url.split("/")[2] if url.count("/") >= 4 else ""
    region = host.split(".")[1] if host.startswith("sqs.") and host.count(".") >= 3 else None
    try:
        from botocore.config import Config

        short = Config(connect_timeout=5, read_timeout=10, retries={"total_max_attempts": 2, "mode": "standard"})
        attributes = boto3.client("sqs", region_name=region, config=short).get_queue_attributes(
            QueueUrl=url, AttributeNames=["RedrivePolicy", "VisibilityTimeout"])["Attributes"]
    except Exception as err:
        raise Failed(_aws_problem(err, "SQS_QUEUE_URL", url)) from None
    problems = []
    if "RedrivePolicy" not in attributes:
        problems.append("has no redrive policy (give it a dead-letter queue: template.yaml does)")
    visibility, needed = int(attributes.get("VisibilityTimeout", 0)), 6 * config.FUNCTION_TIMEOUT_S
    if visibility < needed:
        problems.append(f"visibility timeout {visibility} s is below 6 x FUNCTION_TIMEOUT_S = {needed} s")
    if problems:
        raise Failed(f"{url} " + " and ".join(problems) + ": fix the queue, SQS_QUEUE_URL or FUNCTION_TIMEOUT_S")
    redrive = json.loads(attributes["RedrivePolicy"])
    return (f"{url} has a dead-letter queue after {redrive.get('maxReceiveCount')} receives and a visibility timeout "
            f"of {visibility} s >= 6 x FUNCTION_TIMEOUT_S ({config.FUNCTION_TIMEOUT_S} s)")
