"""Fixtures for the image layers (MaskedConv2d, BatchNorm2d, pooling) and channel pruning, made
with PyTorch itself. Run: /usr/bin/python3 tools/make_image_layers.py tests/data/image_layers.json

Conventions: nested lists in PyTorch layout (images [batch][channel][row][col], conv weights
[out][in/groups][kh][kw]); float64 throughout. A masked convolution is torch.nn.Conv2d with its
weight multiplied by the mask (what torch.nn.utils.prune computes)."""
import json
import sys

import torch
import torch.nn.utils.prune as prune

torch.manual_seed(7)
torch.set_default_dtype(torch.float64)


def L(t):
    return t.detach().cpu().tolist()


conv_cases = []
for (cin, cout, k, stride, pad, dil, groups, bias, size, batch, density) in [
    (3, 4, (3, 3), (1, 1), (1, 1), (1, 1), 1, True, (7, 6), 2, 1.0),
    (2, 3, (5, 5), (2, 2), (2, 2), (1, 1), 1, True, (12, 12), 2, 0.5),
    (4, 6, (3, 2), (2, 1), (0, 1), (2, 1), 2, False, (9, 8), 3, 0.3),
    (1, 2, (1, 1), (1, 1), (0, 0), (1, 1), 1, True, (5, 4), 2, 1.0),
    (6, 6, (3, 3), (1, 1), (1, 1), (1, 1), 3, True, (6, 6), 2, 0.2),
]:
    conv = torch.nn.Conv2d(cin, cout, k, stride=stride, padding=pad, dilation=dil, groups=groups, bias=bias)
    mask = (torch.rand(conv.weight.shape) < density)
    x = torch.randn(batch, cin, *size, requires_grad=True)
    w_eff = conv.weight * mask
    y = torch.nn.functional.conv2d(x, w_eff, conv.bias, stride, pad, dil, groups)
    gy = torch.randn(y.shape)
    y.backward(gy)
    conv_cases.append({
        "in_channels": cin, "out_channels": cout, "kernel": list(k), "stride": list(stride), "padding": list(pad),
        "dilation": list(dil), "groups": groups, "bias": bias,
        "weight": L(conv.weight), "bias_value": L(conv.bias) if bias else [], "mask": L(mask),
        "x": L(x), "y": L(y), "grad_y": L(gy), "grad_x": L(x.grad),
        "grad_weight": L(conv.weight.grad), "grad_bias": L(conv.bias.grad) if bias else [],
    })

bn_cases = []
for (channels, size, batch) in [(3, (4, 5), 2), (1, (3, 3), 4)]:
    bn = torch.nn.BatchNorm2d(channels)
    with torch.no_grad():
        bn.weight.copy_(torch.rand(channels) + 0.5)
        bn.bias.copy_(torch.randn(channels))
        bn.running_mean.copy_(torch.randn(channels))
        bn.running_var.copy_(torch.rand(channels) + 0.5)
    before = {"running_mean": L(bn.running_mean), "running_var": L(bn.running_var)}
    x = torch.randn(batch, channels, *size, requires_grad=True)
    bn.train()
    y = bn(x)
    gy = torch.randn(y.shape)
    y.backward(gy)
    after = {"running_mean": L(bn.running_mean), "running_var": L(bn.running_var),
             "num_batches_tracked": int(bn.num_batches_tracked)}
    x_eval = torch.randn(batch, channels, *size, requires_grad=True)
    bn.eval()
    y_eval = bn(x_eval)
    gy_eval = torch.randn(y_eval.shape)
    y_eval.backward(gy_eval)
    bn_cases.append({"channels": channels, "weight": L(bn.weight), "bias": L(bn.bias), "before": before,
                     "x": L(x), "y": L(y), "grad_y": L(gy), "grad_x": L(x.grad), "after": after,
                     "x_eval": L(x_eval), "y_eval": L(y_eval), "grad_y_eval": L(gy_eval), "grad_x_eval": L(x_eval.grad)})

pool_cases = []
for (kind, k, stride, pad, size) in [("max", (2, 2), (2, 2), (0, 0), (6, 7)), ("max", (3, 3), (2, 2), (1, 1), (7, 7)),
                                     ("avg", (2, 2), (2, 2), (0, 0), (6, 7)), ("avg", (3, 3), (2, 2), (1, 1), (7, 7)),
                                     ("adaptive", (1, 1), None, None, (5, 6)), ("adaptive", (2, 3), None, None, (5, 7))]:
    x = torch.randn(2, 3, *size, requires_grad=True)
    if kind == "max":
        y = torch.nn.functional.max_pool2d(x, k, stride, pad)
    elif kind == "avg":
        y = torch.nn.functional.avg_pool2d(x, k, stride, pad)
    else:
        y = torch.nn.functional.adaptive_avg_pool2d(x, k)
    gy = torch.randn(y.shape)
    y.backward(gy)
    pool_cases.append({"kind": kind, "kernel": list(k), "stride": list(stride) if stride else [],
                       "padding": list(pad) if pad else [], "x": L(x), "y": L(y), "grad_y": L(gy), "grad_x": L(x.grad)})

ln_cases = []
for (amount, n) in [(0.3, 1), (0.5, 2), (3, float("inf")), (0.25, 3)]:
    conv = torch.nn.Conv2d(4, 10, 3)
    prune.ln_structured(conv, "weight", amount=amount, n=n, dim=0)
    ln_cases.append({"amount": amount, "n": n if n not in (float("inf"), -float("inf")) else str(n),
                     "weight": L(conv.weight_orig), "mask": L(conv.weight_mask.bool())})

with open(sys.argv[1], "w") as f:
    json.dump({"conv2d": conv_cases, "batch_norm2d": bn_cases, "pool": pool_cases, "ln_structured": ln_cases,
               "notes": ["made by tools/make_image_layers.py with torch " + torch.__version__]}, f)
print("wrote", sys.argv[1])
