"""Training: starting and resuming runs, the trainer's epoch loop, its state, set-up, devices, torchrun."""
