"""Can the tiny teacher learn to read the demo's frames? Fit it on a fresh stream of task items.

``fit_teacher`` fits the tiny teacher on the cached training videos, and on held-out videos it
answers at chance (RESULTS.md 2026-12-07). This probe asks whether that is a data problem
(too few videos: memorised) or a learning problem: it draws a *new* item from the task's
generator for every sample of every step (``plan_item("train", i, seed, config)``, i never
repeats), renders its k frames directly from the video spec (the answer-bearing event frames
plus random event-free frames; no video encode, no cache), and every ``--eval-every`` steps
measures accuracy on 96 held-out items (the test split of another seed) through the model's
own forward, options shuffled or in the vocabulary's order (``--fixed``).

Also (``--linear-probe``): a linear classifier of the event's colour on the *untrained* vision
tower's features of one event frame (200 train, 100 test), which says whether the frames'
colour reaches the language model at initialisation.

    python benchmarks/probe_teacher_fit.py --steps 3000 --fixed --json benchmarks/results/x.json
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

from _common import write_json


def n_options_at(schedule: str, step: int) -> int:
    """``"2:500,3:1000,5"`` → 2 options before step 500, 3 before 1000, then 5."""
    for part in schedule.split(","):
        if ":" not in part:
            return int(part)
        n, until = map(int, part.split(":"))
        if step < until:
            return n
    raise ValueError(f"--n-options {schedule!r} must end with a plain count")


def render(item, k: int, rng: random.Random):
    """uint8 [k, 3, H, W] frames of ``item`` (one frame inside each answer-bearing event, the rest
    event-free) and their times in seconds."""
    import numpy as np
    import torch

    from hfs.pipeline.demo.task import video_fill

    spec = item.video
    width, height = spec.size
    hits = [rng.randrange(spec.events[e].start_frame, spec.events[e].end_frame) for e in item.answer_events]
    busy = {i for ev in spec.events for i in range(ev.start_frame, ev.end_frame)}
    quiet = [i for i in range(spec.n_frames) if i not in busy]
    indices = sorted(hits + rng.sample(quiet, k - len(hits)))
    fill = video_fill(spec)
    frames = np.stack([fill(i, height, width) for i in indices])
    return torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous(), [i / spec.fps for i in indices]


def linear_probe(teacher, seed: int) -> float:
    """Test accuracy of a linear colour classifier on the untrained vision tower's features."""
    import torch

    from hfs.pipeline.demo.task import COLOURS, TaskConfig, plan_item, video_fill

    config = TaskConfig(kinds=("colour",))
    feats, labels = [], []
    for i in range(300):
        item = plan_item("train", i, seed, config)
        spec, event = item.video, item.video.events[0]
        frame = video_fill(spec)((event.start_frame + event.end_frame) // 2, spec.size[1], spec.size[0])
        encoded = teacher.encode_batch([torch.from_numpy(frame).permute(2, 0, 1)[None]], [item.question],
                                       [list(item.options)], [[0.0]])
        _, vision = teacher.collate(encoded)
        with torch.no_grad():
            out = teacher.hf_model.model.get_image_features(vision["pixel_values"], vision["image_grid_thw"])
        out = getattr(out, "pooler_output", out)
        out = out[0] if isinstance(out, (list, tuple)) else out
        feats.append(torch.as_tensor(out).float().mean(0))
        labels.append(list(COLOURS).index(event.colour))
    x, y = torch.stack(feats), torch.tensor(labels)
    x = (x - x[:200].mean(0)) / (x[:200].std(0) + 1e-6)
    head = torch.nn.Linear(x.shape[1], len(COLOURS))
    opt = torch.optim.Adam(head.parameters(), 1e-2)
    for _ in range(500):
        loss = torch.nn.functional.cross_entropy(head(x[:200]), y[:200])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return float((head(x[200:]).argmax(1) == y[200:]).float().mean())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3000, help="optimiser steps")
    ap.add_argument("--lr", type=float, default=1e-3, help="AdamW peak learning rate (linear warm-up)")
    ap.add_argument("--warmup", type=int, default=100, help="warm-up steps")
    ap.add_argument("--batch", type=int, default=8, help="items per step (each one new)")
    ap.add_argument("--k", type=int, default=4, help="frames shown per item")
    ap.add_argument("--kinds", default="colour,shape", help="task kinds, comma-separated")
    ap.add_argument("--n-options", default="5", help='options per training item, e.g. "2:500,3:1000,5" (curriculum)')
    ap.add_argument("--fixed", action="store_true", help="options in the vocabulary's order (a letter names a colour)")
    ap.add_argument("--scoring", choices=("letter", "option_text"), default="letter",
                    help="how the teacher answers (Teacher.answer_scoring): the letter's logit, or each option "
                         "text's log-likelihood through Teacher.forward")
    ap.add_argument("--qk-scale", type=float, default=1.0,
                    help="multiply the language model's q/k projection weights at initialisation (sharper attention)")
    ap.add_argument("--eval-every", type=int, default=500, help="steps between held-out measurements")
    ap.add_argument("--linear-probe", action="store_true", help="also run the linear colour probe at initialisation")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="write the curve here")
    args = ap.parse_args(argv)

    import torch

    from hfs.pipeline.demo.task import TaskConfig, plan_item
    from hfs.pipeline.demo.teacher import permuted
    from hfs.pipeline.model.teachers import load_teacher
    from hfs.pipeline.model.teachers.base import letter_token_ids

    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    kinds = tuple(args.kinds.split(","))
    teacher = load_teacher("qwen2_5_vl", "tiny-qwen2_5_vl", lora_r=0)
    model = teacher.hf_model
    probe = linear_probe(teacher, args.seed + 7) if args.linear_probe else None
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.requires_grad_(True)
            if "visual" not in name and name.endswith(("q_proj.weight", "k_proj.weight")):
                p.mul_(args.qk_scale)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / args.warmup))
    letters = torch.tensor(letter_token_ids(teacher.tokenizer, 5))

    teacher.answer_scoring = args.scoring
    teacher.train_vision = True

    def ask(items, frames, options):
        if args.scoring == "option_text":  # [B, C] option scores from the teacher's own forward
            return teacher([f[0] for f in frames], torch.ones(len(items), len(frames[0][0])),
                           [it.question for it in items], [o[0] for o in options], [f[1] for f in frames]).option_logits
        encoded = teacher.encode_batch([f[0] for f in frames], [it.question for it in items], [o[0] for o in options],
                                       [f[1] for f in frames])
        inputs, vision = teacher.collate(encoded)
        logits = model(**inputs, **vision).logits
        ends = torch.tensor([e.prompt_len - 1 for e in encoded])
        return logits[torch.arange(len(items)), ends][:, letters[:len(options[0][0])]]

    def order(item, r):
        return (list(item.options), item.answer_index) if args.fixed else permuted(list(item.options),
                                                                                    item.answer_index, r)

    test_rng = random.Random(123)
    test_config = TaskConfig(kinds=kinds, shuffle_options=not args.fixed)
    test = [plan_item("test", i, 10_000 + args.seed, test_config) for i in range(96)]
    test_frames = [render(it, args.k, test_rng) for it in test]
    test_options = [order(it, test_rng) for it in test]

    def accuracy() -> float:
        model.eval()
        right = 0
        with torch.no_grad():
            for s in range(0, len(test), 16):
                z = ask(test[s:s + 16], test_frames[s:s + 16], test_options[s:s + 16])
                right += sum(int(row.argmax()) == o[1] for row, o in zip(z, test_options[s:s + 16]))
        model.train()
        return right / len(test)

    curve, losses, drawn, t0 = [], [], 0, time.perf_counter()
    for step in range(args.steps + 1):
        if step % args.eval_every == 0 or step == args.steps:
            acc = accuracy()
            mean_loss = sum(losses[-100:]) / len(losses[-100:]) if losses else None
            curve.append({"step": step, "heldout_accuracy": acc, "train_loss_last100": mean_loss,
                          "seconds": round(time.perf_counter() - t0, 1)})
            print(f"step {step:5d}  held-out accuracy {acc:.3f}  train loss {mean_loss or float('nan'):.3f}",
                  flush=True)
        if step == args.steps:
            break
        n = n_options_at(args.n_options, step)
        config = TaskConfig(kinds=kinds, shuffle_options=not args.fixed, n_options=n)
        items = [plan_item("train", drawn + j, args.seed, config) for j in range(args.batch)]
        drawn += args.batch
        options = [order(it, rng) for it in items]
        z = ask(items, [render(it, args.k, rng) for it in items], options)
        loss = torch.nn.functional.cross_entropy(z, torch.tensor([o[1] for o in options]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    if probe is not None:
        print(f"linear colour probe on the untrained vision features: {probe:.2f}")
    write_json(args.json, {"bench": "probe_teacher_fit", "settings": vars(args) | {"json": str(args.json)},
                           "linear_probe_accuracy": probe, "curve": curve})
    return 0


if __name__ == "__main__":
    sys.exit(main())
