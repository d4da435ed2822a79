"""`python -m seqclf ...` works the same as `seqclf ...` (and under torchrun -m seqclf)."""

from seqclf.cli import main

main()
