"""`python -m experiments.pointing`: see `experiments.pointing.main`."""

from experiments.pointing.main import main

main()
