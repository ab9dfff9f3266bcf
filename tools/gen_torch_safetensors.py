#!/usr/bin/env python3
"""Writes the PyTorch weights fixtures that tests/test_checkpoint.c loads into dml.

For each fixture model text (tests/fixtures/small_cnn.txt, small_cnn1d.txt) this builds the
equivalent torch.nn.Sequential with a fixed seed, gives batch norm and layer norm non-trivial
weights and running statistics, and writes
  tests/fixtures/<name>.safetensors  the state_dict (float32, dml's names; no
                                     num_batches_tracked), written by hand in the safetensors
                                     layout (tools/dml_torch.py)
  tests/fixtures/<name>.json         {"model": ..., "input": {...}, "output": {...}}: a fixed
                                     input batch and torch's evaluation-mode output, computed in
                                     float64 from the float32-rounded weights.

Usage: /usr/bin/python3 tools/gen_torch_safetensors.py   (needs Debian's python3-torch)
"""
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from dml_torch import build_model, dml_state_dict, tensor_json, write_safetensors  # noqa: E402

FIXTURES = os.path.join(HERE, "..", "tests", "fixtures")
CASES = [("small_cnn.txt", "torch_weights", 1234), ("small_cnn1d.txt", "torch_weights_1d", 4321)]
BATCH = 3


def make(model_file, out_name, seed):
    with open(os.path.join(FIXTURES, model_file)) as f:
        text = f.read()
    torch.manual_seed(seed)
    input_shape, model = build_model(text)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.copy_(0.3 * torch.randn_like(m.running_mean))
                m.running_var.copy_(0.5 + torch.rand_like(m.running_var))
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.LayerNorm)):
                if m.weight is not None:
                    m.weight.copy_(1.0 + 0.3 * torch.randn_like(m.weight))
                    m.bias.copy_(0.2 * torch.randn_like(m.bias))
    state = dml_state_dict(model)
    ref = model.double()
    ref.load_state_dict({k: v.double() for k, v in state.items()}, strict=False)
    ref.eval()
    x = torch.randn(BATCH, *input_shape).float().double()
    with torch.no_grad():
        y = ref(x)
    write_safetensors(os.path.join(FIXTURES, out_name + ".safetensors"), state,
                      {"format": "pt", "source": "tools/gen_torch_safetensors.py"})
    with open(os.path.join(FIXTURES, out_name + ".json"), "w") as f:
        json.dump({"model": model_file, "input": tensor_json(x), "output": tensor_json(y)}, f,
                  separators=(",", ":"))
        f.write("\n")
    n = sum(v.numel() for v in state.values())
    print(f"{out_name}.safetensors: {len(state)} tensors, {n} values; output {list(y.shape)}")


def main():
    for model_file, out_name, seed in CASES:
        make(model_file, out_name, seed)


if __name__ == "__main__":
    main()
