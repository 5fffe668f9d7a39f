"""MLVU dev (multiple-choice tasks): reader of both published views, M-Avg as the mean of per-task accuracy.

Views (the first found is read; `view=` forces one):

- **json** — the original release: Hugging Face `MLVU/MVLU`
  (https://huggingface.co/datasets/MLVU/MVLU) holds `MLVU/json/{N_task}.json`
  and `MLVU/video/{N_task}/{video}`; the same JSON files are in
  github.com/JUNJIE99/MLVU `data/`. One JSON list per task; the seven
  multiple-choice tasks are `1_plotQA`, `2_needle`, `3_ego`, `4_count`,
  `5_order`, `6_anomaly_reco`, `7_topic_reasoning` (`8_sub_scene` and
  `9_summary` are open-ended and not read). Per question: `video` (file name
  in the task's video folder), `duration` (seconds), `question`,
  `candidates` (option texts), `answer` (the right candidate's text),
  `question_type` (e.g. "plotQA"; "findNeedle" for the needle task). The
  data folder may be the repository root (holding `MLVU/`) or `MLVU/` itself.
  JUNJIE99/MLVU `evaluation/multiple_choice_evaluation/choice_bench.py` is the
  official scorer, and the right option is the one it takes (`choice_bench_index`): the
  last candidate whose text equals the answer exactly. Eight rows of the release need
  that rule (checked against JUNJIE99/MLVU `data/`): five whose answer is two of the
  candidates (1_plotQA 335, 387, 493, 6_anomaly_reco 66, 7_topic_reasoning 163: the last
  one is right, a prediction of the other is wrong), 7_topic_reasoning 26 whose four
  candidates and answer are all empty (D is right), and 2_needle 34 and 338 whose answer
  is none of the candidates (choice_bench's answer letter is then "@", which no
  prediction matches: the question counts and is always wrong, `answer_index` None).
  Each carries `meta["answer_rule"]` saying which.
- **parquet** — `sy1998/MLVU_dev` (https://huggingface.co/datasets/sy1998/MLVU_dev,
  file `mlvu/test-00000-of-00001.parquet`), what lmms-eval's `mlvu_dev`
  task reads (`lmms_eval/tasks/mlvu/{mlvu_dev.yaml,utils.py}`). Columns:
  `video_name`, `duration`, `question` (the question followed by the
  options as "(A) text" lines), `candidates`, `answer` (the right option's
  letter), `task_type` (the task: plotQA, needle, ego, count, order,
  anomaly_reco, topic_reasoning), `question_id`. lmms-eval opens
  `{cache}/{video_name}`; published rows (as mirrored on the Hub) carry a
  bare file name, so a bare name is looked for in the video folder itself,
  then in `video/{N_task}/`, `{N_task}/` and `{task}/`; a name with a folder
  (`{task}/{file}`) is taken as relative to the video folder.

Breakdown (lmms-eval `mlvu_aggregate_results_dev`, the paper's M-Avg):
accuracy per task, and `m_avg` = the mean of the seven per-task accuracies —
every task weighs the same, whatever its number of questions — not the
accuracy over all questions (reported separately as `mean_over_questions`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

from hfs.manifests.benchmarks import register_benchmark
from hfs.manifests.benchmarks.base import (
    Benchmark,
    BenchmarkData,
    BenchmarkError,
    Outcome,
    RowError,
    Skip,
    accuracy_cell,
    cells_by,
    float_field,
    json_list_rows,
    letter_index,
    macro_average,
    options_field,
    parquet_rows,
    text_field,
    text_index,
)
from hfs.manifests.formats import RecordError, split_options
from hfs.manifests.records import QASample

logger = logging.getLogger(__name__)

def choice_bench_index(answer, candidates) -> tuple[int | None, str | None]:
    """The right option of an MLVU JSON row as choice_bench.py's ``qa_template`` finds it, and a note
    when the row needs its rule (else None).

    ``qa_template`` walks the candidates and keeps the index of every one equal to the answer (exact
    text, no ``break``), so the LAST equal candidate is right; none equal leaves its index at -1, the
    answer letter ``chr(ord('A') - 1)`` = "@", which ``check_ans`` never matches: such a question is
    scored, always wrong (index None here). RowError for what choice_bench.py cannot read: candidates
    not a list of at least 2 strings (an empty string is a candidate, as there), an answer not a string.
    """
    if not isinstance(candidates, (list, tuple)) or not all(isinstance(c, str) for c in candidates):
        raise RowError(f"'candidates' must be a list of texts, got {candidates!r}"[:200])
    if len(candidates) < 2:
        raise RowError(f"'candidates' has {len(candidates)} option(s); a multiple-choice question needs at least 2")
    if not isinstance(answer, str):
        raise RowError(f"'answer' must be a candidate's text, got {answer!r}")
    equal = [i for i, c in enumerate(candidates) if c == answer]
    if not equal:
        return None, (f"answer {answer[:60]!r} is none of the candidates: choice_bench.py scores it wrong "
                      "whatever the prediction")
    if len(equal) > 1:
        letters = ", ".join(chr(ord("A") + i) for i in equal)
        return equal[-1], f"answer {answer[:60]!r} is candidates {letters}: choice_bench.py takes the last"
    return equal[0], None


TASK_FILES = {  # JSON file stem / video folder -> task name (lmms-eval's task_type)
    "1_plotQA": "plotQA",
    "2_needle": "needle",
    "3_ego": "ego",
    "4_count": "count",
    "5_order": "order",
    "6_anomaly_reco": "anomaly_reco",
    "7_topic_reasoning": "topic_reasoning",
}
TASKS = tuple(TASK_FILES.values())
FOLDER_OF = {task: stem for stem, task in TASK_FILES.items()}
PARQUET_REQUIRED = ("video_name", "question", "answer", "task_type")


def _same_options(a: Sequence[str], b: Sequence[str]) -> bool:
    """Whether two option lists are the same texts (spacing ignored)."""
    return [" ".join(x.split()) for x in a] == [" ".join(x.split()) for x in b]


@register_benchmark("mlvu")
class MLVU(Benchmark):
    """MLVU dev, multiple-choice tasks; see the module docstring for the layout."""

    title = "MLVU"
    headline_label = "M-Avg"
    views = {
        "json": ("json/[1-7]_*.json", "MLVU/json/[1-7]_*.json"),
        "parquet": ("mlvu/test-*.parquet", "test-*.parquet"),
    }

    def question_id(self, sample: QASample) -> str | None:
        """The parquet's `question_id`; None for the JSON release, which has no id (its sample
        id is the task and the question's position in the task's file)."""
        return sample.meta.get("question_id")

    def read(self, data_dir, *, video_dir=None, view=None) -> BenchmarkData:
        """Dev questions of the seven multiple-choice tasks and their videos.

        meta: `task` (one of `TASKS`), `question_type` (as published; the
        JSON view only), `duration_s` (video length, seconds), `answer_raw`.
        `video_dir` replaces the JSON view's `video/` folder (holding
        `{N_task}/`) or the parquet view's video folder (default: the data folder).
        """
        data_dir = os.path.abspath(os.fspath(data_dir))
        view, files = self.find_view(data_dir, view)
        if view == "json":
            return self._read_json(data_dir, files, video_dir)
        return self._read_parquet(data_dir, files, video_dir)

    def _read_json(self, data_dir: str, files: list[str], video_dir) -> BenchmarkData:
        """The per-task JSON files; videos in `video/{N_task}/` next to `json/`."""
        files = [f for f in files if self._task_of_file(f) is not None]
        if not files:
            raise BenchmarkError(f"{data_dir}: no MLVU task file among json/[1-7]_*.json; "
                                 f"expected {', '.join(TASK_FILES)}")
        found = {os.path.splitext(os.path.basename(f))[0] for f in files}
        if set(TASK_FILES) - found:
            logger.warning("MLVU: no JSON file for task(s) %s; M-Avg will be over the others",
                           ", ".join(sorted(set(TASK_FILES) - found)))
        release = os.path.dirname(os.path.dirname(files[0]))  # the folder holding json/ and video/
        video_root = os.path.abspath(os.fspath(video_dir)) if video_dir is not None else os.path.join(release, "video")
        counters: dict[str, int] = {}

        def parse(file: str, number: int, row: Mapping) -> tuple[QASample, list[str]]:
            stem = os.path.splitext(os.path.basename(file))[0]
            task = TASK_FILES[stem]
            k = counters[file] = counters.get(file, -1) + 1  # position in the file's list, bad rows included
            candidates = row.get("candidates")
            answer = row.get("answer")
            index, rule = choice_bench_index(answer, candidates)
            meta = {"task": task, "question_type": row.get("question_type"), "duration_s": float_field(row, "duration"),
                    "answer_raw": answer}
            if rule is not None:
                meta["answer_rule"] = rule
                logger.info("MLVU %s_%d (%s:%d): %s", task, k, file, number, rule)
            options = tuple(c.strip() for c in candidates)
            sample = QASample(f"{task}_{k}", "", text_field(row, "question"), options,
                              None if index is None else options[index], index, f"{file}:{number}", meta)
            return sample, [os.path.join(video_root, stem, text_field(row, "video"))]

        def rows(file):
            for number, row, error in json_list_rows(file):
                if error is not None or not isinstance(row, Mapping):
                    counters[file] = counters.get(file, -1) + 1  # keep later ids stable
                yield number, row, error

        return self.read_rows(data_dir, "json", files, rows, parse, video_root)

    @staticmethod
    def _task_of_file(path: str) -> str | None:
        """The task a JSON file holds, None (logged) for a file that is not one of the seven."""
        stem = os.path.splitext(os.path.basename(path))[0]
        if stem not in TASK_FILES:
            logger.warning("MLVU: %s is not one of the multiple-choice task files (%s); not read",
                           path, ", ".join(TASK_FILES))
            return None
        return TASK_FILES[stem]

    def _read_parquet(self, data_dir: str, files: list[str], video_dir) -> BenchmarkData:
        """lmms-eval's parquet; options from `candidates` (checked against those in `question`)."""
        video_root = os.path.abspath(os.fspath(video_dir)) if video_dir is not None else data_dir

        def parse(file: str, number: int, row: Mapping) -> tuple[QASample, list[str]]:
            task = text_field(row, "task_type")
            if task not in TASKS:
                raise RowError(f"'task_type' {task!r} is not an MLVU dev multiple-choice task ({', '.join(TASKS)})")
            try:
                question, inline, _ = split_options(text_field(row, "question"))
            except RecordError as exc:
                raise RowError(f"'question': {exc}") from None
            candidates = row.get("candidates")
            options = options_field(candidates, "candidates") if candidates is not None else inline
            if candidates is not None and inline and not _same_options(options, inline):
                raise RowError("the options written in 'question' differ from 'candidates'")
            if len(options) < 2:
                raise RowError("no options: neither 'candidates' nor '(A) ...' lines in 'question'")
            answer = row.get("answer")
            try:
                index = letter_index(answer, len(options))
            except RowError:
                index = text_index(answer, options)  # tolerate an answer written as the option's text
            meta = {"task": task, "duration_s": float_field(row, "duration"), "answer_raw": answer,
                    "question_raw": text_field(row, "question")}  # options included: lmms-eval's prompt text
            qid = row.get("question_id")
            if qid is not None:
                meta["question_id"] = text_field(row, "question_id")
            sample_id = text_field(row, "question_id") if qid is not None else f"{task}_{number}"
            sample = QASample(sample_id, "", question, tuple(options), options[index], index, f"{file}:{number}", meta)
            return sample, self._parquet_candidates(video_root, text_field(row, "video_name"), task)

        return self.read_rows(data_dir, "parquet", files, lambda f: parquet_rows(f, PARQUET_REQUIRED), parse,
                              video_root)

    @staticmethod
    def _parquet_candidates(video_root: str, name: str, task: str) -> list[str]:
        """Where a parquet row's video may be (see the module docstring), most likely first."""
        if "/" in name:
            return [os.path.join(video_root, name), os.path.join(video_root, "video", name)]
        folder = FOLDER_OF[task]
        return [os.path.join(video_root, name), os.path.join(video_root, "video", folder, name),
                os.path.join(video_root, folder, name), os.path.join(video_root, task, name)]

    def aggregate(self, outcomes: Sequence[Outcome], skips: Sequence[Skip]) -> dict:
        """m_avg (mean of per-task accuracy), by_task, mean_over_questions."""
        by_task = cells_by(outcomes, skips, lambda m: m.get("task"), order=TASKS)
        return {
            "m_avg": macro_average(by_task, skips, expected=TASKS),
            "by_task": by_task,
            "mean_over_questions": accuracy_cell(outcomes, skips),
        }

    def table_metrics(self, aggregate: Mapping) -> list[tuple[str, Mapping]]:
        """The tasks, then M-Avg."""
        return [(task, cell) for task, cell in aggregate["by_task"].items()] + [("M-Avg", aggregate["m_avg"])]

    def headline(self, aggregate: Mapping) -> Mapping:
        """M-Avg."""
        return aggregate["m_avg"]

    def notes(self, aggregate: Mapping) -> list[str]:
        """A partial M-Avg: the mean over fewer than the 7 tasks the paper averages."""
        m_avg = aggregate["m_avg"]
        if not m_avg["partial"]:
            return []
        total = m_avg["groups_scored"] + len(m_avg["groups_unscored"])
        return [f"M-Avg is the mean over {m_avg['groups_scored']} of {total} tasks (none scored: "
                f"{', '.join(m_avg['groups_unscored'])}), not MLVU's published {total}-task M-Avg"]
