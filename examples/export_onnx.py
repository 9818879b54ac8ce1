"""Train on the embedded digits, export network + read-out to ONNX, and run it in onnxruntime.

    python examples/export_onnx.py             (needs: pip install -e ".[export]")

``fwdlearn export runs/digits/checkpoint.pt`` does the same from the command line. The file's
metadata tells a deployer what to do to raw data first; everything after that is in the graph.
"""

import json
from pathlib import Path
from tempfile import mkdtemp

import onnx
import onnxruntime

from fwdlearn.data import load_dataset
from fwdlearn.export import export_onnx, load_deployable
from fwdlearn.presets import load_preset
from fwdlearn.run import train_run

config = load_preset("digits")
config.layers[0].epochs, config.layers[1].epochs = 10, 5       # a shorter run than the preset
run = Path(mkdtemp(prefix="fwdlearn-export-")) / "digits"
train_run(config, run, show_progress=False, log=lambda line: None)

report = export_onnx(load_deployable(run / "checkpoint.pt"), run / "digits.onnx")
print(f"wrote {run / 'digits.onnx'}: {report['model_bytes']:,} bytes, {report['parameters']:,} parameters, "
      f"{report['macs_per_inference']['total']:,} MACs per inference; operators {sorted(report['operators'])}")

meta = {p.key: p.value for p in onnx.load(str(run / "digits.onnx")).metadata_props}
print("preprocessing:", json.loads(meta["fwdlearn.preprocessing"]))
print("input layout: ", json.loads(meta["fwdlearn.input_layout"]))
print("in the graph: ", meta["fwdlearn.in_graph"])

test = load_dataset("digits").test                              # already scaled to [0, 1], as the metadata says
session = onnxruntime.InferenceSession(str(run / "digits.onnx"), providers=["CPUExecutionProvider"])
(logits,) = session.run(["logits"], {"x": test.x.numpy()})
accuracy = (logits.argmax(1) == test.y.numpy()).mean()
print(f"onnxruntime test accuracy {100 * accuracy:.2f} % (the run's probe: {100 * float(meta['fwdlearn.test_accuracy']):.2f} %)")
