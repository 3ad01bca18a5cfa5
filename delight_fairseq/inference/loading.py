"""Loading a trained DeLighT checkpoint for translation: the checkpoint file
(or a folder's), the languages, the dictionaries, the model
(:func:`load_model`), and the search over it (:func:`build_decoder`, with the
``--int8`` hook :func:`quantize_engine`). Used by
:mod:`delight_fairseq.inference.translate`; setup problems raise
:class:`TranslateError`, whose message says what to do.
"""

import importlib
import logging
import os
from pathlib import Path
from typing import Optional, Union

from delight_lite.stream import TranslateError
from delight_lite.text import read_prep_settings

logger = logging.getLogger("delight_fairseq.translate")

QUANTIZE_MODULE = "delight_fairseq.inference.quantize"


def resolve_checkpoint(path: Union[str, Path]) -> Path:
    """A checkpoint file, or a folder's ``checkpoint_best.pt`` (else
    ``checkpoint_last.pt``); logs which file is used."""
    path = Path(path)
    if path.is_file():
        logger.info("checkpoint: %s", path)
        return path
    if path.is_dir():
        for name in ("checkpoint_best.pt", "checkpoint_last.pt"):
            if (path / name).is_file():
                logger.info("checkpoint: %s (%s of the folder)", path / name, name)
                return path / name
        raise TranslateError(
            f"{path} has neither checkpoint_best.pt nor checkpoint_last.pt; pass "
            "the checkpoint file itself"
        )
    raise TranslateError(f"no checkpoint at {path}")


def _languages(cfg_task, data: Optional[Path], prep: Optional[dict], src, tgt):
    """(source, target): given, else the checkpoint's, else prep.json's
    direction, else the data-bin's file names."""
    from fairseq.data.data_utils import infer_language_pair

    src = src or cfg_task.get("source_lang")
    tgt = tgt or cfg_task.get("target_lang")
    if (src is None or tgt is None) and prep and "-" in prep.get("direction", ""):
        s, t = prep["direction"].split("-", 1)
        src, tgt = src or s, tgt or t
    if (src is None or tgt is None) and data is not None:
        s, t = infer_language_pair(str(data))
        src, tgt = src or s, tgt or t
    if src is None or tgt is None:
        raise TranslateError(
            "cannot tell the source and target languages (the checkpoint does not "
            "record them and the data-bin has no binarized split): pass "
            "--source-lang and --target-lang"
        )
    return src, tgt


def _dictionary(path: Optional[Path], data: Optional[Path], lang: str, flag: str):
    from fairseq.data import Dictionary

    if path is None:
        if data is None:
            raise TranslateError(
                f"no data-bin to take dict.{lang}.txt from: pass --data DATA_BIN "
                f"(or {flag} FILE)"
            )
        path = data / f"dict.{lang}.txt"
    if not Path(path).is_file():
        raise TranslateError(
            f"no dictionary at {path}: pass the data-bin the model was trained on "
            f"(--data) or the dictionary itself ({flag})"
        )
    return Dictionary.load(str(path)), Path(path)


def load_model(
    checkpoint: Union[str, Path],
    data: Optional[Union[str, Path]] = None,
    source_lang: Optional[str] = None,
    target_lang: Optional[str] = None,
    src_dict: Optional[Union[str, Path]] = None,
    tgt_dict: Optional[Union[str, Path]] = None,
):
    """Load a checkpoint with its dictionaries.

    Returns ``(model, task, info)``: the model in eval mode on the CPU, a
    fairseq TranslationTask holding the dictionaries, and a dict with the
    resolved ``checkpoint``, ``data``, ``source_lang``, ``target_lang``,
    ``src_dict`` and ``tgt_dict`` paths and the data-bin's ``prep`` settings.
    """
    from fairseq import checkpoint_utils
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from fairseq.tasks.translation import TranslationTask

    import delight_fairseq  # noqa: F401  (registers the model with fairseq)

    path = resolve_checkpoint(checkpoint)
    state = checkpoint_utils.load_checkpoint_to_cpu(str(path))
    cfg = state.get("cfg")
    if cfg is None and state.get("args") is not None:
        cfg = convert_namespace_to_omegaconf(state["args"])
    if cfg is None or cfg.get("task") is None or cfg.get("model") is None:
        raise TranslateError(f"{path} is not a fairseq checkpoint (no configuration)")
    if data is None and src_dict is None:
        recorded = (cfg.task.get("data") or "").split(os.pathsep)[0]
        if recorded and Path(recorded).is_dir():
            data = recorded
            logger.info("data-bin: %s (recorded in the checkpoint)", data)
    data = Path(data) if data is not None else None
    if data is not None and not data.is_dir():
        raise TranslateError(f"--data: no data-bin folder at {data}")
    prep = read_prep_settings(data)
    src, tgt = _languages(cfg.task, data, prep, source_lang, target_lang)
    sdict, sdict_path = _dictionary(
        Path(src_dict) if src_dict else None, data, src, "--src-dict"
    )
    tdict, tdict_path = _dictionary(
        Path(tgt_dict) if tgt_dict else None, data, tgt, "--tgt-dict"
    )
    task = TranslationTask(cfg.task, sdict, tdict)
    try:
        models, _, _ = checkpoint_utils.load_model_ensemble_and_task(
            [str(path)], task=task, state=state
        )
    except RuntimeError as e:
        if "size mismatch" not in str(e):
            raise
        raise TranslateError(
            f"the dictionaries ({len(sdict):,} and {len(tdict):,} symbols, from "
            f"{sdict_path} and {tdict_path}) do not match {path}: pass the data-bin "
            "the model was trained on"
        ) from None
    model = models[0].eval()
    info = dict(
        checkpoint=path,
        data=data,
        source_lang=src,
        target_lang=tgt,
        src_dict=sdict_path,
        tgt_dict=tdict_path,
        prep=prep,
    )
    return model, task, info


def quantize_engine(engine):
    """``--int8``: the hook ``delight_fairseq.inference.quantize.quantize_engine``
    (returns the engine to use; None means it changed ``engine`` in place)."""
    try:
        module = importlib.import_module(QUANTIZE_MODULE)
    except ModuleNotFoundError as e:
        if e.name != QUANTIZE_MODULE:
            raise
        raise TranslateError(
            "--int8: int8 decoding is not available in this installation "
            f"({QUANTIZE_MODULE} is missing); run without --int8"
        ) from None
    hook = getattr(module, "quantize_engine", None)
    if hook is None:
        raise TranslateError(
            f"--int8: {QUANTIZE_MODULE} has no quantize_engine(engine); int8 decoding "
            "is not available in this installation, run without --int8"
        )
    result = hook(engine)
    return engine if result is None else result


def build_decoder(
    model,
    tgt_dict,
    *,
    beam: int,
    lenpen: float,
    max_len_a: float,
    max_len_b: int,
    min_len: int,
    int8: bool = False,
    fp32_reference: bool = False,
    matmul: str = "auto",
):
    """The search over ``model``: returns ``(engine, generator, description)``,
    the lean :class:`~delight_fairseq.inference.Engine` (quantized by
    :func:`quantize_engine` with ``int8``) and None, or with
    ``fp32_reference`` None and fairseq's SequenceGenerator."""
    if fp32_reference:
        from fairseq.sequence_generator import SequenceGenerator

        generator = SequenceGenerator(
            [model],
            tgt_dict,
            beam_size=beam,
            len_penalty=lenpen,
            max_len_a=max_len_a,
            max_len_b=max_len_b,
            min_len=min_len,
        )
        return None, generator, "fairseq's SequenceGenerator (float32 reference)"
    from .engine import Engine
    from .matmul import resolve

    engine = Engine(
        model,
        tgt_dict,
        beam=beam,
        lenpen=lenpen,
        max_len_a=max_len_a,
        max_len_b=max_len_b,
        min_len=min_len,
        matmul=matmul,
    )
    if int8:
        return quantize_engine(engine), None, "the engine, int8"
    library = resolve(matmul, next(model.parameters()))
    products = "oneDNN" if library == "onednn" else "F.linear"
    return engine, None, f"the engine, float32 products through {products}"
