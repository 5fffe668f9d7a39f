"""`hfs train`: the end-to-end student–teacher loop from the cache (DESIGN.md, "Stage 2").

One loop, read top to bottom as nanoGPT's train.py: processes, config and run folder;
data; model and optimiser; then for each optimiser step: the micro-batches (gradient
accumulation), the clip, one transfer of the step's logged numbers to the host, the update
(or its skip when a loss or the gradient is not finite, agreed by every process), one line
of ``metrics.jsonl``, and a checkpoint every ``train.checkpoint_every`` steps and at the
end. Schedules (τ, λ_KL, lr) are pure
functions of the step and the data order and Gumbel noise are pure functions of
(seed, step), so ``--resume`` continues exactly where the newest checkpoint stopped.

The same command runs under ``torchrun --nproc-per-node N``: one process per GPU, DDP,
only rank 0 logs and writes; the effective batch stays ``train.batch_size``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from hfs.pipeline.train.distributed import ProcessError, Processes
from hfs.pipeline.train.run_folder import METRICS_FILE, RUN_CONFIG_FILE, RUN_DATA_FILE
from hfs.stages.console import ProgressBar, console, rank_error
from hfs.stages.options import (
    TEACHER_ALIASES,
    materialise_models,
    require_cache_folder,
    teacher_choice,
    teacher_model_name,
)

log = logging.getLogger(__name__)

TIMING_KEYS = ("samples_per_s", "data_wait_frac", "step_s")
"""Fields of a metrics line that measure time; every other field is exact on resume."""



class TrainError(RuntimeError):
    """A run that cannot start as asked; the message says why and what to do."""


# --- configuration ----------------------------------------------------------------------------


def command_line_options(student: Optional[str], teacher: Optional[str], max_steps: Optional[int],
                         epochs: Optional[int], preset: Optional[str]) -> dict[str, dict[str, Any]]:
    """The config sections that ``--student``, ``--teacher``, ``--max-steps``, ``--epochs`` set."""
    options: dict[str, dict[str, Any]] = {}
    if student is not None:
        options["student"] = {"name_or_path": student}
    if teacher is not None:
        kind, name = teacher_choice(teacher, preset)
        options["teacher"] = {"kind": kind, "name_or_path": name}
    train = {k: v for k, v in (("max_steps", max_steps), ("epochs", epochs)) if v is not None}
    if train:
        options["train"] = train
    return options


def resumed_config(run_dir: Path, requested):
    """The saved config of ``run_dir``, with the ``train`` fields a resumed run may change
    taken from ``requested``. Any other difference is an error naming both values."""
    from hfs.pipeline.train.config import RESUMABLE_CHANGES, RunConfig, saved_before_clip_mode

    from hfs.pipeline.model.hfs_model import saved_before_score_path

    where = str(run_dir / RUN_CONFIG_FILE)
    saved = RunConfig.from_dict(saved_before_clip_mode(
        saved_before_score_path(json.loads((run_dir / RUN_CONFIG_FILE).read_text()), where), where))
    old, new = saved.to_dict(), requested.to_dict()
    differs = [f"{section}.{key}: run has {old[section][key]!r}, this command asks for {new[section][key]!r}"
               for section in old for key in old[section]
               if old[section][key] != new[section][key] and not (section == "train" and key in RESUMABLE_CHANGES)]
    if differs:
        raise TrainError(f"--resume: {run_dir} was made with another configuration:\n  - " + "\n  - ".join(differs)
                         + "\nRun the same command as before (only how long it runs may change), or use a new --out.")
    for key in RESUMABLE_CHANGES:
        setattr(saved.train, key, getattr(requested.train, key))
    return saved


def resumed_schedule_steps(state: dict[str, Any], total_steps: int, steps_per_epoch: int, train,
                           reschedule: bool, main: bool) -> int:
    """Length of the learning-rate schedule of a run resumed from a checkpoint's ``state``.

    ``max_steps``/``epochs`` may change on ``--resume``; the cosine's length then stays the
    checkpoint's, so the learning rate goes on as the interrupted run's would have. With
    ``reschedule`` it becomes this run's ``total_steps`` (the cosine stretched or shrunk from
    the resume point on). Either way the choice is logged when the lengths differ."""
    saved = state.get("schedule_steps")
    if saved is None:  # a checkpoint written before the schedule's length was saved: its config says
        old = state["config"]["train"]
        saved = old["max_steps"] if old.get("max_steps") is not None else steps_per_epoch * old["epochs"]
    if saved == total_steps:
        return saved
    if reschedule:
        if main:
            from hfs.pipeline.model.schedules import learning_rate

            step, lr = state["step"], (train.lr, train.warmup_steps, train.lr_schedule)
            log.warning("--reschedule: this run %s the learning-rate schedule from %d to %d steps; the learning rate "
                        "at step %d moves from %.3g to %.3g", "stretches" if total_steps > saved else "shrinks",
                        saved, total_steps, step + 1, learning_rate(step, saved, *lr),
                        learning_rate(step, total_steps, *lr))
        return total_steps
    if main:
        after = (f"; steps after {saved} train at the cosine's end, learning rate 0"
                 if train.lr_schedule == "cosine" and total_steps > saved else "")
        log.warning("--resume: this run of %d steps keeps the learning-rate schedule of %d steps it started with, "
                    "so the learning rate goes on as before%s. Add --reschedule to stretch the schedule to %d "
                    "steps instead", total_steps, saved, after, total_steps)
    return saved


def check_same_data(state: dict[str, Any], out: Path, fingerprint: dict[str, Any], new_data: bool,
                    main: bool) -> None:
    """Stop when a resumed run would read other training samples than its checkpoint was made
    on (``data_fingerprint``: another count, other ids, another order), since every epoch's
    order would change; with ``new_data`` go on, and warn."""
    saved = state.get("data")
    if saved is None and (out / RUN_DATA_FILE).is_file():  # a checkpoint written before the fingerprint
        saved = json.loads((out / RUN_DATA_FILE).read_text())
        saved = saved if "sample_ids_sha256" in saved else None
    if saved is None:
        if main:
            log.warning("--resume: %s predates the training data's fingerprint; cannot check that --data gives "
                        "the samples the run started on", out / RUN_DATA_FILE)
        return
    keys = ("samples", "sample_ids_sha256", "order_sha256")
    if all(saved.get(k) == fingerprint[k] for k in keys if k in saved):
        return
    what = (f"{saved['samples']} training samples, --data and --cache now give {fingerprint['samples']}"
            + ("" if saved["sample_ids_sha256"] != fingerprint["sample_ids_sha256"] else
               " (the same samples in another order)"))
    if new_data:
        if main:
            log.warning("--new-data: %s records %s; continuing on the new samples from step %d (the epochs' "
                        "order and length change from here on)", out / RUN_DATA_FILE, what, state["step"])
        return
    raise TrainError(f"--resume: {out / RUN_DATA_FILE} records {what}, so every epoch's order would change. "
                     "Resume with the same --data files and cache, add --new-data to continue on these samples, "
                     "or use a new --out.")


def check_cache_fits(cache, model_cfg) -> None:
    """Stop with a clear message when the cache cannot feed this model."""
    from hfs.cache import CacheError

    dim = cache.config.get("embed_dim")
    if dim is not None and int(dim) != model_cfg.student.clip_dim:
        raise CacheError(f"{cache.path} holds {dim}-d features (encoder {cache.config.get('model')!r}) but "
                         f"student.clip_dim is {model_cfg.student.clip_dim}; extract with the encoder the student expects "
                         "or set student.clip_dim")
    no_frames = "teacher_frame_size" in cache.config and cache.config["teacher_frame_size"] is None
    if model_cfg.losses.supervision == "answer" and no_frames:
        raise CacheError(f"{cache.path} was extracted without teacher frames (--frames none); "
                         "the teacher needs them: extract again with frames")


def frame_labels(cfg) -> dict[str, tuple[int, ...]] | None:
    """sample_id → positive frames for ``losses.supervision = "pseudo_label"`` (the grid hits of
    the ground-truth file ``train.frame_labels``); None for answer supervision."""
    if cfg.model.losses.supervision != "pseudo_label":
        return None
    if not cfg.train.frame_labels:
        raise TrainError("losses.supervision=pseudo_label trains on per-frame labels: set train.frame_labels=PATH "
                         "to a ground-truth JSONL with the grid_hits of every training sample")
    from hfs.pipeline.evaluation.recall import TruthError, read_ground_truth

    try:
        truths = read_ground_truth(cfg.train.frame_labels)
    except TruthError as err:
        raise TrainError(f"train.frame_labels: {err}") from None
    return {sid: truth.grid_hits for sid, truth in truths.items()}


# --- the run ------------------------------------------------------------------------------------


def run(
    cache: Path,
    data: Sequence[Path],
    out: Path,
    student: Optional[str] = None,
    teacher: Optional[str] = None,
    preset: Optional[str] = None,
    config_file: Optional[Path] = None,
    overrides: Sequence[str] = (),
    resume: bool = False,
    max_steps: Optional[int] = None,
    epochs: Optional[int] = None,
    video_root: Optional[Path] = None,
    device: str = "auto",
    progress: bool = True,
    reschedule: bool = False,
    new_data: bool = False,
) -> int:
    """Train; returns the process exit status (0 done, 2 usage or input error)."""
    from hfs.cache import CacheError
    from hfs.manifests import ManifestError
    from hfs.pipeline.model.loading import ModelLoadError
    from hfs.pipeline.train.config import ConfigError

    procs = None
    try:
        if (reschedule or new_data) and not resume:
            raise TrainError(f"{'--reschedule' if reschedule else '--new-data'} changes how a run goes on: it "
                             "applies only with --resume")
        cfg, checkpoint = _run_config(Path(out), student, teacher, preset, config_file, overrides, resume,
                                      max_steps, epochs)
        cache, data = Path(cache), [Path(d) for d in data]
        _check_inputs(cache, data)  # before looking for models: cheap, and the likelier slip
        materialise_models(student=cfg.model.student.name_or_path, teacher=teacher_model_name(cfg.model.teacher))
        procs = Processes(device)
        return _train(procs, cfg, checkpoint, cache, data, Path(out), video_root, progress, reschedule, new_data)
    except (TrainError, ProcessError, ConfigError, CacheError, ManifestError, ModelLoadError, FileNotFoundError) as err:
        rank_error(str(err), procs.rank if procs is not None else None)
        return 2
    finally:
        if procs is not None:
            procs.close()


def _check_inputs(cache_dir: Path, data: list[Path]) -> None:
    require_cache_folder(cache_dir)
    for f in data:
        if not f.is_file():
            raise TrainError(f"--data {f}: no such file")


def _run_config(out: Path, student, teacher, preset, config_file, overrides, resume: bool, max_steps, epochs):
    """The run's config and the checkpoint to resume from (None: start at step 0). Reads the run
    folder, writes nothing."""
    from hfs.pipeline.train.checkpoint import latest_checkpoint
    from hfs.pipeline.train.config import resolve_run_config

    tiny_teacher = TEACHER_ALIASES.get((teacher or "").lower(), "qwen2_5_vl")
    options = command_line_options(student, teacher, max_steps, epochs, preset)
    cfg = resolve_run_config(preset, tiny_teacher, config_file, options, overrides)
    if not resume:
        if (out / RUN_CONFIG_FILE).is_file():
            raise TrainError(f"{out} already holds a run; add --resume to continue it, or choose a new --out")
        return cfg, None
    if not (out / RUN_CONFIG_FILE).is_file():
        raise TrainError(f"--resume: {out} has no {RUN_CONFIG_FILE}; start the run without --resume")
    checkpoint = latest_checkpoint(out)
    if checkpoint is None and int(os.environ.get("RANK", 0)) == 0:
        log.warning("--resume: %s has no checkpoint yet; starting from step 0", out)
    return resumed_config(out, cfg), checkpoint


def _train(procs: Processes, cfg, checkpoint, cache_dir: Path, data: list[Path], out: Path, video_root,
           progress: bool, reschedule: bool = False, new_data: bool = False) -> int:
    import torch

    from hfs.cache import FeatureCache
    from hfs.cache.format import atomic_write_json
    from hfs.pipeline.model.hfs_model import HFSModel
    from hfs.pipeline.model.schedules import learning_rate
    from hfs.pipeline.model.selection import per_sample_noise
    from hfs.pipeline.train.checkpoint import load_trainer_state, restore_rng, rng_state, save_checkpoint
    from hfs.pipeline.train.clipping import clip_gradient_norms, grad_norm_metrics
    from hfs.pipeline.train.data import QADataset, StepSampler, collate, data_fingerprint, training_samples

    train = cfg.train
    accumulation = train.accumulation(procs.world)
    procs.barrier()  # every process has looked at the run folder before rank 0 writes to it

    # -- data ----------------------------------------------------------------------------------
    feature_cache = FeatureCache(cache_dir, max_open_shards=train.max_open_shards)
    check_cache_fits(feature_cache, cfg.model)
    samples, skipped = training_samples(data, feature_cache, video_root)
    if procs.main:
        print_skip_report(skipped, data)
    if samples.num_rows < train.batch_size:
        raise TrainError(f"{samples.num_rows} trainable samples (of {samples.num_rows + skipped.skipped} read), fewer than "
                         f"one batch of train.batch_size={train.batch_size}; see the skip counts above")
    try:
        dataset = QADataset(samples, cache_dir, train.max_open_shards, frame_labels(cfg))
    except ValueError as err:  # samples without labels
        raise TrainError(f"train.frame_labels={cfg.train.frame_labels}: {err}") from None
    steps_per_epoch = samples.num_rows // train.batch_size
    total_steps = train.max_steps if train.max_steps is not None else steps_per_epoch * train.epochs
    fingerprint = data_fingerprint(samples)
    state = load_trainer_state(checkpoint) if checkpoint is not None else None
    if state is not None:
        check_same_data(state, out, fingerprint, new_data, procs.main)
    if procs.main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / RUN_DATA_FILE, {"data": [str(d) for d in data], "cache": str(cache_dir),
                                                **fingerprint, **skipped.to_dict()})
        atomic_write_json(out / RUN_CONFIG_FILE, cfg.to_dict())  # on resume: with the new max_steps, epochs, ...

    # -- model and optimiser -------------------------------------------------------------------
    torch.manual_seed(train.seed)  # the fresh adapters and heads: the same in every process
    precision = train.precision if train.precision != "auto" else ("bf16" if procs.device.type == "cuda" else "fp32")
    dtype = torch.float32 if precision == "fp32" else None  # None: bf16 on CUDA, fp32 on the CPU
    if checkpoint is not None:
        model = HFSModel.load(checkpoint / "model", device=procs.device, dtype=dtype)
    else:
        model = HFSModel.build(cfg.model, device=procs.device, dtype=dtype)
    model.train()
    model.check_trainable_fp32()
    checkpointing = train.checkpointing_on(sum(p.numel() for p in model.parameters()))
    model.set_gradient_checkpointing(checkpointing)
    groups = model.trainable_parameters()
    params = [p for ps in groups.values() for p in ps]
    optimizer = torch.optim.AdamW(params, lr=train.lr, betas=train.betas, eps=train.eps,
                                  weight_decay=train.weight_decay)
    start_step, skipped_steps, schedule_steps = 0, 0, total_steps
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        start_step, skipped_steps = state["step"], state["skipped_steps"]
        schedule_steps = resumed_schedule_steps(state, total_steps, steps_per_epoch, train, reschedule, procs.main)
        if not restore_rng(state["rng"], procs.rank, procs.world, train.seed, start_step) and procs.main:
            log.warning("checkpoint made with %d processes, resumed with %d: each process's dropout is reseeded "
                        "from (seed, rank, step), so its draws differ from an uninterrupted run's",
                        len(state["rng"]), procs.world)
    else:
        torch.manual_seed(train.seed + procs.rank)  # dropout: different in every process
    if procs.main:
        _truncate_metrics(out / METRICS_FILE, start_step)
    ddp_model = model
    if procs.ddp:
        from hfs.pipeline.train.distributed import wrap_ddp

        ddp_model = wrap_ddp(model)  # broadcasts and all-reduces the trained parameters only

    sampler = StepSampler(samples.num_rows, train.batch_size, train.micro_batch_size, procs.world, procs.rank,
                          train.seed, start_step, total_steps)
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, collate_fn=collate,
        num_workers=train.num_workers, prefetch_factor=train.prefetch_factor if train.num_workers else None,
        persistent_workers=False,
        generator=torch.Generator().manual_seed(train.seed),  # its base seed must not draw from dropout's RNG
    )
    autocast = (torch.autocast(procs.device.type, dtype=torch.bfloat16) if precision == "bf16"
                else contextlib.nullcontext())

    def save(step: int) -> None:
        rngs = procs.gather(rng_state())
        if procs.main:
            save_checkpoint(out, step, model, {
                "step": step, "epoch": step // steps_per_epoch, "step_in_epoch": step % steps_per_epoch,
                "skipped_steps": skipped_steps, "schedule_steps": schedule_steps, "data": fingerprint,
                "optimizer": optimizer.state_dict(), "rng": rngs,
                "world_size": procs.world, "config": cfg.to_dict(), "versions": _versions(),
            }, keep=train.keep_checkpoints)
        procs.barrier()

    # -- the loop --------------------------------------------------------------------------------
    if procs.main:
        log.info("training %s: %d trainable parameters in %s; %d steps of %d samples (%d × %d × %d processes); "
                 "activation checkpointing %s", out, sum(p.numel() for p in params), ", ".join(groups), total_steps,
                 train.batch_size, train.micro_batch_size, accumulation, procs.world, "on" if checkpointing else "off")
    bar = ProgressBar("train", total_steps, start_step, enabled=progress and procs.main, loss="-")
    batches = iter(loader)
    with bar:
        for step in range(start_step, total_steps):
            t_step = time.perf_counter()
            data_wait = 0.0
            lr = learning_rate(step, schedule_steps, train.lr, train.warmup_steps, train.lr_schedule)
            for group in optimizer.param_groups:
                group["lr"] = lr
            micro_terms, losses = [], []  # on the device until the step's one transfer to the host
            tau = None
            for micro in range(accumulation):
                t_wait = time.perf_counter()
                tb = next(batches)
                data_wait += time.perf_counter() - t_wait
                n_frames = tb.batch.features.shape[1]
                noise = per_sample_noise(tb.noise_seeds, n_frames, device=procs.device,
                                         samples=cfg.model.selection.num_samples)
                last = micro == accumulation - 1
                sync = contextlib.nullcontext() if (last or not procs.ddp) else ddp_model.no_sync()
                with sync:
                    with autocast:
                        terms, selection = ddp_model(tb.batch, step, steps_per_epoch, noise=noise)
                    loss = terms.total / accumulation
                    loss.backward()  # also when not finite: every process must join DDP's all-reduce
                tau = selection.tau
                micro_terms.append(terms.as_tensors())
                losses.append(loss.detach())
            norms = clip_gradient_norms(groups, train.grad_clip, train.clip_mode)
            micro_terms, losses, norms = step_scalars(micro_terms, losses, norms)
            sums: dict[str, float] = {}
            for values in micro_terms:
                for key, value in values.items():
                    if value is not None:
                        sums[key] = sums.get(key, 0.0) + value / accumulation
            grad_norms = grad_norm_metrics(norms, train.clip_mode)
            bad = not all(math.isfinite(x) for x in losses) or not math.isfinite(grad_norms["grad_norm"])
            keys = sorted(sums)
            # one all-reduce: skip when any process saw a non-finite value, and the logged means
            bad, (*values, wait) = procs.agree_and_mean(bad, [sums[k] for k in keys] + [data_wait])
            means = dict(zip(keys, values))
            if bad:
                skipped_steps += 1
                if procs.main:
                    log.warning("step %d: loss or gradient not finite; update skipped (%d so far)", step + 1, skipped_steps)
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)

            elapsed = time.perf_counter() - t_step
            if procs.main:
                record = {
                    "step": step + 1, "epoch": step // steps_per_epoch, **means, "tau": tau, "lr": lr,
                    **grad_norms, "skipped": bad, "skipped_steps": skipped_steps,
                    "samples_per_s": train.batch_size / elapsed, "data_wait_frac": wait / elapsed, "step_s": elapsed,
                }
                _append_metrics(out / METRICS_FILE, record)
                bar.update(step + 1, loss=f"{means.get('total', float('nan')):.4f}")
            if (step + 1) % train.checkpoint_every == 0 or step + 1 == total_steps:
                save(step + 1)
    if procs.main:
        console.print(f"trained {total_steps - start_step} steps ({skipped_steps} skipped in all) → {out}")
    return 0


# --- helpers ------------------------------------------------------------------------------------


def step_scalars(micro_terms: list[dict[str, Any]], losses: list[Any], norms: dict[str, Any]):
    """The logged numbers of one optimiser step on the host, in one transfer: each micro-batch's
    ``LossTerms.as_tensors()``, its loss and the clip's norms (0-d device tensors) are stacked
    and moved together, so the step waits for the device once instead of at every term of every
    micro-batch. Returns them with each tensor replaced by its float (what ``float()`` of each
    would give: the same float32 values), the rest as they were."""
    import torch

    tensors = [v for terms in micro_terms for v in terms.values() if isinstance(v, torch.Tensor)]
    tensors += [*losses, *norms.values()]
    floats = iter(torch.stack([t.float() for t in tensors]).tolist())

    def host(values: dict[str, Any]) -> dict[str, Any]:
        return {k: next(floats) if isinstance(v, torch.Tensor) else v for k, v in values.items()}

    terms = [host(values) for values in micro_terms]
    return terms, [next(floats) for _ in losses], host(norms)


def _versions() -> dict[str, str]:
    import peft
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}


def _append_metrics(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metrics lines past ``step`` (written after the checkpoint a run resumes from)."""
    if not path.is_file():
        return
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    keep = [ln for ln in lines if json.loads(ln)["step"] <= step]
    if len(keep) != len(lines):
        from hfs.cache.format import atomic_write_bytes

        atomic_write_bytes(path, "".join(ln + "\n" for ln in keep).encode())
        log.info("%s: dropped %d lines after step %d (resuming there)", path, len(lines) - len(keep), step)


def print_skip_report(report, data: Sequence[Path]) -> None:
    """The samples kept and what was skipped, by reason, with an example of each."""
    from rich.table import Table

    t = Table(title=f"training data: {', '.join(map(str, data))}", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    t.add_row("samples kept", f"[green]{report.kept}[/green]")
    for reason, n in report.counts.most_common():
        t.add_row(f"skipped: {reason}", f"{n}  (e.g. {report.examples[reason][0]})")
    if not report.counts:
        t.add_row("skipped", "0")
    console.print(t)
