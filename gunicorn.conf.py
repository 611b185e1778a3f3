"""gunicorn reads this file from the working directory: labservice's settings (labservice/serving/gunicorn_conf.py)."""

from labservice.serving.gunicorn_conf import (  # noqa: F401
    access_log_format,
    child_exit,
    logconfig_dict,
    on_exit,
    on_starting,
)
