"""What every Veil app shares, below all of them: the API's one error shape (`shared.api`), the
strict JSON reader that refuses duplicate keys (`shared.strict_json`) and how a moment reads to
people (`shared.dates`, also the pages' `veil_dates` filters). It imports no Veil app."""
