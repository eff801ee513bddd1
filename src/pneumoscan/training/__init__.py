"""Training with Lightning: the module, the data module, calibration and the ``train`` entry point."""
