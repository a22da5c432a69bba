"""The command line: python3 app.py VIDEO, config validation, and test.py's commands."""

import contextlib
import json
import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT
from media import make_video

import app


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "my clip.mp4"
    make_video(path, [30, 30, 30, 30])
    return path


def test_cli_writes_frames_manifest_and_contact_sheet(video, tmp_path, capsys):
    out = tmp_path / "out"
    assert app.main([str(video), "-o", str(out)]) == 0
    names = sorted(os.listdir(out))
    assert names == ["0.jpg", "1.jpg", "2.jpg", "3.jpg", "contact_sheet.jpg", "manifest.json"]
    summary = capsys.readouterr()
    assert "my clip.mp4: 4 scene(s), 4 frame(s) (scenes)" in summary.out
    assert summary.err == ""  # no progress bar when stderr is not a terminal


def test_cli_shows_tqdm_s_progress_bar_on_a_terminal(video, tmp_path):
    """On a terminal, the bar counts pass 1's frames to the end (tqdm: count, rate)."""
    import fcntl
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal 100 wide
    run = subprocess.run([sys.executable, str(ROOT / "app.py"), str(video), "-o", str(tmp_path / "o")],
                         stdout=subprocess.PIPE, stderr=follower, text=True)
    os.close(follower)
    shown = b""
    with contextlib.suppress(OSError):  # the terminal closed: all read
        while chunk := os.read(leader, 4096):
            shown += chunk
    os.close(leader)
    assert run.returncode == 0, shown
    assert "4 scene(s)" in run.stdout
    assert re.search(r"decoding: 100%\|.*\| 120/120 \[", shown.decode()), shown


def test_cli_default_output_folder_is_frames_slash_video_name(video, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert app.main([str(video)]) == 0
    assert (tmp_path / "frames" / "my clip" / "manifest.json").exists()


def test_cli_flags_change_the_choice(video, tmp_path):
    out = tmp_path / "out"
    assert app.main([str(video), "-o", str(out), "--threshold", "255", "--min-frames", "5"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["method"] == "even" and len(manifest["frames"]) == 5
    # A rerun with fewer frames leaves none of the old ones behind.
    assert app.main([str(video), "-o", str(out), "--max-frames", "2"]) == 0
    assert sorted(n for n in os.listdir(out) if n.endswith(".jpg") and n[0].isdigit()) == ["0.jpg", "1.jpg"]


def test_cli_image_format_and_max_edge(video, tmp_path):
    out = tmp_path / "out"
    assert app.main([str(video), "-o", str(out), "--image-format", "webp", "--max-edge", "100"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "webp"
    assert [f["file"] for f in manifest["frames"]] == ["0.webp", "1.webp", "2.webp", "3.webp"]
    assert {(f["width"], f["height"]) for f in manifest["frames"]} == {(100, 75)}
    # A rerun in another format leaves none of the old format's frames behind.
    assert app.main([str(video), "-o", str(out), "--max-frames", "2"]) == 0
    assert sorted(n for n in os.listdir(out) if n[0].isdigit()) == ["0.jpg", "1.jpg"]


@pytest.mark.parametrize("argv", [["--threshold", "abc"], ["--min-frames", "0"], ["--max-frames", "-1"], ["--bogus"],
                                  ["--image-format", "gif"], ["--max-edge", "-5"]])
def test_cli_bad_arguments_exit_2(video, argv, capsys):
    with pytest.raises(SystemExit) as exited:
        app.main([str(video), *argv])
    assert exited.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_cli_bad_input_exits_2_with_one_line(tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    run = subprocess.run([sys.executable, str(ROOT / "app.py"), str(bad), "-o", str(tmp_path / "o")],
                         capture_output=True, text=True)
    assert run.returncode == 2
    assert run.stderr == "error: notes.mp4: not a readable video file (Invalid data found when processing input)\n"
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("name,value,message", [
    ("SCENE_THRESHOLD", "abc", "SCENE_THRESHOLD must be a number"),
    ("MIN_FRAMES", "0", "MIN_FRAMES must be between 1"),
    ("MIN_SCENE_LEN", "half", "MIN_SCENE_LEN must be a frame count"),
    ("DEBUG", "maybe", "DEBUG must be true or false"),
    ("IMAGE_FORMAT", "gif", "IMAGE_FORMAT must be jpeg, webp or png, got 'gif'"),
    ("MAX_EDGE", "-1", "MAX_EDGE must be between 0"),
    ("MAX_EDGE", "big", "MAX_EDGE must be a whole number"),
    ("S3_READ_TIMEOUT", "nan", "S3_READ_TIMEOUT must be a number"),
    ("MAX_RECEIVES", "0", "MAX_RECEIVES must be between 1"),
])
def test_bad_settings_fail_at_import_naming_the_variable(name, value, message, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), **{name: value})
    run = subprocess.run([sys.executable, "-c", "import config"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert run.returncode != 0
    assert message in run.stderr


def test_settings_are_read_from_a_dotenv_file(tmp_path):
    (tmp_path / ".env").write_text("SCENE_THRESHOLD=31.5\nMIN_SCENE_LEN=0.5s\n")
    env = {k: v for k, v in os.environ.items() if k not in ("SCENE_THRESHOLD", "MIN_SCENE_LEN")}
    env["PYTHONPATH"] = str(ROOT)
    code = "import config; print(config.SCENE_THRESHOLD, config.MIN_SCENE_LEN)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert run.stdout.split() == ["31.5", "0.5"]


def test_single_and_bulk_run_against_what_the_environment_points_at(service, video):
    service.add_video("one", platform="tt", video=video)
    service.add_video("two", platform="tt", video=video)
    service.add_video("three", platform="tt", downloaded=False)
    env = dict(os.environ, **service.env)
    single = subprocess.run([sys.executable, str(ROOT / "test.py"), "single", "one", "tt"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert single.returncode == 0, single.stderr
    assert json.loads(single.stdout.strip().splitlines()[-1])["status"] == "extracted"
    bulk = subprocess.run([sys.executable, str(ROOT / "test.py"), "bulk", "--limit", "5", "--debug"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert bulk.returncode == 0, bulk.stderr
    reports = [json.loads(line) for line in bulk.stdout.splitlines() if line.startswith('{"message_id"')]
    assert [(r["shortcode"], r["status"]) for r in reports] == [("two", "extracted")]
    assert '"level": "DEBUG"' in bulk.stdout
    assert service.video_row("one", "tt")[1:3] == ["t", "4"] and service.video_row("two", "tt")[1:3] == ["t", "4"]


def test_the_suite_runs_the_tests_a_path_names():
    """`python3 test.py tests/FILE.py[::TEST] [pytest options]` runs those tests (a path is
    not taken for a command, and counts from where it was started); a path that is not there
    says so; a word that is neither prints the usage."""
    chosen = subprocess.run([sys.executable, str(ROOT / "test.py"), "tests/test_cpus.py::test_cgroup_v2_max_is_no_limit",
                             "-q", "-p", "no:cacheprovider"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert chosen.returncode == 0, chosen.stdout[-2000:] + chosen.stderr[-2000:]
    assert "1 passed" in chosen.stdout
    from_tests = subprocess.run([sys.executable, str(ROOT / "test.py"), "./test_cpus.py::test_cgroup_v2_max_is_no_limit",
                                 "-q", "-p", "no:cacheprovider"], capture_output=True, text=True, timeout=120,
                                cwd=ROOT / "tests")
    assert from_tests.returncode == 0 and "1 passed" in from_tests.stdout  # a path from where it was started
    unknown = subprocess.run([sys.executable, str(ROOT / "test.py"), "tests/no_such_file.py"], capture_output=True,
                             text=True, timeout=120, cwd=ROOT)
    assert unknown.returncode == 2 and "no such test file: tests/no_such_file.py" in unknown.stderr
    word = subprocess.run([sys.executable, str(ROOT / "test.py"), "nonsense"], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert word.returncode == 2 and "python3 test.py demo" in word.stderr


def test_demo_runs_one_batch_through_the_handler_and_leaves_nothing_running(tmp_path):
    run = subprocess.run([sys.executable, str(ROOT / "test.py"), "demo"], capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "sample: extracted, 4 frame(s)" in run.stdout
    assert (ROOT / "out" / "sample" / "contact_sheet.jpg").exists()
    assert not list((ROOT / ".stack").glob("*.pids")) or all(
        int(p.stem) == os.getpid() for p in (ROOT / ".stack").glob("*.pids"))


def test_make_stack_prints_its_environment_and_stops_everything_on_ctrl_c():
    import signal
    import time
    import urllib.request

    proc = subprocess.Popen([sys.executable, str(ROOT / "stack.py")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        while len(lines) < 20:
            line = proc.stdout.readline()
            if not line or line.startswith("# Ctrl-C"):
                break
            lines.append(line.strip())
        exports = dict(line[len("export "):].split("=", 1) for line in lines if line.startswith("export "))
        assert {"SUPABASE_URL", "SUPABASE_KEY", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                "AWS_DEFAULT_REGION", "S3_BUCKET_VIDEOS", "S3_BUCKET_FRAMES"} <= set(exports)
        request = urllib.request.Request(exports["SUPABASE_URL"] + "/rest/v1/videos?limit=1",
                                         headers={"apikey": exports["SUPABASE_KEY"],
                                                  "Authorization": "Bearer " + exports["SUPABASE_KEY"]})
        assert urllib.request.urlopen(request, timeout=5).status == 200
        pids_file = ROOT / ".stack" / f"{proc.pid}.pids"
        server_pids = [int(p) for p in pids_file.read_text().split()]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert proc.returncode == 0
    assert not pids_file.exists()
    time.sleep(0.5)
    for pid in server_pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


# The configuration blocks of the service's original README, verbatim (inline comments and
# all: python-dotenv drops a " # ..." after an unquoted value). Its units are binding:
# S3_RETRY_DELAY in milliseconds, the timeouts in seconds.
ORIGINAL_ENV = """\
S3_BUCKET_VIDEOS=oriane-contents    # Bucket for source videos
S3_BUCKET_FRAMES=oriane-contents    # Bucket for extracted frames
SUPABASE_URL=https://your-project-ref.supabase.co
SUPABASE_KEY=your-service-role-key
MIN_FRAMES=3          # Minimum frames per video if scenes < MIN_FRAMES
SCENE_THRESHOLD=27.0  # PySceneDetect content-detector threshold
CONCURRENCY_LIMIT=2   # How many videos to process in parallel
MIN_REMAINING_MS=60000  # Lambda timeout buffer (ms)
S3_RETRIES=3         # Number of retries for S3 operations
S3_RETRY_DELAY=1000  # Delay between retries (ms)
S3_CONNECT_TIMEOUT=10 # S3 connection timeout (seconds)
S3_READ_TIMEOUT=60   # S3 read timeout (seconds)
DEBUG=true           # Enable debug-level logging
"""


def test_the_original_readme_configuration_is_the_one_above():
    from conftest import SHARED

    readme = SHARED / "spec" / "original-README.md"
    if not readme.exists():
        pytest.skip(f"{readme} is absent")
    text = readme.read_text()
    for line in ORIGINAL_ENV.splitlines():
        assert line in text, line


def _settings_env(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("S3_", "SUPABASE_", "MIN_", "DEBUG", "CONCURRENCY"))}
    env.update(PYTHONPATH=str(ROOT), **extra)
    return env


def test_the_original_readme_configuration_imports_with_its_units(tmp_path):
    (tmp_path / ".env").write_text(ORIGINAL_ENV)
    code = ("import app, config; print(app.CONFIG_ERROR, config.S3_RETRY_DELAY, config.S3_CONNECT_TIMEOUT, "
            "config.S3_READ_TIMEOUT, config.S3_RETRIES, config.MIN_REMAINING_MS, config.DEBUG, config.S3_BUCKET_VIDEOS)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_settings_env(tmp_path), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["None", "1000.0", "10.0", "60.0", "3", "60000", "True", "oriane-contents"]


def test_the_original_readme_configuration_runs_a_record(service, video, tmp_path):
    """The same .env, with the real environment pointing it at the local stack (a real
    environment variable wins over .env), through lambda_handler with Lambda's 900 s."""
    service.add_video("orig1", video=video)
    (tmp_path / ".env").write_text(ORIGINAL_ENV)
    env = _settings_env(tmp_path, **service.env, TMP_DIR=str(service.tmp_dir))
    code = ("import json, app; event = {'Records': [{'messageId': 'm1', 'body': json.dumps({'shortcode': 'orig1', "
            "'platform': 'ig'}), 'attributes': {'ApproximateReceiveCount': '1'}}]}; "
            "print(json.dumps(app.lambda_handler(event, app.LocalContext(900))))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert run.returncode == 0, run.stderr
    response = json.loads(run.stdout.strip().splitlines()[-1])
    assert response["batchItemFailures"] == [] and response["results"][0]["status"] == "extracted", response
    assert '"level": "DEBUG"' in run.stdout  # DEBUG=true, the inline comment dropped
    assert service.video_row("orig1")[1:3] == ["t", "4"]


@pytest.mark.parametrize("command", [["app.py", "VIDEO"], ["app.py", "worker", "http://127.0.0.1:1/q"],
                                     ["test.py", "single", "abc", "ig"], ["test.py", "demo"]])
def test_a_bad_setting_at_a_command_start_is_one_line_and_exit_2(command, tmp_path):
    env = _settings_env(tmp_path, S3_READ_TIMEOUT="sixty")
    run = subprocess.run([sys.executable, str(ROOT / command[0]), *command[1:]], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=60)
    assert (run.returncode, run.stderr) == (2, "error: S3_READ_TIMEOUT must be a number, got 'sixty'\n")
    assert run.stdout == ""


def test_a_bad_setting_in_lambda_fails_every_record_naming_it(tmp_path):
    """Lambda imports app at init: the import survives, and every record goes back to SQS
    with an ERROR line that names the variable (never acknowledged, no traceback)."""
    env = _settings_env(tmp_path, MIN_FRAMES="lots")
    code = ("import json, app; print(json.dumps(app.lambda_handler({'Records': [{'messageId': 'm1', 'body': '{}'}, "
            "{'messageId': 'm2', 'body': '{}'}]}, None)))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert run.returncode == 0 and "Traceback" not in run.stdout + run.stderr, run.stderr
    *lines, last = run.stdout.strip().splitlines()
    assert json.loads(last)["batchItemFailures"] == [{"itemIdentifier": "m1"}, {"itemIdentifier": "m2"}]
    logged = [json.loads(line) for line in lines]
    assert [(line["level"], line["message_id"], line["error"]) for line in logged if line["msg"] != "metrics"] == [
        ("ERROR", m, "MIN_FRAMES must be a whole number, got 'lots'") for m in ("m1", "m2")]
    metrics = [line for line in logged if line["msg"] == "metrics"]  # and each its metrics line, counted as a retry
    assert [(line["message_id"], line["Status"], line["Stage"], line["Records"]) for line in metrics] == [
        (m, "retry", "config", 1) for m in ("m1", "m2")]


def test_worker_batch_seconds_must_exceed_the_reserve(tmp_path):
    env = _settings_env(tmp_path, S3_BUCKET_VIDEOS="v", S3_BUCKET_FRAMES="f", SUPABASE_URL="http://127.0.0.1:1",
                        SUPABASE_KEY="k" * 20)
    run = subprocess.run([sys.executable, str(ROOT / "app.py"), "worker", "http://127.0.0.1:1/q", "--batch-seconds", "60"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert run.returncode == 2
    assert run.stderr == ("error: --batch-seconds 60 must be more than the MIN_REMAINING_MS=60000 ms reserve, "
                          "or no record would ever start\n")
