"""``pneumoscan train``."""

from __future__ import annotations

import argparse
import json

from pneumoscan.cli.common import add_data_option, quiet_libraries, report_skipped
from pneumoscan.errors import PneumoscanError


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model on data folders", description="Train a model.")
    add_data_option(p, "(default: data.sources of --config)")
    p.add_argument("--out", required=True, help="run directory to create (or to continue with --resume)")
    p.add_argument(
        "--recipe", default=None, help="named recipe: seed (the notebook) or default (bundled model)"
    )
    p.add_argument("--config", default=None, help="JSON config to start from (e.g. a run's config.json)")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. train.lr=1e-3"
    )
    p.add_argument("--epochs", type=int, help="train.max_epochs")
    p.add_argument("--batch-size", type=int, help="train.batch_size")
    p.add_argument("--lr", type=float, help="train.lr")
    p.add_argument("--seed", type=int, help="train.seed")
    p.add_argument("--image-size", type=int, help="preprocess.image_size")
    p.add_argument("--no-augment", action="store_true", help="augment.enabled=false")
    p.add_argument("--no-bf16", action="store_true", help="train.precision=32 (never use bf16 autocast)")
    p.add_argument("--no-channels-last", action="store_true", help="train.channels_last=false")
    p.add_argument("--accelerator", help="cpu, gpu, auto (Lightning)")
    p.add_argument("--devices", help="number of devices or 'auto' (Lightning)")
    p.add_argument("--num-nodes", type=int, help="number of nodes for multi-node DDP")
    p.add_argument("--strategy", help="auto, ddp, ddp_spawn, ... (Lightning)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--init-from", help="start from the weights of this pneumoscan model file (fine-tuning)")
    p.add_argument(
        "--quiet", action="store_true", help="no progress bars or per-epoch lines, only the result"
    )
    p.add_argument("--model-summary", action="store_true", help="print the network's table of layers first")


def _train_config(args: argparse.Namespace):
    from pneumoscan.config import Config, recipe

    if args.config and args.recipe:
        raise PneumoscanError("give --recipe or --config, not both")
    if args.config:
        config = Config.load(args.config)
    elif args.init_from and not args.recipe:
        from pneumoscan.model_file import read_meta
        from pneumoscan.model_source import resolve_model

        config = read_meta(resolve_model(args.init_from, "torch").path).config or recipe("seed")
    else:
        config = recipe(args.recipe or "seed")
    flags = {
        "train.max_epochs": args.epochs,
        "train.batch_size": args.batch_size,
        "train.lr": args.lr,
        "train.seed": args.seed,
        "preprocess.image_size": args.image_size,
        "augment.enabled": False if args.no_augment else None,
        "train.precision": "32" if args.no_bf16 else None,
        "train.channels_last": False if args.no_channels_last else None,
        "train.accelerator": args.accelerator,
        "train.devices": args.devices,
        "train.num_nodes": args.num_nodes,
        "train.strategy": args.strategy,
    }
    overrides = [f"{key}={json.dumps(value)}" for key, value in flags.items() if value is not None]
    return config.with_overrides(overrides + args.set)


def run(args: argparse.Namespace) -> int:
    from pneumoscan.training.fit import train

    if not args.debug:
        quiet_libraries()  # again: importing Lightning resets its loggers to INFO

    config = None if args.resume else _train_config(args)
    result = train(
        args.data,
        args.out,
        config,
        resume=args.resume,
        init_from=args.init_from,
        progress=not args.quiet,
        model_summary=args.model_summary,
    )
    if result.model_path is None:  # a non-zero rank of a distributed run
        return 0
    val = result.metrics["validation"]
    auc = "n/a" if val["roc_auc"] is None else f"{val['roc_auc']:.4f}"
    print(f"model: {result.model_path}")
    print(
        f"validation: accuracy {val['accuracy']:.4f}  ROC-AUC {auc}  "
        f"threshold {val['threshold']:.3f}  "
        f"({result.metrics['train_seconds']:.0f} s, {result.metrics['epochs']} epochs)"
    )
    if "validation_other" in result.metrics:
        from pneumoscan.evaluation.other import format_other

        print(format_other(result.metrics["validation_other"]))
    report_skipped(result.metrics["skipped_files"])
    return 0
