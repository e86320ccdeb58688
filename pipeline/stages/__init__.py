"""Pipeline stages: one module per step, each declaring `STEP` (see `pipeline/steps.py`).

documents --tag--> attributes --dedup--> attributes --select--> kept --count/sample--> rules
    --tokenize--> tokens

A new stage is a module here and one line in STEPS.
"""
from . import count, dedup, sample, select, tag, tokenize

STEPS = [tag.STEP, dedup.STEP, select.STEP, count.STEP, sample.STEP, tokenize.STEP]
