"""Experiments built on jaxsal: thin entry points over tested library functions.

`python -m experiments.main` runs the main job (the fooling study on the
embedded default); `experiments.fooling` runs any fooling configuration
(`experiments/configs/`); `experiments.trustworthy`, `experiments.sanity` and
`experiments.pointing` run the other papers' studies; `experiments.saliency_grid` holds the
scores and the figure of every interpreter's map on held-out scenes.
"""
