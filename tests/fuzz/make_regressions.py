#!/usr/bin/env python3
"""The inputs of issue 14's findings, replayed by ctest (fuzz-replay-<harness>) with the seed
corpora: each once crashed, hung or allocated far beyond its size. Crash inputs that fuzzing
finds later are added to regressions/<harness>/ as they are. Run from the repository root:
python3 tests/fuzz/make_regressions.py"""
import os
import struct
import zlib

here = os.path.dirname(os.path.abspath(__file__))
out = os.path.join(here, "regressions")


def put(harness, name, payload):
    os.makedirs(os.path.join(out, harness), exist_ok=True)
    with open(os.path.join(out, harness, name), "wb") as f:
        f.write(payload)


def idx(shape, data=b""):
    return bytes([0, 0, 8, len(shape)]) + b"".join(struct.pack(">I", d) for d in shape) + data


# IDX: 16 GiB announced by 12 bytes; a product that wraps to 0; a zero hiding 2^64 pixels.
put("fuzz_idx", "issue14-16gib-header", idx([131072, 131072]))
put("fuzz_idx", "issue14-product-overflow", idx([1 << 22, 1 << 21, 1 << 21]))
put("fuzz_idx", "issue14-zero-times-huge", idx([0, 0xFFFFFFFF, 0xFFFFFFFF]))


def graphml(nodes, edges, keys='<key id="l" for="node" attr.name="layer"/><key id="p" for="node" attr.name="position"/>'):
    return ('<?xml version="1.0"?>\n<graphml>' + keys + '<graph edgedefault="directed">\n' + nodes + edges +
            "</graph></graphml>\n").encode()


# GraphML: a stored layer of SIZE_MAX (max + 1 wrapped to 0: out-of-bounds writes in write_svg and analyze).
size_max = str(2**64 - 1)
put("fuzz_graphml", "issue14-layer-size-max",
    graphml('<node id="0"><data key="l">0</data></node><node id="1"><data key="l">' + size_max + "</data></node>\n",
            '<edge source="0" target="1"/>\n'))
put("fuzz_graphml", "issue14-position-size-max",
    graphml('<node id="0"><data key="p">' + size_max + "</data></node>\n", ""))
put("fuzz_graphml", "issue14-many-attributes",
    graphml('<node id="0"' + "".join(' a%d="%d"' % (i, i) for i in range(600)) + "/>\n", ""))


def local(name, method, crc, csize, usize):
    return struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 33, crc, csize, usize, len(name), 0) + name


def central(name, method, crc, csize, usize, offset):
    return struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 33, crc, csize, usize, len(name), 0, 0, 0, 0, 0,
                       offset) + name


def end(count, cd_size, cd_offset):
    return struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, cd_size, cd_offset, 0)


def npy(descr, shape, payload):
    header = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, shape)
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + payload


# .npz: a member whose data holds another whole member (overlapped entries, a zip bomb's trick).
inner = npy("<f8", "(2,)", struct.pack("<2d", 1.0, 2.0))
inner_member = local(b"b.npy", 0, zlib.crc32(inner), len(inner), len(inner)) + inner
outer = npy("|u1", "(%d,)" % len(inner_member), inner_member)
body = local(b"a.npy", 0, zlib.crc32(outer), len(outer), len(outer)) + outer
inner_at = len(body) - len(inner_member)
cd = central(b"a.npy", 0, zlib.crc32(outer), len(outer), len(outer), 0) + \
    central(b"b.npy", 0, zlib.crc32(inner), len(inner), len(inner), inner_at)
overlap = body + cd + end(2, len(cd), len(body))
put("fuzz_npz", "issue14-overlapped-members", overlap)
put("fuzz_load_ffn", "issue14-overlapped-members", overlap)
# .npz: 4 kB of invalid deflate data claiming 1000 times as much (was allocated before inflating).
garbage = b"\xff" * 4000
body = local(b"a.npy", 8, 0, len(garbage), 4000000) + garbage
cd = central(b"a.npy", 8, 0, len(garbage), 4000000, 0)
put("fuzz_npz", "issue14-deflate-claim", body + cd + end(1, len(cd), len(body)))
# One member listed twice in the central directory.
one = npy("<f8", "(1,)", struct.pack("<d", 3.0))
body = local(b"a.npy", 0, zlib.crc32(one), len(one), len(one)) + one
cd = central(b"a.npy", 0, zlib.crc32(one), len(one), len(one), 0) * 2
put("fuzz_npz", "issue14-member-listed-twice", body + cd + end(2, len(cd), len(body)))
put("fuzz_load_dan_npz", "issue14-member-listed-twice", body + cd + end(2, len(cd), len(body)))
# load_dan: the SIZE_MAX layer, with the separator and no .npz.
put("fuzz_load_dan", "issue14-layer-size-max",
    graphml('<node id="0"><data key="l">0</data></node><node id="1"><data key="l">' + size_max + "</data></node>\n",
            '<edge source="0" target="1"/>\n') + b"\n#NPZ#\n")
print("wrote", out)
