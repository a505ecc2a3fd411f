"""Post-processing of classifier predictions: file formats, CAN, threshold search, metrics."""
