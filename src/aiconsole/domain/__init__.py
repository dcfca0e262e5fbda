"""Pure types and pure functions: no I/O, no clock reads (time is passed in), no Textual."""
