"""Raw CSV to stored drawings (the `preprocess` stage's machinery): compiled scanners (`scan`),
the drawing parser (`parse`), checked CSV rows (`rows`), the one list of reject reasons
(`reasons`), pass 1 per class file (`class_files`) into temporary runs (`runs`), the validation
split (`split`), pass 2's class interleaving (`interleave`) and the test split (`testsplit`)."""
