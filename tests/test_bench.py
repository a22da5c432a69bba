"""What make bench assumes of the machine before it times anything (bench/bench.py)."""

import subprocess
import sys
import sysconfig

from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))

import bench  # noqa: E402


def test_the_settled_page_cache_covers_every_library_the_service_maps():
    """settle_library_pages drops the page cache of library_files(): every shared object
    under this Python that a process of the service maps must be among them, or its pages
    count in the peak RSS by what happened to the file before (bench.settle_library_pages)."""
    mapped = subprocess.run(
        [sys.executable, "-c", "import app, decode, detect; app.s3(); app.supabase(); "
         "print(open('/proc/self/maps').read())"],
        cwd=ROOT, capture_output=True, text=True, check=True, env={"AWS_DEFAULT_REGION": "us-east-1",
                                                                    "SUPABASE_URL": "http://127.0.0.1:9",
                                                                    "SUPABASE_KEY": "k", "PATH": ""}).stdout
    files = {line.split()[5] for line in mapped.splitlines() if len(line.split()) > 5 and ".so" in line.split()[5]}
    ours = {f for f in files if f.startswith((sys.prefix, sysconfig.get_config_var("LIBDIR")))}
    listed = set(bench.library_files())
    assert any("cv2" in f for f in ours) and any("libavcodec" in f for f in ours)
    assert ours <= listed, sorted(ours - listed)
