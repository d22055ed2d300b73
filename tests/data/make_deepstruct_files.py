# SPDX-License-Identifier: MIT
"""Generate the deepstruct interchange fixtures (deepstruct_dan*, deepstruct_dan_ln*).

Run from the repository root (needs deepstruct, torch, networkx, numpy):

    PYTHONPATH=<deepstruct-py>:tools /usr/bin/python3 tests/data/make_deepstruct_files.py tests/data

For each case it writes <name>.graphml and <name>.npz with tools/deepstruct_files.py
(export_dan) and <name>.json with:
  size_input, size_output, use_layer_norm,
  vertex_order     {layer: original node names in deepstruct's in-memory get_vertices order},
  x                [4][12] float32 input,
  output_float32   model(x) computed by deepstruct (torch, float32),
  output_float64   the same forward pass in float64, computed with numpy from the state_dict
                   (deepstruct's MaskedLinearLayer.forward casts its input to float32, so
                   copy.deepcopy(model).double() fails with a dtype mismatch),
  state_dict_keys  the state_dict keys in order.
Output is deterministic (torch.manual_seed, networkx seeds). The script checks that
LayeredGraph.load() of the written graphml reproduces the file's positions in every layer
and that import_dan() of the written files reproduces output_float32 exactly.
"""
import json
import os
import sys

import networkx as nx
import numpy as np
import torch
from deepstruct.graph import CachedLayeredGraph, LayeredGraph
from deepstruct.sparse import MaskedDeepDAN

from deepstruct_files import export_dan, import_dan

SIZE_INPUT, SIZE_OUTPUT = 12, 3


def build(n, k, p, graph_seed, use_layer_norm, torch_seed):
    torch.manual_seed(torch_seed)
    g = nx.watts_strogatz_graph(n, k, p, seed=graph_seed)
    s = CachedLayeredGraph()  # deepstruct README recipe
    s.add_edges_from(g.edges)
    s.add_nodes_from(g.nodes)
    model = MaskedDeepDAN(SIZE_INPUT, SIZE_OUTPUT, s, use_layer_norm=use_layer_norm)
    if use_layer_norm:
        with torch.no_grad():
            for ln in model.layer_normalizations:  # includes the unused layer_normalizations.0
                ln.weight.copy_(1 + 0.3 * torch.randn_like(ln.weight))
                ln.bias.copy_(0.2 * torch.randn_like(ln.bias))
            for layer in list(model.layers_main_hidden) + list(model.layers_skip_hidden):
                prune = (layer.mask != 0) & (torch.rand(layer.mask.shape) < 0.3)
                layer.mask[prune] = 0
    return model


def forward_float64(model, x):
    """deepstruct's MaskedDeepDAN.forward, in float64 numpy, from the state_dict."""
    sd = {k: v.detach().cpu().numpy().astype(np.float64) for k, v in model.state_dict().items()}
    s = model._structure
    layers = sorted(s.layers)
    layer_of = {v: l for l in layers for v in s.get_vertices(l)}
    relu = lambda z: np.maximum(z, 0.0)

    def linear(name, h):
        return h @ (sd[name + ".weight"] * sd[name + "._mask"]).T + sd[name + ".bias"]

    def layer_norm(t, z):
        mu = z.mean(axis=1, keepdims=True)
        var = ((z - mu) ** 2).mean(axis=1, keepdims=True)
        w, b = sd[f"layer_normalizations.{t}.weight"], sd[f"layer_normalizations.{t}.bias"]
        return (z - mu) / np.sqrt(var + 1e-5) * w + b

    # skip layers are numbered by (target layer, source layer), sources < target - 1
    connected = {(layer_of[a], layer_of[b]) for a, b in s.edges}
    skips, i = {}, 0
    for t in layers[2:]:
        for src in layers[: t - 1]:
            if (src, t) in connected:
                skips.setdefault(t, []).append((f"layers_skip_hidden.{i}", src))
                i += 1
    assert f"layers_skip_hidden.{i}.weight" not in sd

    h = {0: relu(linear("layer_first", np.asarray(x, dtype=np.float64)))}
    for j, t in enumerate(layers[1:]):
        z = linear(f"layers_main_hidden.{j}", h[t - 1])
        if model._use_layer_norm:
            z = layer_norm(t, z)
        out = relu(z)
        for name, src in skips.get(t, []):
            out = out + relu(linear(name, h[src]))
        h[t] = out
    return linear("layer_out", h[layers[-1]])


def write_case(out_dir, name, model):
    s = model._structure
    prefix = os.path.join(out_dir, name)
    x = torch.randn(4, SIZE_INPUT)
    with torch.no_grad():
        y32 = model(x)
    y64 = forward_float64(model, x.numpy())
    export_dan(model, prefix)

    # deepstruct's loader must reproduce the file's positions, and the original order
    loaded = LayeredGraph.load(prefix + ".graphml")
    g = nx.read_graphml(prefix + ".graphml")
    ids = list(g.nodes)
    for l in s.layers:
        got = [ids[v] for v in loaded.get_vertices(l)]
        by_pos = sorted((d["position"], n) for n, d in g.nodes(data=True) if d["layer"] == l)
        assert got == [n for _, n in by_pos] == [str(v) for v in s.get_vertices(l)], (name, l)
    with torch.no_grad():
        assert torch.equal(import_dan(prefix, SIZE_INPUT, SIZE_OUTPUT)(x), y32), name

    info = {
        "size_input": SIZE_INPUT,
        "size_output": SIZE_OUTPUT,
        "use_layer_norm": model._use_layer_norm,
        "vertex_order": {str(l): [int(v) for v in s.get_vertices(l)] for l in sorted(s.layers)},
        "x": x.tolist(),
        "output_float32": y32.tolist(),
        "output_float64": y64.tolist(),
        "state_dict_keys": list(model.state_dict().keys()),
    }
    with open(prefix + ".json", "w") as f:
        json.dump(info, f)
    diff = np.abs(y64 - y32.numpy()).max()
    print(f"{name}: layers={len(s.layers)} sizes={[len(s.get_vertices(l)) for l in sorted(s.layers)]} "
          f"skip layers={len(model.layers_skip_hidden)} |f64-f32|max={diff:.2e}")


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    write_case(out_dir, "deepstruct_dan", build(40, 3, 0.8, 1, False, torch_seed=1))
    write_case(out_dir, "deepstruct_dan_ln", build(50, 4, 0.5, 2, True, torch_seed=2))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__)))
