"""Process-wide settings every stage applies before loading models: offline, and quiet.

Nothing may be fetched from a model hub (models come from local folders and PyPI packages), and the
libraries' own chatter (bitsandbytes' optional-kernel notice, per-load weight progress bars) would
drown our progress bars and results.
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache


@lru_cache(maxsize=1)
def quiet_libraries() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # bitsandbytes logs a warning at import on AVX512-BF16 CPUs when the optional `kernels` package is
    # absent; its portable fallback is what we use anyway.
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    try:
        import transformers

        transformers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()
    except ImportError:
        pass
