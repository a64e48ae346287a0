"""veil-proxy: a PostgreSQL wire-protocol proxy that masks result columns as Veil decides.

People log in as themselves (their Veil login and a token with the scope ``query``); the proxy
logs in upstream with a configured account, checks each statement with the data path
(``veil_sdk.datapath``) and masks each result column per the plan it gives. Run it with
``veil-proxy run --config FILE``; see docs/data-path.md.
"""
