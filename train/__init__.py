"""artefact_train: train, evaluate and query artefact recognition models (the `train/` folder)."""
