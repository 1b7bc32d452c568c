"""edgevoice's benchmarks: each `rows_*.py` module yields rows measured against an anchor in the same run."""
