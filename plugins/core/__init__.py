"""The WMLA plugin base class and logger (see app/plugins for how plugins are run)."""
