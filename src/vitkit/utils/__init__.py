"""Shared helpers with one home each: atomic files, progress and console output, device choice, collectives and
seeded subsets. Every module here imports nothing of vitkit, so any layer of the package may use them."""
