"""WSGI entry point: gunicorn wsgi:app"""

from labservice.app import create_app

app = create_app()
