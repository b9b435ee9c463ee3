"""The WSGI entry point gunicorn serves: ``study.wsgi:app``."""

from study.app import create_app

app = create_app()
