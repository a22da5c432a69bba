#!/usr/bin/env python3
"""The least the service can cost on this stack: decode the frames that an exact scene
detection cannot do without, and nothing else.

Usage: bound.py VIDEO                                   whole process: app.py's start-up + the decode
       bound.py --exact VIDEO                           whole process: app.py's start-up + the exact bound
       bound.py --warm [--runs N] [--warmup CLIP] VIDEO  in-process: the decode alone, timed N times in a
                                                        process that has created the S3 and Supabase
                                                        clients and decoded CLIP first; prints JSON
       bound.py --warm --exact ...                       in-process: the exact bound (below)

Cuts that equal PySceneDetect's frame for frame need every frame: a skipped non-reference
frame can hold a cut (or a flash whose min_scene_len merge moves a later cut) that no
decoded frame around it shows (tests/test_exact.py). So the bound of an exact pipeline is
a full decode with the service's decoder settings (`decode.open_video`: frame threads,
`decode.decode_every`), no conversion, no shrink, no scoring, no JPEGs. (Before exactness
it was the reference frames alone, `skip_frame = NONREF`: 0.6-0.8x of this on x264 files.)

The exact bound (`--exact`) adds what PySceneDetect's own cuts cannot do without either:
each frame made into the image SceneManager scores, bit for bit (decode.shrinker, as the
service makes it: the pixels or rows SceneManager's INTER_LINEAR resize reads, converted
by swscale, where decode._Sampler may; else the whole frame converted, then the resize;
its small planes cost 0.02 ms a frame more) and scored by ContentDetector (detect.ScoringDetector), on the
service's two threads as pass 1 runs them (decoding on decode.Ahead's, the rest on the
scanning thread). No signals, no pool, no cut filters, no JPEGs: the least any pipeline
whose cuts are PySceneDetect's to the frame costs on Python, PyAV and PySceneDetect.

`make bench` times both beside ours: where the whole-process bound is below PySceneDetect's
speed-up target, or the in-process bound over a warm target's ratio to ffmpeg, the target
is out of reach of any pipeline on Python, PyAV and PySceneDetect on that machine, not
only of ours.

The in-process mode holds what bench/warm.py's process holds before its timed video (the
clients, made with lambda_env's dummy settings, and a warm-up), so its peak RSS compares
with the warm stage's. It prints one JSON line: {"video", "seconds": [...], "decoded", "frames"}.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

if "--warm" in sys.argv:  # the settings the warm process creates its clients with, before config.py reads them
    import lambda_env

    lambda_env.apply()

import app  # (the same start-up as `python3 app.py V`)
import decode
import detect


def open_like_the_service(path):
    """The container and stream, opened with the service's decoder settings (frame threads:
    DECODE_THREADS). The one place this file knows where the service's opener lives."""
    return decode.open_video(path)


def decode_all(path):
    """Decode every frame of `path`'s video stream; (decoded, declared frames)."""
    container, stream = open_like_the_service(path)
    decoded = 0
    with container:
        for _ in decode.decode_every(container, stream):
            decoded += 1
    return decoded, stream.frames


def score_all(path):
    """decode_all, each frame also made into SceneManager's image and scored."""
    container, stream = open_like_the_service(path)
    scorer, decoded = detect.ScoringDetector(), 0
    rate_timecode = detect.FrameTimecode(0, decode.frame_rate(stream))
    depth = decode.ahead_depth(stream.codec_context.width, stream.codec_context.height)
    frames, shrink = decode.Ahead(decode.decode_every(container, stream), depth=depth), decode.shrinker()
    with container, frames:
        for index, frame in frames:
            scorer.process_frame(detect.FrameTimecode(index, rate_timecode), shrink(frame).bgr)
            decoded += 1
    return decoded, stream.frames


def warm(path, runs, warmup, exact=False):
    run = score_all if exact else decode_all
    app.s3()  # what warm.py's process holds before its timed video
    app.supabase()
    run(warmup or path)
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        decoded, frames = run(path)
        seconds.append(time.perf_counter() - started)
    return {"video": os.path.basename(path), "seconds": seconds, "decoded": decoded, "frames": frames}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video")
    parser.add_argument("--warm", action="store_true", help="time the decode in-process, after a warm-up")
    parser.add_argument("--runs", type=int, default=1, help="timed decodes (--warm)")
    parser.add_argument("--warmup", help="the video decoded first (--warm; default: VIDEO itself)")
    parser.add_argument("--exact", action="store_true", help="the exact bound: every frame scored too")
    args = parser.parse_args(argv)
    if args.warm:
        print(json.dumps(warm(args.video, args.runs, args.warmup, args.exact)), flush=True)
        return
    decoded, frames = (score_all if args.exact else decode_all)(args.video)
    print(f"{os.path.basename(args.video)}: decoded {decoded} of {frames or '?'} frames")


if __name__ == "__main__":
    main()
