"""`python -m fss ...` is the `fss` command."""

from fss.cli import main

main()
