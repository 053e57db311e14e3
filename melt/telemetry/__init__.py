"""Device-side sensor probes and the sampler (standard library only)."""
