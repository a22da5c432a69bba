"""Deployment files, checked offline: the template's rules, linters, and push_image.sh run
for real against moto's ECR and Lambda APIs with a recording stand-in for docker."""

import json
import os
import stat
import subprocess
import sys

import pytest
from conftest import ROOT, SERVICE_MODULES

BIN = os.path.dirname(sys.executable)


def tool(name):
    path = os.path.join(BIN, name)
    if not os.path.exists(path):
        pytest.fail(f"{path} is missing: run `make venv` (requirements-dev.txt installs it)")
    return path


def load_template():
    from cfnlint.decode import cfn_yaml

    return cfn_yaml.load(str(ROOT / "template.yaml"))


def test_template_passes_cfn_lint():
    run = subprocess.run([tool("cfn-lint"), str(ROOT / "template.yaml")], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_queue_visibility_is_at_least_six_times_the_function_timeout():
    resources = load_template()["Resources"]
    timeout = resources["FramesFunction"]["Properties"]["Timeout"]
    assert timeout <= 900
    assert resources["VideosQueue"]["Properties"]["VisibilityTimeout"] >= 6 * timeout


def test_event_source_reports_partial_batch_failures_and_has_a_dead_letter_queue():
    resources = load_template()["Resources"]
    event = resources["FramesFunction"]["Properties"]["Events"]["Videos"]["Properties"]
    assert event["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert "MaximumConcurrency" in event["ScalingConfig"]
    redrive = resources["VideosQueue"]["Properties"]["RedrivePolicy"]
    assert redrive["maxReceiveCount"] >= 5
    assert resources["DeadLetterAlarm"]["Properties"]["MetricName"] == "ApproximateNumberOfMessagesVisible"


GLIBC_MALLOC = {"MALLOC_ARENA_MAX": "2"}


def test_the_image_and_the_function_tune_glibc_s_allocator():
    """Set before the process starts (glibc reads them once): in the image, and the same
    in the function's environment, which would override the image's."""
    lines = [line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("ENV ")]
    image = dict(pair.split("=", 1) for line in lines for pair in line.split()[1:])
    assert {name: image.get(name) for name in GLIBC_MALLOC} == GLIBC_MALLOC
    variables = load_template()["Resources"]["FramesFunction"]["Properties"]["Environment"]["Variables"]
    assert {name: str(variables.get(name)) for name in GLIBC_MALLOC} == GLIBC_MALLOC


def test_iam_is_limited_to_videos_and_frames():
    statements = load_template()["Resources"]["FramesFunction"]["Properties"]["Policies"][0]["Statement"]
    by_sid = {s["Sid"]: s for s in statements}
    assert by_sid["ReadVideos"]["Action"] == "s3:GetObject"
    assert "/*/*/video.mp4" in str(by_sid["ReadVideos"]["Resource"])
    assert sorted(by_sid["WriteFrames"]["Action"]) == ["s3:DeleteObject", "s3:PutObject"]
    assert "/*/*/frames/*" in str(by_sid["WriteFrames"]["Resource"])
    assert by_sid["ListFrames"]["Condition"]["StringLike"]["s3:prefix"] == "*/*/frames/*"
    assert all(s["Resource"] != "*" for s in statements)


def test_dockerfile_passes_hadolint():
    run = subprocess.run([tool("hadolint"), str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def copied_modules():
    """The .py files the Dockerfile's COPY lines put into the image."""
    copied = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            copied += [word for word in line.split()[1:-1] if word.endswith(".py")]
    return copied


def imports_of(name):
    """The top-level names a module of the repository imports."""
    import ast

    names = set()
    for node in ast.walk(ast.parse((ROOT / name).read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names.add(node.module.split(".")[0])
    return names


def imported_modules(start="app.py"):
    """The repository's top-level modules `start` imports, transitively: the modules the
    handler needs at run time (parsed with ast, as an import hook would see them)."""
    import ast

    local = {path.stem for path in ROOT.glob("*.py")}
    found, todo = set(), [start.removesuffix(".py")]
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found.add(name)
        for node in ast.walk(ast.parse((ROOT / f"{name}.py").read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module]
            else:
                continue
            todo += [n.split(".")[0] for n in names if n.split(".")[0] in local]
    return sorted(f"{name}.py" for name in found)


def test_dockerfile_copies_only_the_service():
    text = (ROOT / "Dockerfile").read_text()
    assert "FROM public.ecr.aws/lambda/python:3.1" in text
    assert 'CMD ["app.lambda_handler"]' in text
    assert sorted(copied_modules()) == SERVICE_MODULES
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ignored[ignored.index("*")] == "*"
    assert sorted(line[1:] for line in ignored if line.startswith("!")) == sorted([*SERVICE_MODULES, "requirements.txt"])
    requirements = (ROOT / "requirements.txt").read_text()
    assert "opencv-python-headless==" in requirements and "\nopencv-python==" not in requirements


def test_the_image_compiles_the_modules_it_copies(tmp_path):
    """Lambda's /var/task is read-only: without their bytecode in the image, Python would
    compile the service's modules at every cold start. The Dockerfile's compileall step
    comes after the modules are copied, and it compiles each of them (run here on a copy)."""
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    copy = next(i for i, line in enumerate(lines) if line.startswith("COPY ") and "app.py" in line)
    [(at, step)] = [(i, line) for i, line in enumerate(lines) if line.startswith("RUN ") and "compileall" in line]
    assert at > copy and '"${LAMBDA_TASK_ROOT}"' in step
    for name in copied_modules():
        (tmp_path / name).write_text((ROOT / name).read_text())
    command = step.removeprefix("RUN ").replace('"${LAMBDA_TASK_ROOT}"', str(tmp_path)).split()
    subprocess.run([sys.executable if command[0] == "python" else command[0], *command[1:]], check=True)
    compiled = sorted(path.name.split(".")[0] + ".py" for path in (tmp_path / "__pycache__").glob("*.pyc"))
    assert compiled == sorted(copied_modules())


def test_the_image_copies_exactly_the_modules_app_imports():
    """A module the handler imports but the image lacks fails only in Lambda, at import;
    one the image copies but nothing imports is dead weight."""
    assert sorted(copied_modules()) == imported_modules("app.py")
    assert "stack.py" not in imported_modules("app.py") and "test.py" not in imported_modules("app.py")


CORE = ["cpus", "decode", "quality", "transitions", "detect", "choose", "output", "extract"]  # README's Architecture order


def test_the_core_imports_down_the_data_flow_and_each_library_in_one_module():
    local = {path.stem for path in ROOT.glob("*.py")}
    for at, name in enumerate(CORE):
        own = imports_of(f"{name}.py") & local
        assert own <= set(CORE[:at]), f"{name}.py imports {sorted(own - set(CORE[:at]))}, later in the flow"
    users = {library: [name for name in CORE if library in imports_of(f"{name}.py")] for library in ("av", "scenedetect")}
    assert users == {"av": ["decode"], "scenedetect": ["detect"]}
    assert "choose" not in imports_of("detect.py")


def test_every_shell_script_passes_shellcheck():
    scripts = [str(ROOT / "push_image.sh"), str(ROOT / ".ci" / "run")]
    run = subprocess.run([tool("shellcheck"), *scripts], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.fixture
def fake_docker(tmp_path):
    """A `docker` on PATH that records its arguments (and what login read on stdin)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    log = tmp_path / "docker.log"
    script = folder / "docker"
    script.write_text(f"""#!/usr/bin/env python3
import json, sys
entry = {{"argv": sys.argv[1:]}}
if sys.argv[1:2] == ["login"]:
    entry["stdin"] = sys.stdin.read()
with open({str(log)!r}, "a") as fh:
    fh.write(json.dumps(entry) + "\\n")
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return folder, log


def push(env, *args):
    return subprocess.run(["bash", str(ROOT / "push_image.sh"), *args], capture_output=True, text=True, env=env, timeout=120)


def test_push_image_against_moto(stack, fake_docker):
    folder, log = fake_docker
    env = dict(os.environ, **stack.env)
    env.pop("AWS_ACCOUNT_ID", None)
    env["PATH"] = f"{folder}:{BIN}:{env['PATH']}"
    lam, iam = stack.boto3("lambda"), stack.boto3("iam")
    role = iam.create_role(RoleName="frames-role", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                                                "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]
    registry = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
    lam.create_function(FunctionName="frames", Role=role, PackageType="Image",
                        Code={"ImageUri": f"{registry}/frame-extractor:old"}, Architectures=["arm64"])

    first = push(env, "--tag", "v1", "--function", "frames")
    assert first.returncode == 0, first.stdout + first.stderr
    second = push(env, "--tag", "v2", "--function", "frames", "--platform", "linux/amd64", "--repository", "frame-extractor")
    assert second.returncode == 0, second.stdout + second.stderr

    assert "create-repository" in first.stdout and "create-repository" not in second.stdout  # created once
    repos = stack.boto3("ecr").describe_repositories()["repositories"]
    assert [(r["repositoryName"], r["imageTagMutability"], r["imageScanningConfiguration"]["scanOnPush"]) for r in repos] == \
        [("frame-extractor", "IMMUTABLE", True)]

    calls = [json.loads(line) for line in log.read_text().splitlines()]
    argvs = [c["argv"] for c in calls]
    image1, image2 = f"{registry}/frame-extractor:v1", f"{registry}/frame-extractor:v2"
    assert argvs == [
        ["login", "--username", "AWS", "--password-stdin", registry],
        ["buildx", "build", "--platform", "linux/arm64", "--provenance=false", "--load", "--tag", image1, "."],
        ["push", image1],
        ["login", "--username", "AWS", "--password-stdin", registry],
        ["buildx", "build", "--platform", "linux/amd64", "--provenance=false", "--load", "--tag", image2, "."],
        ["push", image2],
    ]
    assert calls[0]["stdin"].strip()  # the password from get-login-password
    assert lam.get_function(FunctionName="frames")["Code"]["ImageUri"] == image2


def test_push_image_dry_run_needs_nothing(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # no aws, no docker, no credentials
    run = push(env, "--dry-run", "--tag", "t1", "--function", "fx", "--region", "eu-west-1")
    assert run.returncode == 0, run.stderr
    lines = [line for line in run.stdout.splitlines() if line.startswith("+ ")]
    image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/frame-extractor:t1"
    assert f"+ docker buildx build --platform linux/arm64 --provenance=false --load --tag {image} ." in lines
    assert f"+ timeout 900 docker push {image}" in lines
    assert any(line.startswith("+ aws lambda update-function-code") and image in line for line in lines)
    assert any("aws lambda wait function-updated" in line for line in lines)


def test_push_image_rejects_bad_arguments():
    assert push(dict(os.environ), "--platform", "windows/386").returncode == 2
    assert push(dict(os.environ), "--nope").returncode == 2
    assert "Usage:" in push(dict(os.environ), "--help").stdout


def test_the_key_is_in_secrets_manager_and_only_that_secret_is_readable():
    template = load_template()
    function = template["Resources"]["FramesFunction"]["Properties"]
    variables = function["Environment"]["Variables"]
    assert "SUPABASE_KEY" not in variables  # never a plain key in the function's environment
    which = {"Fn::If": ["CreateKeySecret", {"Ref": "SupabaseKeySecret"}, {"Ref": "SupabaseKeySecretArn"}]}
    assert variables["SUPABASE_KEY_SECRET"] == which
    by_sid = {s["Sid"]: s for s in function["Policies"][0]["Statement"]}
    assert by_sid["ReadKey"]["Action"] == "secretsmanager:GetSecretValue" and by_sid["ReadKey"]["Resource"] == which
    secret = template["Resources"]["SupabaseKeySecret"]
    assert secret["Type"] == "AWS::SecretsManager::Secret" and secret["Condition"] == "CreateKeySecret"
    assert secret["Properties"]["SecretString"] == {"Ref": "SupabaseKey"}
    assert template["Parameters"]["SupabaseKey"]["NoEcho"] is True


def test_the_function_may_change_its_queues_visibility_timeouts():
    statements = load_template()["Resources"]["FramesFunction"]["Properties"]["Policies"][0]["Statement"]
    [backoff] = [s for s in statements if s["Sid"] == "BackOff"]
    assert backoff["Action"] == "sqs:ChangeMessageVisibility"
    assert backoff["Resource"] == {"Fn::GetAtt": ["VideosQueue", "Arn"]}


def test_alarms_on_the_permanent_error_and_retry_counts_the_handler_emits():
    resources = load_template()["Resources"]
    variables = resources["FramesFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["METRICS_NAMESPACE"] == {"Ref": "MetricsNamespace"}
    for name, status in (("PermanentErrorAlarm", "error"), ("RetryAlarm", "retry")):
        alarm = resources[name]["Properties"]
        assert alarm["Namespace"] == {"Ref": "MetricsNamespace"} and alarm["MetricName"] == "Records"
        assert alarm["Dimensions"] == [{"Name": "Status", "Value": status}]  # the Status values of app.handle_record
        assert alarm["Statistic"] == "Sum" and alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert load_template()["Parameters"]["MetricsNamespace"]["Default"] == "FrameExtractor"
