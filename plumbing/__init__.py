"""Plumbing shared by simgen, realdiff and policies, written once: the command-line style (cli),
worker processes (procs) and the parts of a training loop (training)."""
