"""The fooling study (Heo et al. 2019) on the embedded scenes or on ImageNet.

`config` (the records), `data` (scenes, composites, TFDS), `runs` (one
fooling and its test values), `calibrate` (intervals and the Active classes
on validation data), `analyses` (weight noise, adversarial training,
SmoothGrad), `report` (tables and figures), `study` (`run_study`: all of it
for several seeds), `main` (the command line), `configs/` (embedded, legacy,
ImageNet).
"""
