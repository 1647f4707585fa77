"""`logger` for WMLA search plugins; it writes to the plugin host's log."""

from __future__ import annotations

import logging

logger = logging.getLogger("hpo.plugin")
