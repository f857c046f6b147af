"""The `iris` command: run the demo, inspect, approve or reject, predict, serve, simulate."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path

from iris_assets.dev_processes import MARKER, describe, dev_processes, stop_dev_processes
from iris_assets.settings import SettingsError, load_settings


class CliError(Exception):
    """A problem the user can fix; printed without a traceback."""


MAX_SIMULATED_ROWS = 10_000_000  # one batch file; ~740 MB in memory while it is written


def batch_rows(rows: int | None) -> None:
    """Refuse a --rows an observation batch cannot be (checked before anything is read)."""
    if rows is not None and rows < 1:
        raise CliError("--rows must be 1 or more: an empty batch file is not an observation")
    if rows is not None and rows > MAX_SIMULATED_ROWS:
        raise CliError(
            f"--rows {rows:,} is more than one batch holds ({MAX_SIMULATED_ROWS:,}): "
            "simulate several batches instead"
        )


def cmd_demo(args) -> int:
    from iris_assets.resources.warm_steps import prestart

    prestart()  # the warm worker, forked from here with the steps' imports, shared with ours
    from iris_assets.demo import DemoError, run_demo, summary_table

    settings = load_settings()
    try:
        status = run_demo(settings, rows=args.rows)
    except DemoError as error:
        raise CliError(str(error)) from None
    print("\n" + summary_table(status))
    print("\nThe server keeps running: `iris predict` to query it, `iris stop` to stop it.")
    return 0


def cmd_status(args) -> int:
    from iris_assets.status import collect_status, status_lines

    settings = load_settings()
    if settings.is_databricks:
        raise CliError(
            "status reads this machine's tables and server; with IRIS_TARGET=databricks see the "
            "assets in the Dagster UI and the model in Catalog Explorer"
        )
    status = collect_status(settings)
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    for line in status_lines(status):
        alarming = "MISMATCH" in line or "REJECTED" in line
        print(f"\033[31m{line}\033[0m" if alarming and sys.stdout.isatty() else line)
    return 0


def refuse_without_registry(settings, version: str) -> None:
    """A local home with no registry has no version to act on: say so, and create none (opening
    MLflow's store would make and migrate an empty registry, seconds of work, for nothing)."""
    if settings.is_databricks or settings.mlflow_db.is_file():
        return
    if settings.mlflow_db.exists():  # a folder, say: MLflow would retry it for minutes
        raise CliError(f"the registry {settings.mlflow_db} is not a file: move it away")
    raise CliError(
        f"model {settings.model_name} has no version {version}: nothing is registered in "
        f"this home yet ({settings.mlflow_db}); run `iris demo` (or `make demo`) first"
    )


def cmd_approve(args) -> int:
    from iris_assets.core.registry import ModelRegistry, RegistryError
    from iris_assets.settings import separate_duties

    settings = load_settings()
    refuse_without_registry(settings, args.version)
    try:
        version = ModelRegistry(settings).approve(
            args.version, by=args.by, separate_duties=separate_duties(settings)
        )
    except RegistryError as error:
        raise CliError(str(error)) from None
    print(
        f"{version.name} version {version.version} approved by {args.by} for evaluation record "
        f"{version.tags['approval_evaluation_run_id']} "
        f"({version.tags.get('evaluation_reason', 'not evaluated')}); champion_approval_sensor "
        "promotes it if that record passes and is still current (`iris status`)"
    )
    return 0


def cmd_reject(args) -> int:
    from iris_assets.core.registry import ModelRegistry, RegistryError

    settings = load_settings()
    refuse_without_registry(settings, args.version)
    models = ModelRegistry(settings)
    try:
        version = models.reject(args.version, by=args.by, reason=args.reason)
    except RegistryError as error:
        raise CliError(str(error)) from None
    print(f"{version.name} version {version.version} rejected by {args.by}: {args.reason}")
    if "champion" in version.aliases:
        try:
            _, target = models.rollback_target(None)
        except RegistryError as error:
            print(f"it is the champion and keeps serving: {error}", file=sys.stderr)
            return 1
        print(
            f"it is the champion: champion_approval_sensor rolls back to version "
            f"{target.version} (now: `iris rollback --by {args.by} --reason ...`)"
        )
    return 0


def cmd_rollback(args) -> int:
    """Run rollback_job in-process on this env's Dagster instance (it shows in the UI)."""
    from iris_assets.core.registry import ModelRegistry, RegistryError
    from iris_assets.definitions import build_definitions
    from iris_assets.demo import DemoError, dagster_instance, run_job

    settings = load_settings()
    if not args.by.strip() or not args.reason.strip():
        raise CliError("say who rolls back and why: --by NAME --reason TEXT")
    from iris_assets.assets.promotion import former_champions

    instance = dagster_instance(settings)
    try:
        old, target = ModelRegistry(settings).rollback_target(
            args.to, former_champions(instance, settings.model_name)
        )
    except RegistryError as error:
        raise CliError(str(error)) from None
    config = {"rollback": True, "to": target.version, "by": args.by, "reason": args.reason}
    try:
        run_job(
            build_definitions(settings),
            instance,
            "rollback_job",
            run_config={"ops": {"champion_alias": {"config": config}}},
            tags={"iris/model": settings.model_name, "iris/trigger": "iris rollback"},
        )
    except DemoError as error:
        raise CliError(str(error)) from None
    print(
        f"{settings.model_name}: champion rolled back from version {old.version} to "
        f"{target.version} by {args.by} ({args.reason}); version {old.version} needs a new "
        "approval to be promoted again"
    )
    return 0


def read_payload(args) -> object:
    text = (
        args.data
        if args.data is not None
        else (Path(args.file).read_text() if args.file else sys.stdin.read())
    )
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as error:
        raise CliError(
            f"the input is not valid JSON ({error.msg} at line {error.lineno})"
        ) from None
    if isinstance(payload, dict) and not (
        {"dataframe_split", "dataframe_records", "instances", "inputs"} & payload.keys()
    ):
        payload = [payload]  # one flower given as a plain record
    return payload


def cmd_predict(args) -> int:
    from iris_assets.serving.client import ServingError, predict

    url = args.url or load_settings().serving_url + "/invocations"
    headers = {}
    if url.startswith("https://"):  # a Databricks endpoint needs the workspace's credential
        from iris_assets.resources.databricks_serving import auth_headers_for_url

        headers = auth_headers_for_url(url)
    try:
        answer = predict(url, read_payload(args), headers=headers)
    except ServingError as error:
        if error.status is None:  # nothing answered: the message already names the URL
            raise CliError(
                f"{error}; is the server running? `iris status` says, `iris serve` starts one"
            ) from None
        raise CliError(f"{url}: {error}") from None
    print(json.dumps(with_species(answer)))
    return 0


def with_species(answer: dict) -> dict:
    """The model's raw output with the species each class index stands for next to it."""
    from iris_assets.core.schema import SPECIES_NAMES

    predictions = answer.get("predictions")
    if not isinstance(predictions, list):
        return answer
    species = [
        SPECIES_NAMES[p] if type(p) is int and 0 <= p < len(SPECIES_NAMES) else None
        for p in predictions
    ]
    return {"predictions": predictions, "species": species, **answer}


def champion_version() -> tuple[str, str]:
    from iris_assets.core.registry import ModelRegistry

    settings = load_settings()
    models = ModelRegistry(settings)
    champion = models.champion()
    if champion is None:
        raise CliError(
            f"{models.name} has no champion yet: run `iris demo`, or approve a challenger "
            "(`iris approve N --by NAME`) and let the sensor promote it"
        )
    return models.name, champion.version


def cmd_serve(args) -> int:
    settings = load_settings()
    name, version = champion_version()
    os.environ.update(settings.step_env())
    command = [
        sys.executable, "-m", "iris_assets.serving.server",
        "--model-name", name, "--version", version,
        "--host", args.host or settings.serving_host,
        "--port", str(args.port or settings.serving_port),
        "--state-dir", str(settings.serving_dir),
        "--endpoint-name", settings.endpoint_name,
    ]  # fmt: skip
    os.execv(sys.executable, command)
    return 0  # not reached


def cmd_stop(args) -> int:
    from iris_assets.serving.process import ServingProcess

    settings = load_settings()
    process = ServingProcess(settings.serving_dir, settings.serving_host, settings.serving_port)
    stopped = process.stop()
    print(f"stopped the server at {settings.serving_url}" if stopped else "no server was running")
    dagster = stop_dev_processes(settings.env_home)
    if dagster:
        print(f"stopped iris dev's Dagster processes for {settings.env_home}: pids {dagster}")
    return 0


def observed_day(text: str | None) -> str:
    day = text or datetime.now(UTC).date().isoformat()
    try:
        return date.fromisoformat(day).isoformat()
    except ValueError:
        raise CliError(f"--date {day!r} is not a date like 2026-11-26") from None


def cmd_label(args) -> int:
    """Copy a file of labels (flower_id, species) into the day's label landing, atomically."""
    from iris_assets.core.labels import LabelFileError, copy_label_file

    settings = load_settings()
    day = observed_day(args.date)
    try:
        path, rows = copy_label_file(args.file, settings.labels_landing_dir, day)
    except LabelFileError as error:
        raise CliError(str(error)) from None
    print(
        f"{rows} label rows for flowers observed on {day} -> {path}; labels_files_sensor "
        f"re-computes model_performance for {day} (bad rows go to the rejects table)"
    )
    return 0


def simulate_labels_for(args, settings, day: str) -> int:
    if not 0.0 <= args.accuracy_drop <= 1.0:
        raise CliError("--accuracy-drop is a share of labels, between 0 and 1")
    from iris_assets.core.labels import labelled_ids, simulate_labels
    from iris_assets.core.landing import LandingArea
    from iris_assets.core.schema import FEATURE_COLUMNS, PRIMARY_KEY
    from iris_assets.steps.stores import table_store

    store = table_store(settings)
    if not store.exists(settings.inference_table):
        raise CliError(
            f"nothing was scored yet: labels are for scored flowers (`iris demo`, or "
            f"materialize inference_table for {day})"
        )
    scored = store.read(
        settings.inference_table,
        [PRIMARY_KEY, *FEATURE_COLUMNS, "prediction"],
        predicate=f"observed_date = '{day}'",
    )
    if scored.empty:
        raise CliError(f"no flowers were scored on {day}: score that day first")
    labels = simulate_labels(
        scored,
        rows=args.rows,
        accuracy_drop=args.accuracy_drop,
        skip=labelled_ids(settings.labels_landing_dir, day),
        seed=args.seed,
    )
    if labels.empty:
        raise CliError(f"every flower scored on {day} already has a label")
    path = LandingArea(settings.labels_landing_dir).write_batch(labels, day)
    print(
        f"{len(labels)} labels for flowers scored on {day} "
        f"({args.accuracy_drop:.0%} disagree with the model on purpose) -> {path}"
    )
    return 0


def cmd_simulate(args) -> int:
    # The arguments are checked before pandas and deltalake are imported: a refusal is instant.
    batch_rows(args.rows)
    settings = load_settings()
    day = observed_day(args.date)
    if args.labels:
        if args.drift:
            raise CliError("--drift shifts measurements; labels have none: leave it out")
        return simulate_labels_for(args, settings, day)
    if args.accuracy_drop:
        raise CliError("--accuracy-drop applies to --labels only")
    from iris_assets.core.landing import LandingArea, simulate_flowers

    rows = 100 if args.rows is None else args.rows
    frame = simulate_flowers(rows, day, seed=args.seed, drift=args.drift)
    path = LandingArea(settings.landing_dir).write_batch(frame, day)
    print(f"{rows} flowers observed on {day} -> {path}")
    return 0


def cmd_mlflow(args) -> int:
    """The MLflow UI over this env's registry and artifacts, on 127.0.0.1, in the foreground."""
    settings = load_settings()
    if settings.is_databricks:
        raise CliError("on Databricks the MLflow UI is the workspace's: Experiments and Models")
    if not settings.mlflow_db.exists():
        raise CliError(
            f"no registry yet at {settings.mlflow_db}: run `iris demo` (or `make demo`) first"
        )
    port = args.port or settings.mlflow_ui_port
    if port != settings.mlflow_ui_port:
        print(
            f"note: Dagster's MLflow links point at {settings.mlflow_ui_url}; set "
            f"IRIS_MLFLOW_PORT={port} (not --port) for `iris dev` / `iris demo` too to move them",
            file=sys.stderr,
        )
    mlflow = Path(sys.executable).with_name("mlflow")
    command = [
        str(mlflow), "server",
        "--backend-store-uri", settings.tracking_uri,
        "--default-artifact-root", settings.artifact_root.as_uri(),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--workers", "1",
    ]  # fmt: skip
    # MLflow's job runner (GenAI evaluation and optimization jobs) is a runner and its huey
    # consumers beside the server, which this UI, for browsing runs and models, has no use for.
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    print(f"MLflow UI for {settings.env_home}: http://127.0.0.1:{port}", flush=True)
    os.execv(command[0], command)
    return 0  # not reached


def project_root() -> Path | None:
    """The checkout holding pyproject.toml with a ``[tool.dg]`` section, where ``dg`` runs."""
    root = Path(__file__).resolve().parents[1]
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and "[tool.dg]" in pyproject.read_text():
        return root
    return None


def hold_dev_lock(settings, url: str) -> int:
    """Lock this home's ``iris-dev.lock`` for the life of the process (it survives exec)."""
    import fcntl

    path = settings.dagster_home / "iris-dev.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        try:
            first = json.loads(path.read_text() or "{}")
        except ValueError:
            first = {}
        raise CliError(
            f"iris dev is already running for {settings.env_home} (pid {first.get('pid', '?')}, "
            f"{first.get('url', 'URL unknown')}, since {first.get('started_at', '?')}); "
            "use that one, or stop it (Ctrl-C in its terminal, or `iris stop`) first"
        ) from None
    orphans = dev_processes(settings.env_home)
    if orphans:
        os.close(fd)
        raise CliError(
            f"an earlier iris dev for {settings.env_home} was killed but its Dagster processes "
            f"still run ({describe(orphans)}); a second daemon would fight them: stop them with "
            "`iris stop`"
        )
    record = {"pid": os.getpid(), "url": url, "started_at": datetime.now(UTC).isoformat()}
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(record).encode())
    os.set_inheritable(fd, True)  # dagster replaces this process: the lock goes with it
    return fd


DAGSTER_URL_ENV = "IRIS_DAGSTER_URL"


def cmd_dev(args) -> int:
    """Start the Dagster UI (`dg dev`) on this env's Dagster home, so demo runs appear in it."""
    settings = load_settings()
    settings.dagster_home.mkdir(parents=True, exist_ok=True)
    root = project_root()
    bin_dir = Path(sys.executable).parent
    options = ["-h", args.host, "-p", str(args.port)]
    if args.workspace or root is None:  # `dagster dev` on a workspace file, or an installed copy
        target = ["-w", str(Path(args.workspace).resolve())] if args.workspace else []
        command = [str(bin_dir / "dagster"), "dev", *(target or ["-m", "iris_assets.definitions"])]
    else:
        os.chdir(root)
        command = [str(bin_dir / "dg"), "dev"]
    hold_dev_lock(settings, f"http://{args.host}:{args.port}")
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home)
    os.environ[DAGSTER_URL_ENV] = f"http://{args.host}:{args.port}"  # notification links
    os.environ[MARKER] = str(settings.env_home.resolve())  # every child inherits: see dev_processes
    print(f"Dagster UI for {settings.env_home}: http://{args.host}:{args.port}", flush=True)
    os.execv(command[0], [*command, *options])
    return 0  # not reached


def cmd_databricks_env(args) -> int:
    """The environment spec the Databricks step runner submits with every step task."""
    from iris_assets import databricks_env

    settings = load_settings()
    bundle_root = args.bundle_root or databricks_env.default_bundle_root(args.user, settings.env)
    wheel = args.wheel_path or databricks_env.bundle_wheel_path(bundle_root)
    try:
        spec = databricks_env.environment_spec(wheel)
    except databricks_env.ServerlessEnvironmentError as error:
        raise CliError(str(error)) from None
    if args.json:
        print(json.dumps(spec, indent=2))
    else:
        print(f"environment_version {spec['environment_version']}")
        print("\n".join(f"  {dependency}" for dependency in spec["dependencies"]))
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="iris",
        description="Operate the Iris classifier: IRIS_ENV (dev|prod), IRIS_TARGET, IRIS_HOME.",
    )
    sub = root.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the whole lifecycle locally and print a summary")
    demo.add_argument("--rows", type=int, default=200, help="new flowers to score (default 200)")
    demo.set_defaults(func=cmd_demo)

    status = sub.add_parser("status", help="tables, model versions and the endpoint")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)

    approve = sub.add_parser("approve", help="tag a model version approval=approved")
    approve.add_argument("version")
    approve.add_argument("--by", required=True, help="who approves (recorded on the version)")
    approve.set_defaults(func=cmd_approve)

    reject = sub.add_parser("reject", help="tag a model version approval=rejected")
    reject.add_argument("version")
    reject.add_argument("--by", required=True)
    reject.add_argument("--reason", required=True)
    reject.set_defaults(func=cmd_reject)

    rollback = sub.add_parser("rollback", help="move champion back to a former champion")
    rollback.add_argument("--to", help="the former champion (default: the previous one)")
    rollback.add_argument("--by", required=True, help="who rolls back (recorded)")
    rollback.add_argument("--reason", required=True, help="why (recorded)")
    rollback.set_defaults(func=cmd_rollback)

    predict = sub.add_parser("predict", help="send JSON to the endpoint, print the predictions")
    predict.add_argument(
        "data",
        nargs="?",
        help="JSON (a record, a list of records, or a "
        "scoring-protocol body); default: read --file or stdin",
    )
    predict.add_argument("--file", help="read the JSON from this file")
    predict.add_argument("--url", help="scoring URL (default: this env's local endpoint)")
    predict.set_defaults(func=cmd_predict)

    serve = sub.add_parser("serve", help="serve the champion in the foreground")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(func=cmd_serve)

    stop = sub.add_parser(
        "stop", help="stop this IRIS_HOME's server and iris dev's Dagster processes"
    )
    stop.set_defaults(func=cmd_stop)

    simulate = sub.add_parser(
        "simulate", help="append unlabelled flowers (or, with --labels, late labels) to a landing"
    )
    simulate.add_argument(
        "--rows",
        type=int,
        help="flowers (default 100); with --labels: at most this many labels "
        "(default: every scored flower of the day without one)",
    )
    simulate.add_argument("--date", help="observed date YYYY-MM-DD (default: today, UTC)")
    simulate.add_argument("--seed", type=int)
    simulate.add_argument("--drift", action="store_true", help="shift the measurements")
    simulate.add_argument(
        "--labels", action="store_true", help="labels for the flowers scored on --date"
    )
    simulate.add_argument(
        "--accuracy-drop",
        type=float,
        default=0.0,
        help="with --labels: the share of labels that disagree with the model (decay)",
    )
    simulate.set_defaults(func=cmd_simulate)

    label = sub.add_parser("label", help="land a file of labels (flower_id, species) for a day")
    label.add_argument("--date", required=True, help="the day the flowers were observed")
    label.add_argument("--file", required=True, help="a .csv or .parquet file")
    label.set_defaults(func=cmd_label)

    mlflow = sub.add_parser("mlflow", help="start the MLflow UI over this env's registry")
    mlflow.add_argument(
        "--port", type=int, help="default IRIS_MLFLOW_PORT, else 5125 (dev), 5126 (prod)"
    )
    mlflow.set_defaults(func=cmd_mlflow)

    dev = sub.add_parser("dev", help="start the Dagster UI (dg dev) for this env")
    dev.add_argument("--workspace", help="run `dagster dev -w` on this workspace file instead")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=3000)
    dev.set_defaults(func=cmd_dev)

    databricks = sub.add_parser("databricks", help="what the Databricks target submits")
    databricks_sub = databricks.add_subparsers(dest="databricks_command", required=True)
    env = databricks_sub.add_parser(
        "env", help="the serverless environment spec of the step tasks (runs/submit environments)"
    )
    env.add_argument("--json", action="store_true", help="the spec as the runner submits it")
    env.add_argument(
        "--user",
        default="<user>",
        help="who deployed the bundle and runs Dagster (a service principal's application id)",
    )
    env.add_argument("--bundle-root", help="the bundle's root_path (the runner's bundle_root)")
    env.add_argument("--wheel-path", help="the uploaded wheel (the runner's wheel_path)")
    env.set_defaults(func=cmd_databricks_env)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except (CliError, SettingsError) as error:
        print(f"iris {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
