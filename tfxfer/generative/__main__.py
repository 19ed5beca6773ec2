"""``python -m tfxfer.generative``: see :mod:`tfxfer.generative.command`."""

from tfxfer.generative.command import main

raise SystemExit(main(prog="python -m tfxfer.generative"))
