"""The benchmark's generated clips, built once and cached in bench/out/.

make_synthetic.py (../shared/bench) builds its own kinds: the 720p clip, the reel and the
10-minute 1080p clip, all with B-frames (x264 veryfast defaults). Built here with its
scene sources and its `build_sequence` (hard cuts, exact ground truth in NAME.json), but
encoded as phones do, without B-frames:

  baseline_720p   the same 30 s, 1280x720, 30 fps scenes as short_720p (same seed), encoded
                  `-profile:v baseline -preset veryfast` (no B-frames, no CABAC): the
                  difference between the two rows is the stream's structure alone.
  uhd_4k60        3840x2160, 60 fps, UHD_SECONDS (30 s, 1800 frames) of hard-cut scenes,
                  `-preset superfast -bf 0` (High profile with CABAC and the loop filter, as
                  phones record 4K; ultrafast would drop both and decode atypically cheaply).
                  The scenes are rendered at 960x540 and scaled up once (bicubic): the
                  sources at 4K took 77 s of filtering for 4 s of video, these 5 s for 10 s. On a
                  loaded 2-core machine 4 s built in 39 s: 30 s takes a few minutes. 30 s,
                  so that the PySceneDetect target (clips of 30 s or more) covers 4K too.
  warmup_360p     3 s, 640x360, 30 fps, three scenes, x264 defaults: the video a warm process
                  has already done before the one timed (bench/warm.py, bench/bound.py --warm).

Each clip's NAME.json records the recipe; a clip whose recipe changed (another
--uhd-seconds) is built again.
"""

import importlib.util
import json
import os
import random
import subprocess
import sys
from typing import NamedTuple

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.environ.get("SHARED_DIR", os.path.join(os.path.dirname(HERE), "..", "shared"))
GENERATOR = os.path.join(SHARED, "bench", "make_synthetic.py")
UHD_SECONDS = 30


class Recipe(NamedTuple):
    width: int
    height: int
    fps: int
    seconds: int
    cuts: int
    seed: int
    encode: tuple  # x264 options after -c:v libx264
    render: tuple | None = None  # (width, height) to render the scenes at, scaled up after


def recipes(uhd_seconds=UHD_SECONDS):
    return {
        # seed 1, 10 cuts: make_synthetic's short_720p, scene for scene
        "baseline_720p": Recipe(1280, 720, 30, 30, 10, 1, ("-preset", "veryfast", "-profile:v", "baseline")),
        "uhd_4k60": Recipe(3840, 2160, 60, uhd_seconds, max(1, uhd_seconds // 2), 5,
                           ("-preset", "superfast", "-bf", "0"), render=(960, 540)),
        "warmup_360p": Recipe(640, 360, 30, 3, 2, 9, ("-preset", "veryfast")),
    }


def build(name, out_dir, uhd_seconds=UHD_SECONDS):
    """The path of clip `name` in out_dir, built first if absent or of another recipe."""
    recipe = recipes(uhd_seconds)[name]
    path = os.path.join(out_dir, name + ".mp4")
    sidecar = os.path.join(out_dir, name + ".json")
    if os.path.exists(path) and _recorded_recipe(sidecar) == list(map(_jsonable, recipe)):
        return path
    if not os.path.exists(GENERATOR):
        raise FileNotFoundError(f"{GENERATOR} is absent: cannot build the generated benchmark videos")
    synthetic = _load_generator()
    rng = random.Random(recipe.seed)
    # The same lengths make_synthetic.v_plain draws (scenes of 1 s or more, jittered).
    lengths = synthetic.rand_lengths(rng, recipe.seconds * recipe.fps, recipe.cuts + 1, recipe.fps)
    width, height = recipe.render or (recipe.width, recipe.height)
    graph, label, truth = synthetic.build_sequence(width, height, lengths, [None] * recipe.cuts, rng, fps=recipe.fps)
    if recipe.render:
        graph += f";[{label}]scale={recipe.width}:{recipe.height}:flags=bicubic,format=yuv420p[big]"
        label = "big"
    os.makedirs(out_dir, exist_ok=True)
    script = os.path.join(out_dir, name + ".filtergraph")
    with open(script, "w") as f:
        f.write(graph)
    partial = path + ".part.mp4"
    subprocess.run(["ffmpeg", "-y", "-hide_banner", "-loglevel", "error", "-filter_complex_script", script,
                    "-map", f"[{label}]", "-c:v", "libx264", *recipe.encode, "-pix_fmt", "yuv420p",
                    "-movflags", "+faststart", partial], check=True)
    os.replace(partial, path)
    os.remove(script)
    truth.update(video=name + ".mp4", fps=recipe.fps, width=recipe.width, height=recipe.height,
                 cut_times=[round(c / recipe.fps, 6) for c in truth["cuts"]], recipe=list(map(_jsonable, recipe)),
                 encode="libx264 " + " ".join(recipe.encode), generated_by="bench/clips.py")
    with open(sidecar, "w") as f:
        json.dump(truth, f, indent=1)
    return path


def _jsonable(value):
    return list(value) if isinstance(value, tuple) else value


def _recorded_recipe(sidecar):
    try:
        with open(sidecar) as f:
            return json.load(f).get("recipe")
    except (OSError, ValueError):
        return None


def _load_generator():
    spec = importlib.util.spec_from_file_location("make_synthetic", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def duration(path):
    """The video stream's duration in seconds (ffprobe: the container's, where the stream has none)."""
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                          "stream=duration:format=duration", "-of", "json", path],
                         check=True, capture_output=True, text=True).stdout
    info = json.loads(out)
    for value in ([s.get("duration") for s in info.get("streams", [])] + [info.get("format", {}).get("duration")]):
        try:
            return float(value)
        except (TypeError, ValueError):
            continue
    return 0.0


if __name__ == "__main__":
    # python3 bench/clips.py OUT_DIR NAME [UHD_SECONDS]: build one clip (prints its path)
    print(build(sys.argv[2], sys.argv[1], int(sys.argv[3]) if len(sys.argv) > 3 else UHD_SECONDS))
