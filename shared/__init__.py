"""What every Veil app shares, below all of them: the API's one error shape (`shared.api`) and the
strict JSON reader that refuses duplicate keys (`shared.strict_json`). It imports no Veil app."""
