"""Naive reference implementations of the GLT and DExTra, written from the rules
alone (docs/architecture.md sections 2 and 3), for the tests and benchmarks.

They loop over groups and move features one index at a time, with no batched
matmul and no views, so that the optimised modules are checked against an
independent reading of the rules.
"""

import torch


def naive_layer_norm(x, weight, bias, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def swish(x):
    return x * torch.sigmoid(x)


def naive_glt(x, weight, bias, norm_weight, norm_bias, shuffle=True):
    """x: N x in; weight: g x in/g x out/g; bias: g x out/g -> N x out."""
    g, in_g, out_g = weight.shape
    outs = []
    for i in range(g):
        xi = x[:, i * in_g : (i + 1) * in_g]
        outs.append(xi @ weight[i] + bias[i])
    y = torch.cat(outs, dim=1)  # group-major: [group 0 | group 1 | ...]
    if shuffle and g > 1:
        # view as [g, out/g], transpose to [out/g, g], read back row-major:
        # position p of the result holds element (p % g, p // g) of [g, out/g]
        n_out = g * out_g
        index = [(p % g) * out_g + p // g for p in range(n_out)]
        y = y[:, index]
    groups = [
        naive_layer_norm(y[:, i * out_g : (i + 1) * out_g], norm_weight, norm_bias)
        for i in range(g)
    ]
    return swish(torch.cat(groups, dim=1))


def naive_mixer(x, y, groups):
    """Chunk i of X next to chunk i of Y, for every group i."""
    px, py = x.shape[1] // groups, y.shape[1] // groups
    parts = []
    for i in range(groups):
        parts.append(x[:, i * px : (i + 1) * px])
        parts.append(y[:, i * py : (i + 1) * py])
    return torch.cat(parts, dim=1)


def naive_linear_norm_act(x, layer):
    y = x @ layer.linear.weight.t() + layer.linear.bias
    return swish(naive_layer_norm(y, layer.layer_norm.weight, layer.layer_norm.bias))


def naive_dextra(x, dextra, shuffle=True):
    """The DExTra forward of docs/architecture.md section 3, with the module's
    parameters."""
    x = naive_linear_norm_act(x, dextra.input_layer)
    y = x
    for i, glt in enumerate(dextra.glt_layers):
        if i > 0:
            y = naive_mixer(x, y, glt.groups)
        y = naive_glt(y, glt.weight, glt.bias, glt.norm_weight, glt.norm_bias, shuffle)
    return naive_linear_norm_act(torch.cat([x, y], dim=1), dextra.output_layer)
