"""`python -m digest`: the digest command."""

from digest.cli import main

main()
