"""Models (timm split into backbone / pool / decision layer), checkpoints, training, evaluation,
metrics, the feature cache and result records."""
