#!/usr/bin/env python3
"""Writes a small Fashion-MNIST subset for the tests: the first N training images (N=64 by
default) as gzip-compressed IDX files under tests/fixtures/.

Usage: python3 tools/make_fmnist_subset.py [N]
Reads Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist/). Fashion-MNIST is
(c) Zalando SE, MIT licence.
"""
import gzip
import os
import struct
import sys

SRC = "/usr/share/datasets/fashion-mnist"
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 64
    with gzip.open(os.path.join(SRC, "train-images-idx3-ubyte.gz"), "rb") as f:
        magic, count, rows, cols = struct.unpack(">IIII", f.read(16))
        assert magic == 0x803 and count >= n
        pixels = f.read(n * rows * cols)
    with gzip.open(os.path.join(SRC, "train-labels-idx1-ubyte.gz"), "rb") as f:
        magic, count = struct.unpack(">II", f.read(8))
        assert magic == 0x801
        labels = f.read(n)
    # mtime=0 keeps the compressed bytes reproducible
    with open(os.path.join(OUT, f"fmnist{n}-images-idx3-ubyte.gz"), "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
            f.write(struct.pack(">IIII", 0x803, n, rows, cols) + pixels)
    with open(os.path.join(OUT, f"fmnist{n}-labels-idx1-ubyte.gz"), "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
            f.write(struct.pack(">II", 0x801, n) + labels)
    print(f"wrote {n} images, labels {sorted(set(labels))}")


if __name__ == "__main__":
    main()
