# SPDX-License-Identifier: MIT
# Copyright (c) the deepstruct C++ contributors. See LICENSE in the repository root.
"""Exchange deepstruct (Python) models with the C++ deepstruct library.

A masked DAN is stored as two files sharing a prefix:

``<prefix>.graphml``
    The layered graph, written by networkx. Nodes are listed *layer-major*:
    all vertices of layer 0 in neuron order, then layer 1, and so on. Every
    node has two integer data fields: ``layer`` (its layer index) and
    ``position`` (its index inside that layer, i.e. its row/column in the
    masks). Edges follow, sorted by (source layer, source position, target
    layer, target position). Nothing else is stored.

``<prefix>.npz``
    ``numpy.savez`` of the model's ``state_dict()``, one array per key, keys
    exactly as deepstruct names them (``layer_first.weight``,
    ``layers_main_hidden.<i>._mask``, ``layer_normalizations.<t>.bias``, ...).
    Masks may be bool or float 0/1.

Why explicit positions: deepstruct orders the neurons of a layer by the order
in which ``build_layer_index`` first reaches them, which depends on insertion
order and on set iteration, and ``LayeredGraph.save``/``load`` does not keep
it. For a layer-major file, however, ``LayeredGraph.load`` renumbers the nodes
in file order and ``build_layer_index`` then visits them in file order (all
ancestors of a node precede it), so the loaded order equals the file order.

Python -> C++::

    export_dan(model, "net")          # model: deepstruct.sparse.MaskedDeepDAN
    # C++ reads net.graphml (layer/position) and net.npz

C++ -> Python::

    model = import_dan("net", size_input, size_output)
    # checks that deepstruct's own layer order equals the file's positions,
    # builds MaskedDeepDAN (LayerNorm iff the npz has layer_normalizations.*)
    # and loads the weights with strict=True

``export_ffn(model, "ffn.npz")`` writes a MaskedDeepFFN's state_dict
(``_layer_first.*``, ``_layers_hidden.<i>.*``, ``_layer_out.*``).

CLI: ``python3 tools/deepstruct_files.py selftest`` (needs deepstruct, torch,
networkx and numpy importable).
"""
import sys

import networkx as nx
import numpy as np


def _state_dict_to_numpy(model):
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}


def export_dan(model, prefix):
    """Write ``prefix.graphml`` and ``prefix.npz`` for a deepstruct MaskedDeepDAN."""
    structure = model._structure
    g = nx.DiGraph()
    place = {}  # vertex -> (layer, position)
    for layer in sorted(structure.layers):
        for position, v in enumerate(structure.get_vertices(layer)):
            place[v] = (int(layer), int(position))
            g.add_node(v, layer=int(layer), position=int(position))
    for s, t in sorted(structure.edges, key=lambda e: place[e[0]] + place[e[1]]):
        g.add_edge(s, t)
    nx.write_graphml(g, prefix + ".graphml")
    np.savez(prefix + ".npz", **_state_dict_to_numpy(model))


def export_ffn(model, path):
    """Write the state_dict of a deepstruct MaskedDeepFFN to ``path`` (.npz)."""
    np.savez(path, **_state_dict_to_numpy(model))


def _check_order(structure, path):
    """Raise ValueError unless deepstruct's layer order equals the file's positions."""
    g = nx.read_graphml(path)
    ids = list(g.nodes)  # LayeredGraph.load renumbers node i of the file to i
    expected = {}
    for node, data in g.nodes(data=True):
        if "layer" not in data or "position" not in data:
            raise ValueError(f"{path}: node {node} lacks layer/position data")
        expected.setdefault(int(data["layer"]), []).append((int(data["position"]), node))
    if sorted(expected) != sorted(structure.layers):
        raise ValueError(f"{path}: file layers {sorted(expected)} != deepstruct "
                         f"layers {sorted(structure.layers)}")
    for layer, items in expected.items():
        want = [node for _, node in sorted(items)]
        got = [ids[v] for v in structure.get_vertices(layer)]
        if got != want:
            raise ValueError(f"{path}: layer {layer}: deepstruct orders the vertices "
                             f"{got}, the file's positions say {want} (is the file "
                             "layer-major?)")


def import_dan(prefix, size_input, size_output):
    """Build a deepstruct MaskedDeepDAN from ``prefix.graphml`` + ``prefix.npz``."""
    import torch
    from deepstruct.graph import LayeredGraph
    from deepstruct.sparse import MaskedDeepDAN

    structure = LayeredGraph.load(prefix + ".graphml")
    _check_order(structure, prefix + ".graphml")
    with np.load(prefix + ".npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    use_ln = any(k.startswith("layer_normalizations.") for k in arrays)
    model = MaskedDeepDAN(size_input, size_output, structure, use_layer_norm=use_ln)
    current = model.state_dict()
    state = {}
    for k, v in arrays.items():
        t = torch.from_numpy(np.ascontiguousarray(v))
        state[k] = t.to(current[k].dtype) if k in current else t  # bool <-> float masks
    model.load_state_dict(state, strict=True)
    return model


def _make_dan(n, k, p, seed, use_layer_norm):
    """A DAN on a Watts-Strogatz graph, built with deepstruct's README recipe."""
    import torch
    from deepstruct.graph import CachedLayeredGraph
    from deepstruct.sparse import MaskedDeepDAN

    g = nx.watts_strogatz_graph(n, k, p, seed=seed)
    s = CachedLayeredGraph()
    s.add_edges_from(g.edges)
    s.add_nodes_from(g.nodes)
    model = MaskedDeepDAN(12, 3, s, use_layer_norm=use_layer_norm)
    with torch.no_grad():
        for ln in model.layer_normalizations:  # make LayerNorm parameters matter
            ln.weight.copy_(1 + 0.3 * torch.randn_like(ln.weight))
            ln.bias.copy_(0.2 * torch.randn_like(ln.bias))
    return model


def selftest():
    import os
    import tempfile
    import torch
    from deepstruct.graph import LayeredGraph

    torch.manual_seed(0)
    ok = True
    for use_ln in (False, True):
        model = _make_dan(40, 3, 0.8, 1, use_ln)
        s = model._structure
        ascending = all(list(s.get_vertices(l)) == sorted(s.get_vertices(l)) for l in s.layers)
        with tempfile.TemporaryDirectory() as d:
            prefix = os.path.join(d, "dan")
            export_dan(model, prefix)
            loaded = LayeredGraph.load(prefix + ".graphml")
            names = list(nx.read_graphml(prefix + ".graphml").nodes)
            same_order = all([names[v] for v in loaded.get_vertices(l)]
                             == [str(v) for v in s.get_vertices(l)] for l in s.layers)
            model2 = import_dan(prefix, 12, 3)
        x = torch.randn(4, 12)
        with torch.no_grad():
            equal = torch.equal(model(x), model2(x))
        ok = ok and same_order and equal
        print(f"use_layer_norm={use_ln}: layers={len(s.layers)} "
              f"in-memory order ascending={ascending} "
              f"load keeps order={same_order} outputs equal={equal}")
    print("selftest", "PASSED" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    if sys.argv[1:] == ["selftest"]:
        sys.exit(selftest())
    print(__doc__)
    print("usage: deepstruct_files.py selftest")
    sys.exit(2)
