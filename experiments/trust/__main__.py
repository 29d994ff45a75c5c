"""`python -m experiments.trust`: see `experiments.trust.main`."""

from experiments.trust.main import main

main()
