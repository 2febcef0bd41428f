"""The image catalog: what node images exist here, and moving them between machines.

`ringfleet images list` shows every profile's node image for an env, read from the record
each image carries (record.py, written at bake); `export` and `import` move an image and its
record in one archive to a site without a registry, PyPI or a Debian mirror (archive.py).
"""
