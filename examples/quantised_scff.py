"""Quantisation-aware SCFF on the embedded 8x8 digits: 4-bit weights and 4-bit layer inputs.

    python examples/quantised_scff.py          (needs: pip install -e ".[hardware]")

The same local rule trains Brevitas layers: each layer computes with its weights rounded to 4
bits (one scale per output unit) and its standardised input rounded to 4 bits; the straight-
through estimator carries the layer's own loss to the float weights it keeps. The result is
exported as QCDQ ONNX and checked in onnxruntime.
"""

from pathlib import Path
from tempfile import mkdtemp

from fwdlearn.export import export_onnx, load_deployable
from fwdlearn.nn.quant import QuantConfig, effective_weight
from fwdlearn.presets import check_for_rule, load_preset
from fwdlearn.run import train_run

config = load_preset("digits")
config.quant = QuantConfig(weight_bits=4, act_bits=4, per_channel=True)
config.layers[0].epochs, config.layers[1].epochs = 10, 5       # a shorter run than the preset
out = Path(mkdtemp(prefix="fwdlearn-quant-"))

results = train_run(check_for_rule(config.validate()), out / "run", show_progress=False)   # prints the probe table

network = load_deployable(out / "run" / "checkpoint.pt").model
weight = effective_weight(network.encoder.layers[0].linear)
levels = max(row.unique().numel() for row in weight)
print(f"layer 1 computes with at most {levels} distinct weights per output unit (4 bits, signed, narrow "
      f"range: 15 levels), each unit on its own scale")

report = export_onnx(load_deployable(out / "run" / "checkpoint.pt"), out / "digits-w4a4.onnx")   # QCDQ
check = report["verification"]["onnxruntime"]
print(f"QCDQ export: {report['model_bytes']:,} bytes, {report['macs_per_inference']['total']:,} MACs; onnxruntime "
      f"matches PyTorch to {check['max_abs_difference']:.1e} (one output step: {check['output_step']:.1e})")
