"""The Tuning pages on the Dask dashboard, installed by the scheduler plugin in ``plugin``.

- ``host_storage``, ``state``: the studies as the pages read them, through an Optuna storage
  over each storage host (optuna-dashboard's too);
- ``app``, ``pages``, ``templates/``: the pages, Bokeh server documents in the dashboard's frame;
- ``handlers``: the JSON routes and the Prometheus gauges;
- ``optuna_view``, ``static/optuna-mount.js``: optuna-dashboard, mounted for every storage.
"""
