"""Console logging for the CLIs: short lines, warnings marked."""
from __future__ import annotations

import logging
import warnings


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s")
    logging.getLogger("artefact").setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.addLevelName(logging.WARNING, "warning")
    logging.getLogger().handlers[0].setFormatter(logging.Formatter("%(levelname)s: %(message)s" if verbose else "%(message)s"))
    if not verbose:
        warnings.filterwarnings("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
