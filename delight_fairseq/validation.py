"""Checks of a DeLighT configuration, and the group caps that follow d_m.

:func:`resolve` fills the caps left at ``None`` (docs/architecture.md section 4)
and raises ValueError, naming the flag and what would work, for any setting that
cannot build a model.
"""

from .config import DeLighTConfig, Side, side
from .scaling import dextra_plan, group_cap


def resolve(cfg: DeLighTConfig) -> DeLighTConfig:
    """Fill the group caps left at ``None`` and check the result.

    Raises ValueError, naming the flag, for any setting that cannot build.
    """
    _check_width(cfg)
    # derived only where a cap is missing: below d_m 32 the rule has no value,
    # and explicit caps must still build
    if cfg.delight_emb_max_groups is None:
        cfg.delight_emb_max_groups = group_cap(cfg.delight_emb_out_dim)
    if cfg.delight_enc_max_groups is None:
        cfg.delight_enc_max_groups = group_cap(cfg.delight_emb_out_dim)
    if cfg.delight_dec_max_groups is None:
        cfg.delight_dec_max_groups = group_cap(cfg.delight_emb_out_dim)
    _validate_resolved(cfg)
    return cfg


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _check_width(cfg: DeLighTConfig) -> None:
    d_m = cfg.delight_emb_out_dim
    if d_m <= 0 or d_m % 2:
        raise ValueError(
            f"--delight-emb-out-dim (d_m) is {d_m}; it must be a positive even "
            "number, since attention runs at d_m/2 (for example 128, 256 or 512)"
        )
    if cfg.delight_emb_map_dim <= 0:
        raise ValueError(
            f"--delight-emb-map-dim is {cfg.delight_emb_map_dim}; it must be positive "
            "(the paper uses 128)"
        )


def validate(cfg: DeLighTConfig) -> None:
    """Raise ValueError for a configuration that cannot build a DeLighT model
    (group caps already filled, as :func:`resolve` leaves them)."""
    _check_width(cfg)
    _validate_resolved(cfg)


def _validate_resolved(cfg: DeLighTConfig) -> None:
    """Everything but the width, which :func:`resolve` checks before the caps."""
    d_m = cfg.delight_emb_out_dim
    for name in (
        "dropout",
        "attention_dropout",
        "activation_dropout",
        "ffn_dropout",
        "pe_dropout",
        "delight_dropout",
        "delight_emb_dropout",
    ):
        p = getattr(cfg, name)
        if not 0.0 <= p < 1.0:
            raise ValueError(f"{_flag(name)} is {p}; a dropout must lie in [0, 1)")
    heads = cfg.delight_attention_heads
    if heads < 1 or (d_m // 2) % heads:
        divisors = [h for h in (1, 2, 4, 8) if (d_m // 2) % h == 0]
        raise ValueError(
            f"--delight-attention-heads is {heads}, which does not split the "
            f"attention's width d_m/2 = {d_m // 2} (--delight-emb-out-dim {d_m}); "
            f"use one of {divisors}"
        )
    cross = cfg.delight_enc_dec_attn_dim
    if cross is not None and (cross < 1 or cross % heads):
        raise ValueError(
            f"--delight-enc-dec-attn-dim is {cross}; it must be >= 1 and divisible "
            f"by --delight-attention-heads ({heads}), or left unset for d_m/2 = "
            f"{d_m // 2}"
        )
    sides = (side(cfg, "enc"), side(cfg, "dec"))
    for s in sides:
        _validate_side(s, d_m)
    if cfg.delight_emb_width_mult <= 0:
        raise ValueError(
            f"--delight-emb-width-mult is {cfg.delight_emb_width_mult}; "
            "it must be > 0 (the paper uses 2)"
        )
    if cfg.delight_emb_depth < 1:
        raise ValueError(
            f"--delight-emb-depth is {cfg.delight_emb_depth}; it must be >= 1"
        )
    # every DExTra must split into its groups: check each plan once
    _check_plan(
        d_m,
        "--delight-emb-max-groups",
        cfg.delight_emb_max_groups,
        cfg.delight_emb_map_dim,
        d_m,
        [(cfg.delight_emb_depth, cfg.delight_emb_width_mult)],
    )
    for s in sides:
        _check_plan(
            d_m,
            s.flag("max_groups"),
            s.max_groups,
            d_m,
            d_m // 2,
            [(b.depth, b.width_mult) for b in s.schedule()],
        )


def _validate_side(s: Side, d_m: int) -> None:
    lo, hi = s.min_depth, s.max_depth
    if lo < 1:
        raise ValueError(f"{s.flag('min_depth')} is {lo}; it must be >= 1")
    if lo > hi:
        raise ValueError(
            f"{s.flag('min_depth')} ({lo}) is larger than {s.flag('max_depth')} "
            f"({hi}); set min <= max (the paper uses 4 and 8)"
        )
    if s.scaling == "uniform" and lo != hi:
        raise ValueError(
            f"{s.flag('scaling')} uniform gives every block one depth, but "
            f"{s.flag('min_depth')} ({lo}) differs from {s.flag('max_depth')} "
            f"({hi}); set them equal, or use {s.flag('scaling')} block"
        )
    if s.layers < 1:
        raise ValueError(f"{s.flag('layers')} is {s.layers}; it must be >= 1")
    if s.width_mult <= 0:
        raise ValueError(
            f"{s.flag('width_mult')} is {s.width_mult}; it must be > 0 "
            "(the paper uses 2)"
        )
    if s.ffn_dim is not None:
        if s.ffn_dim < 1:
            raise ValueError(
                f"{s.flag('ffn_dim')} is {s.ffn_dim}; it must be >= 1, or left "
                f"unset for d_m / {s.flag('ffn_red')}"
            )
        return
    red = s.ffn_red
    if red < 1 or d_m % red:
        divisors = [r for r in (2, 4, 8, 16) if d_m % r == 0]
        raise ValueError(
            f"{s.flag('ffn_red')} is {red}, which does not divide d_m = {d_m} "
            f"(--delight-emb-out-dim); use one of {divisors or [1]}"
        )


def _check_plan(
    d_m: int, groups_flag: str, cap: int, d_in: int, d_out: int, blocks
) -> None:
    proj = d_m // 2
    if cap < 1:
        raise ValueError(f"{groups_flag} is {cap}; it must be >= 1")
    for depth, mult in blocks:
        plan = dextra_plan(d_in, proj, d_out, depth, mult, cap)
        for i, layer in enumerate(plan):
            # the mixer before layer i > 0 splits X (d_m/2 wide) into its groups
            widths = [layer.out_features, proj if i > 0 else layer.in_features]
            if any(w % layer.groups for w in widths):
                raise ValueError(
                    f"d_m = {d_m} (--delight-emb-out-dim) does not split into "
                    f"{layer.groups} GLT groups (capped by {groups_flag} = {cap}): "
                    f"d_m/2 = {proj} and every DExTra width must be divisible by "
                    f"the group count. Use a d_m that is a multiple of "
                    f"{2 * layer.groups}, or a smaller {groups_flag}"
                )
