"""What every study shares: work directories, config records, photos, statistics, reports.

- `workdir`: create or resume a work directory, name outputs so that nothing
  is overwritten, write JSON atomically, cache a computation (JSON) or per-scene arrays (.npz) under a key.
- `config`: load `FILE.py:ARG` config files, record dataclass configs as JSON,
  the command-line options every study has and the config they ask for (`setup`).
- `models`: the base model of every embedded study (one recipe, cached per seed).
- `photos`: scikit-image's photographs as model inputs.
- `stats`: means over seeds with their standard deviation, bootstrap intervals.
- `report`: Markdown tables and figures.
"""

from experiments.common.config import add_common_arguments, load_config, record, setup, with_seeds
from experiments.common.models import EMBEDDED, base_model
from experiments.common.photos import photo_batch
from experiments.common.report import markdown_table, save_figure
from experiments.common.stats import bootstrap_ci, fmt, nan_mean, summarize
from experiments.common.workdir import (
    OMIT_AT_DEFAULT,
    as_json,
    cached,
    cached_arrays,
    flatten,
    output_names,
    start_study,
    use_compile_cache,
    write_json,
)

__all__ = [
    "EMBEDDED",
    "OMIT_AT_DEFAULT",
    "add_common_arguments",
    "as_json",
    "base_model",
    "bootstrap_ci",
    "cached",
    "cached_arrays",
    "flatten",
    "fmt",
    "load_config",
    "markdown_table",
    "nan_mean",
    "output_names",
    "photo_batch",
    "record",
    "save_figure",
    "setup",
    "start_study",
    "summarize",
    "use_compile_cache",
    "with_seeds",
    "write_json",
]
