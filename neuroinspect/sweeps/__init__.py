"""Declarative sweeps: a grid of experiments run as a DAG of cached stages, resumably, locally or on Ray.

- :mod:`~neuroinspect.sweeps.config`: the ``[sweep]`` TOML table, validated;
- :mod:`~neuroinspect.sweeps.plan`: the grid expanded into stage nodes, deduplicated by input hash;
- :mod:`~neuroinspect.sweeps.runner`: the run (lock, executor, atomic commits, progress, summary);
- :mod:`~neuroinspect.sweeps.executors`: in-process, local process pool, Ray;
- the stages themselves live in :mod:`neuroinspect.harness.stages`.
"""
