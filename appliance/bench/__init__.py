"""Benchmarks that write a report (tables, plot, JSON): speed targets live here, not in tests."""

# ``bench load --replicas``: the bench's own replica and further processes on one host (light
# here: the command line checks it before any benchmark module loads)
MAX_LOAD_REPLICAS = 8
