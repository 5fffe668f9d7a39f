"""What ``hfs demo`` needs beyond the stages: ``videos`` (synthetic videos drawn with PyAV),
``task`` (the synthetic multiple-choice task whose answers only a few frames show, and its
ground truth) and ``teacher`` (the tiny teacher fitted to read them, a stand-in for a
pretrained video LLM). Only ``hfs.stages`` imports this room."""
