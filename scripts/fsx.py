#!/usr/bin/env python3
"""fsx-style exerciser: seeded random operations on a few files in DIR, each checked
against an in-memory model of the file.

usage: python3 scripts/fsx.py DIR SEED OPS [NFILES] [MAXLEN]

Operations: pwrite (also past the end: holes), truncate (down and up), read and compare,
mmap write and read (msync half the time), fsync, fallocate (keep size / extend), punch
hole, copy_file_range, rename over another of its files, whole-file compare. Files grow
to MAXLEN (3 MiB by default), so most are stored in chunks. Several runs with different
seeds can share DIR, on one mount or on two mounts of the same sNFT (two machines).

It prints the first difference with the last operations and exits 1; at the end, the
per-operation latencies. It writes, in $FSX_OUT (default: the current directory):
- fsx-SEED.sums: each file's size and SHA-256 at the end, to compare after a remount or
  on another machine (`sha256sum`);
- fsx-SEED.trail: before each operation a `start` line, after it each file's state: after
  a kill -9 of the daemon, every file not named by the operation in flight must match its
  last state.
"""
import ctypes
import hashlib
import mmap
import os
import random
import sys
import time

d, seed, nops = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
nfiles = int(sys.argv[4]) if len(sys.argv) > 4 else 3
maxlen = int(sys.argv[5]) if len(sys.argv) > 5 else 3 << 20
rng = random.Random(seed)
names = [f"fsx-{seed}-{i}" for i in range(nfiles)]
model = {n: bytearray() for n in names}
log = []
for n in names:
    with open(os.path.join(d, n), "wb"):
        pass

LIBC = ctypes.CDLL(None, use_errno=True)
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 1, 2


def fallocate(n, mode, off, ln):
    """fallocate(2) on file n: 0, or the errno it failed with."""
    fd = os.open(path(n), os.O_WRONLY)
    try:
        r = LIBC.fallocate(fd, mode, ctypes.c_long(off), ctypes.c_long(ln))
        return 0 if r == 0 else ctypes.get_errno()
    finally:
        os.close(fd)


def path(n):
    return os.path.join(d, n)


def fail(msg):
    print("FAIL seed", seed, ":", msg)
    for l in log[-25:]:
        print("  ", l)
    sys.exit(1)


def verify(n, off=None, ln=None):
    m = model[n]
    st = os.stat(path(n))
    if st.st_size != len(m):
        fail(f"{n}: size {st.st_size} != model {len(m)}")
    if off is None:
        off, ln = 0, len(m)
    with open(path(n), "rb") as f:
        f.seek(off)
        got = f.read(ln)
    want = bytes(m[off:off + ln])
    if got != want:
        i = next((k for k in range(min(len(got), len(want))) if got[k] != want[k]), min(len(got), len(want)))
        fail(f"{n}: read {off}+{ln}: first difference at {off + i} (got len {len(got)}, want {len(want)})")


def rand_off(n):
    m = len(model[n])
    r = rng.random()
    if r < 0.1:
        return min(maxlen - 1, m + rng.randrange(0, 1 << 20))  # past EOF: a hole
    if r < 0.2:
        return max(0, m - rng.randrange(0, 4096))
    return rng.randrange(0, max(1, m))


trail = open(os.path.join(os.environ.get("FSX_OUT", "."), f"fsx-{seed}.trail"), "w", buffering=1)


def note(i, *ns):
    for x in ns:
        trail.write(f"done {i} {x} {len(model[x])} {hashlib.sha256(model[x]).hexdigest()}\n")


times = {}
for i in range(nops):
    n = rng.choice(names)
    trail.write(f"start {i} {' '.join(names)}\n")
    op = rng.choices(
        ["write", "trunc", "read", "mmapw", "mmapr", "fsync", "falloc", "punch", "cfr", "rename", "verify"],
        [30, 6, 15, 6, 5, 3, 3, 4, 5, 2, 3])[0]
    m = model[n]
    t_op = time.monotonic()
    try:
        if op == "write":
            off = rand_off(n)
            ln = rng.choice([1, 17, 4096, 4097, 65536, 131072, 131073, rng.randrange(1, 300000)])
            ln = min(ln, maxlen - off)
            if ln <= 0:
                continue
            data = rng.randbytes(ln)
            log.append(f"{i} write {n} {off}+{ln}")
            fd = os.open(path(n), os.O_WRONLY)
            os.pwrite(fd, data, off)
            os.close(fd)
            if off > len(m):
                m.extend(b"\0" * (off - len(m)))
            m[off:off + ln] = data
        elif op == "trunc":
            ln = rng.choice([0, rng.randrange(0, maxlen), max(0, len(m) - rng.randrange(0, 200000)), len(m) + rng.randrange(0, 300000)])
            ln = min(ln, maxlen)
            log.append(f"{i} truncate {n} {ln}")
            os.truncate(path(n), ln)
            if ln < len(m):
                del m[ln:]
            else:
                m.extend(b"\0" * (ln - len(m)))
        elif op == "read":
            if not m:
                continue
            off = rng.randrange(0, len(m))
            ln = rng.randrange(1, 400000)
            log.append(f"{i} read {n} {off}+{ln}")
            verify(n, off, ln)
        elif op in ("mmapw", "mmapr"):
            if not m:
                continue
            off = rng.randrange(0, len(m))
            ln = min(rng.randrange(1, 200000), len(m) - off)
            log.append(f"{i} {op} {n} {off}+{ln}")
            fd = os.open(path(n), os.O_RDWR)
            mm = mmap.mmap(fd, len(m))
            if op == "mmapw":
                data = rng.randbytes(ln)
                mm[off:off + ln] = data
                m[off:off + ln] = data
                if rng.random() < 0.5:
                    mm.flush()
            else:
                got = mm[off:off + ln]
                if got != bytes(m[off:off + ln]):
                    fail(f"{n}: mmap read {off}+{ln} differs")
            mm.close()
            os.close(fd)
        elif op == "fsync":
            log.append(f"{i} fsync {n}")
            fd = os.open(path(n), os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
        elif op == "falloc":
            off = rng.randrange(0, max(1, len(m) + 100000))
            ln = rng.randrange(1, 200000)
            if off + ln > maxlen:
                continue
            keep = rng.random() < 0.5
            log.append(f"{i} fallocate {n} {off}+{ln} keep={keep}")
            if keep:
                e = fallocate(n, FALLOC_FL_KEEP_SIZE, off, ln)
                if e:
                    log.append(f"   -> errno {e}")
            else:
                fd = os.open(path(n), os.O_WRONLY)
                try:
                    os.posix_fallocate(fd, off, ln)
                    if off + ln > len(m):
                        m.extend(b"\0" * (off + ln - len(m)))
                except OSError as e:
                    log.append(f"   -> {e}")
                os.close(fd)
        elif op == "punch":
            if not m:
                continue
            off = rng.randrange(0, len(m))
            ln = rng.randrange(1, 300000)
            log.append(f"{i} punch {n} {off}+{ln}")
            e = fallocate(n, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, ln)
            if e == 0:
                end = min(len(m), off + ln)
                m[off:end] = b"\0" * (end - off)
            else:
                log.append(f"   -> errno {e}")
        elif op == "cfr":
            src = rng.choice(names)
            sm = model[src]
            if not sm:
                continue
            soff = rng.randrange(0, len(sm))
            ln = min(rng.randrange(1, 400000), len(sm) - soff)
            doff = rand_off(n)
            if doff + ln > maxlen:
                continue
            if src == n and not (soff + ln <= doff or doff + ln <= soff):
                continue  # overlapping ranges in one file: EINVAL
            log.append(f"{i} copy_file_range {src} {soff}+{ln} -> {n} {doff}")
            fi = os.open(path(src), os.O_RDONLY)
            fo = os.open(path(n), os.O_WRONLY)
            done = 0
            while done < ln:
                k = os.copy_file_range(fi, fo, ln - done, soff + done, doff + done)
                if k == 0:
                    break
                done += k
            os.close(fi)
            os.close(fo)
            data = bytes(sm[soff:soff + done])
            if doff > len(m):
                m.extend(b"\0" * (doff - len(m)))
            m[doff:doff + done] = data
        elif op == "rename":
            other = rng.choice(names)
            if other == n:
                continue
            log.append(f"{i} rename {n} -> {other}; recreate {n} empty")
            os.rename(path(n), path(other))
            model[other] = model[n]
            model[n] = bytearray()
            with open(path(n), "wb"):
                pass
        elif op == "verify":
            log.append(f"{i} verify {n}")
            verify(n)
    except OSError as e:
        fail(f"op {op} on {n}: {e}")
    note(i, *names)
    times.setdefault(op, []).append(time.monotonic() - t_op)

for n in names:
    log.append(f"final verify {n}")
    verify(n)
# The models, for a check after a remount.
with open(os.path.join(os.environ.get("FSX_OUT", "."), f"fsx-{seed}.sums"), "w") as out:
    for n in names:
        out.write(f"{n} {len(model[n])} {hashlib.sha256(model[n]).hexdigest()}\n")
print("ok seed", seed, "ops", nops)
for k, v in sorted(times.items()):
    v.sort()
    print(f"  {k:7} n={len(v):4} median {v[len(v)//2]*1000:8.1f} ms  p90 {v[int(len(v)*0.9)]*1000:8.1f} ms  max {v[-1]*1000:8.1f} ms")
