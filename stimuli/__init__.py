"""The offline stimulus stage: models, image sources, trial planning, rendering, manifest."""
