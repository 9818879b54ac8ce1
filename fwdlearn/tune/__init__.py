"""``fwdlearn tune``: hyper-parameter search with Optuna on a validation split carved from the training data.

``space.py`` reads what may change (a TOML search space over a preset's values), ``validation.py`` carves the
validation split and seals the test split, ``study.py`` runs the study (TPE, SQLite storage by default, several
workers sharing one study) and, once it ends, trains the best settings on the whole training set and reads the
test split once.
"""
