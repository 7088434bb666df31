"""The DVC stages: one package each, named as in dvc.yaml and params.yaml. Stages never import each other."""
