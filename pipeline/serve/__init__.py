"""Play with the trained ensemble: a drawing page and a prediction API (`python -m pipeline.serve`).

The top layer beside the stages: it reads what `make repro` made (`models/`), feeds drawings
through the one inference path (`pipeline.models.predictor.Predictor`) exactly as the store
holds them, and answers over HTTP. See `app.py` for the layout and docs/serve.md for the API.
"""
