"""The bottom layer: the fer2013 file format (fer2013_csv), the data contract between
every step (features) and the embedded synthetic dataset (synthetic_faces).

It imports nothing else of the project; components, pipeline, serving and client build
on it (tests/test_layering.py).
"""
