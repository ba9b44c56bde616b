"""The cas benchmark: see bench/run.py and docs/performance.md."""
