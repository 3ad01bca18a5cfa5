"""Where each official release keeps its files, and getting them.

A :class:`Part` is one parallel corpus of a release (Europarl, newstest2014,
...). :func:`locate` finds one side of it in a folder the user gives
(``--raw``), as plain text (``newsdev2016.en``), as the release's own file
once extracted (``dev/newsdev2016-enro-src.en.sgm``), or inside the release
archive itself (read in place, never unpacked to disk); with no folder it
downloads the archive from the official URL into a cache folder first.
"""

import contextlib
import gzip
import hashlib
import logging
import re
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, Iterator, Optional, Union

from .corpus import DataError, iter_lines

logger = logging.getLogger(__name__)


def _open_member(archive: Path, member: Optional[str], stack: contextlib.ExitStack):
    if member is None:
        return stack.enter_context(gzip.open(archive, "rb"))
    if zipfile.is_zipfile(archive):
        f = stack.enter_context(zipfile.ZipFile(archive)).open(member)
    else:
        tar = stack.enter_context(tarfile.open(archive, "r:*"))
        f = None
        for name in (member, "./" + member):
            with contextlib.suppress(KeyError):
                f = tar.extractfile(name)
                break
        if f is None:
            raise DataError(
                f"{archive}: has no {member}; is it the right release file?"
            )
    f = stack.enter_context(f)
    if member.endswith(".gz"):
        f = stack.enter_context(gzip.GzipFile(fileobj=f))
    return f


_ARCHIVE_ERRORS = (
    tarfile.TarError,
    zipfile.BadZipFile,
    gzip.BadGzipFile,
    zlib.error,
    EOFError,
)


@dataclass(frozen=True)
class Member:
    """A file inside an archive (``member`` None: the archive is one gzipped file)."""

    archive: Path
    member: Optional[str] = None

    def __str__(self) -> str:
        return f"{self.archive}:{self.member}" if self.member else str(self.archive)

    @property
    def name(self) -> str:
        return self.member or self.archive.name

    @contextlib.contextmanager
    def open_binary(self) -> Iterator:
        """The member as a binary stream, read in place."""
        with contextlib.ExitStack() as stack:
            try:
                yield _open_member(self.archive, self.member, stack)
            except _ARCHIVE_ERRORS as e:
                raise DataError(
                    f"{self}: unreadable archive ({e}); delete it so that it is "
                    "downloaded again, or replace it with a complete copy"
                ) from None


Source = Union[Path, Member]


@dataclass(frozen=True)
class Part:
    """One parallel corpus of an official release.

    Args:
        plain: file prefix of a plain-text copy: ``<raw>/<plain>.<lang>``.
        members: per language, the file's path in the release once extracted.
        archive: the release file to download (``{lang}`` is replaced).
        url: its official URL (``{lang}`` is replaced).
    """

    plain: str
    members: Dict[str, str] = field(default_factory=dict)
    archive: str = ""
    url: str = ""


def is_segmented(source: Source) -> bool:
    """SGML/XML test sets (``<seg id="N">...</seg>`` lines) rather than plain text."""
    name = source.name if isinstance(source, Member) else Path(source).name
    return re.search(r"\.(sgm|xml)(\.gz)?$", name) is not None


def locate(part: Part, lang: str, raw: Optional[Path], cache: Path) -> Source:
    """One side of ``part``: from ``raw`` when given, else downloaded into ``cache``."""
    member = part.members.get(lang)
    archive = part.archive.format(lang=lang)
    url = part.url.format(lang=lang)
    if raw is None and Path(part.plain).is_absolute():
        raw = Path(part.plain).parent
    if raw is None:
        if not archive:
            raise DataError(
                f"{part.plain}.{lang}: no download for this corpus; pass --raw DIR "
                f"with {part.plain}.{lang} in it"
            )
        path = download(url, cache / archive)
        return Member(path, member)
    prefix = Path(part.plain) if Path(part.plain).is_absolute() else raw / part.plain
    plain, packed = Path(f"{prefix}.{lang}"), Path(f"{prefix}.{lang}.gz")
    if plain.is_file():
        return plain
    if packed.is_file():
        return Member(packed)
    looked = [plain, packed]
    if member:  # the release's file, in its extracted layout or at the top
        for path in (raw / member, raw / Path(member).name):
            if path in looked:
                continue
            looked.append(path)
            if path.is_file():
                return Member(path) if member.endswith(".gz") else path
    if archive:
        looked.append(raw / archive)
        if (raw / archive).is_file():
            return Member(raw / archive, member)
    hint = f" (the release file {archive} is at {url})" if url else ""
    raise DataError(
        f"{part.plain}.{lang}: not found in {raw}; looked for "
        f"{', '.join(map(str, looked))}. Put the file there{hint}, or pass the "
        "folder that has it with --raw"
    )


def download(url: str, dest: Path, timeout: float = 60.0) -> Path:
    """``dest`` when present, else fetched from ``url`` (through ``dest.part``,
    renamed only once complete)."""
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    logger.info("downloading %s -> %s", url, dest)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r, open(part, "wb") as f:
            shutil.copyfileobj(r, f, length=1 << 20)
    except (urllib.error.URLError, OSError) as e:
        part.unlink(missing_ok=True)
        raise DataError(
            f"could not download {url} ({e}). If this machine is offline, fetch that "
            f"file on one that is online, put it in a folder and pass --raw FOLDER "
            f"(or place it at {dest})"
        ) from None
    part.rename(dest)
    return dest


_CHECKSUMS: Dict[tuple, str] = {}


def checksum(source: Source) -> str:
    """sha256 of the file (of the whole archive for a member), once per process."""
    path = Path(source.archive if isinstance(source, Member) else source).resolve()
    stat = path.stat()
    key = (path, stat.st_size, stat.st_mtime_ns)
    if key not in _CHECKSUMS:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _CHECKSUMS[key] = h.hexdigest()
    return _CHECKSUMS[key]


_SEG_OPEN = re.compile(r'<seg id="[0-9]*">\s*')
_SEG_CLOSE = re.compile(r"\s*</seg>\s*")


def segments(lines: Iterable[str]) -> Iterator[str]:
    """fairseq's ``grep '<seg id' | sed`` extraction of the segments of an
    SGML/XML test set: the ``<seg id="N">`` lines, without their tags and the
    white space around them."""
    for line in lines:
        if "<seg id" in line:
            yield _SEG_CLOSE.sub("", _SEG_OPEN.sub("", line))


def read(source: Source) -> Iterator[str]:
    """The text lines of ``source``: its segments if it is SGML/XML."""
    lines = iter_lines(source)
    return segments(lines) if is_segmented(source) else lines


_IWSLT_DROP = ("<url>", "<talkid>", "<keywords>")
_IWSLT_STRIP = re.compile(r"</?(title|description)>")


def iwslt_tags(lines: Iterable[str]) -> Iterator[str]:
    """prepare-iwslt14.sh on ``train.tags.*``: drop the ``<url>``, ``<talkid>``
    and ``<keywords>`` lines, keep the text of ``<title>`` and ``<description>``."""
    for line in lines:
        if not any(tag in line for tag in _IWSLT_DROP):
            yield _IWSLT_STRIP.sub("", line)
