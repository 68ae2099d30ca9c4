"""tickserve adjusts KServe's module-level globals in one place, written against one KServe version."""

from importlib.metadata import version

from tickserve import kserve_compat


def test_installed_kserve_is_the_version_the_adjustments_were_written_against() -> None:
    """On a KServe upgrade this fails until every adjustment in tickserve/kserve_compat.py has been re-read."""
    assert version("kserve") == kserve_compat.KSERVE_VERSION


def test_the_pinned_kserve_still_has_every_global_tickserve_adjusts() -> None:
    from kserve import model_server

    assert isinstance(model_server.FASTAPI_APP_IMPORT_STRING, str)
    assert {"model_name", "http_port", "workers", "predictor_host"} <= set(vars(model_server.args))
    assert kserve_compat.kserve_parser() is model_server.parser
    assert kserve_compat.kserve_app() is model_server.app
