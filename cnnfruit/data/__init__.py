"""Images in, arrays out: the dataset and its splits, the folder layouts people have, the decoded-image
cache, the one path from a photo to the network's input, and augmentation.
"""
