"""Bytes per decoded token from a GGUF's tensor table (melt.gguf_bytes) and the roofline figures
(melt.analysis.roofline), each checked against a count made by hand from the tiny model's known shapes;
a real llama_cpp run on `local` with telemetry.bandwidth carries them into run.json, metrics.json and
summary.csv; a bad telemetry.bandwidth is bad input."""

from __future__ import annotations

import csv
import json
import shutil

import gguf
import pytest
from conftest import run_melt, write_recipe
from tiny_models import GGUF_N_EMBD, GGUF_N_FF, GGUF_N_HEAD, GGUF_N_HEAD_KV, GGUF_N_LAYER, _tiny_vocab, write_tiny_gguf

from melt.analysis.metrics import case_metrics
from melt.analysis.roofline import case_facts, roofline_figures
from melt.gguf_bytes import model_facts, read_header

N_VOCAB = len(_tiny_vocab()[0])
HEAD_DIM = GGUF_N_EMBD // GGUF_N_HEAD
# bytes per element, by hand: F32 4; Q8_0 a block of 32 values in 34 bytes (fp16 scale + 32 int8)
BYTES = {"f32": 4.0, "q8_0": 34 / 32}


def hand_count(weights: str, tied: bool) -> dict:
    """The tiny model's decode reads, from its shapes (tests/tiny_models.py), not from the file."""
    b = BYTES[weights]
    e, ff = GGUF_N_EMBD, GGUF_N_FF
    attention = GGUF_N_LAYER * (e * GGUF_N_HEAD * HEAD_DIM * 2 + e * GGUF_N_HEAD_KV * HEAD_DIM * 2) * b
    return {
        "attention": attention,
        "ffn": GGUF_N_LAYER * 3 * e * ff * b,
        "norms": (GGUF_N_LAYER * 2 + 1) * e * 4.0,  # norms stay F32
        "embedding_row": e * b,  # one row of token_embd
        "output": N_VOCAB * e * b,  # output.weight, or token_embd in full where tied: the same shape here
        "other": 0.0,
    }


@pytest.fixture(scope="module")
def ggufs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("roofline-models")
    return {
        (w, tied): write_tiny_gguf(folder / f"{w}-{tied}.gguf", weights=w, tied_output=tied)
        for w in ("f32", "q8_0")
        for tied in (False, True)
    }


@pytest.mark.parametrize("weights", ["f32", "q8_0"])
@pytest.mark.parametrize("tied", [False, True])
def test_bytes_per_token_match_a_hand_count(ggufs, weights, tied):
    facts = model_facts(ggufs[(weights, tied)])
    assert facts["tied_output"] is tied
    assert facts["n_vocab"] == N_VOCAB
    assert facts["decode_bytes"] == pytest.approx(hand_count(weights, tied), rel=1e-12)
    # the file holds the embedding once; tied, the output class reads that same tensor in full
    stored_output = 0 if tied else N_VOCAB * GGUF_N_EMBD * BYTES[weights]
    assert facts["tensor_bytes"]["output"] == pytest.approx(stored_output)


def test_tensor_sizes_agree_with_the_gguf_package_reader(ggufs):
    """The header walk sizes every tensor as gguf.GGUFReader does (an independent reader of the same file)."""
    path = ggufs[("q8_0", False)]
    _, mine = read_header(path)
    theirs = {t.name: (int(t.n_bytes), t.tensor_type.name) for t in gguf.GGUFReader(path).tensors}
    assert {t["name"]: (t["n_bytes"], t["type"]) for t in mine} == theirs


def _case(path, prompt_tokens=100, n_gen=21, params=None, runtime="llama_cpp", bandwidth=None, limits=None):
    case = {
        "case_id": "x", "runtime": runtime, "workload": {"prompt_tokens": prompt_tokens, "n_gen": n_gen},
        "params": params or {}, "protocol": {"repetitions": 1, "min_duration_s": 0},
    }  # fmt: skip
    case["roofline"] = case_facts(runtime, path, limits or {}, bandwidth)
    return case


MEASURED = {"mem_bw_read_gbs": 20.0, "mem_bw_copy_gbs": 30.0, "method": {"tool": "numpy (agent)"}}


def test_kv_cache_at_depth_and_the_roofline(ggufs):
    """KV = n_layer x mean cells x n_head_kv x head_dim x (bytes K + bytes V): after a 100-token prompt the
    timed steps of a 21-token decode attend 101..120 cells, 110.5 on average; q8_0 K and f16 V."""
    path = ggufs[("f32", False)]
    case = _case(path, 100, 21, {"cache_type_k": "q8_0", "cache_type_v": "f16"}, bandwidth=MEASURED)
    r = roofline_figures(case, {"decode_tok_s": 50.0, "prefill_tok_s": 400.0}, [], {})
    kv = GGUF_N_LAYER * 110.5 * GGUF_N_HEAD_KV * HEAD_DIM * (34 / 32 + 2)
    weights = sum(hand_count("f32", False).values())
    f = r["figures"]
    assert r["details"]["bytes_per_token_mb"]["kv"] == pytest.approx(kv / 1e6)
    assert f["decode_bytes_per_token_mb"] == pytest.approx((weights + kv) / 1e6)
    assert f["decode_bw_gbs"] == pytest.approx((weights + kv) * 50.0 / 1e9)
    assert f["decode_roofline_pct"] == pytest.approx((weights + kv) * 50.0 / 1e9 / 20.0 * 100)
    assert "read" in r["details"]["roofline_basis"]
    # prefill: 2 FLOP per matmul weight + 4 x n_layer x d_attn x mean context (50.5 over 100 positions) per
    # token + the logits of the last prompt token once
    matmul = GGUF_N_LAYER * (4 * GGUF_N_EMBD * GGUF_N_EMBD + 3 * GGUF_N_EMBD * GGUF_N_FF)
    flop = 2 * matmul + 4 * GGUF_N_LAYER * GGUF_N_EMBD * 50.5 + 2 * N_VOCAB * GGUF_N_EMBD / 100
    assert f["prefill_gflops_s"] == pytest.approx(flop * 400.0 / 1e9)
    assert f["prefill_peak_pct"] is None and "peak_gflops" in r["missing"]["prefill_peak_pct"]
    deeper = roofline_figures(_case(path, 1000, 21, bandwidth=MEASURED), {"decode_tok_s": 50.0}, [], {})
    assert deeper["figures"]["decode_bytes_per_token_mb"] > f["decode_bytes_per_token_mb"]  # the KV grows


def test_sliding_window_layers_are_capped_at_their_window(tmp_path):
    """A gemma3 GGUF with no pattern of its own: llama.cpp's set_swa_pattern(6): layers 0-4 and 6 use the window,
    layer 5 attends everything."""
    path = tmp_path / "swa.gguf"
    w = gguf.GGUFWriter(str(path), "gemma3")
    w.add_block_count(7)
    w.add_embedding_length(8)
    w.add_head_count(2)
    w.add_head_count_kv(1)
    w.add_key_length(4)
    w.add_value_length(4)
    w.add_sliding_window(16)
    import numpy as np

    w.add_tensor("token_embd.weight", np.zeros((10, 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    facts = model_facts(path)
    assert facts["kv"]["swa"] == [True, True, True, True, True, False, True]
    case = _case(path, 100, 11)  # f16 cache: cells 101..110, mean 105.5 on the full layer, 16 on the others
    r = roofline_figures(case, {"decode_tok_s": 1.0}, [], {})
    assert r["details"]["kv_cells_per_layer"] == [16, 16, 16, 16, 16, 105.5, 16]
    assert r["details"]["bytes_per_token_mb"]["kv"] == pytest.approx((6 * 16 + 105.5) * 4 * 2 * 2 / 1e6)


def test_missing_bandwidth_leaves_the_roofline_empty_with_a_reason(ggufs):
    path = ggufs[("f32", False)]
    r = roofline_figures(_case(path), {"decode_tok_s": 50.0}, [], {})
    assert r["figures"]["decode_bw_gbs"] is not None
    assert r["figures"]["decode_roofline_pct"] is None
    assert "telemetry.bandwidth" in r["missing"]["decode_roofline_pct"]
    assert "telemetry.bandwidth is false" in r["missing"]["mem_bw_read_gbs"]
    # a profile's datasheet figure stands in, and says so
    r = roofline_figures(_case(path, limits={"mem_bandwidth_gbs": 10.0}), {"decode_tok_s": 50.0}, [], {})
    assert r["figures"]["decode_roofline_pct"] == pytest.approx(r["figures"]["decode_bw_gbs"] / 10.0 * 100)
    assert "datasheet" in r["details"]["roofline_basis"]
    assert r["figures"]["mem_bw_read_gbs"] is None
    # not a GGUF runtime: not applicable
    r = roofline_figures(_case(path, runtime="onnxruntime", bandwidth=MEASURED), {}, [], {})
    assert r["figures"]["mem_bw_read_gbs"] == 20.0
    assert r["missing"]["decode_bytes_per_token_mb"] == "not applicable to runtime onnxruntime"


def test_figures_reach_metrics_json_with_reasons(ggufs):
    """case_metrics puts the roofline in the summary row and its reasons in `missing`."""
    case = _case(ggufs[("f32", True)])
    tok = [i * 10_000_000 for i in range(21)]
    trial = {"warmup": False, "duration_s": 1.0, "n_prompt": 100, "n_gen": 21, "t_start_ns": 0,
             "t_tokenized_ns": 0, "t_prefill_end_ns": 100_000_000, "token_ns": tok}  # fmt: skip
    m = case_metrics(case, [trial], {"load": {}})
    assert m["summary"]["decode_tok_s"] == pytest.approx(100.0)
    assert m["summary"]["decode_bytes_per_token_mb"] > 0
    assert m["summary"]["decode_bw_gbs"] == pytest.approx(m["summary"]["decode_bytes_per_token_mb"] * 100 / 1e3)
    assert m["summary"]["decode_roofline_pct"] is None
    assert "bandwidth" in m["missing"]["decode_roofline_pct"]
    assert m["roofline"]["tied_output"] is True


BAD = """
name: bad
models:
  - id: tiny
    runtime: llama_cpp
    source: {path: tiny.gguf}
    workload: {prompt_tokens: 8, n_gen: 4}
telemetry: {bandwidth: maybe}
"""


def test_a_bad_bandwidth_value_is_bad_input(workdir, cli):
    recipe = write_recipe(workdir, BAD)
    code, out = cli("run", str(recipe), "--results", str(workdir / "results"))
    assert code == 2, out
    assert "recipe.yaml:7: telemetry.bandwidth: expected true or false, found 'maybe'" in out
    assert not (workdir / "results").exists()  # nothing written


RUN = """
name: roofline
models:
  - id: tiny
    runtime: llama_cpp
    source: {path: tiny.gguf}
    workload: {prompt_tokens: 16, n_gen: 9}
    params: {threads: 1, n_ctx: 128, cache_type_k: f32}
protocol: {warmup: 0, repetitions: 2, min_duration_s: 0}
telemetry: {interval_ms: 0, idle_s: 0, bandwidth: true}
"""


def test_a_run_measures_bandwidth_once_and_every_case_has_the_roofline(workdir):
    recipe = write_recipe(workdir, RUN)
    proc = run_melt("run", recipe, "--results", workdir / "results", "--run-id", "r", cwd=workdir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = json.loads((workdir / "results" / "r" / "run.json").read_text())
    bw = run["devices"]["local"]["bandwidth"]
    assert bw["mem_bw_read_gbs"] > 0 and bw["mem_bw_copy_gbs"] > 0
    assert bw["method"]["tool"] == "numpy (agent)" and bw["method"]["threads"] >= 1
    assert len(bw["read_s"]) == bw["method"]["repetitions"]
    (case_dir,) = (workdir / "results" / "r" / "cases").iterdir()
    metrics = json.loads((case_dir / "metrics.json").read_text())
    s = metrics["summary"]
    assert s["mem_bw_read_gbs"] == bw["mem_bw_read_gbs"]
    # the weights by hand (f32, untied) plus the KV at 16 + 9/2 cells: f32 K and llama.cpp's default f16 V
    kv = GGUF_N_LAYER * 20.5 * GGUF_N_HEAD_KV * HEAD_DIM * (4 + 2)
    assert s["decode_bytes_per_token_mb"] == pytest.approx((sum(hand_count("f32", False).values()) + kv) / 1e6)
    assert metrics["roofline"]["kv_cache_type_from"] == ["the runtime's own report", "the runtime's own report"]
    assert s["decode_roofline_pct"] == pytest.approx(s["decode_bw_gbs"] / s["mem_bw_read_gbs"] * 100)
    with (workdir / "results" / "r" / "summary.csv").open() as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["decode_roofline_pct"]) == pytest.approx(s["decode_roofline_pct"], rel=1e-5)  # 6 digits
    assert float(row["mem_bw_read_gbs"]) == pytest.approx(bw["mem_bw_read_gbs"], rel=1e-5)
    # the catalog holds the figures, and `melt compare` shows them without judging them
    query = "SELECT decode_roofline_pct, mem_bw_read_gbs FROM cases"
    proc = run_melt("results", "query", query, "--format", "json", "--results", workdir / "results")
    assert proc.returncode == 0, proc.stderr
    (cat,) = json.loads(proc.stdout)
    assert cat["decode_roofline_pct"] == pytest.approx(s["decode_roofline_pct"], rel=1e-5)
    again = workdir / "results" / "again"
    shutil.copytree(workdir / "results" / "r", again)
    manifest = json.loads((again / "run.json").read_text())
    (again / "run.json").write_text(json.dumps({**manifest, "run_id": "again"}))
    proc = run_melt("compare", workdir / "results" / "r", again, "--all")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    shown = [line for line in proc.stdout.splitlines() if "decode_roofline_pct" in line]
    assert len(shown) == 1 and shown[0].startswith("untested") and "a roofline figure" in shown[0]
