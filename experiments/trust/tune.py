"""The learning-rate search of the trustworthy-CNN study, on the validation split only.

    python -m experiments.trust.tune --workdir runs/trust-tune           # the default grid
    python -m experiments.trust.tune --lrs 0.1,0.3 --losses baseline     # a part of it

For each loss (the cross-entropy baseline, eq. 7 with Grad-CAM, eq. 7 with
Guided Grad-CAM; lambda fixed at the paper's 0.9) and each learning rate, one
head is trained exactly as in the study (seed 0: base model 0, head seed 0,
the config's epochs and batch size) and scored on the validation scenes; the
learning rate with the best validation accuracy is chosen per loss (ties go
to the smaller rate). The test split is never touched. Writes `tune.json`
(beside earlier ones, never over them) and prints the table; copy the choice into the config file's `LR`.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from experiments.common import (
    add_common_arguments,
    markdown_table,
    output_names,
    setup,
    write_json,
)
from experiments.trust import heads as head_runs
from experiments.trust.config import HeadConfig, StudyConfig
from experiments.trust.data import make_data
from experiments.trust.evaluate import score_models
from experiments.trust.main import CONFIGS
from experiments.trust.study import slug

LOSSES = {"baseline": None, "gradcam": "gradcam", "guided_gradcam": "guided_gradcam"}
LRS = (0.01, 0.03, 0.1, 0.3, 1.0)


def tune(workdir, config: StudyConfig, *, lrs=LRS, losses=tuple(LOSSES), seed: int = 0,
         models_dir=None, progress: bool = True, log=print) -> dict:  # fmt: skip
    """Validation accuracy of every (loss, learning rate); the best rate per loss."""
    workdir = Path(workdir)
    data = make_data(config.data)
    models_dir = workdir / "models" if models_dir is None else Path(models_dir)
    backbone, bb_record = head_runs.backbone(config, seed, models_dir=models_dir,
                                             progress=progress)  # fmt: skip
    cache: dict = {}

    def features(start):
        if "f" not in cache:
            cache["f"] = head_runs.Features(start, data, batch_size=config.eval_batch)
        return cache["f"]

    rows = {}
    for loss in losses:
        for lr in lrs:
            head = HeadConfig(f"{loss} lr={lr:g}", LOSSES[loss], lr)
            start = head_runs.start_model(backbone, head, config, seed, data.num_classes)
            params, rec = head_runs.train_head(
                workdir / f"seed-{seed}" / slug(head.name), head, start, data, config, seed,
                backbone_record=bb_record, progress=progress,
                features=(lambda s=start: features(s)) if config.cache_features else None,
            )  # fmt: skip
            v = score_models({head.name: params}, data, "validation", methods=(),
                             batch_size=config.eval_batch)  # fmt: skip
            acc = float((v[f"{head.name}/prediction"] == v["label"]).mean())
            last = rec["history"][-1]["loss"] if rec["history"] else float("nan")
            rows[(loss, lr)] = {"validation_accuracy": acc, "last_loss": last,
                                "seconds": rec["seconds"]}  # fmt: skip
            log(f"{head.name}: validation accuracy {acc:.4f}, last training loss {last:.4f}")
    best = {loss: min((lr for lr in lrs), key=lambda lr, lo=loss: (
        -rows[(lo, lr)]["validation_accuracy"], lr)) for loss in losses}  # fmt: skip
    table = markdown_table(["loss", *[f"lr {lr:g}" for lr in lrs], "chosen"],
                           [[loss, *[f"{rows[(loss, lr)]['validation_accuracy']:.3f}" for lr in lrs],
                             f"{best[loss]:g}"] for loss in losses])  # fmt: skip
    out = {"config": config, "seed": seed, "n_val": data.size("validation"), "best": best,
           "rows": [{"loss": k[0], "lr": k[1], **v} for k, v in rows.items()], "table": table}  # fmt: skip
    write_json(output_names(workdir, ("tune.json",))[0], out)
    log(table)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m experiments.trust.tune", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--config", default=str(CONFIGS / "embedded.py"), help="FILE.py[:ARG]")
    parser.add_argument("--lrs", default=",".join(f"{lr:g}" for lr in LRS))
    parser.add_argument("--losses", default=",".join(LOSSES))
    parser.add_argument("--epochs", type=int, default=None, help="override the config's epochs")
    add_common_arguments(parser, workdir="runs/trust-tune")
    args = parser.parse_args(argv)
    if args.seeds is not None:
        raise SystemExit("--seeds does not apply to tuning: it trains seed 0 on the validation "
                         "split; run the study with --seeds instead")  # fmt: skip
    config = setup(args)
    if args.epochs:
        config = dataclasses.replace(config, epochs=args.epochs)
    losses = tuple(s for s in args.losses.split(",") if s)
    unknown = [s for s in losses if s not in LOSSES]
    if unknown:
        raise SystemExit(f"unknown losses {unknown}; use {', '.join(LOSSES)}")
    return tune(args.workdir, config, lrs=tuple(float(s) for s in args.lrs.split(",")),
                losses=losses, models_dir=args.models, progress=not args.no_progress)  # fmt: skip


if __name__ == "__main__":
    main()
