"""python_advise.py: does exm.advise(a, "random") help a random gather out of core?

Run under exm, as root (for the memory cgroup):

    dist/exm python3 bench/python_advise.py [--size 2G] [--limit 512M] [--reads 20000]
                                            [--advice none,random] [--rounds 1]

For each advice, in a fresh process inside a fresh memory cgroup of --limit
(swap included): a file-backed array of --size made with exm.zeros and
written through once (so most of it has gone out to the file), os.sync(),
then exm.advise(a, ADVICE) ("none": leave the block to exm's default "auto"
policy), then a[idx].sum() for --reads random indices. Prints one line per run
with the gather's rate, its major faults and the bytes it read from disk
(/proc/self/io), and the fill's rate. Counts, not just times: the faults and
bytes say what the advice changed even on a loaded machine.

"sequential" is not in the default list: at 2 GiB under 512 MiB each random
read then costs a read-ahead window (5.3 MiB), and the run reads ~100 GB and
takes about 9 minutes (37 reads/s measured on 2026-12-01).
"""

import argparse
import os
import resource
import subprocess
import sys
import time

import numpy as np

import exm


def read_bytes() -> int:
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("read_bytes:"):
                return int(line.split()[1])
    return 0


def major_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_majflt


def one_run(size: int, reads: int, advice: str, seed: int) -> None:
    n = size // 8
    a = exm.zeros(n)
    t0 = time.monotonic()
    a.fill(1.0)
    fill_s = time.monotonic() - t0
    os.sync()
    idx = np.random.default_rng(seed).integers(0, n, reads)
    if advice != "none":
        exm.advise(a, advice)
    f0, b0, t0 = major_faults(), read_bytes(), time.monotonic()
    s = a[idx].sum()
    gather_s = time.monotonic() - t0
    faults, nbytes = major_faults() - f0, read_bytes() - b0
    assert s == reads, s
    print(
        f"advice={advice} reads={reads} gather_s={gather_s:.2f} reads_per_s={reads / gather_s:.0f} "
        f"major_faults={faults} read_MiB={nbytes / 2**20:.0f} KiB_per_read={nbytes / 1024 / reads:.1f} "
        f"fill_MBps={size / fill_s / 1e6:.0f}",
        flush=True,
    )


class Cgroup:
    """A fresh memory cgroup (v1 or v2) limited to `limit` bytes, swap included."""

    def __init__(self, limit: int) -> None:
        name = f"exm-bench-py-{os.getpid()}-{time.monotonic_ns() % 10**6}"
        v1 = "/sys/fs/cgroup/memory"
        if os.path.exists(os.path.join(v1, "memory.limit_in_bytes")):
            self.dir = os.path.join(v1, name)
            os.mkdir(self.dir)
            self._write("memory.limit_in_bytes", limit)
            if os.path.exists(os.path.join(self.dir, "memory.memsw.limit_in_bytes")):
                self._write("memory.memsw.limit_in_bytes", limit)
        else:
            self.dir = os.path.join("/sys/fs/cgroup", name)
            os.mkdir(self.dir)
            self._write("memory.max", limit)
            if os.path.exists(os.path.join(self.dir, "memory.swap.max")):
                self._write("memory.swap.max", 0)

    def _write(self, name: str, value: int) -> None:
        with open(os.path.join(self.dir, name), "w") as f:
            f.write(str(value))

    def procs(self) -> str:
        return os.path.join(self.dir, "cgroup.procs")

    def remove(self) -> None:
        for _ in range(100):
            try:
                os.rmdir(self.dir)
                return
            except OSError:
                time.sleep(0.05)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", default="2G")
    p.add_argument("--limit", default="512M", help="memory cgroup limit (0: no cgroup)")
    p.add_argument("--reads", type=int, default=20000)
    p.add_argument("--advice", default="none,random", help="comma-separated: none, random, sequential, normal")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--child", help=argparse.SUPPRESS)  # one run, in this process
    args = p.parse_args()
    if not exm.available():
        sys.exit("python_advise.py: start it under exm: dist/exm python3 bench/python_advise.py")
    size = exm.parse_size(args.size)
    if args.child:
        one_run(size, args.reads, args.child, seed=1)
        return
    limit = exm.parse_size(args.limit)
    for r in range(args.rounds):
        advices = args.advice.split(",")
        advices = advices[r % len(advices):] + advices[: r % len(advices)]  # rotate the order
        for advice in advices:
            cmd = [sys.executable, __file__, "--size", args.size, "--reads", str(args.reads), "--child", advice]
            if not limit:
                subprocess.run(cmd, check=True)
                continue
            cg = Cgroup(limit)
            try:
                # The child moves itself into the cgroup, then becomes the run.
                sh = f'echo $$ > "{cg.procs()}" && exec "$@"'
                rc = subprocess.run(["sh", "-c", sh, "sh", *cmd]).returncode
                if rc:
                    print(f"advice={advice} failed: exit {rc}", flush=True)
            finally:
                cg.remove()


if __name__ == "__main__":
    main()
