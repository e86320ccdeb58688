"""The bundled OLMo 1.7 trainer (installed as `dolma_prep.training`).

It reads what the pipeline writes (token arrays and the run manifest) and nothing else of it:

- `model.py`      the OLMo 1.7 transformer and its ModelConfig (nanoGPT-style, one file)
- `config.py`     TrainConfig dataclasses, YAML loading, `--set key=value` overrides
- `configs/`      olmo-1.7-7b (stage 1), olmo-1.7-7b-anneal (stage 2), 1b, tiny
- `data.py`       run manifests, raw memmaps, OLMo's MemMapDataset order and sharding
- `mixture.py`    mixing at read time: a run's sources drawn to token shares (`data.mixture`)
- `proxy.py`      cheap proxies for `dolma-prep mix-search`: reduced vocabulary, honest scores
- `optim.py`      AdamW parameter groups, LR schedules in token units, gradient clipping
- `checkpoint.py` sharded torch.distributed.checkpoint save/load, `step{N}-tokens{M}B`
- `train.py`      the loop (FSDP2 under torchrun); `python -m dolma_prep.training.train`
- `export_hf.py`  conversion to Hugging Face `OlmoForCausalLM`
- `cli.py`        `main(argv)` for `dolma-prep train` and `dolma-prep export-hf`
"""
