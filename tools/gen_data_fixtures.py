#!/usr/bin/env python3
"""Writes the fixtures of the data readers' tests (tests/test_data_readers.c) into
tests/fixtures/data/: small image folders (PNG grey, grey+alpha, RGB, RGBA, a BMP; different
sizes; a corrupt image; a class folder without images), CSV files (header, no header, quoted
fields with a byte-order mark and CRLF, string labels, and broken ones), an image manifest in
the ChestX-ray14 layout, and .npy arrays written by numpy.

PNG and BMP files are written by the small encoders below (zlib + struct), so Pillow is not
needed. Pixel values follow the formulas grey(), rgb() that the C tests recompute.

Usage (from anywhere): /usr/bin/python3 tools/gen_data_fixtures.py
"""
import os
import struct
import zlib

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "data")


def grey(y, x):
    return (17 * y + 29 * x + 3) % 256


def rgb(y, x):
    return ((40 * y + 7 * x) % 256, (255 - 13 * x - 5 * y) % 256, (11 * x * y) % 256)


def pixels(h, w, channels):
    """Rows of bytes, `channels` interleaved values per pixel (1 grey, 2 grey+alpha, 3 RGB,
    4 RGBA; alpha is 255 - grey)."""
    rows = []
    for y in range(h):
        row = bytearray()
        for x in range(w):
            if channels == 1:
                row.append(grey(y, x))
            elif channels == 2:
                row += bytes((grey(y, x), 255 - grey(y, x)))
            elif channels == 3:
                row += bytes(rgb(y, x))
            else:
                row += bytes(rgb(y, x) + (255 - grey(y, x),))
        rows.append(bytes(row))
    return rows


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def png_bytes(h, w, channels):
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]

    def chunk(tag, data):
        return (struct.pack(">I", len(data)) + tag + data +
                struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    raw = b"".join(b"\x00" + row for row in pixels(h, w, channels))  # filter 0 on every row
    return (b"\x89PNG\r\n\x1a\n" +
            chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def bmp_bytes(h, w):
    """24-bit BMP, rows bottom-up in BGR order, each padded to 4 bytes."""
    stride = (3 * w + 3) & ~3
    body = bytearray()
    for y in reversed(range(h)):
        row = bytearray()
        for x in range(w):
            r, g, b = rgb(y, x)
            row += bytes((b, g, r))
        body += row + b"\x00" * (stride - len(row))
    header = struct.pack("<2sIHHI", b"BM", 54 + len(body), 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, len(body), 2835, 2835, 0, 0)
    return header + info + bytes(body)


def image_folders():
    d = os.path.join(OUT, "images")
    write(os.path.join(d, "cat", "a_grey.png"), png_bytes(6, 8, 1))
    write(os.path.join(d, "cat", "b_rgb.png"), png_bytes(6, 8, 3))
    write(os.path.join(d, "cat", "notes.txt"), b"not an image\n")
    write(os.path.join(d, "cat", ".hidden.png"), png_bytes(6, 8, 1))
    write(os.path.join(d, "dog", "c_big.PNG"), png_bytes(12, 10, 3))
    write(os.path.join(d, "dog", "d.bmp"), bmp_bytes(6, 8))
    write(os.path.join(d, "fish", "e_grey_alpha.png"), png_bytes(6, 8, 2))
    write(os.path.join(d, "fish", "f_rgba.png"), png_bytes(5, 7, 4))
    # every image 4 x 5: readable without a resize target
    d = os.path.join(OUT, "images_same")
    for cls, names in (("a", ("1.png", "2.png")), ("b", ("1.png",))):
        for name in names:
            write(os.path.join(d, cls, name), png_bytes(4, 5, 3))
    d = os.path.join(OUT, "images_corrupt")
    write(os.path.join(d, "a", "ok.png"), png_bytes(4, 5, 1))
    write(os.path.join(d, "b", "bad.png"), png_bytes(4, 5, 1)[:40])  # cut inside IDAT
    d = os.path.join(OUT, "images_empty_class")
    write(os.path.join(d, "a", "ok.png"), png_bytes(4, 5, 1))
    write(os.path.join(d, "b", "readme.txt"), b"no images here\n")


def csv_files():
    d = os.path.join(OUT, "csv")
    rows = [(0.5 * i, -1.0 * i, i * i / 4.0, i % 3) for i in range(5)]
    text = "x1,x2,x3,label\n" + "".join("%g,%g,%g,%d\n" % r for r in rows)
    write(os.path.join(d, "header.csv"), text.encode())
    text = "".join("%d;%g;%g;%g\n" % (r[3], r[0], r[1], r[2]) for r in rows) + "\n\n"
    write(os.path.join(d, "noheader.csv"), text.encode())
    # a byte-order mark, CRLF, quoted fields and names, string labels in the middle, blank lines
    text = ("\ufeff\"len, cm\",species,\"wid\"\r\n"
            "1.5,\"dog \"\"big\"\"\",2\r\n"
            "\"3\",cat,4.25\r\n"
            " 5 , bird ,\"-6\"\r\n"
            "7,cat,8\r\n"
            "\r\n\r\n")
    write(os.path.join(d, "quoted.csv"), text.encode("utf-8"))
    lines = ["a,b,c,d,e,label"] + ["%d,%d,%d,%d,%d,%d" % (i, i, i, i, i, i % 2) for i in range(1, 20)]
    lines[16] = "16,16,16,16,1"  # line 17: 5 fields
    write(os.path.join(d, "bad_fields.csv"), ("\n".join(lines) + "\n").encode())
    write(os.path.join(d, "bad_number.csv"),
          b"x1,x2,x3,y\n1,2,3,0\n4,5,6,1\n7,8,abc,0\n")
    write(os.path.join(d, "nan.csv"), b"x1,x2,y\n1,2,0\n3,nan,1\n")
    write(os.path.join(d, "empty.csv"), b"")
    write(os.path.join(d, "header_only.csv"), b"x1,x2,y\n")
    write(os.path.join(d, "negative_label.csv"), b"1,2,0\n3,4,-2\n")
    write(os.path.join(d, "unclosed_quote.csv"), b"x1,y\n1,0\n\"2,1\n3,0\n")


def manifest():
    d = os.path.join(OUT, "manifest")
    rows = [
        ("00000001_000.png", "Effusion|Infiltration"),
        ("00000001_001.png", "No Finding"),
        ("00000002_000.png", "Infiltration|Effusion|Effusion"),
        ("00000003_000.png", "Cardiomegaly"),
        ("00000004_000.png", " Atelectasis | Mass "),
        ("00000005_000.png", "\"Mass|Nodule\""),
    ]
    for name, _ in rows:
        write(os.path.join(d, "images", name), png_bytes(8, 8, 1))
    text = "Image Index,Finding Labels,Follow-up #,Patient ID\n"
    text += "".join("images/%s,%s,0,%d\n" % (name, labels, i + 1)
                    for i, (name, labels) in enumerate(rows))
    write(os.path.join(d, "manifest.csv"), text.encode())
    # bare names, read with an explicit image root; the labels column named, in third place
    text = "Patient ID,Image Index,Labels\n1,00000001_000.png,Effusion\n2,00000003_000.png,\n"
    write(os.path.join(d, "manifest_root.csv"), text.encode())
    text = ("Image Index,Finding Labels\nimages/00000001_000.png,Effusion\n"
            "images/00000013_005.png,Mass\n")
    write(os.path.join(d, "manifest_missing.csv"), text.encode())


def npy_files():
    d = os.path.join(OUT, "npy")
    os.makedirs(d, exist_ok=True)
    x = (np.arange(24, dtype=np.float32) * 0.25 - 1.0).reshape(6, 4)
    np.save(os.path.join(d, "x.npy"), x)
    np.save(os.path.join(d, "y.npy"), np.array([2, 0, 1, 2, 0, 5], dtype=np.int64))
    np.save(os.path.join(d, "y32.npy"), np.array([2, 0, 1, 2, 0, 5], dtype=np.int32))
    np.save(os.path.join(d, "y_short.npy"), np.array([2, 0, 1, 2, 0], dtype=np.int64))
    np.save(os.path.join(d, "y_negative.npy"), np.array([2, 0, -1, 2, 0, 5], dtype=np.int64))
    np.save(os.path.join(d, "y_float.npy"), np.zeros(6, dtype=np.float32))
    xn = x.copy()
    xn[3, 2] = np.nan
    np.save(os.path.join(d, "x_nan.npy"), xn)
    np.save(os.path.join(d, "x_chw.npy"), np.arange(36, dtype=np.float32).reshape(4, 1, 3, 3))
    np.save(os.path.join(d, "x_vector.npy"), np.zeros(6, dtype=np.float32))


def main():
    image_folders()
    csv_files()
    manifest()
    npy_files()


if __name__ == "__main__":
    main()
