#!/usr/bin/env python3
"""Writes the .npy fixtures of tests/test_npy.c into tests/fixtures/npy/ with numpy itself
(Debian's python3-numpy), so that the reader is tested on files numpy wrote, not on files dml
wrote. Values are small arithmetic sequences the test recomputes.

Usage: /usr/bin/python3 tools/gen_npy_fixtures.py
"""
import os

import numpy as np
from numpy.lib import format as npformat

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "npy")


def main():
    os.makedirs(OUT, exist_ok=True)
    f32 = (np.arange(12, dtype=np.float32) * 0.5 - 2.0).reshape(3, 4)
    np.save(os.path.join(OUT, "f32_3x4.npy"), f32)
    np.save(os.path.join(OUT, "i64_5.npy"), np.arange(5, dtype=np.int64) * 1000000007)
    np.save(os.path.join(OUT, "i32_5.npy"), np.arange(5, dtype=np.int32) - 2)
    np.save(os.path.join(OUT, "f32_0d.npy"), np.float32(3.25))
    np.save(os.path.join(OUT, "f32_0x5.npy"), np.zeros((0, 5), dtype=np.float32))
    np.save(os.path.join(OUT, "f32_2x3x2.npy"), np.arange(12, dtype=np.float32).reshape(2, 3, 2))
    with open(os.path.join(OUT, "f32_3x4_v2.npy"), "wb") as f:
        npformat.write_array(f, f32, version=(2, 0))
    # the unsupported ones, each with a clear error
    np.save(os.path.join(OUT, "f64_3.npy"), np.arange(3, dtype=np.float64))
    np.save(os.path.join(OUT, "f32_fortran.npy"), np.asfortranarray(f32))
    np.save(os.path.join(OUT, "f32_bigendian.npy"), f32.astype(">f4"))
    np.save(os.path.join(OUT, "u8_3.npy"), np.arange(3, dtype=np.uint8))


if __name__ == "__main__":
    main()
