"""`python -m xdr` runs the CLI (the benchmarks use it so they need no PATH)."""

from xdr.cli import main

main()
