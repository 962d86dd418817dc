"""Where drawings come from. Each source fills `data/raw/` in Kaggle's layout (`layout`):
`synthetic` (the offline default), `local` (a folder in that layout), `ndjson` (Google's files)
and `kaggle` (the competition, through the kaggle client)."""
