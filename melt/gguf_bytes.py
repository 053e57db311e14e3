"""What one decoded token must read, from a GGUF file's own tensor table (host side).

`model_facts(path)` walks the GGUF header (format: ggml's docs/gguf.md; the value types and the bytes of
each tensor type are the `gguf` package's, GGUFValueType and GGML_QUANT_SIZES) and returns, per tensor
class, the bytes a single-token decode reads, plus what the KV cache and the FLOP count need. It is a
plain dict that case.json keeps, so a run is re-analysed without the model file (melt.analysis.roofline).

Why not gguf.GGUFReader: it builds a numpy view of every metadata item, 262,144 token strings for
Gemma 3, about 20 s a file; the walk below skips those arrays by their lengths and takes well under a
second. Tensor sizes are computed the way GGUFReader and ggml do: elements / block size x type size.

Per-token reads (llama.cpp's tensor layout: src/llama-model.cpp load_tensors and the graph builders):
- every tensor of a block `blk.N.*` is used once per token: attention (attn_q/k/v/qkv/output and
  their biases), FFN (ffn_gate/up/down), norms (every *_norm*). Routed experts (`*_exps`) are read for
  the n_expert_used of n_expert experts a token is routed to (expert_used_count / expert_count);
- token_embd: one row (get_rows of the token's id), ne0 elements of its type;
- output: read in full (the logits matmul). Without output.weight the output matrix is the token
  embedding itself (llama.cpp's TENSOR_DUPLICATED fallback: a tied embedding), read in full;
- anything else outside the blocks (rope_freqs, a position embedding) is read in full ("other").
"""

from __future__ import annotations

import mmap
import re
import struct
from pathlib import Path

GGUF_MAGIC = b"GGUF"
CLASSES = ("attention", "ffn", "norms", "embedding_row", "output", "other")
# llama.cpp's layer pattern of sliding-window attention where the GGUF has none of its own
# (src/llama-model.cpp load_hparams: hparams.set_swa_pattern(n): layer il uses the window when il % n < n - 1)
SWA_PATTERN = {"gemma2": 2, "gemma3": 6, "cohere2": 4}
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
KEEP_ARRAYS_UP_TO = 4096  # per-layer arrays (head_count_kv, sliding_window_pattern) are kept; token lists skipped


class GgufError(ValueError):
    """The file is not a GGUF this walker understands (bad magic, version, truncated header)."""


class _Walker:
    def __init__(self, buf, path: Path):
        self.buf, self.pos, self.path = buf, 0, path

    def take(self, fmt: str):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise GgufError(f"{self.path}: truncated GGUF header at byte {self.pos}")
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return value

    def string(self) -> str:
        n = self.take("<Q")
        raw = self.buf[self.pos : self.pos + n]
        self.pos += n
        return bytes(raw).decode("utf-8", errors="replace")

    def value(self, vtype: int):
        if vtype in _SCALARS:
            return self.take(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            item, n = self.take("<I"), self.take("<Q")
            if item in _SCALARS and n > KEEP_ARRAYS_UP_TO:  # skip by size: no per-item work
                self.pos += n * struct.calcsize(_SCALARS[item])
                return None
            if n > KEEP_ARRAYS_UP_TO:
                for _ in range(n):
                    self.value(item)
                return None
            return [self.value(item) for _ in range(n)]
        raise GgufError(f"{self.path}: unknown GGUF value type {vtype} at byte {self.pos}")


def read_header(path: Path) -> tuple[dict, list[dict]]:
    """(metadata {key: value}, tensors [{name, type, ne, n_bytes}]) of a GGUF file, versions 2 and 3.
    Arrays longer than KEEP_ARRAYS_UP_TO are None. Raises GgufError, OSError."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    path = Path(path)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        w = _Walker(buf, path)
        if bytes(buf[:4]) != GGUF_MAGIC:
            raise GgufError(f"{path}: not a GGUF file (magic {bytes(buf[:4])!r})")
        w.pos = 4
        version = w.take("<I")
        if version not in (2, 3):
            raise GgufError(f"{path}: GGUF version {version}; this reader knows 2 and 3")
        n_tensors, n_kv = w.take("<Q"), w.take("<Q")
        meta = {}
        for _ in range(n_kv):
            key = w.string()
            meta[key] = w.value(w.take("<I"))
        tensors = []
        for _ in range(n_tensors):
            name = w.string()
            ne = [w.take("<Q") for _ in range(w.take("<I"))]
            ttype = w.take("<I")
            w.take("<Q")  # offset in the data section
            qtype = GGMLQuantizationType(ttype)
            block, type_size = GGML_QUANT_SIZES[qtype]
            n = 1
            for d in ne:
                n *= d
            tensors.append({"name": name, "type": qtype.name, "ne": ne, "n_bytes": n // block * type_size})
    return meta, tensors


def tensor_class(name: str) -> str:
    """attention | ffn | norms | embedding (token_embd) | output | other, from llama.cpp's tensor names
    (gguf-py/gguf/constants.py TENSOR_NAMES)."""
    if "norm" in name:
        return "norms"
    if name.startswith("token_embd."):
        return "embedding"
    if name.startswith("output."):
        return "output"
    if re.match(r"blk\.\d+\.attn_", name):
        return "attention"
    if re.match(r"blk\.\d+\.ffn_", name):
        return "ffn"
    return "other"


def _per_layer(value, n_layer: int) -> list:
    if isinstance(value, list):
        return list(value) + [value[-1]] * (n_layer - len(value)) if value else [0] * n_layer
    return [value] * n_layer


def _swa_layers(meta: dict, arch: str, n_layer: int) -> tuple[list[bool], str]:
    """Which layers attend over a sliding window, and how that was decided."""
    window = meta.get(f"{arch}.attention.sliding_window")
    if not window:
        return [False] * n_layer, "no sliding window in the GGUF"
    pattern = meta.get(f"{arch}.attention.sliding_window_pattern")
    if isinstance(pattern, list):
        return [bool(x) for x in _per_layer(pattern, n_layer)], f"{arch}.attention.sliding_window_pattern"
    n = pattern if isinstance(pattern, int) and pattern > 0 else SWA_PATTERN.get(arch)
    if n is None:
        return [False] * n_layer, f"window {window} not applied: llama.cpp's layer pattern for {arch} is not known here"
    how = "the GGUF's pattern" if pattern else f"llama.cpp's pattern for {arch} (set_swa_pattern({n}))"
    return [il % n < n - 1 for il in range(n_layer)], how


def model_facts(path: Path) -> dict:
    """What melt.analysis.roofline needs of a GGUF model: {
    "arch", "n_layer", "n_vocab", "tied_output": bool,
    "decode_bytes": {class: bytes one decoded token reads}, "tensor_bytes": {class: bytes in the file},
    "types": {class: {type: bytes one token reads}}, "matmul_params": weights a prompt token multiplies
    (attention + FFN, routed experts at their used share), "output_params": the output matrix's elements,
    "kv": {"n_embd_k": [per layer], "n_embd_v": [per layer], "window": n_swa or None, "swa": [per layer],
           "swa_how": str}, "d_attn": [n_head x head_dim_k per layer]}.
    Raises GgufError (not a GGUF / unknown layout), OSError."""
    meta, tensors = read_header(path)
    arch = meta.get("general.architecture")
    if not arch:
        raise GgufError(f"{path}: no general.architecture in the GGUF")
    n_layer = int(meta.get(f"{arch}.block_count") or 0)
    n_embd = int(meta.get(f"{arch}.embedding_length") or 0)
    n_head = _per_layer(meta.get(f"{arch}.attention.head_count") or 0, n_layer)
    n_head_kv = _per_layer(
        meta.get(f"{arch}.attention.head_count_kv", meta.get(f"{arch}.attention.head_count")), n_layer
    )
    head_k = meta.get(f"{arch}.attention.key_length") or (n_embd // n_head[0] if n_layer and n_head[0] else 0)
    head_v = meta.get(f"{arch}.attention.value_length") or head_k
    n_expert = meta.get(f"{arch}.expert_count") or 0
    n_used = meta.get(f"{arch}.expert_used_count") or 0
    expert_share = n_used / n_expert if n_expert else 1.0
    names = {t["name"] for t in tensors}
    tied = "output.weight" not in names
    decode = dict.fromkeys(CLASSES, 0.0)
    stored = dict.fromkeys(CLASSES, 0)
    types: dict = {c: {} for c in CLASSES}
    matmul_params = output_params = 0.0
    n_vocab = None

    def add(cls: str, ttype: str, nbytes: float) -> None:
        decode[cls] += nbytes
        types[cls][ttype] = types[cls].get(ttype, 0.0) + nbytes

    for t in tensors:
        cls = tensor_class(t["name"])
        elements = 1
        for d in t["ne"]:
            elements *= d
        if cls == "embedding":
            stored["embedding_row"] += t["n_bytes"]
            rows = elements // t["ne"][0]
            if t["name"] == "token_embd.weight":
                n_vocab = rows
            add("embedding_row", t["type"], t["n_bytes"] / rows)  # one row: get_rows of the token's id
            if tied and t["name"] == "token_embd.weight":  # the output matrix is this tensor, read in full
                add("output", t["type"], t["n_bytes"])
                output_params += elements
            continue
        stored[cls] += t["n_bytes"]
        share = expert_share if "_exps" in t["name"] else 1.0
        add(cls, t["type"], t["n_bytes"] * share)
        if cls == "output" and t["name"] == "output.weight":
            output_params += elements
        elif cls in ("attention", "ffn") and len(t["ne"]) >= 2:
            matmul_params += elements * share
    swa, swa_how = _swa_layers(meta, arch, n_layer)
    return {
        "arch": arch,
        "n_layer": n_layer,
        "n_vocab": n_vocab,
        "tied_output": tied,
        "expert_share": expert_share,
        "decode_bytes": decode,
        "tensor_bytes": stored,
        "types": types,
        "matmul_params": matmul_params,
        "output_params": output_params,
        "d_attn": [h * head_k for h in n_head],
        "kv": {
            "n_embd_k": [h * head_k for h in n_head_kv],
            "n_embd_v": [h * head_v for h in n_head_kv],
            "window": int(meta[f"{arch}.attention.sliding_window"])
            if meta.get(f"{arch}.attention.sliding_window")
            else None,
            "swa": swa,
            "swa_how": swa_how,
        },
    }


def kv_bytes_per_element(cache_type: str) -> float:
    """Bytes per element of a KV cache type (f16, q8_0, ...): ggml's block type size / block size."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType[cache_type.upper()]]
    return type_size / block
