"""``python -m difftrade``: the ``difftrade`` command."""

from difftrade.cli.main import main

raise SystemExit(main())
