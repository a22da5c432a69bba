"""How many CPUs this process may really use, for sizing thread pools (frame threads).

`os.cpu_count()` counts the machine's CPUs, not this process's share of them. Three
things give a process fewer, and `usable_cpus` takes the least of them (at least 1):

- its affinity mask (`taskset`, `docker --cpuset-cpus`): `os.sched_getaffinity(0)`;
- its cgroup's CPU quota (`docker --cpus`, Kubernetes and ECS CPU limits): cgroup v2
  `cpu.max` ("QUOTA PERIOD", or "max"), cgroup v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`
  as the fallback, read on the process's own cgroup and every ancestor (a parent's quota
  binds its children too), rounded up: 1.5 CPUs of quota keep two threads busy;
- on Lambda, its memory size: Lambda gives one vCPU's worth of time per 1,769 MB
  (`AWS_LAMBDA_FUNCTION_MEMORY_SIZE`) while showing the microVM's 2 to 6 vCPUs, with no
  quota a cgroup file would show. At the template's 3008 MB that is 2; at 1024 MB, 1.

Threads beyond this number only wait for their turn, and each frame thread holds its
own buffers (about 7 MiB at 1080p).

`root` is where the file system is read from (`/`), so a test can hand it fake cgroup
files; `environ` is the environment (`os.environ`).
"""

import math
import os

LAMBDA_MB_PER_VCPU = 1769


def usable_cpus(root: str = "/", environ: dict | None = None) -> int:
    """The CPUs this process may use: min(affinity, cgroup quota, Lambda's share), >= 1."""
    environ = os.environ if environ is None else environ
    limits = [_affinity()]
    quota = cgroup_cpu_quota(root)
    if quota is not None:
        limits.append(math.ceil(quota))
    memory_mb = environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "")
    if memory_mb.isdigit() and int(memory_mb) > 0:
        limits.append(math.ceil(int(memory_mb) / LAMBDA_MB_PER_VCPU))
    return max(1, min(limits))


def _affinity() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def cgroup_cpu_quota(root: str = "/") -> float | None:
    """The tightest CPU quota (in CPUs) on this process's cgroup path, or None if none is set.
    cgroup v2 when its files are there, else cgroup v1."""
    paths = _cgroup_paths(root)
    quotas = [q for d in _with_ancestors(os.path.join(root, "sys/fs/cgroup"), paths.get("v2", "/"))
              if (q := _v2_quota(d)) is not None]
    if not quotas:
        for mount in ("cpu,cpuacct", "cpu"):
            base = os.path.join(root, "sys/fs/cgroup", mount)
            quotas += [q for d in _with_ancestors(base, paths.get("v1", "/")) if (q := _v1_quota(d)) is not None]
            if os.path.isdir(base):
                break  # cpu is usually a link to cpu,cpuacct: read one of them
    return min(quotas) if quotas else None


def _cgroup_paths(root):
    """The process's cgroup path in the v2 hierarchy ("0::PATH") and in v1's cpu
    controller ("N:cpu,cpuacct:PATH"), from <root>/proc/self/cgroup."""
    paths = {}
    try:
        with open(os.path.join(root, "proc/self/cgroup")) as f:
            lines = f.read().splitlines()
    except OSError:
        return paths
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and controllers == "":
            paths["v2"] = path
        elif "cpu" in controllers.split(","):
            paths["v1"] = path
    return paths


def _with_ancestors(base, path):
    """base/path and each of its parents up to base itself, those that exist. Inside a
    container the process's path is often not mounted (its own cgroup is the root)."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:  # the cgroup lies outside this namespace's view: only base is ours
        parts = []
    dirs = [os.path.join(base, *parts[:n]) for n in range(len(parts), -1, -1)]
    return [d for d in dirs if os.path.isdir(d)]


def _v2_quota(folder):
    text = _read(os.path.join(folder, "cpu.max"))
    if text is None:
        return None
    fields = text.split()
    if len(fields) != 2 or fields[0] == "max":
        return None
    return _ratio(fields[0], fields[1])


def _v1_quota(folder):
    quota, period = _read(os.path.join(folder, "cpu.cfs_quota_us")), _read(os.path.join(folder, "cpu.cfs_period_us"))
    if quota is None or period is None:
        return None
    return _ratio(quota, period)  # -1: no quota


def _ratio(quota, period):
    try:
        quota, period = int(quota), int(period)
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


if __name__ == "__main__":
    print(usable_cpus())
