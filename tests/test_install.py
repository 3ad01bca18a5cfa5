"""Install metadata: compatible ranges in setup.py, exact pins in constraints.txt.

A researcher's environment (a CUDA build of torch, another version, Python 3.12 as
on the borrowed GPU machine) must take the plugin without pip replacing torch, while
scripts/setup.sh and CI keep installing the exact tested stack.
"""

import json
import subprocess
import sys
import urllib.request
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
# the GPU machine this project borrows (device tool): Python 3.12, torch 2.11
OTHER_TORCHES = ("2.6.0", "2.11.0", "2.14.1")


def requirements():
    dist = metadata.distribution("delight-fairseq")
    return [
        Requirement(r)
        for r in dist.requires or []
        if "extra ==" not in r  # the test/bench extras
    ]


def pins():
    found = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            found[name.lower()] = version
    return found


def test_metadata_gives_ranges_not_pins():
    for req in requirements():
        assert not any(s.operator in ("==", "===") for s in req.specifier), (
            f"{req}: an exact pin belongs in constraints.txt, not in setup.py"
        )


def test_other_torch_versions_and_pythons_are_admitted():
    (torch,) = [r for r in requirements() if r.name == "torch"]
    for version in OTHER_TORCHES:
        assert torch.specifier.contains(version), (torch, version)
    python = SpecifierSet(metadata.metadata("delight-fairseq")["Requires-Python"])
    for version in ("3.11", "3.12", "3.13"):
        assert python.contains(version), (python, version)


def test_the_tested_stack_lies_within_the_ranges():
    pinned = pins()
    for req in requirements():
        name = req.name.lower()
        assert name in pinned, f"{req.name} is not pinned in constraints.txt"
        assert req.specifier.contains(Version(pinned[name])), (req, pinned[name])


def test_setup_script_reads_its_versions_from_the_constraints():
    script = (ROOT / "scripts" / "setup.sh").read_text()
    assert "2.13" not in script and "0.12.3" not in script
    out = subprocess.run(
        ["bash", "-c", f"ROOT={ROOT}; {script_function(script)}; pinned torch"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert out == pins()["torch"]


def script_function(script: str) -> str:
    (line,) = [x for x in script.splitlines() if x.startswith("pinned()")]
    return line


def dry_run(*args) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet",
         "--report", "-", "--no-build-isolation", *args],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def installs(report: dict) -> dict:
    return {
        i["metadata"]["name"].lower(): i["metadata"]["version"]
        for i in report["install"]
    }


@pytest.mark.slow
def test_reinstalling_into_this_environment_keeps_its_torch():
    """No index, no constraints: what is installed already satisfies everything."""
    import torch

    planned = installs(dry_run("--no-index", str(ROOT)))
    assert set(planned) == {"delight-fairseq"}, planned
    assert torch.__version__.split("+")[0] == pins()["torch"]


def pypi_reachable() -> bool:
    try:
        urllib.request.urlopen("https://pypi.org/simple/torch/", timeout=10).close()
        return True
    except OSError:
        return False


@pytest.mark.slow
def test_resolves_against_the_gpu_machines_torch(tmp_path):
    """With torch 2.11 pinned, as in a user's CUDA environment, pip resolves the
    plugin and fairseq-fixed around it: torch 2.11 stays, nothing asks for another.
    Resolution only (metadata from PyPI); fairseq-fixed comes from setup.sh's
    wheel cache, as pip would otherwise build its sdist."""
    if not pypi_reachable():
        pytest.skip(
            "PyPI is not reachable: this test resolves torch 2.11's metadata there"
        )
    cache = Path.home() / ".cache" / "delight-fairseq" / f"torch-{pins()['torch']}"
    if not list(cache.glob("fairseq_fixed-*.whl")):
        pytest.skip(f"no fairseq-fixed wheel in {cache}: run scripts/setup.sh first")
    (tmp_path / "pin.txt").write_text("torch==2.11.0\n")
    planned = installs(
        dry_run("--ignore-installed", "--find-links", str(cache),
                "-c", str(tmp_path / "pin.txt"), str(ROOT))
    )  # fmt: skip
    assert planned["torch"] == "2.11.0", planned
    assert planned["fairseq-fixed"].startswith("0.12.3"), planned
    assert "delight-fairseq" in planned
