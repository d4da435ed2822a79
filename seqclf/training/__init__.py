"""Training: starting and resuming runs (start), the Trainer's epochs (trainer) and the ways they fail
(failures), its state, set-up, devices, optimizer and schedule, signals, torchrun."""
