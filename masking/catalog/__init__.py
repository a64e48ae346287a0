"""The catalog's entry points: the push API (`apis`, `POST /api/v1/catalog`), the catalog page
(`views`) and the classification guess from a column's name and type (`classification`, pure).
The catalog's tables are in `masking.models.catalog`, its writes in `masking.services.catalog`
(also behind `manage.py catalog sync`), its reads in `masking.selectors`."""
