"""The pointing study (Gu et al. 2020, section 4.2) on the version-2 embedded scenes or VOC07.

`config` (the records), `scenes` (the explanation set: single digits and
two-class composites), `explain` (every method's maps from `jaxsal.methods`
with one shared reference), `study` (`run_study`: maps, scores and
aggregation over seeds, resumable), `tune` (DSSR's constants on the
validation split), `report` (tables with intervals, figures), `voc` (the
VOC07 pointing game), `main` (the command line), `configs/` (embedded, voc07).
"""

from experiments.pointing.voc import _as_maps, voc_pointing

__all__ = ["_as_maps", "voc_pointing"]
