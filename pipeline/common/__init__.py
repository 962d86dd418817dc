"""What every stage shares: params (`config`), the repo layout (`paths`), user-facing errors
(`errors`), atomic outputs (`files`) and the command-line entry (`cli`)."""
