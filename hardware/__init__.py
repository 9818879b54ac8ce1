"""Hardware targets (``fwdlearn.hardware``; lives in the top-level ``hardware/`` folder).

Energy-per-operation tables, edge-runtime target profiles and deployment checks arrive with
the quantisation/export and memory/energy issues; see ``hardware/README.md``.
"""
