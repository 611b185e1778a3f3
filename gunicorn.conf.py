"""gunicorn reads this file from the working directory: labservice's settings (labservice/security/gunicorn_conf.py)."""

from labservice.security.gunicorn_conf import access_log_format, logconfig_dict, on_starting  # noqa: F401
