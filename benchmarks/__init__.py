"""Benchmarks against the peers; ``python -m benchmarks`` runs them all (see README.md here)."""
