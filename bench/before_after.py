#!/usr/bin/env python3
"""Make the README's before/after contact sheets of FRAME_PICK (docs/frame_pick_*.jpg).

A generated video of four scenes whose middles are bad in the usual ways: a fade through
black, a motion blur, a flat grey frame; then the same extraction with FRAME_PICK=middle
and with FRAME_PICK=best.
"""

import os
import shutil
import sys
import tempfile

import cv2

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

from media import make_video  # noqa: E402

import extract  # noqa: E402


def spoil(number, image):
    scene, offset = divmod(number, 50)
    if scene == 0 and 18 <= offset < 32:
        return image * 0  # a fade through black
    if scene in (1, 3) and 15 <= offset < 35:
        return cv2.GaussianBlur(image, (0, 0), 7)  # motion blur
    if scene == 2 and 22 <= offset < 28:
        return image * 0 + 128  # a flat grey frame
    return image


def main():
    out = os.path.join(ROOT, "docs")
    os.makedirs(out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        video = os.path.join(tmp, "spoiled.mp4")
        make_video(video, [50, 50, 50, 50], width=480, height=270, touch=spoil)
        for pick in ("middle", "best"):
            folder = os.path.join(tmp, pick)
            # ContentDetector's scenes (DETECT_GRADUAL=false): the fade and the grey frame stay inside scenes.
            extract.extract(video, folder, extract.Settings(frame_pick=pick, min_scene_len=3, frame_pick_window=0.6,
                                                            detect_gradual=False))
            shutil.copy(os.path.join(folder, "contact_sheet.jpg"), os.path.join(out, f"frame_pick_{pick}.jpg"))
            print(f"docs/frame_pick_{pick}.jpg")


if __name__ == "__main__":
    main()
