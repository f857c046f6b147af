"""The Dagster UI in a real browser, used the way a person does after `iris dev` on a fresh home.

One `iris dev` (`dg dev`) on a free port and one materialization launched from the UI's own
Materialize button, then read back: the run page says Success and Dagster's GraphQL API agrees
(the run, the materialization, the checks it recorded). The evaluation report's confusion matrix
(``core/confusion_thumbnail.py``) must render as an image on the asset's page.

Screenshots go to ``$UI_SCREENSHOTS`` when set (to look at them), else to the test's tmp_path.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from iris_assets.core.confusion_thumbnail import ALT_TEXT, CELL, LEFT, confusion_image_markdown
from iris_assets.settings import load_settings
from tests.conftest import free_port
from tests.processes import stop_group
from tests.test_definitions import BIN, REPOSITORY_QUERY, clean_env, graphql
from tests.ui.browser import headless_chromium, require_browser

SIX_ASSETS = (
    "iris_features",
    "challenger_model",
    "evaluation_report",
    "champion_alias",
    "serving_endpoint",
    "inference_table",
)
SECONDS = 1000  # Playwright counts milliseconds


class DagsterUI:
    """`iris dev` on a fresh home in tmp_path: its URL, its Dagster home and its log."""

    def __init__(self, tmp_path: Path) -> None:
        self.env = clean_env(tmp_path)
        self.env["IRIS_SERVING_PORT"] = str(free_port())
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dagster_home = load_settings(self.env).dagster_home
        self.log = tmp_path / "iris-dev.log"
        self.process = subprocess.Popen(
            [str(BIN / "iris"), "dev", "--port", str(self.port)],
            cwd=tmp_path,
            env=self.env,
            stdout=open(self.log, "w"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            start_new_session=True,  # dg dev ignores SIGTERM without its own process group
        )

    def wait_until_loaded(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            try:
                if graphql(self.port, REPOSITORY_QUERY)["repositoriesOrError"]["nodes"]:
                    return
            except (OSError, KeyError, TypeError, IndexError):
                pass
            time.sleep(0.2)  # poll often: the wait ends as soon as it answers
        raise AssertionError(f"dg dev did not load the code location in {timeout} s")

    def query(self, text: str) -> dict:
        return graphql(self.port, text)


@pytest.fixture
def chromium() -> Path:
    """Skips (fails under CI=true) before anything starts when there is no browser to look."""
    return require_browser()


@pytest.fixture
def dagster_ui(tmp_path, chromium):
    ui = DagsterUI(tmp_path)
    try:
        yield ui
    finally:
        stop_group(ui.process)


@pytest.fixture
def shots(tmp_path) -> Path:
    folder = Path(os.environ.get("UI_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def dismiss_welcome(page) -> None:
    """Skip "Join the Dagster community", which a fresh browser profile gets, whenever it shows."""
    welcome = page.get_by_role("dialog").filter(has_text="Join the Dagster community")
    page.add_locator_handler(
        welcome, lambda dialog: dialog.get_by_role("button", name="Skip", exact=True).click()
    )


RUN_QUERY = """
{ runOrError(runId: "%s") { __typename ... on Run { status } } }
"""
MATERIALIZATION_QUERY = """
{ assetOrError(assetKey: {path: ["iris_features"]}) { ... on Asset {
    assetMaterializations(limit: 1) { runId }
} } }
"""
CHECK_QUERY = """
{ assetCheckExecutions(assetKey: {path: ["iris_features"]}, checkName: "%s", limit: 5) {
    runId status
} }
"""


@pytest.mark.slow
def test_a_person_materializes_from_the_ui_and_sees_it_succeed(chromium, dagster_ui, shots):
    from playwright.sync_api import expect

    started = time.monotonic()
    dagster_ui.wait_until_loaded()
    loaded = time.monotonic()
    with headless_chromium(chromium) as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        dismiss_welcome(page)
        page.goto(f"{dagster_ui.url}/assets")
        for asset in SIX_ASSETS:  # each row's name is a link to the asset's page
            link = page.locator(f'a[href="/assets/{asset}"]').first
            expect(link).to_be_visible(timeout=60 * SECONDS)
            expect(link).to_contain_text(asset)
        page.screenshot(path=shots / "1-catalog.png")

        page.goto(f"{dagster_ui.url}/assets/iris_features")
        materialize = page.get_by_role("button", name=re.compile(r"\bMaterialize$"))
        expect(materialize).to_be_enabled(timeout=60 * SECONDS)
        materialize.click()
        # The toast names the run it launched; its View button opens the run's page.
        expect(page.get_by_text(re.compile(r"Launched run \w+"))).to_be_visible(
            timeout=30 * SECONDS
        )
        page.get_by_text("View", exact=True).click()
        page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}"), timeout=30 * SECONDS)
        run_id = re.search(r"/runs/([0-9a-f-]{36})", page.url).group(1)

        succeeded = page.get_by_role("img", name="run_success")
        failed = page.get_by_role("img", name="run_failure")
        expect(succeeded.or_(failed).first).to_be_visible(timeout=300 * SECONDS)
        page.screenshot(path=shots / "2-run.png")
        assert not failed.count(), dagster_ui.log.read_text()[-3000:]
        expect(page.get_by_text("RUN_SUCCESS", exact=True)).to_be_visible(timeout=30 * SECONDS)
        ran = time.monotonic()

        # What the page said is what Dagster recorded: the run, its materialization, its checks.
        run = dagster_ui.query(RUN_QUERY % run_id)["runOrError"]
        assert run == {"__typename": "Run", "status": "SUCCESS"}
        asset = dagster_ui.query(MATERIALIZATION_QUERY)["assetOrError"]
        assert asset["assetMaterializations"] == [{"runId": run_id}]
        for check in ("feature_table_valid", "source_rows_accepted"):
            executions = dagster_ui.query(CHECK_QUERY % check)["assetCheckExecutions"]
            assert executions == [{"runId": run_id, "status": "SUCCEEDED"}], check

        page.goto(f"{dagster_ui.url}/assets/iris_features")
        expect(page.get_by_text("rows_ingested", exact=True)).to_be_visible(timeout=60 * SECONDS)
        page.screenshot(path=shots / "3-iris-features.png", full_page=True)

        # The evaluation report's confusion matrix, as the evaluate step writes it, reported
        # to this instance: the asset page must draw it as an image, not hide it behind a link.
        # Dagster is imported here: test_browser_availability runs this file 11 times in a
        # fresh pytest that stops at the skip or error, and the import was half of each run.
        import dagster as dg

        with dg.DagsterInstance.from_config(str(dagster_ui.dagster_home)) as instance:
            instance.report_runless_asset_event(
                dg.AssetMaterialization(
                    "evaluation_report",
                    metadata={
                        "confusion_matrix": dg.MetadataValue.md(
                            confusion_image_markdown([[17, 0, 0], [0, 14, 3], [0, 1, 15]])
                        )
                    },
                )
            )
        page.goto(f"{dagster_ui.url}/assets/evaluation_report")
        image = page.get_by_role("img", name=ALT_TEXT, exact=True)
        expect(image).to_be_visible(timeout=60 * SECONDS)
        image.scroll_into_view_if_needed()
        assert image.evaluate("img => img.complete && img.naturalWidth") == LEFT + 3 * CELL
        page.screenshot(path=shots / "4-evaluation-report.png", full_page=True)
    print(
        f"dg dev loaded in {loaded - started:.0f} s; UI materialization succeeded after "
        f"{ran - loaded:.0f} s; whole test {time.monotonic() - started:.0f} s; "
        f"screenshots in {shots}"
    )
