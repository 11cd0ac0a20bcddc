"""Static checks of the Terraform in infra/ (no terraform binary, no AWS account needed).

1. every .tf file parses (python-hcl2);
2. checkov reports no failed check, and every suppression is an inline, reasoned comment;
3. the route table of the built `berth` binary is what Terraform deploys: one function, one
   artifact and one API route per method and repository depth for every route, and the job
   functions are wired to SQS and EventBridge;
4. house style: typed, described variables with defaults; described outputs.

Terraform expressions are evaluated by tests/infra/hcl_eval.py over python-hcl2's parse tree.

Run: .venv/bin/python -m pytest tests/infra   (BERTH_BIN, CHECKOV_BIN override the tools)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import hcl2
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from hcl_eval import Module, Unknown  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
TF_FILES = sorted(INFRA.glob("*.tf"))
JOB_FUNCTIONS = ("job-worker", "job-scheduler")
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
    env = envs["blob-get"]
    assert all(e == env for e in envs.values()), "every function gets the same environment"
    assert sorted(env) == sorted([
        "BERTH_BUCKET", "BERTH_TABLE", "BERTH_QUEUE_URL", "BERTH_PRESIGN_EXPIRY_SECONDS", "BERTH_UPLOAD_GATEWAY_URL",
        "BERTH_UPLOAD_TOKEN_KEY", "BERTH_TOKEN_SIGNING_KEY", "BERTH_TOKEN_LIFETIME_SECONDS", "BERTH_PUBLIC_URL",
        "AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH", "RUST_LOG",
    ])
    # the keys' values come from the SSM parameters at apply time, never from a literal
    assert env["BERTH_UPLOAD_TOKEN_KEY"] == Unknown("data.aws_ssm_parameter.upload_token_key.value")
    assert env["BERTH_TOKEN_SIGNING_KEY"] == Unknown("data.aws_ssm_parameter.token_signing_key.value")
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
    assert (fixed, per_depth) == (39, 21)
    assert count == fixed + per_depth * DEFAULT_DEPTH == 123
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
    # the six that recount storage after a change, and the two that start runs
    assert senders == sorted(["manifest-put", "manifest-delete", "blob-delete", "api-registry", "api-image",
                              "api-artifact", "api-cleanup-runs", "api-gc-runs"])
    # a route that only reads metadata gets read-only DynamoDB for the registry's data: its only
    # write permission is the edge's, limited to the key, audit and setting partitions
    readers = sorted(r["name"] for r in berth_routes if "metadata:write" not in r["ports"])
    assert readers == sorted(["token", "base", "catalog", "tags-list", "blob-get", "upload-status", "referrers",
                              "api-artifacts", "api-tags", "api-audit", "api-openapi",
                              "api-cleanup-run", "api-gc-run"])
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
                "api-audit", "api-openapi", "api-cleanup-rules", "api-cleanup-rule", "api-cleanup-schedule",
                "api-cleanup-run", "api-protection-rules", "api-protection-rule", "api-gc-run")
    for function in identity:
        assert set(grants[function]) <= {"meta_read", "edge_write", "meta_write"}, function
    for function in ("api-cleanup-runs", "api-gc-runs"):
        assert set(grants[function]) == {"meta_read", "edge_write", "meta_write", "jobs_send"}, function
    # Reads never write objects; no route deletes blob bytes (deletes only unlink, GC reclaims).
    for function in ("blob-get", "manifest-get", "tags-list", "catalog", "referrers", "api-images", "api-artifacts", "api-tags"):
        assert not {"blob_write", "staging_write", "staging_cleanup"} & set(grants[function]), function
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
    assert secrets == {"BERTH_UPLOAD_TOKEN_KEY": ssm_arn("berth/upload-token-key"), "BERTH_TOKEN_SIGNING_KEY": ssm_arn("berth/token-signing-key")}
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
    assert sorted(readable) == sorted(secrets.values()) and len(readable) == 4
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


# ---- 4. variables and outputs ----------------------------------------------------------------


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
    assert {"registry_url", "upload_gateway_url", "bucket_name", "table_name", "queue_url", "function_names"} <= set(outputs)
    for name, body in outputs.items():
        assert len(unquote(body.get("description", "")).strip()) > 10, f"output {name} has no description"
