"""Evaluation material, kept out of the runtime layers: generated sounds (:mod:`snapkit.eval.synth`), test
soundscapes with planted ground truth (:mod:`snapkit.eval.soundscape`) and DCASE-style event scoring
(:mod:`snapkit.eval.scoring`).

Used by ``snapkit demo``, the tests and ``experiments/``; recording, training and detection never import it.
"""
