"""`lifelong advise`: from a user's constraints to a ranked shortlist of methods, with the
measured evidence for each, whether continual learning is needed at all, and `--verify`
(run the shortlist on the user's data). See README "Choosing a method".

Importing the package imports only the standard library (so `lifelong advise --help`
answers without torch); `verify` and the retraining measurement import torch when used."""

from lifelong.advise.constraints import Constraints
from lifelong.advise.rules import Advice, Entry, shortlist

__all__ = ["Advice", "Constraints", "Entry", "shortlist"]
