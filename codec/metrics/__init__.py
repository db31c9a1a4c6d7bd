"""Quality metrics for benchmarks and training validation (never imported by inference code)."""
