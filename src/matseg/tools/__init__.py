"""Library side of the dataset tools behind ``matseg check`` and ``matseg show``.

Each tool module has ``add_parser(subparsers)`` (registers its sub-command, with
``handler=run``) and ``run(args) -> int`` (the exit code).
"""
