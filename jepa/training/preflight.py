"""Checks ``jepa fit`` runs on the instantiated config before any training starts.

Each failure is a ``ConfigError`` whose message names the config key (``data.init_args.train``),
the file or the value, and what would be valid, so a bad config never surfaces as a traceback
from deep inside PyTorch or a DataLoader worker. Unknown keys and wrong types are caught
earlier by the config parser (LightningCLI / jsonargparse), which names the key too.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import lightning as L

from jepa.training.checkpointing import CheckpointError, check_checkpoint_matches, read_checkpoint

MAX_PROBED_VIDEOS = 64  # videos opened to check that a clip fits (container metadata only)


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key."""


def _hp(obj: Any) -> dict[str, Any]:
    return dict(getattr(obj, "hparams", {}) or {})


def check_writable(key: str, folder: str | os.PathLike[str]) -> None:
    """Make ``folder`` now and write a probe file in it, so an unwritable output fails before any
    work, in one line naming ``key``."""
    p = Path(folder)
    try:
        p.mkdir(parents=True, exist_ok=True)
        # a file of its own per caller: ranks of one job probe the same folder at the same moment
        with tempfile.NamedTemporaryFile(dir=p, prefix=".jepa-write-test-"):
            pass
    except OSError as e:
        named = f"{key} {folder}" if key.startswith("--") else f"{key}: {folder}"  # a flag, or a config key
        raise ConfigError(f"{named}: cannot write there ({e.strerror or e}); "
                          "choose a folder you can write to") from e


def check_source(key: str, value: Any) -> Any:
    """The ``VideoSource`` of a manifest / folder config value, or ``ConfigError``."""
    from data_pipelines.sources import load_source

    if value is None or value == "":
        raise ConfigError(f"{key} is not set; give a manifest CSV or a folder of videos")
    p = Path(str(value))
    if not p.exists():
        raise ConfigError(
            f"{key}: {p} does not exist (working directory {os.getcwd()}); give a manifest CSV or a folder "
            "of videos, e.g. from `jepa data synth moving-shapes --out data/moving_shapes`"
        )
    try:
        source = load_source(p)
    except (ValueError, KeyError, FileNotFoundError) as e:
        raise ConfigError(f"{key}: {p} is not a usable manifest or video folder: {e}") from e
    if len(source) == 0:
        raise ConfigError(f"{key}: {p} lists no videos")
    missing = [q for q in source.paths if not os.path.exists(q)]
    if len(missing) == len(source):
        raise ConfigError(
            f"{key}: none of the {len(source)} files listed in {p} exist (first: {missing[0]}); manifest paths "
            "are resolved relative to the manifest's folder"
        )
    return source


def check_video_data(dm: L.LightningDataModule) -> Any:
    """Paths, files, and that a clip fits in at least one video (VideoDataModule); returns the
    training ``VideoSource``."""
    from data_pipelines.decoding import DecodeError, open_video
    from data_pipelines.sampling import ClipSampler

    hp = _hp(dm)
    sources = {"train": check_source("data.init_args.train", hp.get("train"))}
    if hp.get("val"):
        sources["val"] = check_source("data.init_args.val", hp["val"])
    if hp.get("bad_files") == "strict":
        for name, source in sources.items():
            missing = [q for q in source.paths if not os.path.exists(q)]
            if missing:
                raise ConfigError(
                    f"data.init_args.{name}: {len(missing)} listed files do not exist (first: {missing[0]}) and "
                    "data.init_args.bad_files is 'strict'; fix the manifest or use bad_files: skip"
                )
    if hp.get("short_videos", "skip") != "skip":
        return sources["train"]
    sampler = ClipSampler(hp.get("num_frames", 16), hp.get("frame_step", 2), hp.get("fps"))
    for name, source in sources.items():
        longest, probed, need, fits = 0, 0, 0, False
        for path in source.paths:
            if probed >= MAX_PROBED_VIDEOS or fits:
                break
            if not os.path.exists(path):
                continue
            try:
                with open_video(path) as reader:
                    need = sampler.span(sampler.step_for(reader.fps))
                    fits = reader.num_frames >= need
                    longest = max(longest, reader.num_frames)
            except DecodeError:
                continue  # a bad file is the data pipeline's business (skip / strict)
            probed += 1
        if probed and not fits:
            which = "no video" if probed == len(source) else f"none of the first {probed} videos"
            fps = f", fps={hp['fps']}" if hp.get("fps") else ""
            raise ConfigError(
                f"a clip of data.init_args.num_frames={hp.get('num_frames')} (frame_step={hp.get('frame_step')}{fps}) "
                f"spans {need} source frames, but {which} of data.init_args.{name} ({source.origin}) is that long "
                f"(longest: {longest} frames); lower num_frames or frame_step, or set data.init_args.short_videos: pad"
            )
    return sources["train"]


def check_input_size(model: L.LightningModule, dm: L.LightningDataModule | None) -> None:
    """The clip size must be a whole number of patches / tubelets (VideoJEPA)."""
    hp = _hp(model)
    if "patch_size" not in hp or "tubelet_size" not in hp:
        return
    if hp.get("input_size") is not None:
        t, h, w = (int(v) for v in hp["input_size"])
        keys = ("model.init_args.input_size[0]", "model.init_args.input_size[1]", "model.init_args.input_size[2]")
    else:
        dhp = _hp(dm)
        if "num_frames" not in dhp or "crop_size" not in dhp:
            return
        t, h, w = int(dhp["num_frames"]), int(dhp["crop_size"]), int(dhp["crop_size"])
        keys = ("data.init_args.num_frames", "data.init_args.crop_size", "data.init_args.crop_size")
    patch, tubelet = int(hp["patch_size"]), int(hp["tubelet_size"])
    if t % tubelet:
        raise ConfigError(
            f"{keys[0]}={t} is not divisible by model.init_args.tubelet_size={tubelet}; "
            f"use a multiple of {tubelet} (e.g. {max(tubelet, t - t % tubelet)})"
        )
    for key, v in ((keys[1], h), (keys[2], w)):
        if v % patch:
            raise ConfigError(
                f"{key}={v} is not divisible by model.init_args.patch_size={patch}; "
                f"use a multiple of {patch} (e.g. {max(patch, v - v % patch)})"
            )


def check_resume(ckpt_path: str | None, model: L.LightningModule, trainer: L.Trainer) -> None:
    """An explicit ``--ckpt_path`` file must be a readable checkpoint of this kind of model;
    ``last`` is checked once resolved (no checkpoint yet is fine: the run starts fresh)."""
    if ckpt_path is None or ckpt_path in ("best", "hpc", "registry"):
        return
    if ckpt_path == "last":
        from lightning.pytorch.callbacks import ModelCheckpoint

        found: set[str] = set()
        for cb in trainer.checkpoint_callbacks:
            if isinstance(cb, ModelCheckpoint) and cb.dirpath and os.path.isdir(cb.dirpath):
                found |= cb._find_last_checkpoints(trainer)
        if not found:
            return
        ckpt_path = max(found, key=os.path.getmtime)
    try:
        ckpt = read_checkpoint(ckpt_path)
    except CheckpointError as e:
        raise CheckpointError(f"--ckpt_path: {e}") from e
    check_checkpoint_matches(ckpt, ckpt_path, model)


def check_one_batch(dm: L.LightningDataModule, trainer: L.Trainer, videos: int) -> None:
    """Every rank gets at least one full training batch of the ``videos`` training videos (the
    loader drops the last partial one)."""
    hp = _hp(dm)
    if "batch_size" not in hp:
        return
    ranks = max(1, int(getattr(trainer, "world_size", 1) or 1))
    need = int(hp["batch_size"]) * ranks
    if videos < need:
        per = f" x {ranks} processes" if ranks > 1 else ""
        raise ConfigError(
            f"data.init_args.train: {hp['train']} has {videos} videos, fewer than one batch "
            f"(data.init_args.batch_size={hp['batch_size']}{per}), so there would be no training step; add videos "
            f"(e.g. `jepa data synth moving-shapes --videos 2000`) or lower data.init_args.batch_size to at most "
            f"{max(1, videos // ranks)}"
        )


def preflight(model: L.LightningModule, dm: L.LightningDataModule | None, trainer: L.Trainer, ckpt_path: str | None) -> None:
    """Every check that applies to this model / data module pair."""
    from data_pipelines.datamodule import VideoDataModule
    from data_pipelines.trajectory_datamodule import TrajectoryDataModule

    if isinstance(dm, VideoDataModule):
        check_one_batch(dm, trainer, len(check_video_data(dm)))
    elif isinstance(dm, TrajectoryDataModule):
        hp = _hp(dm)
        for key in ("train", "val"):
            if hp.get(key) and not Path(str(hp[key])).exists():
                raise ConfigError(
                    f"data.init_args.{key}: {hp[key]} does not exist; `jepa data collect two-rooms --out DIR` "
                    "writes trajectory manifests"
                )
    check_input_size(model, dm)
    check_resume(ckpt_path, model, trainer)
