"""Every learning rule, one file each; ``fwdlearn.registry`` finds them (a module-level ``RULES`` tuple)."""
