"""Host-side analysis: per-trial metrics from raw events, statistics, validity."""
