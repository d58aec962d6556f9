"""``avbench report``: one static HTML page about a results folder.

The page holds every table as ``avbench table`` builds it, and per fold of each protocol:
ROC curves (one per detector), score histograms per category (real, RVFA, FVRA-WL, ...),
metrics with 95% bootstrap intervals (per modality where a detector gives ``score_v`` /
``score_a``), and paired significance tests between the detectors scored on the same test
videos (DeLong for AUC, a paired bootstrap for AP); then each run's identity and
provenance, and the run folders left out with the reason for each. Callers may add
sections (the CLI adds Fig. 3, the audio-visual feature distance, for runs whose detector
offers ``frame_features``).

Runs are read only through :func:`avbench.tables.collect`, which verifies every run
folder. The page needs no server and fetches nothing: styles are inline, figures are PNG
images inline (base64), drawn with matplotlib's Agg canvas. The same results give the same
bytes: no clock is read, figures carry no dates, and every list is sorted. Importing this
package is light (matplotlib and pandas are imported when a page is built).
"""

from __future__ import annotations

from avbench.report.build import Extra, Figure, build_page, write_report

__all__ = ["Extra", "Figure", "build_page", "write_report"]
