"""The sanity-check study (Adebayo et al. 2018) and manipulated explanations (Dombrowski et al.
2019) on the embedded scenes and the shared base model.

`config` (the records), `randomisation` (model randomisation, baselines,
similarities), `shuffled` (the shuffled-label model), `manipulation` (the
attack and beta-smoothing), `findings` (pass / fail against the paper),
`report` (tables and figures), `store` (resumable pieces), `study`
(`run_study`: all of it for several seeds), `main` (the command line),
`configs/` (the embedded default, quick and full settings).
"""
