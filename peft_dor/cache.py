"""Where peft-dor keeps what it computes once: the one definition of the cache root.

DOR's WordNet copy and vocabulary features (:mod:`peft_dor.dor`), the image-feature cache (:mod:`peft_dor.data`) and
the command line's demo assets all live under it. It imports nothing of the package, so every room can use it.
"""

from __future__ import annotations

import os
from pathlib import Path

#: the environment variable that moves the cache root
CACHE_ENV = "PEFT_DOR_CACHE"


def cache_root() -> Path:
    """``$PEFT_DOR_CACHE``, or ``~/.cache/peft_dor`` when it is unset or empty."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "peft_dor")


__all__ = ["CACHE_ENV", "cache_root"]
