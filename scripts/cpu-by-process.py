#!/usr/bin/env python3
"""Prints, every 250 ms, the CPU used by Postgres processes, by processes
whose name contains CLIENT, and the machine's idle share, in % of one core.

    scripts/cpu-by-process.py kernel-bench > cpu.txt &   # then run the bench

Used for the "CPU" figures of docs/benchmarks.md (session 12). Reads /proc
only; time of backends that exit between two samples is not counted, which
is fine for pools that keep their connections.
"""
import os
import sys
import time

client = sys.argv[1] if len(sys.argv) > 1 else "kernel-bench"
HZ = os.sysconf("SC_CLK_TCK")


def snap():
    pg = cl = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = open(f"/proc/{pid}/stat").read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks = int(fields[11]) + int(fields[12])  # utime + stime
        if name.startswith(("postgres", "postmaster")):
            pg += ticks
        elif client in name:
            cl += ticks
    cpu = open("/proc/stat").readline().split()[1:]
    return pg, cl, int(cpu[3]) + int(cpu[4]), time.time()


prev = snap()
start = prev[3]
while True:
    time.sleep(0.25)
    cur = snap()
    dt = cur[3] - prev[3]
    pct = lambda i: 100 * (cur[i] - prev[i]) / HZ / dt
    print(f"{cur[3] - start:6.2f}s postgres {pct(0):4.0f}% {client} {pct(1):4.0f}% idle {pct(2):4.0f}%", flush=True)
    prev = cur
