"""gunicorn reads this file from the working directory: labservice's settings (labservice/serving/gunicorn_conf.py)."""

from labservice.serving.gunicorn_conf import access_log_format, logconfig_dict, on_starting  # noqa: F401
