"""Static checks of the images: the one Dockerfile's shape and the dependency locks.

The Dockerfile is read as text and the locks are compared with each component's pyproject.toml;
tests/integration/test_images.py runs the built images as pods.
"""

from __future__ import annotations

import re
import tomllib

import pytest
from chartlib import REPO
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

COMPONENTS = {"operator": "modelyard_operator", "serving": "modelyard_serving"}


def lock_pins(component: str) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of a component's requirements.lock."""
    text = (REPO / component / "requirements.lock").read_text()
    pins: dict[str, tuple[str, list[str]]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        match = re.match(r"([A-Za-z0-9._-]+)==([^\s;\\]+)", block)
        if match:
            pins[canonicalize_name(match.group(1))] = (match.group(2), re.findall(r"--hash=sha256:[0-9a-f]{64}", block))
    return pins


DOCKERFILE = REPO / "k8s" / "images" / "Dockerfile"


def test_one_parameterised_dockerfile_for_every_image() -> None:
    assert not [p for p in REPO.glob("*/Dockerfile")], "images are built from k8s/images/Dockerfile only"
    text = DOCKERFILE.read_text()
    instructions = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert instructions[0] == "ARG PYTHON_IMAGE=python:3.11-slim", "the base must be selectable, slim by default"
    froms = [line for line in instructions if line.startswith("FROM ")]
    assert froms == ["FROM ${PYTHON_IMAGE} AS build", "FROM ${PYTHON_IMAGE}"], "multi-stage on the same base"
    assert "COPY --from=build /opt/venv /opt/venv" in instructions
    runtime = instructions[instructions.index("FROM ${PYTHON_IMAGE}") :]
    assert not any("pip install" in line for line in runtime), "nothing is installed in the runtime stage"
    assert "USER 10001:10001" in runtime, "non-root, same uid as the chart's runAsUser"
    assert runtime[-1] == 'ENTRYPOINT ["/app/entrypoint"]'
    install = next(line for line in instructions if "pip install" in line)
    assert "--require-hashes" in install and "--no-deps" in install and "requirements.lock" in install


def test_runtime_stage_has_the_standard_library_compiled() -> None:
    # python:3.11-slim ships the stdlib without bytecode and pods cannot write any.
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    runtime = text[text.index("FROM ${PYTHON_IMAGE}\n") :].splitlines()
    assert any(
        line.startswith("RUN python -m compileall") and 'get_path("stdlib")' in line for line in runtime
    ), "the runtime stage compiles the base image's standard library"


def test_build_context_allows_only_what_the_images_copy() -> None:
    allowed = {line[1:] for line in (REPO / ".dockerignore").read_text().splitlines() if line.startswith("!")}
    for component, package in {**COMPONENTS, "training-image": "modelyard_training"}.items():
        assert {f"{component}/requirements.lock", f"{component}/{package}"} <= allowed
    assert "k8s/images/mlflow/requirements.lock" in allowed


def test_mlflow_image_runs_the_tested_mlflow() -> None:
    pins = lock_pins("k8s/images/mlflow")
    constraints = dict(line.split("==", 1) for line in (REPO / "tests" / "constraints.txt").read_text().splitlines()
                       if "==" in line and not line.startswith("#"))
    assert pins["mlflow"][0] == constraints["mlflow"].strip()
    assert all(hashes for _, hashes in pins.values())
    for driver in ("psycopg", "psycopg-binary", "psycopg2-binary", "boto3", "azure-storage-blob",
                   "google-cloud-storage"):
        assert driver in pins, f"the MLflow image lacks {driver}"


@pytest.mark.parametrize("component", sorted(COMPONENTS))
def test_lock_pins_every_dependency_with_hashes(component: str) -> None:
    pins = lock_pins(component)
    assert pins
    for name, (version, hashes) in pins.items():
        assert hashes, f"{component}/requirements.lock: {name}=={version} has no hash"
    project = tomllib.loads((REPO / component / "pyproject.toml").read_text())["project"]
    for spec in project["dependencies"]:
        req = Requirement(spec)
        if req.marker is not None and not req.marker.evaluate({"sys_platform": "linux", "python_version": "3.11"}):
            continue
        name = canonicalize_name(req.name)
        assert name in pins, f"{component}: {req.name} is not in requirements.lock; run `make lock`"
        assert req.specifier.contains(pins[name][0], prereleases=True), (
            f"{component}: lock pins {req.name}=={pins[name][0]}, pyproject wants {req.specifier}; run `make lock`"
        )


def test_training_image_reads_dvc_and_object_storage() -> None:
    pins = lock_pins("training-image")
    assert {"dvc", "dvc-s3", "pyarrow"} <= set(pins)
    # The one package the Dockerfile lets pip build from source must be the sdist-only pin.
    assert pins["antlr4-python3-runtime"][0] == "4.9.3"
    assert "--no-binary=antlr4-python3-runtime" in DOCKERFILE.read_text()


def test_serving_image_does_not_carry_the_operator_framework() -> None:
    assert "kopf" not in lock_pins("serving")


def test_pods_run_as_the_image_uid() -> None:
    import yaml
    from modelyard_operator.settings import Settings

    user = next(line for line in DOCKERFILE.read_text().splitlines() if line.startswith("USER "))
    uid = int(user.split()[1].split(":")[0])
    assert Settings().pod_uid == uid
    values = yaml.safe_load((REPO / "helm" / "modelyard" / "values.yaml").read_text())
    assert values["operator"]["podSecurityContext"]["runAsUser"] == uid
    assert values["mlflow"]["podSecurityContext"]["runAsUser"] == uid
