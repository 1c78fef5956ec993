"""numpy standing in for cupy, so the ``xp is not numpy`` (GPU) code paths run on the CPU."""

import numpy as np


class FakeCupy:
    """numpy under another name; ``calls`` counts attribute lookups (proof the path ran)."""

    def __init__(self):
        self.calls = 0

    def __getattr__(self, name):
        self.calls += 1
        return getattr(np, name)
