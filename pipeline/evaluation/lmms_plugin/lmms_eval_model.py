"""lmms-eval's model ``hfs``: its Qwen2.5-VL, shown the frames an `hfs select` file chose.

    pip install -e '.[lmms-eval]'    # from a checkout of hfs
    lmms-eval --model hfs --model_args pretrained=Qwen/Qwen2.5-VL-7B-Instruct,selections=sel.jsonl \\
        --tasks videomme,longvideobench_val_v,mlvu_dev,nextqa_mc_test

Written against lmms-eval 0.7.3 (the PyPI wheel): ``lmms_eval/models/chat/qwen2_5_vl.py`` (the
class ``--model qwen2_5_vl`` resolves to) and qwen-vl-utils 0.0.14's ``fetch_video``. Everything
but the frames is lmms-eval's: the task's prompt and ``doc_to_messages``, the chat template,
greedy generation, the task's parser and metrics, so the figures are in lmms-eval's own
accounting.

The frames: lmms-eval's Qwen2.5-VL passes the video's path to qwen-vl-utils, which decodes
``max_num_frames`` frames spread evenly over it. Here, for a question the selections file holds
(``SelectionIndex.lookup``: benchmark from the task name, question id from the task's row, video
by file name), the video's path in the question's messages is replaced by the frames shown at
the line's ``timestamps_s``, decoded by hfs's own decoder (``hfs.pipeline.decode.iter_frames``,
the same that filled the cache the selector scored). qwen-vl-utils takes such a list of frames as
a video as it is (each resized by the model's ``min_pixels``/``max_pixels``; an odd count is
padded with the last frame; the clip is given its default 2 frames a second, since the chosen
frames are not evenly spaced). A question the file does not hold keeps lmms-eval's sampling,
with a warning; the counts are logged when the requests are done.

``--model_args``: lmms-eval's Qwen2.5-VL's (``pretrained``, ``max_num_frames``, ``max_pixels``,
...) and ``selections`` (the `hfs select` JSONL file; from a trained run, select with
``hfs select --selector hfs --run runs/NAME`` first). No model of lmms-eval's simple interface
is registered: ``--force_simple`` still gets this chat model.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, List, Optional

from lmms_eval.models.chat.qwen2_5_vl import Qwen2_5_VL
from PIL import Image

from hfs.pipeline.evaluation.lmms_plugin.selections import Selection, SelectionIndex, SelectionsError

log = logging.getLogger(__name__)

FRAME_LIST_FPS = 2.0
"""qwen-vl-utils' rate for a video given as a list of frames (its ``sample_fps`` default)."""


class HfsQwen2_5_VL(Qwen2_5_VL):
    """lmms-eval's chat Qwen2.5-VL with the frames of an hfs selections file."""

    is_simple = False

    def __init__(self, selections: Optional[str] = None, **kwargs) -> None:
        if not selections:
            raise SelectionsError("--model hfs needs selections=FILE in --model_args: the JSONL of `hfs select` "
                                  "(--bench NAME --data DIR) for the benchmarks of --tasks")
        self.selections = SelectionIndex.read(selections)  # before the model loads: a bad file fails fast
        log.info("%s: %d selections", selections, len(self.selections))
        super().__init__(**kwargs)
        self.selected_counts: Counter = Counter()  # per task, the questions given hfs's frames
        self.fallback_counts: Counter = Counter()  # per task, the questions left to lmms-eval's sampling

    def generate_until(self, requests: List[Any]) -> List[Any]:
        """lmms-eval's generation, the selected questions with hfs's frames (see the module)."""
        chosen, fallback = [], []
        for i, request in enumerate(requests):
            ctx, doc_to_messages, gen_kwargs, doc_id, task, split = request.args
            doc = self.task_dict[task][split][doc_id]
            videos = [video_path(url) for url in video_urls(doc_to_messages(doc))]
            selection = self.selections.lookup(task, doc, videos[0]) if len(videos) == 1 else None
            if selection is None:
                self.fallback_counts[task] += 1
                log.warning("%s doc %s (video %s): no selection in %s; lmms-eval samples its frames",
                            task, doc_id, ", ".join(map(str, videos)) or None, self.selections.source)
                fallback.append(i)
                continue
            self.selected_counts[task] += 1
            wrapped = with_frames(doc_to_messages, selection, videos[0])
            chosen.append((i, dataclasses.replace(request, arguments=(ctx, wrapped, gen_kwargs, doc_id, task, split))))
        results: list = [None] * len(requests)
        if fallback:
            for i, res in zip(fallback, super().generate_until([requests[i] for i in fallback])):
                results[i] = res
        if chosen:
            # lmms-eval's generate_until probes the first video's path with decord to choose the
            # number of frames unless an fps is set; a list of frames has no path, and neither
            # setting changes a list (qwen-vl-utils takes all its frames).
            fps, self.fps = self.fps, FRAME_LIST_FPS
            try:
                for (i, _), res in zip(chosen, super().generate_until([r for _, r in chosen])):
                    results[i] = res
            finally:
                self.fps = fps
        self._log_counts()
        return results

    def _log_counts(self) -> None:
        selected, fell_back = sum(self.selected_counts.values()), sum(self.fallback_counts.values())
        tasks = sorted(set(self.selected_counts) | set(self.fallback_counts))
        per_task = ", ".join(f"{t} {self.selected_counts[t]}/{self.selected_counts[t] + self.fallback_counts[t]}"
                             for t in tasks)
        (log.warning if fell_back else log.info)(
            "hfs frames for %d of %d questions (%s); %d without a selection in %s got lmms-eval's sampling",
            selected, selected + fell_back, per_task, fell_back, self.selections.source)


def video_urls(messages: Sequence[Any]) -> list:
    """The video entries' ``url`` of a task's chat messages (dicts or lmms-eval's ChatMessage)."""
    urls = []
    for message in messages or ():
        content = message.get("content") if isinstance(message, dict) else getattr(message, "content", None)
        for part in content or ():
            kind = part.get("type") if isinstance(part, dict) else getattr(part, "type", None)
            if kind == "video":
                urls.append(part.get("url") if isinstance(part, dict) else getattr(part, "url", None))
    return urls


def video_path(url: Any) -> Any:
    """A video entry's path: the url itself, or a dict's ``url``/``path`` (a clip with start and end)."""
    return (url.get("url") or url.get("path")) if isinstance(url, dict) else url


def with_frames(doc_to_messages: Callable, selection: Selection, video: Any) -> Callable:
    """``doc_to_messages`` whose video entry is the selection's frames (decoded when called)."""

    def messages_with_frames(doc, *args, **kwargs):
        frames = decode_selection(video, selection)
        # new dicts: a task's messages may be its config's own list, not made per call
        def part_with_frames(part):
            return {**part, "url": frames} if isinstance(part, dict) and part.get("type") == "video" else part

        return [{**message, "content": [part_with_frames(p) for p in message.get("content") or ()]}
                for message in doc_to_messages(doc, *args, **kwargs)]

    return messages_with_frames


def decode_selection(video: Any, selection: Selection) -> list[Image.Image]:
    """The frames shown at the selection's times in ``video`` (a path), one PIL image per time."""
    from hfs.pipeline.decode import DecodeError, iter_frames

    path = video_path(video)
    frames: list[Optional[Image.Image]] = [None] * len(selection.timestamps_s)
    try:
        for decoded in iter_frames(path, selection.timestamps_s):
            image = Image.fromarray(decoded.rgb)
            for target in decoded.targets:
                frames[target] = image
    except DecodeError as err:
        raise SelectionsError(f"{path}: cannot decode the frames of {selection.benchmark} question "
                              f"{selection.question_id} ({err}); check the video file lmms-eval's task points to"
                              ) from err
    return frames
