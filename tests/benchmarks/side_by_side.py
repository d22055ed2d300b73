#!/usr/bin/env python3
"""Side by side with deepstruct (issue 15).

Runs deepstruct (the Python library, on PyTorch) and our bench_side_by_side on the same nine
workloads - same shapes, densities and batch sizes, seeded data - alternating the two programs
round after round, and prints each workload's median time on both sides and their ratio
(ours / deepstruct: below 1 means we are faster). With --fashion it also trains MaskedDeepFFN
784-300-100-10 on Fashion-MNIST for 5 epochs (Adam lr 1e-3, batch 128) dense and with a static
random 10% mask, with deepstruct and with our examples/fashion_mnist, and compares training time and
test accuracy.

    python3 tests/benchmarks/side_by_side.py --build build [--rounds 3] [--threads 2] [--fashion]

Needs Debian's python3-torch, python3-networkx and python3-deprecated, and deepstruct's source
(default: ../shared/deepstruct-py beside this checkout; --deepstruct to change). The workloads are
described in bench_side_by_side.cpp; the random graphs and masks are drawn by each side's own
generator (same sizes, not the same draws).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
WORKLOADS = [
    ("ffn_sgd_dense", "FFN 784-300-100-10 SGD step, batch 128, dense"),
    ("ffn_sgd_d0.1", "FFN 784-300-100-10 SGD step, batch 128, density 0.1"),
    ("big_infer_dense", "FFN 784-1000x3-10 inference, batch 1024, dense"),
    ("big_infer_d0.1", "FFN 784-1000x3-10 inference, batch 1024, density 0.1"),
    ("big_infer_d0.01", "FFN 784-1000x3-10 inference, batch 1024, density 0.01"),
    ("dan_ws200_step", "DAN from Watts-Strogatz(200, 3, 0.8), Adam step, batch 64"),
    ("generate_structure", "generate_structure of 784-1000-1000-10"),
    ("layer_index_1k_5k", "layer index, random DAG 1,000 / 5,000"),
    ("layer_index_4k_20k", "layer index, random DAG 4,000 / 20,000"),
]


# ---- deepstruct's half (runs in a child process: --worker) ------------------------------------

def worker(reps: int, threads: int) -> None:
    import networkx as nx
    import numpy as np
    import torch

    import deepstruct.graph
    import deepstruct.sparse

    torch.set_num_threads(threads)
    torch.manual_seed(1)
    gen = np.random.default_rng(7)
    big_reps = max(1, reps // 3)

    def median_ms(n, fn):
        fn()
        t = []
        for _ in range(n):
            a = time.perf_counter()
            fn()
            t.append((time.perf_counter() - a) * 1e3)
        return statistics.median(t)

    def report(name, ms):
        print(f"{name} {ms:.4f}", flush=True)

    def random_masks(model, density, seed):
        g = torch.Generator().manual_seed(seed)
        for m in model.modules():
            if isinstance(m, deepstruct.sparse.MaskedLinearLayer):
                n = m.weight.numel()
                keep = int(np.floor(density * n + 1e-9))
                mask = torch.zeros(n, dtype=torch.bool)
                mask[torch.randperm(n, generator=g)[:keep]] = True
                m.mask = mask.view_as(m.weight)

    x = torch.tensor(gen.uniform(-1, 1, (128, 784)), dtype=torch.float32)
    y = torch.tensor(gen.integers(0, 10, 128))
    for density, name in ((1.0, "ffn_sgd_dense"), (0.1, "ffn_sgd_d0.1")):
        model = deepstruct.sparse.MaskedDeepFFN(784, 10, [300, 100])
        if density < 1:
            random_masks(model, density, 2)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)

        def step():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()

        report(name, median_ms(reps, step))

    xb = torch.tensor(gen.uniform(-1, 1, (1024, 784)), dtype=torch.float32)
    for density, name in ((1.0, "big_infer_dense"), (0.1, "big_infer_d0.1"), (0.01, "big_infer_d0.01")):
        model = deepstruct.sparse.MaskedDeepFFN(784, 10, [1000, 1000, 1000])
        if density < 1:
            random_masks(model, density, 4)
        model.eval()

        def infer():
            with torch.no_grad():
                model(xb)

        report(name, median_ms(big_reps, infer))

    ws = nx.watts_strogatz_graph(200, 3, 0.8, seed=42)
    structure = deepstruct.graph.CachedLayeredGraph()
    structure.add_edges_from(ws.edges)
    structure.add_nodes_from(ws.nodes)
    model = deepstruct.sparse.MaskedDeepDAN(784, 10, structure)
    opt = torch.optim.Adam(model.parameters())
    xd = torch.tensor(gen.uniform(-1, 1, (64, 784)), dtype=torch.float32)
    yd = torch.tensor(gen.integers(0, 10, 64))

    def dan_step():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(xd), yd)
        loss.backward()
        opt.step()

    report("dan_ws200_step", median_ms(reps, dan_step))

    import warnings

    warnings.simplefilter("ignore")  # generate_structure is marked deprecated
    ffn = deepstruct.sparse.MaskedDeepFFN(784, 10, [1000, 1000])
    report("generate_structure", median_ms(big_reps, lambda: ffn.generate_structure(include_input=True, include_output=True)))

    sys.setrecursionlimit(1_000_000)  # build_layer_index recurses along paths
    for n, m, name in ((1000, 5000, "layer_index_1k_5k"), (4000, 20000, "layer_index_4k_20k")):
        g = nx.gnm_random_graph(n, m, seed=5)
        dag = deepstruct.graph.CachedLayeredGraph()
        dag.add_nodes_from(range(n))
        dag.add_edges_from((min(u, v), max(u, v)) for u, v in g.edges)
        report(name, median_ms(reps, lambda: deepstruct.graph.build_layer_index(dag)))


# ---- Fashion-MNIST with deepstruct ------------------------------------------------------------

def fashion_worker(density: float, threads: int, data: str) -> None:
    import gzip

    import numpy as np
    import torch

    import deepstruct.sparse

    torch.set_num_threads(threads)
    torch.manual_seed(1)

    def idx(name):
        with gzip.open(os.path.join(data, name)) as f:
            raw = f.read()
        dims = raw[3]
        shape = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
        return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)

    def images(name):  # the normalisation of examples/fashion_mnist_data.hpp
        a = idx(name).reshape(-1, 784).astype(np.float32)
        return torch.tensor((a / 255.0 - 0.2860) / 0.3530)

    x_train, y_train = images("train-images-idx3-ubyte.gz"), torch.tensor(idx("train-labels-idx1-ubyte.gz").astype(np.int64))
    x_test, y_test = images("t10k-images-idx3-ubyte.gz"), torch.tensor(idx("t10k-labels-idx1-ubyte.gz").astype(np.int64))
    model = deepstruct.sparse.MaskedDeepFFN(784, 10, [300, 100])
    if density < 1:
        g = torch.Generator().manual_seed(1001)
        for m in model.modules():
            if isinstance(m, deepstruct.sparse.MaskedLinearLayer):
                n = m.weight.numel()
                mask = torch.zeros(n, dtype=torch.bool)
                mask[torch.randperm(n, generator=g)[: int(np.floor(density * n + 1e-9))]] = True
                m.mask = mask.view_as(m.weight)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    seconds = 0.0
    for _ in range(5):
        model.train()
        a = time.perf_counter()
        perm = torch.randperm(len(x_train))
        for i in range(0, len(x_train), 128):
            b = perm[i: i + 128]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x_train[b]), y_train[b]).backward()
            opt.step()
        seconds += time.perf_counter() - a
    model.eval()
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    print(json.dumps({"seconds": seconds, "accuracy": accuracy}), flush=True)


# ---- the driver ---------------------------------------------------------------------------------

def parse_times(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in dict(WORKLOADS):
            out[parts[0]] = float(parts[1])
    return out


def run(cmd, env):
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"side_by_side: {' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-2000:]}")
    return r.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"), help="our build directory")
    ap.add_argument("--deepstruct", default=os.path.join(ROOT, "..", "shared", "deepstruct-py"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--fashion", action="store_true", help="also Fashion-MNIST, 5 epochs dense and static 10%% mask")
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--fashion-worker", type=float, help=argparse.SUPPRESS)
    a = ap.parse_args()
    sys.path.insert(0, os.path.abspath(a.deepstruct))
    if a.worker:
        return worker(a.reps, a.threads)
    if a.fashion_worker is not None:
        return fashion_worker(a.fashion_worker, a.threads, a.data)

    ours_bin = os.path.join(a.build, "tests", "benchmarks", "bench_side_by_side")
    if not os.path.exists(ours_bin):
        sys.exit(f"side_by_side: expected {ours_bin}; build it: cmake --build {a.build} --target bench_side_by_side")
    if not os.path.isdir(a.deepstruct):
        sys.exit(f"side_by_side: expected deepstruct's source at {a.deepstruct}; pass --deepstruct")
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    theirs_cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--reps", str(a.reps), "--threads", str(a.threads),
                  "--deepstruct", a.deepstruct]
    ours_cmd = [ours_bin, "--reps", str(a.reps)]
    import torch  # for the header line only

    print(f"deepstruct on torch {torch.__version__} ({a.threads} threads) vs deepstruct C++ ({a.threads} threads); "
          f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}; {a.rounds} rounds, alternating", flush=True)
    theirs, ours = {}, {}
    for r in range(a.rounds):
        for side, cmd, store in (("deepstruct", theirs_cmd, theirs), ("ours", ours_cmd, ours)):
            for k, v in parse_times(run(cmd, env)).items():
                store.setdefault(k, []).append(v)
        print(f"  round {r + 1} done", flush=True)
    print(f"\n{'workload':58s} {'deepstruct ms':>14s} {'ours ms':>10s} {'ours/deepstruct':>16s}")
    for key, label in WORKLOADS:
        t, o = statistics.median(theirs[key]), statistics.median(ours[key])
        print(f"{label:58s} {t:14.3f} {o:10.3f} {o / t:15.3g}x")

    if a.fashion:
        demo = os.path.join(a.build, "examples", "fashion_mnist")
        print("\nFashion-MNIST, MaskedDeepFFN 784-300-100-10, Adam lr 1e-3, batch 128, 5 epochs (training time only)")
        print(f"{'run':24s} {'deepstruct s':>13s} {'acc':>7s} {'ours s':>8s} {'acc':>7s} {'ours/deepstruct':>16s}")
        for density, label, flags in ((1.0, "dense", ["--no-prune"]), (0.1, "static random 10% mask", ["--static-density", "0.1"])):
            t = json.loads(run([sys.executable, os.path.abspath(__file__), "--fashion-worker", str(density), "--threads",
                                str(a.threads), "--deepstruct", a.deepstruct, "--data", a.data], env).strip().splitlines()[-1])
            out = run([demo, "--quiet", "--data", a.data, "--out", os.devnull, *flags], env)
            m = re.search(r"test accuracy ([0-9.]+)%, training time ([0-9.]+) s", out)
            if not m:
                sys.exit(f"side_by_side: unexpected output of {demo}:\n{out}")
            acc, sec = float(m.group(1)) / 100, float(m.group(2))
            print(f"{label:24s} {t['seconds']:13.2f} {100 * t['accuracy']:6.2f}% {sec:8.2f} {100 * acc:6.2f}% {sec / t['seconds']:15.3f}x")


if __name__ == "__main__":
    main()
