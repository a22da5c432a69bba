"""usable_cpus: the CPUs a process may use, from fake cgroup files under a root folder.

The affinity mask is the real one of this process (it cannot be faked without changing
it), so every expectation is written as the least of it and what the files say.
"""

import os

from cpus import cgroup_cpu_quota, usable_cpus

AFFINITY = len(os.sched_getaffinity(0))


def write(root, relative, text):
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_no_cgroup_files_leave_the_affinity(tmp_path):
    assert cgroup_cpu_quota(str(tmp_path)) is None
    assert usable_cpus(str(tmp_path), environ={}) == AFFINITY


def test_cgroup_v2_quota_rounds_up(tmp_path):
    write(tmp_path, "proc/self/cgroup", "0::/\n")
    write(tmp_path, "sys/fs/cgroup/cpu.max", "150000 100000\n")
    assert cgroup_cpu_quota(str(tmp_path)) == 1.5
    assert usable_cpus(str(tmp_path), environ={}) == min(AFFINITY, 2)


def test_cgroup_v2_max_is_no_limit(tmp_path):
    write(tmp_path, "proc/self/cgroup", "0::/\n")
    write(tmp_path, "sys/fs/cgroup/cpu.max", "max 100000\n")
    assert cgroup_cpu_quota(str(tmp_path)) is None
    assert usable_cpus(str(tmp_path), environ={}) == AFFINITY


def test_a_quota_below_one_cpu_still_gives_one(tmp_path):
    write(tmp_path, "sys/fs/cgroup/cpu.max", "20000 100000\n")
    assert cgroup_cpu_quota(str(tmp_path)) == 0.2
    assert usable_cpus(str(tmp_path), environ={}) == 1


def test_a_parent_cgroup_binds_its_child(tmp_path):
    """The process's own cgroup allows 64 CPUs, its parent one: the parent wins."""
    write(tmp_path, "proc/self/cgroup", "0::/kubepods/pod1/box\n")
    write(tmp_path, "sys/fs/cgroup/kubepods/pod1/box/cpu.max", "6400000 100000\n")
    write(tmp_path, "sys/fs/cgroup/kubepods/pod1/cpu.max", "100000 100000\n")
    assert cgroup_cpu_quota(str(tmp_path)) == 1.0
    assert usable_cpus(str(tmp_path), environ={}) == 1


def test_a_quota_above_the_affinity_leaves_the_affinity(tmp_path):
    write(tmp_path, "sys/fs/cgroup/cpu.max", f"{(AFFINITY + 8) * 100000} 100000\n")
    assert usable_cpus(str(tmp_path), environ={}) == AFFINITY


def test_cgroup_v1_fallback(tmp_path):
    """No v2 cpu.max: the v1 cpu controller's CFS quota, at the process's path."""
    write(tmp_path, "proc/self/cgroup", "4:memory:/docker/abc\n2:cpu,cpuacct:/docker/abc\n0::/\n")
    write(tmp_path, "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "50000\n")
    write(tmp_path, "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_quota(str(tmp_path)) == 0.5
    assert usable_cpus(str(tmp_path), environ={}) == 1


def test_cgroup_v1_unlimited_and_a_path_not_mounted(tmp_path):
    """Inside a container the v1 path is not mounted: its own cgroup is the mount's root;
    a quota of -1 there is no limit."""
    write(tmp_path, "proc/self/cgroup", "1:cpu:/docker/abc\n")
    write(tmp_path, "sys/fs/cgroup/cpu/cpu.cfs_quota_us", "-1\n")
    write(tmp_path, "sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_quota(str(tmp_path)) is None
    write(tmp_path, "sys/fs/cgroup/cpu/cpu.cfs_quota_us", "300000\n")
    assert cgroup_cpu_quota(str(tmp_path)) == 3.0


def test_malformed_files_are_no_limit(tmp_path):
    write(tmp_path, "sys/fs/cgroup/cpu.max", "garbage\n")
    write(tmp_path, "sys/fs/cgroup/cpu/cpu.cfs_quota_us", "x\n")
    write(tmp_path, "sys/fs/cgroup/cpu/cpu.cfs_period_us", "0\n")
    assert cgroup_cpu_quota(str(tmp_path)) is None


def test_lambda_share_from_its_memory_size(tmp_path):
    """Lambda shows 2 vCPUs up to 3008 MB but gives one vCPU's time per 1,769 MB."""
    assert usable_cpus(str(tmp_path), environ={"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024"}) == 1
    assert usable_cpus(str(tmp_path), environ={"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "3008"}) == min(AFFINITY, 2)
    assert usable_cpus(str(tmp_path), environ={"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "10240"}) == min(AFFINITY, 6)
    assert usable_cpus(str(tmp_path), environ={"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "bogus"}) == AFFINITY


def test_the_real_machine_gives_at_least_one():
    assert 1 <= usable_cpus() <= AFFINITY
