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
"""

from dataclasses import dataclass, field

import torch
from fairseq.criterions import register_criterion
from fairseq.criterions.label_smoothed_cross_entropy import (
    LabelSmoothedCrossEntropyCriterion,
    LabelSmoothedCrossEntropyCriterionConfig,
)
from torch import Tensor


def _upcast(logits: Tensor) -> Tensor:
    """Half-precision logits are reduced in float32, as fairseq's log_softmax does."""
    if logits.dtype in (torch.float16, torch.bfloat16):
        return logits.float()
    return logits


class _SmoothedCrossEntropy(torch.autograd.Function):
    """Summed label-smoothed loss and nll from N x V logits."""

    @staticmethod
    def forward(ctx, logits: Tensor, target: Tensor, epsilon: float, ignore_index: int):
        z = _upcast(logits)
        vocab = z.size(-1)
        lse = torch.logsumexp(z, dim=-1)
        keep = target.ne(ignore_index)
        safe_target = target.masked_fill(~keep, 0)
        z_target = z.gather(-1, safe_target.unsqueeze(-1)).squeeze(-1)
        nll = ((lse - z_target) * keep).sum()
        smooth = ((vocab * lse - z.sum(-1)) * keep).sum()
        eps_i = epsilon / (vocab - 1)
        loss = (1.0 - epsilon - eps_i) * nll + eps_i * smooth
        ctx.save_for_backward(logits, lse, safe_target, keep)
        ctx.epsilon = epsilon
        return loss, nll

    @staticmethod
    def backward(ctx, grad_loss: Tensor, grad_nll: Tensor):
        logits, lse, target, keep = ctx.saved_tensors
        vocab = logits.size(-1)
        eps_i = ctx.epsilon / (vocab - 1)
        # d loss / d z = a * (p - onehot) + eps_i * (V p - 1), with
        # a = (1 - eps - eps_i) for the loss, plus 1 for the nll output
        a = (1.0 - ctx.epsilon - eps_i) * grad_loss + grad_nll
        b = eps_i * grad_loss
        z = _upcast(logits)
        grad = (z - lse.unsqueeze(-1)).exp_()  # the one N x V tensor
        grad.mul_(a + b * vocab).sub_(b)
        grad.scatter_add_(
            -1, target.unsqueeze(-1), (-a).expand(target.size()).unsqueeze(-1)
        )
        grad.mul_(keep.unsqueeze(-1).to(grad.dtype))
        return grad.to(logits.dtype), None, None, None


def smoothed_cross_entropy(
    logits: Tensor, target: Tensor, epsilon: float, ignore_index: int
):
    """(loss, nll_loss) summed over tokens; logits N x V, target N."""
    return _SmoothedCrossEntropy.apply(logits, target, epsilon, ignore_index)


@dataclass
class DeLighTLabelSmoothedCrossEntropyConfig(LabelSmoothedCrossEntropyCriterionConfig):
    report_accuracy: bool = field(
        default=True, metadata={"help": "report accuracy metric"}
    )


@register_criterion(
    "delight_label_smoothed_cross_entropy",
    dataclass=DeLighTLabelSmoothedCrossEntropyConfig,
)
class DeLighTLabelSmoothedCrossEntropy(LabelSmoothedCrossEntropyCriterion):
    """fairseq's label-smoothed cross-entropy (same loss, nll_loss, gradients
    and logs), computed from the logits without materialising log-probs."""

    def _logits_and_target(self, model, net_output, sample):
        logits = net_output[0]
        target = model.get_targets(sample, net_output)
        if self.ignore_prefix_size > 0:
            logits = logits[:, self.ignore_prefix_size :, :]
            target = target[:, self.ignore_prefix_size :]
        return logits.reshape(-1, logits.size(-1)), target.reshape(-1)

    def _fused(self, model, reduce: bool) -> bool:
        # adaptive softmax returns features, not logits: use the generic path
        return reduce and getattr(model.decoder, "adaptive_softmax", None) is None

    def compute_loss(self, model, net_output, sample, reduce=True):
        if not self._fused(model, reduce):
            return super().compute_loss(model, net_output, sample, reduce=reduce)
        logits, target = self._logits_and_target(model, net_output, sample)
        return smoothed_cross_entropy(logits, target, self.eps, self.padding_idx)

    def compute_accuracy(self, model, net_output, sample):
        if not self._fused(model, True):
            return super().compute_accuracy(model, net_output, sample)
        # the arg-max of the logits is the arg-max of the log-probabilities
        logits, target = self._logits_and_target(model, net_output, sample)
        mask = target.ne(self.padding_idx)
        n_correct = logits.argmax(-1).eq(target).masked_select(mask).sum()
        return n_correct, mask.sum()
