"""Experiments built on jaxsal: the main job now, the papers' studies later.

`python -m experiments.main` runs the main job; its pieces (`run_job`,
`compute_maps`, the scores, `plot_grid`) are importable for later studies.
"""
