"""Running a study: the folder and its resume policy, the plan with its runtime estimate, the runs (in this
process or one process per job), and the summary.

The study folder (default ``studies/<name>/``)::

  study.json        which study and configuration the folder holds (a different one is refused)
  runs/<run>/       each run's folder as the engine writes it, plus result.json once the run has finished
  results.csv       the table, one row per run (or per measurement)
  results.md        the same as Markdown, with what was compared and how
  *.png             the study's pictures

Stopped at any point, the same command continues: finished runs (``result.json``) are skipped, unfinished ones
resume from ``checkpoints/last.pt``. Runs go to ``jobs`` processes at once, each with ``threads`` CPU threads, or
one per GPU.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from vitkit.studies.base import RESULT_FILE, RunRecord, RunSpec, Study, StudyContext
from vitkit.studies.common import data_section, resolve_data
from vitkit.studies.measure import (
    EPOCH_END_S,
    FORWARD_SHARE,
    PARALLEL_SLOWDOWN,
    RUN_OVERHEAD_S,
    final_numbers,
    forward_mflops,
    logged_ms_per_step,
    parameter_count,
    probe_seconds_per_step,
)
from vitkit.studies.registry import get_study
from vitkit.train.callbacks import Callback
from vitkit.train.recipe import Recipe
from vitkit.utils.device import resolve_device, resolve_precision
from vitkit.utils.files import atomic_write_text
from vitkit.utils.progress import console_logging, format_duration

log = logging.getLogger("vitkit.studies")
MANIFEST = "study.json"


@dataclass
class PlannedRun:
    spec: RunSpec
    done_steps: int = 0  # from the run's last checkpoint
    finished: bool = False
    estimate_s: float = 0.0


@dataclass
class StudyResult:
    """What ``run_study`` did: the folder, the finished runs, the files written and the plan it followed."""

    out: Path
    records: list[RunRecord] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    plan: list[PlannedRun] = field(default_factory=list)
    estimate_s: float = 0.0


def run_study(
    study: Study | str,
    *,
    quick: bool = False,
    out: str | os.PathLike | None = None,
    data: str | os.PathLike | None = None,
    jobs: int | None = None,
    threads: int | None = None,
    device: str = "auto",
    fresh: bool = False,
    plan_only: bool = False,
    cache: bool = True,
    callbacks: Sequence[Callback] = (),
) -> StudyResult:
    """Run ``study`` (or the study registered under that name) to its table and pictures in ``out``.

    ``quick`` runs the minutes-long version. ``jobs`` runs go at once (default: one per GPU, else one per CPU
    core), each with ``threads`` threads (default: the cores shared out). ``fresh`` deletes an earlier study in
    ``out`` first; otherwise its finished runs are kept and unfinished ones resumed. ``plan_only`` prints the plan
    and its runtime estimate and stops. ``cache=False`` keeps the decoded data out of vitkit's disk cache (for
    throw-away data). ``callbacks`` go to every run trained in this process (with ``jobs=1``).
    """
    console_logging()
    study = get_study(study) if isinstance(study, str) else study
    import matplotlib  # noqa: F401 - the pictures are what a study is for: missing, say so before training
    import yaml  # noqa: F401 - every run writes its resolved recipe

    out = Path(out if out is not None else Path("studies") / study.name)
    replaced = _check_folder(out, study.name, fresh, delete=not plan_only)  # True: a plan for a folder --fresh replaces
    ctx = _context(study, out, resolve_data(data), quick, cache)
    specs = study.plan(ctx)
    config = _config_hash(study, specs, quick)
    if not replaced:
        _claim_folder(out, study.name, quick, config, specs, ctx, write=not plan_only)
    plan = [PlannedRun(spec) if replaced else _status(spec, ctx) for spec in specs]
    pending = [p for p in plan if not p.finished]
    devices, jobs, threads = _workers(device, jobs, threads, len(pending))
    estimate = _estimate(plan, ctx, devices[0], threads, jobs)
    _print_plan(study, ctx, plan, devices, jobs, threads, estimate)
    result = StudyResult(out, plan=plan, estimate_s=estimate)
    if plan_only:
        return result

    start = time.perf_counter()
    pending.sort(key=_start_order)
    if jobs == 1 or len(pending) <= 1:
        for k, p in enumerate(pending, 1):
            _announce_start(k, len(pending), p, devices[0])
            record = train_run(study, p.spec, ctx, devices[0], threads, callbacks)
            _announce_end(k, len(pending), record, start)
    else:
        _run_parallel(study, pending, ctx, devices, jobs, threads, start)
    result.records = [RunRecord.read(ctx.run_dir(spec.name)) for spec in specs]
    result.files = study.summarise(result.records, ctx)
    log.info(f"study {study.name}: done in {format_duration(time.perf_counter() - start)}; wrote " +
             ", ".join(str(p.relative_to(out)) if p.is_relative_to(out) else str(p) for p in result.files) +
             f" in {out}")  # fmt: skip
    return result


# ------------------------------------------------------------------------------------------------ the folder
def _check_folder(out: Path, name: str, fresh: bool, delete: bool = True) -> bool:
    """Refuse a folder that holds something else; with ``fresh``, delete an earlier study's folder (unless not
    ``delete``: a plan only says so). Returns whether the study still starts afresh on an earlier folder."""
    if not out.exists():
        return False
    if not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file; pass a folder for the study")
    manifest = out / MANIFEST
    if not manifest.is_file():
        if any(out.iterdir()):
            raise ValueError(f"{out} is not empty and holds no study ({MANIFEST}); pass --out NEW_FOLDER")
        return False
    held = json.loads(manifest.read_text())
    if fresh:
        log.info(
            f"--fresh: {'deleting' if delete else 'would delete'} the earlier study {held.get('study')!r} in {out}"
        )
        if delete:
            shutil.rmtree(out)
        return not delete
    if held.get("study") != name:
        raise ValueError(
            f"{out} holds the study {held.get('study')!r}, not {name!r}; pass --out NEW_FOLDER, or --fresh to delete "
            "it and start over"
        )
    return False


def _claim_folder(
    out: Path, name: str, quick: bool, config: str, specs: list[RunSpec], ctx: StudyContext, write: bool = True
) -> None:
    """Refuse a folder holding another configuration of the study; mark a new one as this study's (``write``)."""
    manifest = out / MANIFEST
    if manifest.is_file():
        held = json.loads(manifest.read_text())
        if held.get("config") != config:
            how = "--quick" if held.get("quick") else "the full version"
            raise ValueError(
                f"{out} holds {held.get('study')!r} with another configuration ({how}, data {held.get('data')}, "
                f"{len(held.get('runs', []))} runs); run the same command to continue it, pass --out NEW_FOLDER, or "
                "--fresh to delete it and start over"
            )
        return
    if not write:
        return
    from vitkit.version import __version__

    info = {"study": name, "quick": quick, "config": config, "data": str(ctx.data), "vitkit": __version__,
            "runs": [s.name for s in specs]}  # fmt: skip
    atomic_write_text(json.dumps(info, indent=1) + "\n", manifest)


def _config_hash(study: Study, specs: list[RunSpec], quick: bool) -> str:
    """What must match for a folder's runs to be continued: every run's recipe and labels (not the machine-specific
    threads, device or attention kernel)."""
    runs = []
    for spec in specs:
        recipe = spec.recipe.to_dict()
        for key in ("threads", "device", "sdpa_backend", "output_dir", "progress"):
            recipe["train"].pop(key, None)
        runs.append({"name": spec.name, "labels": spec.labels, "recipe": recipe})
    text = json.dumps({"study": study.name, "quick": quick, "runs": runs}, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _context(study: Study, out: Path, data: Path, quick: bool, cache: bool) -> StudyContext:
    """The context with the data's sizes, decoding both splits once (into vitkit's cache) before any run starts."""
    from vitkit.data.config import DataConfig
    from vitkit.data.datasets import build_dataset

    cfg = DataConfig(**data_section(data, cache))
    train = build_dataset(cfg, "train", augment=False)
    test = build_dataset(cfg, "test", augment=False)
    classes = tuple(str(c) for c in train.classes)
    if not classes:
        raise ValueError(f"{data}/train has no class folders; a study needs labelled images (train/<class>/...)")
    return StudyContext(out=out, data=data, quick=quick, train_size=len(train), test_size=len(test),
                        classes=classes, cache=cache)  # fmt: skip


def _status(spec: RunSpec, ctx: StudyContext) -> PlannedRun:
    folder = ctx.run_dir(spec.name)
    if (folder / RESULT_FILE).is_file():
        return PlannedRun(spec, spec.steps, finished=True)
    last = folder / "checkpoints" / "last.pt"
    done = 0
    if last.is_file():
        try:
            state = torch.load(last, map_location="cpu", weights_only=True)
            done = int(state["progress"]["global_step"])
        except Exception:  # noqa: BLE001 - a damaged checkpoint: the engine's resume reports it properly
            done = 0
    return PlannedRun(spec, done)


# ------------------------------------------------------------------------------------------ plan and estimate
def _workers(device: str, jobs: int | None, threads: int | None, pending: int) -> tuple[list[str], int, int]:
    """(a device per job slot, jobs, threads per job): one job per GPU, else one per core (each single-threaded)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if jobs is not None and jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {jobs}")
    if device not in ("auto", "cpu", "cuda"):  # one named device (cuda:1): its runs one after another
        resolve_device(device)  # raises when it is not there
        jobs = jobs or 1
        devices = [device] * jobs
    elif device != "cpu" and torch.cuda.is_available():
        gpus = torch.cuda.device_count()
        jobs = jobs or gpus
        devices = [f"cuda:{i % gpus}" for i in range(jobs)]
    elif device == "cuda":
        raise ValueError("--device cuda: CUDA is not available here; use --device cpu (or auto)")
    else:
        jobs = jobs or max(1, min(cores, 8, max(pending, 1)))
        devices = ["cpu"] * jobs
    threads = threads or max(1, cores // jobs)
    return devices, jobs, threads


def _estimate(plan: list[PlannedRun], ctx: StudyContext, device: str, threads: int, jobs: int) -> float:
    """Wall seconds for the unfinished runs: each run's steps at the probed time per step of its model, plus its
    forward passes and epoch ends, packed onto ``jobs`` slots longest first."""
    from vitkit.train.run import build_model

    seconds: dict[str, float] = {}
    info = {"classes": list(ctx.classes)}
    for p in plan:
        if p.finished:
            continue
        key = json.dumps([p.spec.recipe.model.name, p.spec.recipe.model.overrides, p.spec.recipe.train.batch_size],
                         sort_keys=True, default=str)  # fmt: skip
        if key not in seconds:
            seconds[key] = probe_seconds_per_step(for_device(p.spec.recipe, device, threads), info, device, threads)
            model = build_model(p.spec.recipe, info)
            precision = resolve_precision(p.spec.recipe.train.precision, torch.device(device))
            params = parameter_count(model) / 1e6
            log.info(f"timing probe ({p.spec.name}'s model): {1000 * seconds[key]:.0f} ms/step at batch "
                     f"{p.spec.recipe.train.batch_size} in {precision}, {params:.2f}M parameters, on {device} with "
                     f"{threads} thread(s)")  # fmt: skip
        step = seconds[key] * (PARALLEL_SLOWDOWN if jobs > 1 and device == "cpu" else 1.0)
        left = max(p.spec.steps - p.done_steps, 0)
        train_images = _train_images(p.spec, ctx)
        epochs = left * p.spec.recipe.train.batch_size / max(train_images, 1)
        batch = p.spec.recipe.train.batch_size
        p.estimate_s = (left * step + p.spec.forward_images * FORWARD_SHARE * step / batch + epochs * EPOCH_END_S
                        + RUN_OVERHEAD_S)  # fmt: skip
    slots = [0.0] * jobs
    for p in sorted((p for p in plan if not p.finished), key=_start_order):
        slots[slots.index(min(slots))] += p.estimate_s
    return max(slots)


def _start_order(p: PlannedRun) -> tuple[bool, float]:
    """Runs a stop interrupted first, then the longest first (so parallel jobs end together)."""
    return (p.done_steps == 0, -p.estimate_s)


def _train_images(spec: RunSpec, ctx: StudyContext) -> int:
    subset = spec.recipe.train.train_subset
    return min(subset, ctx.train_size) if subset else ctx.train_size


def _print_plan(study: Study, ctx: StudyContext, plan: list[PlannedRun], devices: list[str], jobs: int,
                threads: int, estimate: float) -> None:  # fmt: skip
    version = "quick version" if ctx.quick else "full version"
    done = sum(p.finished for p in plan)
    log.info(f"study {study.name} ({version}): {len(plan)} runs, {done} finished; folder {ctx.out}")
    log.info(f"data: {ctx.data} ({ctx.train_size:,} training / {ctx.test_size:,} test images, "
             f"{len(ctx.classes)} classes)")  # fmt: skip
    about = study.describe(ctx)
    if about:
        log.info(about)
    if study.runtime and not ctx.quick:
        log.info(f"stated runtime of the full version: {study.runtime}")
    where = f"{jobs} job(s) on {', '.join(sorted(set(devices)))}, {threads} thread(s) each"
    log.info(f"{'run':<28} {'steps':>13} {'estimate':>9}")
    for p in plan:
        state = "finished" if p.finished else f"{p.done_steps}/{p.spec.steps}"
        shown = "-" if p.finished else format_duration(p.estimate_s)
        log.info(f"{p.spec.name:<28} {state:>13} {shown:>9}")
    log.info(f"estimated runtime: {format_duration(estimate)} with {where} (timing probe of each model plus its "
             "evaluations; expect +-20%)")  # fmt: skip


# ------------------------------------------------------------------------------------------------- the runs
def _announce_start(k: int, n: int, p: PlannedRun, device: str) -> None:
    resumed = f", resuming at step {p.done_steps}" if p.done_steps else ""
    log.info(f"run {k}/{n} {p.spec.name}: {p.spec.steps} steps on {device}{resumed} (~{format_duration(p.estimate_s)})")


def _announce_end(k: int, n: int, record: RunRecord, start: float) -> None:
    top1 = record.final.get("top1")
    shown = f"top-1 {100 * top1:.2f}%, " if top1 is not None else ""
    log.info(f"run {k}/{n} {record.name}: finished, {shown}{format_duration(record.wall_seconds)} "
             f"(study {format_duration(time.perf_counter() - start)} so far)")  # fmt: skip


def _run_parallel(study: Study, pending: list[PlannedRun], ctx: StudyContext, devices: list[str], jobs: int,
                  threads: int, start: float) -> None:  # fmt: skip
    """One process per job (spawned, so CUDA works in each); a slot's device goes to the run that takes it."""
    queue, free, running = list(pending), list(range(jobs)), {}
    failed: list[str] = []
    n, started, finished = len(pending), 0, 0
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        while queue or running:
            while queue and free and not failed:
                slot, p = free.pop(0), queue.pop(0)
                started += 1
                _announce_start(started, n, p, devices[slot])
                future: Future = pool.submit(train_run, study, p.spec, ctx, devices[slot], threads, (), True)
                running[future] = (slot, p)
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                slot, p = running.pop(future)
                free.append(slot)
                try:
                    record = future.result()
                except Exception as err:  # noqa: BLE001 - reported once the runs in progress have ended
                    failed.append(f"{p.spec.name} ({type(err).__name__}: {err})")
                    log.error(f"run {p.spec.name} failed: {err}; waiting for the runs in progress to end")
                    continue
                finished += 1
                _announce_end(finished, n, record, start)
    if failed:
        raise RuntimeError(f"study {study.name}: run(s) failed: {'; '.join(failed)}; fix the cause and run the same "
                           "command again to continue (finished runs are kept)")  # fmt: skip


class StudyProgress(Callback):
    """A run's start and a line at every quarter of its steps, each prefixed with the run's name."""

    def __init__(self, name: str, every: float = 0.25) -> None:
        self.name, self.every = name, every

    def _next(self, trainer: Any) -> float:
        return (trainer.global_step / max(trainer.total_steps, 1) // self.every + 1) * self.every

    def on_start(self, trainer: Any) -> None:
        t = trainer
        self.start, self.first, self.next = time.perf_counter(), t.global_step, self._next(t)
        epochs = f"{t.num_epochs} epoch(s) of {t.steps_per_epoch} steps"
        log.info(f"[{self.name}] training to step {t.total_steps} ({epochs}) on {t.device}")

    def on_step(self, trainer: Any, row: dict[str, Any]) -> None:
        t = trainer
        if t.global_step < self.next * t.total_steps - 1e-9 or t.global_step >= t.total_steps:
            return
        self.next = self._next(t)
        spent = time.perf_counter() - self.start
        eta = spent / max(t.global_step - self.first, 1) * (t.total_steps - t.global_step)
        log.info(f"[{self.name}] step {t.global_step}/{t.total_steps}  loss {row['loss']:.3f}  "
                 f"{row['img_per_s']:.0f} img/s  ETA {format_duration(eta)}")  # fmt: skip


def for_device(recipe: Recipe, device: str, threads: int | None) -> Recipe:
    """The run's recipe on this machine: its device, threads and attention kernel: plain softmax attention on CPUs
    (for these 64-token models in bf16 on the 2-core Xeon with AMX: 240 against 390 ms per ViT step with PyTorch's
    pick; about even in float32), PyTorch's pick on GPUs. Precision stays 'auto': bf16 on GPUs and on CPUs with AMX,
    float32 elsewhere."""
    backend = "math" if torch.device(device).type == "cpu" else "auto"
    return replace(recipe, train=replace(recipe.train, threads=threads, device=device, sdpa_backend=backend))


@contextmanager
def _engine_quiet():
    """The engine's per-epoch lines hidden (short epochs of small subsets would print hundreds); warnings stay."""
    logger = logging.getLogger("vitkit.train")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def train_run(
    study: Study,
    spec: RunSpec,
    ctx: StudyContext,
    device: str = "cpu",
    threads: int | None = None,
    callbacks: Sequence[Callback] = (),
    worker: bool = False,
) -> RunRecord:
    """Train (or resume) one run of ``study`` and write its ``result.json``; the study's analysis of the trained
    model is stored with it. Runs in the study's process or in a worker process (``worker``)."""
    from vitkit.train.run import train_model

    console_logging()
    if worker:
        torch.set_num_threads(threads or 1)
    folder = ctx.run_dir(spec.name)
    recipe = for_device(spec.recipe, device, threads)
    resume = (folder / "checkpoints" / "last.pt").is_file()
    with _engine_quiet():
        result = train_model(recipe, resume=resume, run_dir=folder,
                             callbacks=[StudyProgress(spec.name), *study.callbacks(spec, ctx), *callbacks])  # fmt: skip
    model = result.ema_model or result.model
    final, wall = final_numbers(folder)
    record = RunRecord(
        name=spec.name,
        folder=folder,
        labels=dict(spec.labels),
        final=final,
        steps=result.global_step,
        params=parameter_count(model),
        ms_per_step=logged_ms_per_step(folder, recipe.train.batch_size),
        wall_seconds=wall,
        mflops=forward_mflops(model, recipe.data.img_size),
    )
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        record.extra = study.analyse(model.eval(), record, ctx, device)
    finally:
        torch.set_num_threads(before)
    atomic_write_text(json.dumps(record.to_dict(), indent=1) + "\n", folder / RESULT_FILE)
    return record
