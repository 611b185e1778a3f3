"""The dashboard's session key (labservice/dashboard/__init__.py): LABSERVICE_SECRET_KEY when set, otherwise one
random key kept in the instance folder and shared by every app of that installation."""

from __future__ import annotations

from pathlib import Path

from labservice.app import create_app
from labservice.config import load_settings


def _app(tmp_path: Path, environ: dict[str, str]):
    settings = load_settings({"LABSERVICE_INSTANCE_PATH": str(tmp_path / "instance"), **environ})
    settings.update(TESTING=True, DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite'}")
    return create_app(settings)


def test_the_key_set_in_the_environment_signs_the_session(tmp_path):
    app = _app(tmp_path, {"LABSERVICE_SECRET_KEY": "a-key-shared-by-two-machines"})
    assert app.config["SECRET_KEY"] == "a-key-shared-by-two-machines"
    assert not (Path(app.instance_path) / "secret_key").exists()


def test_without_one_every_app_of_an_installation_shares_the_instance_key(tmp_path):
    first, second = _app(tmp_path, {}), _app(tmp_path, {})
    key = first.config["SECRET_KEY"]
    assert len(key) >= 32 and second.config["SECRET_KEY"] == key
    assert (Path(first.instance_path) / "secret_key").read_text(encoding="ascii").strip() == key
