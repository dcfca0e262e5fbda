"""Loopback servers that speak the real wire protocols, for `aiconsole --demo` and the tests."""
