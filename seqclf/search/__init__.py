"""Hyperparameter search with Optuna: the search space, the study, and trials run as ordinary runs."""
