"""``fairseq-preprocess`` into ``data-bin/<name>``, never half-written, idempotent.

The output is built in a hidden sibling folder and renamed into place only
once complete, with a stamp file (``prep.json``) written last: the recipe's
settings and the checksums of its inputs. A later run whose stamp matches
skips the work; an output without a stamp, or with another one, is rebuilt.
"""

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator, Optional, Sequence

logger = logging.getLogger(__name__)

STAMP = "prep.json"
PREPROCESS = (sys.executable, "-m", "fairseq_cli.preprocess")  # = fairseq-preprocess
SPLITS = ("train", "valid", "test")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_leftovers(dest: Path) -> None:
    """Partial folders of ``dest`` whose process is gone (killed, power cut)."""
    for path in dest.parent.glob(f".{dest.name}.partial-*"):
        pid = path.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _pid_alive(int(pid)):
            logger.info("removing %s, left by an interrupted run", path)
            shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def staged_dir(dest: Path) -> Iterator[Path]:
    """Yield an empty folder that replaces ``dest`` when the block succeeds.

    On any exception (KeyboardInterrupt included) the folder is deleted and
    ``dest`` is left as it was."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(dest)
    tmp = dest.parent / f".{dest.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if dest.exists():
        old = dest.parent / f".{dest.name}.old-{os.getpid()}"
        dest.rename(old)
        tmp.rename(dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(dest)


def expected_files(src: str, tgt: str) -> list:
    """What a complete ``fairseq-preprocess`` output holds."""
    files = [f"dict.{src}.txt", f"dict.{tgt}.txt"]
    for split in SPLITS:
        for lang in (src, tgt):
            files += [f"{split}.{src}-{tgt}.{lang}.{ext}" for ext in ("bin", "idx")]
    return files


def read_stamp(dest: Path) -> Optional[dict]:
    try:
        return json.loads((Path(dest) / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def is_complete(dest: Path, fingerprint: dict, src: str, tgt: str) -> bool:
    """``dest`` was built from exactly these settings and inputs, and is whole."""
    stamp = read_stamp(dest)
    if stamp is None:
        if Path(dest).exists():
            logger.warning("%s has no %s: it will be rebuilt", dest, STAMP)
        return False
    if stamp.get("fingerprint") != fingerprint:
        logger.info("%s was built from other settings or inputs: rebuilding", dest)
        return False
    missing = [f for f in expected_files(src, tgt) if not (Path(dest) / f).is_file()]
    if missing:
        logger.warning("%s lacks %s: rebuilding", dest, ", ".join(missing))
        return False
    return True


def preprocess_args(
    text: Path, src: str, tgt: str, destdir: Path, joined: bool, workers: int
) -> list:
    """The ``fairseq-preprocess`` arguments of the authors' recipes."""
    args = ["--source-lang", src, "--target-lang", tgt]
    for split in SPLITS:
        args += [f"--{split}pref", str(Path(text) / split)]
    args += ["--destdir", str(destdir), "--workers", str(workers)]
    if joined:
        args.append("--joined-dictionary")
    return args


def binarize(
    text: Path,
    src: str,
    tgt: str,
    dest: Path,
    fingerprint: dict,
    joined: bool,
    workers: int = 1,
    extra_files: Sequence[Path] = (),
    report: Optional[dict] = None,
    command: Sequence[str] = PREPROCESS,
) -> Path:
    """Binarize ``text/{train,valid,test}.{src,tgt}`` into ``dest``.

    Args:
        fingerprint: settings and input checksums; stored in the stamp and
            compared by :func:`is_complete`.
        joined: one dictionary for both languages (``--joined-dictionary``),
            needed by ``--share-all-embeddings``.
        extra_files: copied next to the binaries (the subword model).
        report: statistics stored in the stamp (cleaning counts, sizes).
        command: the ``fairseq-preprocess`` command line.
    """
    with staged_dir(dest) as tmp:
        log = tmp / "preprocess.log"
        cmd = [*command, *preprocess_args(text, src, tgt, tmp, joined, workers)]
        logger.info("binarizing %s into %s", text, dest)
        with open(log, "w", encoding="utf-8") as f:
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode
        if rc != 0:
            tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
            raise RuntimeError(
                f"fairseq-preprocess failed (exit {rc}); nothing was written to "
                f"{dest}. Its last lines:\n" + "\n".join(tail)
            )
        for path in extra_files:
            shutil.copy2(path, tmp / Path(path).name)
        stamp = {"fingerprint": fingerprint, "report": report or {}}
        (tmp / STAMP).write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")
    logger.info("%s is complete", dest)
    return dest
