"""What can the tiny stand-in teacher learn to read, and how fast? A stream fit, held-out curves.

    OMP_NUM_THREADS=1 python benchmarks/probe_teacher_reading.py --name pair2 --task query --kinds query_pair \
        --n-events 5 --k-schedule 2:1.0 --steps 800 --json benchmarks/results/x.json

Builds the tiny Qwen2.5-VL teacher (optionally wider: ``--vision-width``, ``--vision-depth``,
``--text-width``, ``--text-layers``; processor pixel bounds ``--min-pixels``/``--max-pixels``),
fits every weight on a stream of new items of the demo's task generator (``render_item``: the
answer-bearing frames, distractor events while there is room, quiet frames; options shuffled,
answered by their text), k following ``--k-schedule``, and every ``--eval-every`` steps asks 64
held-out items (another seed) shown: the answer-bearing frames among 2, 4 and 16 (``oracle2``,
``oracle4``, ``oracle16``) and no answer-bearing frame among 16 (``none16``). Prints a JSON line
per evaluation (accuracy, mean CE of the right option, accuracy per question kind) and writes the
curve with ``--json``.

``--attr position`` asks instead where the (named) shape was: left, middle or right third.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
import time
from pathlib import Path

from _common import write_json

POSITIONS = ("left", "middle", "right")


def patch_tiny_sizes(args) -> None:
    """Make the tiny builders use the probe's widths, depths and pixel bounds (this process only)."""
    import hfs.pipeline.model.tiny as tiny

    text_kwargs, vl_config = tiny._text_config_kwargs, tiny.tiny_qwen_vl_config
    heads = max(4, args.text_width // 16)

    def text(vocab_size, ids):
        kw = text_kwargs(vocab_size, ids)
        kw.update(hidden_size=args.text_width, intermediate_size=2 * args.text_width,
                  num_hidden_layers=args.text_layers, num_attention_heads=heads, num_key_value_heads=2)
        return kw

    def vl():
        config = vl_config()
        v = config.vision_config
        v.hidden_size, v.intermediate_size, v.depth = args.vision_width, 2 * args.vision_width, args.vision_depth
        v.num_heads = max(2, args.vision_width // 16)
        v.fullatt_block_indexes = list(range(1, args.vision_depth, 2))
        half = args.text_width // heads // 2  # M-RoPE sections sum to half the head dim
        t = half // 4
        config.text_config.rope_parameters["mrope_section"] = [t, (half - t + 1) // 2, (half - t) // 2]
        return config

    def processor():
        from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

        common = dict(patch_size=14, temporal_patch_size=2, merge_size=2, min_pixels=args.min_pixels,
                      max_pixels=args.max_pixels)
        return Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(**common),
                                   tokenizer=tiny.build_tiny_tokenizer(),
                                   video_processor=Qwen2VLVideoProcessor(**common),
                                   chat_template=tiny.QWEN_CHAT_TEMPLATE)

    tiny._text_config_kwargs, tiny.tiny_qwen_vl_config, tiny._qwen_vl_processor = text, vl, processor


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", required=True, help="label of the run (and of its teacher folder under --work)")
    ap.add_argument("--task", choices=("single", "query"), default="query", help="the demo's task (task_config)")
    ap.add_argument("--kinds", default=None, help="question kinds instead of the task's, comma-separated")
    ap.add_argument("--n-events", type=int, default=None, help="events per query-kind video (min_gap_s 1.0)")
    ap.add_argument("--attr", choices=("position",), default=None, help="ask where the (named) shape was")
    ap.add_argument("--vision-width", type=int, default=32)
    ap.add_argument("--vision-depth", type=int, default=2)
    ap.add_argument("--text-width", type=int, default=64)
    ap.add_argument("--text-layers", type=int, default=2)
    ap.add_argument("--min-pixels", type=int, default=56 * 56)
    ap.add_argument("--max-pixels", type=int, default=112 * 112)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=16, help="new items per step")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--k-schedule", default="1:0.25,4:0.5,8:0.75,16:1.0", help="k:until-fraction,...")
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path(__file__).resolve().parent / "_work" / "teacher_reading")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    patch_tiny_sizes(args)

    import torch

    import hfs.pipeline.model.tiny as tiny
    from hfs.pipeline.demo.task import plan_item
    from hfs.pipeline.demo.teacher import FIT_SEED_OFFSET, fit_loss, k_at, render_item
    from hfs.pipeline.model.teachers import load_teacher
    from hfs.stages.demo import task_config

    config = task_config(args.task)
    if args.kinds:
        config = dataclasses.replace(config, kinds=tuple(args.kinds.split(",")))
    if args.n_events:
        config = dataclasses.replace(config, n_events=args.n_events, min_gap_s=1.0)

    def ask(item):
        """The item, or with ``--attr position`` the question where its (named) shape was."""
        if args.attr != "position":
            return item
        event = item.video.events[item.answer_events[0]]
        answer = POSITIONS[min(2, int(3 * event.centre[1] / item.video.size[0]))]
        question = ("Where was the shape?" if item.kind in ("colour", "shape")
                    else f"Where was the {event.colour} object?")
        options = list(POSITIONS)
        random.Random(item.index).shuffle(options)
        return dataclasses.replace(item, question=question, options=tuple(options),
                                   answer_index=options.index(answer))

    folder = args.work / args.name
    tiny.build_tiny_teacher("qwen2_5_vl", folder)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    teacher = load_teacher("qwen2_5_vl", str(folder), lora_r=0)
    teacher.answer_scoring, teacher.train_vision = "option_text", True
    model = teacher.hf_model
    for p in model.parameters():
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / max(1, args.warmup)))
    k_schedule = tuple((int(k), float(until)) for k, until in (p.split(":") for p in args.k_schedule.split(",")))
    test = [ask(plan_item("test", i, 12345, config)) for i in range(64)]
    views = {"oracle16": [render_item(it, 16, random.Random(1000 + i)) for i, it in enumerate(test)],
             "none16": [render_item(it, 16, random.Random(1000 + i), evidence=False) for i, it in enumerate(test)],
             "oracle4": [render_item(it, 4, random.Random(2000 + i)) for i, it in enumerate(test)],
             "oracle2": [render_item(it, 2, random.Random(3000 + i)) for i, it in enumerate(test)]}

    def answer(items, shown):
        k = len(shown[0][0])
        return teacher([f for f, _ in shown], torch.ones(len(shown), k), [it.question for it in items],
                       [list(it.options) for it in items], [t for _, t in shown]).option_logits

    def evaluate() -> dict:
        model.eval()
        out = {}
        with torch.no_grad():
            for name, shown in views.items():
                right, ce, kinds = 0, 0.0, {}
                for s in range(0, len(test), 16):
                    items, z = test[s:s + 16], answer(test[s:s + 16], shown[s:s + 16])
                    logp = z.log_softmax(-1)
                    for b, it in enumerate(items):
                        ok = int(z[b].argmax()) == it.answer_index
                        right, ce = right + ok, ce - float(logp[b, it.answer_index])
                        kinds.setdefault(it.kind, []).append(ok)
                out[name] = {"acc": round(right / len(test), 3), "ce": round(ce / len(test), 3),
                             **{k: round(sum(v) / len(v), 2) for k, v in kinds.items()}}
        model.train()
        return out

    curve, t0 = [], time.perf_counter()
    model.train()
    for step in range(args.steps + 1):
        if step % args.eval_every == 0 or step == args.steps:
            point = {**evaluate(), "step": step, "s": round(time.perf_counter() - t0)}
            curve.append(point)
            print(json.dumps(point), flush=True)
        if step == args.steps:
            break
        items = [ask(plan_item("train", step * args.batch + j, args.seed + FIT_SEED_OFFSET, config))
                 for j in range(args.batch)]
        k = max(k_at(k_schedule, step, args.steps), *(len(it.answer_events) for it in items))
        loss = fit_loss(answer(items, [render_item(it, k, rng) for it in items]), [it.answer_index for it in items],
                        [True] * len(items))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
    result = {"bench": "teacher_reading", "args": {k: str(v) for k, v in vars(args).items()},
              "parameters": sum(p.numel() for p in model.parameters()), "curve": curve}
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    sys.exit(main() and 0)
