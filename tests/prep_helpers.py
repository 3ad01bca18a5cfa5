"""Small file helpers shared by the data-preparation tests."""

from pathlib import Path


def write(path: Path, text) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def raw_pair(folder: Path, prefix: str, src_lines, tgt_lines, src="de", tgt="en"):
    write(folder / f"{prefix}.{src}", "".join(x + "\n" for x in src_lines))
    write(folder / f"{prefix}.{tgt}", "".join(x + "\n" for x in tgt_lines))
