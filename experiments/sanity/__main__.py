"""`python -m experiments.sanity`: see `experiments.sanity.main`."""

from experiments.sanity.main import main

main()
