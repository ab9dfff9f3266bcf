#!/usr/bin/env python3
"""Writes the small real-image fixtures of the training tests: the first 60 images of each
class of Fashion-MNIST's training split (600 images) and the first 40 of each class of its test
split (400 images), as gzip-compressed IDX files like the originals, in file order.

Fashion-MNIST (Xiao, Rasul and Vollgraf 2017, MIT licence) comes from Debian's
dataset-fashion-mnist package. Usage: tools/gen_train_fixtures.py [DATA_DIR]"""
import gzip
import os
import struct
import sys

import numpy as np

src = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/datasets/fashion-mnist"
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "train")


def read(name, offset):
    with gzip.open(os.path.join(src, name)) as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)


def pick(labels, per_class):
    rows = []
    for c in range(10):
        rows.extend(np.flatnonzero(labels == c)[:per_class])
    return np.sort(np.array(rows))


def write_idx(path, arr):
    dims = arr.shape
    header = struct.pack(">I", 0x0800 | len(dims)) + b"".join(struct.pack(">I", d) for d in dims)
    with open(path, "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as f:
            f.write(header + arr.astype(np.uint8).tobytes())


for split, stem, per_class in (("train", "fmnist600", 60), ("t10k", "fmnist400-test", 40)):
    x = read(f"{split}-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
    y = read(f"{split}-labels-idx1-ubyte.gz", 8)
    rows = pick(y, per_class)
    write_idx(os.path.join(out, f"{stem}-images-idx3-ubyte.gz"), x[rows])
    write_idx(os.path.join(out, f"{stem}-labels-idx1-ubyte.gz"), y[rows])
    print(stem, len(rows))
