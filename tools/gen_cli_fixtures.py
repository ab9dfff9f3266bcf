#!/usr/bin/env python3
"""Writes the small embedding files the command-line tests read (tests/fixtures/cli/):
clustered 8-d embeddings of a gallery (classes 0-3), held-out queries (classes 0-4: class 4 is
unknown to the gallery), items of the new class 4, a multi-hot label matrix, and files that
are wrong on purpose (float labels, 3-d embeddings).

Run from the repository root: python3 tools/gen_cli_fixtures.py"""
import os

import numpy as np

OUT = os.path.join("tests", "fixtures", "cli")


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20261206)
    centres = rng.normal(0.0, 3.0, (5, 8))

    def blob(n, classes):
        y = rng.choice(classes, n)
        x = centres[y] + rng.normal(0.0, 1.0, (n, 8))
        return x.astype(np.float32), y.astype(np.int64)

    gx, gy = blob(300, [0, 1, 2, 3])
    qx, qy = blob(200, [0, 1, 2, 3, 4])
    nx, ny = blob(50, [4])
    save = lambda name, a: np.save(os.path.join(OUT, name), a)
    save("gallery.npy", gx)
    save("gallery_labels.npy", gy)
    save("queries.npy", qx)
    save("query_labels.npy", qy.astype(np.int32))
    save("new_class.npy", nx)
    save("new_class_labels.npy", ny)
    save("existing_ids.npy", np.arange(50, dtype=np.int64))
    save("multi_hot.npy", (rng.random((300, 4)) < 0.3).astype(np.int32))
    save("bad_float_labels.npy", gy.astype(np.float32))
    save("bad_3d.npy", gx.reshape(300, 2, 4))


if __name__ == "__main__":
    main()
