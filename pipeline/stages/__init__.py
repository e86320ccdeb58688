"""Pipeline stages. Each module has one entry function `run_shard(shard, ctx) -> stats`
(per-shard work, run on Ray by `runtime.map_shards`), plus, where a stage needs a global step
(dedup, sampling), a driver function documented in the module."""
