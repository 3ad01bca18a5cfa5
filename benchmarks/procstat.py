"""What a benchmark's child process measures of itself (no torch, no fairseq here:
CTranslate2's children import this too)."""

import resource

from delight_lite.progress import peak_rss_mib  # noqa: F401  (the children's measure)

#: The environment of a child whose peak memory should follow the tensors alive at
#: once: glibc's mmap threshold fixed at 64 KiB, so that every block above it is
#: mapped on its own and unmapped when freed. By default glibc raises the threshold
#: after the first large free, and later blocks of that size come from the heap,
#: where freed ones stay resident and fragment.
FIXED_MMAP_THRESHOLD = {"MALLOC_MMAP_THRESHOLD_": "65536"}

#: torch's CPU allocator aligns blocks of 2 MiB and more to 2 MiB and asks the
#: kernel for transparent huge pages there (c10's alloc_cpu), so a freshly mapped
#: block faults in once per 2 MiB rather than once per 4 KiB page.
TORCH_THP = {"THP_MEM_ALLOC_ENABLE": "1"}


def cpu_seconds() -> float:
    """User and system CPU time of this process, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_model() -> str:
    """The CPU's model name and its vector extensions of note, for a results file:
    the same code runs at different speeds on different CPUs (MKL, for one, picks
    its kernels by the vendor), and this machine's CPU has changed between days."""
    try:
        with open("/proc/cpuinfo") as info:
            text = info.read()
    except OSError:
        import platform

        return platform.processor() or "unknown"
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    name = fields.get("model name", "unknown CPU")
    flags = set(fields.get("flags", "").split())
    notable = ["avx512f", "avx512_vnni", "avx512_bf16", "amx_tile"]
    return f"{name} ({', '.join(f for f in notable if f in flags) or 'no AVX-512'})"
