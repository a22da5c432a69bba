"""Settings, read once from the environment (and from `.env` when present).

A flat list of typed values. A bad value fails here, at import, with a message
that names the variable, instead of deep inside a Lambda invocation.
Every setting is documented in `.env.sample`.
"""

import math
import os
import re

from dotenv import load_dotenv

# A real environment wins over `.env`: Lambda and CI set variables directly.
load_dotenv(override=False)


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def _raw(name, default):
    value = os.environ.get(name)
    return default if value is None or value.strip() == "" else value.strip()


def _int(name, default, minimum=None, maximum=None):
    raw = _raw(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ConfigError(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


def _float(name, default, minimum=None):
    raw = _raw(name, str(default))
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if math.isnan(value) or (minimum is not None and value < minimum):
        raise ConfigError(f"{name} must be a number >= {minimum}, got {raw!r}")
    return value


def _bool(name, default):
    raw = _raw(name, "true" if default else "false").lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _scene_len(name, default):
    """A length in frames (`15`) or seconds (`0.5s`), as PySceneDetect's min_scene_len takes it:
    an int is a frame count, a float is seconds."""
    raw = _raw(name, default)
    if re.fullmatch(r"\d+", raw):
        return int(raw)
    match = re.fullmatch(r"(\d+(?:\.\d+)?)s", raw)
    if match:
        return float(match.group(1))
    raise ConfigError(f"{name} must be a frame count like 15 or seconds like 0.5s, got {raw!r}")


def _list(name):
    return tuple(item.strip() for item in _raw(name, "").split(",") if item.strip())


# --- Storage and status -------------------------------------------------------------------
S3_BUCKET_VIDEOS = _raw("S3_BUCKET_VIDEOS", "")
S3_BUCKET_FRAMES = _raw("S3_BUCKET_FRAMES", "")
SUPABASE_URL = _raw("SUPABASE_URL", "")
SUPABASE_KEY = _raw("SUPABASE_KEY", "")
VIDEOS_TABLE = _raw("VIDEOS_TABLE", "videos")
ERRORS_TABLE = _raw("ERRORS_TABLE", "extraction_errors")
SUPABASE_TIMEOUT = _float("SUPABASE_TIMEOUT", 10.0, minimum=0.1)
SUPABASE_RETRIES = _int("SUPABASE_RETRIES", 3, minimum=1, maximum=10)
SUPABASE_RETRY_DELAY = _float("SUPABASE_RETRY_DELAY", 0.5, minimum=0.0)

# --- Frame extraction ---------------------------------------------------------------------
SCENE_THRESHOLD = _float("SCENE_THRESHOLD", 27.0, minimum=0.0)
MIN_SCENE_LEN = _scene_len("MIN_SCENE_LEN", "15")
MIN_FRAMES = _int("MIN_FRAMES", 3, minimum=1, maximum=1000)
MAX_FRAMES = _int("MAX_FRAMES", 0, minimum=0, maximum=100000)
JPEG_QUALITY = _int("JPEG_QUALITY", 90, minimum=1, maximum=100)
IMAGE_FORMAT = _raw("IMAGE_FORMAT", "jpeg").lower()
if IMAGE_FORMAT not in ("jpeg", "webp", "png"):
    raise ConfigError(f"IMAGE_FORMAT must be jpeg, webp or png, got {IMAGE_FORMAT!r}")
MAX_EDGE = _int("MAX_EDGE", 0, minimum=0, maximum=65535)  # 0: full size
FRAME_PICK = _raw("FRAME_PICK", "best")
if FRAME_PICK not in ("middle", "best"):
    raise ConfigError(f"FRAME_PICK must be middle or best, got {FRAME_PICK!r}")
FRAME_PICK_WINDOW = _float("FRAME_PICK_WINDOW", 0.3, minimum=0.0)
if FRAME_PICK_WINDOW > 1:
    raise ConfigError(f"FRAME_PICK_WINDOW must be between 0 and 1, got {FRAME_PICK_WINDOW}")
DETECT_GRADUAL = _bool("DETECT_GRADUAL", True)
DEDUPE_DISTANCE = _int("DEDUPE_DISTANCE", 6, minimum=0, maximum=64)
MAX_PIXELS = _int("MAX_PIXELS", 4096 * 2304, minimum=0)  # 0: no limit
MAX_DURATION_S = _float("MAX_DURATION_S", 1800.0, minimum=0.0)  # 0: no limit

# --- Handler ------------------------------------------------------------------------------
CONCURRENCY_LIMIT = _int("CONCURRENCY_LIMIT", 2, minimum=1, maximum=64)
MIN_REMAINING_MS = _int("MIN_REMAINING_MS", 60000, minimum=0)
ALLOWED_PLATFORMS = _list("ALLOWED_PLATFORMS")
MAX_VIDEO_BYTES = _int("MAX_VIDEO_BYTES", 1024**3, minimum=1)
UPLOAD_WORKERS = _int("UPLOAD_WORKERS", 8, minimum=1, maximum=64)
TMP_DIR = _raw("TMP_DIR", "")  # empty: the system temp folder (/tmp on Lambda)

# --- S3 transfers -------------------------------------------------------------------------
# Units as the service's original README documents them: the delay in milliseconds, the
# timeouts in seconds. No product of them is refused here: the handler clamps every
# attempt to the time left before the MIN_REMAINING_MS reserve (app.with_retries).
S3_RETRIES = _int("S3_RETRIES", 3, minimum=1, maximum=20)
S3_RETRY_DELAY = _float("S3_RETRY_DELAY", 1000.0, minimum=0.0)  # milliseconds
S3_CONNECT_TIMEOUT = _float("S3_CONNECT_TIMEOUT", 5.0, minimum=0.1)
S3_READ_TIMEOUT = _float("S3_READ_TIMEOUT", 10.0, minimum=0.1)

# --- SQS ----------------------------------------------------------------------------------
# The queue's maxReceiveCount (template.yaml: 5): a retryable failure on this receive is
# the last one before the dead-letter queue, and its extraction_errors row says so.
MAX_RECEIVES = _int("MAX_RECEIVES", 5, minimum=1, maximum=1000)

# --- Operations ---------------------------------------------------------------------------
# The Supabase key kept in AWS Secrets Manager instead of the environment: a secret's name
# or ARN, read once per container when SUPABASE_KEY is empty (SUPABASE_KEY wins).
SUPABASE_KEY_SECRET = _raw("SUPABASE_KEY_SECRET", "")
# CloudWatch namespace of the metrics each record's log line carries (embedded metric format).
METRICS_NAMESPACE = _raw("METRICS_NAMESPACE", "FrameExtractor")
if not re.fullmatch(r"[A-Za-z0-9._/#: -]{1,255}", METRICS_NAMESPACE) or METRICS_NAMESPACE.startswith("AWS/"):
    raise ConfigError("METRICS_NAMESPACE must be 1-255 characters of A-Z a-z 0-9 . _ / # : - and space, "
                      f"not starting with AWS/, got {METRICS_NAMESPACE!r}")
# A retryable failure comes back after RETRY_BACKOFF_S x 2^(receive count - 1) seconds
# (+-20 %), at most RETRY_BACKOFF_MAX_S: SQS's visibility timeout is 0-43200 s.
RETRY_BACKOFF_S = _int("RETRY_BACKOFF_S", 60, minimum=0, maximum=43200)
RETRY_BACKOFF_MAX_S = _int("RETRY_BACKOFF_MAX_S", 3600, minimum=0, maximum=43200)
# For `python3 test.py check`: the queue feeding the function (empty: not checked) and the
# function's timeout, which the queue's visibility timeout must be at least 6x of.
SQS_QUEUE_URL = _raw("SQS_QUEUE_URL", "")
FUNCTION_TIMEOUT_S = _int("FUNCTION_TIMEOUT_S", 900, minimum=1, maximum=43200)

DEBUG = _bool("DEBUG", False)


def require(*names):
    """Fail with a clear message when a setting the caller needs is empty."""
    missing = [name for name in names if not globals().get(name)
               and not (name == "SUPABASE_KEY" and SUPABASE_KEY_SECRET)]  # the key may come from its secret
    if missing:
        names = ["SUPABASE_KEY (or SUPABASE_KEY_SECRET)" if name == "SUPABASE_KEY" else name for name in missing]
        raise ConfigError(f"missing required setting(s): {', '.join(names)} (see .env.sample)")
