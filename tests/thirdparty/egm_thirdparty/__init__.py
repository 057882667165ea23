"""A third-party plugin used by tests/test_thirdparty_plugin.py; it imports the core only."""
