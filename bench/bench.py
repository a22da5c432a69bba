#!/usr/bin/env python3
"""Time the service side by side with the floor, the bound of its stack and the alternative,
whole process and warm in-process (what Lambda bills for every video after a container's first).

For each video, --runs rounds (default 3), each round running every command once in turn, so
machine load hits all alike; the median of the rounds is reported. Before anything is timed, the page
cache of the shared libraries is dropped (settle_library_pages), so peak RSS does not
depend on whether a library file was read whole before. Whole process:
  ours    python3 app.py V -o TMP                                   (the whole job, default settings:
                                                                     FRAME_PICK=best, one pass)
  middle  python3 app.py V -o TMP --frame-pick middle               (exact middle frames, two passes)
  floor   ffmpeg -i V -f null -                                     (a plain full decode: the
                                                                     denominator of every ratio)
  psd     scenedetect -i V -o TMP detect-content save-images -n 1   (PySceneDetect doing the job)
  bound   python3 bench/bound.py V                                  (the least ours can cost on this
                                                                     stack: app.py's start-up and a
                                                                     full decode with our threads)
  xbound  python3 bench/bound.py --exact V                          (the whole-process exact bound:
                                                                     app.py's start-up and the exact
                                                                     bound below)
In-process, in a process that has done one video already (a 3 s 640x360 warm-up clip) and
created the S3 and Supabase clients, timed inside it (bench/warm.py, bench/bound.py --warm; the
bounds' processes hold the same clients and warm-up, so their peak RSS compares with warm's):
  warm    app.extract_frames(V, frames_dir)                         (the handler's extraction stage:
                                                                     config.py's settings, the deadline
                                                                     check, manifest and JPEGs)
  inbound every frame's decode alone (the service's decoder      (the in-process bound: no exact
          threads), nothing else                                     pipeline can be faster)
  exact   the same, each frame also made into SceneManager's image   (the exact bound: the least any
          (full-size BGR, its resize) and scored by ContentDetector  pipeline whose cuts are
          (bench/bound.py --warm --exact)                            PySceneDetect's must do)

Columns. Table 1 (whole process): ours, ffmpeg decode, PySceneDetect seconds; ours/ffmpeg;
PySceneDetect/ours (the speed-up); peak RSS of ours and of PySceneDetect (MiB, the largest of
the rounds); middle s and middle/ffmpeg; bound s and bound/ffmpeg; exact bound s and
PySceneDetect/exact bound (the speed-up no exact pipeline can pass). Table 2 (warm,
in-process): video s (its duration); warm s; warm/ffmpeg and its target; in-process bound s
and bound/ffmpeg; exact bound s and exact bound/ffmpeg; peak RSS of the warm process
(clients, warm-up and the timed video: what the container holds), of the in-process bound's
and of the exact bound's.

Then, outside the tables:
  cold start   `python3 -c "import app"`, and the handler's: `import app; app.s3();
               app.supabase()` (bench/handler_start.py, Lambda-like dummy settings), with the
               libraries alone (boto3 and supabase's postgrest-py, a client each) as its bound; and whether
               creating the clients tried the network (an audit hook; it must not). Median of 5.
  two at once  two 1080p videos (the run's first two 1080p clips, or its one twice) through
               app.extract_frames in two threads of one warm process, CONCURRENCY_LIMIT=2 as
               lambda_handler runs a batch: wall seconds and the process's peak RSS.
  cost         Lambda GB-seconds and dollars per 1,000 one-minute videos at template.yaml's
               MemorySize default on arm64: warm seconds per video-second on the run's 1080p
               clips (sum of warm medians / sum of durations) x 60 s x 1,000 x MemorySize/1024
               GB x $0.0000133334 per GB-s, plus one request per video at $0.20 per 1M (an
               upper bound: a batch of BatchSize videos is one request). us-east-1, first
               tier. The extraction stage only (not the S3 transfers and status calls), at
               this machine's speed; the same figure scaled by usable CPUs here / Lambda's vCPUs
               at that memory (1 per 1,769 MB) follows, for CPU-bound work.
  cpus         usable_cpus() here (cpus.py) and the decoder threads at 1080p and 4K.

Targets (issue 18), checked as ratios of one run; exits 1 if one is missed, 2 if a tool is
missing:
  warm/ffmpeg <= 0.80 on streams with B-frames (short_720p, reel_1080x1920, long_1080p),
  <= 1.25 on baseline_720p, <= 1.10 on uhd_4k60 (the shared clips: reported, no target);
  PySceneDetect/ours >= 2.5 on clips of 30 s or more; the handler's cold start with the
  clients <= 1.0 s; peak RSS (ours and warm) <= 200 MiB on the 1080p clips, <= 350 MiB at 4K,
  two 1080p at once <= 400 MiB. A missed target says too when the bound itself misses it
  (the in-process bound for warm/ffmpeg, the whole-process bound for the speed-up and the
  peak RSS, the libraries alone for the cold start): then it is out of reach of any pipeline
  on Python, PyAV and PySceneDetect on this machine, not only of ours. Where only an exact
  bound misses it (the in-process one for warm/ffmpeg and warm's peak RSS, the whole-process
  one for the speed-up and ours' peak RSS), it is out of reach of any pipeline whose cuts are
  PySceneDetect's to the frame there. The earlier whole-
  process ratios (ours/ffmpeg, `import app`) are still shown, no longer targets.

Videos: ../shared/bench/make_synthetic.py builds short_720p (30 s, B-frames), the
1080x1920 reel (60 s) and long_1080p (10 min; ~9 minutes to build, once); bench/clips.py
builds baseline_720p (short_720p's scenes, baseline profile: no B-frames), uhd_4k60
(3840x2160, 60 fps, superfast, no B-frames, --uhd-seconds long: 30 s by default; 4 s built
in 39 s on a loaded 2-core machine, so 30 s takes a few minutes) and the warm-up clip; all
cached in bench/out/. The clips in ../shared/videos are added when present. `--only NAME
...` keeps the videos whose names contain one of the NAMEs (and builds only those).
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from typing import NamedTuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.dirname(HERE))

import clips  # noqa: E402

import cpus  # noqa: E402  (the service's, top level)

ROOT = os.path.dirname(HERE)
SHARED = os.environ.get("SHARED_DIR", os.path.join(os.path.dirname(ROOT), "shared"))
OUT = os.path.join(HERE, "out")
PYTHON = sys.executable
SCENEDETECT = os.path.join(os.path.dirname(sys.executable), "scenedetect")
SYNTHETIC = ["short_720p", "reel_1080x1920", "long_1080p"]  # built by make_synthetic.py
GENERATED = ["baseline_720p", "uhd_4k60"]  # built by clips.py
WARMUP = "warmup_360p"
TEMPLATE = os.path.join(ROOT, "template.yaml")


class Target(NamedTuple):
    """A clip's targets: the warm stage's ratio to ffmpeg, its peak RSS; 1080p clips also
    make the cost line and the run of two at once."""
    warm_to_floor: float
    peak_rss_mib: float | None = None
    full_hd: bool = False


# The targets of issue 18.
TARGETS = {
    "short_720p.mp4": Target(0.80),
    "reel_1080x1920.mp4": Target(0.80, peak_rss_mib=200, full_hd=True),
    "long_1080p.mp4": Target(0.80, peak_rss_mib=200, full_hd=True),
    "baseline_720p.mp4": Target(1.25),
    "uhd_4k60.mp4": Target(1.10, peak_rss_mib=350),
}
MIN_SPEEDUP_VS_PSD = 2.5
SPEEDUP_MIN_SECONDS = 30  # the speed-up target holds on clips this long or longer
MAX_COLD_START_S = 1.0  # the handler's, with its clients
MAX_PAIR_RSS_MIB = 400
PAIR_CONCURRENCY = 2
COLD_RUNS = 5
# AWS Lambda on arm64, us-east-1, first pricing tier (the first 7.5 billion GB-s a month).
PRICE_PER_GB_S = 0.0000133334
PRICE_PER_REQUEST = 0.20 / 1_000_000
VIDEOS_PRICED, VIDEO_SECONDS_PRICED = 1000, 60


def fail(message, code=2):
    print(f"bench: {message}", file=sys.stderr)
    sys.exit(code)


def need_tools():
    if not shutil.which("ffmpeg"):
        fail("ffmpeg is missing (Debian package ffmpeg; `make bench` installs it)")
    if not os.path.exists(SCENEDETECT):
        fail(f"{SCENEDETECT} is missing (pip install -r requirements.txt; `make bench` does it)")


def videos(only, uhd_seconds):
    """The videos to time, those not yet built built first (only the ones --only keeps)."""
    clips_dir = os.path.join(SHARED, "videos")
    shared = sorted(n for n in os.listdir(clips_dir) if n.endswith(".mp4")) if os.path.isdir(clips_dir) else []
    if not shared:
        print(f"note: {clips_dir} is absent; timing the generated videos only", file=sys.stderr)
    names = [n + ".mp4" for n in SYNTHETIC + GENERATED] + shared
    if only:
        names = [n for n in names if any(o in n for o in only)]
    found = []
    for name in names:
        stem = name[:-len(".mp4")]
        if stem in SYNTHETIC:
            found.append(synthetic(stem))
        elif stem in GENERATED:
            found.append(generated(stem, uhd_seconds))
        else:
            found.append(os.path.join(clips_dir, name))
    return found


def synthetic(name):
    path = os.path.join(OUT, name + ".mp4")
    if not os.path.exists(path):
        if not os.path.exists(clips.GENERATOR):
            fail(f"{clips.GENERATOR} is absent: cannot build the synthetic benchmark videos")
        print(f"building {name} (once; cached in bench/out/) ...", file=sys.stderr)
        subprocess.run([PYTHON, clips.GENERATOR, OUT, "--only", name], check=True, stdout=subprocess.DEVNULL)
    return path


def library_files():
    """The shared libraries the service's processes load: every one under the Python that
    runs them (the venv's site-packages, its bundled .libs folders) and Python's own."""
    roots = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], sysconfig.get_config_var("LIBDIR")}
    found = set()
    for root in filter(None, roots):
        for folder, _, names in os.walk(root):
            found.update(os.path.join(folder, n) for n in names if re.search(r"\.so(\.|$)", n))
    return sorted(found)


def settle_library_pages(paths):
    """Drop the page cache of the libraries (`paths`: library_files()) before timing, so that every
    process measured maps their pages as a deployed image's process does: fault by fault.
    A library file read whole before (as `cat cv2.abi3.so > /dev/null` does) sits in the
    page cache in large folios, which Linux (6.18 here) maps whole at the first touch: OpenCV's
    71 MiB library then counts 45 MiB in a process's RSS instead of 13. On a new machine after
    `make test`, the reel's whole process peaked at 224-231 MiB, and at 179-184 once the page
    cache was dropped: by what had happened to the files, not by the code. posix_fadvise(DONTNEED)
    needs no privilege and drops clean pages no process maps; PySceneDetect's are the same
    files. Returns how many files it was told of."""
    settled = 0
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            settled += 1
        finally:
            os.close(fd)
    return settled


def processes_mapping(paths):
    """The pids of other processes that map any of `paths`: settle_library_pages cannot drop
    their pages (a leftover warm helper, a `make test` running beside, a REPL that imported
    cv2), so those libraries' RSS stays whatever it was."""
    wanted, found = set(paths), set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/maps") as fh:
                if any(line.split()[-1] in wanted for line in fh if "/" in line):
                    found.add(int(pid))
        except OSError:  # gone, or not ours to read
            continue
    return sorted(found)


def image_env():
    """The environment the Lambda image gives the service (the Dockerfile's ENV: glibc's
    allocator settings), so ours is measured as it runs there."""
    env = dict(os.environ)
    with open(os.path.join(ROOT, "Dockerfile")) as fh:
        for line in fh:
            if line.startswith("ENV "):
                env.update(pair.split("=", 1) for pair in line.split()[1:])
    return env


def generated(name, uhd_seconds=clips.UHD_SECONDS):
    path = os.path.join(OUT, name + ".mp4")
    started = time.monotonic()
    try:
        built = clips.build(name, OUT, uhd_seconds)
    except FileNotFoundError as err:
        fail(str(err))
    if time.monotonic() - started > 1:
        print(f"built {name} in {time.monotonic() - started:.0f}s (cached in bench/out/)", file=sys.stderr)
    assert built == path
    return path


class Run(NamedTuple):
    wall: float  # seconds, the whole process
    rss_mib: float  # peak resident set of the process
    stdout: str


def measure(argv, cwd=None, env=None):
    """One run of argv: wall seconds, peak RSS (MiB) and what it printed. Its output goes to
    files, not pipes: a pipe nobody reads while waiting would stall a talkative process."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, cwd=cwd, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            fail(f"{' '.join(argv)} exited {proc.returncode}: {err.read().decode(errors='replace')[-500:]}", code=1)
        out.seek(0)
        return Run(wall, usage.ru_maxrss / 1024, out.read().decode(errors="replace"))


def result_of(run):
    """The JSON line a helper prints last (the service's own log lines come before it)."""
    lines = [line for line in run.stdout.splitlines() if line.strip()]
    return json.loads(lines[-1])


def whole(run):
    """Seconds of the whole process."""
    return run.wall


def inside(run):
    """Seconds timed inside a warm helper (warm.py, bound.py --warm): its one timed run."""
    return result_of(run)["seconds"][0]


def commands(video, tmp, warmup):
    """Each command and how to read its seconds from a Run."""
    return {
        "ours": ([PYTHON, os.path.join(ROOT, "app.py"), video, "-o", os.path.join(tmp, "ours")], whole),
        "middle": ([PYTHON, os.path.join(ROOT, "app.py"), video, "-o", os.path.join(tmp, "middle"),
                    "--frame-pick", "middle"], whole),
        "floor": (["ffmpeg", "-v", "error", "-nostdin", "-i", video, "-f", "null", "-"], whole),
        "bound": ([PYTHON, os.path.join(HERE, "bound.py"), video], whole),
        "xbound": ([PYTHON, os.path.join(HERE, "bound.py"), "--exact", video], whole),
        "psd": ([SCENEDETECT, "-q", "-i", video, "-o", os.path.join(tmp, "psd"), "detect-content", "save-images",
                 "-n", "1"], whole),
        "warm": ([PYTHON, os.path.join(HERE, "warm.py"), "--warmup", warmup, video], inside),
        "inbound": ([PYTHON, os.path.join(HERE, "bound.py"), "--warm", "--warmup", warmup, video], inside),
        "exact": ([PYTHON, os.path.join(HERE, "bound.py"), "--warm", "--exact", "--warmup", warmup, video], inside),
    }


class Row(NamedTuple):
    name: str
    seconds: float  # the video's duration
    wall: dict  # command -> median seconds
    rss: dict  # command -> peak RSS MiB over the rounds


class Ratios(NamedTuple):
    ours_to_floor: float
    psd_to_ours: float
    middle_to_floor: float
    bound_to_floor: float
    psd_to_bound: float
    psd_to_xbound: float
    warm_to_floor: float
    inbound_to_floor: float
    exact_to_floor: float


def ratios(row):
    w = row.wall
    return Ratios(w["ours"] / w["floor"], w["psd"] / w["ours"], w["middle"] / w["floor"], w["bound"] / w["floor"],
                  w["psd"] / w["bound"], w["psd"] / w["xbound"], w["warm"] / w["floor"], w["inbound"] / w["floor"],
                  w["exact"] / w["floor"])


def time_video(video, runs, warmup):
    samples, rss = {}, {}
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
            for key, (argv, seconds_of) in commands(video, tmp, warmup).items():
                service = key in ("ours", "middle", "bound", "xbound", "warm", "inbound", "exact")
                run = measure(argv, env=image_env() if service else None)
                samples.setdefault(key, []).append(seconds_of(run))
                rss[key] = max(rss.get(key, 0.0), run.rss_mib)
    return Row(os.path.basename(video), clips.duration(video),
               {key: statistics.median(values) for key, values in samples.items()}, rss)


class ColdStart(NamedTuple):
    import_app: float
    handler: float  # import app + the clients
    libraries: float  # boto3 and supabase's postgrest-py alone, a client each
    network: list  # what creating the clients tried to reach


def cold_start():
    starter = os.path.join(HERE, "handler_start.py")
    argvs = {"import_app": [PYTHON, "-c", "import app"], "handler": [PYTHON, starter],
             "libraries": [PYTHON, starter, "--libraries"]}
    samples, network = {key: [] for key in argvs}, set()
    for _ in range(COLD_RUNS):
        for key, argv in argvs.items():
            run = measure(argv, cwd=ROOT)
            samples[key].append(run.wall)
            if key != "import_app":
                network.update(result_of(run)["network"])
    return ColdStart(*(statistics.median(samples[key]) for key in argvs), sorted(network))


class Pair(NamedTuple):
    videos: list
    seconds: float
    rss_mib: float


def two_at_once(full_hd, runs, warmup):
    """Two 1080p videos through extract_frames at once in one warm process, or None."""
    if not full_hd:
        return None
    chosen = (full_hd * 2)[:2]
    argv = [PYTHON, os.path.join(HERE, "warm.py"), "--pair", "--warmup", warmup, *chosen]
    env = {**image_env(), "CONCURRENCY_LIMIT": str(PAIR_CONCURRENCY)}
    measured = [measure(argv, env=env) for _ in range(runs)]
    return Pair([os.path.basename(v) for v in chosen], statistics.median(result_of(r)["seconds"][0] for r in measured),
                max(r.rss_mib for r in measured))


def template_memory_mb():
    """MemorySize's default in template.yaml (its Parameters section)."""
    with open(TEMPLATE) as f:
        text = f.read()
    match = re.search(r"^  MemorySize:\n(?:    .*\n)*?    Default: (\d+)", text, re.MULTILINE)
    if not match:
        fail(f"no MemorySize default in {TEMPLATE}")
    return int(match.group(1))


def cost_line(rows):
    """Lambda's bill for 1,000 one-minute videos, from the warm stage on the 1080p clips."""
    priced = [row for row in rows if TARGETS.get(row.name, Target(0)).full_hd]
    if not priced:
        return "cost: needs a 1080p clip in the run (reel_1080x1920, long_1080p)"
    per_video_second = sum(row.wall["warm"] for row in priced) / sum(row.seconds for row in priced)
    memory_mb = template_memory_mb()
    seconds_each = per_video_second * VIDEO_SECONDS_PRICED
    gb_s = VIDEOS_PRICED * seconds_each * memory_mb / 1024
    requests = VIDEOS_PRICED * PRICE_PER_REQUEST
    dollars = gb_s * PRICE_PER_GB_S + requests
    here = cpus.usable_cpus()
    lambda_vcpus = memory_mb / cpus.LAMBDA_MB_PER_VCPU
    scale = max(1.0, here / lambda_vcpus)
    return (f"cost (Lambda arm64, us-east-1 first tier: ${PRICE_PER_GB_S:.10f} per GB-s, "
            f"${PRICE_PER_REQUEST * 1_000_000:.2f} per 1M requests; "
            f"MemorySize {memory_mb} MB, template.yaml's default): the extraction stage takes "
            f"{per_video_second:.3f} s per video-second warm on {', '.join(r.name for r in priced)} -> "
            f"{VIDEOS_PRICED:,} videos of {VIDEO_SECONDS_PRICED} s = {seconds_each:.1f} s each, "
            f"{gb_s:,.0f} GB-s, ${gb_s * PRICE_PER_GB_S:.2f} + ${requests:.4f} requests = ${dollars:.2f}. "
            f"Measured on {here} usable CPUs; Lambda at {memory_mb} MB has {lambda_vcpus:.2f} vCPU: "
            f"if CPU-bound, x{scale:.2f} = ${gb_s * scale * PRICE_PER_GB_S + requests:.2f}")


def check(rows, cold, pair):
    """The targets missed, each saying when the bound misses it too."""
    missed = []
    for row in rows:
        r, target = ratios(row), TARGETS.get(row.name)
        if target and r.warm_to_floor > target.warm_to_floor:
            beyond = (f" (out of reach on this stack: in-process bound/ffmpeg {r.inbound_to_floor:.2f})"
                      if r.inbound_to_floor > target.warm_to_floor else
                      f" (out of reach of exact cuts on this stack: exact bound/ffmpeg {r.exact_to_floor:.2f})"
                      if r.exact_to_floor > target.warm_to_floor else "")
            missed.append(f"{row.name}: warm/ffmpeg {r.warm_to_floor:.2f} > {target.warm_to_floor}{beyond}")
        if row.seconds >= SPEEDUP_MIN_SECONDS and r.psd_to_ours < MIN_SPEEDUP_VS_PSD:
            beyond = (f" (out of reach on this stack: PySceneDetect/bound {r.psd_to_bound:.2f})"
                      if r.psd_to_bound < MIN_SPEEDUP_VS_PSD else
                      f" (out of reach of exact cuts on this stack: PySceneDetect/exact bound {r.psd_to_xbound:.2f})"
                      if r.psd_to_xbound < MIN_SPEEDUP_VS_PSD else "")
            missed.append(f"{row.name}: only {r.psd_to_ours:.2f}x faster than PySceneDetect "
                          f"(< {MIN_SPEEDUP_VS_PSD}x){beyond}")
        if target and target.peak_rss_mib:
            for key, bound_key, exact_key in (("ours", "bound", "xbound"), ("warm", "inbound", "exact")):
                if row.rss[key] > target.peak_rss_mib:
                    bound_rss, exact_rss = row.rss[bound_key], row.rss[exact_key]
                    beyond = (f" (out of reach on this stack: the bound's {bound_rss:.0f} MiB)"
                              if bound_rss > target.peak_rss_mib else
                              f" (out of reach of exact cuts on this stack: the exact bound's {exact_rss:.0f} MiB)"
                              if exact_rss > target.peak_rss_mib else
                              f" (the bound's {bound_rss:.0f} MiB, the exact bound's {exact_rss:.0f})")
                    missed.append(f"{row.name}: {key} peak RSS {row.rss[key]:.0f} MiB > {target.peak_rss_mib} MiB{beyond}")
    if cold.handler > MAX_COLD_START_S:
        beyond = (f" (out of reach on this stack: the libraries alone {cold.libraries:.2f}s)"
                  if cold.libraries > MAX_COLD_START_S else "")
        missed.append(f"cold start with the clients {cold.handler:.2f}s > {MAX_COLD_START_S}s{beyond}")
    if cold.network:
        missed.append(f"creating the clients tried the network: {'; '.join(cold.network)}")
    if pair and pair.rss_mib > MAX_PAIR_RSS_MIB:
        missed.append(f"two 1080p at once: peak RSS {pair.rss_mib:.0f} MiB > {MAX_PAIR_RSS_MIB} MiB")
    return missed


def print_report(runs, rows, cold, pair):
    print(f"\nmedian of {runs} runs, wall seconds\n")
    print("| video | ours s | ffmpeg decode s | PySceneDetect s | ours/ffmpeg | PySceneDetect/ours "
          "| ours peak RSS MiB | PySceneDetect peak RSS MiB | middle s | middle/ffmpeg | bound s | bound/ffmpeg "
          "| exact bound s | PySceneDetect/exact bound |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        w, r = row.wall, ratios(row)
        print(f"| {row.name} | {w['ours']:.2f} | {w['floor']:.2f} | {w['psd']:.2f} | {r.ours_to_floor:.2f} "
              f"| {r.psd_to_ours:.2f} | {row.rss['ours']:.0f} | {row.rss['psd']:.0f} | {w['middle']:.2f} "
              f"| {r.middle_to_floor:.2f} | {w['bound']:.2f} | {r.bound_to_floor:.2f} | {w['xbound']:.2f} "
              f"| {r.psd_to_xbound:.2f} |")
    print("\nwarm, in-process (a process that has done one video): the handler's extraction stage\n")
    print("| video | video s | warm s | warm/ffmpeg | target | in-process bound s | in-process bound/ffmpeg "
          "| exact bound s | exact bound/ffmpeg | warm peak RSS MiB | in-process bound peak RSS MiB "
          "| exact bound peak RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        w, r, target = row.wall, ratios(row), TARGETS.get(row.name)
        limit = f"<= {target.warm_to_floor:.2f}" if target else "-"
        print(f"| {row.name} | {row.seconds:.1f} | {w['warm']:.2f} | {r.warm_to_floor:.2f} | {limit} "
              f"| {w['inbound']:.2f} | {r.inbound_to_floor:.2f} | {w['exact']:.2f} | {r.exact_to_floor:.2f} "
              f"| {row.rss['warm']:.0f} | {row.rss['inbound']:.0f} | {row.rss['exact']:.0f} |")
    print(f"\ncold start (median of {COLD_RUNS}): import app {cold.import_app:.2f}s; the handler's with the boto3 "
          f"and supabase clients {cold.handler:.2f}s (target <= {MAX_COLD_START_S}s); the libraries alone "
          f"{cold.libraries:.2f}s; network tried while creating the clients: {', '.join(cold.network) or 'none'}")
    if pair:
        print(f"two 1080p at once ({' + '.join(pair.videos)}, CONCURRENCY_LIMIT={PAIR_CONCURRENCY}, two threads "
              f"of one warm process): {pair.seconds:.2f}s, peak RSS {pair.rss_mib:.0f} MiB "
              f"(target <= {MAX_PAIR_RSS_MIB} MiB)")
    else:
        print("two 1080p at once: needs a 1080p clip in the run (reel_1080x1920, long_1080p)")
    print(cost_line(rows))
    here = cpus.usable_cpus()
    quota = cpus.cgroup_cpu_quota()
    import decode  # here only: PyAV and OpenCV stay out of the timing parent's start-up

    print(f"cpus: usable_cpus() {here} (os.cpu_count() {os.cpu_count()}, cgroup quota "
          f"{'none' if quota is None else f'{quota:g}'}); decoder threads (decode.decode_threads): "
          f"{decode.decode_threads(1920, 1080)} at 1080p, {decode.decode_threads(3840, 2160)} at 4K")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="rounds per video (the median is reported)")
    parser.add_argument("--only", nargs="*", help="substrings of video names to time")
    parser.add_argument("--uhd-seconds", type=int, default=clips.UHD_SECONDS,
                        help=f"length of the generated 4K 60 fps clip (default {clips.UHD_SECONDS})")
    args = parser.parse_args()
    need_tools()
    env_file = os.path.join(ROOT, ".env")
    if os.path.exists(env_file):
        print(f"note: {env_file} is read by app.py: its settings apply to ours, middle and warm "
              "(its storage and Supabase settings are replaced by dummies in the warm processes)", file=sys.stderr)
    targets = videos(args.only, args.uhd_seconds)
    if not targets:
        fail(f"no video's name contains any of {args.only}")
    warmup = generated(WARMUP)
    libraries = library_files()
    print(f"note: dropped the page cache of {settle_library_pages(libraries)} shared libraries "
          "(see settle_library_pages)", file=sys.stderr)
    busy = processes_mapping(libraries)
    if busy:
        print(f"warning: processes {', '.join(map(str, busy))} map these libraries, whose pages stay cached as "
              "they were: peak RSS may count more of them (stop those processes for a settled run)", file=sys.stderr)
    cold = cold_start()
    rows = []
    for video in targets:
        row = time_video(video, args.runs, warmup)
        rows.append(row)
        print(f"  {row.name}: " + ", ".join(f"{key} {value:.2f}s" for key, value in row.wall.items()), file=sys.stderr)
    full_hd = [v for v in targets if TARGETS.get(os.path.basename(v), Target(0)).full_hd]
    pair = two_at_once(full_hd, args.runs, warmup)
    print_report(args.runs, rows, cold, pair)
    missed = check(rows, cold, pair)
    if missed:
        print("\ntargets missed:\n  " + "\n  ".join(missed))
        return 1
    print(f"\ntargets met: warm/ffmpeg within each clip's target, >= {MIN_SPEEDUP_VS_PSD}x faster than PySceneDetect "
          f"on clips of {SPEEDUP_MIN_SECONDS} s or more, the handler's cold start <= {MAX_COLD_START_S}s, "
          f"peak RSS within the limits (two 1080p at once <= {MAX_PAIR_RSS_MIB} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
