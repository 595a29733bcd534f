#!/usr/bin/env python3
"""Extract candidate failure lines from the shared read-only fixtures.

Usage (from the repository root):

    python3 scripts/extract_failure_lines.py [FIXTURES_DIR] > candidates.jsonl

FIXTURES_DIR defaults to ``../shared/fixtures`` relative to the repository root.
Prints one JSON object per line: ``{"text": ..., "source": ...}`` where ``source`` is
the fixture path relative to FIXTURES_DIR plus ``:<line>`` or ``#<json key>``.

The output is deterministic: no randomness, no clock, no network.  Format verbs in
tool error strings are replaced by fixed plausible values (see the tables below),
and regular expressions from node-problem-detector rules are turned into one
concrete line each by a small regex walker.  Exact duplicate texts are emitted once
(first by source).  Output is sorted by (source, text).

Standard library only (Python 3.11).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import sys

try:  # Python 3.11+
    import re._parser as sre_parse  # type: ignore[import-not-found]
    import re._constants as sre_c  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - older interpreters
    import sre_parse  # type: ignore[no-redef]
    import sre_constants as sre_c  # type: ignore[no-redef]

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_FIXTURES = os.path.normpath(os.path.join(REPO_ROOT, "..", "shared", "fixtures"))

OUT: list[dict] = []


def emit(text: str, source: str) -> None:
    text = text.rstrip()
    if text.strip():
        OUT.append({"text": text, "source": source})


def read(fx: str, rel: str) -> str:
    with open(os.path.join(fx, rel), encoding="utf-8-sig") as fh:
        return fh.read()


# --------------------------------------------------------------------------- helpers

def go_unquote(body: str) -> str:
    """Decode the escapes of a Go interpreted string literal body."""
    out, i = [], 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            out.append({"n": "\n", "t": "\t", '"': '"', "\\": "\\", "'": "'"}.get(nxt, "\\" + nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def split_args(s: str) -> list[str]:
    """Split the Go call arguments that follow a format literal (``, a, b(c, d))``)."""
    args, cur, depth, i = [], "", 0, 0
    in_str = None
    while i < len(s):
        ch = s[i]
        if in_str:
            cur += ch
            if ch == "\\" and i + 1 < len(s):
                cur += s[i + 1]
                i += 2
                continue
            if ch == in_str:
                in_str = None
        elif ch in "\"'`":
            in_str = ch
            cur += ch
        elif ch in "([{":
            depth += 1
            cur += ch
        elif ch in ")]}":
            if depth == 0:
                break
            depth -= 1
            cur += ch
        elif ch == "," and depth == 0:
            if cur.strip():
                args.append(cur.strip())
            cur = ""
        else:
            cur += ch
        i += 1
    if cur.strip():
        args.append(cur.strip())
    return args


def trim_continued(msg: str) -> str:
    """A literal ending in a space continues on the next source line, which the fixture
    does not carry: keep the complete sentence(s) before the dangling fragment."""
    if not msg.endswith(" "):
        return msg
    cut = max(msg.rfind(". "), msg.rfind("; "))
    if cut > 0:
        return msg[:cut + 1].rstrip(";").rstrip()
    return msg.rstrip()


VERB_RE = re.compile(r"%([+#]?)([sqdvwTbj])")


# --------------------------------------------------------------------------- helm

HELM_PKG = "failure-text/tools/helm/helm_error_strings_pkg.txt"
HELM_GOLDEN = "failure-text/tools/helm/golden-error-outputs"
K8S_EVENTS = "failure-text/k8s_event_reasons.json"

DIGEST_A = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
DIGEST_B = "sha256:60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752"

# Concrete values for Go argument expressions (exact expression -> value).
ARG_VALUES = {
    "ChartfileName": "Chart.yaml",
    "SchemafileName": "values.schema.json",
    "ConfigMediaType": "application/vnd.cncf.helm.config.v1+json",
    "MaxDescriptionLength": "512",
    "PluginArtifactType": "application/vnd.helm.plugin.v1+json",
    "PluginFileName": "plugin.yaml",
    "StatusWatcherStrategy": "watcher",
    "HookOnlyStrategy": "hookOnly",
    "LegacyStrategy": "legacy",
    "strategy": "wait",
    "actual": "other-release",
    "apiVersion": "v2",
    "args[0]": "my-release",
    "c": "2",
    "c.Name": "test",
    "c.Name()": "my-chart",
    "c.Reason": "BackoffLimitExceeded",
    "caFile": "/etc/helm/tls/ca.crt",
    "certFile": "/etc/helm/tls/tls.crt",
    "keyFile": "/etc/helm/tls/tls.key",
    "cdir": "/tmp/charts/my-chart",
    "cf.APIVersion": "v2",
    "cf.Icon": "icon.png",
    "cf.Name": "My_Chart",
    "cf.Version": "1.2",
    "cfg.URL": "charts.example.com/stable",
    "ch.Metadata.Version": "1.0.0",
    "ch.Metadata.KubeVersion": ">=1.29.0-0",
    "caps.KubeVersion.Version": "v1.27.3",
    "chart.APIVersionV3": "v3",
    "chartName": "my-chart",
    "chartName.String()": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
    "chartPath": "charts/postgresql",
    "churl": "https://charts.example.com/stable/postgresql-12.1.6.tgz",
    "client.Client.Transport": "*retry.Transport",
    "containerName": "test",
    "d.Name": "postgresql",
    "d.Repository": "https://charts.example.com/stable",
    "dep.ChartFullPath()": "my-chart/charts/postgresql",
    "dep.Name": "postgresql",
    "dep.Version": "~12.1.0",
    "descLen": "600",
    "descriptor": "{Name:my-plugin Type:cli/v1}",
    "dest": "charts/postgresql-12.1.6.tgz",
    "destPath": "charts",
    "dirName": "my-chart",
    "dirname": "/home/runner/.local/share/helm/plugins/my-plugin",
    "dst": "/tmp/helm-copy/my-chart",
    "event": "install",
    "hook": "pre-install",
    "expected": "my-chart-0.1.0.tgz",
    "ext": ".json",
    "fi.Name()": "big-configmap.yaml",
    "archive.MaxDecompressedFileSize": "5242880",
    "file.path": "my-chart/templates/deployment.yaml",
    "file.Name": "postgresql/Chart.yaml",
    "filename": "index.yaml",
    "files[0].Name()": "stray.txt",
    "tempDir": "/tmp/helm-lint-3120",
    "fname": "my-chart/templates/deployment.yaml",
    "fnName": "http_request",
    "genericResult.Manifest.Digest": DIGEST_A,
    "configDescriptor.Digest": DIGEST_A,
    "chartDescriptor.Digest": DIGEST_A,
    "provDescriptor.Digest": DIGEST_A,
    "pluginDescriptor.Digest": DIGEST_A,
    "provenanceDescriptor.Digest": DIGEST_A,
    "desc.Digest.String()": DIGEST_A,
    "registryReference.Digest": DIGEST_B,
    "registryReference.Tag": "1.2.3",
    "group.name": "my-chart/templates/deployment.yaml",
    "h.Path": "my-chart/templates/db-migrate-job.yaml",
    "header.Name": "my-plugin/bin/link",
    "header.Typeflag": "1010011",
    "helmDriver": "etcd",
    "host": "registry.example.com",
    "i": "0",
    "j": "1",
    "i.ReleaseName": "my-release",
    "i.Source": "oci://ghcr.io/acme/helm-plugins/my-plugin",
    "i.Version": "v9.9.9",
    "i.Repo.Remote()": "https://github.com/acme/helm-my-plugin",
    "info.Mapping.GroupVersionKind.String()": "apps/v1, Kind=Deployment",
    "target.Mapping.GroupVersionKind.String()": "apps/v1, Kind=Deployment",
    "info.Name": "my-release-web",
    "info.Namespace": "default",
    "input": "*schema.InputMessageCLIV1",
    "input.Message": "map[string]interface {}",
    "job.GetName()": "my-release-db-migrate",
    "job.GetNamespace()": "default",
    "k": "meta.helm.sh/release-name",
    "v": "my-release",
    "kind": "Deployment",
    "len(errs)": "2",
    "len(missing)": "1",
    "len(digest)": "31",
    "line": "  kind: Deployment",
    "link": "../shared/Chart.lock",
    "listOptions": "{LabelSelector:app.kubernetes.io/instance=my-release}",
    "lockfileName": "Chart.lock",
    "m.APIVersion": "v9",
    "m.ChartPath": "./my-chart",
    "m.Name": "my plugin",
    "m.RepositoryConfig": "/home/runner/.config/helm/repositories.yaml",
    "m.Version": "1.0",
    "maintainer.Email": "jane.doe@",
    "maintainer.Name": "Jane Doe",
    "maintainer.URL": "htp://jane.example",
    "manifest.ArtifactType": "application/vnd.oci.image.manifest.v1+json",
    "manifest.Config.MediaType": "application/vnd.oci.empty.v1+json",
    "maxChartNameLength": "250",
    "metadata.Runtime": "wasm/v2",
    "metadata.RuntimeConfig": "*plugin.RuntimeConfigSubprocess",
    "msg.Protocol": "s3",
    "n": "postgresql",
    "name": "my-release",
    "o.Name": "my-release-test-connection",
    "obj": "*unstructured.Unstructured",
    "obj.Metadata.Name": "My_ConfigMap",
    "obj.Name": "widgets.example.com",
    "object": "*v1.StatefulSet",
    "original": "func()",
    "outdir": "/tmp/out",
    "outputMessage": "*schema.OutputMessageCLIV1",
    "p.String()": "https://hub.helm.sh/api/chartsvc/v1/charts/search?q=nginx",
    "res.Status": "503 Service Unavailable",
    "path": "/home/runner/.cache/helm/repository/stable-index.yaml",
    "pluginDir": "/tmp/helm-plugin-3120/my-plugin",
    "pluginName": "my-plugin",
    "pluginRoot": "/tmp/helm-plugin-3120/my-plugin",
    "pluginType": "cli/v2",
    "pluginfile": "/home/runner/.local/share/helm/plugins/my-plugin/plugin.yaml",
    "postRenderStrategy": "recursive",
    "previousVersion": "3",
    "r.metadata.Name": "my-plugin",
    "r.metadata.Type": "getter/v1",
    "ref": "oci://registry.example.com/charts/my-chart",
    "rel": "*v1.Release",
    "rel.Name": "my-release",
    "rls.Name": "my-release",
    "targetRelease.Name": "my-release",
    "repoName": "bitnami",
    "repoURL": "https://charts.example.com/stable",
    "resourceString(info)": 'Deployment "my-release-web" in namespace "default"',
    "runtimeType": "wasm/v2",
    "scanpath": "/home/runner/.local/share/helm/plugins",
    "serverSideOption": "maybe",
    "source": "https://github.com/acme/helm-my-plugin",
    "src": "/home/runner/work/app/app/charts/my-chart",
    "start": "my-release",
    "strings.Join(args[2:], \", \")": "./values-prod.yaml",
    "strings.Join(missing, \", \")": "postgresql",
    "strings.Join(missing, \",\")": "postgresql",
    "strings.Join(shadowing, \",\")": "redis",
    "t.Name": "my-release-web",
    "target.Name": "my-release-web",
    "target.Namespace": "default",
    "u": "nginx",
    "u.Scheme": "ftp",
    'u.String()+".prov"': "https://charts.example.com/stable/my-chart-0.1.0.tgz.prov",
    "udCheck": "my-chart",
    "valueType": "float64",
    "key": "appVersion",
    "version": "1.2.4",
    "versionString": "^9.0.0",
    "wasmFile": "plugin.wasm",
    "yamlStruct.Kind": "Deployment",
    "yamlStruct.Metadata.Name": "my-release-web",
    "errMsg": 'chart "my-chart" version "1.2.3"',
    "depPath": "../common",
    "extractDir": "/tmp/helm-plugin-3120",
    "chartRef": "oci://registry.example.com//my-chart",
    "repository": "registry.example.com/",
    "r.Config.Name": "stable",
    "baseURL": ":charts.example.com",
    "refURL": ":charts.example.com",
    "provFile": "my-chart-0.1.0.tgz.prov",
    "provfile": "my-chart-0.1.0.tgz.prov",
    "s.JSONPathTemplate": "{.metadata.name",
    "dir": "/tmp/out/my-chart",
    "repo": "stable",
    "podName": "my-release-test-connection",
    "driver.GetSystemLabels()": "[name owner status version createdAt modifiedAt]",
    "strings.Join(errs, \"; \")": "must be no more than 63 characters",
}

# (go file suffix, argument expression) -> value, where the generic value reads wrong.
ARG_OVERRIDES = {
    ("loader/directory.go", "name"): "my-chart/templates/fifo",
    ("loader/directory.go", "n"): "my-chart/templates/configmap.yaml",
    ("loader/archive.go", "name"): "my-chart-0.1.0.tgz",
    ("util/create.go", "src"): "starters/my-starter",
    ("util/create.go", "path"): "/tmp/charts",
    ("dep/fs/fs.go", "name"): "/tmp/helm-copy/my-chart",
    ("dep/fs/fs.go", "src"): "/tmp/helm-copy/my-chart",
    ("sympath/walk.go", "path"): "my-chart/charts/common",
    ("repo/v1/repo.go", "path"): "/home/runner/.config/helm/repositories.yaml",
    ("internal/test/test.go", "filename"): "testdata/output/install.txt",
    ("internal/test/test.go", "expected"): "NAME: my-release",
    ("internal/test/test.go", "actual"): "NAME: my-release-2",
    ("rules/chartfile.go", "source"): "git@github.com:acme/my-chart",
    ("installer/extractor.go", "source"): "https://example.com/my-plugin.zip",
    ("downloader/manager.go", "name"): "postgresql",
    ("downloader/manager.go", "dest"): "Chart.lock",
    ("downloader/chart_downloader.go", "name"): "stable",
    ("downloader/chart_downloader.go", "ref"): "stable/my-chart",
    ("downloader/chart_downloader.go", "version"): "1.2.3",
    ("resolver/resolver.go", "name"): "postgresql",
    ("action/install.go", "name"): "./my-chart",
    ("action/uninstall.go", "name"): "my-release",
    ("kube/wait.go", "name"): "my-release-db-migrate",
    ("kube/statuswait.go", "name"): "my-release-web",
    ("registry/client.go", "ref"): "oci://registry.example.com/charts/my-chart",
    ("plugin/installer/installer.go", "source"): "./plugins/my-plugin",
    ("plugin/config.go", "pluginType"): "cli/v9",
    ("plugin/plugin_type_registry.go", "pluginType"): "cli/v9",
    ("plugin/loader.go", "dirname"): "/home/runner/.local/share/helm/plugins/my-plugin",
    ("storage/storage.go", "name"): "my-release",
    ("storage/driver/secrets.go", "key"): "sh.helm.release.v1.my-release.v3",
    ("storage/driver/sql.go", "key"): "team",
    ("action/validate.go", "k"): "meta.helm.sh/release-name",
    ("repo/v1/index.go", "name"): "my-chart",
    ("repo/v1/index.go", "version"): "1.2.3",
    ("driver/cfgmaps.go", "v"): "my-release-with-a-name-longer-than-the-sixty-three-character-label-limit",
    ("driver/secrets.go", "v"): "my-release-with-a-name-longer-than-the-sixty-three-character-label-limit",
}

# Format strings whose arguments sit on the next source line (not in the fixture).
FMT_VALUES = {
    "resource %s/%s/%s still exists. status: %s, message: %s":
        ["Deployment", "default", "my-release-web", "Terminating", "Resource scheduled for deletion"],
    "resource %s/%s/%s not ready. status: %s, message: %s":
        ["Deployment", "default", "my-release-web", "InProgress", "Available: 0/1"],
    "manifest does not contain minimum number of descriptors (%d), descriptors found: %d": ["2", "1"],
    "manifest does not contain a layer with mediatype %s":
        ["application/vnd.cncf.helm.chart.content.v1.tar+gzip"],
}

# Per (go file suffix) positional values when a verb has no parsable argument.
DEFAULT_VERB = {"s": "my-release", "q": "my-chart", "d": "3", "v": "my-release",
                "T": "*v1.Deployment", "b": "1010011", "j": "{}"}

IGNORED_HELM_PREFIXES = ("internal/plugin/testdata/",)
# Not failures by themselves (informational / lint-info / internal plumbing).
HELM_SKIP_TEXT = {
    "icon is recommended",
    "annotation 'helm.sh/resource-policy' within List objects are ignored",
}


def helm_prefix(gofile: str, msg: str) -> str:
    if "/lint/rules/" in gofile:
        base = gofile.rsplit("/", 1)[1]
        if base == "chartfile.go":
            return "[ERROR] Chart.yaml: "
        if base == "values.go":
            return "[ERROR] values.yaml: "
        if base == "crds.go":
            return "[ERROR] crds/: " if msg == "not a directory" else "[ERROR] crds/widgets.yaml: "
        if base == "template.go":
            if msg in ("directory does not exist", "not a directory"):
                return "[ERROR] templates/: "
            return "[ERROR] templates/deployment.yaml: "
        if base == "dependencies.go":
            return "[ERROR] : " if msg.startswith("unable to load chart") else "[ERROR] Chart.yaml: "
        return "[ERROR] : "
    if gofile.endswith("internal/test/test.go"):
        return "    helm_test.go:87: "
    if gofile.endswith("pkg/action/install.go"):
        return "Error: INSTALLATION FAILED: "
    if gofile.endswith("pkg/action/upgrade.go"):
        return "Error: UPGRADE FAILED: "
    return "Error: "


class Helm:
    def __init__(self, fx: str):
        self.fx = fx
        self.lines = read(fx, HELM_PKG).splitlines()
        self.golden = {
            os.path.basename(p): read(fx, os.path.relpath(p, fx))
            for p in sorted(glob.glob(os.path.join(fx, HELM_GOLDEN, "*.txt")))
        }
        self.k8s = read(fx, K8S_EVENTS)
        self.calls = []  # (fixture_line_no, gofile, fmt, args)
        for no, line in enumerate(self.lines, 1):
            parsed = self.parse(line)
            if parsed:
                self.calls.append((no, *parsed))
        self.fmt_index = {fmt: (gofile, args) for _, gofile, fmt, args in self.calls}
        self.causes = self.build_causes()

    # -- parsing -----------------------------------------------------------------
    @staticmethod
    def parse(line: str):
        m = re.match(r"^(\S+?\.go):\d+:\s*(.*)$", line)
        if not m:
            return None
        gofile, code = m.group(1), m.group(2)
        if gofile.startswith(IGNORED_HELM_PREFIXES):
            return None
        c = re.search(r"(?:errors\.New|fmt\.Errorf)\(", code)
        if not c:
            return None
        rest = code[c.end():]
        pieces, args = [], []
        while True:
            rest = rest.lstrip()
            lm = re.match(r'"((?:[^"\\]|\\.)*)"', rest)
            if lm:
                pieces.append(go_unquote(lm.group(1)))
                rest = rest[lm.end():].lstrip()
            else:
                em = re.match(r"string\((\w+)\)|(\w+)", rest)
                if not em:
                    return None
                ident = em.group(1) or em.group(2)
                if ident not in ARG_VALUES:
                    return None
                pieces.append(ARG_VALUES[ident])
                rest = rest[em.end():].lstrip()
            if rest.startswith("+"):
                rest = rest[1:]
                if not rest.strip():
                    return None  # literal continues on the next source line: incomplete
                continue
            break
        if rest.startswith(","):
            args = split_args(rest[1:])
        elif not rest.startswith(")"):
            return None
        return gofile, "".join(pieces), args

    # -- causes ------------------------------------------------------------------
    def find_in_golden(self, pattern: str) -> str | None:
        for name in sorted(self.golden):
            m = re.search(pattern, self.golden[name], re.M)
            if m:
                return m.group(1)
        return None

    def literal(self, text: str) -> str | None:
        return text if text in self.fmt_index else None

    def build_causes(self) -> dict:
        c = {}
        c["timeout"] = "timed out waiting for the condition" if "timed out waiting for the condition" in self.k8s else None
        c["deadline"] = "context deadline exceeded" if "context deadline exceeded" in self.k8s else None
        c["pending"] = self.literal("another operation (install/upgrade/rollback) is in progress")
        c["unreachable"] = self.literal("kubernetes cluster unreachable")
        c["rel_notfound"] = self.literal("release: not found")
        c["no_matching"] = self.literal("no matching version")
        c["plugin_meta"] = self.literal("plugin metadata (plugin.yaml) missing")
        c["not_gzip"] = self.literal("plugin data is not a gzip compressed archive")
        c["reuse"] = self.literal("cannot reuse a name that is still in use")
        c["yaml"] = self.find_in_golden(r"(error converting YAML to JSON: yaml: line \d+: did not find expected '-' indicator)")
        c["enoent"] = self.find_in_golden(r"^Error: (stat \S+: no such file or directory)$")
        c["validation"] = self.find_in_golden(r"(validation: chart\.metadata\.name is required)")
        c["missing_deps"] = self.find_in_golden(r"(found in Chart\.yaml, but missing in charts/ directory: \S+)")
        c["no_version"] = self.instantiate_fmt("no chart version found for %s-%s", ["my-chart", "1.2.3"])
        c["waiter"] = self.fmt_text_startswith("wait strategy not set.")
        own = self.instantiate_fmt("missing key %q: must be set to %q", ['"app.kubernetes.io/managed-by"', '"Helm"'])
        lab = self.instantiate_fmt("label validation error: %w", [own]) if own else None
        c["ownership"] = self.instantiate_fmt("invalid ownership metadata; %w", [lab]) if lab else None
        c["own_label"] = own
        c["own_annotation"] = self.instantiate_fmt("missing key %q: must be set to %q",
                                                   ['"meta.helm.sh/release-name"', '"my-release"'])
        c["import"] = (self.instantiate_fmt("%s exists and cannot be imported into the current release: %w",
                                            [ARG_VALUES["resourceString(info)"], c["ownership"]])
                       if c["ownership"] else None)
        return c

    def fmt_text_startswith(self, prefix: str) -> str | None:
        for fmt in self.fmt_index:
            if fmt.startswith(prefix) and not VERB_RE.search(fmt):
                return fmt
        return None

    def instantiate_fmt(self, fmt: str, values: list[str]) -> str | None:
        if fmt not in self.fmt_index:
            return None
        it = iter(values)
        return VERB_RE.sub(lambda m: next(it), fmt)

    def cause_for(self, gofile: str, fmt: str) -> list[str] | None:
        c = self.causes
        rules = [
            (r"^%w", []),  # the wrapped error leads: no credible cause in the file
            (r"original (upgrade|install) error: %w: %w", ["deadline", "unreachable"]),
            (r"finding last successful release", ["deadline", "rel_notfound"]),
            (r"original upgrade error: %w$", ["deadline"]),
            (r"rolled back due to|uninstalled due to|^release %s failed: %w", ["deadline"]),
            (r"^failed (pre|post)-install: %w$|(pre|post)-upgrade hooks failed: %w|Hook %s %s failed: %w",
             ["timeout"]),
            (r"waiter", ["waiter"]),
            (r"cannot be imported|cannot be owned", ["ownership"]),
            (r"^label validation error", ["own_label"]),
            (r"^annotation validation error", ["own_annotation"]),
            (r"unable to continue with (install|update)", ["import"]),
            (r"cluster reachability|discovery client|server version|apiVersions from Kubernetes|"
             r"config for kubernetes client", ["unreachable"]),
            (r"release name check", ["reuse"]),
            (r"dependencies processing", ["missing_deps"]),
            (r"YAML|yaml|unmarshal|parsing|converting|unable to build kubernetes object|"
             r"unable to parse metadata", ["yaml"]),
        ]
        for pat, keys in rules:
            if re.search(pat, fmt):
                return [c[k] for k in keys] if all(c.get(k) for k in keys) else None
        if "/storage/" in gofile:
            return [c["rel_notfound"]] if fmt.startswith("get:") else [c["unreachable"]]
        if gofile.startswith("pkg/kube/"):
            return [c["unreachable"]]
        if gofile.startswith("internal/plugin/"):
            if re.search(r"tarball|archive|extract|untar", fmt):
                return [c["not_gzip"]]
            if re.search(r"plugin", fmt):
                return [c["plugin_meta"]]
        if re.search(r"repo|index|not found in|could not find|could not download|"
                     r"valid version|version/constraint|requested version", fmt):
            return [c["no_version"]] if not re.search(r"constraint", fmt) else [c["no_matching"]]
        if re.search(r"stat|read|copy|rename|mkdir|directory|file|symlink|load|open|save|"
                     r"write|delete|tarball|untar|extract|cert|key|CA", fmt):
            return [c["enoent"]]
        if re.search(r"validation|chart", fmt):
            return [c["validation"]]
        return None

    # -- instantiation ---------------------------------------------------------------
    def value(self, gofile: str, verb: str, arg: str | None) -> str | None:
        if arg is not None:
            for (suffix, a), val in ARG_OVERRIDES.items():
                if a == arg and gofile.endswith(suffix):
                    return val
            if arg in ARG_VALUES:
                return ARG_VALUES[arg]
        return DEFAULT_VERB.get(verb)

    def render(self, gofile: str, fmt: str, args: list[str]) -> str | None:
        if fmt in FMT_VALUES:
            it = iter(FMT_VALUES[fmt])
            return VERB_RE.sub(lambda m: next(it), fmt)
        verbs = list(VERB_RE.finditer(fmt))
        wrap = [m for m in verbs if m.group(2) == "w" or
                (m.group(2) == "v" and self._arg_at(verbs, args, m) in
                 (None, "err", "cerr", "terr", "herr", "rollErr", "uninstallErr", "errs[0]", "msg[0]"))]
        causes = self.cause_for(gofile, fmt) if wrap else []
        if wrap and (not causes or any(cz and cz in fmt for cz in causes)):
            return None
        cause_iter = iter(causes * len(wrap)) if len(causes) == 1 else iter(causes)
        out, pos = [], 0
        for idx, m in enumerate(verbs):
            out.append(fmt[pos:m.start()])
            pos = m.end()
            arg = args[idx] if idx < len(args) else None
            if m in wrap:
                val = next(cause_iter, None)
            else:
                val = self.value(gofile, m.group(2), arg)
            if val is None:
                return None
            if m.group(2) == "q":
                val = '"' + val.replace('"', '\\"') + '"'
            out.append(val)
        out.append(fmt[pos:])
        text = "".join(out)
        text = text.split("\n\n", 1)[0]  # long multi-part messages: keep the head
        return text

    @staticmethod
    def _arg_at(verbs, args, m):
        idx = verbs.index(m)
        return args[idx] if idx < len(args) else None

    def run(self) -> None:
        for no, gofile, fmt, args in self.calls:
            if fmt.strip() in HELM_SKIP_TEXT:
                continue
            text = self.render(gofile, fmt, args)
            if text is None:
                continue
            emit(helm_prefix(gofile, text) + text, f"{HELM_PKG}:{no}")
        self.run_golden()

    def run_golden(self) -> None:
        for name in sorted(self.golden):
            rel = f"{HELM_GOLDEN}/{name}"
            lines = self.golden[name].splitlines()
            strict = "strict" in name
            for i, line in enumerate(lines):
                if line.startswith("Error: "):
                    chunk = [line]
                    # a multi-line error continues until a blank line (schema / template errors)
                    for nxt in lines[i + 1:]:
                        if not nxt.strip() or nxt.startswith("Usage:") or nxt.startswith("Use --debug"):
                            break
                        chunk.append(nxt)
                    emit("\n".join(chunk[:3]), f"{rel}:{i + 1}")
                elif line.startswith("[ERROR]") or (strict and line.startswith("[WARNING]")):
                    chunk = [line]
                    if i + 1 < len(lines) and lines[i + 1].startswith("\t"):
                        chunk.append(lines[i + 1])
                    emit("\n".join(chunk), f"{rel}:{i + 1}")


# --------------------------------------------------------------------------- pip

PIP = "failure-text/tools/pip/pip_23.2.1_error_strings.txt"
PIP_VALUES = {"req": "requests==99.0", "query": "requests==99.0", "link": "https://pypi.org/simple/requests/"}
PIP_HTTP_STATUS = ["404", "503", "429"]  # one per occurrence, in file order
PIP_DIAGNOSTIC = {"subprocess-exited-with-error", "metadata-generation-failed", "externally-managed-environment"}


def run_pip(fx: str) -> None:
    http_i = 0
    for no, line in enumerate(read(fx, PIP).splitlines(), 1):
        m = re.match(r"^(\S+?\.py):\d+:\s*(.*)$", line)
        if not m:
            continue
        code = m.group(2).strip()
        if code.startswith(("#", "from ", "import ", "except ")):
            continue
        lits = re.findall(r'"((?:[^"\\]|\\.)*)"', code)
        if not lits:
            continue
        msg = lits[0]
        if code.startswith("reference ="):
            if msg in PIP_DIAGNOSTIC:
                emit(f"error: {msg}", f"{PIP}:{no}")
            continue
        if "ResolutionImpossible" in msg and "for help" in msg or msg.startswith("have conflicting"):
            continue  # fragments of a longer literal
        if msg.startswith("ResolutionImpossible[") or len(msg.split()) < 3:
            continue
        msg = trim_continued(msg)
        if "%s" in msg and "HTTP error" in msg:
            msg = msg.replace("%s", PIP_HTTP_STATUS[http_i % len(PIP_HTTP_STATUS)], 1)
            http_i += 1
            msg = msg.replace("%s", "https://files.pythonhosted.org/packages/py3/r/requests/requests-2.31.0-py3-none-any.whl", 1)
        elif "Could not fetch URL" in msg:
            msg = msg.replace("%s", PIP_VALUES["link"], 1)
            msg = msg.replace("%s", f"HTTP error 503 while getting {PIP_VALUES['link']}", 1)
        else:
            msg = msg.replace("%s", "cryptography" if "build" in msg else PIP_VALUES["req"])
        msg = msg.replace("{req}", PIP_VALUES["req"]).replace("{}", PIP_VALUES["req"])
        emit("ERROR: " + msg.strip(), f"{PIP}:{no}")


# --------------------------------------------------------------------------- alembic

ALEMBIC = "failure-text/tools/alembic/alembic_1.20.1_error_strings.txt"
ALEMBIC_FILL = ["ae1027a6ac", "3f2a1b9c7d4e"]


def run_alembic(fx: str) -> None:
    for no, line in enumerate(read(fx, ALEMBIC).splitlines(), 1):
        m = re.match(r"^(\S+?\.py):\d+:\s*(.*)$", line)
        if not m:
            continue
        code = m.group(2).strip()
        if code.startswith("#"):
            continue
        lm = re.search(r'(?:f)?"((?:[^"\\]|\\.)*)"', code)
        if not lm:
            continue
        msg = lm.group(1)
        if len(re.findall(r"[A-Za-z]+", msg)) < 3:
            continue  # fragments like "ambiguous; "
        msg = trim_continued(msg)
        msg = msg.replace("'%s'%s", "'%s'")  # second %s is an optional suggestion suffix
        msg = msg.replace("{dir}", "/app/alembic").replace("%(end)s", ALEMBIC_FILL[1])
        n = iter([ALEMBIC_FILL[0], ALEMBIC_FILL[1]])
        msg = re.sub(r"%s", lambda _: next(n, ""), msg)
        if msg.endswith("'%s'") or msg.count("%s"):
            msg = msg.replace("%s", "")
        # alembic's CLI prints CommandError as "FAILED: <message>"
        emit("FAILED: " + msg.strip(), f"{ALEMBIC}:{no}")


# --------------------------------------------------------------------------- npm

NPM = "failure-text/tools/npm/npm_11.19.1_lib_utils_error-message.js"
NPM_FILL = {
    "process.getuid()": "1001",
    "process.getgid()": "121",
    "npm.config.get('cache')": "/home/runner/.npm",
    "er.package": "github:acme/private-lib",
    "authUrl": "https://www.npmjs.com/auth/cli/6f3c9a51",
    "doneUrl": "https://registry.npmjs.org/-/v1/done?authId=6f3c9a51",
    "replaceInfo(er.pkgid)": "left-padd@latest",
    "er.pkgid": "vite@5.0.0",
    "er.dest || er.path": "/app/node_modules/.bin/tsc",
    "err.command": "instal",
    "cmd": "ci",
}
NPM_FORMAT = {  # format(...) calls: literal -> concrete args
    "Unsupported platform for %s: wanted %j (current: %j)":
        ["fsevents@2.3.3", '{"os":"darwin"}', '{"os":"linux"}'],
}


def js_literals(expr: str) -> list[tuple[str, int, int]]:
    """All JS string/template literals in expr: (value, start, end)."""
    out, i = [], 0
    while i < len(expr):
        ch = expr[i]
        if ch in "'\"`":
            j, buf = i + 1, []
            while j < len(expr) and expr[j] != ch:
                if expr[j] == "\\" and j + 1 < len(expr):
                    buf.append(expr[j:j + 2])
                    j += 2
                    continue
                buf.append(expr[j])
                j += 1
            out.append(("".join(buf), i, j + 1))
            i = j + 1
        elif ch == "/" and i + 1 < len(expr) and expr[i + 1] not in " /*" and expr[i - 1:i] in ("(", " "):
            j = expr.find("/", i + 1)  # regex literal: skip
            i = j + 1 if j > 0 else i + 1
        else:
            i += 1
    return out


def js_eval_message(expr: str) -> list[str] | None:
    """Evaluate the message part of a summary/detail push into printable lines.

    Supports string literals, template literals with ${...}, '+' with a known
    expression, [ ... ].join('\\n') and format(...).  Returns None when the message
    depends on a run-time value we do not fill (er.message, er, er.stack, ...).
    """
    expr = expr.strip()
    fm = re.match(r"format\(\s*'([^']*)'", expr)
    if fm:
        vals = NPM_FORMAT.get(fm.group(1))
        if not vals:
            return None
        it = iter(vals)
        return [re.sub(r"%[sj]", lambda _: next(it), fm.group(1))]
    if expr.startswith("["):
        inner = expr[1:expr.rfind("]")]
        lines: list[str] = []
        for part in split_args(inner + ")"):
            if part.startswith("..."):
                # `...cond ? [win32 lines] : [other lines]`: the CI runner is Linux, take the else branch
                tm = re.search(r":\s*(\[.*\])\s*$", part, re.S)
                if not tm:
                    return None
                part = tm.group(1)
            got = js_eval_message(part)
            if got is None:
                return None
            for g in got:
                lines.extend(g.split("\n"))
        return lines
    lits = js_literals(expr)
    if not lits or lits[0][1] != 0:
        return None
    value, _, end = lits[0]
    rest = expr[end:].strip()
    if rest.startswith("+"):
        tail = rest[1:].strip().strip("()").strip()
        if tail not in NPM_FILL:
            return None
        value += NPM_FILL[tail]
    elif rest:
        return None

    def sub(m):
        return NPM_FILL.get(m.group(1).strip(), m.group(0))

    value = re.sub(r"\$\{([^}]*)\}", sub, value)
    if "${" in value:
        return None
    return [value.replace("\\n", "\n").replace("\\'", "'")]


def run_npm(fx: str) -> None:
    src = read(fx, NPM).splitlines()
    codes: list[str] = []
    case_first_line: dict[str, int] = {}
    blocks: list[dict] = []  # {"codes": [...], "msgs": [(lineno, prefix, line)]}
    cur = None
    i = 0
    while i < len(src):
        line = src[i]
        cm = re.match(r"\s*case '([A-Z0-9_]+)':", line)
        if re.match(r"\s*break\b", line) and cur is not None:
            cur["closed"] = True
        if cm:
            if cur is None or cur.get("closed"):
                cur = {"codes": [], "msgs": []}
                blocks.append(cur)
            cur["codes"].append(cm.group(1))
            case_first_line[cm.group(1)] = i + 1
            i += 1
            continue
        if re.match(r"\s*default:", line):
            cur = None
        pm = re.search(r"\b(summary|detail)\.push\(", line)
        if pm and cur is not None:
            # collect the whole statement
            start = i
            stmt = line[pm.end():]
            depth = stmt.count("(") - stmt.count(")") + 1
            while depth > 0 and i + 1 < len(src):
                i += 1
                stmt += "\n" + src[i]
                depth += src[i].count("(") - src[i].count(")")
            body = stmt[:stmt.rfind(")")].strip()
            if body.startswith("[") and body.endswith("]"):
                parts = split_args(body[1:-1] + ")")
                if parts:
                    prefix_l = js_literals(parts[0])
                    prefix = prefix_l[0][0] if prefix_l else ""
                    for part in parts[1:]:
                        got = js_eval_message(part)
                        if got is None:
                            continue
                        for g in got:
                            for ln in g.split("\n"):
                                if ln.strip():
                                    cur["msgs"].append((start + 1, prefix, ln))
        i += 1

    def npm_line(prefix: str, msg: str) -> str:
        return f"npm error {prefix} {msg}" if prefix else f"npm error {msg}"

    for blk in blocks:
        msgs = blk["msgs"]
        for code in blk["codes"]:
            ln = case_first_line[code]
            emit(f"npm error code {code}", f"{NPM}:{ln}")
            if msgs:
                chunk = [f"npm error code {code}"] + [npm_line(p, m) for _, p, m in msgs[:1]]
                emit("\n".join(chunk), f"{NPM}:{ln}#chunk")
        for ln, prefix, msg in msgs:
            words = re.findall(r"[A-Za-z]+", msg)
            if len(words) < 4:
                continue  # URLs, "npm login" and other non-message fragments
            emit(npm_line(prefix, msg), f"{NPM}:{ln}")

    # getError(): unknown command (printed on the standard output, no "npm error" prefix)
    for no, line in enumerate(src, 1):
        um = re.search(r"`Unknown command: \"\$\{err\.command\}\"`", line)
        if um:
            tail = ""
            for nxt in src[no:no + 4]:
                tm = re.search(r"'(To see a list of supported npm commands, run:)'", nxt)
                if tm:
                    tail = tm.group(1)
            text = f'Unknown command: "{NPM_FILL["err.command"]}"'
            emit(text + ("\n" + tail if tail else ""), f"{NPM}:{no}")


# --------------------------------------------------------------------------- kubernetes events

K8S_OBJ = "pod/web-5d9c7b8f6-q2x7z"
K8S_NODE = "node/worker-2"
K8S_MSG_FILL = {
    "BackOff": ["web", "web-5d9c7b8f6-q2x7z_default(8a3c1f0e-5b1d-4c2a-9f3e-2d7b6a1c0e9f)"],
    "ImagePullBackOff": ["registry.example.com/acme/web:1.4.2"],
    "ErrImageNeverPull": ["acme/web:dev"],
    "SystemOOM": ["java", "23411"],
}
IMAGE = "registry.example.com/acme/web:1.4.2"
ERR_IMAGE_PULL_CAUSES = [
    f'rpc error: code = NotFound desc = failed to pull and unpack image "{IMAGE}": failed to resolve reference "{IMAGE}": {IMAGE}: not found',
    f'rpc error: code = Unknown desc = failed to pull and unpack image "{IMAGE}": failed to resolve reference "{IMAGE}": failed to authorize: failed to fetch oauth token: unexpected status: 401 Unauthorized',
    f'rpc error: code = Unknown desc = failed to pull and unpack image "{IMAGE}": failed to resolve reference "{IMAGE}": failed to do request: Head "https://registry.example.com/v2/acme/web/manifests/1.4.2": dial tcp: lookup registry.example.com on 10.96.0.10:53: no such host',
]
PROBE_OUTPUTS = [
    "HTTP probe failed with statuscode: 500",
    'Get "http://10.244.1.17:8080/healthz": context deadline exceeded (Client.Timeout exceeded while awaiting headers)',
]
EVICTED = [
    ["memory", "100Mi", "87364Ki", "web", "1948Mi", "512Mi", "memory"],
    ["ephemeral-storage", "10%", "1562372Ki", "web", "9216Mi", "0", "ephemeral-storage"],
]


def k8s_event(reason: str, obj: str, msg: str | None = None) -> str:
    return f"Warning  {reason}  {obj}" + (f"  {msg}" if msg else "")


def pod_row(reason: str) -> str:
    return f"web-5d9c7b8f6-q2x7z   0/1     {reason}   0          47s"


def fill_go(fmt: str, vals: list[str]) -> str:
    it = iter(vals)
    return re.sub(r"%[sdvq]", lambda m: (f'"{next(it)}"' if m.group(0) == "%q" else next(it)), fmt)


def run_k8s(fx: str) -> None:
    data = json.loads(read(fx, K8S_EVENTS))
    for idx, e in enumerate(data["entries"]):
        src = f"{K8S_EVENTS}#entries[{idx}]"
        reasons = [r.strip() for r in e["reason"].split("/")]
        fmt = e.get("message_format")
        kind = e.get("kind", "")
        reason = reasons[0]
        if len(reasons) == 1 and fmt and "%" in fmt and reason in K8S_MSG_FILL:
            msg = fill_go(fmt.split("   (")[0], K8S_MSG_FILL[reason])
            if kind.startswith("event"):
                obj = K8S_NODE if "node" in kind else K8S_OBJ
                emit(k8s_event(reason, obj, msg), src)
            else:
                emit(f"{reason}: {msg}", src)
        elif reason == "CrashLoopBackOff":
            msg = (fmt.replace("<duration>", "5m0s").replace("<name>", "web")
                   .replace("<pod>", "web-5d9c7b8f6-q2x7z_default(8a3c1f0e-5b1d-4c2a-9f3e-2d7b6a1c0e9f)"))
            emit(f"{reason}: {msg}", src)
        elif reason == "ErrImagePull":
            for j, cause in enumerate(ERR_IMAGE_PULL_CAUSES):
                msg = fmt.replace("%q", f'"{IMAGE}"').replace("<runtime error>", cause)
                emit(f"{reason}: {msg}", f"{src}.message_format[{j}]")
        elif reason == "FailedScheduling":
            head = fmt.split(":", 1)[0].replace("%v", "3")
            ex = fmt[fmt.index("(e.g. '") + len("(e.g. '"):fmt.rindex("')")]
            for j, why in enumerate(ex.split("', '")):
                why = why.replace("{k: v}", "{node-role.kubernetes.io/control-plane: }")
                emit(k8s_event(reason, K8S_OBJ, f"{head}: 3 {why}."), f"{src}.message_format[{j}]")
        elif reason == "Unhealthy":
            probes = re.search(r"probeType = ([\w|]+)", fmt).group(1).split("|")
            base = fmt.split("   (")[0]
            for p in probes:
                for j, out in enumerate(PROBE_OUTPUTS):
                    emit(k8s_event(reason, K8S_OBJ, fill_go(base, [p, out])), f"{src}.{p}[{j}]")
        elif reason == "ProbeWarning":
            emit(k8s_event(reason, K8S_OBJ, fill_go(fmt, ["Readiness", "Probe terminated redirects"])), src)
        elif reason == "Evicted":
            for j, vals in enumerate(EVICTED):
                m = fmt.replace("[", "").replace("]", "")
                emit(f"{reason}: " + fill_go(m, vals).strip(), f"{src}.message_format[{j}]")
        elif reason == "OOMKilled":
            code = re.search(r"exitCode typically (\d+)", fmt).group(1)
            emit(f"Last State:  Terminated\n  Reason:    {reason}\n  Exit Code: {code}", src)
        elif reason == "FailedMount":
            for j, ex in enumerate(re.findall(r"'([^']+)'", fmt)):
                ex = (ex.replace("%q", '"db-credentials"').replace("%v", 'secret "db-credentials" not found')
                      .replace("unmounted volumes=[...]", "unmounted volumes=[data]")
                      .replace("unattached volumes=[...]", "unattached volumes=[data kube-api-access-9xk2p]"))
                emit(k8s_event(reason, K8S_OBJ, ex), f"{src}.message_format[{j}]")
            for r in reasons[1:]:
                emit(k8s_event(r, K8S_OBJ), f"{src}.reason.{r}")
        else:
            for r in reasons:
                if kind.startswith("container_waiting"):
                    emit(pod_row(r), f"{src}.reason.{r}")
                else:
                    obj = K8S_NODE if "node" in kind else K8S_OBJ
                    emit(k8s_event(r, obj, None), f"{src}.reason.{r}")


# --------------------------------------------------------------------------- node-problem-detector

NPD = "failure-text/node-problem-detector"
# Concrete text for each repeat ("wildcard") of a rule regex, in order of appearance.
NPD_FILL = {
    "CCPPCrash": ["4213", "payment-api", "__GI_raise()"],
    "UncaughtException": ["4213", "python3", "1000", "Python"],
    "XorgCrash": ["Xorg", "libpixman-1.so.0"],
    "VMcore": ["ext4_da_writepages"],
    "KernelOops": ["dm_thin_pool"],
    "DiskBadBlock": ["smartd[812]: Device: /dev/sda [SAT], ", "28", " (pending) ", ""],
    "CorruptDockerImage": ["overlay2/layerdb/tmp/write-set-091234567",
                           "overlay2/layerdb/sha256/3c1a7f0e5b1d4c2a9f3e2d7b6a1c0e9f", ""],
    "CorruptDockerOverlay2": ["/l", ""],
    "Ext4Error": ["(device sda1): ext4_find_entry:1455: inode #2: comm kubelet: reading directory lblock 0"],
    "Ext4Warning": ["(device dm-3): ext4_end_bio:343: I/O error 10 writing to inode 1835012 starting block 7340032)"],
    "IOError": ["on dev sdb1, logical block 10485760, lost async page write"],
    "XfsHasShutdown": ["(dm-0): Corruption of in-memory data detected. ", ""],
    "MemoryReadError": ["on CPU_SrcID#0_Ha#0_Chan#1_DIMM#0 (channel:1 slot:0 page:0x1a2b3 offset:0x0 grain:32 syndrome:0x0)"],
    "CperHardwareErrorCorrected": ["{1}"],
    "CperHardwareErrorRecoverable": ["{2}"],
    "CperHardwareErrorFatal": ["{3}"],
    "ContainerCreationFailed": [
        'E0412 10:22:31.402113    4120 kuberuntime_manager.go:1256] "CreateContainer in sandbox failed" err="rpc error: code = Unknown desc = ',
        ": ",
        ": failed to extract layer sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef: ",
        ' \\"sha256:8c811b4aec35f259572d0f79207bc0678df4c736eeec50bc9fec37ed936a472a\\""'],
    "CorruptContainerImageLayer": [
        'E0412 10:24:02.118342    4120 remote_image.go:180] "PullImage from image service failed" err="rpc error: code = Unknown desc = ',
        ' \\"mcr.microsoft.com/windows/servercore:ltsc2022\\": ',
        " sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef: ",
        '"'],
    "HCSEmptyLayerchain": ["time=\"2024-04-12T10:25:44.000000000Z\" level=error msg=\"", "e"],
}
# Rules that describe healthy state or routine service starts: not failures.
NPD_SKIP_REASONS = {"KubeletStart", "DockerStart", "ContainerdStart"}


def regex_example(pattern: str, fills: list[str]) -> str:
    """Build one string matched by `pattern`, using `fills` for each repeat in order."""
    queue = list(fills)
    CATEGORY_CHAR = {sre_c.CATEGORY_DIGIT: "1", sre_c.CATEGORY_WORD: "a",
                     sre_c.CATEGORY_NOT_SPACE: "x", sre_c.CATEGORY_SPACE: " "}

    def one(op, av) -> str:
        if op is sre_c.LITERAL:
            return chr(av)
        if op is sre_c.NOT_LITERAL:
            return "x" if chr(av) != "x" else "y"
        if op is sre_c.ANY:
            return "x"
        if op is sre_c.IN:
            for iop, iav in av:
                if iop is sre_c.LITERAL:
                    return chr(iav)
                if iop is sre_c.RANGE:
                    return chr(iav[0])
                if iop is sre_c.CATEGORY:
                    return CATEGORY_CHAR.get(iav, "a")
            return "a"
        if op is sre_c.SUBPATTERN:
            return walk(av[-1])
        if op is sre_c.BRANCH:
            return walk(av[1][0])
        if op is sre_c.AT:
            return ""
        if op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT):
            lo, _hi, sub = av
            if queue:
                return queue.pop(0)
            return "".join(walk(sub) for _ in range(max(lo, 1)))
        raise ValueError(f"unsupported regex op {op}")

    def walk(parsed) -> str:
        return "".join(one(op, av) for op, av in parsed)

    return walk(sre_parse.parse(pattern))


def npd_rules(obj, path=""):
    if isinstance(obj, dict):
        if "reason" in obj and "type" in obj and obj.get("type") in ("temporary", "permanent"):
            yield path, obj
        for k, v in obj.items():
            yield from npd_rules(v, f"{path}.{k}" if path else k)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from npd_rules(v, f"{path}[{i}]")


def run_npd(fx: str) -> None:
    samples = {}
    for p in sorted(glob.glob(os.path.join(fx, NPD, "kernel_log_generator_problems", "*"))):
        rel = os.path.relpath(p, fx)
        lines = [ln.rstrip() for ln in read(fx, rel).splitlines()]
        samples[rel] = lines
        meaningful = [(i, ln) for i, ln in enumerate(lines, 1) if ln.strip()]
        if not meaningful:
            continue
        first_no, first = meaningful[0]
        chunk = [first]
        # OOM kill reports come as a pair of lines
        if first.startswith("Memory cgroup out of memory") and len(meaningful) > 1:
            chunk.append(meaningful[1][1])
        emit("\n".join(chunk), f"{rel}:{first_no}")

    for p in sorted(glob.glob(os.path.join(fx, NPD, "config", "*.json"))):
        rel = os.path.relpath(p, fx)
        cfg = json.loads(read(fx, rel))
        for path, rule in npd_rules(cfg):
            reason = rule["reason"]
            if reason in NPD_SKIP_REASONS:
                continue
            src = f"{rel}#{path}"
            pattern = rule.get("pattern")
            if pattern:
                line = None
                for srel, lines in samples.items():  # prefer a real sample line
                    for ln in lines:
                        if ln.strip() and re.search(pattern, ln):
                            line = ln.strip()
                            break
                    if line:
                        break
                if line is not None and any(line in o["text"] for o in OUT if o["source"].startswith(
                        f"{NPD}/kernel_log_generator_problems/")):
                    continue  # already emitted from the sample kernel log
                if line is None:
                    line = regex_example(pattern, NPD_FILL.get(reason, []))
                    check = line
                    if "\\x00" in pattern:  # Go prints the NUL byte quoted: '\x00'
                        line = line.replace("\x00", "\\x00")
                    assert re.fullmatch(pattern, check), (reason, line)
                emit(line, src)
            elif rule["type"] == "permanent" and rule.get("condition"):
                emit(f"Node condition {rule['condition']} is now: True, reason: {reason}", src)
            else:
                emit(k8s_event(reason, "node/worker-2"), src)


# --------------------------------------------------------------------------- CI webhooks

def run_webhooks(fx: str) -> None:
    # GitHub workflow_job with a failed step
    for rel in sorted(glob.glob(os.path.join(fx, "webhooks/github/workflow_job/*.json"))):
        rel = os.path.relpath(rel, fx)
        d = json.loads(read(fx, rel))
        job = d.get("workflow_job", {})
        if job.get("conclusion") != "failure":
            continue
        for i, step in enumerate(job.get("steps", [])):
            if step.get("conclusion") == "failure":
                emit(f'GitHub Actions job "{job["name"]}" (workflow "{job.get("workflow_name", "")}") failed at '
                     f'step {step["number"]} "{step["name"]}"', f"{rel}#workflow_job.steps[{i}]")
    # GitHub check_run / workflow_run with a non-success conclusion
    for rel in sorted(glob.glob(os.path.join(fx, "webhooks/github/check_run/*.json"))):
        rel = os.path.relpath(rel, fx)
        cr = json.loads(read(fx, rel)).get("check_run", {})
        if cr.get("conclusion") in ("failure", "timed_out", "cancelled", "action_required"):
            emit(f'check run "{cr["name"]}" completed with conclusion {cr["conclusion"]}', f"{rel}#check_run.conclusion")
    for rel in sorted(glob.glob(os.path.join(fx, "webhooks/github/workflow_run/*.json"))):
        rel = os.path.relpath(rel, fx)
        d = json.loads(read(fx, rel))
        wr = d.get("workflow_run", {})
        if wr.get("conclusion") in ("failure", "timed_out", "cancelled", "action_required", "startup_failure"):
            name = wr.get("name") or d.get("workflow", {}).get("name", "")
            emit(f'workflow run "{name}" #{wr.get("run_number")} ({wr.get("display_title", "")}) '
                 f'completed with conclusion {wr["conclusion"]}', f"{rel}#workflow_run.conclusion")
    # GitLab builds with a failure_reason
    for rel in sorted(glob.glob(os.path.join(fx, "webhooks/gitlab/*.json"))):
        rel = os.path.relpath(rel, fx)
        d = json.loads(read(fx, rel))
        if d.get("build_failure_reason"):
            emit(f'GitLab job "{d["build_name"]}" (stage {d["build_stage"]}) failed: '
                 f'failure_reason={d["build_failure_reason"]}', f"{rel}#build_failure_reason")
        for i, b in enumerate(d.get("builds", []) or []):
            if b.get("failure_reason"):
                emit(f'GitLab job "{b["name"]}" (stage {b["stage"]}) failed: failure_reason={b["failure_reason"]}',
                     f"{rel}#builds[{i}].failure_reason")
    # CircleCI failed workflow
    for rel in sorted(glob.glob(os.path.join(fx, "webhooks/circleci/*.json"))):
        rel = os.path.relpath(rel, fx)
        d = json.loads(read(fx, rel))
        wf = d.get("workflow", {})
        if wf.get("status") in ("failed", "error", "failing", "canceled", "unauthorized"):
            emit(f'CircleCI workflow "{wf["name"]}" in project {d.get("project", {}).get("name", "")} '
                 f'finished with status {wf["status"]}', f"{rel}#workflow.status")
    # Azure DevOps: abandoned release / failed build
    for rel in sorted(glob.glob(os.path.join(fx, "webhooks/azure-devops/*.json"))):
        rel = os.path.relpath(rel, fx)
        if os.path.basename(rel).startswith("bad."):
            continue
        d = json.loads(read(fx, rel))
        res = d.get("resource", {})
        status = (res.get("release") or res).get("status")
        if status in ("abandoned", "failed", "canceled", "rejected", "partiallySucceeded"):
            text = d.get("detailedMessage", {}).get("text") or d.get("message", {}).get("text", "")
            emit(text.split("\\r\\n")[0], f"{rel}#detailedMessage.text")


# --------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("fixtures", nargs="?", default=DEFAULT_FIXTURES,
                    help="fixtures directory (default: ../shared/fixtures from the repo root)")
    ns = ap.parse_args(argv)
    fx = os.path.abspath(ns.fixtures)
    if not os.path.isdir(os.path.join(fx, "failure-text")):
        print(f"not a fixtures directory: {fx}", file=sys.stderr)
        return 2
    Helm(fx).run()
    run_pip(fx)
    run_alembic(fx)
    run_npm(fx)
    run_k8s(fx)
    run_npd(fx)
    run_webhooks(fx)

    seen, rows = set(), []
    for rec in sorted(OUT, key=lambda r: (r["source"], r["text"])):
        if rec["text"] in seen:
            continue
        seen.add(rec["text"])
        rows.append(rec)
    for rec in rows:
        sys.stdout.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
