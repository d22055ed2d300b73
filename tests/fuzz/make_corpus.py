#!/usr/bin/env python3
"""Seeds that come from outside the library, beside make_corpus.cpp's: numpy.savez_compressed
files (deflated members), numpy and networkx fixtures from tests/data, a gzipped IDX file.
Run from the repository root after make_corpus.cpp: /usr/bin/python3 tests/fuzz/make_corpus.py
(Debian's python3-numpy)"""
import gzip
import os
import shutil
import sys

import numpy as np

here = os.path.dirname(os.path.abspath(__file__))
corpus = os.path.join(here, "corpus")
data = os.path.join(here, "..", "data")


def put(harness, name, payload):
    os.makedirs(os.path.join(corpus, harness), exist_ok=True)
    with open(os.path.join(corpus, harness, name), "wb") as f:
        f.write(payload)


def compressed(path_in, harness, name):
    """The arrays of an .npz seed, saved again by numpy.savez_compressed."""
    with np.load(path_in) as f:
        arrays = {k: f[k] for k in f.files}
    tmp = os.path.join(corpus, ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    with open(tmp, "rb") as f:
        put(harness, name, f.read())
    os.remove(tmp)


for name in ("numpy_savez.npz", "numpy_savez_compressed.npz"):  # without ".npz": .gitignore ignores *.npz
    shutil.copy(os.path.join(data, name), os.path.join(corpus, "fuzz_npz", name[: -len(".npz")]))
shutil.copy(os.path.join(data, "structure_networkx.graphml"), os.path.join(corpus, "fuzz_graphml", "networkx.graphml"))
shutil.copy(os.path.join(data, "deepstruct_dan.graphml"), os.path.join(corpus, "fuzz_graphml", "deepstruct_dan.graphml"))
compressed(os.path.join(corpus, "fuzz_npz", "mixed"), "fuzz_npz", "mixed-compressed")
compressed(os.path.join(corpus, "fuzz_load_ffn", "fits"), "fuzz_load_ffn", "fits-compressed")
compressed(os.path.join(corpus, "fuzz_load_dan_npz", "fits"), "fuzz_load_dan_npz", "fits-compressed")
with open(os.path.join(corpus, "fuzz_idx", "images"), "rb") as f:
    put("fuzz_idx", "images.gz", gzip.compress(f.read(), mtime=0))
print("added numpy, networkx and gzip seeds under", corpus, file=sys.stderr)
