"""The container image (Dockerfile), compose.yaml and deploy/k8s/ name only what exists.

There is no container engine on the machines that run these tests, so nothing here builds
the image or starts a container. Instead every command line those files would run — the
roles (`fss scheduler`, `fss worker -A ...`), the healthchecks and probes, the one-off
commands in their comments — is parsed by the real click command trees of fss and Celery
with every callback replaced by a recorder: a misspelled command or option, a bad value or
a missing required option fails here as it would in the container. The Kubernetes objects
are checked for what the cluster would otherwise only reject (or accept, and regret) at
apply time: resources, probes, a non-root security context, references that resolve.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import re
import shlex
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import click
import pytest
import sqlalchemy as sa
import yaml
from celery import Celery
from celery.app.control import Inspect
from celery.bin.base import CLIContext
from celery.bin.celery import celery as celery_cli
from runtime_python import runtime_python
from servers import migrated_copy

from fss.cli import cli as fss_cli
from fss.errors import FssError
from fss.store.clients import heartbeat_node
from fss.worker_sdk.worker import load_jobs

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "compose.yaml"
K8S = ROOT / "deploy" / "k8s"
K8S_README = K8S / "README.md"

FSS_IMAGE = re.compile(r"^(?:[\w.\-:]+/)*fss:[\w.\-]+$")
SHELL_OPERATORS = {"|", "||", "&&", ";", "&", "(", ")"}
K8S_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}
EXITING_OPTIONS = {"-h", "--help", "--version"}


# --- resolving command lines through the real click trees -----------------------------


@dataclass(frozen=True)
class Call:
    """The leaf command a command line reaches, and the parameters click parsed for it."""

    path: tuple[str, ...]
    params: dict[str, Any]


def dry_tree(command: click.Command, calls: list[Call], path: tuple[str, ...]) -> Any:
    """A copy of `command` (and its subcommands) whose callbacks only record their call."""
    clone = copy.copy(command)

    def record(*_args: Any, **params: Any) -> None:
        calls.append(Call(path, params))

    clone.callback = record
    if isinstance(command, click.Group) and isinstance(clone, click.Group):
        # list_commands/get_command, not .commands: `fss` loads its subcommands lazily.
        context = click.Context(command)
        subcommands = {name: command.get_command(context, name)
                       for name in command.list_commands(context)}
        clone.commands = {
            name: dry_tree(sub, calls, (*path, name))
            for name, sub in subcommands.items() if sub is not None
        }
    return clone


def parse_with(tree: click.Command, argv: list[str], obj: Any = None) -> Call:
    calls: list[Call] = []
    dry = dry_tree(tree, calls, (Path(argv[0]).name,))
    exit_code = dry.main(args=argv[1:], prog_name=argv[0], standalone_mode=False, obj=obj)
    if EXITING_OPTIONS & set(argv):
        # --help/--version exit while parsing, before the leaf's callback: click has already refused
        # an unknown command or option on the way to it.
        assert exit_code == 0
        leading = [word for word in argv[1:] if not word.startswith("-")]
        return Call((Path(argv[0]).name, *leading), {})
    assert calls, f"{shlex.join(argv)} ran no command"
    return calls[-1]


def check_command_line(argv: list[str]) -> Call:
    """Raise (click.UsageError and friends) unless `argv` is a valid fss or celery command."""
    program = Path(argv[0]).name
    if program == "fss":
        call = parse_with(fss_cli, argv)
        if call.path == ("fss", "worker"):
            check_worker_call(call)
        return call
    if program == "celery":
        call = parse_with(celery_cli, argv)
        if call.path == ("celery", "inspect"):
            check_inspect_call(call)
        return call
    raise AssertionError(f"no command tree for {program!r} ({shlex.join(argv)})")


def check_worker_call(call: Call) -> None:
    """The job modules exist and define jobs; what fss passes on to `celery worker` is valid."""
    load_jobs(list(call.params["modules"]))
    extra = list(call.params["celery_args"])
    if extra:
        # Some of `celery worker`'s option callbacks read the app from the context object.
        app = Celery(set_as_current=False)
        try:
            parse_with(celery_cli, ["celery", "worker", *extra], CLIContext(app, True, None))
        finally:
            app.close()


def check_inspect_call(call: Call) -> None:
    # `celery inspect` checks its sub-command only when it runs: check it against Inspect.
    name = call.params["command"]
    if name.startswith("_") or not callable(getattr(Inspect, name, None)):
        raise click.UsageError(f"celery inspect has no command {name!r}")


# --- finding command lines --------------------------------------------------------------


def shell_commands(script: str) -> Iterator[list[str]]:
    """The simple commands of a shell script (split at pipes, `&&`, `;` ...), words unquoted."""
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    words: list[str] = []
    for token in lexer:
        if token in SHELL_OPERATORS:
            if words:
                yield words
            words = []
        else:
            words.append(token)
    if words:
        yield words


def interesting(words: list[str]) -> list[str] | None:
    """The fss/celery command in a simple command: `fss ...`, `celery ...`,
    `kubectl ... -- fss ...`, or `docker (compose) run ... <fss image> ...`."""
    if not words:
        return None
    if Path(words[0]).name in ("fss", "celery"):
        return words
    if "--" in words:
        rest = words[words.index("--") + 1 :]
        return rest if rest and rest[0] == "fss" else None
    if words[:2] == ["docker", "run"]:
        for index, word in enumerate(words):
            if FSS_IMAGE.match(word):
                return ["fss", *words[index + 1 :]]
    return None


def commands_in_script(script: str) -> list[list[str]]:
    found = (interesting(words) for words in shell_commands(script))
    return [argv for argv in found if argv is not None]


def python_snippets(script_or_argv: str | list[str]) -> list[str]:
    """The code of `python3 -c CODE` commands, to compile."""
    lines = [script_or_argv] if isinstance(script_or_argv, list) else shell_commands(script_or_argv)
    return [
        words[words.index("-c") + 1]
        for words in lines
        if words and Path(words[0]).name.startswith("python") and "-c" in words
    ]


# --- the Dockerfile -----------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    value: str


def dockerfile_instructions(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped."""
    instructions: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, value = (pending + line).partition(" ")
        instructions.append(Instruction(keyword.upper(), value.strip()))
        pending = ""
    return instructions


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    starts = [i for i, ins in enumerate(instructions) if ins.keyword == "FROM"]
    return instructions[starts[-1] :]


def exec_form(instructions: list[Instruction], keyword: str) -> list[str]:
    values = [ins.value for ins in instructions if ins.keyword == keyword]
    assert values, f"the final stage has no {keyword}"
    parsed = json.loads(values[-1])  # the exec (JSON) form: no shell as PID 1
    assert isinstance(parsed, list) and all(isinstance(word, str) for word in parsed)
    return parsed


def image_entrypoint() -> list[str]:
    return exec_form(final_stage(dockerfile_instructions(DOCKERFILE.read_text())), "ENTRYPOINT")


def test_the_dockerfile_runs_fss_as_a_non_root_user_on_a_pinned_slim_python() -> None:
    instructions = dockerfile_instructions(DOCKERFILE.read_text())
    stage = final_stage(instructions)
    bases = [ins.value.split()[0] for ins in instructions if ins.keyword == "FROM"]
    users = [ins.value for ins in stage if ins.keyword == "USER"]
    env = " ".join(ins.value for ins in stage if ins.keyword == "ENV")

    assert bases and all(re.fullmatch(r"python:3\.11-slim[\w.\-]*", base) for base in bases)
    assert not any(base.endswith(":latest") for base in bases)
    assert users, "the final stage sets no USER (it would run as root)"
    user, _, group = users[-1].partition(":")
    assert user.isdigit() and int(user) != 0, "USER must be a numeric non-root uid"
    assert not group or (group.isdigit() and int(group) != 0)
    assert exec_form(stage, "ENTRYPOINT") == ["fss"]
    check_command_line(["fss", *exec_form(stage, "CMD")])
    exposed = [port for ins in stage if ins.keyword == "EXPOSE" for port in ins.value.split()]
    assert "50051" in exposed
    assert "PYTHONUNBUFFERED=1" in env


def test_the_dockerfile_installs_with_pip_without_a_cache() -> None:
    instructions = dockerfile_instructions(DOCKERFILE.read_text())
    runs = [ins.value for ins in instructions if ins.keyword == "RUN"]
    installs = [run for run in runs if "pip install" in run]

    assert installs
    assert all("--no-cache-dir" in run for run in installs)


def test_the_commands_in_the_dockerfile_comments_exist() -> None:
    comments = [line.lstrip("# ") for line in DOCKERFILE.read_text().splitlines()]
    runs = [line for line in comments if line.startswith("docker run")]
    found = [argv for line in runs for argv in commands_in_script(line)]

    assert {tuple(check_command_line(argv).path) for argv in found} >= {
        ("fss", "db", "upgrade"),
        ("fss", "scheduler"),
        ("fss", "worker"),
        ("fss", "bridge"),
        ("fss", "web"),
    }


def build_context_files() -> set[str]:
    """The repository's files that .dockerignore lets into the build context."""
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    # The matcher below has no `!` exceptions: keep .dockerignore that simple.
    assert not any(p.startswith("!") for p in patterns)
    files = set()
    for path in ROOT.rglob("*"):
        relative = path.relative_to(ROOT).as_posix()
        if path.is_file() and not ignored(relative, patterns):
            files.add(relative)
    return files


def ignored(relative: str, patterns: list[str]) -> bool:
    parts = relative.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    for pattern in patterns:
        pattern = pattern.rstrip("/")
        if pattern.startswith("**/"):
            if any(fnmatch.fnmatchcase(part, pattern[3:]) for part in parts):
                return True
        elif any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes):
            return True
    return False


def test_the_build_context_holds_what_pip_install_needs_and_no_tests() -> None:
    files = build_context_files()

    assert {
        "setup.cfg",
        "pyproject.toml",
        "README.md",  # setup.cfg: long_description = file: README.md
        "fss/__init__.py",
        "fss/py.typed",
        "fss/examples/jobs.py",
        "fss/store/migrations/env.py",
        "fss/bridge/proto/fss/v1/fss.proto",
    } <= files
    assert not any(f.startswith(("tests/", ".git/", ".venv/")) for f in files)
    assert not any("__pycache__" in f or f.endswith(".db") for f in files)


# --- the checker itself ---------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "fss schedular",
        "fss scheduler --nmae s1",
        "fss worker -A fss.examples.jobs --nmae w1",  # fss passes it on to celery worker
        "fss worker --name w1",  # -A is required
        "fss worker -A fss.examples.nosuchmodule",
        "fss worker -A fss.examples.jobs -c many",
        "fss bridge --listne 0.0.0.0:50051",
        "fss db upgrade --revison head",
        "fss node list --jsn",
        "fss db",
        "celery -b redis://redis:6379/0 inspect ping --destnation w1@h",
        "celery -b redis://redis:6379/0 inspect pong",
        "kubectl exec deploy/fss-scheduler -- fss group lst",
    ],
)
def test_the_checker_refuses_a_misspelled_command_or_option(line: str) -> None:
    [argv] = commands_in_script(line)

    with pytest.raises((click.ClickException, FssError)):
        check_command_line(argv)


def test_the_checker_accepts_real_command_lines() -> None:
    lines = [
        "fss worker -A fss.examples.jobs --name w1 -c 4 --max-tasks-per-child 100",
        "fss --help | head",
        "docker run --rm registry.example.com/team/fss:0.1.0 node list --json",
        'celery -b "$FSS_BROKER_URL" inspect ping -d "w1@$(uname -n)" -t 5',
    ]
    paths = [check_command_line(argv).path for line in lines for argv in commands_in_script(line)]

    assert paths == [("fss", "worker"), ("fss",), ("fss", "node", "list"), ("celery", "inspect")]


# --- compose.yaml -------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(document, dict)
    return document


def fss_services() -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose()["services"].items()
        if FSS_IMAGE.match(str(service.get("image", ""))) or "build" in service
    }


def as_argv(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(word) for word in command]


def compose_healthcheck_commands(test: str | list[str]) -> tuple[list[list[str]], list[str]]:
    """(fss/celery command lines, python -c snippets) of a compose healthcheck `test`."""
    if isinstance(test, str):
        test = ["CMD-SHELL", test]
    kind, *rest = test
    if kind == "CMD-SHELL":
        script = " ".join(rest).replace("$$", "$")  # compose's escape for a literal $
        return commands_in_script(script), python_snippets(script)
    assert kind == "CMD", f"unexpected healthcheck form {kind!r}"
    argv = [word.replace("$$", "$") for word in rest]
    found = interesting(argv)
    return ([found] if found else []), python_snippets(argv)


def test_compose_keeps_its_services_and_builds_one_image_for_every_fss_role() -> None:
    services = compose()["services"]
    fss = fss_services()

    assert set(services) == {
        "postgres", "redis", "migrate", "scheduler-1", "scheduler-2",
        "worker-1", "worker-2", "bridge", "web",
    }  # fmt: skip
    assert set(fss) == set(services) - {"postgres", "redis"}
    assert len({service["image"] for service in fss.values()}) == 1
    assert all(service.get("build") in (".", {"context": "."}) for service in fss.values())
    assert not any("pip install" in json.dumps(service) for service in fss.values())


def test_compose_runs_only_fss_commands_that_exist() -> None:
    entrypoint = image_entrypoint()
    paths = {
        name: check_command_line([*entrypoint, *as_argv(service["command"])]).path
        for name, service in fss_services().items()
    }

    assert paths == {
        "migrate": ("fss", "db", "upgrade"),
        "scheduler-1": ("fss", "scheduler"),
        "scheduler-2": ("fss", "scheduler"),
        "worker-1": ("fss", "worker"),
        "worker-2": ("fss", "worker"),
        "bridge": ("fss", "bridge"),
        "web": ("fss", "web"),
    }


def test_compose_healthchecks_name_real_commands_and_compile() -> None:
    checked = set()
    for name, service in fss_services().items():
        if "healthcheck" not in service:
            continue
        lines, snippets = compose_healthcheck_commands(service["healthcheck"]["test"])
        assert lines or snippets, f"{name}: healthcheck runs neither fss, celery nor python"
        for argv in lines:
            check_command_line(argv)
        for code in snippets:
            compile(code, f"{name} healthcheck", "exec")
        checked.add(name)

    assert checked == set(fss_services()) - {"migrate"}  # a one-shot step needs none


def test_the_one_off_commands_in_compose_comments_exist() -> None:
    runs = re.findall(r"docker compose run --rm (\S+) (.+)", COMPOSE.read_text())

    assert runs
    for service, rest in runs:
        assert service in fss_services()
        check_command_line([*image_entrypoint(), *shlex.split(rest, comments=True)])


def test_workers_and_the_bridge_get_no_database_credentials() -> None:
    for name, service in fss_services().items():
        if name.startswith(("worker", "bridge")):
            assert "FSS_DATABASE_URL" not in json.dumps(service.get("environment", {})), name


# --- deploy/k8s -------------------------------------------------------------------------------


def k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    documents = []
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document is not None:
                assert isinstance(document, dict), path.name
                documents.append((path.name, document))
    return documents


def k8s_objects(kind: str | None = None) -> list[dict[str, Any]]:
    return [
        doc
        for _, doc in k8s_documents()
        if doc.get("kind") != "Kustomization" and (kind is None or doc["kind"] == kind)
    ]


def workloads() -> list[dict[str, Any]]:
    return [doc for doc in k8s_objects() if doc["kind"] in WORKLOAD_KINDS]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(workload)
    return [*spec.get("initContainers", []), *spec["containers"]]


def named(workload: dict[str, Any], container: dict[str, Any]) -> str:
    return f"{workload['kind']}/{workload['metadata']['name']}/{container['name']}"


def fss_containers() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for workload in workloads():
        for container in containers(workload):
            if FSS_IMAGE.match(container["image"]):
                yield workload, container


def container_argv(container: dict[str, Any]) -> list[str]:
    command = container.get("command") or image_entrypoint()
    return [*command, *container.get("args", [])]


def probes(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        kind: container[kind]
        for kind in ("startupProbe", "readinessProbe", "livenessProbe")
        if kind in container
    }


def exec_probe_commands(probe: dict[str, Any]) -> tuple[list[list[str]], list[str]]:
    argv = [str(word) for word in probe["exec"]["command"]]
    if argv[:2] in (["sh", "-c"], ["/bin/sh", "-c"]):
        return commands_in_script(argv[2]), python_snippets(argv[2])
    found = interesting(argv)
    return ([found] if found else []), python_snippets(argv)


def test_the_manifests_parse_and_are_namespace_agnostic() -> None:
    documents = k8s_documents()
    files = {name for name, _ in documents}

    assert {
        "secret.yaml", "migrate-job.yaml", "scheduler.yaml", "worker.yaml", "bridge.yaml",
        "web.yaml",
    } <= files  # fmt: skip
    for name, doc in documents:
        assert doc.get("apiVersion") and doc.get("kind"), name
        if doc["kind"] != "Kustomization":
            assert doc["metadata"].get("name"), name
            assert "namespace" not in doc["metadata"], f"{name}: hard-codes a namespace"


def test_the_kustomization_lists_every_manifest() -> None:
    [kustomization] = [doc for _, doc in k8s_documents() if doc["kind"] == "Kustomization"]
    manifests = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}

    assert set(kustomization["resources"]) == manifests


def test_the_manifests_run_every_role_from_the_image() -> None:
    paths = {named(w, c): check_command_line(container_argv(c)).path for w, c in fss_containers()}
    schedulers = [w for w in k8s_objects("Deployment") if w["metadata"]["name"] == "fss-scheduler"]

    assert sorted(paths.values()) == [
        ("fss", "bridge"),
        ("fss", "db", "upgrade"),
        ("fss", "scheduler"),
        ("fss", "web"),
        ("fss", "worker"),
    ]
    assert [w["spec"]["replicas"] for w in schedulers] == [2]
    assert [w["kind"] for w in workloads() if "migrate" in w["metadata"]["name"]] == ["Job"]


def test_every_probe_names_real_commands_and_compiles() -> None:
    seen: set[tuple[str, ...]] = set()
    for workload, container in fss_containers():
        for kind, probe in probes(container).items():
            if "exec" not in probe:
                continue
            lines, snippets = exec_probe_commands(probe)
            assert lines, f"{named(workload, container)} {kind}: runs neither fss nor celery"
            seen.update(check_command_line(argv).path for argv in lines)
            for code in snippets:
                compile(code, f"{named(workload, container)} {kind}", "exec")

    assert seen == {("fss", "node", "list"), ("celery", "inspect")}


def test_every_container_has_resources_and_a_non_root_read_only_security_context() -> None:
    for workload in workloads():
        pod = pod_spec(workload).get("securityContext", {})
        for container in containers(workload):
            name = named(workload, container)
            resources = container.get("resources", {})
            context = {**pod, **container.get("securityContext", {})}
            assert set(resources.get("requests", {})) >= {"cpu", "memory"}, name
            assert set(resources.get("limits", {})) >= {"cpu", "memory"}, name
            assert context.get("runAsNonRoot") is True, name
            assert context.get("runAsUser", 1) != 0, name
            assert context.get("allowPrivilegeEscalation") is False, name
            assert context.get("readOnlyRootFilesystem") is True, name
            assert "ALL" in context.get("capabilities", {}).get("drop", []), name


def test_every_long_running_container_has_readiness_and_liveness_probes() -> None:
    for workload in workloads():
        if workload["kind"] == "Job":
            continue  # runs to completion: done when it exits
        for container in pod_spec(workload)["containers"]:
            assert {"readinessProbe", "livenessProbe"} <= set(probes(container)), named(
                workload, container
            )


def test_the_bridge_is_probed_over_grpc_on_the_port_it_listens_on() -> None:
    [bridge] = [c for _, c in fss_containers() if container_argv(c)[1] == "bridge"]
    argv = container_argv(bridge)
    listen_port = int(argv[argv.index("--listen") + 1].rpartition(":")[2])
    ports = {port["name"]: port["containerPort"] for port in bridge["ports"]}
    [service] = [s for s in k8s_objects("Service") if s["metadata"]["name"] == "fss-bridge"]
    [deployment] = [d for d in k8s_objects("Deployment") if d["metadata"]["name"] == "fss-bridge"]

    assert list(ports.values()) == [listen_port]
    assert bridge["readinessProbe"]["grpc"]["port"] == listen_port
    assert bridge["livenessProbe"]["grpc"]["port"] == listen_port
    assert [ports.get(p["targetPort"], p["targetPort"]) for p in service["spec"]["ports"]] == [
        listen_port
    ]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


def test_selectors_match_their_pods() -> None:
    for workload in k8s_objects("Deployment"):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert workload["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_every_secret_reference_and_variable_resolves() -> None:
    secrets = {
        s["metadata"]["name"]: set(s.get("stringData", {})) | set(s.get("data", {}))
        for s in k8s_objects("Secret")
    }
    for workload in workloads():
        volumes = {v["name"]: v for v in pod_spec(workload).get("volumes", [])}
        for container in containers(workload):
            name = named(workload, container)
            env = {var["name"]: var for var in container.get("env", [])}
            for var in env.values():
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in secrets.get(ref["name"], set()), f"{name}: {var['name']}"
            for word in container_argv(container):
                for variable in K8S_VAR.findall(word):
                    assert variable in env, f"{name}: $({variable}) is not in its env"
            for mount in container.get("volumeMounts", []):
                volume = volumes[mount["name"]]
                if "secret" in volume:
                    keys = {item["key"] for item in volume["secret"].get("items", [])}
                    assert keys <= secrets[volume["secret"]["secretName"]], name


def test_workers_and_the_bridge_get_no_database_credentials_in_kubernetes() -> None:
    for _, container in fss_containers():
        role = container_argv(container)[1]
        if role in ("worker", "bridge"):
            assert "FSS_DATABASE_URL" not in json.dumps(container.get("env", [])), role


def test_the_fss_commands_in_the_k8s_readme_exist() -> None:
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", K8S_README.read_text(), flags=re.S)
    found = [
        argv
        for block in blocks
        for line in block.replace("\\\n", " ").splitlines()
        for argv in commands_in_script(line.split(" #", 1)[0])
    ]

    assert found
    for argv in found:
        check_command_line(argv)


# --- the scheduler's probe, run -----------------------------------------------------------


def scheduler_probe_script() -> str:
    [scheduler] = [c for _, c in fss_containers() if container_argv(c)[1] == "scheduler"]
    command: list[str] = scheduler["livenessProbe"]["exec"]["command"]
    return command[2]


@pytest.fixture
def probe_runner(tmp_path: Path, sqlite_url: str) -> Iterator[Callable[[str], int]]:
    """Runs the scheduler probe's shell script with `fss` and `python3` on PATH, against a
    migrated SQLite database; returns its exit code for a given FSS_NODE_NAME."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    python = runtime_python()
    fss = bin_dir / "fss"
    fss.write_text(f'#!/bin/sh\nexec "{python}" -c "from fss.cli import main; main()" "$@"\n')
    fss.chmod(0o755)
    (bin_dir / "python3").symlink_to(python)
    migrated_copy(sqlite_url)  # the schema at head: tests/servers.py
    engine = sa.create_engine(sqlite_url)
    engine.dispose()

    def run(node_name: str) -> int:
        env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "FSS_DATABASE_URL": sqlite_url}
        env["FSS_NODE_NAME"] = node_name
        script = scheduler_probe_script()
        probe = subprocess.run(["sh", "-c", script], env=env, capture_output=True, timeout=60)
        return probe.returncode

    yield run


def test_the_scheduler_probe_passes_only_for_its_own_fresh_healthy_node(
    sqlite_url: str, probe_runner: Callable[[str], int]
) -> None:
    now = datetime.now(timezone.utc)
    engine = sa.create_engine(sqlite_url)
    heartbeat_node(engine, "fresh", now, now)
    heartbeat_node(engine, "stale", now - timedelta(seconds=120), now - timedelta(seconds=120))
    heartbeat_node(engine, "stuck", now, now, unhealthy_reason="recorder made no progress")
    engine.dispose()

    assert probe_runner("fresh") == 0
    assert probe_runner("stale") != 0
    assert probe_runner("stuck") != 0
    assert probe_runner("unknown") != 0


def test_the_web_ui_runs_two_replicas_probed_on_healthz_and_readyz_with_users_from_the_secret(
) -> None:
    [web] = [d for d in k8s_objects("Deployment") if d["metadata"]["name"] == "fss-web"]
    [container] = pod_spec(web)["containers"]
    argv = container_argv(container)
    port = int(argv[argv.index("--port") + 1])
    env = {var["name"]: var for var in container["env"]}
    [service] = [s for s in k8s_objects("Service") if s["metadata"]["name"] == "fss-web"]

    assert web["spec"]["replicas"] == 2
    assert argv[argv.index("--host") + 1] == "0.0.0.0"
    assert "--no-auth" not in argv
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"http": port}
    for name in ("FSS_WEB_USERS", "FSS_WEB_SECRET", "FSS_DATABASE_URL", "FSS_BROKER_URL"):
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "fss", name
    assert service["spec"]["ports"][0]["targetPort"] == "http"
