"""Benchmarks of smpc.  They measure; they assert nothing.  Run from the repository root."""
