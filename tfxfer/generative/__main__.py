"""``python -m tfxfer.generative``: the ``generative`` recipe (:mod:`tfxfer.recipes.generative`)."""

from tfxfer.recipes.generative import main

raise SystemExit(main(prog="python -m tfxfer.generative"))
