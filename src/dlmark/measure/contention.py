"""What competed with a measurement: other processes' CPU time, steal and load, from /proc.

A probe brackets the timed blocks: ``start()`` just before, ``stop()`` just
after, which returns record fields. Everything is read from /proc in a few
small files, so the probe can run around every measurement. Off Linux every
field is None.

"Own" CPU time is this process (all its threads) and its descendant processes:
a measured runtime may use helper processes, and those are the measurement,
not competition. "Other" is everything else the usable CPUs ran: the non-idle
time of those CPUs in /proc/stat minus the own time. Processes outside this
tree, including this process's parent and siblings, are "other".
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

#: Contended when other processes used more than this share of the usable CPU
#: time of the window (pyperf's system check warns on a busy machine likewise) ...
OTHER_CPU_SHARE = 0.10
#: ... or the hypervisor took more than this share of it (steal time).
STEAL_SHARE = 0.05

FIELDS = ("loadavg_1m_before", "loadavg_1m_after", "cpu_steal_s", "other_cpu_s", "own_cpu_s",
          "window_s", "cpus_usable", "contended", "gpu_other_processes")

_PROC = Path("/proc")


def _ticks_per_s() -> float:
    try:
        return float(os.sysconf("SC_CLK_TCK"))
    except (AttributeError, ValueError, OSError):
        return 100.0


def _loadavg_1m() -> float | None:
    try:
        return float((_PROC / "loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _usable_cpus() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


def _cpu_ticks(cpus: set[int]) -> tuple[int, int] | None:
    """(non-idle, steal) ticks summed over the given CPUs' lines of /proc/stat.

    Non-idle is user + nice + system + irq + softirq; guest time is already
    inside user, and steal is time the CPU ran someone else's virtual machine.
    """
    try:
        lines = (_PROC / "stat").read_text().splitlines()
    except OSError:
        return None
    busy = steal = 0
    seen = False
    for line in lines:
        if not line.startswith("cpu") or line.startswith("cpu "):
            continue
        name, *values = line.split()
        if int(name[3:]) not in cpus:
            continue
        v = [int(x) for x in values] + [0] * 10
        busy += v[0] + v[1] + v[2] + v[5] + v[6]
        steal += v[7]
        seen = True
    return (busy, steal) if seen else None


def _parse_stat(text: str) -> tuple[int, int]:
    """(ppid, utime + stime + cutime + cstime in ticks) from a /proc/PID/stat line."""
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[1]), sum(int(x) for x in fields[11:15])


def _read_stat(pid: int | str) -> tuple[int, int] | None:
    try:
        return _parse_stat((_PROC / str(pid) / "stat").read_text())
    except (OSError, ValueError, IndexError):
        return None  # the process ended meanwhile


def _children(pid: int) -> list[int] | None:
    """Children from /proc/PID/task/*/children; None when the kernel lacks that file."""
    out: list[int] = []
    try:
        tasks = list((_PROC / str(pid) / "task").iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            out.extend(int(x) for x in (task / "children").read_text().split())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            continue
    return out


def _own_ticks() -> tuple[int, set[int]]:
    """CPU ticks of this process and its living descendants, and their pids.

    A descendant alive at both ends counts its own delta; one that ended in the
    window is in its reaper's cutime/cstime (the reaper is in the tree); so
    summing all four fields over the living tree counts each process once.
    Without the kernel's children lists (CONFIG_PROC_CHILDREN) the tree comes
    from every process's parent: one scan of /proc/*/stat, a few ms.
    """
    me = os.getpid()
    stats: dict[int, tuple[int, int]] = {}
    pids, todo = [], [me]
    while todo:
        pid = todo.pop()
        kids = _children(pid)
        if kids is None:
            break
        stat = _read_stat(pid)
        if stat is not None:
            stats[pid] = stat
            pids.append(pid)
        todo.extend(kids)
    else:
        return sum(stats[p][1] for p in pids), set(pids)
    stats = {}
    for entry in os.scandir(_PROC):
        if entry.name.isdigit():
            stat = _read_stat(entry.name)
            if stat is not None:
                stats[int(entry.name)] = stat
    kids_of: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        kids_of.setdefault(ppid, []).append(pid)
    pids, todo = [], [me]
    while todo:
        pid = todo.pop()
        if pid in stats:
            pids.append(pid)
        todo.extend(kids_of.get(pid, []))
    return sum(stats[p][1] for p in pids), set(pids)


def _gpu_other_processes(handle: Any, own: set[int]) -> int | None:
    try:
        import pynvml

        procs = pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
        # NVML reports host pids. In a pid namespace (a container) our own pids
        # differ, so every process looks foreign (an over-count), or NVML lists
        # none at all (a miss): the figure is exact only outside containers.
        return sum(1 for p in procs if p.pid not in own)
    except Exception:  # noqa: BLE001 -- NVML missing or not permitted: the figure is simply absent
        return None


def _nvml_handle(gpu_uuid: str | None, gpu_index: int | None) -> Any:
    if gpu_uuid is None and gpu_index is None:
        return None
    try:
        import pynvml

        pynvml.nvmlInit()
        return (pynvml.nvmlDeviceGetHandleByUUID(gpu_uuid) if gpu_uuid
                else pynvml.nvmlDeviceGetHandleByIndex(int(gpu_index)))
    except Exception:  # noqa: BLE001 -- as above
        return None


def is_contended(fields: dict[str, Any]) -> bool | None:
    """The rule: others' CPU or steal above their share of the usable CPU time, or another process on the GPU."""
    window, cpus = fields.get("window_s"), fields.get("cpus_usable")
    if not window or not cpus or fields.get("other_cpu_s") is None:
        return None
    capacity = window * cpus
    return bool(fields["other_cpu_s"] > OTHER_CPU_SHARE * capacity
                or (fields.get("cpu_steal_s") or 0.0) > STEAL_SHARE * capacity
                or (fields.get("gpu_other_processes") or 0) > 0)


class ContentionProbe:
    """``start()`` before the timed blocks, ``stop()`` after: record fields (all None off Linux)."""

    def __init__(self, gpu_uuid: str | None = None, gpu_index: int | None = None, handle: Any = None):
        """The GPU by UUID or index, or an NVML ``handle`` already open (``power.handle_for_torch_device``)."""
        self._gpu = (gpu_uuid, gpu_index)
        self._handle: Any = handle
        self._start: dict[str, Any] | None = None
        self.linux = sys.platform.startswith("linux") and (_PROC / "stat").exists()

    def start(self) -> None:
        if not self.linux:
            return
        cpus = _usable_cpus()
        own, pids = _own_ticks()
        if self._handle is None:  # NVML's first init takes a while: once per probe
            self._handle = _nvml_handle(*self._gpu)
        handle = self._handle
        self._start = {
            "cpus": cpus, "load": _loadavg_1m(), "cpu": _cpu_ticks(cpus), "own": own, "handle": handle,
            "gpu_others": _gpu_other_processes(handle, pids) if handle is not None else None,
            "t": time.perf_counter(),
        }

    def stop(self) -> dict[str, Any]:
        out: dict[str, Any] = dict.fromkeys(FIELDS)
        s = self._start
        if not self.linux or s is None:
            return out
        t = time.perf_counter()
        cpu = _cpu_ticks(s["cpus"])
        own, pids = _own_ticks()
        hz = _ticks_per_s()
        out.update(loadavg_1m_before=s["load"], loadavg_1m_after=_loadavg_1m(),
                   window_s=t - s["t"], cpus_usable=len(s["cpus"]))
        if cpu is not None and s["cpu"] is not None:
            busy = (cpu[0] - s["cpu"][0]) / hz
            own_s = (own - s["own"]) / hz
            out["own_cpu_s"] = own_s
            # Both counters tick at 1/hz: the difference can dip below zero by a tick or two.
            out["other_cpu_s"] = max(0.0, busy - own_s)
            out["cpu_steal_s"] = (cpu[1] - s["cpu"][1]) / hz
        if s["handle"] is not None:
            after = _gpu_other_processes(s["handle"], pids)
            seen = [n for n in (s["gpu_others"], after) if n is not None]
            out["gpu_other_processes"] = max(seen) if seen else None
        out["contended"] = is_contended(out)
        return out


#: What to do about it (pyperf's system checks point at the same remedies).
FIX = "run on an idle machine, pin CPUs (taskset -c), or raise --min-time"


def cause(fields: dict[str, Any]) -> str | None:
    """What competed with a contended measurement, in words, or None when it was not contended."""
    if not fields.get("contended"):
        return None
    window, cpus = fields.get("window_s") or 0.0, fields.get("cpus_usable") or 1
    capacity = window * cpus or 1.0
    causes = []
    if (fields.get("other_cpu_s") or 0.0) > OTHER_CPU_SHARE * capacity:
        causes.append(f"other processes used {fields['other_cpu_s'] / capacity:.0%} of the {cpus} usable CPUs")
    if (fields.get("cpu_steal_s") or 0.0) > STEAL_SHARE * capacity:
        causes.append(f"the hypervisor stole {fields['cpu_steal_s'] / capacity:.0%} of CPU time")
    if (fields.get("gpu_other_processes") or 0) > 0:
        causes.append(f"{fields['gpu_other_processes']} other process(es) ran on the GPU")
    load = fields.get("loadavg_1m_before")
    where = f" (load average {load:.1f})" if load is not None else ""
    return ("; ".join(causes) or "the machine was busy") + where


def suggestion(fields: dict[str, Any]) -> str | None:
    """The one-line cause and fix to print for a contended measurement, or None."""
    text = cause(fields)
    return None if text is None else f"{text}: {FIX}"
