"""HFSModel speed and memory: one training step and one selection-only forward.

    python benchmarks/bench_model.py [--quick] [--json out.json]           # tiny preset, CPU
    python benchmarks/bench_model.py --real --device cuda [--json out.json] # paper sizes, GPU
    python benchmarks/bench_model.py --real --device cpu --dry-run          # sizes only

Default: the tiny preset (pipeline/model/tiny.py) with both teachers on the CPU, N = 32
frames, k_sel = 4. ``--real``: the published configurations of Qwen2.5-1.5B-Instruct
(student) and Qwen2.5-VL-7B-Instruct / InternVL3-8B-hf (teachers), written out below
since nothing can be downloaded, with random weights in bf16; N = 128 frames of
448×252 (the cache's longest side 448), k_sel = 16 (paper). The tokenizer is the tiny
offline BPE in both modes (its ids fit the real vocabularies), so text is split into
more tokens than Qwen's tokenizer would; the token counts used are reported.

A training step is forward + backward of ``HFSModel.forward`` (the optimiser update is
not timed); selection is ``HFSModel.select`` (student only). Frames come from memory,
so decoding is not timed. Times are the median of ``--repeats`` runs after one warm-up.
Peak memory: CUDA ``max_memory_allocated``; on the CPU, the peak resident set above the
level before the measurement, sampled every 2 ms.

MFU counts matmul FLOPs only: 6·P·T for a training step and 2·P·T for a forward, where P
excludes embedding tables and LM heads (used at a few positions only) and T is the
tokens that pass through those parameters: pass A + pass B for the student, text +
visual tokens for the teacher's LM, and ViT patches for the frozen vision tower, which
only runs forward (2·P·T even in training). Attention score FLOPs are left out. Peak:
989 TFLOP/s (H100/H200 SXM, bf16 dense). ``--dry-run`` builds every model on the meta
device (no memory), counts parameters and tokens and prints the FLOPs per step.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import threading
import time
from pathlib import Path

import torch
from _common import write_json

PEAK_FLOPS = 989e12  # H100 SXM bf16 dense, FLOP/s
TEACHERS = ("qwen2_5_vl", "internvl")

# Qwen/Qwen2.5-1.5B-Instruct config.json
QWEN25_15B = dict(
    hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
    num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768, rms_norm_eps=1e-6,
    hidden_act="silu", tie_word_embeddings=True, initializer_range=0.02,
    rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
)
# Qwen/Qwen2.5-VL-7B-Instruct config.json (text part, then vision_config)
QWEN25_VL_7B_TEXT = dict(
    hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
    num_key_value_heads=4, vocab_size=152064, max_position_embeddings=128000, rms_norm_eps=1e-6,
    hidden_act="silu", initializer_range=0.02,
    rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
)
QWEN25_VL_7B_VISION = dict(
    depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, hidden_act="silu", in_channels=3,
    patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112, out_hidden_size=3584,
    fullatt_block_indexes=[7, 15, 23, 31], tokens_per_second=2,
)
# OpenGVLab/InternVL3-8B-hf config.json (Qwen2.5-7B text model, InternViT-300M vision)
INTERNVL3_8B_TEXT = dict(
    hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
    num_key_value_heads=4, vocab_size=151674, max_position_embeddings=32768, rms_norm_eps=1e-6,
    hidden_act="silu", initializer_range=0.02, tie_word_embeddings=False,
    rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
)
INTERNVL3_8B_VISION = dict(
    hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
    image_size=[448, 448], patch_size=[14, 14], hidden_act="gelu", layer_norm_eps=1e-6, norm_type="layer_norm",
    use_qk_norm=False, attention_bias=True, use_mean_pooling=True, layer_scale_init_value=0.1,
)
INTERNVL3_8B = dict(downsample_ratio=0.5, image_seq_length=256, projector_hidden_act="gelu",
                    vision_feature_layer=-1, vision_feature_select_strategy="default")

QUESTION = ("After the woman in the red coat puts the shopping bags into the car, what does the "
            "man standing next to the bicycle do before the two of them leave the parking lot?")
OPTIONS = ["He takes a photo of the street with his phone.", "He locks the bicycle to the fence and waves.",
           "He helps her close the trunk and gets into the car.", "He walks back into the shop to pay."]

log = logging.getLogger("bench_model")


# --- models ---------------------------------------------------------------------------------


def real_configs(kind: str):
    """(student Qwen2Config, teacher config) at the published sizes; special token ids are the
    tiny tokenizer's, so its placeholders are the ones the teacher looks for."""
    from transformers import InternVLConfig, InternVLVisionConfig, Qwen2_5_VLConfig, Qwen2Config

    from hfs.pipeline.model import tiny

    tok = tiny.build_tiny_tokenizer(internvl=kind == "internvl")
    ids = {t: tok.convert_tokens_to_ids(t) for t in (tiny.ENDOFTEXT, *tiny.EXTRA_SPECIAL_TOKENS)}
    special = dict(bos_token_id=ids[tiny.ENDOFTEXT], eos_token_id=ids[tiny.IM_END], pad_token_id=ids[tiny.ENDOFTEXT])
    student = Qwen2Config(**QWEN25_15B, **special)
    if kind == "qwen2_5_vl":
        teacher = Qwen2_5_VLConfig(
            text_config={**QWEN25_VL_7B_TEXT, **special}, vision_config=QWEN25_VL_7B_VISION,
            image_token_id=ids[tiny.IMAGE_PAD], video_token_id=ids[tiny.VIDEO_PAD],
            vision_start_token_id=ids[tiny.VISION_START], vision_end_token_id=ids[tiny.VISION_END],
            tie_word_embeddings=False,
        )
    elif kind == "internvl":
        teacher = InternVLConfig(
            vision_config=InternVLVisionConfig(**INTERNVL3_8B_VISION),
            text_config=Qwen2Config(**INTERNVL3_8B_TEXT, **special),
            image_token_id=ids[tiny.IMG_CONTEXT], tie_word_embeddings=False, **INTERNVL3_8B,
        )
    else:
        raise ValueError(f"unknown teacher {kind!r}")
    return student, teacher


def real_processor(kind: str):
    """The teachers' published image preprocessing around the tiny tokenizer."""
    from transformers import (
        GotOcr2ImageProcessor,
        InternVLProcessor,
        InternVLVideoProcessor,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    from hfs.pipeline.model import tiny

    if kind == "qwen2_5_vl":
        common = dict(patch_size=14, temporal_patch_size=2, merge_size=2, min_pixels=56 * 56, max_pixels=28 * 28 * 1280)
        return Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(**common),
                                   video_processor=Qwen2VLVideoProcessor(**common),
                                   tokenizer=tiny.build_tiny_tokenizer(), chat_template=tiny.QWEN_CHAT_TEMPLATE)
    size = {"height": 448, "width": 448}
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]  # InternVL3 preprocessor_config.json
    return InternVLProcessor(
        # The teacher asks for one tile per frame (TeacherConfig.max_tiles = 1, InternVL's video
        # setting); with max_tiles > 1 a 16:9 frame becomes 2 tiles + a thumbnail, 3 × 256 tokens.
        image_processor=GotOcr2ImageProcessor(size=size, min_patches=1, max_patches=12,
                                              image_mean=mean, image_std=std),
        video_processor=InternVLVideoProcessor(size=size), tokenizer=tiny.build_tiny_tokenizer(internvl=True),
        image_seq_length=256, chat_template=tiny.INTERNVL_CHAT_TEMPLATE,
    )


def build_real(kind: str, device: str, dtype: torch.dtype):
    """HFSModel at paper sizes with random weights on ``device`` ("meta": nothing allocated)."""
    from peft import LoraConfig
    from transformers import InternVLForConditionalGeneration, Qwen2_5_VLForConditionalGeneration, Qwen2ForCausalLM

    from hfs.pipeline.model import tiny
    from hfs.pipeline.model.hfs_model import HFSConfig, HFSModel, TeacherConfig
    from hfs.pipeline.model.student import Student, StudentConfig
    from hfs.pipeline.model.teachers import LORA_TARGETS, InternVLTeacher, QwenVLTeacher, TeacherScorer

    s_cfg, t_cfg = real_configs(kind)
    cfg = HFSConfig(student=StudentConfig(name_or_path="Qwen/Qwen2.5-1.5B-Instruct"),
                    teacher=TeacherConfig(kind=kind))
    teacher_cls, model_cls = {
        "qwen2_5_vl": (QwenVLTeacher, Qwen2_5_VLForConditionalGeneration),
        "internvl": (InternVLTeacher, InternVLForConditionalGeneration),
    }[kind]
    with torch.device(device):
        torch.manual_seed(0)
        student_lm = Qwen2ForCausalLM._from_config(s_cfg, dtype=dtype)
        teacher_lm = model_cls._from_config(t_cfg, dtype=dtype)
        student = Student(cfg.student, student_lm, tiny.build_tiny_tokenizer())
        t = cfg.teacher
        lora = LoraConfig(r=t.lora_r, lora_alpha=t.lora_alpha, lora_dropout=t.lora_dropout,
                          target_modules=LORA_TARGETS, bias="none")
        teacher = teacher_cls(teacher_lm, real_processor(kind), teacher_cls.default_model, lora)
        teacher.max_tiles = t.max_tiles
        scorer = TeacherScorer(teacher.hidden_size, t.mlp_hidden)
    return HFSModel(cfg, student, teacher, scorer)


def build_tiny(kind: str, device: str):
    from hfs.pipeline.model.hfs_model import HFSConfig, HFSModel

    torch.manual_seed(0)
    return HFSModel.build(HFSConfig.tiny(teacher=kind), device=device)


# --- inputs -----------------------------------------------------------------------------------


def jpeg_frames(B: int, N: int, frame_size: tuple[int, int]) -> list[list[bytes]]:
    """B videos of N JPEG frames (width, height) as the cache stores them for the teacher."""
    from torchvision.io import encode_jpeg

    w, h = frame_size
    out = []
    for b in range(B):
        g = torch.Generator().manual_seed(b)
        base = torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8)
        out.append([encode_jpeg(base.roll(i, dims=2), quality=90).numpy().tobytes() for i in range(N)])
    return out


def make_batch(B: int, N: int, frame_size: tuple[int, int]):
    """A micro-batch of B questions over N frames: random CLIP features, JPEG teacher frames."""
    from hfs.pipeline.model.hfs_model import Batch

    g = torch.Generator().manual_seed(B)
    return Batch(
        features=torch.randn(B, N, 512, generator=g),
        timestamps=torch.linspace(0.5, 600.0, N).expand(B, N).clone(),
        questions=[QUESTION] * B, options=[list(OPTIONS) for _ in range(B)],
        answer_index=torch.tensor([2] * B), answers=[OPTIONS[2]] * B,
        frames=jpeg_frames(B, N, frame_size),
    )


def token_counts(model, batch) -> dict[str, int]:
    """Tokens through each model for one step: student passes A and B, teacher LM, ViT patches."""
    student, k = model.student, model.cfg.selection.k
    text = student.text_inputs(batch.questions, batch.options, device="cpu")
    K, N = student.cfg.num_task_queries, batch.features.shape[1]
    pass_a = int(text.task_lengths.sum()) if K else 0
    pass_b = int((N + text.qa_lengths + K + 1).sum())
    from hfs.pipeline.model.frames import decode_jpegs

    images = [decode_jpegs(batch.frames[b][:k]) for b in range(len(batch))]
    times = batch.timestamps[:, :k].tolist()
    samples = model.teacher.encode_batch(images, batch.questions, batch.options, times)
    teacher_lm = sum(len(s.input_ids) for s in samples)
    pv = [s.vision["pixel_values"] for s in samples]
    if pv[0].dim() == 4:  # InternVL: [tiles, 3, H, W] → patches (+ CLS) per tile
        cfg = model.teacher.hf_model.config.vision_config
        per_tile = (cfg.image_size[0] // cfg.patch_size[0]) * (cfg.image_size[1] // cfg.patch_size[1]) + 1
        patches = sum(p.shape[0] * per_tile for p in pv)
    else:  # Qwen2.5-VL: one row per (temporal-merged) patch
        patches = sum(p.shape[0] for p in pv)
    return {"student_pass_a": pass_a, "student_pass_b": pass_b, "teacher_lm": teacher_lm, "vision_patches": patches}


def _matmul_params(module: torch.nn.Module, skip: tuple[torch.nn.Module, ...]) -> int:
    skip_ids = {id(p) for m in skip if m is not None for p in m.parameters()}
    return sum(p.numel() for p in module.parameters() if id(p) not in skip_ids)


def param_counts(model) -> dict[str, int]:
    """Matmul parameters of each part (embeddings and LM heads excluded) and trainable ones."""
    s_lm = model.student.lm.get_base_model()
    t_hf = model.teacher.hf_model
    vision = t_hf.model.visual if hasattr(t_hf.model, "visual") else t_hf.model.vision_tower
    projector = getattr(t_hf.model, "multi_modal_projector", None)
    lm_skip = (t_hf.get_input_embeddings(), t_hf.get_output_embeddings(), vision)
    trainable = sum(p.numel() for ps in model.trainable_parameters().values() for p in ps)
    return {
        "student": _matmul_params(s_lm, (s_lm.get_input_embeddings(), s_lm.get_output_embeddings())),
        "teacher_lm": _matmul_params(t_hf, lm_skip + ((projector,) if projector is not None else ())),
        "vision": _matmul_params(vision, ()) + (_matmul_params(projector, ()) if projector is not None else 0),
        "trainable": trainable,
    }


def step_flops(params: dict[str, int], tokens: dict[str, int], path: str) -> float:
    """Matmul FLOPs of one ``path`` ("train" or "select"), see the module docstring."""
    student_tokens = tokens["student_pass_a"] + tokens["student_pass_b"]
    if path == "select":
        return 2.0 * params["student"] * student_tokens
    return (6.0 * params["student"] * student_tokens + 6.0 * params["teacher_lm"] * tokens["teacher_lm"]
            + 2.0 * params["vision"] * tokens["vision_patches"])


# --- measuring --------------------------------------------------------------------------------


class _RSSPeak:
    """Peak resident set (bytes) above the level at start, sampled in a thread."""

    def __enter__(self):
        self.base = self.peak = self._rss()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.peak = max(self.peak, self._rss())

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096

    def _run(self):
        while not self.stop.wait(0.002):
            self.peak = max(self.peak, self._rss())

    @property
    def extra(self) -> int:
        return self.peak - self.base


def measure(fn, device: str, repeats: int) -> tuple[float, float]:
    """(median seconds, peak MiB) of ``fn()`` after one warm-up call."""
    cuda = device.startswith("cuda")
    fn()
    times, peak = [], 0
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            fn()
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
            peak = max(peak, torch.cuda.max_memory_allocated())
        else:
            with _RSSPeak() as rss:
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            peak = max(peak, rss.extra)
    return statistics.median(times), peak / 2**20


def train_step(model, batch):
    def run():
        model.zero_grad(set_to_none=True)
        terms, _ = model(batch, step=0, steps_per_epoch=100, generator=torch.Generator().manual_seed(0))
        terms.total.backward()
    return run


def select_step(model, batch):
    return lambda: model.select(batch.features, batch.questions, batch.options)


def bench_teacher(kind: str, args) -> list[dict]:
    real = args.real
    device = "meta" if args.dry_run else args.device
    t0 = time.perf_counter()
    model = build_real(kind, device, torch.bfloat16) if real else build_tiny(kind, device)
    log.info("built %s (%s) in %.1f s", kind, "real" if real else "tiny", time.perf_counter() - t0)
    model.train()
    N, frame_size = (128, (448, 252)) if real else (32, (64, 48))
    params = param_counts(model)
    rows = []
    for B in args.batch_sizes:
        batch = make_batch(B, N, frame_size)
        tokens = token_counts(model, batch)
        for path, make in (("train", train_step), ("select", select_step)):
            flops = step_flops(params, tokens, path)
            row = {"teacher": kind, "sizes": "real" if real else "tiny", "path": path, "micro_batch": B,
                   "frames": N, "k_sel": model.cfg.selection.k, **{f"tokens_{k}": v for k, v in tokens.items()},
                   **{f"params_{k}": v for k, v in params.items()}, "tflop": flops / 1e12}
            if not args.dry_run:
                try:
                    seconds, peak_mib = measure(make(model, batch), args.device, args.repeats)
                    row.update(seconds=seconds, peak_mib=peak_mib, mfu=flops / seconds / PEAK_FLOPS)
                except torch.OutOfMemoryError as err:  # a row that does not fit is a result, not a crash
                    log.warning("%s %s B=%d: out of memory (%s)", kind, path, B, str(err).splitlines()[0])
                    row["oom"] = True
                    model.zero_grad(set_to_none=True)
                    if args.device.startswith("cuda"):
                        torch.cuda.empty_cache()
            rows.append(row)
            log.info("%s", row)
    del model
    if args.device.startswith("cuda") and not args.dry_run:
        torch.cuda.empty_cache()
    return rows


def _count(n: int) -> str:
    return f"{n / 1e9:.3f} B" if n >= 1e8 else f"{n / 1e6:.3f} M"


def _cells(r: dict) -> list[str]:
    train = r["path"] == "train"
    timed = "seconds" in r
    return [
        r["teacher"], r["path"], str(r["micro_batch"]),
        f"{r['tokens_student_pass_a']}+{r['tokens_student_pass_b']}",
        str(r["tokens_teacher_lm"]) if train else "-",
        str(r["tokens_vision_patches"]) if train else "-",
        f"{r['tflop']:.3g}",
        f"{r['seconds'] * 1e3:.0f}" if timed else ("out of memory" if r.get("oom") else "-"),
        f"{r['peak_mib']:.0f}" if timed else "-",
        f"{r['mfu']:.2%}" if timed else "-",
    ]


def print_table(rows: list[dict], title: str) -> None:
    print(f"\n### {title}\n")
    print("| teacher | path | B | student tok (A+B) | teacher tok | ViT patches | TFLOP | time ms | peak MiB | MFU |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(_cells(r)) + " |")
    for kind in dict.fromkeys(r["teacher"] for r in rows):
        p = next(r for r in rows if r["teacher"] == kind)
        print(f"\n{kind}: matmul parameters student {_count(p['params_student'])}, teacher LM "
              f"{_count(p['params_teacher_lm'])}, vision {_count(p['params_vision'])}; "
              f"trainable {_count(p['params_trainable'])}")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real", action="store_true", help="paper sizes (random bf16 weights) instead of the tiny preset")
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    ap.add_argument("--dry-run", action="store_true", help="build on the meta device, count params/tokens/FLOPs only")
    ap.add_argument("--teachers", nargs="+", default=list(TEACHERS), choices=TEACHERS)
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--repeats", type=int, default=None, help="timed runs per row (default 3, --quick 1)")
    ap.add_argument("--quick", action="store_true", help="one timed run per row")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--json", type=Path, default=None, help="write the rows here")
    args = ap.parse_args(argv)
    args.repeats = args.repeats or (1 if args.quick else 3)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if args.real and not args.dry_run and not args.device.startswith("cuda"):
        ap.error("--real needs --device cuda (the 7-8B teachers do not fit a CPU run); use --dry-run to count")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error("--device cuda but torch sees no GPU")
    if args.threads:
        torch.set_num_threads(args.threads)
    gpu = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else f"cpu, {torch.get_num_threads()} threads"
    rows: list[dict] = []
    result = {"bench": "model", "real": args.real, "dry_run": args.dry_run, "device": args.device,
              "device_name": gpu, "peak_flops": PEAK_FLOPS, "rows": rows}
    for kind in args.teachers:
        rows += bench_teacher(kind, args)
        write_json(args.json, result)  # after each teacher, so a run stopped half-way keeps what it measured
    title = (f"bench_model ({'paper sizes, random bf16' if args.real else 'tiny preset'}, "
             f"{'dry run' if args.dry_run else gpu})")
    print_table(rows, title)
    return result


if __name__ == "__main__":
    sys.exit(main() and 0)
