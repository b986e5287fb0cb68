"""Pipelines: YAML files of CLI stages (spec, runner), their manifests, and the packaged demo."""
