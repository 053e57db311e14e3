"""melt.registry: each summary metric once, with its unit in its name, and the views built from it."""

from __future__ import annotations

import pytest

from melt import registry

# the unit a name's ending promises (DESIGN.md: units in names)
ENDINGS = {"_tok_s": "tok/s", "_ms": "ms", "_s": "s", "_mb": "MB", "_w": "W", "_j": "J", "_per_token": "J/tok",
           "_c": "°C", "_ips": "inf/s", "_pct": ("%", "% core"), "_gbs": "GB/s", "_gflops_s": "GFLOP/s",
           "_mops_s": "M it/s"}  # fmt: skip


@pytest.mark.parametrize("m", registry.METRICS, ids=lambda m: m.name)
def test_a_metric_with_a_unit_says_it_in_its_name(m):
    ending = next((e for e in sorted(ENDINGS, key=len, reverse=True) if m.name.endswith(e)), None)
    if m.unit:
        assert ending is not None, f"{m.name}: unit {m.unit!r} but no unit in the name"
        expected = ENDINGS[ending]
        assert m.unit in (expected if isinstance(expected, tuple) else (expected,))
    else:  # no unit: a flag, a count, a text, or a dimensionless quality figure (perplexity)
        assert ending is None and (m.kind in ("text", "bool", "int") or m.source == "quality")


@pytest.mark.parametrize("m", registry.METRICS, ids=lambda m: m.name)
def test_what_is_judged_has_a_better_side_and_a_known_source(m):
    assert m.kind in registry.SQL_TYPES and m.source in (
        "runtime",
        "agent",
        "telemetry",
        "quality",
        "sustained",
        "roofline",
        "case",
    )
    assert m.judged in (None, "trial", "run", "info", "paired") and (m.judged == "paired") == (m.units is not None)
    if m.judged:
        assert m.direction in ("higher", "lower") and m.kind == "float"
    if m.source in ("runtime", "agent"):
        assert m.runtimes and m.runtimes <= registry.EVERY


def test_names_are_unique_and_the_views_follow_the_registry():
    names = registry.names()
    assert len(names) == len(set(names)) and set(names).isdisjoint(registry.ID_COLUMNS)
    assert registry.compare_order()[0] == "decode_tok_s" and set(registry.compare_order()) == set(registry.compared())
    assert registry.produced_by("llama_cpp_cli") == {"prefill_tok_s", "decode_tok_s"}
    assert "latency_p50_ms" in registry.produced_by("onnxruntime") and "ttft_s" not in registry.produced_by(
        "onnxruntime"
    )
    assert (
        registry.metric("throttled").heading == "throttled"
        and registry.metric("decode_tok_s").heading == "decode tok/s"
    )
    with pytest.raises(KeyError):
        registry.metric("decode_tokens_per_second")
