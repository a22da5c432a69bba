#!/usr/bin/env python3
"""Time the handler's extraction stage in a warm process: what Lambda bills per video.

Usage: warm.py [--runs N] [--warmup CLIP] VIDEO      VIDEO N times, one after another
       warm.py --pair [--warmup CLIP] VIDEO VIDEO    two videos at once, in CONCURRENCY_LIMIT threads

A Lambda container pays Python's start-up, the imports and the clients once; every video
after its first costs only the stages. This process first does what a container has done
before its second video: imports app, creates the S3 and Supabase clients (no network:
bench/handler_start.py checks it), and runs the extraction stage on CLIP (default: VIDEO
itself). Then it times `app.extract_frames(video, frames_dir)`: the handler's stage 4 as
process_video calls it, with the service's settings (config.py: the environment and .env)
and the deadline check (outside a record there is no deadline: the check is one call that
answers no). Each run writes into a fresh folder, removed after its timing.

`--pair` runs the two videos as lambda_handler runs a batch's records: a ThreadPoolExecutor
of CONCURRENCY_LIMIT workers, each record in a context of its own, timed together.

Prints one JSON line last: {"videos", "seconds": [...], "frames": [...], "concurrency"}.
Peak RSS is the parent's to read (os.wait4): it covers the clients and the warm-up too, as a
container's memory does.
"""

import argparse
import contextvars
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import lambda_env

lambda_env.apply()  # before config.py reads the environment

import app  # noqa: E402
import config  # noqa: E402


def extract_once(video):
    """app.extract_frames on `video` into a fresh folder; (seconds, frames written)."""
    workdir = tempfile.mkdtemp(prefix="bench-warm-")
    try:
        started = time.perf_counter()
        manifest = app.extract_frames(video, os.path.join(workdir, "frames"))
        return time.perf_counter() - started, len(manifest["frames"])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def warm_up(clip):
    app.s3()
    app.supabase()
    extract_once(clip)


def one_after_another(video, runs):
    timings = [extract_once(video) for _ in range(runs)]
    return {"videos": [os.path.basename(video)], "seconds": [s for s, _ in timings],
            "frames": [n for _, n in timings], "concurrency": 1}


def at_once(videos):
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=config.CONCURRENCY_LIMIT) as pool:
        futures = [pool.submit(contextvars.Context().run, extract_once, v) for v in videos]
        results = [f.result() for f in futures]
    return {"videos": [os.path.basename(v) for v in videos], "seconds": [time.perf_counter() - started],
            "each": [s for s, _ in results], "frames": [n for _, n in results],
            "concurrency": config.CONCURRENCY_LIMIT}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("videos", nargs="+")
    parser.add_argument("--runs", type=int, default=1, help="timed runs of VIDEO (not with --pair)")
    parser.add_argument("--warmup", help="the video the process does first (default: the first VIDEO)")
    parser.add_argument("--pair", action="store_true", help="the videos at once, CONCURRENCY_LIMIT threads")
    args = parser.parse_args(argv)
    if args.pair != (len(args.videos) > 1):
        parser.error("one VIDEO, or --pair and two or more")
    warm_up(args.warmup or args.videos[0])
    result = at_once(args.videos) if args.pair else one_after_another(args.videos[0], args.runs)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
