#!/usr/bin/env python3
"""Time `python3 app.py V -o tmp` side by side with the floor and the alternative.

For each video, in the same run and interleaved (so machine load hits all alike):
  ours   python3 app.py V -o TMP                                    (the whole job)
  best   python3 app.py V -o TMP --frame-pick best                  (the same, picking sharp frames)
  floor  ffmpeg -i V -f null -                                      (just decoding it)
  psd    scenedetect -i V -o TMP detect-content save-images -n 1    (PySceneDetect doing the job)
Reports the median wall time of --runs runs, peak RSS, and the ratios ours/floor and
ours/psd, then checks the targets and exits 1 if one is missed, 2 if a tool is missing.

Videos: ../shared/bench/make_synthetic.py builds a 720p clip and a 1080x1920 reel with
known cuts (cached in bench/out/); the clips in ../shared/videos are added when present.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED = os.environ.get("SHARED_DIR", os.path.join(os.path.dirname(ROOT), "shared"))
OUT = os.path.join(HERE, "out")
PYTHON = sys.executable
SCENEDETECT = os.path.join(os.path.dirname(sys.executable), "scenedetect")
SYNTHETIC = ["short_720p", "reel_1080x1920"]

# Targets of the extraction-core issue: not slower than PySceneDetect's save-images on
# any video, and peak RSS within 250 MiB on the 1080x1920 reel.
MAX_RATIO_TO_PSD = 1.0
MAX_RSS_MIB = {"reel_1080x1920.mp4": 250}


def fail(message, code=2):
    print(f"bench: {message}", file=sys.stderr)
    sys.exit(code)


def need_tools():
    if not shutil.which("ffmpeg"):
        fail("ffmpeg is missing (Debian package ffmpeg; `make bench` installs it)")
    if not os.path.exists(SCENEDETECT):
        fail(f"{SCENEDETECT} is missing (pip install -r requirements.txt; `make bench` does it)")


def videos(only):
    found = []
    generator = os.path.join(SHARED, "bench", "make_synthetic.py")
    for name in SYNTHETIC:
        path = os.path.join(OUT, name + ".mp4")
        if not os.path.exists(path):
            if not os.path.exists(generator):
                fail(f"{generator} is absent: cannot build the synthetic benchmark videos")
            print(f"building {name} (once; cached in bench/out/) ...", file=sys.stderr)
            subprocess.run([PYTHON, generator, OUT, "--only", name], check=True, stdout=subprocess.DEVNULL)
        found.append(path)
    clips = os.path.join(SHARED, "videos")
    if os.path.isdir(clips):
        found += sorted(os.path.join(clips, n) for n in os.listdir(clips) if n.endswith(".mp4"))
    else:
        print(f"note: {clips} is absent; timing the synthetic videos only", file=sys.stderr)
    if only:
        found = [p for p in found if any(o in os.path.basename(p) for o in only)]
    return found


def measure(argv):
    """Wall seconds and peak RSS (MiB) of one run of argv."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        fail(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.read().decode()[-500:]}", code=1)
    return wall, usage.ru_maxrss / 1024


def commands(video, tmp):
    return {
        "ours": [PYTHON, os.path.join(ROOT, "app.py"), video, "-o", os.path.join(tmp, "ours"), "--frame-pick", "middle"],
        "best": [PYTHON, os.path.join(ROOT, "app.py"), video, "-o", os.path.join(tmp, "best"), "--frame-pick", "best"],
        "floor": ["ffmpeg", "-v", "error", "-nostdin", "-i", video, "-f", "null", "-"],
        "psd": [SCENEDETECT, "-q", "-i", video, "-o", os.path.join(tmp, "psd"), "detect-content", "save-images", "-n", "1"],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="runs per command (median is reported)")
    parser.add_argument("--only", nargs="*", help="substrings of video names to time")
    args = parser.parse_args()
    need_tools()
    rows, missed = [], []
    for video in videos(args.only):
        name = os.path.basename(video)
        samples = {"ours": [], "best": [], "floor": [], "psd": []}
        rss = dict.fromkeys(samples, 0.0)
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
                for key, argv in commands(video, tmp).items():
                    wall, peak = measure(argv)
                    samples[key].append(wall)
                    rss[key] = max(rss[key], peak)
        wall = {key: statistics.median(values) for key, values in samples.items()}
        row = (name, wall["ours"], wall["floor"], wall["psd"], wall["ours"] / wall["floor"],
               wall["ours"] / wall["psd"], rss["ours"], rss["psd"], wall["best"], wall["best"] / wall["floor"])
        rows.append(row)
        print(f"  {name}: ours {wall['ours']:.2f}s, floor {wall['floor']:.2f}s, psd {wall['psd']:.2f}s", file=sys.stderr)
        if row[5] > MAX_RATIO_TO_PSD:
            missed.append(f"{name}: ours/psd {row[5]:.2f} > {MAX_RATIO_TO_PSD}")
        if name in MAX_RSS_MIB and rss["ours"] > MAX_RSS_MIB[name]:
            missed.append(f"{name}: peak RSS {rss['ours']:.0f} MiB > {MAX_RSS_MIB[name]} MiB")

    print(f"\nmedian of {args.runs} runs, wall seconds; ratios are ours / other\n")
    print("| video | ours s | ffmpeg decode s | PySceneDetect s | ours/ffmpeg | ours/PySceneDetect "
          "| ours peak RSS MiB | PySceneDetect peak RSS MiB | best s | best/ffmpeg |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print("| {} | {:.2f} | {:.2f} | {:.2f} | {:.2f} | {:.2f} | {:.0f} | {:.0f} | {:.2f} | {:.2f} |".format(*row))
    if missed:
        print("\ntargets missed:\n  " + "\n  ".join(missed))
        return 1
    print(f"\ntargets met: ours <= {MAX_RATIO_TO_PSD}x PySceneDetect on every video; peak RSS limits hold")
    return 0


if __name__ == "__main__":
    sys.exit(main())
