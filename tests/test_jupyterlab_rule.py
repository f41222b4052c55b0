"""The browser tests' rule for a missing browser: skipped with the reason, except under CI=true, where it fails."""

import pytest

from tests.jupyterlab import chromium


@pytest.mark.parametrize("ci", ["true", ""])
def test_missing_chromium_skips_locally_and_fails_under_ci(monkeypatch, tmp_path, ci):
    monkeypatch.setenv("CHROMIUM", str(tmp_path / "no-such-chromium"))
    monkeypatch.setenv("CI", ci)
    expected = pytest.fail.Exception if ci else pytest.skip.Exception
    with pytest.raises(expected, match="no Chromium binary"):
        chromium()
