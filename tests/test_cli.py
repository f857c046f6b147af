"""The `iris` command as a user runs it: a fresh IRIS_HOME, real subprocesses."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port

IRIS = str(Path(sys.executable).with_name("iris"))


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IRIS_", "MLFLOW_"))}
    env.update(IRIS_HOME=str(tmp_path / "home"), IRIS_SERVING_PORT=str(free_port()))
    return env


def iris(env, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [IRIS, *args], env=env, capture_output=True, text=True, input=input, timeout=600
    )


@pytest.mark.slow
def test_demo_runs_the_whole_lifecycle_in_a_fresh_home(env):
    try:
        demo = iris(env, "demo", "--rows", "60")
        assert demo.returncode == 0, demo.stderr[-3000:]
        out = demo.stdout
        assert "as user 'demo'" in out
        for label in ("feature table", "challenger", "champion", "serving", "live prediction"):
            assert label in out
        assert "150 rows" in out and "60 rows" in out and "serves v1" in out

        status = json.loads(iris(env, "status", "--json").stdout)
        assert status["env"] == "dev" and status["target"] == "local"
        assert status["feature_table"]["rows"] == 150
        assert status["model"]["champion"] == status["model"]["challenger"] == "1"
        assert status["serving"]["healthy"] and status["serving"]["version"] == "1"
        assert status["inference_table"]["rows"] == 60
        assert len(status["inference_table"]["partitions"]) == 1
        assert "performance      30 of 60 flowers labelled" in out
        monitoring = status["monitoring"]
        assert monitoring["labelled_rows"] == 30 and monitoring["serving_log_rows"] >= 0
        assert 0.0 <= monitoring["live_accuracy"] <= 1.0
        assert monitoring["last_retrain_reason"] is None, "the demo trains by hand"

        day = status["inference_table"]["partitions"][0]
        decay = iris(env, "simulate", "--labels", "--date", day, "--accuracy-drop", "0.5")
        assert decay.returncode == 0, decay.stderr
        assert "30 labels for flowers scored on" in decay.stdout
        assert "every flower scored" in iris(env, "simulate", "--labels", "--date", day).stderr

        flower = {"sepal_length_cm": 5.0, "sepal_width_cm": 3.4, "petal_length_cm": 1.5}
        predicted = iris(env, "predict", json.dumps({**flower, "petal_width_cm": 0.2}))
        assert predicted.returncode == 0, predicted.stderr
        answer = json.loads(predicted.stdout)
        assert (answer["predictions"], answer["species"]) == ([0], ["setosa"])
        bad = iris(env, "predict", '{"sepal_length_cm": 5.0}')
        assert bad.returncode == 2 and "missing column" in bad.stderr
        assert "Traceback" not in bad.stderr
    finally:
        stopped = iris(env, "stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert iris(env, "stop").stdout.strip() == "no server was running"


def test_approving_a_missing_version_is_a_clear_error(env, mlflow_db_template):
    home = Path(env["IRIS_HOME"])
    for verb in (["approve", "7", "--by", "ana"], ["reject", "7", "--by", "ana", "--reason", "x"]):
        out = iris(env, *verb)
        assert out.returncode == 2, out.stderr
        assert "has no version 7" in out.stderr and "Traceback" not in out.stderr
        assert "nothing is registered in this home yet" in out.stderr and "iris demo" in out.stderr
    assert not home.exists(), "a fresh home gets no empty registry made for a refusal"
    (home / "dev" / "mlflow.db").mkdir(parents=True)  # not a registry: said at once
    out = iris(env, "approve", "7", "--by", "ana")
    assert out.returncode == 2 and "mlflow.db is not a file" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    (home / "dev" / "mlflow.db").rmdir()
    shutil.copy(mlflow_db_template, home / "dev" / "mlflow.db")  # a registry, no such version
    out = iris(env, "approve", "7", "--by", "ana")
    assert out.returncode == 2 and "has no version 7" in out.stderr, out.stderr
    assert "nothing is registered" not in out.stderr and "Traceback" not in out.stderr


def test_simulate_appends_flowers_to_the_landing_area(env):
    first = iris(env, "simulate", "--rows", "25", "--date", "2026-11-02", "--seed", "1")
    assert first.returncode == 0, first.stderr
    iris(env, "simulate", "--rows", "5", "--date", "2026-11-02")
    from iris_assets.core.landing import LandingArea

    landing = LandingArea(Path(env["IRIS_HOME"]) / "dev" / "landing" / "new_flowers")
    assert landing.count("2026-11-02") == 30


def test_simulate_refuses_an_empty_batch(env):
    out = iris(env, "simulate", "--rows", "0", "--date", "2026-11-02")
    assert out.returncode == 2 and "--rows must be 1 or more" in out.stderr
    assert not (Path(env["IRIS_HOME"]) / "dev" / "landing").exists()


@pytest.mark.parametrize("rows", ["10000001", "10000000000", "100000000000"])
def test_simulate_refuses_more_rows_than_a_batch_holds_without_a_traceback(env, rows):
    for extra in ([], ["--labels"]):
        out = iris(env, "simulate", "--rows", rows, "--date", "2026-11-02", *extra)
        assert out.returncode == 2, out.stderr[-2000:]
        assert "more than one batch holds (10,000,000)" in out.stderr
        assert "Traceback" not in out.stderr
    assert not (Path(env["IRIS_HOME"]) / "dev" / "landing").exists()


def test_the_demo_summary_names_the_predicted_species():
    from iris_assets.demo import prediction_text

    assert prediction_text({"predictions": [1]}) == "[1] (versicolor)"
    assert prediction_text({"predictions": [0, 2, 7]}) == "[0, 2, 7] (setosa, virginica, ?)"
    assert prediction_text({"error": "x"}) == "{'error': 'x'}"


@pytest.fixture
def other_homes_server(env):
    """A server like ours on this home's serving port, started for another home (not this one)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            body = json.dumps({"pid": os.getpid(), "version": "3", "model_name": "iris"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", int(env["IRIS_SERVING_PORT"])), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(env["IRIS_SERVING_PORT"])
    server.shutdown()
    server.server_close()


def test_status_does_not_take_another_homes_server_for_this_ones(env, other_homes_server):
    out = iris(env, "status")
    assert out.returncode == 0, out.stderr
    assert f"another server answers on port {other_homes_server}" in out.stdout
    assert "v3" not in out.stdout
    serving = json.loads(iris(env, "status", "--json").stdout)["serving"]
    assert serving["version"] is None and not serving["healthy"] and serving["other_server"]


def test_status_on_a_fresh_clone_creates_nothing_and_says_what_to_run(env):
    out = iris(env, "status")
    assert out.returncode == 0, out.stderr
    assert "champion -, no challenger" in out.stdout and "pending" not in out.stdout
    assert "`iris demo`" in out.stdout
    assert out.stderr == ""  # no migration logs
    assert not Path(env["IRIS_HOME"]).exists()
    assert not Path("mlflow.db").exists()  # the cwd: MLflow's default registry


def test_predict_without_a_server_says_so_once(env):
    out = iris(env, "predict", '{"sepal_length_cm": 5.0}')
    assert out.returncode == 2
    assert "is the server running?" in out.stderr
    assert out.stderr.count("/invocations") == 1


def test_simulate_rejects_a_bad_date(env):
    out = iris(env, "simulate", "--date", "26/11/2026")
    assert out.returncode == 2 and "is not a date like" in out.stderr


def test_predict_rejects_input_that_is_not_json(env):
    out = iris(env, "predict", "{sepal: 5")
    assert out.returncode == 2 and "not valid JSON" in out.stderr


def test_an_unknown_env_is_named(env):
    out = iris({**env, "IRIS_ENV": "staging"}, "status")
    assert out.returncode == 2 and "IRIS_ENV='staging'" in out.stderr


def test_status_on_the_databricks_target_points_to_where_the_state_is(env):
    out = iris({**env, "IRIS_TARGET": "databricks"}, "status")
    assert out.returncode == 2 and "Catalog Explorer" in out.stderr


def test_status_json_has_a_monitoring_section_on_a_fresh_home(env):
    status = json.loads(iris(env, "status", "--json").stdout)
    assert status["monitoring"] == {
        "live_accuracy": None,
        "live_accuracy_day": None,
        "labelled_rows": 0,
        "serving_log_rows": 0,
        "last_retrain_reason": None,
        "notifications": [],
    }
    assert not Path(env["IRIS_HOME"]).exists()


def test_label_copies_a_file_into_the_day_whole(env, tmp_path):
    labels = tmp_path / "lab-results.csv"
    labels.write_text("flower_id,species\n7,setosa\n8,tulip\n")
    out = iris(env, "label", "--date", "2026-11-03", "--file", str(labels))
    assert out.returncode == 0, out.stderr
    assert "2 label rows for flowers observed on 2026-11-03" in out.stdout
    folder = Path(env["IRIS_HOME"]) / "dev/landing/flower_labels/observed_date=2026-11-03"
    [landed] = list(folder.iterdir())
    assert landed.name.startswith("batch-") and landed.suffix == ".csv"
    assert landed.read_bytes() == labels.read_bytes(), "copied byte for byte, bad rows too"


def out_of(env, file) -> str:
    return iris(env, "label", "--date", "2026-11-03", "--file", str(file)).stderr


def test_label_refuses_a_file_the_landing_could_not_read(env, tmp_path):
    notes = tmp_path / "labels.xlsx"
    notes.write_bytes(b"PK\x03\x04 not a csv")
    broken = tmp_path / "labels.parquet"
    broken.write_bytes(b"PAR1 truncated")
    header_only = tmp_path / "header.csv"
    header_only.write_text("flower_id,species\n")
    unlabelled = tmp_path / "scores.csv"  # rows, but not label rows
    unlabelled.write_text("id,label\n7,setosa\n")
    for bad in (notes, broken, header_only, unlabelled, tmp_path / "missing.csv"):
        out = iris(env, "label", "--date", "2026-11-03", "--file", str(bad))
        assert out.returncode == 2, out.stdout
        assert "Traceback" not in out.stderr and bad.name in out.stderr
    assert "has no flower_id or species column" in out_of(env, unlabelled)
    assert not (Path(env["IRIS_HOME"]) / "dev" / "landing").exists(), "nothing was copied"


def test_simulate_labels_needs_scored_flowers_and_a_share(env):
    out = iris(env, "simulate", "--labels", "--date", "2026-11-03")
    assert out.returncode == 2 and "nothing was scored yet" in out.stderr
    out = iris(env, "simulate", "--labels", "--accuracy-drop", "1.5")
    assert out.returncode == 2 and "between 0 and 1" in out.stderr
    out = iris(env, "simulate", "--rows", "5", "--accuracy-drop", "0.2")
    assert out.returncode == 2 and "--labels only" in out.stderr


# Every way `iris simulate` refuses its arguments, each decided before any table is read.
SIMULATE_REFUSALS = (
    ["--rows", "0"],
    ["--rows", "10000001", "--labels"],
    ["--date", "26/11/2026", "--labels"],
    ["--labels", "--accuracy-drop", "1.5"],
    ["--rows", "5", "--accuracy-drop", "0.2"],
    ["--labels", "--drift"],
)


def test_a_refused_simulate_imports_neither_pandas_nor_deltalake(env):
    """A refusal is instant: the arguments are checked before the data libraries load."""
    program = (
        "import json, sys\n"
        "from iris_assets import cli\n"
        "codes = [cli.main(['simulate', *args]) for args in json.loads(sys.argv[1])]\n"
        "heavy = ('pandas', 'numpy', 'pyarrow', 'deltalake')\n"
        "print(json.dumps({'codes': codes, 'loaded': [m for m in heavy if m in sys.modules]}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", program, json.dumps(SIMULATE_REFUSALS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout) == {"codes": [2] * len(SIMULATE_REFUSALS), "loaded": []}
    assert out.stderr.count("iris simulate: ") == len(SIMULATE_REFUSALS), out.stderr
    assert not (Path(env["IRIS_HOME"]) / "dev" / "landing").exists()
