"""The trustworthy-CNN study (Halliwell & Lecue) in small: new heads trained with and without
the saliency penalty on a frozen backbone.

`config` (the records), `data` (embedded scenes, TFDS), `heads` (the backbone
and one head trained from scratch, resumable), `evaluate` (per-image scores),
`study` (`run_study`: all of it for several seeds), `report` (tables and
figures), `tune` (the learning-rate search on the validation split), `main`
(the command line), `configs/` (embedded, cats_vs_dogs).
"""
