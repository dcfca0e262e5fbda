"""Async I/O with the outside world, one module per system. Never imports Textual."""
