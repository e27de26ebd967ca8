"""Training the bundled demo model (`ocrheads train-demo`): its architecture, examples, training losses and record."""
