"""Measurement: timing, statistics, power, the environment and devices a figure was taken on."""
