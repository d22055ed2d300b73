"""Makes torch_training.json: PyTorch's own results for the training toolkit (activations,
losses, LayerNorm, optimizers), in float64, for the parity tests of deepstruct for C++.
Run: /usr/bin/python3 tests/data/make_torch_fixtures.py tests/data/torch_training.json
(Debian 12: apt-get install python3-torch). Matrices are PyTorch layout [batch][features]."""
import json, sys
import torch

torch.manual_seed(7)
torch.set_default_dtype(torch.float64)
L = lambda t: t.detach().tolist()
out = {"torch_version": torch.__version__}

# Activations: value and derivative at the same points.
x = torch.cat([torch.linspace(-4, 4, 17), torch.randn(8)]).requires_grad_()
acts = {}
for name, fn in [("relu", torch.relu), ("tanh", torch.tanh), ("sigmoid", torch.sigmoid),
                 ("gelu", torch.nn.functional.gelu), ("leaky_relu", torch.nn.functional.leaky_relu)]:
    y = fn(x); (g,) = torch.autograd.grad(y.sum(), x)
    acts[name] = {"y": L(y), "dy_dx": L(g)}
out["activations"] = {"x": L(x), "cases": acts}

# Losses: cross-entropy from logits with labels, and MSE; gradients w.r.t. the input.
z = (3 * torch.randn(6, 5)).requires_grad_(); labels = torch.randint(5, (6,))
ce = torch.nn.functional.cross_entropy(z, labels); (gz,) = torch.autograd.grad(ce, z)
p = torch.randn(4, 3).requires_grad_(); t = torch.randn(4, 3)
mse = torch.nn.functional.mse_loss(p, t); (gp,) = torch.autograd.grad(mse, p)
big = torch.tensor([[1000.0, -1000.0, 0.0], [-500.0, 700.0, 699.0]]).requires_grad_(); big_labels = torch.tensor([1, 2])
ce_big = torch.nn.functional.cross_entropy(big, big_labels); (gbig,) = torch.autograd.grad(ce_big, big)
out["cross_entropy"] = {"logits": L(z), "labels": L(labels), "loss": float(ce), "grad": L(gz),
                        "large_logits": L(big), "large_labels": L(big_labels), "large_loss": float(ce_big), "large_grad": L(gbig)}
out["mse"] = {"prediction": L(p), "target": L(t), "loss": float(mse), "grad": L(gp)}

# LayerNorm over features with affine parameters.
ln = torch.nn.LayerNorm(7)
with torch.no_grad(): ln.weight.uniform_(0.5, 1.5); ln.bias.uniform_(-0.3, 0.3)
xl = torch.randn(5, 7).requires_grad_(); gl = torch.randn(5, 7)
yl = ln(xl); yl.backward(gl)
out["layer_norm"] = {"x": L(xl), "weight": L(ln.weight), "bias": L(ln.bias), "y": L(yl), "grad_output": L(gl),
                     "grad_x": L(xl.grad), "grad_weight": L(ln.weight.grad), "grad_bias": L(ln.bias.grad)}

# Optimizers: one parameter vector, three given gradients (zero at "masked" entries), values after each step.
p0 = torch.randn(10); mask = torch.rand(10) < 0.7
grads = [torch.randn(10) * mask for _ in range(3)]
configs = [("SGD", dict(lr=0.1)), ("SGD", dict(lr=0.1, momentum=0.9)), ("SGD", dict(lr=0.05, momentum=0.8, dampening=0.3)),
           ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)), ("SGD", dict(lr=0.1, momentum=0.5, weight_decay=0.01)),
           ("Adam", dict(lr=0.01)), ("Adam", dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
           ("AdamW", dict(lr=0.01)), ("AdamW", dict(lr=0.05, weight_decay=0.2))]
opt_cases = []
for name, kw in configs:
    param = torch.nn.Parameter(p0.clone()); opt = getattr(torch.optim, name)([param], **kw); steps = []
    for g in grads:
        opt.zero_grad(); param.grad = g.clone(); opt.step(); steps.append(L(param))
    kw = {k: (list(v) if isinstance(v, tuple) else v) for k, v in kw.items()}
    opt_cases.append({"optimizer": name, "options": kw, "after_each_step": steps})
out["optimizers"] = {"initial": L(p0), "mask": L(mask), "grads": [L(g) for g in grads], "cases": opt_cases}

with open(sys.argv[1], "w") as f: json.dump(out, f)
print("wrote", sys.argv[1])
