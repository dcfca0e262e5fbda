"""`python -m aiconsole` is the same as the `aiconsole` command."""

from aiconsole.cli import main

raise SystemExit(main())
