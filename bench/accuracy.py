#!/usr/bin/env python3
"""How well are scenes found? F1 of our cuts against exact ground truth.

Builds synthetic videos with ../shared/bench/make_synthetic.py (hard cuts, dissolves,
white flashes, a single scene, variable frame rate, rotation; cached in bench/out/),
detects cuts per method (PySceneDetect's ContentDetector through its own API, with its
OpenCV and its PyAV backend, our
PySceneDetect-exact DETECT_GRADUAL=false, the default) and scores them with
../shared/bench/score_cuts.py (±2 frames, transitions matched anywhere in their span,
false cuts on flash frames counted apart). Then the shared real clips: each method's
cuts, F1 against PySceneDetect's goldens, and every cut the default adds, with a strip
of the frames around it saved (--strips). Prints one row per video and method; exits 1
when PySceneDetect-exact differs from ContentDetector, 2 when the generator or scorer
is missing.

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
# PySceneDetect's own ContentDetector (its Python API: scenedetect.detect), our
# DETECT_GRADUAL=false (PySceneDetect-exact: must equal it) and the default
# (DETECT_GRADUAL=true: flash cuts dropped, dissolves, fades and wipes found).
METHODS = {
    "ContentDetector": "opencv",  # PySceneDetect's default backend, as `scenedetect detect-content` runs
    "ContentDetector (PyAV)": "pyav",  # the same, decoded by PyAV as the service decodes
    "PySceneDetect-exact": {"flash_filter": False, "gradual": False},
    "default": {"flash_filter": True, "gradual": True},
}
KINDS = ["short_720p", "dissolves_720p", "flashes_720p", "single_scene_720p", "vfr_720p", "rotated_1080p"]
# The shared real clips and PySceneDetect 0.7.2's ContentDetector goldens (../shared/videos/README.md).
CLIPS = {"testvideo.mp4": [30, 180, 394], "counter.mp4": [], "fades.mp4": [], "bigbuckbunny.mp4": None}
STRIP = 5  # frames of a strip around a cut the default adds on a real clip
sys.path.insert(0, ROOT)


def pyscenedetect_cuts(video, threshold, min_scene_len, backend):
    from scenedetect import ContentDetector
    from scenedetect import detect as scenedetect_detect

    import detect  # noqa: F401  (scenedetect imported the way the service imports it)

    scenes = scenedetect_detect(str(video), ContentDetector(threshold=threshold, min_scene_len=min_scene_len),
                                backend=backend)
    return [start.frame_num for start, _ in scenes[1:]], [start.get_seconds() for start, _ in scenes[1:]]


def cuts_by(method, video):
    import config
    import detect

    if isinstance(METHODS[method], str):
        frames, seconds = pyscenedetect_cuts(video, config.SCENE_THRESHOLD, config.MIN_SCENE_LEN, METHODS[method])
        return frames, dict(zip(frames, seconds, strict=True))  # cut -> its time, as detection.times is indexed
    detection = detect.detect(video, threshold=config.SCENE_THRESHOLD, min_scene_len=config.MIN_SCENE_LEN,
                              **METHODS[method])
    return detection.cuts, detection.times


def score(scorer, detected_path, cuts, times, truth):
    with open(detected_path, "w") as fh:
        json.dump({"cuts": cuts, **({"cut_times": [times[c] for c in cuts]} if times else {})}, fh)
    return json.loads(subprocess.run([sys.executable, scorer, detected_path, truth], check=True,
                                     capture_output=True, text=True).stdout)


def save_strip(video, cut, folder):
    """STRIP frames around `cut` (the cut in the middle), side by side, 256 wide each."""
    import cv2
    import numpy as np

    import decode

    wanted, tiles = range(max(0, cut - STRIP // 2), cut + STRIP // 2 + 1), []
    container, stream = decode.open_video(video)
    with container:
        for number, frame in enumerate(container.decode(stream)):
            if number in wanted:
                image = frame.to_ndarray(format="bgr24")
                tile = cv2.resize(image, (256, max(1, round(image.shape[0] * 256 / image.shape[1]))),
                                  interpolation=cv2.INTER_AREA)
                cv2.putText(tile, str(number), (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 255, 255), 2)
                tiles.append(tile)
            if number >= wanted[-1]:
                break
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{os.path.splitext(os.path.basename(video))[0]}-{cut}.png")
    cv2.imwrite(path, np.hstack(tiles))
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", help="kinds to score (default: all)")
    parser.add_argument("--strips", default=os.path.join(OUT, "strips"),
                        help="folder for a frame strip of each cut the default adds on a real clip")
    args = parser.parse_args()
    generator = os.path.join(SHARED, "bench", "make_synthetic.py")
    scorer = os.path.join(SHARED, "bench", "score_cuts.py")
    for tool in (generator, scorer):
        if not os.path.exists(tool):
            print(f"accuracy: {tool} is absent", file=sys.stderr)
            return 2

    rows, cuts, at = [], {}, {}  # at: cut times (PySceneDetect numbers VFR frames by time)
    for kind in args.only or KINDS:
        video, truth = os.path.join(OUT, kind + ".mp4"), os.path.join(OUT, kind + ".json")
        if not os.path.exists(video):
            print(f"building {kind} (once; cached in bench/out/) ...", file=sys.stderr)
            subprocess.run([sys.executable, generator, OUT, "--only", kind], check=True, stdout=subprocess.DEVNULL)
        for method in METHODS:
            found, times = cuts_by(method, video)
            rows.append((kind, method, score(scorer, os.path.join(OUT, f"{kind}.{method}.detected.json"), found, times, truth)))
            cuts[kind, method], at[kind, method] = found, [round(times[c], 3) for c in found]
    print("\n| video | method | precision | recall | F1 | false cuts on flashes |")
    print("|---|---|---:|---:|---:|---:|")
    for kind, method, result in rows:
        print(f"| {kind} | {method} | {result.get('precision', 0):.2f} "
              f"| {result.get('recall', 0):.2f} | {result.get('f1', 0):.2f} | {result.get('fp_on_flash', 0)} |")

    clips = os.path.join(SHARED, "videos")
    added = []
    if os.path.isdir(clips):
        print("\n| real clip | method | cuts | F1 against the goldens |")
        print("|---|---|---|---:|")
        for name, golden in CLIPS.items():
            video = os.path.join(clips, name)
            if not os.path.exists(video):
                continue
            truth = os.path.join(OUT, f"{name}.golden.json")
            with open(truth, "w") as fh:
                json.dump({"cuts": golden or []}, fh)
            for method in METHODS:
                found, times = cuts_by(method, video)
                cuts[name, method], at[name, method] = found, [round(times[c], 3) for c in found]
                f1 = "—"
                if golden:
                    f1 = f"{score(scorer, os.path.join(OUT, f'{name}.{method}.detected.json'), found, None, truth)['f1']:.2f}"
                elif golden == []:
                    f1 = "1.00" if not found else "0.00"
                print(f"| {name} | {method} | {found} | {f1} |")
            for cut in sorted(set(cuts[name, "default"]) - set(cuts[name, "ContentDetector"])):
                added.append(f"{name} frame {cut}: {save_strip(video, cut, args.strips)}")
        print(f"\ncuts the default adds on the real clips: {len(added)}")
        for line in added:
            print("  " + line)

    checked = [key[0] for key in cuts if key[1] == "ContentDetector"]
    # The reference is PySceneDetect's default (OpenCV) backend, as tests/test_exact.py's.
    differ = [name for name in checked if at[name, "PySceneDetect-exact"] != at[name, "ContentDetector"]]
    print(f"\nPySceneDetect-exact equals PySceneDetect's ContentDetector (its default OpenCV backend), cut times: "
          f"{'no, on ' + ', '.join(differ) if differ else 'yes'}")
    backends = [name for name in checked if at[name, "ContentDetector"] != at[name, "ContentDetector (PyAV)"]]
    print(f"PySceneDetect's backends (OpenCV, PyAV) differ on: {', '.join(backends) or 'none'}")
    return 1 if differ else 0

if __name__ == "__main__":
    sys.exit(main())
