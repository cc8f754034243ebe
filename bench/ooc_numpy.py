"""
ooc_numpy.py: a numpy job on one large float64 array, for bench/programs.ts
(issue 12, real programs out of core). Phases, each timed, with the major
faults the process took and the bytes the disk under DEVICE read meanwhile
(machine-wide: /sys/dev/block/DEVICE/stat, sectors read):
  fill     the array filled with pseudo-random numbers, 128 MiB at a time;
  arith    a = a * 2 + 1, in place;
  sum      a.sum();
  sort     the first SORT_BYTES of it sorted in place;
  gather   GATHERS random single-element reads (fancy indexing, batches of
           10 000), stopped after GATHER_SECONDS (gather_done says how many).
Prints key=value lines; ends with "ooc_numpy ok".

usage: python3 ooc_numpy.py SIZE_BYTES SORT_BYTES GATHERS GATHER_SECONDS DEVICE
"""
import resource
import sys
import time

import numpy as np

size, sort_bytes, gathers, gather_s = (int(x) for x in sys.argv[1:5])
device = sys.argv[5]


def disk_read():
    with open(f"/sys/dev/block/{device}/stat") as f:
        return int(f.read().split()[2]) * 512


def majflt():
    return resource.getrusage(resource.RUSAGE_SELF).ru_majflt


class Phase:
    def __init__(self, name):
        self.name = name

    def __enter__(self):
        self.t, self.r, self.f = time.monotonic(), disk_read(), majflt()

    def __exit__(self, *exc):
        if exc[0] is None:
            print(f"{self.name}_s={time.monotonic() - self.t:.3f}")
            print(f"{self.name}_read_bytes={disk_read() - self.r}")
            print(f"{self.name}_majflt={majflt() - self.f}", flush=True)


n = size // 8
a = np.empty(n)
rng = np.random.default_rng(1)
chunk = 16 << 20   # elements: 128 MiB
with Phase("fill"):
    for i in range(0, n, chunk):
        a[i:i + chunk] = rng.random(min(chunk, n - i))
with Phase("arith"):
    np.multiply(a, 2, out=a)
    np.add(a, 1, out=a)
with Phase("sum"):
    total = a.sum()
print(f"mean={total / n:.6f}")   # about 2.0: the fill is uniform on [0, 1)
with Phase("sort"):
    a[: sort_bytes // 8].sort()
done = 0
with Phase("gather"):
    t0 = time.monotonic()
    acc = 0.0
    while done < gathers and time.monotonic() - t0 < gather_s:
        idx = rng.integers(0, n, size=10_000)
        acc += float(a[idx].sum())
        done += len(idx)
print(f"gather_done={done}")
print("ooc_numpy ok")
