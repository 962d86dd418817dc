"""The data model every later stage shares: the ragged `Drawings` type (`drawings`), the zarr
store (`store`), per-point features (`features`) and training batches (`batches`)."""
