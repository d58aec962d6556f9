"""Media: decoding with PyAV, resampling to 25 fps / 16 kHz, segments, the prepared cache."""
