"""Using what training produced: evaluate, predict, export, plot, bench."""
