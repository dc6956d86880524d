"""The `alignheads` command line: a thin layer over the library."""
