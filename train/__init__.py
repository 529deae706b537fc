"""Training package: datasets, feature cache, alignment and captioning stages, evaluation."""
