"""Raw files -> verified splits -> pixels: raw.py (IDX files, locating, verifying), splits.py
(the prepare stage, preloaded splits, batches), pixels.py (the [-1, 1] convention, image grids)."""
