"""The ``jepa`` command line.

  jepa data synth moving-shapes --out DIR --videos N --seed S   write the built-in dataset
  jepa data check DIR_OR_MANIFEST [--num-frames F --frame-step S] [--strict]
  jepa data inspect DIR_OR_MANIFEST                              summary of one device batch
  jepa bench data                                                loader vs decode-only vs naive
  jepa bench train --config configs/pretrain/quickstart.yaml     training clips/s and MFU
  jepa fit --config configs/pretrain/quickstart.yaml [overrides]  LightningCLI (also: validate)
  jepa export CKPT --out FILE [--format transformers]            encoder-only file for load_encoder (or a VJEPA2Model folder)
  jepa probe --encoder FILE --train CSV --val CSV --target COL   frozen linear / attentive probes
  jepa finetune --encoder FILE --train CSV --val CSV --target COL end-to-end fine-tuning (layer-wise LR decay)
  jepa report RUN [RUN ...] --out report.html                    curves, recipe, probes, plans on one page
  jepa inspect --encoder FILE --data CSV --atoms K --out DIR     sparse dictionary of the tokens, named atoms
  jepa embed --encoder FILE --data CSV --out FEATS.npy            features for your own code (+ FEATS.csv)
  jepa convert vjepa2 HF_FOLDER_OR_PT --out enc.safetensors       V-JEPA 2 weights (transformers or reference) in
  jepa data collect two-rooms --protocol eb-jepa --out DIR      trajectories (video + actions + states)
  jepa plan --world-model CKPT --protocol eb-jepa --seed 2       MPC toward goal images under a named protocol
  jepa bench plan                                                replan time at reference and recipe settings
  jepa bench soak                                                thousands of files, 5% broken, epochs with workers
  jepa bench probe                                               probe heads one by one vs batched, same features
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn


def _add_clip_args(p: argparse.ArgumentParser, num_frames: int = 16, frame_step: int = 2) -> None:
    p.add_argument("--num-frames", type=positive, default=num_frames, help="frames per clip")
    p.add_argument("--frame-step", type=positive, default=frame_step, help="source frames between clip frames")
    p.add_argument("--fps", type=float, default=None, help="sample at this frame rate instead of --frame-step")
    p.add_argument("--short-side", type=positive, default=None, help="resize at decode time to this shorter side")
    p.add_argument("--backend", default="pyav", choices=["pyav", "torchcodec"])


def _add_run_args(p: argparse.ArgumentParser) -> None:
    """Decoding workers, device and progress bar: the same for every command that reads clips."""
    p.add_argument("--num-workers", type=nonnegative, default=2, help="decoding processes")
    p.add_argument("--device", default="cuda" if _cuda() else "cpu")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def positive(text: str) -> int:
    """An integer >= 1 (argparse type)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def nonnegative(text: str) -> int:
    """An integer >= 0 (argparse type)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def fraction(text: str) -> float:
    """A number in [0, 1) (argparse type)."""
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


class OneLineParser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block): ``jepa CMD: error: ... (jepa CMD --help)``,
    defaults shown in ``--help``, and every ``--dashed-flag`` also accepted as ``--dashed_flag``
    (LightningCLI's spelling, so ``jepa fit`` and the other commands take the same style)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def add_argument(self, *names: Any, **kwargs: Any) -> argparse.Action:  # type: ignore[override]
        aliases = [n.replace("-", "_").replace("__", "--", 1) for n in names
                   if isinstance(n, str) and n.startswith("--") and "-" in n[2:]]
        return super().add_argument(*names, *[a for a in aliases if a not in names], **kwargs)

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        import re

        message = re.sub(r"(--[\w-]+)/--\w+", r"\1", message)  # name a flag once, not with its --under_score alias
        print(f"{self.prog}: error: {message} (`{self.prog} --help` lists the options)", file=sys.stderr, flush=True)
        sys.exit(2)


def check_out_dir(flag: str, out: str | None) -> None:
    """Make the output folder now, before any work, so an unwritable path fails first, in one line."""
    if out:
        from jepa.training.preflight import check_writable

        check_writable(flag, out)


def _cmd_synth(args: argparse.Namespace) -> int:
    import time

    start = time.perf_counter()
    if args.kind == "physics-shapes":
        from data_pipelines.physics_shapes import FACTORS, PhysicsShapesConfig, make_physics_shapes

        pcfg = PhysicsShapesConfig(size=args.size, frames=args.frames, fps=args.video_fps, gop=args.gop,
                                   factors=tuple(f for f in FACTORS if f not in (args.without or ())))
        val = 0.1 if args.val_fraction is None else args.val_fraction
        test = 0.1 if args.test_fraction is None else args.test_fraction
        manifest = make_physics_shapes(args.out, args.videos, args.seed, pcfg, val, test, args.workers, args.overwrite)
        print(f"wrote {args.videos} videos and {manifest} in {time.perf_counter() - start:.1f} s")
        return 0
    from data_pipelines.synth import MovingShapesConfig, make_moving_shapes

    if args.without or args.test_fraction:
        flag = "--without" if args.without else "--test-fraction"
        raise ValueError(f"{flag} is for physics-shapes; moving-shapes has no factors to switch off and writes "
                         "train/val only (generate a test set with another --seed)")
    cfg = MovingShapesConfig(
        size=args.size, frames=args.frames, fps=args.video_fps, distractors=args.distractors, gop=args.gop
    )
    val = 0.2 if args.val_fraction is None else args.val_fraction
    manifest = make_moving_shapes(args.out, args.videos, args.seed, cfg, val, args.workers, args.overwrite)
    print(f"wrote {args.videos} videos and {manifest} in {time.perf_counter() - start:.1f} s")
    return 0


def _cmd_collect(args: argparse.Namespace) -> int:
    import time

    from jepa.envs.collect import collect
    from jepa.envs.policies import Policy, PushPolicy, RandomWalkPolicy

    env_kwargs: dict = {}
    if args.protocol:
        from jepa.planning.protocols import get_protocol

        proto = get_protocol(args.protocol)
        if proto.env != args.env:
            raise ValueError(f"--protocol {args.protocol} is for the {proto.env!r} environment, not {args.env!r}")
        env_kwargs.update(proto.env_kwargs)
    if args.random_wall:
        env_kwargs["random_wall"] = True
    if args.random_door:
        env_kwargs["random_door"] = True
    policy: Policy
    if args.policy == "push":
        if args.env != "pusht":
            raise ValueError(f"--policy push needs an environment with an object to push (pusht), not {args.env!r}")
        policy = PushPolicy(random_fraction=args.random_fraction, noise=0.2 if args.noise is None else args.noise)
    else:
        policy = RandomWalkPolicy(args.momentum, 0.4 if args.noise is None else args.noise)
    start = time.perf_counter()
    manifest = collect(
        args.env, args.out, args.episodes, args.steps, args.seed, policy,
        env_kwargs, args.val_fraction, args.workers, overwrite=args.overwrite,
    )
    print(f"wrote {args.episodes} episodes of {args.steps} steps and {manifest} in {time.perf_counter() - start:.1f} s")
    return 0


def _cmd_plan(args: argparse.Namespace) -> int:
    from jepa.planning.evaluate import (
        PlanConfig,
        evaluate,
        format_table,
        resolve_protocol,
        write_outputs,
    )
    from jepa.planning.protocols import get_protocol

    check_out_dir("--out", args.out)
    env = args.env or (get_protocol(args.protocol).env if args.protocol else "two-rooms")
    protocol = resolve_protocol(env, args.protocol)

    cfg = PlanConfig(
        planner=args.planner, horizon=args.horizon, samples=args.samples, iterations=args.iterations,
        oracle_samples=args.oracle_samples, oracle_iterations=args.oracle_iterations,
        execute=args.execute, frameskip=args.frameskip or 1, max_steps=args.max_steps, distance=args.distance,
        reduce=args.reduce, replan_every=args.replan_every,
    )
    wm = None
    if "world_model" in args.agents:
        if args.world_model is None:
            raise ValueError("--world-model RUN_OR_CKPT is required for the world_model agent "
                             "(or pass --agents perfect_model random)")
        import torch

        from jepa.hub import latest_checkpoint
        from jepa.methods.world_model import load_world_model

        if args.threads:
            torch.set_num_threads(args.threads)
        wm = load_world_model(str(latest_checkpoint(args.world_model)), map_location=args.device)
        trained_skip = wm.frameskip
        if args.frameskip is None:
            cfg.frameskip = trained_skip
        elif args.frameskip != trained_skip:
            print(f"note: the world model was trained with frameskip {trained_skip}; planning with {args.frameskip}")
    elif args.frameskip is None:
        cfg.frameskip = 1
    if protocol.needs_trajectories and args.trajectories and args.world_model:
        from jepa.hub import latest_checkpoint
        from jepa.planning.evaluate import check_held_out
        from jepa.training.checkpointing import read_checkpoint

        hp = read_checkpoint(latest_checkpoint(args.world_model)).get("datamodule_hyper_parameters") or {}
        check_held_out(args.trajectories, hp.get("train"))
    report, results = evaluate(wm, env, args.episodes, args.seed, cfg, args.agents, args.gif_episodes,
                               progress=not args.quiet, protocol=protocol, trajectories=args.trajectories)
    print(format_table(report))
    if args.out:
        paths = write_outputs(args.out, report, results, env)
        print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def _cmd_bench_plan(args: argparse.Namespace) -> int:
    from jepa.benchmarks.plan import main as bench_main

    return bench_main(args)


def _cmd_check(args: argparse.Namespace) -> int:
    from data_pipelines.check import check_source
    from data_pipelines.sampling import ClipSampler

    sampler = ClipSampler(args.num_frames, args.frame_step, args.fps, mode="uniform")
    report = check_source(args.source, sampler, args.backend, args.short_side, args.workers)
    print(report.format())
    if args.strict and report.bad:
        print(f"strict: {len(report.bad)} bad files (first: {report.bad[0].path})", file=sys.stderr)
        return 1
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from data_pipelines.datamodule import VideoDataModule
    from data_pipelines.preview import inspect_batch

    dm = VideoDataModule(
        train=args.source, num_frames=args.num_frames, frame_step=args.frame_step, fps=args.fps,
        short_side=args.short_side, backend=args.backend, crop_size=args.crop_size,
        batch_size=args.batch_size, num_workers=args.num_workers, persistent_workers=False,
    )
    print(inspect_batch(dm, args.device))
    return 0


def _cmd_bench_data(args: argparse.Namespace) -> int:
    from jepa.benchmarks.data import run_benchmark

    run_benchmark(
        data_dir=args.data, videos=args.videos, workers=args.workers, batch_size=args.batch_size,
        num_frames=args.num_frames, frame_step=args.frame_step, video_frames=args.video_frames,
        size=args.size, gop=args.gop, epochs=args.epochs, rounds=args.rounds,
    )
    return 0


def _cmd_bench_probe(args: argparse.Namespace) -> int:
    from jepa.benchmarks.probe import run_probe_benchmark

    run_probe_benchmark(heads=args.head, seeds=args.seeds, videos=args.videos, val_videos=max(1, args.videos // 4),
                        views=args.views)
    return 0


def _cmd_bench_soak(args: argparse.Namespace) -> int:
    from jepa.benchmarks.soak import run_soak

    check_out_dir("--data", args.data)
    result = run_soak(
        data_dir=args.data, files=args.files, bad_fraction=args.bad_fraction, epochs=args.epochs,
        workers=args.workers, batch_size=args.batch_size, frames=args.num_frames, size=args.size,
    )
    return 0 if result["passed"] else 1


def _cmd_export(args: argparse.Namespace) -> int:
    from jepa.hub import export_encoder, latest_checkpoint, load_encoder

    ckpt = latest_checkpoint(args.checkpoint)
    out_path = Path(args.out).resolve()
    if out_path == Path(ckpt).resolve() or out_path in Path(ckpt).resolve().parents:  # not even with --overwrite
        raise ValueError(f"--out {args.out} is (or holds) the checkpoint being exported; choose another --out")
    if args.format == "transformers":
        return _export_transformers(args, ckpt)
    if Path(args.out).exists() and not args.overwrite:
        raise FileExistsError(f"{args.out} already exists; pass --overwrite to replace it, or choose another --out")
    out = export_encoder(ckpt, args.out, args.which)
    enc = load_encoder(out)
    n = sum(p.numel() for p in enc.parameters())
    print(f"wrote {out} from {ckpt}: {args.which} encoder, {n / 1e6:.2f}M parameters, embed_dim {enc.embed_dim}, "
          f"input_size {tuple(enc.input_size)}")
    return 0


def _export_transformers(args: argparse.Namespace, ckpt: Path) -> int:
    """``jepa export --format transformers``: a folder ``AutoModel.from_pretrained`` loads."""
    from jepa.convert.to_hf import export_hf

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file; --format transformers writes a folder (config.json, "
                              "model.safetensors): choose a folder name")
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        raise FileExistsError(f"{out} is a folder that is not empty; pass --overwrite to write into it, or choose another --out")
    for line in export_hf(ckpt, out, args.which, trust=args.trust_checkpoint):
        print(line)
    print(f"load it with: transformers.AutoModel.from_pretrained({str(out)!r})")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from jepa.convert.vjepa2 import load_vjepa2
    from jepa.hub import save_encoder

    if Path(args.out).exists() and not args.overwrite:
        raise FileExistsError(f"{args.out} already exists; pass --overwrite to replace it, or choose another --out")
    if not Path(args.source).exists():
        raise FileNotFoundError(f"{args.source}: no such folder or file; pass a transformers VJEPA2Model folder "
                                "or a V-JEPA 2 checkpoint file (e.g. vitl.pt)")
    enc = load_vjepa2(args.source, which=args.which, num_heads=args.num_heads, crop_size=args.crop_size,
                      num_frames=args.frames, trust=args.trust_checkpoint)
    out = save_encoder(enc, args.out)
    n = sum(p.numel() for p in enc.parameters())
    print(f"wrote {out}: V-JEPA 2 encoder, {n / 1e6:.2f}M parameters, embed_dim {enc.embed_dim}, depth "
          f"{len(enc.blocks.blocks)}, input_size {tuple(enc.input_size)}; load it with jepa.load_encoder")
    return 0


def _cmd_embed(args: argparse.Namespace) -> int:
    from jepa.probe.embed import embed

    res = embed(args.encoder, args.data, args.out, tokens=args.tokens, views=args.views, crops=args.crops,
                layer=args.layer, cache_dir=args.cache_dir, batch_size=args.batch_size, num_workers=args.num_workers,
                device=args.device, overwrite=args.overwrite, progress=not args.no_progress)
    print(f"wrote {res['array']} {list(res['shape'])} and {res['index']}"
          + (f" ({res['skipped']} undecodable videos left out)" if res["skipped"] else ""))
    return 0


def _cmd_probe(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from jepa.probe.run import DEFAULT_HEADS, run_probe

    configs = dict(DEFAULT_HEADS)
    configs["linear"] = replace(configs["linear"], optimizer=args.optimizer)
    if args.linear_epochs:
        configs["linear"] = replace(configs["linear"], epochs=args.linear_epochs)
    if args.attentive_epochs:
        configs["attentive"] = replace(configs["attentive"], epochs=args.attentive_epochs)
    if args.optimizer == "sgd":  # SGD wants larger steps than AdamW
        configs["linear"] = replace(configs["linear"], lrs=(0.01, 0.1))
    check_out_dir("--out", args.out)
    report = run_probe(
        args.encoder, args.train, args.val, args.target, heads=args.head, seeds=args.seeds, out=args.out,
        cache_dir=args.cache_dir, views=args.views, crops=args.crops, frame_step=args.frame_step,
        crop_fraction=args.crop_fraction, layer=args.layer, baselines=args.baselines, task=args.task,
        batch_size=args.batch_size, num_workers=args.num_workers, device=args.device, head_configs=configs,
        progress=not args.no_progress, test=args.test,
    )
    if args.test:
        print(f"val ({args.val}):\n{report['table']}\ntest ({args.test}):\n{report['test_table']}")
    else:
        print(report["table"])
    secs = report["seconds"]
    print(f"features {secs['features']:.0f} s (cache: {report['cache']}), heads {secs['heads']:.0f} s")
    if args.out:
        print(f"wrote {args.out}/probe.json, probe.md, probe.png")
    return 0


def _cmd_finetune(args: argparse.Namespace) -> int:
    from jepa.probe.finetune import FinetuneConfig, run_finetune

    cfg = FinetuneConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, layer_decay=args.layer_decay,
                         weight_decay=args.weight_decay, drop_path=args.drop_path, hflip_prob=args.hflip,
                         views=args.views)
    if args.out and (Path(args.out) / "finetune.json").exists() and not args.overwrite:
        raise FileExistsError(f"{args.out} already holds a fine-tuning run; pass --overwrite to replace it, "
                              "or choose another --out")
    check_out_dir("--out", args.out)
    report = run_finetune(args.encoder, args.train, args.val, args.target, test=args.test, cfg=cfg, seeds=args.seeds,
                          out=args.out, num_workers=args.num_workers, device=args.device,
                          progress=not args.no_progress, random_init=args.random_init)
    print(report["table"])
    secs = sum(r["train_seconds"] for r in report["runs"])
    print(f"training {secs:.0f} s over {args.seeds} seed(s)")
    if args.out:
        print(f"wrote {args.out}/finetune.json, finetune.md, encoder.safetensors (seed 0), head.pt")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from jepa.training.report import build_report

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it, or choose another --out")
    path = build_report(args.runs, out)
    print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB, self-contained: open it in any browser)")
    if args.wandb:
        from jepa.training.report import find_run
        from jepa.training.report_wandb import log_report_media

        for run, run_id in log_report_media([find_run(r) for r in args.runs], path):
            if run_id is None:
                print(f"{run.folder}: no wandb run in {run.folder / 'wandb'}; nothing logged there")
            else:
                print(f"{run.folder}: page and pictures logged to wandb run {run_id} ('wandb sync {run.folder / 'wandb'}' uploads them)")
    return 0


def _cmd_inspect_atoms(args: argparse.Namespace) -> int:
    from jepa.inspect.run import readout_rows, run_inspect, summary_rows

    wm = args.world_model is not None
    atoms = args.atoms or (64 if wm else 256)
    active = args.active or (4 if wm else 8)
    if atoms < active:
        raise ValueError(f"--active {active} is more than --atoms {atoms}; pass --active <= --atoms")
    if not wm and (args.env or args.protocol):
        raise ValueError("--env and --protocol go with --world-model; an --encoder is inspected on a video manifest")
    if wm and (args.layer != -1 or args.cache_dir):
        raise ValueError("--layer and --cache-dir go with --encoder; a world model's latents are its encoder's output")
    if args.out and (Path(args.out) / "inspect.json").exists() and not args.overwrite:
        raise FileExistsError(f"{args.out} already holds an inspection; pass --overwrite to replace it, "
                              "or choose another --out")
    check_out_dir("--out", args.out)
    if wm:
        from jepa.inspect.world_model import run_inspect_world_model
        from jepa.planning.protocols import DEFAULTS, get_protocol

        env = args.env or (get_protocol(args.protocol).env if args.protocol else "two-rooms")
        name = args.protocol or DEFAULTS.get(env)
        proto = get_protocol(name) if name else None
        if proto is not None and proto.env != env:
            raise ValueError(f"--protocol {name} is for the {proto.env!r} environment, not {env!r}")
        result = run_inspect_world_model(
            args.world_model, args.data, env=env, atoms=atoms, active=active, out=args.out, heldout=args.heldout,
            steps=args.steps, seed=args.seed, baselines=tuple(args.baselines), show=args.show,
            frame_stride=args.frame_stride, max_episodes=args.max_episodes, trust=args.trust_checkpoint,
            env_kwargs=dict(proto.env_kwargs) if proto else None)
    else:
        result = run_inspect(args.encoder, args.data, atoms=atoms, active=active, out=args.out,
                             heldout=args.heldout, steps=args.steps, seed=args.seed, baselines=tuple(args.baselines),
                             show=args.show, layer=args.layer, cache_dir=args.cache_dir, batch_size=args.batch_size,
                             num_workers=args.num_workers, device=args.device, progress=not args.no_progress)
    print("| features | R^2 (held-out) | PCA R^2, same k | nameable (AUC >= 0.9) | nameable per label | dead | always on |")
    print("|---|---|---|---|---|---|---|")
    for row in summary_rows(result):
        print("| " + " | ".join(row) + " |")
    if readout_rows(result):
        keys = [k for k in ("pretrained", "random_init") if k in result["state_readout"]]
        print("\nlinear state read-out, R^2 on held-out episodes:")
        print("| state | " + " | ".join(keys) + " |")
        print("|---|" + "---|" * len(keys))
        for row in readout_rows(result):
            print("| " + " | ".join(row) + " |")
    if args.out:
        print(f"wrote {args.out}/inspect.html, inspect.json, atoms/*.png, dictionary.pt")
    return 0


def _cmd_bench_train(args: argparse.Namespace) -> int:
    from jepa.benchmarks.train import run_train_benchmark

    run_train_benchmark(
        config=args.config, steps=args.steps, warmup=args.warmup, batch_size=args.batch_size,
        device=args.device, precision=args.precision, overrides=args.override,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    from jepa import __version__

    parser = OneLineParser(prog="jepa", description="JEPA video world models")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"jepa {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # fit / validate are LightningCLI (main() hands them over before this parser runs); listed for --help.
    sub.add_parser("fit", add_help=False, help="train from a recipe: jepa fit --config configs/pretrain/quickstart.yaml "
                   "[--section.key value ...] (jepa fit --help lists every option)")
    sub.add_parser("validate", add_help=False, help="validate a checkpoint: jepa validate --config RECIPE --ckpt_path CKPT")

    data = sub.add_parser("data", help="make, check and inspect datasets").add_subparsers(
        dest="data_command", required=True
    )
    synth = data.add_parser("synth", help="write a built-in synthetic dataset as video files")
    synth.add_argument("kind", choices=["moving-shapes", "physics-shapes"],
                       help="moving-shapes: one shape at constant velocity (the quickstart's data); physics-shapes: "
                            "1-3 shapes with gravity, collisions, rotation, scaling, occlusion and a moving camera")
    synth.add_argument("--out", required=True, help="output folder")
    synth.add_argument("--overwrite", action="store_true", help="replace a dataset already in --out (default: refuse)")
    synth.add_argument("--videos", type=positive, default=2000)
    synth.add_argument("--seed", type=nonnegative, default=0)
    synth.add_argument("--size", type=positive, default=64, help="frame height and width")
    synth.add_argument("--frames", type=positive, default=32, help="frames per video")
    synth.add_argument("--video-fps", type=positive, default=25)
    synth.add_argument("--gop", type=positive, default=16, help="keyframe interval")
    synth.add_argument("--distractors", type=nonnegative, default=1, help="moving-shapes: bouncing distractor discs")
    synth.add_argument("--without", nargs="+", default=None,
                       choices=["gravity", "collisions", "rotation", "scaling", "pan", "zoom"],
                       help="physics-shapes: factors held at 'none' (e.g. pretrain without rotation, probe spin on videos with it)")
    synth.add_argument("--val-fraction", type=fraction, default=None, help="default 0.2 (moving-shapes), 0.1 (physics-shapes)")
    synth.add_argument("--test-fraction", type=fraction, default=None, help="physics-shapes: share in test.csv (default 0.1)")
    synth.add_argument("--workers", type=nonnegative, default=None)
    synth.set_defaults(func=_cmd_synth)

    from jepa.envs.registry import env_names  # the registered environments (imports none of them)

    col = data.add_parser("collect", help="roll out a collection policy in an environment and write trajectories")
    col.add_argument("env", choices=env_names())
    col.add_argument("--out", required=True, help="output folder")
    col.add_argument("--overwrite", action="store_true", help="replace a dataset already in --out (default: refuse)")
    col.add_argument("--episodes", type=positive, default=1000)
    col.add_argument("--steps", type=positive, default=100, help="actions per episode (frames: steps + 1)")
    col.add_argument("--seed", type=nonnegative, default=0)
    col.add_argument("--policy", default="random-walk", choices=["random-walk", "push"],
                     help="random-walk (momentum, bouncing off walls) or push (Push-T: approach the block and push "
                          "it, mixed with random-walk stretches; the block moves in most episodes)")
    col.add_argument("--random-fraction", type=float, default=0.3, help="push policy: share of random-walk segments")
    col.add_argument("--momentum", type=float, default=0.9, help="random-walk momentum of the actions")
    col.add_argument("--noise", type=float, default=None,
                     help="action noise as a fraction of the largest action (default: 0.4 random walk, 0.2 push)")
    from jepa.planning.protocols import PROTOCOLS

    col.add_argument("--protocol", default=None, choices=sorted(PROTOCOLS),
                     help="collect from this evaluation protocol's layout distribution (eb-jepa: random wall and door)")
    col.add_argument("--random-wall", action="store_true", help="Two Rooms: redraw the wall position per episode")
    col.add_argument("--random-door", action="store_true", help="Two Rooms: redraw the door position per episode")
    col.add_argument("--val-fraction", type=float, default=0.1)
    col.add_argument("--workers", type=nonnegative, default=None)
    col.set_defaults(func=_cmd_collect)

    check = data.add_parser("check", help="decode a clip from every file and report problems")
    check.add_argument("source", help="manifest CSV or folder of videos")
    _add_clip_args(check)
    check.add_argument("--strict", action="store_true", help="exit non-zero if any file is bad")
    check.add_argument("--workers", type=nonnegative, default=None)
    check.set_defaults(func=_cmd_check)

    insp = data.add_parser("inspect", help="print a summary of one training batch")
    insp.add_argument("source", help="manifest CSV or folder of videos")
    _add_clip_args(insp)
    insp.add_argument("--crop-size", type=positive, default=64)
    insp.add_argument("--batch-size", type=positive, default=8)
    insp.add_argument("--num-workers", type=nonnegative, default=2)
    insp.add_argument("--device", default="cuda" if _cuda() else "cpu")
    insp.set_defaults(func=_cmd_inspect)

    bench = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="bench_command", required=True)
    bd = bench.add_parser("data", help="loader vs decode-only limit vs naive full decode")
    bd.add_argument("--data", default=None, help="folder for the benchmark videos (reused as is if it has a manifest.csv; default: a temporary folder)")
    bd.add_argument("--videos", type=positive, default=96)
    bd.add_argument("--video-frames", type=positive, default=250, help="frames per benchmark video (10 s at 25 fps)")
    bd.add_argument("--size", type=positive, default=128, help="benchmark video frame size")
    bd.add_argument("--gop", type=positive, default=50, help="keyframe interval of the benchmark videos (2 s)")
    bd.add_argument("--workers", type=nonnegative, default=2)
    bd.add_argument("--batch-size", type=positive, default=8)
    bd.add_argument("--num-frames", type=positive, default=16)
    bd.add_argument("--frame-step", type=positive, default=2)
    bd.add_argument("--epochs", type=positive, default=4, help="loader epochs timed (after a warm-up)")
    bd.add_argument("--rounds", type=positive, default=2, help="interleaved rounds; the best of each side counts")
    bd.set_defaults(func=_cmd_bench_data)
    bt = bench.add_parser("train", help="training-step clips/s and model FLOP utilisation")
    bt.add_argument("--config", default="configs/pretrain/quickstart.yaml", help="pretraining recipe")
    bt.add_argument("--steps", type=positive, default=10, help="timed optimizer steps")
    bt.add_argument("--warmup", type=nonnegative, default=3, help="untimed steps first")
    bt.add_argument("--batch-size", type=positive, default=None, help="clips per step (default: the recipe's)")
    bt.add_argument("--device", default="cuda" if _cuda() else "cpu")
    bt.add_argument("--precision", default=None, choices=["32", "bf16"], help="default: bf16 on GPU, fp32 on CPU")
    bt.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                    help="model init arg override, e.g. encoder=vit_large (repeatable)")
    bt.set_defaults(func=_cmd_bench_train)

    bp = bench.add_parser("plan", help="seconds per replan: reference (EB-JEPA) settings and the recipe's")
    bp.add_argument("--world-model", default=None, help="trained world model (default: a fresh one of the recipe's size)")
    bp.add_argument("--replans", type=positive, default=5, help="timed replans per setting")
    bp.add_argument("--device", default="cpu")
    bp.set_defaults(func=_cmd_bench_plan)

    bpr = bench.add_parser("probe", help="probe heads trained one after another vs as one batched run")
    bpr.add_argument("--head", nargs="+", default=["linear", "attentive"], choices=["linear", "attentive"])
    bpr.add_argument("--seeds", type=positive, default=3)
    bpr.add_argument("--videos", type=positive, default=1600, help="training videos (validation: a quarter as many)")
    bpr.add_argument("--views", type=positive, default=2)
    bpr.set_defaults(func=_cmd_bench_probe)
    bs = bench.add_parser("soak", help="thousands of files, some broken, through training epochs with workers")
    bs.add_argument("--data", default=None, help="empty folder for the soak data (default: a temporary folder, removed after)")
    bs.add_argument("--files", type=positive, default=3000)
    bs.add_argument("--bad-fraction", type=fraction, default=0.05, help="share of broken files, every kind alike")
    bs.add_argument("--epochs", type=positive, default=3, help="memory must stay flat from the second to the last")
    bs.add_argument("--workers", type=positive, default=2)
    bs.add_argument("--batch-size", type=positive, default=8)
    bs.add_argument("--num-frames", type=positive, default=16, help="frames per video and per clip (clips read every frame)")
    bs.add_argument("--size", type=positive, default=64)
    bs.set_defaults(func=_cmd_bench_soak)

    pl = sub.add_parser("plan", help="plan toward goal images with a world model (MPC), beside random and perfect-model baselines")
    pl.add_argument("--world-model", default=None, help="jepa fit checkpoint of an ActionConditionedWorldModel, or its run folder")
    pl.add_argument("--protocol", default=None, choices=sorted(PROTOCOLS),
                    help="evaluation protocol: layouts, goals, budget, success rule, episodes "
                         "(default: the environment's headline protocol, eb-jepa for two-rooms)")
    pl.add_argument("--env", default=None, choices=env_names(), help="default: the protocol's, else two-rooms")
    pl.add_argument("--trajectories", default=None,
                    help="held-out trajectory manifest for protocols that take starts and goals from recordings (swm)")
    pl.add_argument("--episodes", type=positive, default=None, help="default: the protocol's (50)")
    pl.add_argument("--seed", type=nonnegative, default=0, help="evaluation seed: start and goal states come from it")
    pl.add_argument("--planner", default="mppi", choices=["mppi", "cem"])
    pl.add_argument("--horizon", type=positive, default=12, help="planner steps (each held --frameskip env steps)")
    pl.add_argument("--samples", type=positive, default=256)
    pl.add_argument("--iterations", type=positive, default=6)
    pl.add_argument("--oracle-samples", type=positive, default=None,
                    help="perfect-model planner samples (default: --samples); each is a real simulation in Push-T")
    pl.add_argument("--oracle-iterations", type=positive, default=None, help="perfect-model planner iterations (default: --iterations)")
    pl.add_argument("--execute", type=positive, default=1, help="planner steps executed per replan")
    pl.add_argument("--replan-every", type=positive, default=None,
                    help="environment steps executed per replan (default: execute x frameskip)")
    pl.add_argument("--frameskip", type=positive, default=None, help="env steps per planner step (default: the world model's)")
    pl.add_argument("--max-steps", type=positive, default=None, help="step budget (default: the protocol's, 200)")
    pl.add_argument("--distance", default="l2", choices=["l2", "l1"])
    pl.add_argument("--reduce", default="sum", choices=["final", "sum"], help="energy over the horizon: summed (default) or final step")
    pl.add_argument("--agents", nargs="+", default=["world_model", "perfect_model", "random"],
                    choices=["world_model", "perfect_model", "random"])
    pl.add_argument("--gif-episodes", type=nonnegative, default=4)
    pl.add_argument("--out", default=None, help="folder for plan.json, plan.md, plan.gif, trajectories.png")
    pl.add_argument("--trust-checkpoint", action="store_true",
                    help="the checkpoint / encoder files are trusted: allow loading Python objects from them (runs code from the file)")
    pl.add_argument("--device", default="cpu")
    pl.add_argument("--threads", type=positive, default=None, help="torch CPU threads")
    pl.add_argument("--quiet", action="store_true")
    pl.set_defaults(func=_cmd_plan)

    ex = sub.add_parser("export", help="write an encoder-only file from a jepa fit checkpoint")
    ex.add_argument("checkpoint", help="Lightning checkpoint (.ckpt) from jepa fit, or a run folder (its newest last*.ckpt)")
    ex.add_argument("--out", required=True, help="output file (encoder.pt, encoder.safetensors) or, with "
                    "--format transformers, a folder")
    ex.add_argument("--format", default="jepa", choices=["jepa", "transformers"],
                    help="jepa: an encoder file for jepa.load_encoder (default); transformers: a VJEPA2Model folder "
                    "(config.json, model.safetensors, video processor) for AutoModel.from_pretrained, with the "
                    "predictor where it fits; needs V-JEPA 2's RoPE (pos_encoding rope, rope_layout vjepa2)")
    ex.add_argument("--overwrite", action="store_true", help="replace an existing --out file (default: refuse)")
    ex.add_argument("--trust-checkpoint", action="store_true",
                    help="the checkpoint / encoder files are trusted: allow loading Python objects from them (runs code from the file)")
    ex.add_argument("--which", default="target", choices=["target", "context"],
                    help="EMA target encoder (default) or the online context encoder")
    ex.set_defaults(func=_cmd_export)

    cv = sub.add_parser("convert", help="another project's weights into an encoder file jepa reads")
    cv.add_argument("kind", choices=["vjepa2"], help="vjepa2: a transformers VJEPA2Model folder (config.json + "
                    "model.safetensors) or a reference V-JEPA 2 checkpoint file (vitl.pt, vith.pt, vitg.pt, vitg-384.pt)")
    cv.add_argument("source", help="the folder or checkpoint file to convert")
    cv.add_argument("--which", default="target_encoder", choices=["target_encoder", "encoder"],
                    help="reference files: the EMA target encoder (what V-JEPA 2 releases for use) or the online one")
    cv.add_argument("--num-heads", type=positive, default=None,
                    help="reference files of a size other than L/H/g: its attention heads (default: from the size)")
    cv.add_argument("--crop-size", type=positive, default=256,
                    help="reference files: the crop it was trained at (vitg-384.pt: 384)")
    cv.add_argument("--frames", type=positive, default=64, help="reference files: frames per clip it was trained at")
    cv.add_argument("--trust-checkpoint", action="store_true",
                    help="load a reference file even if it needs Python objects beyond tensors (runs code from it)")
    cv.add_argument("--out", required=True, help="encoder file to write (.safetensors, or .pt)")
    cv.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    cv.set_defaults(func=_cmd_convert)

    em = sub.add_parser("embed", help="write a frozen encoder's features of every video (a .npy array + an index CSV)")
    em.add_argument("--encoder", required=True, help="exported encoder file, jepa fit checkpoint or run folder")
    em.add_argument("--data", required=True, help="manifest CSV or folder of videos")
    em.add_argument("--out", required=True, help="FILE.npy; the index goes to FILE.csv")
    em.add_argument("--overwrite", action="store_true", help="replace existing output files")
    em.add_argument("--tokens", action="store_true", help="per-token features [videos, views, N, D] (float16) instead of one vector per video")
    em.add_argument("--views", type=positive, default=2, help="evenly spaced clips per video")
    em.add_argument("--crops", type=positive, default=1, help="spatial crops per clip (3: start, centre, end)")
    em.add_argument("--layer", type=int, default=-1, help="block whose tokens to write (-1: the final normalised output)")
    em.add_argument("--cache-dir", default=None, help="reuse / fill the probe feature cache here (default: no cache)")
    em.add_argument("--batch-size", type=positive, default=16)
    em.add_argument("--num-workers", type=nonnegative, default=2)
    em.add_argument("--device", default="cuda" if _cuda() else "cpu")
    em.add_argument("--no-progress", action="store_true")
    em.set_defaults(func=_cmd_embed)

    pr = sub.add_parser("probe", help="frozen-encoder linear / attentive probes with random-init and pixel baselines")
    pr.add_argument("--encoder", required=True, help="exported encoder file, jepa fit checkpoint, or run folder")
    pr.add_argument("--train", required=True, help="training manifest CSV (label columns)")
    pr.add_argument("--val", required=True, help="validation manifest CSV (scored; heads are chosen on held-out training videos)")
    pr.add_argument("--test", default=None, help="test manifest CSV, scored by the same heads as a second table (report it)")
    pr.add_argument("--target", required=True, nargs="+", help="label column(s) to probe")
    pr.add_argument("--head", nargs="+", default=["linear"], choices=["linear", "attentive"])
    pr.add_argument("--seeds", type=positive, default=3, help="head trainings per model (mean and std reported)")
    pr.add_argument("--out", default=None, help="folder for probe.json, probe.md and probe.png")
    pr.add_argument("--trust-checkpoint", action="store_true",
                    help="the checkpoint / encoder files are trusted: allow loading Python objects from them (runs code from the file)")
    pr.add_argument("--cache-dir", default=None, help="feature cache (default: $JEPA_CACHE_DIR or ~/.cache/jepa/features)")
    pr.add_argument("--views", type=positive, default=2, help="evenly spaced clips per video, predictions averaged")
    pr.add_argument("--crops", type=positive, default=1, help="spatial crops per clip (3: start, centre, end)")
    pr.add_argument("--crop-fraction", type=float, default=1.0, help="crop side / shorter frame side")
    pr.add_argument("--frame-step", type=positive, default=None, help="default: the encoder's training frame step")
    pr.add_argument("--layer", type=int, default=-1, help="encoder block to read (-1: final output)")
    pr.add_argument("--baselines", nargs="*", default=["random_init", "pixels"], choices=["random_init", "pixels"])
    pr.add_argument("--task", default="auto", choices=["auto", "classification", "regression"],
                    help="auto: integer columns are classes, float columns regression")
    pr.add_argument("--optimizer", default="adamw", choices=["adamw", "sgd"], help="linear head optimizer")
    pr.add_argument("--linear-epochs", type=positive, default=None)
    pr.add_argument("--attentive-epochs", type=positive, default=None)
    pr.add_argument("--batch-size", type=positive, default=16, help="videos per feature-extraction batch")
    _add_run_args(pr)
    pr.set_defaults(func=_cmd_probe)

    ft = sub.add_parser("finetune", help="train the encoder and an attentive head end to end, layer-wise LR decay")
    ft.add_argument("--encoder", required=True, help="exported encoder file, jepa fit checkpoint, or run folder")
    ft.add_argument("--train", required=True, help="manifest CSV to fine-tune on")
    ft.add_argument("--val", required=True, help="manifest CSV to choose settings on")
    ft.add_argument("--test", default=None, help="held-out manifest CSV to report on (never used for choices)")
    ft.add_argument("--target", required=True, help="class label column")
    ft.add_argument("--epochs", type=positive, default=3)
    ft.add_argument("--batch-size", type=positive, default=16)
    ft.add_argument("--lr", type=float, default=2e-4, help="the head's and last block's learning rate")
    ft.add_argument("--layer-decay", type=float, default=0.75, help="LR factor per block towards the input")
    ft.add_argument("--weight-decay", type=float, default=0.05)
    ft.add_argument("--drop-path", type=float, default=0.1, help="stochastic depth in the encoder")
    ft.add_argument("--hflip", type=float, default=0.0,
                    help="horizontal flip probability (0: flips change left/right motion labels)")
    ft.add_argument("--views", type=positive, default=2, help="evenly spaced clips per video at evaluation")
    ft.add_argument("--seeds", type=positive, default=1, help="repeat with these many seeds (mean and spread)")
    ft.add_argument("--random-init", action="store_true",
                    help="train a freshly initialised twin of --encoder instead: the from-scratch baseline, same recipe")
    ft.add_argument("--out", default=None, help="folder for finetune.json / .md, the encoder and the head")
    ft.add_argument("--overwrite", action="store_true", help="replace an earlier run in --out")
    _add_run_args(ft)
    ft.set_defaults(func=_cmd_finetune)

    rp = sub.add_parser("report", help="one self-contained HTML page for one or more run folders")
    rp.add_argument("runs", nargs="+", help="run folders (jepa fit default_root_dir; probe / finetune / plan outputs)")
    rp.add_argument("--out", required=True, help="the HTML file to write")
    rp.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    rp.add_argument("--wandb", action="store_true",
                    help="also log the page and pictures as media to each run's own wandb run (offline unless WANDB_MODE says otherwise)")
    rp.set_defaults(func=_cmd_report)

    ins = sub.add_parser("inspect", help="a sparse dictionary of an encoder's (or world model's) tokens: atoms, names, pictures")
    what = ins.add_mutually_exclusive_group(required=True)
    what.add_argument("--encoder", help="exported encoder file, jepa fit checkpoint, or run folder")
    what.add_argument("--world-model", help="world-model checkpoint (jepa fit --config configs/world_model/...): "
                      "its frame latents on --data trajectories, named by the recorded states")
    ins.add_argument("--data", required=True,
                     help="manifest CSV (its label columns name the atoms); with --world-model a jepa data collect manifest")
    ins.add_argument("--env", default=None, help="--world-model: the environment whose states name the atoms "
                     "(default: the --protocol's, else two-rooms)")
    ins.add_argument("--protocol", default=None, help="--world-model: the layout distribution the data was collected "
                     "from (default: the environment's headline protocol)")
    ins.add_argument("--frame-stride", type=positive, default=4, help="--world-model: every n-th frame of each trajectory")
    ins.add_argument("--max-episodes", type=positive, default=None, help="--world-model: the first n trajectories only")
    ins.add_argument("--trust-checkpoint", action="store_true",
                     help="the checkpoint file is trusted: allow loading Python objects from it (runs code from the file)")
    ins.add_argument("--atoms", type=positive, default=None, help="dictionary size (default: 256; 64 with --world-model)")
    ins.add_argument("--active", type=positive, default=None,
                     help="atoms active per token, top-k (default: 8; 4 with --world-model)")
    ins.add_argument("--heldout", type=float, default=0.3,
                     help="fraction of videos (with --world-model: of episodes) held out for every score")
    ins.add_argument("--steps", type=positive, default=2000, help="dictionary training steps")
    ins.add_argument("--seed", type=int, default=0)
    ins.add_argument("--baselines", nargs="*", default=["random_init"], choices=["random_init"])
    ins.add_argument("--show", type=positive, default=24, help="atoms shown with pictures")
    ins.add_argument("--layer", type=int, default=-1, help="--encoder: block whose tokens to read (-1: the output)")
    ins.add_argument("--out", default=None, help="folder for inspect.html / .json, atoms/*.png, dictionary.pt")
    ins.add_argument("--overwrite", action="store_true", help="replace an earlier inspection in --out")
    ins.add_argument("--cache-dir", default=None, help="--encoder: feature cache (default: the probes')")
    ins.add_argument("--batch-size", type=positive, default=16)
    _add_run_args(ins)
    ins.set_defaults(func=_cmd_inspect_atoms)
    return parser


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


LIGHTNING_COMMANDS = ("fit", "validate")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in LIGHTNING_COMMANDS:
        from jepa.training.lightning_cli import run

        return run(argv)
    try:
        parser = build_parser()
    except ValueError as e:  # e.g. a malformed JEPA_ENVS: one line, not a traceback
        print(f"jepa: error: {e}", file=sys.stderr, flush=True)
        return 2
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from jepa.training.checkpointing import CheckpointError

    if getattr(args, "trust_checkpoint", False):  # the user vouches for the files this command reads
        from jepa.safe_load import TRUST_ENV

        os.environ[TRUST_ENV] = "1"
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, FileExistsError, CheckpointError, ValueError) as e:
        # Bad input (a missing or foreign file, a bad value): one line naming it, no traceback
        # (JEPA_TRACEBACK=1 shows it).
        if os.environ.get("JEPA_TRACEBACK"):
            raise
        names = [getattr(args, k, None) for k in ("command", "data_command", "bench_command")]
        print(f"{' '.join(['jepa', *[n for n in names if n]])}: error: {e}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
