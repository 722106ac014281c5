#!/usr/bin/env python3
# Probe used in BENCHMARKS.md: 1 MiB ranged `cat`s of CID from a node, PAR at a time; prints
# MiB/s and the median and p90 latency of one request.
# Usage: python3 scripts/ranged_cat.py HOST PORT CID MIB PAR
import http.client, sys, time, threading, urllib.parse
host, port, cid, mib, par = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
lat = []
def worker(idxs):
    c = http.client.HTTPConnection(host, port)
    for i in idxs:
        t = time.time()
        c.request("POST", f"/api/v0/cat?arg={cid}&offset={i<<20}&length={1<<20}")
        r = c.getresponse(); d = r.read(); assert len(d) == 1<<20, len(d)
        lat.append(time.time() - t)
t0 = time.time()
ths = [threading.Thread(target=worker, args=(list(range(k, mib, par)),)) for k in range(par)]
[t.start() for t in ths]; [t.join() for t in ths]
el = time.time() - t0
lat.sort()
print(f"par={par}: {mib/el:.0f} MiB/s, latency median {lat[len(lat)//2]*1000:.1f} ms p90 {lat[int(len(lat)*.9)]*1000:.1f} ms")
