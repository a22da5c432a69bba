#!/usr/bin/env python3
"""Run the service locally.

    python3 test.py                         the whole automated suite (pytest, local stack)
    python3 test.py tests/test_detect.py    some of it (any pytest arguments: -k NAME, FILE::TEST)
    python3 test.py demo [VIDEO ...]        local stack + one SQS batch through lambda_handler;
                                            frames and contact sheets land in ./out/
    python3 test.py single CODE PLATFORM    one video, against whatever .env points at
    python3 test.py bulk [--limit N]        every video downloaded but not extracted, likewise
    python3 test.py soak [--messages N]     N (200) messages through moto's SQS and the worker,
                                            with injected faults and poison; prints the accounting
    python3 test.py check                   the configured setup against the real services: one
                                            line per check; exit 0 when all pass, 1 otherwise
    add --debug to single/bulk for debug logs; extra arguments to the suite go to pytest.
"""

import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
VENV_PYTHON = os.path.join(HERE, ".venv", "bin", "python")


def _in_venv():
    """Re-run inside the project's venv when started with a bare python3."""
    if os.path.exists(VENV_PYTHON) and os.path.realpath(sys.prefix) != os.path.realpath(os.path.join(HERE, ".venv")):
        os.execv(VENV_PYTHON, [VENV_PYTHON, *sys.argv])


def run_suite(args):
    import pytest

    return pytest.main(["-c", os.path.join(HERE, "pytest.ini"), "--rootdir", HERE, *args])


def _sample_video(folder):
    """A generated 9-second clip with three hard cuts, for when no file is given."""
    sys.path.insert(0, os.path.join(HERE, "tests"))
    from media import make_video

    path = os.path.join(folder, "sample.mp4")
    make_video(path, [60, 75, 45, 45], width=640, height=360, fps=25)
    return path


def _code_for(path, taken):
    stem = re.sub(r"[^A-Za-z0-9_-]", "-", os.path.splitext(os.path.basename(path))[0])[:60] or "video"
    code, n = stem, 1
    while code in taken:
        n += 1
        code = f"{stem[:56]}-{n}"
    taken.add(code)
    return code


def demo(argv):
    """Start the local stack, put videos in it, run one real SQS batch through the handler."""
    import tempfile

    from stack import PLATFORM_DEMO, Stack, StackError

    files = [os.path.abspath(f) for f in argv]
    for path in files:
        if not os.path.isfile(path):
            print(f"demo: no such file: {path}", file=sys.stderr)
            return 2
    try:
        with tempfile.TemporaryDirectory() as scratch, Stack() as stack:
            _settings_from(stack.env)
            import app
            import config
            from output import contact_sheet_from_folder

            files = files or [_sample_video(scratch)]
            taken, s3, sqs = set(), stack.boto3("s3"), stack.boto3("sqs")
            queue = stack.env["SQS_QUEUE_URL"]
            for path in files[:10]:
                code = _code_for(path, taken)
                stack.sql("insert into videos (code, platform, is_downloaded, is_extracted) "
                          f"values ('{code}', '{PLATFORM_DEMO}', true, false)")
                s3.upload_file(path, config.S3_BUCKET_VIDEOS, f"{PLATFORM_DEMO}/{code}/video.mp4")
                sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"shortcode": code, "platform": PLATFORM_DEMO}))
            # The batch exactly as the event source mapping would hand it over.
            messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                           AttributeNames=["All"])["Messages"]
            response = app.process_batch(sqs, queue, messages)
            failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}

            print("\nresults:")
            for result in response["results"]:
                print(f"  {result['shortcode']}: {result['status']}, {result['frames']} frame(s) in "
                      f"{result['seconds']}s" + (f" ({result['stage']}: {result['error']})" if result["error"] else ""))
            rows = stack.sql("select code, is_extracted, frame_count from videos order by id")
            print("videos table:", ", ".join(f"{c} extracted={e} frames={n}" for c, e, n in rows))
            for result in response["results"]:
                if result["status"] != "extracted":
                    continue
                out = os.path.join(HERE, "out", result["shortcode"])
                os.makedirs(out, exist_ok=True)
                prefix = f"{PLATFORM_DEMO}/{result['shortcode']}/frames/"
                listing = s3.list_objects_v2(Bucket=config.S3_BUCKET_FRAMES, Prefix=prefix)
                for item in listing.get("Contents", []):
                    s3.download_file(config.S3_BUCKET_FRAMES, item["Key"], os.path.join(out, item["Key"][len(prefix):]))
                with open(os.path.join(out, "manifest.json")) as fh:
                    sheet = contact_sheet_from_folder(out, json.load(fh))
                print(f"frames of {result['shortcode']}: {os.path.relpath(out)}/ (contact sheet: {os.path.relpath(sheet)})")
            return 0 if not failed else 1
    except StackError as err:
        print(f"demo: {err}", file=sys.stderr)
        return 1


def soak(argv):
    """200 messages through moto's SQS and the worker, with faults and poison; prints the accounting."""
    import tempfile

    from stack import Stack

    messages = int(argv[1]) if argv[:1] == ["--messages"] and len(argv) == 2 else 200
    sys.path.insert(0, os.path.join(HERE, "tests"))
    from soak import run_soak, soak_ok

    with tempfile.TemporaryDirectory() as scratch, Stack() as stack:
        _settings_from(stack.env)
        import app  # noqa: F401 - configured from the stack's environment

        print(f"soak: {messages} messages, 10% of S3 and 5% of PostgREST requests failing, 5% poison", file=sys.stderr)
        report = run_soak(stack, scratch, messages=messages)
    print("soak: every message accounted for" if soak_ok(report) else "soak: FAILED", file=sys.stderr)
    return 0 if soak_ok(report) else 1


def _cloud_command(argv, usage):
    """Shared set-up of single and bulk: --debug, then the app against .env."""
    if "--debug" in argv:
        argv = [a for a in argv if a != "--debug"]
        os.environ["DEBUG"] = "true"
    import app
    import config

    try:
        config.require("S3_BUCKET_VIDEOS", "S3_BUCKET_FRAMES", "SUPABASE_URL", "SUPABASE_KEY")
    except config.ConfigError as err:
        print(f"{err}\nusage: {usage}", file=sys.stderr)
        raise SystemExit(2) from None
    return app, argv


def _report(response):
    for result in response["results"]:
        print(json.dumps(result))
    return 1 if response["batchItemFailures"] else 0


def single(argv):
    """Process one video through the handler, against whatever .env points at."""
    usage = "python3 test.py single SHORTCODE PLATFORM [--debug]"
    app, argv = _cloud_command(argv, usage)
    if len(argv) != 2:
        print(f"usage: {usage}", file=sys.stderr)
        return 2
    body = json.dumps({"shortcode": argv[0], "platform": argv[1]})
    return _report(app.lambda_handler({"Records": [{"messageId": "local-single", "body": body}]}, None))


def bulk(argv):
    """Process every video that is downloaded but not extracted, ten per batch."""
    usage = "python3 test.py bulk [--limit N] [--debug]"
    app, argv = _cloud_command(argv, usage)
    limit = 100
    if argv[:1] == ["--limit"] and len(argv) == 2 and argv[1].isdigit():
        limit = int(argv[1])
    elif argv:
        print(f"usage: {usage}", file=sys.stderr)
        return 2
    import config

    rows = (app.supabase().table(config.VIDEOS_TABLE).select("code,platform")
            .eq("is_downloaded", True).eq("is_extracted", False).limit(limit).execute().data)
    print(f"{len(rows)} video(s) to extract", file=sys.stderr)
    status = 0
    for start in range(0, len(rows), 10):
        records = [{"messageId": f"local-bulk-{start + i}", "body": json.dumps({"shortcode": r["code"], "platform": r["platform"]})}
                   for i, r in enumerate(rows[start:start + 10])]
        status |= _report(app.lambda_handler({"Records": records}, None))
    return status


def check(argv):
    """Check the settings against the real services (check.py); writes one probe object only."""
    if argv:
        print("usage: python3 test.py check", file=sys.stderr)
        return 2
    from check import run_checks

    return run_checks()


def _settings_from(env):
    """Point the settings at `env` (the local stack's): main checked them before it was up."""
    import importlib

    import config

    os.environ.update(env)
    importlib.reload(config)


def _config_error():
    """The settings' error (config.ConfigError names the variable), or None."""
    try:
        import config  # noqa: F401 - imported to check the settings
    except ValueError as err:  # config.ConfigError
        return str(err)
    return None


def _is_test_path(arg):
    """Whether `arg` names tests for pytest (tests/test_detect.py, tests/test_detect.py::test_x,
    from where this was started): a path to a .py file or one with a slash, that exists."""
    path = arg.split("::")[0]
    return (path.endswith(".py") or "/" in path) and os.path.exists(path)


def main(argv):
    _in_venv()
    argv = [os.path.abspath(arg) if _is_test_path(arg) else arg for arg in argv]  # before the chdir
    os.chdir(HERE)
    sys.path.insert(0, HERE)
    command = argv[0] if argv and not argv[0].startswith("-") and not _is_test_path(argv[0]) else None
    if command in ("single", "bulk") and "--debug" in argv:
        os.environ["DEBUG"] = "true"  # before the settings are read
    problem = None if command == "check" else _config_error()  # check reports it as its first line
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if command is None:
        return run_suite(argv)
    if command in ("demo", "single", "bulk", "soak", "check"):
        return globals()[command](argv[1:])
    if command.endswith(".py") or "/" in command:
        print(f"error: no such test file: {command}", file=sys.stderr)
        return 2
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
