"""The machinery every rule shares: one learner loop (``learner.py``) and one run path (``run.py``)."""
