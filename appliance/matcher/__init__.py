"""The central matcher: gallery search and decisions (never scores) for many devices."""
