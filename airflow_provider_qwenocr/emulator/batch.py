"""Batch API routes of the emulator (compatible-mode /files and /batches). Owned by the BATCH engineer.

Placeholder: the emulator app calls ``register_batch_routes(app, state)`` at creation.
"""


def register_batch_routes(app, state):
    pass
