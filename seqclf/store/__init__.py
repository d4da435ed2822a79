"""What a run leaves on disk: the run directory and its files, checkpoints, atomic writes, the lock, the run table."""
