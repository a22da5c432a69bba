"""What make bench assumes of the machine before it times anything (bench/bench.py)."""

import os
import subprocess
import sys
import sysconfig

from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))

import lambda_env

import bench


def test_the_settled_page_cache_covers_every_library_the_service_maps():
    """settle_library_pages drops the page cache of library_files(): every shared object
    under this Python that a process of the service maps (the warm helpers' start-up:
    `import app` and the clients, with their dummy settings) must be among them, or its
    pages count in the peak RSS by what happened to the file before."""
    maps = subprocess.run(
        [sys.executable, "-c", "import app; app.s3(); app.supabase(); print(open('/proc/self/maps').read())"],
        cwd=ROOT, capture_output=True, text=True, check=True,
        env={**lambda_env.DUMMY, "PATH": os.environ.get("PATH", "")}).stdout
    mapped = {fields[5] for fields in map(str.split, maps.splitlines()) if len(fields) > 5 and ".so" in fields[5]}
    ours = {path for path in mapped if path.startswith((sys.prefix, sysconfig.get_config_var("LIBDIR")))}
    assert any("cv2" in path for path in ours) and any("libavcodec" in path for path in ours)
    listed = set(bench.library_files())
    assert ours <= listed, sorted(ours - listed)


def test_a_process_that_maps_the_libraries_is_named():
    """A process mapping the libraries keeps their pages in the page cache through the settle:
    the bench names it instead of measuring as though the settle had worked."""
    holder = subprocess.Popen([sys.executable, "-c", "import cv2, sys; print(flush=True); sys.stdin.read()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    libraries = bench.library_files()
    try:
        holder.stdout.readline()  # cv2 is mapped
        assert holder.pid in bench.processes_mapping(libraries)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert holder.pid not in bench.processes_mapping(libraries)
