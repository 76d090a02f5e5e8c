"""Benchmarks that write a report (tables, plot, JSON): speed targets live here, not in tests."""
