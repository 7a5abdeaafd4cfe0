"""The review dashboard: a Streamlit app over the SQLite catalog to triage machine clusters and
override labels. Every override goes through :func:`shardlens.reviews.record_reviews`, the same
validated path as the CSV re-import, so exports show it at once.

- :mod:`.queries`: every SQL statement the app runs (parameterised, paged);
- :mod:`.thumbnails`: the on-disk thumbnail cache (boxes and captions drawn optionally);
- :mod:`.app`: the Streamlit script;
- :mod:`.launch`: ``run_dashboard`` / ``dashboard_command`` to start it (``shardlens review``).

Streamlit is an optional dependency (the ``ui`` extra); only ``app`` and ``launch`` need it.
"""
