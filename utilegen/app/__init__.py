"""utilegen's web app: upload micrographs in a browser, get overlays, particle tables, the
size distribution (histogram, KDE, log-normal fit), summary statistics and CSV downloads.

Run it with ``utilegen serve`` or::

    import uvicorn
    from utilegen.app import create_app
    uvicorn.run(create_app(), host="127.0.0.1", port=8000)

Needs the web extra (``pip install 'utilegen[web]'``: FastAPI, uvicorn, python-multipart).
"""

from ._app import TABLE_COLUMNS, create_app

__all__ = ["TABLE_COLUMNS", "create_app"]
