"""Parts of the embedded synthetic benchmark (see :mod:`avbench.datasets.synthetic`).

``people`` (group looks and voices), ``face`` (drawn faces), ``voice`` (speech-like audio and
the mouth motion that follows it), ``render`` (head motion, face swaps, lip-sync re-rendering),
``avceleb`` and ``kodf_set`` (the two sets' plans and per-identity rendering), ``common``
(seeding, formats, the process pool).
"""
