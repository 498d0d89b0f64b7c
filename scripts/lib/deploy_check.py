#!/usr/bin/env python3
"""Offline validation of Ferry's deploy/ tree (run by scripts/validate-deploy).

Renders every kustomization (deploy/k8s/base and each deploy/k8s/overlays/*) with
`kubectl kustomize` and checks, without any network:

* every rendered object against JSON schemas: Kubernetes kinds with the schemas shipped in
  the `kubernetes-validate` wheel (strict: unknown fields fail), for each Kubernetes version
  asked; custom resources (Istio, Linkerd) with deploy/schemas/<group>_<version>_<Kind>.json.
  A kind with neither is an error, never a silent skip;
* references inside each rendering: Service selectors and target ports, HPA/PDB targets,
  probes and ConfigMap references, FERRY_* variables declared by the binaries, container
  commands built by deploy/Dockerfile, mesh objects naming existing Services and ports;
* the mesh retry policy: deploy/grpc-methods.tsv classifies every RPC in proto/ (read,
  read-stream, write); each VirtualService and ServiceProfile is evaluated for every RPC
  with first-match semantics, and must retry exactly the `read` ones;
* the Grafana dashboard: every query parses as PromQL (promql-parser), and every metric (and
  label) it uses is one the source registers, with the exporter's suffixes (_total,
  _seconds, _bucket/_sum/_count), and one docs/metrics.md lists;
* docs/metrics.md: its table lists exactly the metrics the source registers, with their type;
* deploy/Dockerfile: the packages it builds exist and it copies exactly their binaries.

`--selftest` copies deploy/ into a temporary directory once per broken fixture (a wrong
field type, an unknown field, a retried write, a metric that does not exist, ...), and
passes only if validation fails on each with the expected message.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
import yaml

try:
    import kubernetes_validate.utils as kv
except ImportError:  # pragma: no cover - reported clearly instead of a traceback
    sys.exit("error: the kubernetes-validate package is missing (scripts/validate-deploy installs it)")

# kubernetes-validate reads the (1.8 MB) definitions file again for every object; read once.
kv.schema_contents = functools.lru_cache(maxsize=None)(kv.schema_contents)

# libyaml's parser when the PyYAML wheel has it (10x faster than the pure-Python one).
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

DEFAULT_K8S_VERSIONS = ("1.29.0", "1.37.0")
# Labels Prometheus adds to every series when scraping Kubernetes pods, usable in queries.
TARGET_LABELS = {"namespace", "pod", "instance", "job", "container", "le", "quantile"}
# Env vars the binaries read that are not FERRY_* flags (OpenTelemetry's standard variable).
EXTRA_ENV = {"OTEL_EXPORTER_OTLP_ENDPOINT"}
RPC_CLASSES = {"read", "read-stream", "write"}


# --------------------------------------------------------------------------- reporting


@dataclass
class Report:
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def error(self, where: str, msg: str) -> None:
        self.errors.append(f"{where}: {msg}")

    def note(self, msg: str) -> None:
        self.notes.append(msg)


def obj_id(o: dict) -> str:
    return f"{o.get('kind', '?')}/{(o.get('metadata') or {}).get('name', '?')}"


# --------------------------------------------------------------------------- source facts


@dataclass
class Rpc:
    path: str  # /pkg.Service/Method
    service: str  # pkg.Service
    method: str
    streaming: bool


def parse_protos(repo: Path) -> dict[str, Rpc]:
    """Every RPC of proto/**/*.proto, keyed by its HTTP/2 path."""
    rpcs: dict[str, Rpc] = {}
    for proto in sorted((repo / "proto").rglob("*.proto")):
        text = re.sub(r"//[^\n]*", "", proto.read_text())
        pkg = re.search(r"^\s*package\s+([\w.]+)\s*;", text, re.M)
        if not pkg:
            continue
        for svc in re.finditer(r"\bservice\s+(\w+)\s*\{(.*?)\n\}", text, re.S):
            full = f"{pkg.group(1)}.{svc.group(1)}"
            for rpc in re.finditer(
                r"\brpc\s+(\w+)\s*\(\s*(stream\s+)?[\w.]+\s*\)\s*returns\s*\(\s*(stream\s+)?",
                svc.group(2),
            ):
                path = f"/{full}/{rpc.group(1)}"
                rpcs[path] = Rpc(path, full, rpc.group(1), bool(rpc.group(2) or rpc.group(3)))
    return rpcs


def host_of_service(service: str) -> str:
    """ferry.metadata_sync.v1.MigrationTaskService -> ferry-metadata-sync (one binary each)."""
    return "ferry-" + service.split(".")[1].replace("_", "-")


def rust_sources(repo: Path) -> list[tuple[Path, str]]:
    out = []
    for path in sorted((repo / "services").glob("*/src/**/*.rs")):
        text = path.read_text()
        # Registrations inside unit tests are not exported by a running service.
        cut = text.find("#[cfg(test)]")
        text = text if cut < 0 else text[:cut]
        # Nor are doc examples (`//! let scans = metrics::register("ferry_example_scans", ...)`).
        text = "\n".join("" if ln.lstrip().startswith("//") else ln for ln in text.split("\n"))
        out.append((path, text))
    return out


def declared_env(repo: Path) -> set[str]:
    """Every FERRY_* variable a binary reads: clap `env = "FERRY_..."` attributes and the
    constants passed to std::env::var (e.g. services/server's FERRY_TLS_* settings)."""
    names = set(EXTRA_ENV)
    for _, text in rust_sources(repo):
        names.update(re.findall(r'"(FERRY_[A-Z0-9_]+)"', text))
    return names


def _call_args(text: str, start: int) -> str:
    """The text of a call's arguments, from just after its '(' to the matching ')'."""
    depth, i = 1, start
    while i < len(text) and depth:
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        i += 1
    return text[start : i - 1]


@dataclass
class Registration:
    """One metric family registered in the source."""
    base: str  # the name passed to the registration, without suffixes
    kind: str  # counter, gauge, histogram, or "" when the source does not say
    names: list[str]  # the sample names a scrape shows (the kind's suffixes added)
    file: str


def registrations(repo: Path) -> tuple[list[Registration], set[str]]:
    """Every metric family the source registers, and the label names they carry.

    Ferry registers prometheus-client metrics through ferry_telemetry::metrics without their
    type suffix: counters are exported as <name>_total, latency families (seconds) as
    <name>_seconds_bucket/_sum/_count, gauges as <name>.
    """
    regs: list[Registration] = []
    labels: set[str] = set()
    hist = ("_bucket", "_sum", "_count")
    for path, text in rust_sources(repo):
        rel = str(path.relative_to(repo))
        for m in re.finditer(
            r"\b(counter_family|latency_family|register_with_unit|register)\s*(?:::<[^(]*>)?\(",
            text,
        ):
            args = _call_args(text, m.end())
            lit = re.match(r'\s*"(ferry_[a-z0-9_]+)"', args)
            if not lit:
                continue
            base, fn = lit.group(1), m.group(1)
            kind = ""
            if fn == "counter_family":
                kind, found = "counter", [base + "_total"]
            elif fn == "latency_family":
                kind, found = "histogram", [base + "_seconds" + s for s in hist]
            elif fn == "register_with_unit":
                unit = "_seconds" if "Unit::Seconds" in args else ""
                stem = base + unit
                if "Histogram" in args:
                    kind, found = "histogram", [stem + s for s in hist]
                else:
                    found = [stem, stem + "_total"]
            elif "Counter" in args:
                kind, found = "counter", [base + "_total"]
            elif "Histogram" in args:
                kind, found = "histogram", [base + s for s in hist]
            elif "Gauge" in args:
                kind, found = "gauge", [base]
            elif "Family::default()" in args:
                # The family's metric type is in the field's declared type, not in the call:
                # `fail_static: Family<CauseLabel, Gauge>` ... `fail_static: metrics::register(`.
                field_ = re.search(r"(\w+)\s*:\s*[\w:]*$", text[: m.start()])
                decl = field_ and re.search(rf"\b{field_.group(1)}\s*:\s*Family<([^>]*)>", text)
                # The metric type is the last parameter (before a constructor), maybe an alias
                # such as `type FloatGauge = Gauge<f64, AtomicU64>`.
                mtype = decl.group(1).split(",")[1].strip() if decl and "," in decl.group(1) else ""
                kind = next((k.lower() for k in ("Counter", "Gauge", "Histogram") if mtype.endswith(k)), "")
                found = ([base + "_total"] if kind == "counter"
                         else [base + s for s in hist] if kind == "histogram"
                         else [base] if kind == "gauge" else [base, base + "_total"])
            else:
                found = [base]
            regs.append(Registration(base, kind, found, rel))
        if "EncodeLabelSet" in text:
            for s_ in re.finditer(r"derive\([^)]*EncodeLabelSet[^)]*\)\]\s*(?:pub\s+)?struct\s+\w+\s*\{(.*?)\}", text, re.S):
                labels.update(re.findall(r"(?:pub\s+)?(\w+)\s*:", s_.group(1)))
    return regs, labels


def exported_metrics(repo: Path) -> tuple[dict[str, str], set[str]]:
    """Metric names a scrape shows (name -> source file) and the label names they carry."""
    regs, labels = registrations(repo)
    names: dict[str, str] = {}
    for r in regs:
        for n in r.names:
            names.setdefault(n, r.file)
    return names, labels


METRICS_DOC = "docs/metrics.md"
METRICS_DOC_SECTION = "## Every metric"
HIST_SUFFIXES = ("_bucket", "_sum", "_count")


def documented_metrics(doc: Path, rep: Report) -> dict[str, str]:
    """The table of docs/metrics.md's "Every metric" section: name -> type. Names are as a
    scrape shows them (counters with _total, histograms by base name)."""
    try:
        text = doc.read_text()
    except OSError as e:
        rep.error(METRICS_DOC, f"not readable ({e}): every metric must be documented there")
        return {}
    lines = text.splitlines()
    try:
        start = next(i for i, ln in enumerate(lines) if ln.rstrip() == METRICS_DOC_SECTION)
    except StopIteration:
        rep.error(METRICS_DOC, f"no {METRICS_DOC_SECTION!r} section (the table the checks and the scrape tests read)")
        return {}
    out: dict[str, str] = {}
    for ln in lines[start + 1 :]:
        if ln.startswith("## "):
            break
        if not ln.startswith("| `ferry_"):
            continue
        cells = [c.strip() for c in ln.split("|")]
        name, kind = cells[1].strip("`"), cells[2] if len(cells) > 2 else ""
        if kind not in ("counter", "gauge", "histogram"):
            rep.error(METRICS_DOC, f"{name}: type {kind!r} is not counter, gauge or histogram")
        if name in out:
            rep.error(METRICS_DOC, f"{name} is listed twice")
        out[name] = kind
    if not out:
        rep.error(METRICS_DOC, f"found no metric rows in {METRICS_DOC_SECTION!r}: the checks cannot work")
    return out


def documented_sample_names(documented: dict[str, str]) -> set[str]:
    """Every sample name the documented metrics show (histograms: _bucket/_sum/_count)."""
    out = set()
    for name, kind in documented.items():
        out.update([name + s for s in HIST_SUFFIXES] if kind == "histogram" else [name])
    return out


def check_metrics_doc(repo: Path, doc: Path, rep: Report) -> int:
    """docs/metrics.md lists exactly the metric families the source registers."""
    documented = documented_metrics(doc, rep)
    if not documented:
        return 0
    regs, _ = registrations(repo)
    # A row covers its name with any type's suffixes: a wrong type is reported as such below.
    covered = {name + s for name in documented for s in ("",) + HIST_SUFFIXES}
    by_name = {n: r for r in regs for n in r.names}
    for r in regs:
        if not any(n in covered for n in r.names):
            shown = r.names[0] if r.kind != "histogram" else r.names[0].removesuffix("_bucket")
            rep.error(METRICS_DOC, f"{shown} ({r.file}) is registered but not listed: add a row to its table")
    for name, kind in documented.items():
        reg = by_name.get(name) or by_name.get(name + "_count")
        if reg is None:
            rep.error(METRICS_DOC, f"lists {name}, which no service registers (renamed or removed?)")
        elif reg.kind and kind in ("counter", "gauge", "histogram") and reg.kind != kind:
            rep.error(METRICS_DOC, f"lists {name} as a {kind}, but {reg.file} registers a {reg.kind}")
    return len(documented)


def cargo_bins(repo: Path) -> dict[str, list[str]]:
    """Workspace package name -> its [[bin]] names."""
    out: dict[str, list[str]] = {}
    for manifest in sorted((repo / "services").glob("*/Cargo.toml")):
        text = manifest.read_text()
        pkg = re.search(r'^\[package\]\s*\nname\s*=\s*"([^"]+)"', text, re.M)
        if pkg:
            out[pkg.group(1)] = re.findall(r'^\[\[bin\]\]\s*\nname\s*=\s*"([^"]+)"', text, re.M)
    return out


# --------------------------------------------------------------------------- global checks


def load_rpc_classes(deploy: Path, rpcs: dict[str, Rpc], rep: Report) -> dict[str, str]:
    where = "deploy/grpc-methods.tsv"
    classes: dict[str, str] = {}
    path = deploy / "grpc-methods.tsv"
    if not path.exists():
        rep.error(where, "missing: every RPC must be classified read / read-stream / write")
        return classes
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) < 3 or not cols[2].strip():
            rep.error(f"{where}:{n}", "expected <package.Service/Method> TAB <class> TAB <why>")
            continue
        method, cls = "/" + cols[0].strip().lstrip("/"), cols[1].strip()
        if cls not in RPC_CLASSES:
            rep.error(f"{where}:{n}", f"class {cls!r} is not one of {sorted(RPC_CLASSES)}")
        if method in classes:
            rep.error(f"{where}:{n}", f"{method} is listed twice")
        classes[method] = cls
    for path_, rpc in rpcs.items():
        if path_ not in classes:
            rep.error(where, f"{path_[1:]} (in proto/) is not classified: add it as read, read-stream or write")
        elif rpc.streaming and classes[path_] == "read":
            rep.error(where, f"{path_[1:]} streams: classify it read-stream (streams are never retried)")
    for path_ in classes:
        if path_ not in rpcs:
            rep.error(where, f"{path_[1:]} is listed but no proto/ file declares it")
    return classes


def check_dashboard(deploy: Path, repo: Path, rep: Report, doc: Path) -> int:
    where = "deploy/grafana/ferry-dashboard.json"
    try:
        dash = json.loads((deploy / "grafana" / "ferry-dashboard.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        rep.error(where, f"not readable JSON: {e}")
        return 0
    metrics, labels = exported_metrics(repo)
    # Reported by check_metrics_doc when the document itself is broken.
    documented = documented_sample_names(documented_metrics(doc, Report()))
    if not metrics:
        rep.error(where, "found no metric registrations under services/*/src: the drift check cannot work")
    allowed_labels = labels | TARGET_LABELS
    exprs: list[tuple[str, str]] = []
    ids: set[int] = set()

    def walk(panels: list) -> None:
        for p in panels:
            pid = p.get("id")
            if pid in ids:
                rep.error(where, f"panel id {pid} is used twice")
            ids.add(pid)
            if p.get("type") != "row":
                if not p.get("targets"):
                    rep.error(where, f"panel {p.get('title')!r} has no query")
                if not p.get("title"):
                    rep.error(where, f"panel {pid} has no title")
            for t in p.get("targets", []):
                exprs.append((f"panel {p.get('title')!r}", t.get("expr", "")))
            walk(p.get("panels", []))

    walk(dash.get("panels", []))
    for var in dash.get("templating", {}).get("list", []):
        q = var.get("query")
        if isinstance(q, dict):
            q = q.get("query", "")
        if var.get("type") == "query":
            exprs.append((f"variable ${var.get('name')}", q or ""))
    if not dash.get("uid") or not dash.get("title"):
        rep.error(where, "dashboard needs a uid and a title")
    try:
        import promql_parser
    except ImportError:
        promql_parser = None
        rep.error(where, "the promql-parser package is missing: queries cannot be syntax-checked")
    used = 0
    for ctx, expr in exprs:
        if not expr.strip():
            rep.error(where, f"{ctx}: empty query")
            continue
        if promql_parser and not ctx.startswith("variable"):
            # Grafana's variables, as Grafana substitutes them before Prometheus sees the query.
            concrete = re.sub(r"\$__(rate_interval|interval|range)\b", "5m", expr)
            concrete = re.sub(r"\$\{?\w+\}?", ".*", concrete)
            try:
                promql_parser.parse(concrete)
            except ValueError as e:
                rep.error(where, f"{ctx}: query does not parse as PromQL ({e}): {expr}")
        for name in sorted(set(re.findall(r"\bferry_[a-z0-9_]+\b", expr))):
            used += 1
            if name not in metrics:
                close = [m for m in metrics if m.startswith(name.rsplit("_", 1)[0])]
                hint = f" (exported names like it: {', '.join(sorted(close)[:4])})" if close else ""
                rep.error(where, f"{ctx}: metric {name} is not exported by any service{hint}")
            elif documented and name not in documented:
                rep.error(where, f"{ctx}: metric {name} is not listed in {METRICS_DOC}: the dashboard uses documented metrics only")
        lbls = set()
        for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
            lbls.update(x.strip() for x in group.split(",") if x.strip())
        for sel in re.findall(r"\{([^{}]*)\}", expr):
            lbls.update(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)\s*\"", sel))
        for lbl in sorted(lbls - allowed_labels):
            rep.error(where, f"{ctx}: label {lbl!r} is carried by no Ferry metric (known: {', '.join(sorted(labels))})")
    return used


def check_dockerfile(deploy: Path, repo: Path, rep: Report) -> set[str]:
    where = "deploy/Dockerfile"
    try:
        text = (deploy / "Dockerfile").read_text()
    except OSError as e:
        rep.error(where, str(e))
        return set()
    joined = re.sub(r"\\\n", " ", text)
    packages = cargo_bins(repo)
    build = re.search(r"cargo build[^\n]*", joined)
    if not build or "--locked" not in build.group(0) or "--release" not in build.group(0):
        rep.error(where, "needs `cargo build --release --locked`")
        return set()
    wanted = re.findall(r"-p\s+([\w-]+)", build.group(0))
    bins: set[str] = set()
    for p in wanted:
        if p not in packages:
            rep.error(where, f"-p {p}: no workspace package of that name (have: {', '.join(sorted(packages))})")
        bins.update(packages.get(p, []))
    copied = set(re.findall(r"target/release/([\w-]+)", joined))
    for b in sorted(bins - copied):
        rep.error(where, f"binary {b} is built but not copied into the image")
    for b in sorted(copied - bins):
        rep.error(where, f"copies target/release/{b}, which the listed packages do not build")
    service_bins = {b for bs in packages.values() for b in bs}
    if not service_bins <= bins:
        rep.error(where, f"does not build every service binary: missing {', '.join(sorted(service_bins - bins))}")
    if not re.search(r"^USER\s+[1-9][0-9]*", text, re.M):
        rep.error(where, "runtime stage must run as a numeric non-root USER (runAsNonRoot)")
    return bins & copied


# --------------------------------------------------------------------------- schemas


@functools.lru_cache(maxsize=None)
def _k8s_validate(obj_json: str, version: str) -> None:
    """kubernetes-validate, strict; memoized (self-test copies repeat most objects)."""
    kv.validate(json.loads(obj_json), version, strict=True)


class Schemas:
    def __init__(self, deploy: Path, versions: tuple[str, ...]):
        self.dir = deploy / "schemas"
        self.versions = versions
        self.cache: dict[Path, jsonschema.protocols.Validator] = {}

    def crd_file(self, api: str, kind: str) -> Path:
        group, _, version = api.rpartition("/")
        return self.dir / f"{group or 'core'}_{version}_{kind}.json"

    def validate(self, o: dict, where: str, rep: Report) -> str:
        api, kind = o.get("apiVersion"), o.get("kind")
        if not isinstance(api, str) or not isinstance(kind, str):
            rep.error(where, "object without apiVersion/kind")
            return "none"
        crd = self.crd_file(api, kind)
        if crd.exists():
            if crd not in self.cache:
                schema = json.loads(crd.read_text())
                jsonschema.Draft202012Validator.check_schema(schema)
                self.cache[crd] = jsonschema.Draft202012Validator(schema)
            errs = sorted(self.cache[crd].iter_errors(o), key=lambda e: list(e.absolute_path))
            for e in errs:
                path = ".".join(str(p) for p in e.absolute_path) or "(root)"
                rep.error(where, f"{api} {kind} schema ({crd.name}): {path}: {e.message}")
            return f"custom schema {crd.name}"
        for v in self.versions:
            try:
                _k8s_validate(json.dumps(o, sort_keys=True), v)
            except kv.SchemaNotFoundError:
                rep.error(
                    where,
                    f"no schema for {kind} {api}: not a Kubernetes {v} kind, and "
                    f"deploy/schemas/{crd.name} does not exist (write one; objects are never skipped)",
                )
                return "none"
            except kv.ValidationError as e:
                path = ".".join(str(p) for p in e.path) or "(root)"
                rep.error(where, f"Kubernetes {v} schema (strict): {path}: {e.message}")
        return "kubernetes"


# --------------------------------------------------------------------------- reference checks


def labels_match(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def pod_specs(objs: list[dict]) -> list[tuple[dict, dict, dict]]:
    """(workload, pod template labels, pod spec) of every workload."""
    out = []
    for o in objs:
        if o.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            tpl = (o.get("spec") or {}).get("template") or {}
            out.append((o, (tpl.get("metadata") or {}).get("labels") or {}, tpl.get("spec") or {}))
    return out


def container_ports(spec: dict) -> tuple[set, set]:
    names, numbers = set(), set()
    for c in spec.get("containers", []):
        for p in c.get("ports", []) or []:
            numbers.add(p.get("containerPort"))
            if p.get("name"):
                names.add(p["name"])
    return names, numbers


def check_references(objs: list[dict], where: str, rep: Report, env_names: set[str], binaries: set[str]) -> None:
    by_kind: dict[str, dict[str, dict]] = {}
    for o in objs:
        by_kind.setdefault(o.get("kind"), {})[o["metadata"]["name"]] = o
    configmaps = by_kind.get("ConfigMap", {})
    workloads = pod_specs(objs)
    namespaces = set(by_kind.get("Namespace", {}))
    for o in objs:
        ns = o["metadata"].get("namespace")
        if o.get("kind") != "Namespace" and namespaces and ns not in namespaces:
            rep.error(f"{where} {obj_id(o)}", f"namespace {ns!r} is not the rendered Namespace {sorted(namespaces)}")

    for cm in configmaps.values():
        for key in (cm.get("data") or {}):
            if key.startswith("FERRY_") and key not in env_names:
                rep.error(f"{where} {obj_id(cm)}", f"{key} is read by no Ferry binary (declared: env = \"FERRY_...\" in services/)")

    for w, tlabels, spec in workloads:
        wid = f"{where} {obj_id(w)}"
        sel = ((w.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        if not labels_match(sel, tlabels):
            rep.error(wid, f"selector {sel} does not match the pod template labels")
        for c in spec.get("containers", []):
            cid = f"{wid} container {c.get('name')}"
            pnames, pnums = container_ports({"containers": [c]})
            image = c.get("image", "")
            is_ferry = image.split("/")[-1].split(":")[0] == "ferry"
            if is_ferry:
                cmd = (c.get("command") or [None])[0]
                if cmd not in binaries:
                    rep.error(cid, f"command {cmd!r} is not a binary deploy/Dockerfile puts in the image ({', '.join(sorted(binaries))})")
            envs = {}
            for e in c.get("env", []) or []:
                envs[e["name"]] = e.get("value")
                if e["name"].startswith("FERRY_") and e["name"] not in env_names:
                    rep.error(cid, f"env {e['name']} is read by no Ferry binary")
                ref = ((e.get("valueFrom") or {}).get("configMapKeyRef") or {})
                if ref and ref.get("name") not in configmaps:
                    rep.error(cid, f"env {e['name']} refers to ConfigMap {ref.get('name')!r}, which is not rendered")
            for ef in c.get("envFrom", []) or []:
                ref = ef.get("configMapRef")
                if ref and ref.get("name") not in configmaps:
                    rep.error(cid, f"envFrom ConfigMap {ref.get('name')!r} is not rendered")
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                p = c.get(probe)
                if not p:
                    continue
                for action in ("grpc", "tcpSocket", "httpGet"):
                    port = (p.get(action) or {}).get("port")
                    if port is None:
                        continue
                    if (isinstance(port, int) and port not in pnums) or (isinstance(port, str) and port not in pnames):
                        rep.error(cid, f"{probe}.{action}.port {port!r} is not a container port")
            if is_ferry:
                listen = envs.get("FERRY_LISTEN")
                grpc_port = next((p.get("containerPort") for p in c.get("ports", []) if p.get("name") == "grpc"), None)
                if listen is None or grpc_port is None:
                    rep.error(cid, "a Ferry service container needs FERRY_LISTEN and a container port named grpc")
                else:
                    m = re.search(r":(\d+)$", listen)
                    if not m or int(m.group(1)) != grpc_port:
                        rep.error(cid, f"FERRY_LISTEN={listen} does not listen on the grpc container port {grpc_port}")
                    rp = (c.get("readinessProbe") or {}).get("grpc", {}).get("port")
                    if rp != grpc_port:
                        rep.error(cid, f"readinessProbe must be a grpc probe on the gRPC port {grpc_port} (grpc.health.v1)")

    def selected(selector: dict) -> list[tuple[dict, dict, dict]]:
        return [t for t in workloads if labels_match(selector, t[1])]

    for svc in by_kind.get("Service", {}).values():
        sid = f"{where} {obj_id(svc)}"
        sel = (svc.get("spec") or {}).get("selector") or {}
        pods = selected(sel)
        if not pods:
            rep.error(sid, f"selector {sel} selects no pod of any rendered workload")
            continue
        for port in svc["spec"].get("ports", []):
            target = port.get("targetPort", port.get("port"))
            for w, _, spec in pods:
                names, nums = container_ports(spec)
                if (isinstance(target, str) and target not in names) or (isinstance(target, int) and target not in nums):
                    rep.error(sid, f"port {port.get('name')}: targetPort {target!r} is not a port of {obj_id(w)}")

    for hpa in by_kind.get("HorizontalPodAutoscaler", {}).values():
        ref = hpa["spec"]["scaleTargetRef"]
        target = by_kind.get(ref.get("kind"), {}).get(ref.get("name"))
        hid = f"{where} {obj_id(hpa)}"
        if not target:
            rep.error(hid, f"scaleTargetRef {ref.get('kind')}/{ref.get('name')} is not rendered")
            continue
        if "replicas" in target.get("spec", {}):
            rep.error(hid, f"{obj_id(target)} sets spec.replicas: every apply would fight the autoscaler")
        uses_cpu = any((m.get("resource") or {}).get("name") == "cpu" for m in hpa["spec"].get("metrics", []))
        if uses_cpu:
            for c in target["spec"]["template"]["spec"]["containers"]:
                if not ((c.get("resources") or {}).get("requests") or {}).get("cpu"):
                    rep.error(hid, f"CPU utilization needs a cpu request on container {c.get('name')}")
    for pdb in by_kind.get("PodDisruptionBudget", {}).values():
        sel = (pdb["spec"].get("selector") or {}).get("matchLabels") or {}
        if not selected(sel):
            rep.error(f"{where} {obj_id(pdb)}", f"selector {sel} selects no pod")

    services = by_kind.get("Service", {})

    def svc_ports(host: str) -> set | None:
        s = services.get(host.split(".")[0])
        return None if s is None else {p.get("port") for p in s["spec"].get("ports", [])}

    for vs in by_kind.get("VirtualService", {}).values():
        vid = f"{where} {obj_id(vs)}"
        for host in vs["spec"].get("hosts", []):
            if svc_ports(host) is None:
                rep.error(vid, f"host {host} is not a rendered Service")
        for route in vs["spec"].get("http", []) or []:
            for dest in route.get("route", []):
                d = dest.get("destination", {})
                ports = svc_ports(d.get("host", ""))
                if ports is None:
                    rep.error(vid, f"route {route.get('name')}: destination {d.get('host')} is not a rendered Service")
                elif d.get("port") and d["port"].get("number") not in ports:
                    rep.error(vid, f"route {route.get('name')}: port {d['port'].get('number')} is not a port of Service {d.get('host')}")
    for dr in by_kind.get("DestinationRule", {}).values():
        if svc_ports(dr["spec"].get("host", "")) is None:
            rep.error(f"{where} {obj_id(dr)}", f"host {dr['spec'].get('host')} is not a rendered Service")
    for pa in by_kind.get("PeerAuthentication", {}).values():
        sel = ((pa.get("spec") or {}).get("selector") or {}).get("matchLabels")
        if sel is None:
            continue
        pods = selected(sel)
        if not pods:
            rep.error(f"{where} {obj_id(pa)}", f"selector {sel} selects no pod")
        for port in (pa["spec"].get("portLevelMtls") or {}):
            for w, _, spec in pods:
                if int(port) not in container_ports(spec)[1]:
                    rep.error(f"{where} {obj_id(pa)}", f"portLevelMtls {port} is not a container port of {obj_id(w)}")
    for sp in by_kind.get("ServiceProfile", {}).values():
        name, ns = sp["metadata"]["name"], sp["metadata"].get("namespace")
        m = re.match(r"^([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local$", name)
        if not m or m.group(1) not in services or m.group(2) != ns:
            rep.error(f"{where} {obj_id(sp)}", f"must be named <service>.{ns}.svc.cluster.local after a rendered Service")


# --------------------------------------------------------------------------- retry policy


def _istio_match(match: dict, path: str) -> bool:
    uri = match.get("uri")
    if set(match) - {"uri", "name"}:
        return False  # header/port/... conditions: never assume they hold for every call
    if uri is None:
        return True
    if "exact" in uri:
        return path == uri["exact"]
    if "prefix" in uri:
        return path.startswith(uri["prefix"])
    if "regex" in uri:
        return re.fullmatch(uri["regex"], path) is not None
    return False


def _linkerd_cond(cond: dict, path: str) -> bool:
    ok = True
    if "method" in cond:
        ok &= cond["method"] == "POST"
    if "pathRegex" in cond:
        ok &= re.fullmatch(cond["pathRegex"], path) is not None
    if "all" in cond:
        ok &= all(_linkerd_cond(c, path) for c in cond["all"])
    if "any" in cond:
        ok &= any(_linkerd_cond(c, path) for c in cond["any"])
    if "not" in cond:
        ok &= not _linkerd_cond(cond["not"], path)
    return ok


def check_retry_policy(objs: list[dict], where: str, rep: Report, rpcs: dict[str, Rpc], classes: dict[str, str]) -> int:
    grpc_hosts: dict[str, list[Rpc]] = {}
    for rpc in rpcs.values():
        grpc_hosts.setdefault(host_of_service(rpc.service), []).append(rpc)
    vss = {o["spec"]["hosts"][0].split(".")[0]: o for o in objs if o.get("kind") == "VirtualService" and o["spec"].get("hosts")}
    sps = {o["metadata"]["name"].split(".")[0]: o for o in objs if o.get("kind") == "ServiceProfile"}
    checked = 0
    if vss:
        for host, methods in sorted(grpc_hosts.items()):
            vs = vss.get(host)
            if vs is None:
                rep.error(where, f"no VirtualService for gRPC Service {host}: Istio's default retries (2, also for writes) would apply")
                continue
            vid = f"{where} {obj_id(vs)}"
            for rpc in methods:
                cls = classes.get(rpc.path)
                route = next(
                    (r for r in vs["spec"].get("http", []) if not r.get("match") or any(_istio_match(m, rpc.path) for m in r["match"])),
                    None,
                )
                checked += 1
                if route is None:
                    rep.error(vid, f"{rpc.path} matches no route: the call would fail with 404")
                    continue
                rname = route.get("name", "?")
                if "retries" not in route:
                    rep.error(vid, f"route {rname} ({rpc.path}) sets no retries: Istio's default retries (2) would apply; write `retries: {{attempts: 0}}` or retry reads only")
                    continue
                attempts = route["retries"].get("attempts", 0)
                if cls == "read" and attempts < 1:
                    rep.error(vid, f"{rpc.path} is an idempotent read but route {rname} does not retry it")
                if cls != "read" and attempts > 0:
                    rep.error(vid, f"{rpc.path} is {cls} (deploy/grpc-methods.tsv) but route {rname} retries it {attempts}x: only reads may be retried")
    if sps:
        for host, methods in sorted(grpc_hosts.items()):
            sp = sps.get(host)
            if sp is None:
                rep.error(where, f"no ServiceProfile for gRPC Service {host}")
                continue
            sid = f"{where} {obj_id(sp)}"
            for r in sp["spec"].get("routes", []):
                if "timeout" not in r:
                    rep.error(sid, f"route {r.get('name')} has no timeout: Linkerd would cut it at 10 s")
            for rpc in methods:
                cls = classes.get(rpc.path)
                route = next((r for r in sp["spec"].get("routes", []) if _linkerd_cond(r.get("condition", {}), rpc.path)), None)
                checked += 1
                if route is None:
                    rep.error(sid, f"{rpc.path} matches no route (every RPC gets one: per-RPC metrics and an explicit timeout)")
                    continue
                retryable = bool(route.get("isRetryable"))
                if cls == "read" and not retryable:
                    rep.error(sid, f"{rpc.path} is an idempotent read but route {route.get('name')} is not isRetryable")
                if cls != "read" and retryable:
                    rep.error(sid, f"{rpc.path} is {cls} (deploy/grpc-methods.tsv) but route {route.get('name')} is isRetryable: only reads may be retried")
    return checked


# --------------------------------------------------------------------------- generator

LINKERD_TIMEOUTS = {"read": "60s", "read-stream": "30m", "write": "10m"}
LINKERD_HEADER = """\
# One ServiceProfile per Ferry gRPC service: one route per RPC (per-RPC metrics in Linkerd).
# GENERATED from deploy/grpc-methods.tsv by `scripts/validate-deploy --write-linkerd-profiles`;
# scripts/validate-deploy proves it against that file.
#   isRetryable: true   only on `read` calls (idempotent, no side effect)
#   no isRetryable      on every `write` and streaming call: Linkerd never retries them
# Every route names a timeout: a ServiceProfile route without one is cut at Linkerd's 10 s
# default, which would kill long scans and exports.
# The names are <service>.<namespace>.svc.cluster.local: change them with the namespace.
"""


def linkerd_profiles(repo: Path, deploy: Path, namespace: str = "ferry") -> str:
    rep = Report()
    rpcs = parse_protos(repo)
    classes = load_rpc_classes(deploy, rpcs, rep)
    if rep.errors:
        raise SystemExit("\n".join(f"error: {e}" for e in rep.errors))
    hosts: dict[str, list[Rpc]] = {}
    for rpc in rpcs.values():
        hosts.setdefault(host_of_service(rpc.service), []).append(rpc)
    docs = []
    for host in sorted(hosts):
        routes = []
        for rpc in hosts[host]:
            cls = classes[rpc.path]
            r = (f"    - name: {rpc.service.split('.')[-1]}/{rpc.method}\n"
                 f"      condition:\n        method: POST\n"
                 f"        pathRegex: /{re.escape(rpc.service)}/{rpc.method}\n"
                 f"      timeout: {LINKERD_TIMEOUTS[cls]}\n")
            if cls == "read":
                r += "      isRetryable: true\n"
            routes.append(r)
        docs.append(
            "apiVersion: linkerd.io/v1alpha2\nkind: ServiceProfile\nmetadata:\n"
            f"  name: {host}.{namespace}.svc.cluster.local\nspec:\n  routes:\n" + "".join(routes)
            + "  # Retries may add at most 20% load on top of the original requests (plus 10/s).\n"
            "  retryBudget:\n    retryRatio: 0.2\n    minRetriesPerSecond: 10\n    ttl: 10s\n"
        )
    return LINKERD_HEADER + "---\n".join(docs)


# --------------------------------------------------------------------------- driver


def kustomizations(deploy: Path) -> list[Path]:
    k8s = deploy / "k8s"
    dirs = [k8s / "base"] + sorted(p for p in (k8s / "overlays").iterdir() if p.is_dir())
    return dirs


_RENDERED: dict[tuple[str, str], tuple[str | None, str]] = {}


def tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def render(kubectl: str, kdir: Path, key: tuple[str, str]) -> tuple[str | None, str]:
    """`kubectl kustomize kdir`, memoized on (content of the whole k8s/ tree, kustomization):
    overlays read the base, and self-test copies that did not touch k8s/ need no new render."""
    if key not in _RENDERED:
        env = dict(os.environ, KUBECONFIG=os.devnull)
        res = subprocess.run([kubectl, "kustomize", str(kdir)], capture_output=True, text=True, env=env)
        _RENDERED[key] = (None, res.stderr.strip()) if res.returncode != 0 else (res.stdout, "")
    return _RENDERED[key]


def validate(repo: Path, deploy: Path, kubectl: str, versions: tuple[str, ...],
             metrics_doc: Path | None = None) -> Report:
    rep = Report()
    doc = metrics_doc or repo / METRICS_DOC
    rpcs = parse_protos(repo)
    if not rpcs:
        rep.error("proto/", "found no RPCs: the retry-policy check cannot work")
    classes = load_rpc_classes(deploy, rpcs, rep)
    env_names = declared_env(repo)
    binaries = check_dockerfile(deploy, repo, rep)
    before = len(rep.errors)
    n_documented = check_metrics_doc(repo, doc, rep)
    if len(rep.errors) == before:
        rep.note(f"{METRICS_DOC}: {n_documented} metrics, exactly the ones the source registers")
    before = len(rep.errors)
    n_metrics = check_dashboard(deploy, repo, rep, doc)
    if len(rep.errors) == before:
        rep.note(f"grafana: {n_metrics} metric references, every one exported by the source and documented")
    profiles = deploy / "k8s" / "overlays" / "linkerd" / "service-profiles.yaml"
    if profiles.exists() and not any("grpc-methods.tsv" in e for e in rep.errors):
        if profiles.read_text() != linkerd_profiles(repo, deploy):
            rep.error(str(profiles.relative_to(deploy)),
                      "differs from what deploy/grpc-methods.tsv generates: run scripts/validate-deploy --write-linkerd-profiles")
    schemas = Schemas(deploy, versions)
    digest = tree_digest(deploy / "k8s")
    for kdir in kustomizations(deploy):
        name = str(kdir.relative_to(deploy))
        if not (kdir / "kustomization.yaml").exists():
            rep.error(name, "no kustomization.yaml")
            continue
        text, err = render(kubectl, kdir, (digest, name))
        if text is None:
            rep.error(name, f"kustomize could not render it:\n    {err}")
            continue
        try:
            objs = [o for o in yaml.load_all(text, Loader=YAML_LOADER) if o]
        except yaml.YAMLError as e:
            rep.error(name, f"rendered YAML does not parse: {e}")
            continue
        kinds: dict[str, int] = {}
        sound = []  # objects that passed their schema: only these get the reference checks
        for o in objs:
            before = len(rep.errors)
            how = schemas.validate(o, f"{name} {obj_id(o)}", rep)
            kinds[how] = kinds.get(how, 0) + 1
            if len(rep.errors) == before:
                sound.append(o)
        checked = 0
        try:
            check_references(sound, name, rep, env_names, binaries)
            checked = check_retry_policy(sound, name, rep, rpcs, classes)
        except (KeyError, TypeError, AttributeError, IndexError, ValueError, re.error) as e:
            # A malformed object (already reported by its schema, usually) stops these checks.
            rep.error(name, f"reference/retry checks stopped at a malformed object ({type(e).__name__}: {e})")
        detail = ", ".join(f"{n} by {k}" for k, n in sorted(kinds.items()))
        extra = f"; retry policy proven for {checked} route decisions" if checked else ""
        rep.note(f"{name}: {len(objs)} objects ({detail}){extra}")
    return rep


# Broken fixtures for --selftest: (name, file under deploy/, text to find, replacement, expected
# error substring). Each is applied to a fresh copy; the find text must occur (exactly once,
# unless the name says "first"), so a fixture can never silently stop breaking anything.
SELFTESTS = [
    ("field of the wrong type", "k8s/base/router.yaml",
     "containerPort: 9876", 'containerPort: "9876"', "containerPort"),
    ("unknown field (strict schema)", "k8s/base/scanner.yaml",
     "  revisionHistoryLimit: 5", "  revisionHistoryLimt: 5", "revisionHistoryLimt"),
    ("CRD field typo (Istio schema) (first)", "k8s/overlays/istio/virtual-services.yaml",
     "perTryTimeout: 30s", "perTryTimout: 30s", "perTryTimout"),
    ("Istio retries a write", "k8s/overlays/istio/virtual-services.yaml",
     "            prefix: /ferry.metadata_sync.v1.MigrationTaskService/Get\n",
     "            prefix: /ferry.metadata_sync.v1.MigrationTaskService/Get\n"
     "        - uri:\n            prefix: /ferry.metadata_sync.v1.MigrationTaskService/Advance\n",
     "AdvanceTopics is write"),
    ("Istio route left on default retries (first)", "k8s/overlays/istio/virtual-services.yaml",
     "      retries:\n        attempts: 0\n", "", "default retries"),
    ("Linkerd marks a write retryable", "k8s/overlays/linkerd/service-profiles.yaml",
     "pathRegex: /ferry\\.scanner\\.v1\\.ScannerService/Scan\n      timeout: 10m\n",
     "pathRegex: /ferry\\.scanner\\.v1\\.ScannerService/Scan\n      timeout: 10m\n      isRetryable: true\n",
     "ScannerService/Scan is write"),
    ("dashboard metric that does not exist (first)", "grafana/ferry-dashboard.json",
     "rate(ferry_router_cache_misses_total", "rate(ferry_router_cache_miss_total", "ferry_router_cache_miss_total"),
    ("dashboard label that does not exist (first)", "grafana/ferry-dashboard.json",
     "sum by (service, method)", "sum by (service, rpc)", "label 'rpc'"),
    ("dashboard metric missing from docs/metrics.md", "../docs/metrics.md",
     "| `ferry_router_presence_clients` |", "| `ferry_router_presence_clientz` |",
     "metric ferry_router_presence_clients is not listed in docs/metrics.md"),
    ("docs/metrics.md lists a metric nothing registers", "../docs/metrics.md",
     "| `ferry_router_presence_clients` |", "| `ferry_router_presence_clientz` |",
     "lists ferry_router_presence_clientz, which no service registers"),
    ("registered metric missing from docs/metrics.md", "../docs/metrics.md",
     "| `ferry_grpc_serving` | gauge |", "| `ferry_grpc_servin` | gauge |",
     "ferry_grpc_serving (services/telemetry/src/metrics.rs) is registered but not listed"),
    ("docs/metrics.md gives the wrong type", "../docs/metrics.md",
     "| `ferry_router_fail_static` | gauge |", "| `ferry_router_fail_static` | histogram |",
     "lists ferry_router_fail_static as a histogram"),
    ("dashboard query that is not PromQL (first)", "grafana/ferry-dashboard.json",
     "sum by (service, method) (rate(", "sum by (service, method) (rate((", "does not parse as PromQL"),
    ("kustomization names a missing file", "k8s/base/kustomization.yaml",
     "  - health-check.yaml", "  - health-checks.yaml", "kustomize could not render"),
    ("custom resource without a schema", "k8s/overlays/linkerd/kustomization.yaml",
     "  - service-profiles.yaml\n", "  - service-profiles.yaml\n  - server.yaml\n", "no schema for Server"),
    ("Service selecting no pod", "k8s/base/health-check.yaml",
     "  selector:\n    app.kubernetes.io/name: ferry-health-check\n",
     "  selector:\n    app.kubernetes.io/name: ferry-healthcheck\n", "selects no pod"),
    ("FERRY_* variable no binary reads", "k8s/base/ferry.env",
     "FERRY_LOG=info", "FERRY_LOGS=info", "FERRY_LOGS"),
    ("listen port and gRPC port disagree", "k8s/base/scanner.yaml",
     'value: "0.0.0.0:7071"', 'value: "0.0.0.0:7075"', "FERRY_LISTEN=0.0.0.0:7075"),
    ("RPC missing from the classification", "grpc-methods.tsv",
     "ferry.scanner.v1.ScannerService/GetTemplate\tread\treturns a fixed template\n", "",
     "GetTemplate (in proto/) is not classified"),
    ("image without a binary the manifests run", "Dockerfile",
     " -p ferry-health-check", "", "'ferry-health-check' is not a binary"),
]

EXTRA_FILES = {
    "k8s/overlays/linkerd/server.yaml": "apiVersion: policy.linkerd.io/v1beta3\nkind: Server\n"
    "metadata:\n  name: ferry-router-namesrv\nspec:\n  podSelector:\n    matchLabels:\n"
    "      app.kubernetes.io/name: ferry-router\n  port: namesrv\n  proxyProtocol: opaque\n",
}


def run_case(args: tuple) -> tuple[bool, str]:
    """One broken fixture: (caught?, what to print)."""
    (name, rel, old, new, expect), repo, deploy, kubectl, versions, tmp, i = args
    copy = Path(tmp) / f"case{i:02d}"
    shutil.copytree(deploy, copy)
    metrics_doc = None
    if rel.startswith("../"):
        # A file outside deploy/ (docs/metrics.md): broken in a copy of its own.
        metrics_doc = Path(tmp) / f"case{i:02d}-{Path(rel).name}"
        shutil.copyfile(repo / rel[3:], metrics_doc)
        target = metrics_doc
    else:
        target = copy / rel
    text = target.read_text()
    count = text.count(old)
    if count == 0 or (count > 1 and "(first)" not in name):
        return False, f"  FIXTURE BROKEN  {name}: {old!r} occurs {count}x in {rel}"
    target.write_text(text.replace(old, new, 1))
    for extra, body in EXTRA_FILES.items():
        if extra.split("/")[-1] in new:
            (copy / extra).write_text(body)
    rep = validate(repo, copy, kubectl, versions, metrics_doc)
    hit = [e for e in rep.errors if expect in e]
    if hit:
        return True, f"  fails as expected  {name}\n      {hit[0].splitlines()[0][:200]}"
    got = "\n      ".join(rep.errors[:5]) or "(validation passed)"
    return False, f"  NOT CAUGHT  {name}: expected an error containing {expect!r}; got:\n      {got}"


def selftest(repo: Path, deploy: Path, kubectl: str, versions: tuple[str, ...]) -> int:
    failures = 0
    with tempfile.TemporaryDirectory(prefix="ferry-deploy-selftest-") as tmp:
        jobs = [(case, repo, deploy, kubectl, versions, tmp, i) for i, case in enumerate(SELFTESTS)]
        workers = max(1, min(len(jobs), os.cpu_count() or 1))
        with concurrent.futures.ProcessPoolExecutor(max_workers=workers) as pool:
            for caught, line in pool.map(run_case, jobs):
                print(line)
                failures += not caught
    return failures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repo", type=Path, required=True, help="repository root")
    ap.add_argument("--deploy", type=Path, help="deploy/ directory (default: <repo>/deploy)")
    ap.add_argument("--kubectl", required=True, help="kubectl binary (its built-in kustomize renders)")
    ap.add_argument("--k8s-versions", default=",".join(DEFAULT_K8S_VERSIONS),
                    help="Kubernetes versions to validate against, comma-separated (default %(default)s)")
    ap.add_argument("--selftest", action="store_true", help="check that broken fixtures fail, instead of validating")
    ap.add_argument("--write-linkerd-profiles", action="store_true",
                    help="regenerate k8s/overlays/linkerd/service-profiles.yaml from grpc-methods.tsv")
    args = ap.parse_args()
    repo = args.repo.resolve()
    deploy = (args.deploy or repo / "deploy").resolve()
    versions = tuple(v.strip() for v in args.k8s_versions.split(",") if v.strip())
    started = time.monotonic()
    if args.write_linkerd_profiles:
        out = deploy / "k8s" / "overlays" / "linkerd" / "service-profiles.yaml"
        out.write_text(linkerd_profiles(repo, deploy))
        print(f"wrote {out}")
        return 0
    if args.selftest:
        failures = selftest(repo, deploy, args.kubectl, versions)
        took = time.monotonic() - started
        if failures:
            print(f"selftest: {failures} of {len(SELFTESTS)} broken fixtures were not caught ({took:.1f}s)")
            return 1
        print(f"selftest: all {len(SELFTESTS)} broken fixtures fail validation as expected ({took:.1f}s)")
        return 0
    rep = validate(repo, deploy, args.kubectl, versions)
    for n in rep.notes:
        print(f"  {n}")
    sys.stdout.flush()
    took = time.monotonic() - started
    if rep.errors:
        for e in rep.errors:
            print(f"error: {e}", file=sys.stderr)
        print(f"deploy/ is INVALID: {len(rep.errors)} problem(s) ({took:.1f}s)", file=sys.stderr)
        return 1
    print(f"deploy/ is valid against Kubernetes {', '.join(versions)} and its custom-resource schemas ({took:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
