"""VM providers: one module per power API, all behind `VmProvider` (see base.py)."""
