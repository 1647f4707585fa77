"""Import paths IBM WMLA search plugins expect: `plugins.core.base_plugin_opt`, `plugins.core.logger`."""
