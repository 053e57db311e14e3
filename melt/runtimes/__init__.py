"""Device-side runtime drivers, one module per runtime. Each offers `info()` and `Runner(case, case_dir)`
with load() / trial(i) / close(); each imports its runtime lazily and nothing beyond the standard library."""
