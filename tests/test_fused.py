"""The fused GLT tail (delight_fairseq/csrc/glt_tail.cpp) against the naive
reference and against the eager path it replaces."""

import os
import subprocess
import sys

import pytest
import torch

from delight_fairseq import fused
from delight_fairseq.dextra import DExTra
from delight_fairseq.group_linear import GroupLinear
from delight_fairseq.tools.naive import naive_dextra, naive_glt

needs_kernel = pytest.mark.skipif(
    fused.load() is None, reason="the fused GLT kernel could not be built here"
)

SHAPES = [
    (896, 768, 8),
    (48, 96, 4),
    (10, 6, 1),
    (60, 90, 3),
    (64, 96, 32),
    (96, 96, 16),
]


def randomised(n_in, n_out, g, shuffle, dtype=torch.float32):
    torch.manual_seed(3)
    glt = GroupLinear(n_in, n_out, g, shuffle=shuffle).to(dtype)
    with torch.no_grad():
        for p in glt.parameters():
            p.normal_()
    return glt


def grads(out, params, seed=4):
    torch.manual_seed(seed)
    return torch.autograd.grad(out, params, torch.randn_like(out))


@needs_kernel
@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("n_in, n_out, g", SHAPES)
def test_fused_glt_matches_naive_reference_float32(n_in, n_out, g, shuffle):
    glt = randomised(n_in, n_out, g, shuffle)
    x = torch.randn(37, n_in, requires_grad=True)
    params = [x, *glt.parameters()]
    assert fused.usable(x)
    got = glt(x)
    want = naive_glt(x, glt.weight, glt.bias, glt.norm_weight, glt.norm_bias, shuffle)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    for a, b in zip(grads(got, params), grads(want, params)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@needs_kernel
@pytest.mark.parametrize("shuffle", [True, False])
def test_fused_tail_gradcheck_float64(shuffle):
    g, n, m = 4, 5, 6
    torch.manual_seed(5)
    y = torch.randn(g, n, m, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(g, m, dtype=torch.float64, requires_grad=True)
    w = torch.randn(m, dtype=torch.float64, requires_grad=True)
    beta = torch.randn(m, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda *t: fused.GLTTail.apply(*t, shuffle), (y, bias, w, beta)
    )


@needs_kernel
def test_fused_and_eager_paths_agree(monkeypatch):
    glt = randomised(128, 176, 4, True)
    x = torch.randn(2, 33, 128, requires_grad=True)
    params = [x, *glt.parameters()]
    fast = glt(x)
    fast_grads = grads(fast, params)
    monkeypatch.setenv("DELIGHT_FUSED_GLT", "0")
    assert not fused.usable(x)
    slow = glt(x)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)
    for a, b in zip(fast_grads, grads(slow, params)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@needs_kernel
def test_fused_dextra_matches_naive_reference():
    torch.manual_seed(6)
    unit = DExTra(128, 64, 64, 6, 2.0, 4)
    with torch.no_grad():
        for p in unit.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(19, 128, requires_grad=True)
    params = [x, *unit.parameters()]
    got = unit(x)
    want = naive_dextra(x, unit)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    for a, b in zip(grads(got, params), grads(want, params)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@needs_kernel
def test_parameter_gradients_do_not_depend_on_thread_count():
    glt = randomised(64, 96, 4, True)
    x = torch.randn(300, 64)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            glt.zero_grad()
            glt(x).pow(2).sum().backward()
            results.append([p.grad.clone() for p in glt.parameters()])
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*results):
        assert torch.equal(a, b)


@needs_kernel
def test_fused_path_skips_what_it_does_not_handle():
    x = torch.randn(2, 3, 4)
    assert fused.usable(x)
    assert not fused.usable(x.to(torch.bfloat16))
    assert not fused.usable(x.to(torch.float16))
    glt = randomised(16, 16, 2, True, dtype=torch.bfloat16)
    out = glt(torch.randn(5, 16, dtype=torch.bfloat16))  # the eager path
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()


@pytest.mark.slow
def test_without_a_compiler_the_glt_warns_once_and_runs_eager(tmp_path):
    code = (
        "import torch\n"
        "from delight_fairseq import fused\n"
        "from delight_fairseq.group_linear import GroupLinear\n"
        "glt = GroupLinear(16, 32, 2)\n"
        "glt(torch.randn(3, 16)); glt(torch.randn(5, 16))\n"
        "assert fused.load() is None\n"
        "print('ran eager')\n"
    )
    env = dict(os.environ, CXX="/bin/false", TORCH_EXTENSIONS_DIR=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ran eager" in proc.stdout
    assert proc.stderr.count("the fused GLT kernel could not be built") == 1


def test_a_stale_build_lock_is_removed_and_a_fresh_one_kept(
    tmp_path, monkeypatch, caplog
):
    """A process killed mid-build leaves torch's lock file, and torch then waits for
    it forever; one older than STALE_LOCK_S is removed with a warning."""
    import time

    import torch.utils.cpp_extension as cpp_extension

    monkeypatch.setattr(
        cpp_extension, "_get_build_directory", lambda name, verbose: str(tmp_path)
    )
    lock = tmp_path / "lock"
    lock.touch()
    fused._clear_stale_lock("delight_glt_tail_test")
    assert lock.exists()  # a build may be running right now
    old = time.time() - fused.STALE_LOCK_S - 60
    os.utime(lock, (old, old))
    with caplog.at_level("WARNING", logger="delight_fairseq.fused"):
        fused._clear_stale_lock("delight_glt_tail_test")
    assert not lock.exists()
    assert "did not finish" in caplog.text


def test_each_checkout_has_its_own_build():
    name = fused._build_name("AVX2")
    assert (
        name.startswith("delight_glt_tail_avx2_")
        and len(name) == len("delight_glt_tail_avx2_") + 8
    )


def test_the_build_prefers_the_ninja_beside_the_interpreter(tmp_path):
    bindir, other = tmp_path / "venv-bin", tmp_path / "usr-bin"
    for folder in (bindir, other):
        folder.mkdir()
        (folder / "ninja").write_text("#!/bin/sh\n")
        (folder / "ninja").chmod(0o755)
    assert fused._build_path(str(other), str(bindir)) == f"{bindir}{os.pathsep}{other}"
    (bindir / "ninja").unlink()
    assert fused._build_path(str(other), str(bindir)) == str(other)


@needs_kernel
@pytest.mark.slow
def test_a_process_without_the_venv_on_path_reuses_the_build():
    # a system ninja (1.11 here) and the pinned one (1.13) do not read each
    # other's build log: a process that built with the other one rebuilt the
    # kernels from scratch, six times in one CI run
    from torch.utils.cpp_extension import _get_build_directory

    name = fused._build_name(torch.backends.cpu.get_cpu_capability())
    log = os.path.join(_get_build_directory(name, verbose=False), ".ninja_log")
    before = open(log).read()
    code = "from delight_fairseq import fused\nassert fused.load() is not None\n"
    env = dict(os.environ, PATH="/usr/bin:/bin")
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert open(log).read() == before, "the kernels were built again"
