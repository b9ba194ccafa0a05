"""The `nucflow` command: parses arguments and calls the library; no segmentation logic here."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING

from workflow import __version__
from workflow.core.files import InputError

if TYPE_CHECKING:
    from workflow.config import NucflowConfig

log = logging.getLogger("nucflow")


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="YAML or JSON file overriding the default settings")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one setting, e.g. --set size.target_diameter=32 (repeatable)",
    )
    stretch = parser.add_argument_group("input normalisation (16-bit and float images are stretched between intensity percentiles by default)")
    stretch.add_argument("--percentiles", nargs=2, type=float, metavar=("LOW", "HIGH"), help="stretch between these percentiles (default 0.1 99.9)")
    stretch.add_argument("--no-normalize", action="store_true", help="no stretch: 8-bit as it is, 16-bit / 257, float x 255")
    stretch.add_argument("--per-channel", action="store_true", help="stretch each colour channel on its own (default: one range for all)")
    stretch.add_argument("--channel", type=int, metavar="N", help="the nuclear channel of multi-channel images (a TIFF's channels, or R, G, B = 0, 1, 2)")
    stretch.add_argument("--axes", metavar="AXES", help="a TIFF's dimensions where its metadata does not say, one letter each: T Z C Y X (e.g. ZYX, CYX)")
    stretch.add_argument("--stretch-8bit", action="store_true", help="stretch 8-bit images too (default: as they are, as the shipped models learned them)")
    stretch.add_argument(
        "--polarity",
        choices=("keep", "choose", "auto", "invert"),
        help="images of dark nuclei on a bright background: choose (default: gray-inverted where the presegmenter is surer so; "
        "classic keeps them), auto (always inverted), keep (never)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nucflow", description="Segment cell nuclei in microscopy images of any kind.")
    parser.add_argument("--version", action="version", version=f"nucflow {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="count", default=0, help="less log output")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    evaluate = commands.add_parser("evaluate", help="score predicted label images against ground truth (DSB 2018 metric)")
    evaluate.add_argument("pred_dir", help="folder of predicted label images")
    evaluate.add_argument("gt_dir", help="folder of ground-truth label images (matched by file stem)")
    evaluate.add_argument("--csv", metavar="FILE", help="write the per-image table as CSV")

    predict = commands.add_parser("predict", help="segment images (a folder, a file or a glob) into uint16 label TIFFs")
    predict.add_argument("images", help="folder of images (png, tif, bmp, jpg), one image file, or a quoted glob pattern ('plate1/*_DAPI.tif')")
    predict.add_argument("-o", "--out", required=True, help="output folder")
    mode = predict.add_mutually_exclusive_group()
    mode.add_argument("--method", choices=["classic", "fast", "full"], help="segmentation method (default: fast, or the config file's)")
    mode.add_argument("--fast", dest="method", action="store_const", const="fast", help="Mask R-CNN presegmentation only")
    mode.add_argument("--full", dest="method", action="store_const", const="full", help="refined prediction")
    predict.add_argument("--diameter", type=float, help="median nucleus diameter in pixels (skips the size estimate)")
    predict.add_argument(
        "--stitch-threshold",
        type=float,
        metavar="IOU",
        help="stacks: join objects of consecutive planes that overlap by this IoU into 3-D objects (default 0: off)",
    )
    predict.add_argument(
        "--pixel-size", type=float, metavar="UM", help="micrometres per pixel, for every image (default: each file's own calibration, when it has one)"
    )
    predict.add_argument("--models", metavar="FOLDER", help="models trained by 'nucflow train' (its RUN/models folder)")
    predict.add_argument("--model", help="presegmenter model folder (default: the shipped model)")
    predict.add_argument("--ensemble", help="U-Net ensemble folder for --full (default: the shipped ensemble)")
    predict.add_argument("--params", help="post-processing parameter file for --full (default: the shipped one)")
    predict.add_argument(
        "--keep-intermediate", action="store_true", help="--full: also write the U-Net map and Mask R-CNN labels per scale to OUT/intermediate/"
    )
    predict.add_argument("--overlays", action="store_true", help="also write OUT/overlays/<image>.png (contours on the image)")
    predict.add_argument("--rois", action="store_true", help="also write OUT/rois/<image>.zip: one Fiji polygon ROI per nucleus, named by label")
    predict.add_argument("--kaggle-csv", action="store_true", help="also write OUT/submission.csv (Kaggle run-length codes)")
    predict.add_argument("--no-report", dest="report", action="store_false", help="do not write OUT/report.html")
    predict.add_argument("--truth", metavar="MASKS", help="folder of ground-truth label images: per-image scores in the report")
    predict.add_argument("--jobs", type=int, default=1, help="images segmented in parallel on this machine (default 1)")
    predict.add_argument("--dask-scheduler", metavar="ADDRESS", help="run on an existing Dask cluster (e.g. tcp://host:8786)")
    predict.add_argument("--overwrite", action="store_true", help="redo images that already have an output")
    _add_config_options(predict)

    train_presegment = commands.add_parser("train-presegment", help="train the Mask R-CNN presegmenter")
    train_presegment.add_argument("data", help="folder with images/, masks/ and split.csv (train/val)")
    train_presegment.add_argument("-o", "--out", required=True, help="run folder (checkpoint, config, best model)")
    train_presegment.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    train_presegment.add_argument("--start-from", metavar="MODEL", help="fine-tune this model folder instead of starting from scratch")
    _add_config_options(train_presegment)

    train_unet = commands.add_parser("train-unet", help="train the U-Net ensemble (one member per sigma/seed)")
    train_unet.add_argument("data", help="folder with images/, masks/ and split.csv (train/val)")
    train_unet.add_argument("-o", "--out", required=True, help="run folder; the ensemble goes to OUT/ensemble/")
    train_unet.add_argument("--restart", action="store_true", help="ignore existing checkpoints")
    _add_config_options(train_unet)

    search = commands.add_parser("param-search", help="tune the post-processing parameters on a validation set (Optuna)")
    search.add_argument("images", help="folder of validation images")
    search.add_argument("masks", help="folder of their label images (matched by stem)")
    search.add_argument("-o", "--out", required=True, help="output folder (cache, study, best_params.json, search.png)")
    search.add_argument("--trials", type=int, default=200, help="trials to run now (default 200)")
    search.add_argument("--minutes", type=float, help="stop after this many minutes")
    search.add_argument("--jobs", type=int, default=1, help="parallel workers (joblib)")
    search.add_argument("--storage", help="Optuna storage URL (default: sqlite in the output folder)")
    search.add_argument("--model", help="presegmenter model folder")
    search.add_argument("--ensemble", help="U-Net ensemble folder")
    _add_config_options(search)

    cluster = commands.add_parser("cluster", help="group images by visual style (k-means on style descriptors)")
    cluster.add_argument("images", help="folder of images")
    cluster.add_argument("-o", "--out", required=True, help="output folder (clusters.csv, features.csv, contact sheets)")
    cluster.add_argument("--k", type=int, help="number of clusters (default: chosen by silhouette)")
    _add_config_options(cluster)

    kaggle = commands.add_parser("import-kaggle", help="convert a Kaggle DSB 2018 folder (<id>/images, <id>/masks) into images/, masks/, split.csv")
    kaggle.add_argument("source", help="folder of Kaggle samples: <id>/images/<id>.png and <id>/masks/*.png (one PNG per nucleus)")
    kaggle.add_argument("-o", "--out", required=True, help="data folder to write (images/, masks/, split.csv), ready for train-presegment")
    kaggle.add_argument("--val-fraction", type=float, default=0.1, help="share of the samples marked val in split.csv (default 0.1)")
    kaggle.add_argument("--seed", type=int, default=0, help="seed of the train/val split")

    train = commands.add_parser("train", help="adapt nucflow to your images: style transfer + fine-tuning (with or without masks)")
    train.add_argument("images", help="folder of your images")
    train.add_argument("-o", "--out", required=True, help="run folder; the models go to OUT/models/")
    train.add_argument("--masks", help="folder of label images for the images (matched by stem); without it they are presegmented")
    train.add_argument("--val", metavar="VAL_DIR", help="folder with images/ and masks/ for validation and early stopping")
    train.add_argument("--single-experiment", action="store_true", help="all images have one style: no clustering, more synthetic masks")
    train.add_argument("--stages", help="comma-separated stages to run (default all): presegment,cluster,recolour,masks,pix2pix,synthesize,unet,presegmenter")
    train.add_argument("--minutes", type=float, help="time for the whole run (default 90); fine-tuning stops so that it ends within it")
    train.add_argument("--from-scratch", action="store_true", help="train new networks instead of fine-tuning the shipped ones")
    train.add_argument("--model", help="presegmenter to start from (default: the shipped model)")
    train.add_argument("--ensemble", help="U-Net ensemble to start from (default: the shipped ensemble)")
    _add_config_options(train)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `nucflow` console command; returns the exit status."""
    from workflow.core.runtime import setup_logging

    args = build_parser().parse_args(argv)
    setup_logging(args.verbose - args.quiet)
    try:
        return _dispatch(args)
    except InputError as error:
        log.error("%s", error)
        return 2
    except KeyboardInterrupt:
        log.error("interrupted; finished outputs are kept, a rerun continues where this one stopped")
        return 130


def _apply_model_options(args: argparse.Namespace, cfg: "NucflowConfig") -> None:
    """--models / --model / --ensemble name model folders in the configuration, so config.json records them."""
    if getattr(args, "models", None):
        from workflow.predict import use_models_folder

        use_models_folder(cfg, args.models)
    if getattr(args, "model", None):
        cfg.presegment.model = args.model
    if getattr(args, "ensemble", None):
        cfg.unet.model = args.ensemble


def _apply_input_options(args: argparse.Namespace, cfg: "NucflowConfig") -> None:
    """--percentiles / --no-normalize / --per-channel into `cfg.input`, so config.json records them."""
    from dataclasses import replace

    changes = {"stretch_percentiles": tuple(args.percentiles)} if args.percentiles else {}
    if args.no_normalize:
        changes["normalize"] = False
    if args.per_channel:
        changes["per_channel"] = True
    if args.stretch_8bit:
        changes["stretch_8bit"] = True
    if args.channel is not None:
        changes["channel"] = args.channel
    if args.axes is not None:
        changes["axes"] = args.axes.upper()
    if args.polarity is not None:
        changes["polarity"] = args.polarity
    try:
        cfg.input = replace(cfg.input, **changes)
    except ValueError as error:
        raise InputError(None, f"--percentiles: {error}") from None


def _apply_predict_options(args: argparse.Namespace, cfg: "NucflowConfig") -> None:
    """The predict flags that are settings, written into the configuration saved beside the outputs."""
    if args.method:
        cfg.method = args.method
    if args.diameter is not None:
        cfg.size.diameter = args.diameter
    if args.pixel_size is not None:
        cfg.input.pixel_size = args.pixel_size
    if args.stitch_threshold is not None:
        cfg.stack.stitch_threshold = args.stitch_threshold
    if args.params:
        cfg.full.params = args.params
    cfg.output.keep_intermediate |= args.keep_intermediate
    cfg.output.overlays |= args.overlays
    cfg.output.rois |= args.rois
    cfg.output.kaggle_csv |= args.kaggle_csv
    cfg.output.report &= args.report


def _apply_train_options(args: argparse.Namespace, cfg: "NucflowConfig") -> None:
    """The train flags that shape the run, into `cfg.adapt`, so config.json records them."""
    cfg.adapt.from_scratch |= args.from_scratch
    cfg.adapt.single_experiment |= args.single_experiment
    if args.stages:
        cfg.adapt.stages = tuple(s.strip() for s in args.stages.split(","))
    if args.masks:
        cfg.adapt.masks = args.masks
    if args.val:
        cfg.adapt.val = args.val
    if args.minutes is not None:
        cfg.adapt.minutes = args.minutes


def _check_counts(args: argparse.Namespace) -> None:
    """The command's --jobs, --trials and --minutes, whichever it has, before any work."""
    for flag, least in (("jobs", 1), ("trials", 0)):
        value = getattr(args, flag, None)
        if value is not None and value < least:
            raise InputError(None, f"--{flag} must be at least {least}, not {value}")
    minutes = getattr(args, "minutes", None)
    if minutes is not None and not minutes > 0:
        raise InputError(None, f"--minutes must be a positive number, not {minutes}")


def _dispatch(args: argparse.Namespace) -> int:
    _check_counts(args)
    if args.command == "evaluate":
        from workflow.evaluate import evaluate_folders

        return evaluate_folders(args.pred_dir, args.gt_dir, args.csv)
    if args.command == "import-kaggle":
        from workflow.kaggle import import_kaggle

        return import_kaggle(args.source, args.out, args.val_fraction, args.seed)
    from workflow.config import check_ranges, load_config

    cfg = load_config(args.config, args.overrides)
    _apply_model_options(args, cfg)
    _apply_input_options(args, cfg)
    if args.command == "predict":
        _apply_predict_options(args, cfg)
    if args.command == "train-presegment" and args.start_from:
        cfg.presegment.start_from = args.start_from
    if args.command == "train":
        _apply_train_options(args, cfg)
    check_ranges(cfg)
    if args.command == "cluster":
        from workflow.cluster_folder import cluster_folder

        if args.k is not None:
            cfg.cluster.k = args.k
        return cluster_folder(args.images, args.out, cfg)
    if args.command == "train":
        from workflow.adapt import train_on_images

        return train_on_images(args.images, args.out, cfg)
    if args.command == "predict":
        from workflow.batch import predict_folder

        return predict_folder(args.images, args.out, cfg, args.overwrite, args.jobs, args.dask_scheduler, args.truth)
    if args.command == "param-search":
        from workflow.search import param_search

        return param_search(args.images, args.masks, args.out, cfg, args.trials, args.minutes, args.jobs, args.storage)
    if args.command == "train-unet":
        from workflow.training import train_unet_ensemble

        best = train_unet_ensemble(args.data, args.out, cfg, resume=not args.restart)
        log.info("best validation per member: %s", best)
        return 0
    from workflow.training import train_presegmenter

    best = train_presegmenter(args.data, args.out, cfg, resume=not args.restart)
    log.info("best validation: %s", best)
    return 0


if __name__ == "__main__":
    sys.exit(main())
