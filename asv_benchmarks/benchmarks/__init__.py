"""asv benchmarks of fastbp: layers, losses, optimizers, training steps, threads.

Run from ``asv_benchmarks/`` (see ``asv.conf.json``); ``common`` holds the
shared parameter grid, data and timing settings.
"""
