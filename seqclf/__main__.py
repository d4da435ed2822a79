"""`python -m seqclf ...` works the same as `seqclf ...` (and under torchrun -m seqclf)."""

from seqclf.cli.app import main

main()
