"""Dataset adapters (FakeAVCeleb, KoDF) and the embedded synthetic benchmark."""
