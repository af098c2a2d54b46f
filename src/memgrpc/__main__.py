"""`python -m memgrpc ...` is the same as the `memgrpc` command."""

from memgrpc.cli import main

raise SystemExit(main())
