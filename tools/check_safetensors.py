#!/usr/bin/env python3
"""Checks that checkpoints written by dml load in Python and PyTorch.

Usage: /usr/bin/python3 tools/check_safetensors.py PREFIX [PREFIX ...]

For each checkpoint prefix P (P.json + P.safetensors, as dml_checkpoint_save writes them):
  1. reads P.safetensors with plain struct + json, checking the layout (8-byte little-endian
     header length, a multiple of 8; offsets that tile the data section; F32 sizes), and with
     the `safetensors` package too when it is installed;
  2. builds the torch.nn.Sequential equivalent of the model text in P.json and loads the
     weights with load_state_dict (only num_batches_tracked may be missing, only optimiser
     state "optim.*" may be extra);
  3. if P.io.json exists ({"input": {...}, "output": {...}}: a batch and dml's evaluation-mode
     output, written by tests/test_checkpoint.c as <build>/tests/tmp/export_*), runs the torch
     model on the input and compares with |dml - torch| <= 1e-5 + 1e-4 |torch|.
Exits non-zero on the first failure.
"""
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from dml_torch import build_model, read_safetensors  # noqa: E402


def check(prefix):
    with open(prefix + ".json") as f:
        ck = json.load(f)
    if ck.get("format") != "dml-checkpoint" or ck.get("version") != 1:
        raise ValueError(f"{prefix}.json: not a version-1 dml checkpoint")
    weights = os.path.join(os.path.dirname(prefix), ck["weights"])
    tensors, meta = read_safetensors(weights)
    try:
        from safetensors.torch import load_file
    except ImportError:
        load_file = None
    if load_file is not None:
        other = load_file(weights)
        for k, v in tensors.items():
            if not torch.equal(other[k], v):
                raise ValueError(f"{weights}: safetensors package reads {k} differently")
    _, model = build_model(ck["model"])
    params = {k: v for k, v in tensors.items() if not k.startswith("optim.")}
    res = model.load_state_dict(params, strict=False)
    missing = [k for k in res.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or res.unexpected_keys:
        raise ValueError(f"{weights}: missing {missing}, unexpected {res.unexpected_keys}")
    n_optim = len(tensors) - len(params)
    msg = f"{weights}: {len(params)} tensors load into torch"
    if n_optim:
        msg += f" (+{n_optim} optimiser state tensors, step {meta.get('optim.step')})"
    io_path = prefix + ".io.json"
    if os.path.exists(io_path):
        with open(io_path) as f:
            io = json.load(f)
        x = torch.tensor(io["input"]["data"], dtype=torch.float64).reshape(io["input"]["shape"])
        got = torch.tensor(io["output"]["data"], dtype=torch.float64)
        model = model.double().eval()
        with torch.no_grad():
            ref = model(x).reshape(-1)
        err = (got - ref).abs() - (1e-5 + 1e-4 * ref.abs())
        if got.shape != ref.shape or (err > 0).any():
            worst = int(err.argmax())
            raise ValueError(f"{io_path}: dml output differs from torch at {worst}: "
                             f"{float(got[worst])} vs {float(ref[worst])}")
        msg += f"; outputs match torch ({ref.numel()} values, max |diff| "
        msg += f"{float((got - ref).abs().max()):.2e})"
    print("ok " + msg)


def main(argv):
    if not argv:
        print(__doc__)
        return 2
    for prefix in argv:
        try:
            check(prefix)
        except (OSError, ValueError, KeyError, RuntimeError) as e:
            print(f"FAIL {prefix}: {e}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
