"""Label-smoothed cross-entropy without a second vocabulary-sized tensor.

fairseq's ``label_smoothed_cross_entropy`` materialises the log-probabilities
(N x V), and its backward builds several more N x V tensors (the scatter of the
gathered target, the broadcast of the smoothing sum, their sum, and the
log-softmax gradient). At a 44k vocabulary these dominate training memory.

The same loss follows from the logits and their log-sum-exp alone:

    nll_i    = lse_i - z_i[t_i]
    smooth_i = V * lse_i - sum_v z_iv          (= -sum_v log p_iv)
    loss     = (1 - eps - eps/(V-1)) * sum nll + eps/(V-1) * sum smooth

and its gradient is one N x V tensor, softmax(z) scaled and shifted in place.
Where the criterion made the logits itself (its ``forward``, each chunk below),
that tensor is the logits': the backward pass writes the gradient over them, as
nothing reads them after it (autograd's version counter is raised, so a reader
it knows of fails loudly). A fresh N x V tensor per step costs more than the
arithmetic on a CPU: it is mapped from the kernel and faults in page by page.
On the CPU (float32, float64) the passes over the logits are fused
(csrc/cross_entropy.cpp): one read of each row gives its log-sum-exp, target
logit, sum and arg-max (the accuracy), and the backward writes the gradient in
one pass. Elsewhere the same per-row numbers come from eager ops.

With ``--loss-chunk-tokens K`` not even the logits exist in full: the criterion
takes the decoder's features (N x d) and the output weight (V x d), and computes
the loss K tokens at a time, each chunk's logits recomputed in the backward
(``torch.utils.checkpoint``). At most one K x V chunk of logits and one of
gradient is alive at a time, for one more output matmul per step.
"""

from dataclasses import dataclass, field
from typing import Optional

import torch
from fairseq import utils
from fairseq.criterions import register_criterion
from fairseq.criterions.label_smoothed_cross_entropy import (
    LabelSmoothedCrossEntropyCriterion,
    LabelSmoothedCrossEntropyCriterionConfig,
)
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from . import fused


def _upcast(logits: Tensor) -> Tensor:
    """Half-precision logits are reduced in float32, as fairseq's log_softmax does."""
    if logits.dtype in (torch.float16, torch.bfloat16):
        return logits.float()
    return logits


class _SmoothedCrossEntropy(torch.autograd.Function):
    """Summed label-smoothed loss and nll, and the number of tokens whose
    arg-max is the target (0 unless ``accuracy``), from N x V logits. On the
    CPU in float32 or float64 the passes over the logits run in the fused
    kernel (csrc/cross_entropy.cpp), elsewhere in eager ops; both compute the
    per-row numbers below."""

    @staticmethod
    def forward(
        ctx,
        logits: Tensor,
        target: Tensor,
        epsilon: float,
        ignore_index: int,
        accuracy: bool = True,
        overwrite: bool = False,
    ):
        z = _upcast(logits)
        vocab = z.size(-1)
        keep = target.ne(ignore_index)
        ctx.fused = fused.usable(z)
        if ctx.fused:
            lse, z_target, z_sum, argmax = fused.load().cross_entropy_forward(
                z, target, ignore_index
            )
        else:
            lse = torch.logsumexp(z, dim=-1)
            safe_target = target.masked_fill(~keep, 0)
            z_target = z.gather(-1, safe_target.unsqueeze(-1)).squeeze(-1)
            z_sum = z.sum(-1)
            argmax = z.argmax(-1) if accuracy else None  # the kernel's costs nothing
        nll = ((lse - z_target) * keep).sum()
        smooth = ((vocab * lse - z_sum) * keep).sum()
        eps_i = epsilon / (vocab - 1)
        loss = (1.0 - epsilon - eps_i) * nll + eps_i * smooth
        if accuracy:
            correct = (argmax.eq(target) & keep).sum()
        else:
            correct = torch.zeros((), dtype=torch.long, device=target.device)
        ctx.save_for_backward(logits, lse, target)
        ctx.epsilon, ctx.ignore_index = epsilon, ignore_index
        ctx.overwrite, ctx.overwritten = overwrite, False
        ctx.mark_non_differentiable(correct)
        return loss, nll, correct

    @staticmethod
    def backward(ctx, grad_loss: Tensor, grad_nll: Tensor, _grad_correct):
        try:
            logits, lse, target = ctx.saved_tensors
        except RuntimeError as error:  # autograd's version check
            if not ctx.overwritten:
                raise
            raise RuntimeError(
                "the DeLighT criterion's backward pass ran twice over one forward "
                "pass (retain_graph): its first pass wrote the gradient over the "
                "logits. Compute the loss again before a second backward pass"
            ) from error
        z = _upcast(logits)
        # the gradient replaces the logits where their last reader is this pass
        # (no second N x V tensor); an upcast copy is ours to overwrite anyway.
        # Recomputed logits (a checkpointed chunk) are fresh at every pass.
        written = ctx.overwrite and z is logits
        if written:
            # later readers that autograd knows of fail loudly, not silently
            torch.autograd.graph.increment_version(logits)
            ctx.overwritten = True
        in_place = written or z is not logits
        vocab = logits.size(-1)
        eps_i = ctx.epsilon / (vocab - 1)
        # d loss / d z = a * (p - onehot) + eps_i * (V p - 1), with
        # a = (1 - eps - eps_i) for the loss, plus 1 for the nll output
        a = (1.0 - ctx.epsilon - eps_i) * grad_loss + grad_nll
        b = eps_i * grad_loss
        if ctx.fused:
            grad = fused.load().cross_entropy_backward(
                z, target, lse, ctx.ignore_index, float(a), float(b), in_place
            )
            return grad.to(logits.dtype), None, None, None, None, None
        keep = target.ne(ctx.ignore_index)
        shifted = z.sub_(lse.unsqueeze(-1)) if in_place else z - lse.unsqueeze(-1)
        grad = shifted.exp_()  # the one N x V tensor
        grad.mul_(a + b * vocab).sub_(b)
        grad.scatter_add_(
            -1,
            target.masked_fill(~keep, 0).unsqueeze(-1),
            (-a).expand(target.size()).unsqueeze(-1),
        )
        grad.mul_(keep.unsqueeze(-1).to(grad.dtype))
        return grad.to(logits.dtype), None, None, None, None, None


def smoothed_cross_entropy(
    logits: Tensor, target: Tensor, epsilon: float, ignore_index: int
):
    """(loss, nll_loss) summed over tokens; logits N x V, target N."""
    loss, nll, _ = _SmoothedCrossEntropy.apply(
        logits, target, epsilon, ignore_index, False
    )
    return loss, nll


def _chunk_loss(
    features, weight, target, epsilon: float, ignore_index: int, accuracy: bool
):
    """(loss, nll_loss, n_correct) of one chunk of tokens."""
    logits = torch.nn.functional.linear(features, weight)
    return _SmoothedCrossEntropy.apply(
        logits, target, epsilon, ignore_index, accuracy, True
    )


def chunked_cross_entropy(
    features: Tensor,
    weight: Tensor,
    target: Tensor,
    epsilon: float,
    ignore_index: int,
    chunk: int,
    accuracy: bool = True,
):
    """(loss, nll_loss, n_correct) summed over tokens from features N x d and the
    output weight V x d, ``chunk`` tokens at a time; the logits of a chunk are
    recomputed in the backward instead of kept. n_correct is 0 unless
    ``accuracy``."""
    loss = nll = correct = None
    for start in range(0, features.size(0), chunk):
        args = (features[start : start + chunk], weight, target[start : start + chunk])
        if torch.is_grad_enabled() and (features.requires_grad or weight.requires_grad):
            part = checkpoint(
                _chunk_loss,
                *args,
                epsilon,
                ignore_index,
                accuracy,
                use_reentrant=False,
                preserve_rng_state=False,  # nothing random in the output layer
            )
        else:
            part = _chunk_loss(*args, epsilon, ignore_index, accuracy)
        if loss is None:
            loss, nll, correct = part
        else:
            loss, nll, correct = loss + part[0], nll + part[1], correct + part[2]
    return loss, nll, correct


def output_weight(model) -> Optional[Tensor]:
    """The V x d weight of the model's output layer when that layer is a plain,
    bias-free linear map of the decoder's features (DeLighT, fairseq's
    transformer without adaptive softmax); None otherwise."""
    decoder = model.decoder
    if getattr(decoder, "adaptive_softmax", None) is not None:
        return None
    if hasattr(decoder, "output_weight"):
        return decoder.output_weight()
    projection = getattr(decoder, "output_projection", None)
    if isinstance(projection, nn.Linear) and projection.bias is None:
        return projection.weight
    return None


@dataclass
class DeLighTLabelSmoothedCrossEntropyConfig(LabelSmoothedCrossEntropyCriterionConfig):
    report_accuracy: bool = field(
        default=True, metadata={"help": "report accuracy metric"}
    )
    loss_chunk_tokens: int = field(
        default=0,
        metadata={
            "help": "compute the output layer and the loss this many target tokens "
            "at a time, recomputing each chunk's logits in the backward: training "
            "never holds the whole batch's N x V logits (less memory, one more "
            "output matmul). 0: off"
        },
    )


@register_criterion(
    "delight_label_smoothed_cross_entropy",
    dataclass=DeLighTLabelSmoothedCrossEntropyConfig,
)
class DeLighTLabelSmoothedCrossEntropy(LabelSmoothedCrossEntropyCriterion):
    """fairseq's label-smoothed cross-entropy (same loss, nll_loss, gradients
    and logs), computed from the logits without materialising log-probs."""

    def __init__(
        self,
        task,
        sentence_avg,
        label_smoothing,
        ignore_prefix_size=0,
        report_accuracy=False,
        loss_chunk_tokens=0,
    ):
        super().__init__(
            task, sentence_avg, label_smoothing, ignore_prefix_size, report_accuracy
        )
        if loss_chunk_tokens < 0:
            raise ValueError(
                f"--loss-chunk-tokens is {loss_chunk_tokens}: give a positive "
                "number of tokens per chunk, or 0 to compute the loss in one piece"
            )
        self.loss_chunk_tokens = loss_chunk_tokens

    def forward(self, model, sample, reduce=True):
        """fairseq's forward (the same loss, sample size and logs), with the loss
        and the accuracy from one pass over the logits."""
        if self.loss_chunk_tokens and reduce:
            loss, nll_loss, n_correct, target = self._chunked(model, sample)
        elif self._from_logits(model, reduce):
            net_output = model(**sample["net_input"])
            logits, target = self._logits_and_target(model, net_output, sample)
            # the logits live only here: the backward pass may overwrite them
            loss, nll_loss, n_correct = _SmoothedCrossEntropy.apply(
                logits, target, self.eps, self.padding_idx, self.report_accuracy, True
            )
        else:
            return super().forward(model, sample, reduce=reduce)
        sample_size = (
            sample["target"].size(0) if self.sentence_avg else sample["ntokens"]
        )
        logging_output = {
            "loss": loss.data,
            "nll_loss": nll_loss.data,
            "ntokens": sample["ntokens"],
            "nsentences": sample["target"].size(0),
            "sample_size": sample_size,
        }
        if self.report_accuracy:
            logging_output["n_correct"] = utils.item(n_correct.data)
            logging_output["total"] = utils.item(target.ne(self.padding_idx).sum())
        return loss, sample_size, logging_output

    def _chunked(self, model, sample):
        weight = output_weight(model)
        if weight is None:
            raise ValueError(
                "--loss-chunk-tokens needs an output layer that is a bias-free "
                "linear map of the decoder's features (DeLighT, or fairseq's "
                "transformer without adaptive softmax): drop the flag for this model"
            )
        features, extra = model(**sample["net_input"], features_only=True)
        target = model.get_targets(sample, (features, extra))
        if self.ignore_prefix_size > 0:
            features = features[:, self.ignore_prefix_size :, :]
            target = target[:, self.ignore_prefix_size :]
        target = target.reshape(-1)
        loss, nll_loss, n_correct = chunked_cross_entropy(
            features.reshape(-1, features.size(-1)),
            weight,
            target,
            self.eps,
            self.padding_idx,
            self.loss_chunk_tokens,
            self.report_accuracy,
        )
        return loss, nll_loss, n_correct, target

    def _logits_and_target(self, model, net_output, sample):
        logits = net_output[0]
        target = model.get_targets(sample, net_output)
        if self.ignore_prefix_size > 0:
            logits = logits[:, self.ignore_prefix_size :, :]
            target = target[:, self.ignore_prefix_size :]
        return logits.reshape(-1, logits.size(-1)), target.reshape(-1)

    def _from_logits(self, model, reduce: bool) -> bool:
        # adaptive softmax returns features, not logits: use the generic path
        return reduce and getattr(model.decoder, "adaptive_softmax", None) is None

    def compute_loss(self, model, net_output, sample, reduce=True):
        """fairseq's hook, for callers other than ``forward`` (which takes the
        loss and the accuracy from one call); accuracy stays fairseq's."""
        if not self._from_logits(model, reduce):
            return super().compute_loss(model, net_output, sample, reduce=reduce)
        logits, target = self._logits_and_target(model, net_output, sample)
        return smoothed_cross_entropy(logits, target, self.eps, self.padding_idx)
