#!/usr/bin/env python3
"""Static check of deploy/kubernetes/*.yaml against the commands deploy/README.md documents.

There is no cluster here, so this checks what a cluster would refuse or what would fail at
pod start:

1. every manifest parses, and every document is a Kubernetes object (kind, metadata);
2. the `kubectl create secret generic ...` / `kubectl create configmap ...` commands of the
   README's "Kubernetes" section are collected, with the keys each creates (`--from-file`
   takes the file's name, `--from-literal=KEY=...` its KEY);
3. every Secret or ConfigMap a manifest references (volumes and their items, env
   `secretKeyRef`/`configMapKeyRef`, `envFrom`) is one of those, with a key they create;
4. every volumeMount names a volume of its pod, and every environment value that is an
   absolute path under a mount (such as DIRECTORY_ACL_FILE=/secrets/acl.json) names a file
   that volume provides;
5. with --secrets DIR (the output of deploy/gen-secrets.sh): every `--from-file` names a
   file gen-secrets writes, and every `$VAR` of a `--from-literal` is a variable of its
   tokens.env.

Usage: k8s_manifests.py [--readme deploy/README.md] [--secrets DIR] [MANIFEST...]
Prints one line per problem and exits 1 if there is any; exits 0 with a summary otherwise.
"""

import argparse
import glob
import os
import re
import shlex
import sys

import yaml


def readme_commands(readme):
    """The `kubectl create secret|configmap` commands of the README's Kubernetes section."""
    text = open(readme, encoding="utf-8").read()
    section = re.search(r"^## Kubernetes\n(.*?)(?=^## )", text, re.S | re.M)
    if not section:
        raise SystemExit(f"{readme}: no '## Kubernetes' section")
    joined = section.group(1).replace("\\\n", " ")
    commands = []
    for line in joined.splitlines():
        start = line.find("kubectl create ")
        if start < 0:
            continue
        command = line[start:].split("&&")[0].split(";")[0].rstrip().rstrip(")")
        commands.append(shlex.split(command))
    return commands


def created_objects(commands):
    """{(kind, name): {key: source}} from the parsed commands; source is a path or a literal."""
    created = {}
    for words in commands:
        if words[2:3] == ["secret"] and words[3:4] == ["generic"]:
            kind, rest = "Secret", words[4:]
        elif words[2:3] == ["configmap"]:
            kind, rest = "ConfigMap", words[3:]
        else:
            continue
        name, keys = rest[0], {}
        for word in rest[1:]:
            if word.startswith("--from-file="):
                spec = word.split("=", 1)[1]
                key, _, path = spec.rpartition("=") if "=" in spec else (None, "", spec)
                keys[key or os.path.basename(path)] = ("file", path)
            elif word.startswith("--from-literal="):
                key, _, value = word.split("=", 1)[1].partition("=")
                keys[key] = ("literal", value)
        created[(kind, name)] = keys
    return created


def pod_specs(doc):
    """(where, pod spec) of a workload or a bare Pod."""
    kind = doc.get("kind")
    name = f"{kind}/{doc.get('metadata', {}).get('name')}"
    if kind == "Pod":
        yield name, doc.get("spec", {})
    elif kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        yield name, doc["spec"]["template"]["spec"]
    elif kind == "CronJob":
        yield name, doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def volume_files(volume):
    """(kind, name, {file in the mount: key}) of a secret or configMap volume, else None."""
    if "secret" in volume:
        kind, source, name = "Secret", volume["secret"], volume["secret"].get("secretName")
    elif "configMap" in volume:
        kind, source, name = "ConfigMap", volume["configMap"], volume["configMap"].get("name")
    else:
        return None
    items = source.get("items")
    files = {i["path"]: i["key"] for i in items} if items else None
    return kind, name, files


class Checker:
    def __init__(self, created):
        self.created = created
        self.problems = []
        self.references = 0

    def need(self, where, kind, name, key=None):
        self.references += 1
        keys = self.created.get((kind, name))
        if keys is None:
            self.problems.append(f"{where}: {kind} {name!r} is not created by the README's commands")
        elif key is not None and key not in keys:
            self.problems.append(f"{where}: {kind} {name!r} has no key {key!r} (created: {sorted(keys)})")

    def pod(self, where, spec):
        mounts_of = {}
        for volume in spec.get("volumes", []):
            source = volume_files(volume)
            if source is None:
                continue
            kind, name, files = source
            self.need(f"{where} volume {volume['name']}", kind, name)
            for key in (files or {}).values():
                self.need(f"{where} volume {volume['name']}", kind, name, key)
            if files is None:  # every key of the object becomes a file
                files = {k: k for k in self.created.get((kind, name), {})}
            mounts_of[volume["name"]] = files
        names = {v["name"] for v in spec.get("volumes", [])}
        for container in spec.get("initContainers", []) + spec.get("containers", []):
            self.container(f"{where} container {container['name']}", container, names, mounts_of)

    def container(self, where, container, volume_names, mounts_of):
        mounts = {}
        for mount in container.get("volumeMounts", []):
            if mount["name"] not in volume_names:
                self.problems.append(f"{where}: volumeMount {mount['name']!r} names no volume of the pod")
            elif mount["name"] in mounts_of:
                mounts[mount["mountPath"].rstrip("/")] = mounts_of[mount["name"]]
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                self.need(where, "Secret", source["secretRef"]["name"])
            if "configMapRef" in source:
                self.need(where, "ConfigMap", source["configMapRef"]["name"])
        for env in container.get("env", []):
            self.env(f"{where} env {env['name']}", env, mounts)

    def env(self, where, env, mounts):
        ref = env.get("valueFrom", {})
        if "secretKeyRef" in ref:
            self.need(where, "Secret", ref["secretKeyRef"]["name"], ref["secretKeyRef"]["key"])
        if "configMapKeyRef" in ref:
            self.need(where, "ConfigMap", ref["configMapKeyRef"]["name"], ref["configMapKeyRef"]["key"])
        value = env.get("value", "")
        if not value.startswith("/"):
            return
        directory, _, file = value.rpartition("/")
        if directory in mounts:
            self.references += 1
            if file not in mounts[directory]:
                self.problems.append(f"{where}: {value} is not a file of the volume at {directory}")


def check_sources(created, secrets_dir, problems):
    """Every --from-file is a file gen-secrets writes; every $VAR literal is in tokens.env."""
    tokens = open(os.path.join(secrets_dir, "tokens.env"), encoding="utf-8").read()
    variables = {line.split("=", 1)[0] for line in tokens.splitlines() if "=" in line}
    for (kind, name), keys in created.items():
        for key, (how, source) in keys.items():
            if how == "file" and not os.path.isfile(os.path.join(secrets_dir, os.path.basename(source))):
                problems.append(f"README: {kind} {name} key {key}: gen-secrets writes no {os.path.basename(source)}")
            if how == "literal":
                var = re.fullmatch(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", source)
                if not var or var.group(1) not in variables:
                    problems.append(f"README: {kind} {name} key {key}: {source!r} is no variable of tokens.env")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--readme", default="deploy/README.md")
    parser.add_argument("--secrets", help="an output directory of deploy/gen-secrets.sh")
    parser.add_argument("manifests", nargs="*")
    args = parser.parse_args()
    manifests = args.manifests or sorted(glob.glob("deploy/kubernetes/*.yaml"))

    created = created_objects(readme_commands(args.readme))
    checker = Checker(created)
    if not created:
        checker.problems.append(f"{args.readme}: no kubectl create secret/configmap command")
    for path in manifests:
        docs = [d for d in yaml.safe_load_all(open(path, encoding="utf-8")) if d]
        if not docs:
            checker.problems.append(f"{path}: no document")
        for doc in docs:
            if not isinstance(doc, dict) or "kind" not in doc or "metadata" not in doc:
                checker.problems.append(f"{path}: a document is not a Kubernetes object")
                continue
            for where, spec in pod_specs(doc):
                checker.pod(f"{path} {where}", spec)
    if args.secrets:
        check_sources(created, args.secrets, checker.problems)

    for problem in checker.problems:
        print(f"FAIL - {problem}")
    if checker.problems:
        return 1
    objects = ", ".join(f"{k} {n}" for k, n in sorted(created))
    print(f"ok   - {len(manifests)} manifests, {checker.references} references, all to {objects}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
