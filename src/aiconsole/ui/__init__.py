"""The Textual UI: consumes domain snapshots, drives services through workers."""
