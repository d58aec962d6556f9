"""Built-in baseline detectors (registered lazily by :mod:`avbench.builtin`).

- ``sync-corr`` (:mod:`avbench.baselines.sync_corr`): training-free audio-visual synchrony,
  the correlation of mouth motion with audio loudness;
- ``mfcc-logreg`` (:mod:`avbench.baselines.mfcc_logreg`): audio-only MFCC statistics and a
  logistic regression.

Nothing is imported here, so listing detectors stays cheap.
"""
