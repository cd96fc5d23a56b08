"""The cluster launcher files: valid for Ray 2.60's `ray up`, and closed by default.

Parsing only: no Ray cluster starts and nothing talks to AWS. Validation goes through
Ray's own `prepare_config` (merge with the provider's defaults.yaml) and
`validate_config` (ray-schema.json through jsonschema, plus Ray's cross-field checks),
the two steps `ray up` runs before it contacts the cloud. The step in between, AWS
resource autodetection, needs boto3 and credentials and is left out: both files set
`resources` themselves.
"""

import copy
import functools
import re
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private import resource_demand_scheduler
from ray.autoscaler._private.node_provider_availability_tracker import (
    NodeAvailabilitySummary,
)
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[1]
AWS = ROOT / "cluster.yaml"
ON_PREMISES = ROOT / "cluster-local.yaml"
CLUSTER_FILES = [AWS, ON_PREMISES]

START_COMMAND_KEYS = ("head_start_ray_commands", "worker_start_ray_commands")
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
# What a sweep asks per trial with `resources: {cpu: 1, gpu: 0.25}`.
QUARTER_GPU_TRIAL = {"CPU": 1, "GPU": 0.25}


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def launcher_config(raw: dict) -> dict:
    """The config as `ray up` checks it; raises what `ray up` would raise."""
    config = prepare_config(copy.deepcopy(raw))
    validate_config(config)
    return config


def commands(raw: dict) -> list[str]:
    return [command for key, value in raw.items() if key.endswith("_commands") for command in value]


def worker_types(raw: dict) -> dict:
    return {
        name: node_type
        for name, node_type in raw["available_node_types"].items()
        if name != raw["head_node_type"]
    }


def non_ssh_ingress(raw: dict) -> list[dict]:
    """Rules added to the cluster's security group that open more than TCP 22."""
    rules = raw["provider"].get("security_group", {}).get("IpPermissions", [])
    return [
        rule
        for rule in rules
        if str(rule.get("IpProtocol")).lower() != "tcp"
        or rule.get("FromPort") != 22
        or rule.get("ToPort") != 22
    ]


def rename_key(raw: dict, key_path: tuple[str, ...], new_key: str) -> dict:
    mutated = copy.deepcopy(raw)
    parent = mutated
    for key in key_path[:-1]:
        parent = parent[key]
    parent[new_key] = parent.pop(key_path[-1])
    return mutated


# --- Ray's own validation ------------------------------------------------------------


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda p: p.name)
def test_file_passes_ray_launcher_validation(path):
    launcher_config(load(path))


@pytest.mark.parametrize(
    ("path", "key_path", "typo"),
    [
        pytest.param(
            AWS,
            ("available_node_types", "ray.worker.gpu", "max_workers"),
            "max_worker",
            id="node-type-field",
        ),
        pytest.param(
            AWS, ("provider", "security_group", "IpPermissions"), "IpPermission", id="provider-field"
        ),
        pytest.param(AWS, ("head_start_ray_commands",), "head_start_ray_command", id="top-level-field"),
        pytest.param(ON_PREMISES, ("worker_setup_commands",), "worker_setup_command", id="on-premises-field"),
    ],
)
def test_ray_validation_rejects_a_misspelt_field(path, key_path, typo):
    mutated = rename_key(load(path), key_path, typo)

    with pytest.raises(jsonschema.ValidationError, match=f"'{typo}' was unexpected"):
        launcher_config(mutated)


# --- Token authentication ------------------------------------------------------------


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda p: p.name)
def test_every_ray_start_requires_token_auth(path):
    # Without RAY_AUTH_MODE=token, `ray start --head` runs an open cluster when the
    # node has no token (ray/_private/authentication/authentication_token_setup.py).
    raw = load(path)
    for key in START_COMMAND_KEYS:
        starts = [command for command in raw[key] if "ray start" in command]
        assert starts, f"{path.name}: {key} has no `ray start`"
        for command in starts:
            assert re.search(r"\bRAY_AUTH_MODE=token\s+ray start\b", command), (
                f"{path.name}: {key} starts Ray without RAY_AUTH_MODE=token: {command!r}"
            )


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda p: p.name)
def test_no_setting_turns_token_auth_off(path):
    text = path.read_text()
    settings = re.findall(r"AUTH_MODE\W*\w*", text, flags=re.IGNORECASE)

    assert settings
    assert all(setting == "AUTH_MODE=token" for setting in settings), settings


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda p: p.name)
def test_cluster_token_is_copied_from_outside_the_repository(path):
    raw = load(path)
    token_mounts = {remote: local for remote, local in raw["file_mounts"].items() if "auth" in remote}

    assert token_mounts
    assert all(local.startswith("~/") for local in token_mounts.values()), token_mounts
    assert any("~/.ray/auth_token" in command for command in raw["setup_commands"])


# --- Network exposure ----------------------------------------------------------------


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda p: p.name)
def test_dashboard_listens_on_loopback_only(path):
    raw = load(path)
    hosts = re.findall(r"--dashboard-host[= ](\S+)", " ".join(commands(raw)))
    head_start = " ".join(raw["head_start_ray_commands"])

    assert "--dashboard-host=" in head_start, "Ray's AWS defaults bind it to 0.0.0.0"
    assert set(hosts) <= LOOPBACK_HOSTS, hosts


def test_security_group_adds_no_ingress_but_ssh():
    assert non_ssh_ingress(load(AWS)) == []


@pytest.mark.parametrize(
    "rule",
    [
        {"IpProtocol": "tcp", "FromPort": 8265, "ToPort": 8265},
        {"IpProtocol": "tcp", "FromPort": 0, "ToPort": 65535},
        {"IpProtocol": "-1"},
    ],
    ids=["dashboard", "tcp-range", "all-traffic"],
)
def test_ssh_only_check_flags_any_other_ingress(rule):
    raw = load(AWS)
    public = [{"CidrIp": "0.0.0.0/0"}]
    raw["provider"]["security_group"]["IpPermissions"] = [
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": public},
        {**rule, "IpRanges": public},
    ]

    assert non_ssh_ingress(raw) == [{**rule, "IpRanges": public}]


def test_every_aws_node_uses_the_cluster_security_group():
    # Any of these fields replaces the group defined in `provider.security_group`.
    bypasses = {"SecurityGroupIds", "NetworkInterfaces", "LaunchTemplate"}
    for name, node_type in load(AWS)["available_node_types"].items():
        assert not bypasses & node_type["node_config"].keys(), name


def test_every_aws_node_requires_imdsv2():
    for name, node_type in load(AWS)["available_node_types"].items():
        assert node_type["node_config"]["MetadataOptions"]["HttpTokens"] == "required", name


# --- Credentials ---------------------------------------------------------------------

CREDENTIAL_PATTERNS = {
    "aws-key-name": re.compile(r"aws_(access_key_id|secret_access_key|session_token)", re.I),
    "aws-access-key-id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    # Ray's tokens are secrets.token_hex(32) (authentication_token_generator.py).
    "ray-token": re.compile(r"\b[0-9a-f]{64}\b"),
    "ray-token-variable": re.compile(r"RAY_AUTH_TOKEN\s*[=:]"),
    "private-key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
}


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda p: p.name)
@pytest.mark.parametrize("kind", CREDENTIAL_PATTERNS)
def test_file_holds_no_credentials(path, kind):
    match = CREDENTIAL_PATTERNS[kind].search(path.read_text())

    assert match is None, f"{path.name}: {kind} at offset {match.start()}"


def test_every_aws_node_gets_s3_access_from_an_instance_profile():
    # Ray gives its default role to the head only; trials write to S3 from workers.
    for name, node_type in load(AWS)["available_node_types"].items():
        assert node_type["node_config"]["IamInstanceProfile"], name


# --- Where trials run ----------------------------------------------------------------


def test_aws_head_node_advertises_no_cpu_so_no_trial_runs_there():
    raw = load(AWS)
    head = raw["available_node_types"][raw["head_node_type"]]

    assert head["resources"] == {"CPU": 0}


def test_on_premises_file_runs_on_bare_hosts_without_docker():
    assert "docker" not in load(ON_PREMISES)


def test_on_premises_head_runs_the_v1_autoscaler_that_starts_every_listed_worker():
    # ray-project/ray#57153: v2 with the local provider starts one worker fewer.
    (start,) = [c for c in load(ON_PREMISES)["head_start_ray_commands"] if "ray start" in c]
    assert "RAY_enable_autoscaler_v2=0 " in start.split("ray start")[0]


@pytest.mark.parametrize("key", ["head_start_ray_commands", "worker_start_ray_commands"])
def test_on_premises_start_commands_fail_on_a_low_open_files_limit(key):
    (start,) = [c for c in load(ON_PREMISES)[key] if "ray start" in c]
    assert "ulimit -n 65536;" not in start  # needs CAP_SYS_RESOURCE, and failed silently
    assert "exit 1" in start.split("ray start")[0]


def test_on_premises_head_starts_with_no_cpus_or_gpus():
    head_start = " ".join(load(ON_PREMISES)["head_start_ray_commands"])

    assert "--num-cpus=0" in head_start
    assert "--num-gpus=0" in head_start


def test_aws_worker_types_advertise_a_gpu_and_cpus_for_its_trials():
    for name, node_type in worker_types(load(AWS)).items():
        assert node_type["resources"]["GPU"] >= 1, name
        assert node_type["resources"]["CPU"] >= 1, name


def test_only_the_spot_worker_type_requests_spot_instances():
    for name, node_type in worker_types(load(AWS)).items():
        market = node_type["node_config"].get("InstanceMarketOptions", {})
        is_spot = market.get("MarketType") == "spot"
        assert is_spot == ("spot" in node_type["resources"]), name


@pytest.mark.parametrize(
    ("num_trials", "on_demand_nodes", "spot_nodes"),
    [
        (1, 1, 0),
        (4, 1, 0),  # four quarter-GPU trials fill one g5.xlarge (4 vCPU, 1 GPU)
        (8, 2, 0),  # ray.worker.gpu max_workers is 2
        (9, 2, 1),
        (40, 2, 8),  # ray.worker.gpu.spot max_workers is 8
    ],
)
def test_autoscaler_fills_on_demand_gpu_nodes_before_spot_ones(num_trials, on_demand_nodes, spot_nodes):
    config = launcher_config(load(AWS))
    scorer = functools.partial(
        resource_demand_scheduler._default_utilization_scorer,
        node_availability_summary=NodeAvailabilitySummary(node_availabilities={}),
    )

    to_launch, unplaced = resource_demand_scheduler.get_nodes_for(
        config["available_node_types"],
        existing_nodes={config["head_node_type"]: 1},
        head_node_type=config["head_node_type"],
        max_to_add=config["max_workers"],
        resources=[QUARTER_GPU_TRIAL] * num_trials,
        utilization_scorer=scorer,
    )

    assert to_launch.get("ray.worker.gpu", 0) == on_demand_nodes
    assert to_launch.get("ray.worker.gpu.spot", 0) == spot_nodes
    assert unplaced == []
