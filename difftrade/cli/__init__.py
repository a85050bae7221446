"""The ``difftrade`` command: :mod:`~difftrade.cli.main` builds the parser and dispatches to
the handlers in :mod:`~difftrade.cli.grids`, :mod:`~difftrade.cli.reports`,
:mod:`~difftrade.cli.certificates` and :mod:`~difftrade.cli.examples`; option parsing helpers in
:mod:`~difftrade.cli.common`.
"""
