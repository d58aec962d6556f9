"""The built-in plugin: an ordinary plugin module, registered like any third-party one.

It registers the baselines, the dataset adapters, the embedded synthetic benchmark and the
protocol files shipped with the core. Factories are import strings, so nothing heavy is
imported to list them.
"""

from __future__ import annotations

from avbench.hookspecs import hookimpl


@hookimpl
def avbench_register_detectors(register):
    register(
        "sync-corr",
        "avbench.baselines.sync_corr:SyncCorrDetector",
        description="Training-free: poor correlation of mouth motion and audio loudness = fake",
        modality="AV",
    )
    register(
        "mfcc-logreg",
        "avbench.baselines.mfcc_logreg:MfccLogRegDetector",
        description="Audio-only: MFCC statistics per segment + logistic regression",
        modality="A",
    )


@hookimpl
def avbench_register_datasets(register):
    register(
        "fakeavceleb",
        "avbench.datasets.fakeavceleb:FakeAVCelebAdapter",
        description="FakeAVCeleb v1.2 (meta_data.csv + the four type folders)",
    )
    register(
        "kodf",
        "avbench.datasets.kodf:KoDFAdapter",
        description="KoDF (original_videos/, synthesized_videos/<method>/); faces cropped",
    )
    register(
        "synthetic",
        generator="avbench.datasets.synthetic:generate_fakeavceleb",
        reads_as="fakeavceleb",
        description="Embedded synthetic benchmark in FakeAVCeleb's layout (generated once)",
    )
    register(
        "synthetic-kodf",
        generator="avbench.datasets.synthetic:generate_kodf",
        reads_as="kodf",
        description="Embedded synthetic benchmark in KoDF's layout, full frames (generated once)",
    )


@hookimpl
def avbench_register_protocols(register):
    from avbench.protocols import builtin_protocol_dir

    register.directory(builtin_protocol_dir())
