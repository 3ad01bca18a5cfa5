"""A user's mistakes end in clear messages or a defined behaviour, never in
silent corruption."""

import hashlib
import re
import shutil

import pytest

from delight_fairseq.tools.synthetic import write_corpus

from helpers import NO_DROPOUT, TINY_MODEL, TRAIN, USER_DIR, preprocess, run_cli

# end to end: fairseq's CLIs, processes or real corpora (scripts/test.sh -m 'not slow' skips)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    work = tmp_path_factory.mktemp("bad")
    raw = write_corpus(work / "raw", 600, 50, 20, seed=11)
    data = preprocess(raw, work / "bin")
    ckpt = work / "ckpt"
    run_cli(
        "fairseq-train",
        data,
        "--user-dir",
        USER_DIR,
        *TINY_MODEL,
        *NO_DROPOUT,
        *TRAIN,
        "--save-dir",
        ckpt,
        "--max-update",
        "60",
    )
    return {"work": work, "raw": raw, "data": data, "ckpt": ckpt / "checkpoint_last.pt"}


def interactive(setup, stdin=None, extra=(), env=None):
    return run_cli(
        "fairseq-interactive",
        setup["data"],
        "--user-dir",
        USER_DIR,
        "--path",
        setup["ckpt"],
        "--source-lang",
        "src",
        "--target-lang",
        "tgt",
        "--cpu",
        "--beam",
        "2",
        *extra,
        stdin=stdin,
        env=env,
        check=False,
    )


def hypotheses(log):
    return re.findall(r"^H-(\d+)\t", log, flags=re.M)


def test_interactive_keeps_one_output_per_input_line(setup):
    # empty lines are translated as an empty source (end-of-sentence only)
    code, log = interactive(setup, stdin="ein mann\n\nder hund\n\n")
    assert code == 0
    assert hypotheses(log) == ["0", "1", "2", "3"]


def test_interactive_maps_unknown_characters_to_unk(setup):
    code, log = interactive(setup, stdin="der hund ☃ sieht ΩΩ\n")
    assert code == 0
    assert re.search(r"^S-0\tder hund <unk> sieht <unk>$", log, flags=re.M)
    assert hypotheses(log) == ["0"]


def test_interactive_rejects_a_line_longer_than_max_positions(setup):
    code, log = interactive(setup, stdin=" ".join(["hund"] * 1100) + "\n")
    assert code != 0
    assert "max_positions=(1024, 1024)" in log
    assert "--skip-invalid-size-inputs-valid-test" in log


def test_interactive_non_utf8_bytes(setup, tmp_path):
    """Stock fairseq stops at the first invalid byte of --input FILE and translates
    nothing after it; with the plugin each bad line becomes U+FFFD (<unk>) with a
    warning naming it, on standard input and from a file alike."""
    text = b"ein mann\nder hund \xff\xfe sieht\n\xc3\nein mann\n"
    bad = tmp_path / "input.txt"
    bad.write_bytes(text)
    for source in ({"stdin": text}, {"extra": ("--input", bad)}):
        code, log = interactive(
            setup, env={"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}, **source
        )
        assert code == 0, log
        assert hypotheses(log) == ["0", "1", "2", "3"]
        assert re.search(r"^S-1\tder hund <unk> sieht$", log, flags=re.M), log
        assert re.search(r"line 2: invalid UTF-8, replaced by U\+FFFD", log)
        assert re.search(r"line 3: invalid UTF-8", log)
        assert not re.search(r"line [14]: invalid", log)


def test_generate_with_other_dictionaries_names_the_sizes(setup):
    raw = setup["work"] / "raw_other"
    write_corpus(raw, 600, 50, 20, seed=11)
    with open(raw / "train.src", "a", encoding="utf-8") as f:
        f.write("ganz neue wörter hier\n")
    with open(raw / "train.tgt", "a", encoding="utf-8") as f:
        f.write("quite new words here\n")
    other = preprocess(raw, setup["work"] / "bin_other")
    code, log = run_cli(
        "fairseq-generate",
        other,
        "--user-dir",
        USER_DIR,
        "--path",
        setup["ckpt"],
        "--cpu",
        "--beam",
        "2",
        check=False,
    )
    assert code != 0
    assert re.search(
        r"trained with a source dictionary of \d+ entries, but the data "
        r"directory's source dictionary has \d+",
        log,
    )


def test_generate_on_separate_dictionaries_with_a_shared_checkpoint(setup):
    separate = preprocess(setup["raw"], setup["work"] / "bin_separate", joined=False)
    code, log = run_cli(
        "fairseq-generate",
        separate,
        "--user-dir",
        USER_DIR,
        "--path",
        setup["ckpt"],
        "--cpu",
        check=False,
    )
    assert code != 0
    assert "--share-all-embeddings needs one joined dictionary" in log


def test_restoring_another_architecture_is_refused(setup):
    work = setup["work"] / "transformer"
    # stock fairseq-train (no plugin loaded, so no exit hook) can abort at exit
    # when its prefetching thread is still loading batches ("terminate called
    # without an active exception", see delight_fairseq/shutdown.py and
    # tests/test_exit.py): --data-buffer-size 0 reads batches on the main thread
    code, log = run_cli(
        "fairseq-train",
        setup["data"],
        "--arch",
        "transformer",
        "--encoder-layers",
        "1",
        "--decoder-layers",
        "1",
        "--encoder-embed-dim",
        "32",
        "--decoder-embed-dim",
        "32",
        "--encoder-ffn-embed-dim",
        "32",
        "--decoder-ffn-embed-dim",
        "32",
        "--encoder-attention-heads",
        "2",
        "--decoder-attention-heads",
        "2",
        "--optimizer",
        "adam",
        "--lr",
        "0.001",
        "--max-update",
        "1",
        "--max-tokens",
        "500",
        "--cpu",
        "--save-dir",
        work,
        "--num-workers",
        "0",
        "--data-buffer-size",
        "0",
        "--disable-validation",
        check=False,
    )
    assert code == 0, log
    assert "done training" in log and (work / "checkpoint_last.pt").is_file(), log
    code, log = run_cli(
        "fairseq-train",
        setup["data"],
        "--user-dir",
        USER_DIR,
        *TINY_MODEL,
        *TRAIN,
        "--save-dir",
        setup["work"] / "delight_from_transformer",
        "--restore-file",
        work / "checkpoint_last.pt",
        "--max-update",
        "2",
        check=False,
    )
    assert code != 0
    assert "does not hold a DeLighT model" in log


def test_changed_flags_name_the_parameter(setup):
    code, log = run_cli(
        "fairseq-train",
        setup["data"],
        "--user-dir",
        USER_DIR,
        *TINY_MODEL,
        *TRAIN,
        "--delight-emb-out-dim",
        "128",
        "--save-dir",
        setup["work"] / "wider",
        "--restore-file",
        setup["ckpt"],
        "--max-update",
        "70",
        check=False,
    )
    assert code != 0
    assert "DeLighT configuration differs" in log and "--delight-emb-out-dim" in log


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_checkpoint_is_reported_and_never_overwritten(setup, damage):
    save = setup["work"] / f"corrupt_{damage}"
    save.mkdir()
    last = save / "checkpoint_last.pt"
    shutil.copy(setup["ckpt"], last)
    data = last.read_bytes()
    last.write_bytes(
        data[: len(data) // 2] if damage == "truncate" else b"\x00garbage" * 100
    )
    before = sha(last)
    code, log = run_cli(
        "fairseq-train",
        setup["data"],
        "--user-dir",
        USER_DIR,
        *TINY_MODEL,
        *NO_DROPOUT,
        *TRAIN,
        "--save-dir",
        save,
        "--max-update",
        "80",
        check=False,
    )
    assert code != 0
    assert f"cannot read the checkpoint {last}: the file is truncated or corrupt" in log
    assert sha(last) == before
    assert sorted(p.name for p in save.iterdir()) == ["checkpoint_last.pt"]

    code, log = run_cli(
        "fairseq-generate",
        setup["data"],
        "--user-dir",
        USER_DIR,
        "--path",
        last,
        "--cpu",
        check=False,
    )
    assert code != 0 and "truncated or corrupt" in log
