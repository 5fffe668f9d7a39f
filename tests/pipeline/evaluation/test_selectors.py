"""The frame selectors (pipeline/selectors): the registry, what every selector returns, and each
one's own rule: uniform's segment centres, random's seeding, clip's cosine against the cache's
own encoder, hfs = top-k of the run's s_i, hfs-set = greedy F on the same s_i."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from hfs.pipeline.evaluation.selectors import (
    Choice,
    Query,
    SelectorContext,
    SelectorError,
    check_choice,
    get_selector,
    list_selectors,
    register_batch,
    register_selector,
    select_batch,
    selector_needs_run,
)
from hfs.pipeline.evaluation.selectors.basic import uniform_indices
from hfs.pipeline.evaluation.selectors.clip import load_cache_clip, query_text

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.xdist_group("models")]

BUILTIN = ["uniform", "random", "clip", "hfs", "hfs-set"]
TINY_CLIP = {"model": "ViT-B-32", "pretrained": "none", "preset": "tiny", "embed_dim": 512}
QUESTIONS = [
    ("What colour is the car that turns left?", ["red", "blue", "green"]),
    ("How many people cross the street?", ["one", "two", "three", "four"]),
    ("What does the dog do after the ball lands?", ["it runs", "it sleeps"]),
]


def make_query(i: int = 0, n: int = 128, sample_id: str | None = None) -> Query:
    """Question i of QUESTIONS over n random cached features, frames 0.25 s apart."""
    rng = np.random.default_rng(100 + i)
    question, options = QUESTIONS[i % len(QUESTIONS)]
    return Query(sample_id or f"q{i}", question, list(options), rng.standard_normal((n, 512)).astype(np.float16),
                 (np.arange(n, dtype=np.float32) + 0.5) * 0.25)


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory, one_thread) -> Path:
    """A saved tiny HFSModel (what `--run` accepts besides a run folder), with a set objective
    that is not the default, so hfs-set must read it from the run."""
    from hfs.pipeline.model.hfs_model import HFSConfig, HFSModel
    from hfs.pipeline.model.set_objective import SetObjectiveConfig

    cfg = HFSConfig.tiny()
    cfg = replace(cfg, set_objective=SetObjectiveConfig(gamma=1.0, time_unit="seconds"))
    torch.manual_seed(0)
    return HFSModel.build(cfg, device="cpu").save(tmp_path_factory.mktemp("selectors") / "model")


@pytest.fixture(scope="module")
def ctx(saved_run) -> SelectorContext:
    """One context for every selector (models load on first use and stay for the module)."""
    return SelectorContext(k=16, seed=0, run=saved_run, cache_config=dict(TINY_CLIP))


@pytest.fixture(scope="module")
def reference_model(saved_run):
    """The saved run loaded a second time, independently of any selector."""
    from hfs.pipeline.model.hfs_model import HFSModel

    return HFSModel.load(saved_run, device="cpu").eval()


def with_k(ctx: SelectorContext, k: int) -> SelectorContext:
    ctx.k = k  # the same context object: its loaded models are kept
    return ctx


# --------------------------------------------------------------------------- registry


def test_the_registry_lists_the_five_builtin_selectors_and_which_need_a_run():
    assert list_selectors()[:5] == BUILTIN
    assert [selector_needs_run(name) for name in BUILTIN] == [False, False, False, True, True]


def test_an_unknown_selector_names_the_known_ones():
    with pytest.raises(SelectorError, match="unknown selector 'nope'; known: uniform, random, clip, hfs, hfs-set"):
        get_selector("nope")
    with pytest.raises(SelectorError, match="unknown selector"):
        selector_needs_run("nope")


def test_registering_a_selector_adds_one_name_and_refuses_a_duplicate(monkeypatch):
    from hfs.pipeline.evaluation import selectors

    list_selectors()  # the built-ins are in before the registry is swapped for a copy
    monkeypatch.setattr(selectors, "_REGISTRY", dict(selectors._REGISTRY))

    @register_selector("middle")
    def middle(query, ctx):
        n = len(query.features)
        return Choice(list(range((n - ctx.k) // 2, (n + ctx.k) // 2)))

    assert list_selectors() == [*BUILTIN, "oracle", "middle"]
    assert get_selector("middle")(make_query(), SelectorContext(k=4)).indices == [62, 63, 64, 65]
    with pytest.raises(ValueError, match="already registered"):
        register_selector("uniform")(middle)


@pytest.mark.parametrize(("indices", "scores", "problem"), [
    ([1, 2, 3], None, "expected 4 distinct"),
    ([1, 2, 2, 3], None, "expected 4 distinct"),
    ([3, 1, 2, 0], None, "ascending"),
    ([0, 1, 2, 8], None, r"in \[0, 8\)"),
    ([-1, 0, 1, 2], None, r"in \[0, 8\)"),
    ([0, 1, 2, 3], [0.5] * 7, "7 scores for 8 frames"),
])
def test_check_choice_refuses_what_is_not_k_distinct_ascending_frames(indices, scores, problem):
    with pytest.raises(SelectorError, match=problem):
        check_choice(Choice(indices, scores), n=8, k=4, name="mine")
    assert check_choice(Choice([0, 1, 2, 7], [0.5] * 8), n=8, k=4).indices == [0, 1, 2, 7]


# --------------------------------------------------------------------------- every selector


@pytest.mark.parametrize("name", BUILTIN)
@pytest.mark.parametrize(("n", "k"), [(128, 16), (128, 1), (8, 8), (8, 3)])
def test_every_selector_returns_k_distinct_ascending_frames_in_range(ctx, name, n, k):
    for i in range(len(QUESTIONS)):
        query = make_query(i, n)
        choice = get_selector(name)(query, with_k(ctx, k))
        check_choice(choice, n, k, name)  # raises unless k distinct ascending indices in [0, n)
        assert all(isinstance(x, int) for x in choice.indices)
        if name in ("clip", "hfs", "hfs-set"):
            assert choice.scores is not None and len(choice.scores) == n and np.isfinite(choice.scores).all()
        else:
            assert choice.scores is None


# --------------------------------------------------------------------------- uniform and random


@pytest.mark.parametrize(("n", "k", "expected"), [
    (128, 16, list(range(4, 128, 8))),  # 4, 12, ..., 124: the paper's 16 of 128
    (128, 1, [64]),
    (128, 128, list(range(128))),
    (10, 3, [1, 5, 8]),  # ⌊(2i+1)·10/6⌋: 10/6 = 1.67, 30/6 = 5, 50/6 = 8.33
    (9, 2, [2, 6]),  # 9/4 = 2.25, 27/4 = 6.75
    (7, 7, [0, 1, 2, 3, 4, 5, 6]),
    (5, 4, [0, 1, 3, 4]),  # 5/8, 15/8, 25/8, 35/8
])
def test_uniform_takes_the_segment_centres(n, k, expected):
    assert uniform_indices(n, k) == expected
    assert get_selector("uniform")(make_query(n=n), SelectorContext(k=k)).indices == expected


@pytest.mark.parametrize("k", [0, 9])
def test_uniform_refuses_k_outside_1_to_n(k):
    with pytest.raises(ValueError, match=r"k must be in \[1, n=8\]"):
        uniform_indices(8, k)


def test_random_is_fixed_by_seed_and_question_and_differs_across_questions():
    pick = get_selector("random")
    first = pick(make_query(0, sample_id="q-a"), SelectorContext(k=16, seed=0)).indices
    # the same (seed, question id): the same frames, whatever the features or the process
    assert pick(make_query(1, sample_id="q-a"), SelectorContext(k=16, seed=0)).indices == first
    assert pick(make_query(0, sample_id="q-a"), SelectorContext(k=16, seed=1)).indices != first
    others = {tuple(pick(make_query(0, sample_id=f"q-{i}"), SelectorContext(k=16, seed=0)).indices)
              for i in range(20)}
    assert len(others) == 20  # a different draw for every question
    assert first != uniform_indices(128, 16)


def test_random_draws_every_frame_about_equally_often():
    pick = get_selector("random")
    counts = np.zeros(128)
    for i in range(400):
        counts[pick(make_query(n=128, sample_id=f"s{i}"), SelectorContext(k=16)).indices] += 1
    assert counts.sum() == 400 * 16 and counts.min() > 20 and counts.max() < 80  # mean 50


# --------------------------------------------------------------------------- clip


def test_clip_picks_the_frames_made_to_match_the_question(ctx):
    query = make_query(0, n=128)
    text = ctx.clip.encode_text([query_text(query)])[0]
    assert query_text(query) == "What colour is the car that turns left? red blue green"
    features = query.features.astype(np.float32)
    features[37] = 3.0 * text  # the scale does not matter: cosine
    rng = np.random.default_rng(0)
    for i in (5, 100):  # close to the text, not equal to it
        features[i] = text + 0.1 * rng.standard_normal(512).astype(np.float32) / np.sqrt(512)
    query.features = features.astype(np.float16)

    one = get_selector("clip")(query, with_k(ctx, 1))
    assert one.indices == [37]
    assert one.scores[37] == pytest.approx(1.0, abs=1e-3) and max(one.scores) == one.scores[37]
    assert get_selector("clip")(query, with_k(ctx, 3)).indices == [5, 37, 100]
    others = np.delete(np.array(one.scores), [5, 37, 100])
    assert np.abs(others).max() < 0.5  # random features: unrelated to the text


def test_clip_follows_the_question(ctx):
    """Two questions, each with its own matching frame: each picks its own."""
    q0, q1 = make_query(0), make_query(1)
    t0, t1 = ctx.clip.encode_text([query_text(q0), query_text(q1)])
    features = q0.features.astype(np.float32)
    features[10], features[90] = t0, t1
    q0.features = q1.features = features.astype(np.float16)
    assert get_selector("clip")(q0, with_k(ctx, 1)).indices == [10]
    assert get_selector("clip")(q1, with_k(ctx, 1)).indices == [90]


@pytest.fixture(scope="module")
def clip_checkpoint_cache(tmp_path_factory):
    """A 1-video cache extracted with a tiny CLIP read from a checkpoint file (seed 1), and that file."""
    import open_clip

    from hfs.cache import FeatureCache
    from hfs.manifests import VideoItem, make_video_id
    from hfs.pipeline.demo.videos import shape, solid, write_scene_video
    from hfs.pipeline.extract import encoder
    from hfs.pipeline.extract.config import ExtractConfig
    from hfs.pipeline.extract.run import extract

    root = tmp_path_factory.mktemp("clip_cache")
    encoder._register_tiny()
    checkpoint = root / "tiny_clip.pt"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        torch.save(open_clip.create_model(encoder.TINY_MODEL).state_dict(), checkpoint)
    video = root / "v.mp4"
    write_scene_video(video, [(5, solid((200, 30, 30))), (5, shape("circle", (30, 200, 30)))], fps=10, size=(64, 48))
    cfg = ExtractConfig(frames=8, preset="tiny", pretrained=str(checkpoint), teacher_frame_size=64)
    summary = extract([VideoItem(make_video_id("v.mp4"), str(video), "v.mp4")], root / "cache", cfg, workers=0,
                      progress=False)
    assert summary.ok == 1
    no_frames = replace(cfg, teacher_frame_size=None)
    extract([VideoItem(make_video_id("v.mp4"), str(video), "v.mp4")], root / "cache_no_frames", no_frames,
            workers=0, progress=False)
    return FeatureCache(root / "cache"), FeatureCache(root / "cache_no_frames"), checkpoint


def test_clip_accepts_the_cache_of_its_own_encoder(clip_checkpoint_cache, caplog):
    cache, _, checkpoint = clip_checkpoint_cache
    with caplog.at_level(logging.INFO, logger="hfs.pipeline.evaluation.selectors.clip"):
        encoder = load_cache_clip(cache.config, cache)
    assert encoder.pretrained == str(checkpoint)
    assert "re-encodes a cached frame at cosine" in caplog.text


def test_clip_refuses_a_cache_made_by_another_encoder(clip_checkpoint_cache, tmp_path):
    """The cache names a checkpoint whose weights are not the ones that made its features (here the
    file was replaced after extraction): the re-encode check says so."""
    import open_clip

    from hfs.pipeline.extract import encoder

    cache, _, checkpoint = clip_checkpoint_cache
    other = tmp_path / "tiny_clip.pt"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(2)
        torch.save(open_clip.create_model(encoder.TINY_MODEL).state_dict(), other)
    config = {**cache.config, "pretrained": str(other)}
    with pytest.raises(SelectorError) as err:
        load_cache_clip(config, cache)
    message = str(err.value)
    assert str(cache.path) in message and "its features were not made by" in message
    assert "the clip selector needs the cache's own encoder and weights" in message
    # through the context, as `hfs select` and `hfs evaluate` reach it
    with pytest.raises(SelectorError, match="not made by"):
        get_selector("clip")(make_query(n=8), SelectorContext(k=2, cache_config=config, cache=cache))


def test_clip_without_stored_frames_cannot_check_and_says_so(clip_checkpoint_cache, caplog):
    _, cache, _ = clip_checkpoint_cache
    with caplog.at_level(logging.WARNING, logger="hfs.pipeline.evaluation.selectors.clip"):
        load_cache_clip(cache.config, cache)
    assert "cannot check" in caplog.text and "no teacher frames stored" in caplog.text


def test_clip_with_an_encoder_that_cannot_be_loaded_is_a_selector_error(tmp_path):
    config = {**TINY_CLIP, "pretrained": str(tmp_path / "absent.pt")}
    with pytest.raises(SelectorError, match="the clip selector needs the encoder that made the cache.*absent.pt"):
        load_cache_clip(config)


# --------------------------------------------------------------------------- hfs and hfs-set


def reference_scores(model, query: Query) -> torch.Tensor:
    """The per-frame scores of the run's student for one question, computed without the
    selectors: σ(c·ẑ) on the "logit" score path, s_i = σ(z_i) (Eq. 9) on the paper's."""
    from hfs.pipeline.model.selection import standardized_logits

    with torch.no_grad():
        out = model.student(torch.from_numpy(query.features.astype(np.float32))[None], [query.question],
                            [query.options])
    sel = model.cfg.selection
    if sel.score_path == "sigmoid":
        return out.scores[0].float()
    return torch.sigmoid(standardized_logits(out.logits[0].float(), sel.logit_scale))


@pytest.mark.parametrize("k", [4, 16])
def test_hfs_is_the_top_k_of_the_runs_scores(ctx, reference_model, k):
    for i in range(len(QUESTIONS)):
        query = make_query(i)
        s = reference_scores(reference_model, query)
        choice = get_selector("hfs")(query, with_k(ctx, k))
        assert choice.indices == sorted(s.topk(k).indices.tolist())
        np.testing.assert_allclose(choice.scores, s.numpy(), atol=1e-6)
        assert ((0 < s) & (s < 1)).all()  # σ(·), Eq. 9


def test_hfs_depends_on_the_question(ctx):
    features = make_query(0).features
    scores = []
    for i in range(2):
        query = make_query(i)
        query.features = features
        scores.append(np.array(get_selector("hfs")(query, with_k(ctx, 4)).scores))
    assert not np.allclose(scores[0], scores[1])


@pytest.mark.parametrize("k", [4, 16])
def test_hfs_set_is_greedy_f_on_the_runs_scores_with_the_runs_set_objective(ctx, reference_model, k):
    from hfs.pipeline.model.set_objective import SetObjectiveConfig, greedy_set_selection, kernel_times

    cfg = reference_model.cfg.set_objective
    assert (cfg.gamma, cfg.time_unit) == (1.0, "seconds")  # the run's, not the default
    differs = False
    for i in range(len(QUESTIONS)):
        query = make_query(i)
        s = reference_scores(reference_model, query)
        t = kernel_times(torch.from_numpy(query.timestamps), cfg.time_unit)
        expected = greedy_set_selection(s[None], t, k, cfg)[0].tolist()
        choice = get_selector("hfs-set")(query, with_k(ctx, k))
        assert choice.indices == expected
        np.testing.assert_allclose(choice.scores, s.numpy(), atol=1e-6)
        default = greedy_set_selection(s[None], kernel_times(torch.from_numpy(query.timestamps)), k,
                                       SetObjectiveConfig())[0].tolist()
        differs |= default != expected
    assert differs, "the run's set objective made no difference: the test does not show it is used"


@pytest.mark.parametrize("name", ["hfs", "hfs-set"])
def test_a_batch_selects_what_one_question_at_a_time_selects(ctx, name):
    """Questions of very different lengths in one student pass (right-padded): the same frames, and
    the same scores up to float rounding, as each question alone."""
    ctx = with_k(ctx, 8)
    queries = [make_query(i, n=64) for i in range(5)]
    queries[1].question += " Look at every frame from the beginning of the video to its very end. " * 4
    queries[3].question = "Why?"
    batched = select_batch(name, queries, ctx)
    for query, choice in zip(queries, batched):
        alone = get_selector(name)(query, ctx)
        assert choice.indices == alone.indices
        np.testing.assert_allclose(choice.scores, alone.scores, rtol=0, atol=1e-5)
    assert len({tuple(c.indices) for c in batched}) > 1  # the questions are told apart, not one row broadcast


def test_select_batch_calls_a_selector_without_a_batched_form_once_per_question(monkeypatch):
    from hfs.pipeline.evaluation import selectors as registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_BATCH", dict(registry._BATCH))
    calls = []

    @register_selector("first-k")
    def first_k(query, ctx):
        calls.append(query.sample_id)
        return Choice(list(range(ctx.k)))

    queries = [make_query(i, n=16) for i in range(3)]
    assert [c.indices for c in select_batch("first-k", queries, SelectorContext(k=2))] == [[0, 1]] * 3
    assert calls == ["q0", "q1", "q2"]

    @register_batch("first-k")
    def first_k_batch(queries, ctx):
        return [Choice([0, 99])] * len(queries)  # out of range: select_batch checks what a batch returns

    with pytest.raises(SelectorError, match=r"first-k returned \[0, 99\]"):
        select_batch("first-k", queries, SelectorContext(k=2))
    with pytest.raises(ValueError, match="register selector 'nope' before its batched form"):
        register_batch("nope")(first_k_batch)


def test_the_hfs_selectors_need_a_run():
    for name in ("hfs", "hfs-set"):
        with pytest.raises(SelectorError, match="need a trained run: pass --run"):
            get_selector(name)(make_query(), SelectorContext(k=4))


def test_a_run_reading_other_features_than_the_cache_holds_is_refused(saved_run):
    ctx = SelectorContext(k=4, run=saved_run, cache_config={"model": "ViT-L-14", "embed_dim": 768})
    with pytest.raises(SelectorError, match="reads 512-d features, the cache holds 768-d ones.*ViT-L-14"):
        get_selector("hfs")(make_query(), ctx)


# --------------------------------------------------------------------------- oracle


def test_oracle_picks_the_answer_bearing_frames_from_the_ground_truth(tmp_path):
    from hfs.pipeline.evaluation.recall import EventTruth, QuestionTruth

    def truth(sid, *events):
        return QuestionTruth(sid, "test", 0, f"{sid}.mp4", "query_shape", "DO", "q?", ("a", "b"), 0, 32.0, 4.0, 128,
                             128, tuple(EventTruth("red", "circle", 0.0, 1.0, 0, 1, hits) for hits in events),
                             (EventTruth("blue", "square", 5.0, 6.0, 20, 24, (20, 21)),))

    truths = {"q0": truth("q0", (30, 31)), "q1": truth("q1", (70,), (100,))}
    path = tmp_path / "ground_truth.jsonl"
    path.write_text("".join(json.dumps(t.to_json()) + "\n" for t in truths.values()))
    assert not selector_needs_run("oracle") and "oracle" in list_selectors()[5:]
    for source in (truths, path):  # a mapping or the file
        ctx = SelectorContext(k=4, truth=source)
        # the hits, then the segment centres 16, 48, 80, 112 up to k; never the distractor's 20, 21
        assert get_selector("oracle")(make_query(0, sample_id="q0"), ctx).indices == [16, 30, 31, 48]
        assert get_selector("oracle")(make_query(1, sample_id="q1"), ctx).indices == [16, 48, 70, 100]
    with pytest.raises(SelectorError, match="needs a task's ground truth"):
        get_selector("oracle")(make_query(0, sample_id="q0"), SelectorContext(k=4))
    with pytest.raises(SelectorError, match="q9 is not in the ground truth"):
        get_selector("oracle")(make_query(0, sample_id="q9"), SelectorContext(k=4, truth=truths))
    with pytest.raises(SelectorError, match="128-frame grid, the cache holds 64"):
        get_selector("oracle")(make_query(0, n=64, sample_id="q0"), SelectorContext(k=4, truth=truths))
