"""A trained network at work: the classifier, test-time augmentation, metrics, mistakes, explanations,
the layer summary and the ONNX export.
"""
