"""Average the parameters of several checkpoints (no installed fairseq ships it).

    delight-average --inputs CKPT_DIR --num-epoch-checkpoints 10 \\
        --output CKPT_DIR/checkpoint_avg10.pt
    delight-average --inputs a.pt b.pt c.pt --output avg.pt

The flags are those of fairseq's scripts/average_checkpoints.py. The result is
the last input's checkpoint (its config, optimizer history...) with every
floating-point parameter replaced by the element-wise mean over the inputs.
"""

import argparse
import logging
import os
import re
from pathlib import Path
from typing import Dict, List, Optional

import torch

logger = logging.getLogger(__name__)


def last_checkpoints(
    directory, n: int, by_update: bool = False, upper_bound: Optional[int] = None
) -> List[Path]:
    """The n newest ``checkpoint<epoch>.pt`` (or ``checkpoint_<epoch>_<update>.pt``)."""
    pattern = re.compile(
        r"checkpoint_\d+_(\d+)\.pt" if by_update else r"checkpoint(\d+)\.pt"
    )
    found = []
    for path in Path(directory).iterdir():
        match = pattern.fullmatch(path.name)
        if match and (upper_bound is None or int(match.group(1)) <= upper_bound):
            found.append((int(match.group(1)), path))
    if len(found) < n:
        kind = "update" if by_update else "epoch"
        raise ValueError(
            f"found {len(found)} {kind} checkpoints in {directory}, {n} asked for: "
            "train with epoch checkpoints (no --no-epoch-checkpoints) or ask for fewer"
        )
    return [path for _, path in sorted(found)[-n:]]


def average_checkpoints(paths: List[Path]) -> Dict:
    """The last checkpoint's state, with its model averaged over ``paths``."""
    if not paths:
        raise ValueError("no checkpoints to average")
    sums: Dict[str, torch.Tensor] = {}
    state, keys = None, None
    for path in paths:
        state = torch.load(path, map_location="cpu", weights_only=False)
        model = state["model"]
        keys = keys or model.keys()
        if model.keys() != keys:
            raise ValueError(
                f"{path} holds other parameters than {paths[0]}: cannot average"
            )
        for name, value in model.items():
            if not torch.is_floating_point(value):
                continue
            acc = value.double()
            sums[name] = sums[name] + acc if name in sums else acc
    averaged = dict(state["model"])
    for name, total in sums.items():
        averaged[name] = (total / len(paths)).to(state["model"][name].dtype)
    state["model"] = averaged
    return state


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="delight-average", description="average checkpoints' parameters"
    )
    parser.add_argument(
        "--inputs",
        nargs="+",
        required=True,
        help="checkpoint files, or one directory with --num-*-checkpoints",
    )
    parser.add_argument("--output", required=True)
    parser.add_argument("--num-epoch-checkpoints", type=int)
    parser.add_argument("--num-update-checkpoints", type=int)
    parser.add_argument("--checkpoint-upper-bound", type=int)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s | %(levelname)s | %(message)s"
    )

    n = args.num_epoch_checkpoints or args.num_update_checkpoints
    if n:
        if len(args.inputs) != 1 or not os.path.isdir(args.inputs[0]):
            parser.error("--num-*-checkpoints takes one directory in --inputs")
        paths = last_checkpoints(
            args.inputs[0],
            n,
            bool(args.num_update_checkpoints),
            args.checkpoint_upper_bound,
        )
    else:
        paths = [Path(p) for p in args.inputs]
    logger.info(
        "averaging %d checkpoints: %s", len(paths), ", ".join(p.name for p in paths)
    )
    save_average(paths, args.output)


def save_average(paths: List[Path], output) -> Path:
    """Average ``paths`` into ``output``, written whole or not at all."""
    state = average_checkpoints(paths)
    tmp = Path(str(output) + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, output)  # never a half-written output
    logger.info("wrote %s", output)
    return Path(output)


if __name__ == "__main__":
    main()
