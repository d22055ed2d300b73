"""Makes conv2d_pytorch.json: the true neuron graph of torch.nn.Conv2d layers with dilation, groups
(depthwise included), non-square kernels and inputs, stride and padding - the nonzero pattern of
each layer's Jacobian, computed by PyTorch's autograd, as the reference conv2d_structure.json is.
Run: /usr/bin/python3 tests/data/make_conv2d_fixtures.py tests/data/conv2d_pytorch.json
(Debian 12: apt-get install python3-torch). Edges are [input, output] flat indices in C order
(channel, row, col), inputs and outputs each counted from 0."""
import json, sys
import torch

torch.manual_seed(3)
torch.set_default_dtype(torch.float64)
# in, out, kernel (h, w), stride, padding, dilation, groups, input (H, W), what the case is for
CASES = [
    (2, 4, (3, 3), (1, 1), (0, 0), (2, 2), 2, (7, 7), "dilation 2, two groups"),
    (3, 3, (2, 3), (2, 1), (1, 2), (3, 1), 3, (9, 6), "depthwise, non-square kernel, mixed stride/padding/dilation"),
    (4, 2, (3, 1), (1, 2), (2, 0), (1, 1), 2, (5, 8), "groups with more inputs than outputs per group, 3x1 kernel"),
    (6, 6, (3, 3), (3, 2), (1, 1), (2, 3), 6, (10, 11), "depthwise, strided, dilation differs per axis"),
    (1, 5, (1, 1), (1, 1), (0, 0), (4, 4), 1, (3, 2), "1x1 kernel: dilation has no effect"),
    (2, 2, (4, 2), (1, 3), (3, 1), (2, 2), 1, (4, 9), "padding larger than half the kernel, wide input"),
    (4, 8, (2, 2), (2, 2), (1, 0), (1, 2), 4, (6, 5), "depthwise multiplier 2 (out = 2 x in = 2 x groups)"),
    (3, 2, (5, 3), (2, 3), (2, 1), (1, 1), 1, (8, 4), "tall kernel, stride 2x3, no dilation"),
]

cases = []
for cin, cout, k, s, p, d, groups, (H, W), note in CASES:
    conv = torch.nn.Conv2d(cin, cout, k, s, p, d, groups)
    with torch.no_grad():
        conv.weight.copy_(torch.rand_like(conv.weight) + 0.5)  # no weight is zero
    J = torch.autograd.functional.jacobian(lambda t: conv(t), torch.randn(1, cin, H, W))[0]  # [cout,Ho,Wo,1,cin,H,W]
    Ho, Wo = J.shape[1], J.shape[2]
    nz = torch.nonzero(J.reshape(cout * Ho * Wo, cin * H * W))
    cases.append({"note": note, "in_channels": cin, "out_channels": cout, "kernel": list(k), "stride": list(s),
                  "padding": list(p), "dilation": list(d), "groups": groups, "input_hw": [H, W], "output_hw": [Ho, Wo],
                  "edges": sorted([int(b), int(a)] for a, b in nz.tolist())})

with open(sys.argv[1], "w") as f:
    json.dump({"torch_version": torch.__version__,
               "note": "edges are [input, output] flat indices in C order (channel, row, col); Jacobian by torch.autograd",
               "cases": cases}, f)
print("wrote", sys.argv[1], "with", len(cases), "cases")
