# SPDX-License-Identifier: MIT
"""Write the small broken Fashion-MNIST directories that examples/CMakeLists.txt's
*-bad-data tests give the examples with --data (plain IDX files, as find_file accepts them):

    /usr/bin/python3 tests/data/bad-fashion-mnist/make_bad_fashion_mnist.py tests/data/bad-fashion-mnist

  label/  a training label of 10 (the classes are 0 to 9)
  count/  2 training images and 1 training label
  shape/  training images of 32 x 32 pixels (the examples' networks take 28 x 28)
Every other file is a valid set of 2 images of 28 x 28 and their 2 labels.
"""
import os
import struct
import sys


def idx(shape, data):
    return struct.pack(">BBBB", 0, 0, 8, len(shape)) + b"".join(struct.pack(">I", d) for d in shape) + bytes(data)


def images(n, side=28):
    return idx([n, side, side], [(i * 7) % 256 for i in range(n * side * side)])


cases = {
    "label": (images(2), idx([2], [3, 10])),
    "count": (images(2), idx([1], [3])),
    "shape": (images(2, 32), idx([2], [3, 4])),
}
root = sys.argv[1]
for name, (train_images, train_labels) in cases.items():
    os.makedirs(os.path.join(root, name), exist_ok=True)
    files = {"train-images-idx3-ubyte": train_images, "train-labels-idx1-ubyte": train_labels,
             "t10k-images-idx3-ubyte": images(2), "t10k-labels-idx1-ubyte": idx([2], [1, 2])}
    for file, content in files.items():
        with open(os.path.join(root, name, file), "wb") as f:
            f.write(content)
