"""Data: IDX files (plain or .gz), torchvision datasets, sequence views, image files read as MNIST-style digits."""
