"""Media: decoding with PyAV to 25 fps / 16 kHz (:mod:`.decode`), face crops (:mod:`.face`),
the compressed prepared cache (:mod:`.cache`), segments and the sets read from the cache
(:mod:`.segments`, :mod:`.videoset`, :mod:`.torchdata`). Nothing here imports torch at module
level but :mod:`.torchdata`."""
