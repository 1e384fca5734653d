"""The input pipeline: JPEG files -> decode -> eval transform -> batch -> device -> forward, each stage measured."""
