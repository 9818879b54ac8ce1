"""On-device learning: a local rule's update exported as an ordinary inference graph (ONNX).

A forward-only rule's update is itself a forward computation: the closed-form gradient of methods
section 6 and one optimiser step. ``export.export_update`` writes one ONNX graph per trainable stage
(an SCFF layer, a recurrent direction, a Forward-Forward layer) that takes a batch, the stage's
parameters, its optimiser state, the step count and the learning rate, and returns the new parameters
and state; ``runtime.UpdateRunner`` drives it with numpy and onnxruntime alone (no torch), so a device
that can run inference can keep learning.

This package's ``__init__`` imports nothing, so that ``fwdlearn.ondevice.runtime`` loads without torch.
"""
