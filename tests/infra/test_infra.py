"""Static checks of the Terraform in infra/ (no AWS account, no provider download needed).

1. every .tf file parses (python-hcl2) and is `terraform fmt`-clean;
2. checkov reports no failed check, and every suppression is an inline, reasoned comment;
3. the route table of the built `berth` binary is what Terraform deploys: one function, one
   artifact, one sample event and one API route per method and repository depth for every route,
   and the job functions are wired to SQS and EventBridge;
4. registry events and webhooks: the event bus only job-worker may put on, the webhook settings
   on the functions that deliver or check targets, the new variables' validation (terraform plan
   on variables.tf alone);
5. replication: its eight routes and functions, the outbound allow-list on the routes that check
   targets, job-worker's copy step (its timeout minus 60 s) and blob reads;
6. image caches: their two routes and functions, the cache settings on the functions that read
   them (mirror hosts on every /v2 repository route), the budget within job-worker's timeout, the
   pulls' and job-worker's object permissions, the new variables' validation;
7. house style: typed, described variables with defaults; described outputs.

Terraform expressions are evaluated by tests/infra/hcl_eval.py over python-hcl2's parse tree.

Run: .venv/bin/python -m pytest tests/infra   (BERTH_BIN, CHECKOV_BIN, TERRAFORM_BIN override the tools)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path

import hcl2
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from hcl_eval import Module, Unknown  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
TF_FILES = sorted(INFRA.glob("*.tf"))
JOB_FUNCTIONS = ("job-worker", "job-scheduler")
WEBHOOK_SETTINGS = ("BERTH_WEBHOOK_TIMEOUT_SECS", "BERTH_WEBHOOK_MAX_ATTEMPTS", "BERTH_WEBHOOK_RETRY_SECS", "BERTH_OUTBOUND_ALLOW")
REPLICATION_SETTINGS = ("BERTH_REPLICATION_STEP_SECS",)
CACHE_SETTINGS = ("BERTH_CACHE_SOURCE_PORTS", "BERTH_CACHE_CHECK_SECS", "BERTH_CACHE_BUDGET_SECS", "BERTH_MIRROR_HOSTS")
# The /v2 repository routes: berth::api::handle serves a request on a mirror host as if its path
# named the host's cache registry (test_mirror_hosts_reach_every_v2_repository_route checks the list).
MIRROR_FUNCTIONS = ("tags-list", "manifest-get", "manifest-put", "manifest-delete", "blob-get", "blob-delete",
                    "upload-start", "upload-patch", "upload-put", "upload-status", "upload-cancel", "referrers")
# What a function gets beyond the environment every function has: job-worker fans registry events
# out, delivers webhooks, puts the events on the bus, copies images to replication targets and
# fills image caches; api-webhook-test delivers a ping; the routes that write webhook policies,
# replication targets, replication policies and image caches check their target URLs against the
# outbound allow-list (and a cache's port against the allowed source ports); manifest-get and
# blob-get reach a cache's source on a pull.
EXTRA_ENVIRONMENT = {
    **{function: {"BERTH_MIRROR_HOSTS"} for function in MIRROR_FUNCTIONS},
    "job-worker": {"BERTH_EVENT_BUS", *WEBHOOK_SETTINGS, *REPLICATION_SETTINGS, "BERTH_CACHE_BUDGET_SECS",
                   "BERTH_CACHE_SOURCE_PORTS"},
    "api-webhook-test": set(WEBHOOK_SETTINGS),
    "api-webhooks": {"BERTH_OUTBOUND_ALLOW"},
    "api-webhook": {"BERTH_OUTBOUND_ALLOW"},
    "api-replication-targets": {"BERTH_OUTBOUND_ALLOW"},
    "api-replication-target": {"BERTH_OUTBOUND_ALLOW"},
    "api-replications": {"BERTH_OUTBOUND_ALLOW"},
    "api-replication": {"BERTH_OUTBOUND_ALLOW"},
    "api-caches": {"BERTH_OUTBOUND_ALLOW", "BERTH_CACHE_SOURCE_PORTS"},
    "api-cache": {"BERTH_OUTBOUND_ALLOW", "BERTH_CACHE_SOURCE_PORTS"},
    "manifest-get": {"BERTH_OUTBOUND_ALLOW", "BERTH_CACHE_SOURCE_PORTS", "BERTH_CACHE_CHECK_SECS", "BERTH_MIRROR_HOSTS"},
    "blob-get": {"BERTH_OUTBOUND_ALLOW", "BERTH_CACHE_SOURCE_PORTS", "BERTH_CACHE_BUDGET_SECS", "BERTH_MIRROR_HOSTS"},
}
# Every setting some functions get and others not: a function has exactly its EXTRA_ENVIRONMENT of these.
SELECTIVE_SETTINGS = {"BERTH_EVENT_BUS", *WEBHOOK_SETTINGS, *REPLICATION_SETTINGS, *CACHE_SETTINGS}
DEFAULT_DEPTH = 4
ROUTES_QUOTA = 300  # API Gateway: routes per HTTP API (default quota)


def module(**variables) -> Module:
    return Module(INFRA, variables, path_module=str(INFRA))


def ssm_arn(name: str) -> str:
    """The ARN of SSM parameter `name` (without its leading "/") as Terraform renders it."""
    return ("arn:${data.aws_partition.current.partition}:ssm:${data.aws_region.current.region}:"
            f"${{data.aws_caller_identity.current.account_id}}:parameter/{name}")


def unquote(value):
    """python-hcl2 keeps the quotes of string literals ("\"x\"")."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def expected_api_routes(routes: list[dict], depth: int) -> dict[str, str]:
    """What API Gateway must route, derived from `berth routes`: every method, at every
    repository depth (prefix + "/" + name + suffix, or prefix + suffix without a repository); a
    trailing slash is dropped (API Gateway rejects it in a route path and matches it anyway)."""
    out = {}
    for route in routes:
        names = ["/".join(f"{{r{i}}}" for i in range(1, d + 1)) for d in range(1, depth + 1)]
        prefix, suffix = route["prefix"], route["suffix"]
        paths = [f"{prefix}/{n}{suffix}" for n in names] if route["has_repository"] else [f"{prefix}{suffix}"]
        if suffix == "/{asset}":
            # static files (the web console) also serve their page at the bare prefix
            paths.append(prefix)
        for method in route["methods"]:
            for path in paths:
                key = f"{method} {path.rstrip('/')}"
                assert key not in out, f"{key} would be routed twice"
                out[key] = route["name"]
    return out


# ---- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def berth_routes() -> list[dict]:
    binary = Path(os.environ.get("BERTH_BIN", REPO / "target" / "debug" / "berth"))
    if not binary.exists():
        pytest.fail(f"{binary} not found: build it with `cargo build -p berth --bin berth` (or set BERTH_BIN)")
    out = subprocess.run([str(binary), "routes", "--output", "json"], capture_output=True, text=True, timeout=60, check=True)
    routes = json.loads(out.stdout)
    assert routes, "`berth routes --output json` printed no route"
    return routes


@pytest.fixture(scope="session")
def tf() -> Module:
    return module()


@pytest.fixture(scope="session")
def checkov_report() -> dict:
    candidates = [os.environ.get("CHECKOV_BIN"), REPO / ".venv" / "checkov" / "bin" / "checkov", REPO / ".venv" / "bin" / "checkov", shutil.which("checkov")]
    binary = next((Path(c) for c in candidates if c and Path(c).exists()), None)
    if binary is None:
        pytest.fail("checkov not found: install tests/infra/requirements-checkov.txt (see tests/infra/README.md) or set CHECKOV_BIN")
    # --skip-download: no call to the Prisma Cloud API (this environment has no network).
    # No --quiet: it drops the skipped checks from the report, which the suppression test reads.
    cmd = [str(binary), "-d", str(INFRA), "--framework", "terraform", "--compact", "-o", "json", "--skip-download"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO, env={**os.environ, "BC_SKIP_MAPPING": "TRUE"})
    assert out.stdout.strip(), f"checkov printed nothing (exit {out.returncode}):\n{out.stderr[-3000:]}"
    report = json.loads(out.stdout)
    if isinstance(report, list):  # one entry per framework when several run
        (report,) = [r for r in report if r.get("check_type") == "terraform"]
    return report


# ---- 1. parsing ------------------------------------------------------------------------------


def test_house_layout_files_exist():
    names = {p.name for p in TF_FILES}
    assert {"versions.tf", "main.tf", "variables.tf", "outputs.tf"} <= names
    assert (INFRA / "terraform.tfvars.example").exists()
    assert (INFRA / "README.md").exists()


def test_terraform_fmt_leaves_every_file_unchanged():
    # terraform 1.11 is part of the CI machine image (providers cannot be downloaded, so no
    # init/validate); fmt needs none
    terraform = Path(os.environ.get("TERRAFORM_BIN", "/usr/local/bin/terraform"))
    assert terraform.is_file(), f"{terraform} not found: terraform is part of the machine image (or set TERRAFORM_BIN)"
    p = subprocess.run([str(terraform), "fmt", "-check", "-recursive", "-diff", str(REPO / "infra")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, f"`terraform fmt -recursive infra` would change:\n{p.stdout}{p.stderr}"


@pytest.mark.parametrize("path", TF_FILES, ids=lambda p: p.name)
def test_tf_file_parses(path: Path):
    with path.open() as f:
        hcl2.load(f)


def test_versions_are_pinned():
    with (INFRA / "versions.tf").open() as f:
        (terraform,) = hcl2.load(f)["terraform"]
    assert unquote(terraform["required_version"]) == ">= 1.6"
    (providers,) = terraform["required_providers"]
    assert unquote(providers["aws"]["source"]) == "hashicorp/aws"
    assert re.fullmatch(r"~> \d+\.\d+", unquote(providers["aws"]["version"]))


def test_example_tfvars_sets_only_declared_variables(tf: Module):
    with (INFRA / "terraform.tfvars.example").open() as f:
        example = hcl2.load(f)
    unknown = {k for k in example if not k.startswith("__")} - set(tf.variable_blocks)
    assert not unknown, f"terraform.tfvars.example sets undeclared variables: {sorted(unknown)}"


# ---- 2. checkov ------------------------------------------------------------------------------


def test_checkov_reports_no_failed_check(checkov_report: dict):
    summary = checkov_report["summary"]
    failed = [f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}" for c in checkov_report["results"]["failed_checks"]]
    assert summary["failed"] == 0 and not failed, "checkov failed checks:\n" + "\n".join(failed)
    assert summary["parsing_errors"] == 0
    assert summary["passed"] > 0 and summary["resource_count"] > 0


SKIP_COMMENT = re.compile(r"#\s*checkov:skip=(?P<id>[A-Z0-9_]+)(?::(?P<reason>.*))?")


def test_every_suppression_is_inline_with_a_reason(checkov_report: dict):
    for config in (".checkov.yaml", ".checkov.yml"):
        assert not (INFRA / config).exists() and not (REPO / config).exists(), "suppressions belong inline, next to the resource"
    comments = []
    for path in TF_FILES:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            m = SKIP_COMMENT.search(line)
            if m:
                comments.append((path.name, n, m.group("id"), (m.group("reason") or "").strip()))
    for name, n, check, reason in comments:
        assert re.fullmatch(r"CKV2?_AWS_\d+", check), f"{name}:{n}: {check} is not a checkov AWS check id"
        assert len(reason.split()) >= 8, f"{name}:{n}: skip of {check} needs a real reason, got {reason!r}"
    commented = {check for _, _, check, _ in comments}
    skipped = checkov_report["results"].get("skipped_checks", [])
    assert {c["check_id"] for c in skipped} <= commented
    # A comment whose check no longer fires is a stale suppression.
    assert commented <= {c["check_id"] for c in skipped}, f"stale suppressions: {sorted(commented - {c['check_id'] for c in skipped})}"


# ---- 3. the route table is what gets deployed --------------------------------------------------


def test_terraform_route_table_mirrors_berth_routes(tf: Module, berth_routes: list[dict]):
    # what deployment needs is mirrored; each method's access rule and audit stay in the binary
    fields = ("prefix", "methods", "suffix", "has_repository", "ports")
    not_deployed = {"operations"}
    assert all(set(r) == {"name", *fields, *not_deployed} for r in berth_routes), "`berth routes` has fields Terraform does not mirror"
    expected = {r["name"]: {f: r[f] for f in fields} for r in berth_routes}
    assert tf.local("routes") == expected


def test_every_function_is_deployed_from_its_artifact(tf: Module, berth_routes: list[dict]):
    names = [r["name"] for r in berth_routes] + list(JOB_FUNCTIONS)
    assert sorted(tf.local("functions")) == sorted(names)
    assert sorted(tf.instances("aws_lambda_function", "this")) == sorted(names)
    for name in names:
        arg = lambda a: tf.argument("aws_lambda_function", "this", a, name)  # noqa: E731
        assert arg("function_name") == f"berth-{name}"
        assert arg("filename") == f"{INFRA}/../target/lambda/{name}/bootstrap.zip"
        assert (arg("runtime"), arg("handler"), arg("architectures")) == ("provided.al2023", "bootstrap", ["arm64"])
        zip_exists = Path(arg("filename")).exists()
        assert (arg("source_code_hash") is not None) == zip_exists, "source_code_hash must be guarded by fileexists()"


def test_every_function_gets_the_berth_environment(tf: Module, berth_routes: list[dict]):
    names = [r["name"] for r in berth_routes] + list(JOB_FUNCTIONS)
    envs = {name: tf.block_argument("aws_lambda_function", "this", "environment", "variables", name) for name in names}
    env = {k: v for k, v in envs["blob-get"].items() if k not in EXTRA_ENVIRONMENT["blob-get"]}
    for name, e in envs.items():
        # the same environment everywhere, plus what the few webhook, replication and cache
        # functions need (below)
        assert {k: v for k, v in e.items() if k not in EXTRA_ENVIRONMENT.get(name, set())} == env, name
    assert sorted(env) == sorted([
        "BERTH_BUCKET", "BERTH_TABLE", "BERTH_QUEUE_URL", "BERTH_PRESIGN_EXPIRY_SECONDS", "BERTH_UPLOAD_GATEWAY_URL",
        "BERTH_UPLOAD_TOKEN_KEY", "BERTH_TOKEN_SIGNING_KEY", "BERTH_SECRETS_KEY", "BERTH_TOKEN_LIFETIME_SECONDS",
        "BERTH_PUBLIC_URL", "AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH", "RUST_LOG", "BERTH_SCAN_DB",
    ])
    assert env["BERTH_SCAN_DB"] == "security/vulndb:latest"
    # the keys' values come from the SSM parameters at apply time, never from a literal
    assert env["BERTH_UPLOAD_TOKEN_KEY"] == Unknown("data.aws_ssm_parameter.upload_token_key.value")
    assert env["BERTH_TOKEN_SIGNING_KEY"] == Unknown("data.aws_ssm_parameter.token_signing_key.value")
    assert env["BERTH_SECRETS_KEY"] == Unknown("data.aws_ssm_parameter.secrets_key.value")
    assert tf.argument("aws_ssm_parameter", "token_signing_key", "name", kind="data") == "/berth/token-signing-key"
    assert module(token_signing_key_parameter="/x/signing").argument("aws_ssm_parameter", "token_signing_key", "name", kind="data") == "/x/signing"
    assert tf.argument("aws_ssm_parameter", "token_signing_key", "with_decryption", kind="data") is True
    assert env["BERTH_TOKEN_LIFETIME_SECONDS"] == "3600"
    assert module(token_lifetime_seconds=900).local("berth_environment")["BERTH_TOKEN_LIFETIME_SECONDS"] == "900"
    # the token realm is the registry's own URL: the custom domain, else the API endpoint
    assert env["BERTH_PUBLIC_URL"] == tf.local("registry_url") and env["BERTH_PUBLIC_URL"].startswith("https://")
    assert module(domain_name="registry.example.com").local("berth_environment")["BERTH_PUBLIC_URL"] == "https://registry.example.com"
    assert env["AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH"] == "true"
    assert env["BERTH_BUCKET"] == Unknown("aws_s3_bucket.blobs.bucket")
    assert env["BERTH_TABLE"] == Unknown("aws_dynamodb_table.metadata.name")
    assert env["BERTH_QUEUE_URL"] == Unknown("aws_sqs_queue.jobs.url")
    assert env["BERTH_UPLOAD_GATEWAY_URL"].startswith("https://")
    assert module(enable_upload_gateway=False).local("berth_environment")["BERTH_UPLOAD_GATEWAY_URL"] == ""


@pytest.mark.parametrize("depth", [1, DEFAULT_DEPTH, 8])
def test_every_method_is_routed_at_every_repository_depth(berth_routes: list[dict], depth: int):
    tf = module() if depth == DEFAULT_DEPTH else module(max_repository_depth=depth)
    routes = tf.local("api_routes")
    assert routes == expected_api_routes(berth_routes, depth)
    assert sorted(tf.instances("aws_apigatewayv2_route", "registry")) == sorted(routes)
    assert len(routes) < ROUTES_QUOTA


def test_route_paths_form_a_consistent_tree(tf: Module):
    """At any path prefix, at most one variable segment (and always the same name) follows: a
    REST API requires it, and it keeps HTTP API matching unambiguous."""
    variables: dict[tuple, set] = {}
    for key in module(max_repository_depth=8).local("api_routes"):
        segments = key.split(" ", 1)[1].strip("/").split("/")
        for i, segment in enumerate(segments):
            if segment.startswith("{"):
                variables.setdefault(tuple(segments[:i]), set()).add(segment)
    conflicts = {"/".join(prefix): names for prefix, names in variables.items() if len(names) > 1}
    assert not conflicts


def test_default_route_count_is_documented(tf: Module, berth_routes: list[dict]):
    count = len(tf.local("api_routes"))
    fixed = sum(len(r["methods"]) for r in berth_routes if not r["has_repository"])
    per_depth = sum(len(r["methods"]) for r in berth_routes if r["has_repository"])
    assert (fixed, per_depth) == (76, 24)
    # and GET/HEAD /console, the console's page at its bare prefix
    fixed += 2
    assert count == fixed + per_depth * DEFAULT_DEPTH == 174
    assert fixed + per_depth * 8 < ROUTES_QUOTA  # the largest max_repository_depth allowed
    readme = (INFRA / "README.md").read_text()
    assert f"{fixed} + {per_depth} × N" in readme and f"{count} routes" in readme


def test_routes_invoke_their_function_with_payload_v2(tf: Module, berth_routes: list[dict]):
    for key, function in tf.local("api_routes").items():
        assert tf.argument("aws_apigatewayv2_route", "registry", "route_key", key) == key
        target = tf.argument("aws_apigatewayv2_route", "registry", "target", key)
        assert target == f'integrations/${{aws_apigatewayv2_integration.function["{function}"].id}}'
    for route in berth_routes:
        name = route["name"]
        assert tf.argument("aws_apigatewayv2_integration", "function", "payload_format_version", name) == "2.0"
        assert tf.argument("aws_apigatewayv2_integration", "function", "integration_uri", name) == Unknown(f'aws_lambda_function.this["{name}"].invoke_arn')
        assert tf.argument("aws_lambda_permission", "api", "function_name", name) == Unknown(f'aws_lambda_function.this["{name}"].function_name')


def test_private_api_serves_the_same_routes(berth_routes: list[dict]):
    tf = module(private_access=True)
    assert tf.instances("aws_apigatewayv2_api", "registry") == {}
    assert list(tf.instances("aws_api_gateway_rest_api", "private")) == [0]
    served = {}
    for path, operations in tf.local("private_api_openapi")["paths"].items():
        for method, operation in operations.items():
            uri = operation["x-amazon-apigateway-integration"]["uri"]
            served[f"{method.upper()} {path}"] = re.fullmatch(r'aws_lambda_function\.this\["(.+)"\]\.invoke_arn', uri.ref).group(1)
            assert [p["name"] for p in operation["parameters"]] == re.findall(r"\{([^}]+)\}", path)
    assert served == expected_api_routes(berth_routes, DEFAULT_DEPTH)
    # REST API quota: 300 resources (path prefixes) per API, at the deepest depth allowed.
    paths = module(private_access=True, max_repository_depth=8).local("private_api_paths")
    resources = {"/".join(p.strip("/").split("/")[:i]) for p in paths for i in range(len(p.strip("/").split("/")) + 1)}
    assert len(resources) < 300
    assert sorted(tf.instances("aws_lambda_permission", "private_api")) == sorted(r["name"] for r in berth_routes)


def test_job_worker_consumes_the_queue_with_partial_batch_responses(tf: Module):
    esm = lambda a: tf.argument("aws_lambda_event_source_mapping", "job_worker", a)  # noqa: E731
    assert esm("event_source_arn") == Unknown("aws_sqs_queue.jobs.arn")
    assert esm("function_name") == Unknown('aws_lambda_function.this["job-worker"].arn')
    assert esm("function_response_types") == ["ReportBatchItemFailures"]
    worker_timeout = tf.argument("aws_lambda_function", "this", "timeout", "job-worker")
    assert tf.argument("aws_sqs_queue", "jobs", "visibility_timeout_seconds") >= 6 * worker_timeout
    redrive = json.loads(tf.argument("aws_sqs_queue", "jobs", "redrive_policy"))
    assert redrive == {"deadLetterTargetArn": "${aws_sqs_queue.jobs_dlq.arn}", "maxReceiveCount": 5}


def test_job_scheduler_runs_on_a_schedule(tf: Module):
    assert tf.argument("aws_cloudwatch_event_rule", "job_scheduler", "schedule_expression") == "rate(1 minute)"
    assert tf.argument("aws_cloudwatch_event_target", "job_scheduler", "arn") == Unknown('aws_lambda_function.this["job-scheduler"].arn')
    assert tf.argument("aws_lambda_permission", "job_scheduler", "principal") == "events.amazonaws.com"
    assert tf.argument("aws_lambda_permission", "job_scheduler", "source_arn") == Unknown("aws_cloudwatch_event_rule.job_scheduler.arn")


def test_route_permissions_are_derived_from_the_ports_each_route_declares(tf: Module, berth_routes: list[dict]):
    # `berth routes --output json` says which ports each route's handler uses (the Lambda function
    # tests fail a route that uses one it does not declare); Terraform grants exactly the edge's
    # sets plus those ports' sets, from nothing else.
    grants = tf.local("function_permission_sets")
    by_port = tf.local("port_permissions")
    for route in berth_routes:
        expected = {"meta_read", "edge_write"} | {s for port in route["ports"] for s in by_port[port]}
        assert set(grants[route["name"]]) == expected, route["name"]
    assert set(tf.local("function_permissions")) - set(tf.local("routes")) == {"job-worker", "job-scheduler"}
    senders = sorted(r["name"] for r in berth_routes if "jobs:send" in r["ports"])
    assert sorted(r["name"] for r in berth_routes if "jobs_send" in grants[r["name"]]) == senders
    # the six that recount storage after a change, the two that start runs (and the scan route), those that queue a
    # registry event (api-tag only for that; manifest-get for that and a cached image), the one
    # that queues a redelivery, the replication policy routes (a run's job, a policy's target
    # check), blob-get (the caching of a blob pulled through a cache-type registry), and the trust
    # routes (a key change queues the re-verification of the registry's signatures)
    assert senders == sorted(["manifest-put", "manifest-delete", "blob-delete", "api-registry", "api-image",
                              "api-artifact", "api-cleanup-runs", "api-gc-runs",
                              "manifest-get", "api-tag", "api-webhook-redeliver",
                              "api-replications", "api-replication", "api-replication-run", "blob-get",
                              "api-artifact-scan", "api-trust-keys", "api-trust-key"])
    # a route that only reads metadata gets read-only DynamoDB for the registry's data: its only
    # write permission is the edge's, limited to the key, audit and setting partitions
    readers = sorted(r["name"] for r in berth_routes if "metadata:write" not in r["ports"])
    assert readers == sorted(["token", "base", "catalog", "tags-list", "upload-status", "referrers",
                              "api-artifacts", "api-tags", "api-audit", "api-openapi", "console",
                              "api-cleanup-run", "api-gc-run", "api-webhook-deliveries",
                              "api-replication-executions", "api-replication-execution", "api-replication-tasks"])
    for name in readers:
        assert "meta_write" not in grants[name], name


def test_the_edge_writes_only_key_use_stamps_and_audit_entries(tf: Module):
    edge = tf.local("permission_sets")["edge_write"]
    assert edge["actions"] == ["dynamodb:PutItem", "dynamodb:UpdateItem"]
    assert edge["resources"] == [Unknown("aws_dynamodb_table.metadata.arn")]
    # the document partitions ("doc#" + collection) of shared/src/api/endpoint.rs EDGE_WRITES but
    # the signing key's, which on AWS always comes from SSM; never a credential record
    source = (REPO / "shared/src/api/endpoint.rs").read_text()
    assert "EDGE_WRITES" in source
    assert edge["conditions"] == [{"test": "ForAllValues:StringEquals", "variable": "dynamodb:LeadingKeys",
                                   "values": ["doc#key-use", "doc#audit"]}]
    assert 'pub const USE_COLLECTION: &str = "key-use";' in (REPO / "shared/src/identity/key.rs").read_text()
    assert 'pub const COLLECTION: &str = "audit";' in (REPO / "shared/src/audit.rs").read_text()
    env = tf.block_argument("aws_lambda_function", "this", "environment", "variables", "tags-list")
    assert env["BERTH_TOKEN_SIGNING_KEY"] == Unknown("data.aws_ssm_parameter.token_signing_key.value")


def test_every_function_has_a_least_privilege_policy(tf: Module):
    sets = tf.local("permission_sets")
    grants = tf.local("function_permission_sets")
    assert sorted(grants) == sorted(tf.local("functions"))
    for function, names in grants.items():
        assert len(names) == len(set(names)), f"{function}: a permission set is listed twice"
        for name in names:
            assert name in sets, f"{function}: no permission set {name!r}"
    for name, grant in sets.items():
        for action in grant["actions"]:
            assert "*" not in action, f"{name}: wildcard action {action}"
        for resource in grant["resources"]:
            assert str(resource) != "*", f"{name}: '*' resource"
    assert "jobs_consume" in grants["job-worker"]
    # The scheduler reads the stored schedules (cleanup cycles) and claims each due time in the table.
    assert grants["job-scheduler"] == ["jobs_send", "meta_read", "meta_write"]
    routes = tf.local("routes")
    # Every route authenticates: it reads identities and writes last-used stamps and the audit log.
    for function in routes:
        assert {"meta_read", "edge_write"} <= set(grants[function]), function
    # No route consumes jobs (which routes send them: test_route_permissions_are_derived_…).
    assert not any("jobs_consume" in grants[r] for r in routes)
    # Pure identity routes and the version check touch no object at all.
    identity = ("base", "token", "api-registries", "api-users", "api-user", "api-keys", "api-key", "api-key-rotate",
                "api-audit", "api-openapi", "console", "api-cleanup-rules", "api-cleanup-rule", "api-cleanup-schedule",
                "api-cleanup-run", "api-protection-rules", "api-protection-rule", "api-gc-run",
                "api-webhooks", "api-webhook", "api-webhook-test", "api-webhook-deliveries",
                "api-replication-targets", "api-replication-target", "api-replication-executions",
                "api-replication-execution", "api-replication-tasks", "api-caches", "api-cache")
    for function in identity:
        assert set(grants[function]) <= {"meta_read", "edge_write", "meta_write"}, function
    for function in ("api-cleanup-runs", "api-gc-runs", "api-webhook-redeliver", "api-replications", "api-replication",
                     "api-replication-run"):
        assert set(grants[function]) == {"meta_read", "edge_write", "meta_write", "jobs_send"}, function
    # Reads never write objects, but a pull through a cache-type registry stores the manifest it
    # fetched (blob_write; the blobs are fetched by job-worker) and never stages; no route deletes
    # blob bytes (deletes only unlink, GC reclaims).
    for function in ("tags-list", "catalog", "referrers", "api-images", "api-artifacts", "api-tags"):
        assert not {"blob_write", "staging_write", "staging_cleanup"} & set(grants[function]), function
    for function in ("blob-get", "manifest-get"):
        assert not {"staging_read", "staging_write", "staging_cleanup", "staging_list"} & set(grants[function]), function
    assert not any("blob_delete" in grants[r] for r in routes)
    # Management reads of manifests and configs read blobs/; management deletes can do what
    # manifest-delete does.
    for function in ("api-images", "api-artifacts", "api-artifact"):
        assert "blob_read" in grants[function], function
    for function in ("api-image", "api-artifact", "api-registry"):
        assert set(grants["manifest-delete"]) <= set(grants[function]), function
    # Object permissions are scoped to the adapter's prefixes.
    for name in ("blob_read", "blob_write", "blob_delete"):
        assert [str(r) for r in sets[name]["resources"]] == ["${aws_s3_bucket.blobs.arn}/blobs/*"]
    for name in ("staging_read", "staging_write", "staging_cleanup"):
        assert [str(r) for r in sets[name]["resources"]] == ["${aws_s3_bucket.blobs.arn}/uploads/*"]


def test_customer_managed_key_is_granted_when_set():
    arn = "arn:aws:kms:us-east-1:111122223333:key/0000"
    grants = module(kms_key_arn=arn).local("function_permission_sets")
    assert all("kms" in g for g in grants.values())
    assert all("kms" not in g for g in module().local("function_permission_sets").values())
    assert module(kms_key_arn=arn).local("permission_sets")["kms"]["resources"] == [arn]


def test_upload_gateway_task_has_only_the_upload_permissions(tf: Module):
    grants = tf.local("function_permission_sets")
    uploads = {g for f in ("upload-start", "upload-patch", "upload-put", "upload-status", "upload-cancel") for g in grants[f]}
    assert set(tf.local("upload_gateway_permission_sets")) == uploads
    assert not {"jobs_consume", "jobs_send", "blob_delete"} & uploads
    assert tf.argument("aws_lb", "upload_gateway", "idle_timeout", 0) >= 900
    assert module(enable_upload_gateway=False).instances("aws_ecs_service", "upload_gateway") == {}


def test_upload_gateway_runs_berth_serve_with_the_berth_environment(tf: Module):
    (container,) = json.loads(tf.argument("aws_ecs_task_definition", "upload_gateway", "container_definitions", 0))
    assert container["entryPoint"] == ["berth", "serve", "--backend", "aws", "--listen", "0.0.0.0:8080"]
    assert container["portMappings"] == [{"containerPort": 8080, "protocol": "tcp"}]
    env = {e["name"] for e in container["environment"]}
    assert set(tf.local("berth_environment")) <= env
    env_values = {e["name"]: e["value"] for e in container["environment"]}
    assert env_values["BERTH_PUBLIC_URL"] == tf.local("berth_environment")["BERTH_PUBLIC_URL"]
    # behind the ALB: one client address for everyone, and connections the ALB keeps reusing
    assert env_values["BERTH_MAX_CONNECTIONS_PER_IP"] == "4096"
    alb_idle = tf.argument("aws_lb", "upload_gateway", "idle_timeout", 0)
    for timeout in ("BERTH_HEADER_TIMEOUT_SECONDS", "BERTH_IDLE_TIMEOUT_SECONDS"):
        assert int(env_values[timeout]) > alb_idle, f"{timeout} must outlast the ALB's idle timeout"
    secrets = {s["name"]: s["valueFrom"] for s in container["secrets"]}
    assert secrets == {"BERTH_UPLOAD_TOKEN_KEY": ssm_arn("berth/upload-token-key"), "BERTH_TOKEN_SIGNING_KEY": ssm_arn("berth/token-signing-key"),
                       "BERTH_SECRETS_KEY": ssm_arn("berth/secrets-key")}
    # the gateway delivers nothing, replicates nothing, serves no pull through a cache (it has
    # no permission to queue the caching) and puts no event on the bus
    assert not SELECTIVE_SETTINGS & env
    assert not set(secrets) & env, "a secret is also a plain environment variable"
    # the execution role may read exactly these parameters
    readable = tf.block_argument("aws_iam_policy_document", "upload_gateway_execution", "statement", "resources", 0, kind="data")
    assert sorted(readable) == sorted(secrets.values())
    runtime = tf.block_argument("aws_ecs_task_definition", "upload_gateway", "runtime_platform", "cpu_architecture", 0)
    assert runtime == "ARM64"


def test_bootstrap_admin_key_reaches_the_gateway_as_secrets():
    tf = module(admin_access_key_parameter="/berth/admin-access-key", admin_secret_key_parameter="berth/admin-secret-key")
    (container,) = json.loads(tf.argument("aws_ecs_task_definition", "upload_gateway", "container_definitions", 0))
    secrets = {s["name"]: s["valueFrom"] for s in container["secrets"]}
    assert secrets["BERTH_ADMIN_ACCESS_KEY"] == ssm_arn("berth/admin-access-key")
    assert secrets["BERTH_ADMIN_SECRET_KEY"] == ssm_arn("berth/admin-secret-key")
    assert not {"BERTH_ADMIN_ACCESS_KEY", "BERTH_ADMIN_SECRET_KEY"} & {e["name"] for e in container["environment"]}
    readable = tf.block_argument("aws_iam_policy_document", "upload_gateway_execution", "statement", "resources", 0, kind="data")
    assert sorted(readable) == sorted(secrets.values()) and len(readable) == 5
    # no function gets the admin key: only `berth serve` makes sure of it
    env = tf.block_argument("aws_lambda_function", "this", "environment", "variables", "token")
    assert not any(k.startswith("BERTH_ADMIN_") for k in env)
    # both or neither (berth serve refuses one alone): a precondition of the task definition
    def both_or_neither(tf: Module) -> bool:
        (ok,) = [v for msg, v in tf.preconditions("aws_ecs_task_definition", "upload_gateway", 0).items() if "admin_" in msg]
        return ok
    assert both_or_neither(tf) and both_or_neither(module())
    assert not both_or_neither(module(admin_access_key_parameter="/berth/admin-access-key"))
    assert not both_or_neither(module(admin_secret_key_parameter="/berth/admin-secret-key"))


def test_table_gsis_become_attributes_and_indexes():
    # the DynamoDB adapter's one index (shared/src/metadata/dynamodb.rs, module doc)
    tf = module()
    assert tf.local("table_gsis") == [{"name": "uploads_by_updated_at", "hash_key": "upload_shard",
                                       "range_key": "updated_at", "range_key_type": "N",
                                       "projection_type": "KEYS_ONLY"}]
    assert tf.local("table_gsi_attributes") == {"upload_shard": "S", "updated_at": "N"}


# ---- 4. registry events and webhooks (issue 13) -----------------------------------------------

# The webhook management routes as the contract declares them; once the binary serves them,
# test_terraform_route_table_mirrors_berth_routes checks it declares the same.
WEBHOOK_ROUTES = {
    "api-webhooks": (["GET", "POST"], "/registries/{registry}/webhooks", ["metadata:write"]),
    "api-webhook": (["GET", "PATCH", "DELETE"], "/registries/{registry}/webhooks/{webhook}", ["metadata:write"]),
    "api-webhook-test": (["POST"], "/registries/{registry}/webhooks/{webhook}/test", ["metadata:write"]),
    "api-webhook-deliveries": (["GET"], "/registries/{registry}/webhooks/{webhook}/deliveries", []),
    "api-webhook-redeliver": (["POST"], "/registries/{registry}/webhooks/{webhook}/deliveries/{delivery}/redeliver",
                              ["metadata:write", "jobs:send"]),
}
# The routes whose changes (and manifest-get's pulls) are registry events, queued for job-worker.
EVENT_EMITTERS = ("manifest-put", "manifest-get", "manifest-delete", "api-tag", "api-artifact", "api-image")


def test_webhook_routes_are_deployed_with_their_functions(tf: Module):
    routes = tf.local("routes")
    for name, (methods, suffix, ports) in WEBHOOK_ROUTES.items():
        assert routes[name] == {"prefix": "/api/v1", "methods": methods, "suffix": suffix, "has_repository": False, "ports": ports}
        assert name in tf.instances("aws_lambda_function", "this"), name
        assert name in tf.instances("aws_apigatewayv2_integration", "function"), name
    api = tf.local("api_routes")
    for name, (methods, suffix, _) in WEBHOOK_ROUTES.items():
        for method in methods:
            assert api[f"{method} /api/v1{suffix}"] == name
    for name in EVENT_EMITTERS:
        assert "jobs:send" in routes[name]["ports"], f"{name} queues registry events"
        assert "jobs_send" in tf.local("function_permission_sets")[name], name


def test_every_route_has_a_sample_event_for_one_of_its_route_keys(tf: Module):
    """events/apigw-v2/<route>.json is an API Gateway payload 2.0 request that the HTTP API would
    send to that very function (route key as Terraform generates it, path filled in)."""
    api = tf.local("api_routes")
    for name in tf.local("routes"):
        path = REPO / "events" / "apigw-v2" / f"{name}.json"
        assert path.is_file(), f"{path.relative_to(REPO)} is missing"
        event = json.loads(path.read_text())
        assert event["version"] == "2.0"
        key = event["routeKey"]
        assert api.get(key) == name, f"{path.name}: {key} is not a route of {name}"
        assert event["requestContext"]["routeKey"] == key
        method, template = key.split(" ", 1)
        assert event["requestContext"]["http"]["method"] == method
        stage = event["requestContext"]["stage"]
        raw = event["rawPath"] if stage == "$default" else event["rawPath"].removeprefix(f"/{stage}")
        assert event["requestContext"]["http"]["path"] == event["rawPath"]
        pattern = "".join(r"[^/]+" if part.startswith("{") else re.escape(part) for part in re.split(r"(\{[^}]+\})", template))
        assert re.fullmatch(pattern + "/?", raw), f"{path.name}: {raw} does not match {template}"
        query = event["rawQueryString"]
        if "queryStringParameters" in event:  # both forms of the query, as API Gateway sends them
            params: dict[str, list[str]] = {}
            for k, v in urllib.parse.parse_qsl(query, keep_blank_values=True):
                params.setdefault(k, []).append(v)
            assert {k: ",".join(v) for k, v in params.items()} == event["queryStringParameters"], path.name
    names = {p.stem for p in (REPO / "events" / "apigw-v2").glob("*.json")}
    assert names == set(tf.local("routes")), "a sample event names no route"


def test_registry_events_go_to_a_bus_only_job_worker_may_put_on(tf: Module):
    assert tf.instances("aws_cloudwatch_event_bus", "registry") == {None: {}}
    assert tf.argument("aws_cloudwatch_event_bus", "registry", "name") == "berth-events"
    assert module(name="reg").argument("aws_cloudwatch_event_bus", "registry", "name") == "reg-events"
    assert module(event_bus_name="platform-events").argument("aws_cloudwatch_event_bus", "registry", "name") == "platform-events"
    # the customer managed key, when there is one, encrypts the bus too
    assert tf.argument("aws_cloudwatch_event_bus", "registry", "kms_key_identifier") is None
    arn = "arn:aws:kms:us-east-1:111122223333:key/0000"
    assert module(kms_key_arn=arn).argument("aws_cloudwatch_event_bus", "registry", "kms_key_identifier") == arn
    # PutEvents on that bus alone, for job-worker alone
    sets = tf.local("permission_sets")
    assert sets["events_put"] == {"actions": ["events:PutEvents"], "resources": [Unknown("aws_cloudwatch_event_bus.registry.arn")]}
    grants = tf.local("function_permission_sets")
    assert [f for f, g in grants.items() if "events_put" in g] == ["job-worker"]
    assert not any(a.startswith("events:") for name, grant in sets.items() if name != "events_put" for a in grant["actions"])
    # job-worker learns the bus's name; no other function does
    for function in tf.local("functions"):
        env = tf.block_argument("aws_lambda_function", "this", "environment", "variables", function)
        assert ("BERTH_EVENT_BUS" in env) == (function == "job-worker"), function
    worker = tf.block_argument("aws_lambda_function", "this", "environment", "variables", "job-worker")
    assert worker["BERTH_EVENT_BUS"] == Unknown("aws_cloudwatch_event_bus.registry.name")
    # routing is the infra team's: the only rule is job-scheduler's, on the default bus
    rules = [name for kind, rtype, name in tf.resources if kind == "resource" and rtype == "aws_cloudwatch_event_rule"]
    assert rules == ["job_scheduler"]
    assert "event_bus_name" not in tf.resources[("resource", "aws_cloudwatch_event_rule", "job_scheduler")]
    readme = (INFRA / "README.md").read_text()
    assert 'source        = ["berth.registry"]' in readme and '"detail-type" = ["Berth Image Action"]' in readme


def test_webhook_settings_reach_only_the_functions_that_deliver_or_check_targets(tf: Module):
    def envs(tf: Module) -> dict[str, dict]:
        return {f: tf.block_argument("aws_lambda_function", "this", "environment", "variables", f) for f in tf.local("functions")}

    for function, env in envs(tf).items():
        assert SELECTIVE_SETTINGS & set(env) == EXTRA_ENVIRONMENT.get(function, set()), function
        assert env["BERTH_SECRETS_KEY"] == Unknown("data.aws_ssm_parameter.secrets_key.value"), function
    defaults = {"BERTH_WEBHOOK_TIMEOUT_SECS": "10", "BERTH_WEBHOOK_MAX_ATTEMPTS": "8", "BERTH_WEBHOOK_RETRY_SECS": "2",
                "BERTH_OUTBOUND_ALLOW": ""}
    custom = module(webhook_timeout_seconds=5, webhook_max_attempts=3, webhook_retry_seconds=30,
                    outbound_allow_cidrs=["127.0.0.0/8", "::1/128"])
    settings = {"BERTH_WEBHOOK_TIMEOUT_SECS": "5", "BERTH_WEBHOOK_MAX_ATTEMPTS": "3", "BERTH_WEBHOOK_RETRY_SECS": "30",
                "BERTH_OUTBOUND_ALLOW": "127.0.0.0/8,::1/128"}
    for values, expected in ((envs(tf), defaults), (envs(custom), settings)):
        for function, names in EXTRA_ENVIRONMENT.items():
            names = set(names) - {"BERTH_EVENT_BUS", *REPLICATION_SETTINGS, *CACHE_SETTINGS}  # their own tests
            assert {k: values[function][k] for k in names} == {k: expected[k] for k in names}, function
    # the webhook secrets key comes from its SSM parameter, like the token signing key
    assert tf.argument("aws_ssm_parameter", "secrets_key", "name", kind="data") == "/berth/secrets-key"
    assert module(secrets_key_ssm_parameter="/x/secrets").argument("aws_ssm_parameter", "secrets_key", "name", kind="data") == "/x/secrets"
    assert tf.argument("aws_ssm_parameter", "secrets_key", "with_decryption", kind="data") is True


@pytest.fixture(scope="session")
def terraform_variables(tmp_path_factory) -> Path:
    """A root module of infra/variables.tf alone: no provider, so `terraform init` needs no
    download and `terraform plan -var ...` runs every validation block."""
    terraform = Path(os.environ.get("TERRAFORM_BIN", "/usr/local/bin/terraform"))
    assert terraform.is_file(), f"{terraform} not found: terraform is part of the machine image (or set TERRAFORM_BIN)"
    root = tmp_path_factory.mktemp("variables")
    shutil.copy(INFRA / "variables.tf", root / "variables.tf")
    p = subprocess.run([str(terraform), "init", "-input=false", "-backend=false", "-no-color"], cwd=root,
                       capture_output=True, text=True, timeout=120, env={**os.environ, "CHECKPOINT_DISABLE": "1"})
    assert p.returncode == 0, p.stdout + p.stderr
    return root


@pytest.mark.parametrize("assignments, accepted", [
    ({}, True),
    ({"event_bus_name": "platform.events_1-a"}, True),
    ({"event_bus_name": "default"}, False),
    ({"event_bus_name": "a/b"}, False),
    ({"event_bus_name": ""}, False),
    ({"webhook_timeout_seconds": 25, "webhook_max_attempts": 1, "webhook_retry_seconds": 900}, True),
    ({"webhook_timeout_seconds": 0}, False),
    ({"webhook_timeout_seconds": 26}, False),  # api-webhook-test must answer within API Gateway's 30 s
    ({"webhook_timeout_seconds": 2.5}, False),
    ({"webhook_max_attempts": 0}, False),
    ({"webhook_retry_seconds": 901}, False),
    ({"outbound_allow_cidrs": ["127.0.0.0/8", "::1/128", "10.0.0.0/8", "fd00::/8"]}, True),
    ({"outbound_allow_cidrs": ["127.0.0.1"]}, False),
    ({"outbound_allow_cidrs": ["10.0.0.0/33"]}, False),
    # job-worker's timeout leaves a replication copy step a minute at least (the step is 60 s shorter)
    ({"function_overrides": {"job-worker": {"timeout_seconds": 120}, "blob-get": {"timeout_seconds": 10}}}, True),
    ({"function_overrides": {"job-worker": {"timeout_seconds": 900, "memory_mb": 1024}}}, True),
    ({"function_overrides": {"job-worker": {"memory_mb": 1024}}}, True),
    ({"function_overrides": {"job-worker": {"timeout_seconds": 60}}}, False),
    ({"function_overrides": {"job-worker": {"timeout_seconds": 119}}}, False),
    ({"function_overrides": {"job-worker": {"timeout_seconds": 901}}}, False),
    ({"function_overrides": {"job-worker": {"timeout_seconds": 200.5}}}, False),
    # image caches (issue 15)
    ({"cache_source_ports": ["80", "443", "5000"], "cache_check_seconds": 0, "cache_budget_seconds": 1}, True),
    ({"cache_source_ports": [443, 8443]}, True),
    ({"cache_source_ports": ["*"], "cache_check_seconds": 86400, "cache_budget_seconds": 840}, True),
    ({"cache_source_ports": ["*", "443"]}, False),
    ({"cache_source_ports": []}, False),
    ({"cache_source_ports": ["0"]}, False),
    ({"cache_source_ports": ["65536"]}, False),
    ({"cache_source_ports": ["https"]}, False),
    ({"cache_check_seconds": -1}, False),
    ({"cache_check_seconds": 86401}, False),
    ({"cache_check_seconds": 1.5}, False),
    ({"cache_budget_seconds": 0}, False),
    ({"cache_budget_seconds": 841}, False),  # beyond any job-worker timeout (900) minus 60
    ({"cache_budget_seconds": 99.5}, False),
    ({"cache_mirror_hosts": {"mirror.example.com": "hubcache", "localhost": "hub_cache.1", "Docker-Mirror": "a-b"}}, True),
    ({"cache_mirror_hosts": {"mirror.example.com": "HubCache"}}, False),
    ({"cache_mirror_hosts": {"mirror.example.com:5000": "hubcache"}}, False),
    ({"cache_mirror_hosts": {"mirror example": "hubcache"}}, False),
    ({"cache_mirror_hosts": {"mirror.example.com": "hub..cache"}}, False),
    ({"cache_mirror_hosts": {"mirror.example.com": "-hub"}}, False),
    ({"cache_mirror_hosts": {"mirror.example.com": "a" * 64}}, False),
], ids=lambda v: json.dumps(v) if isinstance(v, dict) else str(v))
def test_event_and_webhook_variables_are_validated(terraform_variables: Path, assignments: dict, accepted: bool):
    terraform = os.environ.get("TERRAFORM_BIN", "/usr/local/bin/terraform")
    args = [a for name, value in assignments.items()
            for a in ("-var", f"{name}={json.dumps(value) if isinstance(value, (list, dict)) else value}")]
    p = subprocess.run([terraform, "plan", "-input=false", "-no-color", "-lock=false", *args], cwd=terraform_variables,
                       capture_output=True, text=True, timeout=120, env={**os.environ, "CHECKPOINT_DISABLE": "1"})
    assert (p.returncode == 0) == accepted, p.stdout + p.stderr
    if not accepted:
        assert "Invalid value for variable" in p.stderr


# ---- 5. replication (issue 14) ----------------------------------------------------------------

# The replication management routes as the contract declares them; once the binary serves
# them, test_terraform_route_table_mirrors_berth_routes checks it declares the same.
REPLICATION_ROUTES = {
    "api-replication-targets": (["GET", "POST"], "/registries/{registry}/replication-targets", ["metadata:write"]),
    "api-replication-target": (["GET", "PATCH", "DELETE"], "/registries/{registry}/replication-targets/{target}",
                               ["metadata:write"]),
    "api-replications": (["GET", "POST"], "/registries/{registry}/replications", ["metadata:write", "jobs:send"]),
    "api-replication": (["GET", "PATCH", "DELETE"], "/registries/{registry}/replications/{replication}",
                        ["metadata:write", "jobs:send"]),
    "api-replication-run": (["POST"], "/registries/{registry}/replications/{replication}/run", ["metadata:write", "jobs:send"]),
    "api-replication-executions": (["GET"], "/registries/{registry}/replications/{replication}/executions", []),
    "api-replication-execution": (["GET"], "/registries/{registry}/replications/{replication}/executions/{execution}", []),
    "api-replication-tasks": (["GET"], "/registries/{registry}/replications/{replication}/executions/{execution}/tasks", []),
}


def test_replication_routes_are_deployed_with_their_functions(tf: Module):
    routes = tf.local("routes")
    api = tf.local("api_routes")
    for name, (methods, suffix, ports) in REPLICATION_ROUTES.items():
        assert routes[name] == {"prefix": "/api/v1", "methods": methods, "suffix": suffix, "has_repository": False, "ports": ports}
        assert name in tf.instances("aws_lambda_function", "this"), name
        assert name in tf.instances("aws_apigatewayv2_integration", "function"), name
        for method in methods:
            assert api[f"{method} /api/v1{suffix}"] == name
        # its crate: one line naming its endpoint in berth::api::manage::replications
        crate = REPO / "functions" / name
        assert f'name = "{name}"' in (crate / "Cargo.toml").read_text(), name
        main = (crate / "src" / "main.rs").read_text()
        assert re.search(r"berth::route_function!\(berth::api::manage::replications::[A-Z_]+\);", main), name


def test_replication_steps_end_a_minute_before_job_worker_times_out(tf: Module):
    def step(tf: Module) -> str:
        return tf.block_argument("aws_lambda_function", "this", "environment", "variables", "job-worker")["BERTH_REPLICATION_STEP_SECS"]

    assert tf.argument("aws_lambda_function", "this", "timeout", "job-worker") == 300
    assert step(tf) == "240"
    longer = module(function_overrides={"job-worker": {"timeout_seconds": 900}})
    assert longer.argument("aws_lambda_function", "this", "timeout", "job-worker") == 900
    assert step(longer) == "840"
    # only job-worker copies (BERTH_REPLICATION_STEP_SECS elsewhere: test_webhook_settings_reach_only_…),
    # and it reaches the targets through the same allow-list as the routes that check them
    worker = tf.block_argument("aws_lambda_function", "this", "environment", "variables", "job-worker")
    custom = module(outbound_allow_cidrs=["10.20.0.0/16"])
    for function in ("job-worker", "api-replication-targets", "api-replication-target", "api-replications", "api-replication"):
        env = custom.block_argument("aws_lambda_function", "this", "environment", "variables", function)
        assert env["BERTH_OUTBOUND_ALLOW"] == "10.20.0.0/16", function
    assert worker["BERTH_OUTBOUND_ALLOW"] == ""
    # a copy reads the manifests and blobs it sends; still no route deletes blob bytes
    grants = tf.local("function_permission_sets")
    assert {"blob_read", "jobs_send"} <= set(grants["job-worker"])
    for name in REPLICATION_ROUTES:
        assert not {"blob_read", "blob_write", "blob_delete", "events_put"} & set(grants[name]), name


# ---- 6. image caches (issue 15) ----------------------------------------------------------------

# The image-cache management routes as the contract declares them; the binary's route
# table is checked against Terraform's by test_terraform_route_table_mirrors_berth_routes.
CACHE_ROUTES = {
    "api-caches": (["GET", "POST"], "/caches", ["metadata:write"]),
    "api-cache": (["GET", "PATCH", "DELETE"], "/caches/{cache}", ["metadata:write"]),
}
# A pull through a cache-type registry stores what it fetches and queues the rest of the caching.
CACHE_PULL_PORTS = ["blobs:read", "blobs:write", "metadata:write", "jobs:send"]


def test_cache_routes_are_deployed_with_their_functions(tf: Module):
    routes = tf.local("routes")
    api = tf.local("api_routes")
    for name, (methods, suffix, ports) in CACHE_ROUTES.items():
        assert routes[name] == {"prefix": "/api/v1", "methods": methods, "suffix": suffix, "has_repository": False, "ports": ports}
        assert name in tf.instances("aws_lambda_function", "this"), name
        assert name in tf.instances("aws_apigatewayv2_integration", "function"), name
        for method in methods:
            assert api[f"{method} /api/v1{suffix}"] == name
        # its crate: one line naming its endpoint in berth::api::manage::caches
        crate = REPO / "functions" / name
        assert f'name = "{name}"' in (crate / "Cargo.toml").read_text(), name
        main = (crate / "src" / "main.rs").read_text()
        assert re.search(r"berth::route_function!\(berth::api::manage::caches::[A-Z_]+\);", main), name
    for name in ("manifest-get", "blob-get"):
        assert routes[name]["ports"] == CACHE_PULL_PORTS, name


def test_cache_pulls_and_fills_have_the_object_permissions_they_use(tf: Module):
    grants = tf.local("function_permission_sets")
    # the cache routes write documents only (the source's secret is sealed in its document)
    for name in CACHE_ROUTES:
        assert set(grants[name]) == {"meta_read", "edge_write", "meta_write"}, name
    # a pull stores a fetched manifest, links a blob stored for another repository and queues the
    # caching; it stages nothing (S3 serves blobs by redirect: job-worker fetches the bytes)
    for name in ("manifest-get", "blob-get"):
        assert set(grants[name]) == {"meta_read", "edge_write", "blob_read", "bucket_list", "blob_write", "meta_write", "jobs_send"}, name
    # job-worker stages a source's blob in uploads/, copies it into blobs/ once its digest checks
    # (UploadPartCopy: staging_read + blob_write, then staging_cleanup) and stores manifests
    assert {"staging_read", "staging_write", "staging_cleanup", "bucket_list", "blob_read", "blob_write", "meta_write", "jobs_send"} <= set(grants["job-worker"])
    sets = tf.local("permission_sets")
    assert sets["staging_write"]["actions"] == ["s3:PutObject"]
    assert [str(r) for r in sets["staging_write"]["resources"]] == ["${aws_s3_bucket.blobs.arn}/uploads/*"]


def test_mirror_hosts_reach_every_v2_repository_route(tf: Module, berth_routes: list[dict]):
    v2_repository_routes = sorted(r["name"] for r in berth_routes if r["prefix"] == "/v2" and r["has_repository"])
    assert sorted(MIRROR_FUNCTIONS) == v2_repository_routes == sorted(tf.local("mirror_functions"))
    for function in tf.local("functions"):
        env = tf.block_argument("aws_lambda_function", "this", "environment", "variables", function)
        assert ("BERTH_MIRROR_HOSTS" in env) == (function in MIRROR_FUNCTIONS), function
        if function in MIRROR_FUNCTIONS:
            assert env["BERTH_MIRROR_HOSTS"] == "", function
    custom = module(cache_mirror_hosts={"mirror.example.com": "hubcache", "localhost": "hubcache", "quay-mirror": "quaycache"})
    for function in MIRROR_FUNCTIONS:
        env = custom.block_argument("aws_lambda_function", "this", "environment", "variables", function)
        # BERTH_MIRROR_HOSTS: host=registry pairs, comma-joined (Terraform orders a map's keys)
        assert env["BERTH_MIRROR_HOSTS"] == "localhost=hubcache,mirror.example.com=hubcache,quay-mirror=quaycache", function


def test_cache_settings_reach_the_functions_that_read_them(tf: Module):
    def env(tf: Module, function: str) -> dict:
        return tf.block_argument("aws_lambda_function", "this", "environment", "variables", function)

    defaults = {
        "api-caches": {"BERTH_CACHE_SOURCE_PORTS": "80,443", "BERTH_OUTBOUND_ALLOW": ""},
        "api-cache": {"BERTH_CACHE_SOURCE_PORTS": "80,443", "BERTH_OUTBOUND_ALLOW": ""},
        "manifest-get": {"BERTH_CACHE_CHECK_SECS": "30", "BERTH_OUTBOUND_ALLOW": "", "BERTH_CACHE_SOURCE_PORTS": "80,443"},
        "blob-get": {"BERTH_CACHE_BUDGET_SECS": "200", "BERTH_OUTBOUND_ALLOW": "", "BERTH_CACHE_SOURCE_PORTS": "80,443"},
        "job-worker": {"BERTH_CACHE_BUDGET_SECS": "200", "BERTH_OUTBOUND_ALLOW": "", "BERTH_CACHE_SOURCE_PORTS": "80,443"},
    }
    custom = module(cache_source_ports=["443", "5000"], cache_check_seconds=0, cache_budget_seconds=120,
                    outbound_allow_cidrs=["127.0.0.0/8"])
    settings = {
        "api-caches": {"BERTH_CACHE_SOURCE_PORTS": "443,5000", "BERTH_OUTBOUND_ALLOW": "127.0.0.0/8"},
        "api-cache": {"BERTH_CACHE_SOURCE_PORTS": "443,5000", "BERTH_OUTBOUND_ALLOW": "127.0.0.0/8"},
        "manifest-get": {"BERTH_CACHE_CHECK_SECS": "0", "BERTH_OUTBOUND_ALLOW": "127.0.0.0/8",
                         "BERTH_CACHE_SOURCE_PORTS": "443,5000"},
        "blob-get": {"BERTH_CACHE_BUDGET_SECS": "120", "BERTH_OUTBOUND_ALLOW": "127.0.0.0/8",
                     "BERTH_CACHE_SOURCE_PORTS": "443,5000"},
        "job-worker": {"BERTH_CACHE_BUDGET_SECS": "120", "BERTH_OUTBOUND_ALLOW": "127.0.0.0/8",
                       "BERTH_CACHE_SOURCE_PORTS": "443,5000"},
    }
    for values, expected in ((tf, defaults), (custom, settings)):
        for function, want in expected.items():
            got = env(values, function)
            assert {k: got[k] for k in want} == want, function
    # which function reads which setting: test_webhook_settings_reach_only_…, by EXTRA_ENVIRONMENT
    assert env(module(cache_source_ports=["*"]), "api-caches")["BERTH_CACHE_SOURCE_PORTS"] == "*"


def test_a_caching_ends_a_minute_before_job_worker_times_out(tf: Module):
    def budget(tf: Module) -> str:
        return tf.block_argument("aws_lambda_function", "this", "environment", "variables", "job-worker")["BERTH_CACHE_BUDGET_SECS"]

    def fits(tf: Module) -> bool:
        (ok,) = [v for msg, v in tf.preconditions("aws_lambda_function", "this", "job-worker").items() if "cache_budget_seconds" in msg]
        return ok

    # unset: Berth's 200 s, or job-worker's timeout minus 60 when that is shorter
    assert (budget(tf), fits(tf)) == ("200", True)
    short = {"job-worker": {"timeout_seconds": 120}}
    assert (budget(module(function_overrides=short)), fits(module(function_overrides=short))) == ("60", True)
    long = {"job-worker": {"timeout_seconds": 900}}
    assert budget(module(function_overrides=long)) == "200"
    # set: used as is, and the plan fails when it outlasts job-worker's timeout minus 60
    assert (budget(module(cache_budget_seconds=240)), fits(module(cache_budget_seconds=240))) == ("240", True)
    assert not fits(module(cache_budget_seconds=241))
    assert not fits(module(cache_budget_seconds=100, function_overrides=short))
    assert fits(module(cache_budget_seconds=840, function_overrides=long))
    # the precondition is job-worker's alone: the route functions' timeouts are API Gateway's 29 s
    for function in ("blob-get", "manifest-get"):
        assert all(module(cache_budget_seconds=240).preconditions("aws_lambda_function", "this", function).values()), function


# ---- 7. variables and outputs ----------------------------------------------------------------


def _blocks(kind: str) -> dict[str, dict]:
    out = {}
    for path in TF_FILES:
        with path.open() as f:
            for block in hcl2.load(f).get(kind, []):
                for name, body in block.items():
                    out[unquote(name)] = body
    return out


def test_variables_are_typed_described_and_defaulted():
    variables = _blocks("variable")
    assert variables
    for name, body in variables.items():
        assert body.get("type"), f"variable {name} has no type"
        assert len(unquote(body.get("description", "")).strip()) > 10, f"variable {name} has no description"
        assert "default" in body, f"variable {name} has no default"


def test_outputs_are_described():
    outputs = _blocks("output")
    assert {"registry_url", "upload_gateway_url", "bucket_name", "table_name", "queue_url", "function_names",
            "event_bus_name", "event_bus_arn", "secrets_key_ssm_parameter"} <= set(outputs)
    for name, body in outputs.items():
        assert len(unquote(body.get("description", "")).strip()) > 10, f"output {name} has no description"
