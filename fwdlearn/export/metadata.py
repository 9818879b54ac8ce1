"""What a deployer must do to raw data before the exported graph sees it, stored in the ONNX file.

Everything after the data set's own scaling (per-sample standardisation, pair drive, read-out)
is inside the graph; what that is, each rule states (``Rule.in_graph``). ``model_metadata`` returns ONNX ``metadata_props``: flat string pairs,
JSON where the value is structured, all under the ``fwdlearn.`` prefix.
"""

from __future__ import annotations

import json

from .. import __version__
from ..data.transforms import EPS
from ..registry import get_rule
from .deployable import Deployable

def preprocessing(dataset: str, meta: dict) -> dict:
    """The steps from the data set's raw files to the graph's input ``x``."""
    if dataset == "mnist":
        return {"raw": "MNIST IDX, uint8 grey levels", "scale": "divide by 255 (values in [0, 1])"}
    if dataset == "digits":
        return {"raw": "scikit-learn 8x8 digits, grey levels 0..16", "scale": "divide by 16 (values in [0, 1])"}
    if dataset in ("cifar10", "stl10"):
        return {"raw": meta.get("raw", ""), "source_layout": meta.get("source_layout", ""),
                "channels": meta.get("channels", []),
                "scale": "divide by 255, then per channel c: (x - mean[c]) / std[c]",
                "mean": meta.get("mean", []), "std": meta.get("std", [])}
    if dataset == "fsdd":
        return {"raw": "mono WAV at 8 kHz (Free Spoken Digit Dataset)",
                "mfcc": meta.get("mfcc", {}),
                "trim": "librosa.effects.trim(audio, top_db=mfcc.trim_db, frame_length=mfcc.trim_frame, "
                        "hop_length=mfcc.trim_hop) on the 8 kHz audio first (trim_db 0: none)",
                "mfcc_library": "librosa.feature.mfcc on the trimmed, resampled audio, c0 dropped",
                "frame_standardisation": f"each frame: mean 0, population std 1 over its coefficients (eps {EPS})",
                "padding": "zero frames after each recording's end; pass its true frame count in 'lengths'"}
    if dataset == "sequences":
        return {"raw": "fwdlearn's synthetic sequences (fwdlearn.data.sequences)", "scale": "none"}
    return {}


def input_layout(deployable: Deployable) -> dict:
    shape = list(deployable.readout.sample_shape)
    if deployable.is_sequence:
        steps = int(deployable.example_inputs[0].shape[1])
        return {"x": f"float32 [batch, {steps}, {shape[-1]}]: frames, zero-padded to {steps} (fixed in the graph)",
                "lengths": "int64 [batch]: frames per sequence, 1..%d" % steps}
    return {"x": f"float32 [batch, {', '.join(map(str, shape))}]"
                 + (" (NCHW)" if len(shape) == 3 else "")}


def model_metadata(deployable: Deployable) -> dict[str, str]:
    readout = deployable.readout
    return {
        "fwdlearn.version": __version__,
        "fwdlearn.learner": deployable.learner,
        "fwdlearn.dataset": readout.dataset,
        "fwdlearn.class_names": json.dumps(list(readout.class_names)),
        "fwdlearn.input_layout": json.dumps(input_layout(deployable)),
        "fwdlearn.output": json.dumps({"logits": f"float32 [batch, {len(readout.class_names)}]; argmax is the class"}),
        "fwdlearn.preprocessing": json.dumps(preprocessing(readout.dataset, readout.dataset_meta)),
        "fwdlearn.in_graph": get_rule(deployable.learner).in_graph,
        "fwdlearn.test_accuracy": f"{readout.test_accuracy:.5f}",
    }
