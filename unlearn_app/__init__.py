"""What only the dashboard needs, kept out of the library: plain Python, tested without a browser.

- :mod:`.urlstate`: the choice in the URL, the session cookie, markdown-safe text;
- :mod:`.access`: the run store as one browser session may see it (deny by default);
- :mod:`.uploads`: uploaded original models, checked once and held in memory;
- :mod:`.state`: the shared choice, the per-server limits, the cache of prepared setups;
- :mod:`.jobs`: the single background worker (progress, cancel, a queue limit per session);
- :mod:`.display`: images and predictions as the pages show them.

``app.py`` and ``app_pages/`` draw with Streamlit and call these; nothing here imports Streamlit, and nothing in
``unlearn_core`` imports this package.
"""
