"""What a benchmark's child process measures of itself (no torch, no fairseq here:
CTranslate2's children import this too)."""

import resource


def cpu_seconds() -> float:
    """User and system CPU time of this process, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mib() -> float:
    """This process's peak resident set: VmHWM, not ru_maxrss, which Linux carries
    over exec from the parent (a parent that imported torch starts every child at
    its own ~330 MiB)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
