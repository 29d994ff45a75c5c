"""`python -m experiments.fooling`: see `experiments.fooling.main`."""

from experiments.fooling.main import main

main()
