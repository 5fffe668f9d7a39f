"""`hfs train` end to end on the tiny preset: learning, exact resume (also after SIGKILL), two
processes with gloo, skip accounting, non-finite steps, and the checkpoint checks."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from hfs.stages.cli import app
from hfs.stages.train import TIMING_KEYS

from colour_task import colour_records, extract, llava_record, write_colour_videos

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.xdist_group("train")]  # its fixtures are built once, on one worker; other modules run beside it


def train(args: list[str], expect: int = 0) -> str:
    res = CliRunner().invoke(app, args)
    assert res.exit_code == expect, res.output + repr(res.exception)
    return res.output


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def exact(lines: list[dict]) -> list[dict]:
    """Metrics lines without the fields that measure time."""
    return [{k: v for k, v in line.items() if k not in TIMING_KEYS} for line in lines]


def weights(run: Path, step: int) -> dict[str, torch.Tensor]:
    """Every trained tensor of checkpoint ``step``: both student adapters, heads, θ3, MLP_t."""
    model = run / "checkpoints" / f"step-{step:08d}" / "model"
    out = {}
    for f in sorted(model.rglob("*.safetensors")):
        out.update({f"{f.relative_to(model)}:{k}": v for k, v in load_file(str(f)).items()})
    assert out, f"no weights under {model}"
    return out


def assert_same_weights(a: dict, b: dict, atol: float = 0.0) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if atol:
            assert torch.allclose(a[k], b[k], atol=atol, rtol=0), f"{k}: max diff {(a[k] - b[k]).abs().max()}"
        else:
            assert torch.equal(a[k], b[k]), f"{k} differs: max diff {(a[k] - b[k]).abs().max()}"


@pytest.fixture(scope="module")
def run20(colour_task, tmp_path_factory) -> Path:
    """20 uninterrupted steps, a checkpoint every 5."""
    out = tmp_path_factory.mktemp("run20") / "run"
    train(colour_task.train_args(out, "--max-steps", "20", "--set", "train.checkpoint_every=5"))
    return out


def test_checkpoints_get_the_umask_mode(run20):
    """mkdtemp's 0700 is not what a run folder shared with colleagues should carry."""
    mask = os.umask(0)
    os.umask(mask)
    root = run20 / "checkpoints"
    for p in [root / "latest", *root.iterdir()]:
        want = (0o777 if p.is_dir() else 0o666) & ~mask
        assert p.stat().st_mode & 0o777 == want, (p, oct(p.stat().st_mode))


def test_loss_goes_down_on_a_learnable_task(colour_task, tmp_path):
    out = tmp_path / "run"
    train(colour_task.train_args(out, "--max-steps", "30", "--set", "train.checkpoint_every=30"))
    lines = metrics(out)
    assert [m["step"] for m in lines] == list(range(1, 31))
    first = sum(m["total"] for m in lines[:5]) / 5
    last = sum(m["total"] for m in lines[-5:]) / 5
    assert last < 0.7 * first, (first, last)
    for key in ("ce", "kl", "set_objective", "relevance", "coverage", "redundancy", "sep", "tau", "lambda_kl",
                "lr", "grad_norm", "grad_norm_student", "grad_norm_teacher", "samples_per_s", "data_wait_frac"):
        assert all(m[key] is not None for m in lines), key
    assert lines[0]["tau"] == 2.0 and lines[-1]["tau"] == pytest.approx(2.0 * 0.999**29)
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["lr"] == 1e-3 and config["losses"]["lambda_set"] == 1e-4


def test_resume_continues_exactly(colour_task, run20, tmp_path):
    out = tmp_path / "run"
    train(colour_task.train_args(out, "--max-steps", "10", "--set", "train.checkpoint_every=5"))
    train(colour_task.train_args(out, "--max-steps", "20", "--set", "train.checkpoint_every=5", "--resume"))
    assert exact(metrics(out)) == exact(metrics(run20))
    assert_same_weights(weights(out, 20), weights(run20, 20))


def test_resume_after_sigkill_between_checkpoints(colour_task, run20, tmp_path):
    out = tmp_path / "run"
    args = colour_task.train_args(out, "--max-steps", "20", "--set", "train.checkpoint_every=5")
    proc = subprocess.Popen([sys.executable, "-m", "hfs.stages.cli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        done = len((out / "metrics.jsonl").read_text().splitlines()) if (out / "metrics.jsonl").exists() else 0
        if done >= 7:  # past the checkpoint at 5, before the one at 10
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    assert len(metrics(out)) > 5  # work past the last checkpoint was lost...
    train(colour_task.train_args(out, "--max-steps", "20", "--set", "train.checkpoint_every=5", "--resume"))
    assert exact(metrics(out)) == exact(metrics(run20))  # ...and redone exactly
    assert_same_weights(weights(out, 20), weights(run20, 20))
    assert not list((out / "checkpoints").glob(".*tmp*"))


def interrupted_copy(run: Path, dest: Path, step: int) -> Path:
    """A copy of ``run`` as if it had been killed just after checkpoint ``step``."""
    shutil.copytree(run, dest)
    for ckpt in (dest / "checkpoints").glob("step-*"):
        if int(ckpt.name.split("-")[1]) > step:
            shutil.rmtree(ckpt)
    (dest / "checkpoints" / "latest").write_text(f"step-{step:08d}\n")
    return dest


def test_a_longer_resume_keeps_the_cosine_schedule_unless_asked_to_stretch_it(colour_task, tmp_path, caplog):
    """Killed at step 4 of 8 and resumed with --max-steps 12: steps 5..8 are the uninterrupted run's
    (same lr, same weights), steps 9..12 train at the cosine's end (lr 0) with a warning; with
    --reschedule the cosine stretches to 12 steps from the resume point."""
    from hfs.pipeline.model.schedules import learning_rate

    cosine = ["--set", "train.lr_schedule=cosine", "--set", "train.checkpoint_every=4",
              "--set", "train.keep_checkpoints=3"]
    full = tmp_path / "full"
    train(colour_task.train_args(full, "--max-steps", "8", *cosine))
    kept = interrupted_copy(full, tmp_path / "kept", 4)
    with caplog.at_level(logging.INFO, logger="hfs.stages.train"):
        train(colour_task.train_args(kept, "--max-steps", "12", *cosine, "--resume"))
    assert "keeps the learning-rate schedule of 8 steps" in caplog.text and "--reschedule" in caplog.text
    lines = metrics(kept)
    assert exact(lines[:8]) == exact(metrics(full))
    assert_same_weights(weights(kept, 8), weights(full, 8))
    assert [m["lr"] for m in lines[8:]] == [0.0] * 4
    state = torch.load(kept / "checkpoints" / "step-00000012" / "trainer_state.pt", weights_only=False)
    assert state["schedule_steps"] == 8

    caplog.clear()
    stretched = interrupted_copy(full, tmp_path / "stretched", 4)
    with caplog.at_level(logging.INFO, logger="hfs.stages.train"):
        train(colour_task.train_args(stretched, "--max-steps", "12", *cosine, "--resume", "--reschedule"))
    assert "stretches the learning-rate schedule from 8 to 12 steps" in caplog.text
    lrs = [m["lr"] for m in metrics(stretched)]
    assert lrs[4:] == pytest.approx([learning_rate(s, 12, 1e-3, 0, "cosine") for s in range(4, 12)])
    assert lrs[:4] == [m["lr"] for m in metrics(full)][:4]


def test_checkpoints_saved_before_the_schedule_length_and_the_data_fingerprint_still_resume(tmp_path, caplog):
    from hfs.pipeline.train.config import TrainConfig
    from hfs.stages.train import TrainError, check_same_data, resumed_schedule_steps

    cosine = TrainConfig(lr_schedule="cosine")
    for old, want in (({"max_steps": 8, "epochs": 1}, 8), ({"max_steps": None, "epochs": 3}, 12)):
        state = {"step": 4, "config": {"train": old}}  # no schedule_steps: the saved config decides
        assert resumed_schedule_steps(state, 20, 4, cosine, reschedule=False, main=True) == want
    fingerprint = {"samples": 16, "sample_ids_sha256": "a" * 64, "order_sha256": "b" * 64}
    (tmp_path / "data.json").write_text(json.dumps({"kept": 16}))  # no fingerprint: cannot check, says so
    with caplog.at_level(logging.WARNING, logger="hfs.stages.train"):
        check_same_data({"step": 4}, tmp_path, fingerprint, new_data=False, main=True)
    assert "predates the training data's fingerprint" in caplog.text
    (tmp_path / "data.json").write_text(json.dumps({**fingerprint, "samples": 15}))
    with pytest.raises(TrainError, match="15 training samples.*now give 16"):
        check_same_data({"step": 4}, tmp_path, fingerprint, new_data=False, main=True)
    with pytest.raises(TrainError, match="the same samples in another order"):
        check_same_data({"step": 4, "data": {**fingerprint, "order_sha256": "c" * 64}}, tmp_path, fingerprint,
                        new_data=False, main=True)


def test_resuming_on_other_training_data_stops_unless_asked_to_go_on(colour_task, tmp_path):
    """A grown manifest changes every epoch's order: the resume names both sample counts and
    data.json, exit 2; --new-data continues on the new samples and records them."""
    out = tmp_path / "run"
    train(colour_task.train_args(out, "--max-steps", "2"))
    before = json.loads((out / "data.json").read_text())
    assert before["samples"] == 16 and len(before["sample_ids_sha256"]) == 64
    records = json.loads(colour_task.manifest.read_text())
    grown = tmp_path / "grown.json"
    grown.write_text(json.dumps(records + [{**r, "id": r["id"] + "-again"} for r in records]))

    def on_grown(*extra: str) -> list[str]:
        args = colour_task.train_args(out, *extra)
        args[args.index("--data") + 1] = str(grown)
        return args

    output = train(on_grown("--max-steps", "3", "--resume"), expect=2)
    assert "16" in output and "32" in output and "data.json" in output and "--new-data" in output
    assert json.loads((out / "data.json").read_text()) == before  # not overwritten by the refused run
    train(colour_task.train_args(out, "--max-steps", "3", "--resume"))  # the same data resumes as before
    train(on_grown("--max-steps", "4", "--resume", "--new-data"))
    assert json.loads((out / "data.json").read_text())["samples"] == 32
    assert len(metrics(out)) == 4
    state = torch.load(out / "checkpoints" / "step-00000004" / "trainer_state.pt", weights_only=False)
    assert state["data"]["samples"] == 32


@pytest.mark.parametrize("micro,eps", [(2, 1e-8), (1, 1e-3)], ids=["accumulation1", "accumulation2"])
def test_two_processes_reach_the_parameters_of_one_with_twice_the_accumulation(colour_task, tmp_path, micro, eps):
    """gloo on the CPU, batch 4: 2 processes × micro-batch 2 × accumulation 1 == 1 process × 2 × 2, and
    2 processes × 1 × 2 (DDP's no_sync on the first micro-batch) == 1 process × 1 × 4.

    With 4 micro-batches the gradients are summed in another order ((a+b)+(c+d) against
    ((a+b)+c)+d), and some of the student heads' gradient elements are ~1e-7 differences of
    terms near 1 (the relevance saturates), so float32 rounding is all there is of them; Adam
    with ε = 1e-8 scales those to full lr-sized steps of either sign. ε = 1e-3 leaves them at
    ~1e-7 of lr, so the parameters must agree while the student still moves."""
    common = ["--max-steps", "3", "--set", "student.lora_dropout=0.0", "--set", "teacher.lora_dropout=0.0",
              "--set", f"train.micro_batch_size={micro}", "--set", f"train.eps={eps}"]
    one = tmp_path / "one"
    train(colour_task.train_args(one, *common))
    two = tmp_path / "two"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "hfs.stages.cli", *colour_task.train_args(two, *common)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert_same_weights(weights(two, 3), weights(one, 3), atol=1e-5)
    student_b = [v for k, v in weights(one, 3).items() if k.startswith("student/adapters") and "lora_B" in k]
    assert max(float(v.abs().max()) for v in student_b) > 1e-4  # it trained (lora_B starts at 0)
    assert len(metrics(one)) == len(metrics(two)) == 3
    for a, b in zip(metrics(one), metrics(two)):
        assert a["total"] == pytest.approx(b["total"], rel=1e-6)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-5)


def test_the_step_moves_its_logged_numbers_to_the_host_once(colour_task, tmp_path, monkeypatch):
    """Loss terms, the finiteness check and the clip's norms wait for the device once per optimiser
    step (one stacked transfer), not at every term of every micro-batch (accumulation 2 here)."""
    import hfs.pipeline.model.losses
    import hfs.pipeline.train.clipping
    import hfs.stages.train

    logging_code = {os.path.realpath(m.__file__) for m in (hfs.stages.train, hfs.pipeline.train.clipping,
                                                           hfs.pipeline.model.losses)}
    syncs = []
    for name in ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__"):
        def counted(self, *args, _original=getattr(torch.Tensor, name), _name=name, **kwargs):
            caller = sys._getframe(1).f_code
            if os.path.realpath(caller.co_filename) in logging_code:
                syncs.append(f"{_name} in {caller.co_name}")
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    out = tmp_path / "run"
    train(colour_task.train_args(out, "--max-steps", "3", "--set", "train.checkpoint_every=3"))
    assert syncs == ["tolist in step_scalars"] * 3
    assert len(metrics(out)) == 3


def test_every_skip_reason_is_counted_and_training_goes_on(tmp_path):
    videos = write_colour_videos(tmp_path, n=4)
    (tmp_path / "videos" / "broken.mp4").write_bytes(b"not a video")
    records = colour_records(videos, per_video=2)
    records += [
        llava_record("broken", "videos/broken.mp4", "What colour is the screen?", ["red", "blue"], "A"),
        llava_record("nocache", "videos/v0.mp4", "What colour is the screen?", ["red", "blue"], "A"),
        llava_record("nooption", "videos/v1.mp4", "What colour is the screen?", ["red", "blue"], "green"),
        {"id": "malformed", "video": "videos/v2.mp4", "conversations": "not a list"},
    ]
    extract_manifest = tmp_path / "extract.json"
    extract_manifest.write_text(json.dumps(records[:-3]))  # broken.mp4 becomes an error row
    extract(extract_manifest, tmp_path / "cache")
    records[-3]["video"] = "videos/v9.mp4"  # a video the cache has never seen
    manifest = tmp_path / "train.json"
    manifest.write_text(json.dumps(records))
    out = tmp_path / "run"
    output = train(["train", "--cache", str(tmp_path / "cache"), "--data", str(manifest), "--out", str(out),
                    "--preset", "tiny", "--no-progress", "--device", "cpu", "--max-steps", "2",
                    "--set", "train.batch_size=4", "--set", "train.micro_batch_size=2", "--set", "train.num_workers=0"])
    report = json.loads((out / "data.json").read_text())
    assert report["kept"] == 8
    assert report["skipped_by_reason"] == {"video failed extraction": 1, "video not in the cache": 1,
                                           "answer matches no option": 1, "unreadable record": 1}
    for reason in report["skipped_by_reason"]:
        assert reason in output
    assert len(metrics(out)) == 2


def test_a_non_finite_loss_skips_the_update_and_is_counted(colour_task, tmp_path, monkeypatch):
    from hfs.pipeline.model.hfs_model import HFSModel

    forward = HFSModel.forward

    def poisoned(self, batch, step, *args, **kwargs):
        terms, selection = forward(self, batch, step, *args, **kwargs)
        if step == 1:
            terms.total = terms.total * float("nan")
        return terms, selection

    monkeypatch.setattr(HFSModel, "forward", poisoned)
    out = tmp_path / "run"
    train(colour_task.train_args(out, "--max-steps", "3", "--set", "train.checkpoint_every=1",
                                 "--set", "train.keep_checkpoints=3"))
    lines = metrics(out)
    assert [m["skipped"] for m in lines] == [False, True, False]
    assert lines[-1]["skipped_steps"] == 1
    assert_same_weights(weights(out, 2), weights(out, 1))  # the poisoned step changed nothing
    state = torch.load(out / "checkpoints" / "step-00000003" / "trainer_state.pt", weights_only=False)
    assert state["skipped_steps"] == 1


def test_resume_refuses_another_teacher_and_names_both(colour_task, tmp_path):
    out = tmp_path / "run"
    train(colour_task.train_args(out, "--max-steps", "1"))
    output = train(colour_task.train_args(out, "--max-steps", "2", "--resume", "--teacher", "internvl3"), expect=2)
    assert "teacher.kind" in output and "'qwen2_5_vl'" in output and "'internvl'" in output


def test_a_second_run_into_the_same_folder_needs_resume(colour_task, tmp_path):
    out = tmp_path / "run"
    train(colour_task.train_args(out, "--max-steps", "1"))
    output = train(colour_task.train_args(out, "--max-steps", "1"), expect=2)
    assert "--resume" in output


def test_usage_errors_name_the_problem(colour_task, tmp_path):
    output = train(colour_task.train_args(tmp_path / "r", "--set", "train.lr=fast"), expect=2)
    assert "train.lr" in output
    output = train(colour_task.train_args(tmp_path / "r", "--set", "losses.nope=1"), expect=2)
    assert "nope" in output
    args = colour_task.train_args(tmp_path / "r")
    args[args.index("--cache") + 1] = str(tmp_path / "nocache")
    assert "nocache" in train(args, expect=2)
    output = train(colour_task.train_args(tmp_path / "r", "--set", "train.batch_size=5"), expect=2)
    assert "batch_size" in output
    for flag in ("--reschedule", "--new-data"):
        output = train(colour_task.train_args(tmp_path / "r", flag), expect=2)
        assert flag in output and "--resume" in output


def test_missing_cache_or_data_is_named_before_any_model_is_looked_for(tmp_path):
    """A first try without the (absent) default models: the slip in the command is what is reported."""
    output = train(["train", "--cache", str(tmp_path / "nocache"), "--data", str(tmp_path / "d.json"),
                    "--out", str(tmp_path / "r")], expect=2)
    assert "--cache" in output and "nocache" in output and "Qwen" not in output
    (tmp_path / "cache").mkdir()
    output = train(["train", "--cache", str(tmp_path / "cache"), "--data", str(tmp_path / "d.json"),
                    "--out", str(tmp_path / "r")], expect=2)
    assert "--data" in output and "d.json" in output and "Qwen" not in output


def _agree(rank: int, port: int, results) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    from hfs.pipeline.train.distributed import Processes

    import torch.distributed as dist

    procs = Processes("cpu")
    calls = []
    all_reduce = dist.all_reduce
    dist.all_reduce = lambda *a, **k: calls.append(1) or all_reduce(*a, **k)
    step = (procs.agree_and_mean(rank == 1, [float(rank), 2.0, float("nan") if rank else 1.0]),
            procs.agree_and_mean(False, [float(rank)]))
    dist.all_reduce = all_reduce
    step = [(flag, [round(x, 6) if x == x else "nan" for x in values]) for flag, values in step]
    results[rank] = (procs.all_agree(rank == 1), procs.all_agree(False), procs.mean([float(rank), 2.0]), step,
                     len(calls))
    procs.close()


def test_every_process_agrees_to_skip_when_one_sees_a_non_finite_loss():
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = mp.Manager().dict()
    mp.start_processes(_agree, args=(port, results), nprocs=2, start_method="spawn")
    # the loop's step: the skip flag and the logged means in one all-reduce each time
    step = [(True, [0.5, 2.0, "nan"]), (False, [0.5])]
    assert dict(results) == {0: (True, False, [0.5, 2.0], step, 2), 1: (True, False, [0.5, 2.0], step, 2)}


def test_the_score_function_estimator_and_the_paper_path_train(colour_task, tmp_path):
    """`--set selection.estimator=score_function`: the loop draws R samples' noise per sample."""
    for name, sets in (("sf", ["selection.estimator=score_function", "selection.samples=2"]),
                       ("sigmoid", ["selection.score_path=sigmoid"])):
        out = tmp_path / name
        args = [a for s in sets for a in ("--set", s)]
        train(colour_task.train_args(out, "--max-steps", "2", "--set", "train.checkpoint_every=2", *args))
        lines = metrics(out)
        assert len(lines) == 2 and all(math.isfinite(m["total"]) for m in lines)
        assert json.loads((out / "config.json").read_text())["selection"][sets[0].split("=")[0].split(".")[1]] \
            == sets[0].split("=")[1]


def test_resuming_a_run_saved_before_the_score_path_option_names_the_path(colour_task, tmp_path):
    out = tmp_path / "run"
    train(colour_task.train_args(out, "--max-steps", "1", "--set", "selection.score_path=sigmoid"))
    for saved in [out / "config.json", *out.glob("checkpoints/*/model/hfs_config.json")]:  # as an old run wrote them
        config = json.loads(saved.read_text())
        for key in ("score_path", "logit_scale", "estimator", "samples"):
            del config["selection"][key]
        saved.write_text(json.dumps(config))
    output = train(colour_task.train_args(out, "--max-steps", "2", "--resume"), expect=2)
    assert "selection.score_path" in output and "'sigmoid'" in output and "'logit'" in output
    train(colour_task.train_args(out, "--max-steps", "2", "--resume", "--set", "selection.score_path=sigmoid",
                                 "--set", "selection.estimator=straight_through"))


def test_resuming_a_run_saved_before_the_clip_mode_option_names_its_global_clip(colour_task, tmp_path):
    out = tmp_path / "run"
    train(colour_task.train_args(out, "--max-steps", "1", "--set", "train.clip_mode=global"))
    config = json.loads((out / "config.json").read_text())
    del config["train"]["clip_mode"]  # as a run saved before the option
    (out / "config.json").write_text(json.dumps(config))
    output = train(colour_task.train_args(out, "--max-steps", "2", "--resume"), expect=2)
    assert "train.clip_mode" in output and "'global'" in output and "'per_group'" in output
    train(colour_task.train_args(out, "--max-steps", "2", "--resume", "--set", "train.clip_mode=global"))
    assert "grad_norm_student" not in metrics(out)[-1]


def _ground_truth(manifest: Path, path: Path, hits: tuple[int, ...] = (0, 5)) -> Path:
    """A ground_truth.jsonl giving every sample of ``manifest`` the grid hits ``hits``."""
    from hfs.manifests import read_manifests
    from hfs.pipeline.evaluation.recall import EventTruth, QuestionTruth

    samples = read_manifests([str(manifest)], video_root=str(manifest.parent)).samples
    event = EventTruth("red", "square", 0.0, 1.0, 0, 1, hits)
    lines = [json.dumps(QuestionTruth(s.sample_id, "train", None, "v.mp4", "colour", "single", s.question,
                                      tuple(s.options), 0, 1.0, 8.0, 8, 8, (event,)).to_json()) for s in samples]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_pseudo_label_supervision_trains_on_the_ground_truth_grid_hits(colour_task, tmp_path):
    """Table 7's row: BCE of the scores against frame labels read from ``train.frame_labels``."""
    sets = ["--set", "losses.supervision=pseudo_label", "--set", "losses.use_kl=false"]
    output = train(colour_task.train_args(tmp_path / "none", "--max-steps", "2", *sets), expect=2)
    assert "train.frame_labels" in output
    truth = _ground_truth(colour_task.manifest, tmp_path / "truth.jsonl")
    out = tmp_path / "run"
    train(colour_task.train_args(out, "--max-steps", "20", "--set", "train.checkpoint_every=20", *sets,
                                 "--set", f"train.frame_labels={truth}"))
    lines = metrics(out)
    assert len(lines) == 20 and lines[-1]["ce"] < lines[0]["ce"]
    partial = tmp_path / "partial.jsonl"
    partial.write_text(truth.read_text().splitlines()[0] + "\n")
    output = train(colour_task.train_args(tmp_path / "partial", "--max-steps", "2", *sets,
                                          "--set", f"train.frame_labels={partial}"), expect=2)
    assert "have no frame labels" in output
