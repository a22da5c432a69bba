#!/usr/bin/env python3
"""How well are scenes found? F1 of our cuts against exact ground truth.

Builds synthetic videos with ../shared/bench/make_synthetic.py (hard cuts, dissolves,
white flashes, a single scene, variable frame rate, rotation; cached in bench/out/),
detects cuts with the extraction core at its current settings, and scores them with
../shared/bench/score_cuts.py (±2 frames, transitions matched anywhere in their span,
false cuts on flash frames counted apart). Prints one row per video; exits 2 when the
generator or scorer is missing.

    make accuracy                      # or: .venv/bin/python bench/accuracy.py [--only NAME ...]
"""

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED = os.environ.get("SHARED_DIR", os.path.join(os.path.dirname(ROOT), "shared"))
OUT = os.path.join(HERE, "out")
# ContentDetector alone (PySceneDetect's cuts), with our flash filter (the default), and
# with gradual transitions too (DETECT_GRADUAL=true).
METHODS = {
    "content": {"flash_filter": False, "gradual": False},
    "content+flash": {"flash_filter": True, "gradual": False},
    "content+flash+gradual": {"flash_filter": True, "gradual": True},
}
KINDS = ["short_720p", "dissolves_720p", "flashes_720p", "single_scene_720p", "vfr_720p", "rotated_1080p"]
sys.path.insert(0, ROOT)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", help="kinds to score (default: all)")
    args = parser.parse_args()
    generator = os.path.join(SHARED, "bench", "make_synthetic.py")
    scorer = os.path.join(SHARED, "bench", "score_cuts.py")
    for tool in (generator, scorer):
        if not os.path.exists(tool):
            print(f"accuracy: {tool} is absent", file=sys.stderr)
            return 2
    import config
    import detect

    rows = []
    for kind in args.only or KINDS:
        video, truth = os.path.join(OUT, kind + ".mp4"), os.path.join(OUT, kind + ".json")
        if not os.path.exists(video):
            print(f"building {kind} (once; cached in bench/out/) ...", file=sys.stderr)
            subprocess.run([sys.executable, generator, OUT, "--only", kind], check=True, stdout=subprocess.DEVNULL)
        for method, options in METHODS.items():
            detection = detect.detect(video, threshold=config.SCENE_THRESHOLD, min_scene_len=config.MIN_SCENE_LEN, **options)
            detected = os.path.join(OUT, f"{kind}.{method}.detected.json")
            with open(detected, "w") as fh:
                json.dump({"cuts": detection.cuts, "cut_times": [detection.times[c] for c in detection.cuts]}, fh)
            result = json.loads(subprocess.run([sys.executable, scorer, detected, truth], check=True,
                                               capture_output=True, text=True).stdout)
            rows.append((kind, method, result))
    print("\n| video | method | precision | recall | F1 | false cuts on flashes |")
    print("|---|---|---:|---:|---:|---:|")
    for kind, method, result in rows:
        print(f"| {kind} | {method} | {result.get('precision', 0):.2f} "
              f"| {result.get('recall', 0):.2f} | {result.get('f1', 0):.2f} | {result.get('fp_on_flash', 0)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
