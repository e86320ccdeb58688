"""Pipeline stages: one module per step, each declaring `STEP` (see `pipeline/steps.py`).

documents --tag--> attributes --dedup--> attributes --select--> kept --count/sample--> rules
    --tokenize--> tokens

A new stage is a module here and one line in STEPS. The run reads STEPS when it starts and hands
the list to the manifest, so this is its one declaration (a test adds a step by setting it once).
Stages import the layers below them (plan, encoder, mixfile, core), never this package's
readers (run, manifest).
"""
from . import count, dedup, sample, select, tag, tokenize

STEPS = [tag.STEP, dedup.STEP, select.STEP, count.STEP, sample.STEP, tokenize.STEP]
