"""dml model text and safetensors files from Python, for the reference checks in tools/.

build_model(text) turns dml model text (docs/model-text.md) into the equivalent
torch.nn.Sequential: the same layers at the same indices, so state_dict names match dml's
parameter names ("0.weight", "1.running_mean"). read_safetensors / write_safetensors handle
the file layout with plain struct + json (no safetensors package needed).
"""
import json
import struct

import torch
from torch import nn
import torch.nn.functional as F


class L2Norm(nn.Module):
    def __init__(self, eps=1e-12):
        super().__init__()
        self.eps = eps

    def forward(self, x):
        return F.normalize(x, p=2.0, dim=-1, eps=self.eps)


class GlobalPool(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.kind = kind

    def forward(self, x):
        x = x.flatten(2)
        return x.amax(2) if self.kind == "max" else x.mean(2)


class Reshape(nn.Module):
    def __init__(self, shape):
        super().__init__()
        self.shape = shape

    def forward(self, x):
        return x.reshape(x.shape[0], *self.shape)


def _pair(v):
    parts = [int(p) for p in v.split(",")]
    return parts[0] if len(parts) == 1 else tuple(parts)


def _out_size(n, k, s, p, d=1):
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def _as2(v):
    return v if isinstance(v, tuple) else (v, v)


def build_model(text):
    """Returns (input_shape, nn.Sequential) for dml model text."""
    shape = None
    layers = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].split()
        if not line:
            continue
        name, args = line[0], line[1:]
        if shape is None:
            assert name == "input", "first line must be input"
            shape = [int(a) for a in args]
            input_shape = tuple(shape)
            continue
        o = dict(a.split("=", 1) for a in args)
        if name == "linear":
            out = int(o["out"])
            layers.append(nn.Linear(shape[0], out, bias=o.get("bias", "1") == "1"))
            shape = [out]
        elif name in ("conv1d", "conv2d"):
            out, groups = int(o["out"]), int(o.get("groups", "1"))
            bias = o.get("bias", "1") == "1"
            if name == "conv1d":
                k, s = int(o["k"]), int(o.get("stride", "1"))
                p, d = int(o.get("pad", "0")), int(o.get("dilation", "1"))
                layers.append(nn.Conv1d(shape[0], out, k, s, p, d, groups, bias))
                shape = [out, _out_size(shape[1], k, s, p, d)]
            else:
                k = _as2(_pair(o["k"])) if "k" in o else (int(o["kh"]), int(o["kw"]))
                s = _as2(_pair(o.get("stride", "1")))
                p = _as2(_pair(o.get("pad", "0")))
                d = _as2(_pair(o.get("dilation", "1")))
                layers.append(nn.Conv2d(shape[0], out, k, s, p, d, groups, bias))
                shape = [out] + [_out_size(shape[1 + i], k[i], s[i], p[i], d[i]) for i in range(2)]
        elif name.startswith("batchnorm"):
            kw = dict(eps=float(o.get("eps", "1e-5")), momentum=float(o.get("momentum", "0.1")),
                      affine=o.get("affine", "1") == "1")
            cls = nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d
            layers.append(cls(shape[0], **kw))
        elif name == "layernorm":
            layers.append(nn.LayerNorm(shape[-1], eps=float(o.get("eps", "1e-5")),
                                       elementwise_affine=o.get("affine", "1") == "1"))
        elif name == "relu":
            layers.append(nn.ReLU())
        elif name == "leakyrelu":
            layers.append(nn.LeakyReLU(float(o.get("slope", "0.01"))))
        elif name == "gelu":
            layers.append(nn.GELU())
        elif name == "sigmoid":
            layers.append(nn.Sigmoid())
        elif name == "tanh":
            layers.append(nn.Tanh())
        elif name == "softplus":
            layers.append(nn.Softplus(float(o.get("beta", "1")), float(o.get("threshold", "20"))))
        elif name in ("maxpool1d", "avgpool1d"):
            k = int(o["k"])
            s, p = int(o.get("stride", str(k))), int(o.get("pad", "0"))
            if name == "maxpool1d":
                layers.append(nn.MaxPool1d(k, s, p))
            else:
                layers.append(nn.AvgPool1d(k, s, p, count_include_pad=o.get("count_include_pad", "1") == "1"))
            shape = [shape[0], _out_size(shape[1], k, s, p)]
        elif name in ("maxpool2d", "avgpool2d"):
            k = _as2(_pair(o["k"]))
            s = _as2(_pair(o["stride"])) if "stride" in o else k
            p = _as2(_pair(o.get("pad", "0")))
            if name == "maxpool2d":
                layers.append(nn.MaxPool2d(k, s, p))
            else:
                layers.append(nn.AvgPool2d(k, s, p, count_include_pad=o.get("count_include_pad", "1") == "1"))
            shape = [shape[0]] + [_out_size(shape[1 + i], k[i], s[i], p[i]) for i in range(2)]
        elif name in ("globalavgpool", "globalmaxpool"):
            layers.append(GlobalPool("max" if name == "globalmaxpool" else "avg"))
            shape = [shape[0]]
        elif name == "dropout":
            layers.append(nn.Dropout(float(o.get("p", "0.5"))))
        elif name == "flatten":
            layers.append(nn.Flatten())
            n = 1
            for v in shape:
                n *= v
            shape = [n]
        elif name == "reshape":
            new = [int(v) for v in o["shape"].split(",")]
            n = 1
            for v in shape:
                n *= v
            if -1 in new:
                known = 1
                for v in new:
                    if v != -1:
                        known *= v
                new[new.index(-1)] = n // known
            layers.append(Reshape(tuple(new)))
            shape = new
        elif name == "l2norm":
            layers.append(L2Norm(float(o.get("eps", "1e-12"))))
        else:
            raise ValueError(f"unknown layer {name}")
    return input_shape, nn.Sequential(*layers)


def dml_state_dict(model):
    """The model's state_dict as dml stores it: float32 tensors, no num_batches_tracked."""
    return {k: v.detach().float().contiguous() for k, v in model.state_dict().items()
            if not k.endswith("num_batches_tracked")}


_DTYPES = {"F32": ("<f4", torch.float32, 4), "F64": ("<f8", torch.float64, 8)}


def read_safetensors(path):
    """Returns ({name: float tensor}, metadata) with the layout checks a reader must make."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise ValueError(f"{path}: too short")
    (n,) = struct.unpack("<Q", blob[:8])
    if n % 8 != 0:
        raise ValueError(f"{path}: header length {n} is not a multiple of 8")
    if 8 + n > len(blob):
        raise ValueError(f"{path}: header length {n} past the end of the file")
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    data = blob[8 + n:]
    meta = header.pop("__metadata__", {})
    tensors = {}
    spans = []
    for name, e in header.items():
        if e["dtype"] not in _DTYPES:
            raise ValueError(f"{path}: {name}: dtype {e['dtype']}")
        _, dt, size = _DTYPES[e["dtype"]]
        b, end = e["data_offsets"]
        numel = 1
        for v in e["shape"]:
            numel *= v
        if end - b != numel * size or end > len(data):
            raise ValueError(f"{path}: {name}: bad data_offsets {b}, {end}")
        spans.append((b, end, name))
        buf = bytearray(data[b:end])
        t = torch.frombuffer(buf, dtype=dt) if numel else torch.zeros(0, dtype=dt)
        tensors[name] = t.reshape(e["shape"]).clone()
    spans.sort()
    pos = 0
    for b, end, name in spans:  # safetensors requires the tensors to tile the data section
        if b != pos:
            raise ValueError(f"{path}: {name} starts at {b}, expected {pos}")
        pos = end
    if pos != len(data):
        raise ValueError(f"{path}: {len(data) - pos} unused bytes at the end")
    return tensors, meta


def write_safetensors(path, tensors, metadata=None):
    """Writes {name: tensor} as F32 in the safetensors layout (names in sorted order)."""
    header = {}
    chunks = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name].detach().to(torch.float32).contiguous()
        raw = struct.pack(f"<{t.numel()}f", *t.reshape(-1).tolist())
        header[name] = {"dtype": "F32", "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * (-len(hjson) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for c in chunks:
            f.write(c)


def tensor_json(t):
    t = t.detach()
    return {"shape": list(t.shape), "data": [float(v) for v in t.reshape(-1).float().tolist()]}
