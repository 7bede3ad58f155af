"""The container image, as far as a machine without a container engine can
check it: `make image` finds an engine or says there is none, and calls it
as it should; the build stage builds every backend (the xdp feature too) with
what the Makefile says building needs; the runtime stage installs every
library the release binary links against, and the xdp feature adds none; the
build context keeps what cargo needs."""

import fnmatch
import os
import re
import shutil
import stat
import subprocess
import tempfile
import tomllib
import unittest

from common import EXPORTER, ROOT

DOCKERFILE = ROOT / "Dockerfile"
# In debian:bookworm-slim already: the C library and libgcc (both required).
BASE_PACKAGES = {"libc6", "libgcc-s1"}


def stages():
    """The Dockerfile's stages as (FROM line, [RUN ... lines])."""
    out = []
    for line in re.sub(r"\\\n", " ", DOCKERFILE.read_text()).splitlines():
        line = line.strip()
        if line.startswith("FROM "):
            out.append((line, []))
        elif out:
            out[-1][1].append(line)
    return out


def apt_installs(lines):
    pkgs = set()
    for line in lines:
        for m in re.finditer(r"apt-get install ((?:[^&|;]+))", line):
            pkgs |= {w for w in m.group(1).split() if not w.startswith("-")}
    return pkgs


def cargo_version():
    m = re.search(r'(?m)^version = "([^"]+)"', (ROOT / "Cargo.toml").read_text())
    return m.group(1)


def makefile_packages(variable):
    """The Debian packages a Makefile variable lists (`NAME := a b c`)."""
    m = re.search(r"(?m)^%s\s*:=\s*((?:.*\\\n)*.*)$" % re.escape(variable), (ROOT / "Makefile").read_text())
    assert m, "no %s in the Makefile" % variable
    return set(m.group(1).replace("\\\n", " ").split())


def locked_dependencies(name):
    """The packages `name` depends on in Cargo.lock, transitively, itself included."""
    with open(ROOT / "Cargo.lock", "rb") as f:
        packages = tomllib.load(f)["package"]

    def find(spec):
        dep_name, _, version = spec.partition(" ")
        found = [p for p in packages if p["name"] == dep_name and (not version or p["version"] == version)]
        assert len(found) == 1, "%d packages %r in Cargo.lock" % (len(found), spec)
        return found[0]

    seen, todo = set(), [find(name)]
    while todo:
        p = todo.pop()
        if (p["name"], p["version"]) not in seen:
            seen.add((p["name"], p["version"]))
            todo.extend(find(d) for d in p.get("dependencies", []))
    return seen


class MakeImage(unittest.TestCase):
    """`make image` with stand-in docker and podman commands on PATH."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="tcp-exporter-image-")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        self.calls = os.path.join(self.tmp, "calls")

    def fake(self, name, info_ok):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write('#!/bin/sh\necho "%s $*" >> "%s"\n' % (name, self.calls))
            f.write('[ "$1" = info ] && exit %d\nexit 0\n' % (0 if info_ok else 1))
        os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)

    def make_image(self):
        # PATH: the stand-ins first, then system directories without
        # /usr/local/bin, so a real engine elsewhere is not reached.
        env = dict(os.environ, PATH=self.tmp + ":/usr/sbin:/usr/bin:/sbin:/bin")
        env.pop("CONTAINER_ENGINE", None)
        return subprocess.run(["make", "--no-print-directory", "-s", "-C", str(ROOT), "image"],
                              env=env, capture_output=True, text=True)

    def recorded(self):
        if not os.path.exists(self.calls):
            return []
        with open(self.calls) as f:
            return f.read().splitlines()

    def test_without_a_running_engine_it_says_so(self):
        self.fake("docker", info_ok=False)
        self.fake("podman", info_ok=False)
        r = self.make_image()
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("no container engine answers", r.stderr)
        self.assertNotIn("build", " ".join(self.recorded()))

    def test_it_builds_with_the_engine_that_answers(self):
        self.fake("docker", info_ok=False)
        self.fake("podman", info_ok=True)
        r = self.make_image()
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        v = cargo_version()
        self.assertEqual(self.recorded()[-1],
                         "podman build --build-arg VERSION=%s -t tcp-exporter:%s ." % (v, v))


class Dockerfile(unittest.TestCase):
    def test_two_stages_on_the_same_debian_release(self):
        froms = [f for f, _ in stages()]
        self.assertEqual(len(froms), 2, froms)
        self.assertRegex(froms[0], r"^FROM rust:[\w.]+-bookworm AS build$")
        self.assertEqual(froms[1], "FROM debian:bookworm-slim")
        build_runs = " ".join(stages()[0][1])
        self.assertIn("cargo build --release --locked", build_runs)
        self.assertIn("libpcap-dev", apt_installs(stages()[0][1]))

    def test_build_stage_builds_every_backend(self):
        # The image serves all three backends: the xdp feature, whose eBPF
        # programs build.rs compiles with clang.
        build_runs = " ".join(stages()[0][1])
        self.assertRegex(build_runs, r"cargo build --release --locked --features xdp(\s|$)")
        installs = apt_installs(stages()[0][1])
        # What the Makefile installs for building (gcc comes with the rust
        # image) and for the xdp feature (clang, llvm, libbpf-dev,
        # linux-libc-dev): one list, kept in the Makefile.
        xdp_pkgs = makefile_packages("XDP_PKGS")
        self.assertIn("clang", xdp_pkgs)
        self.assertLessEqual(xdp_pkgs, installs)
        self.assertLessEqual(makefile_packages("BUILD_PKGS") - {"gcc"}, installs)
        # None of it at run time.
        self.assertFalse(xdp_pkgs & apt_installs(stages()[1][1]))

    def test_xdp_feature_links_no_native_library(self):
        # The runtime test below reads the libraries of the binary built here,
        # with or without the xdp feature (`make test-deploy` builds it
        # without). The feature adds aya, which is pure Rust: nothing in its
        # dependencies links a C library (a -sys crate, by convention), so
        # the image's xdp build needs no more than libpcap0.8.
        deps = locked_dependencies("aya")
        self.assertIn("aya", {n for n, _ in deps})
        self.assertEqual(sorted(n for n, _ in deps if n.endswith("-sys")), [])

    def test_runtime_stage_installs_every_library_the_binary_links(self):
        # The binary built here (Debian bookworm, as the build stage) names its
        # libraries; each must come from a package the runtime stage has.
        if shutil.which("dpkg-query") is None or shutil.which("readelf") is None:
            self.skipTest("needs dpkg and readelf (a Debian machine)")
        runtime = apt_installs(stages()[1][1]) | BASE_PACKAGES
        # libpcap0.8 for the binary's library; ca-certificates, the system's
        # roots for an https:// --otlp-endpoint without --otlp-ca.
        self.assertEqual(apt_installs(stages()[1][1]), {"libpcap0.8", "ca-certificates"})
        needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]",
                            subprocess.run(["readelf", "-d", str(EXPORTER)], capture_output=True, text=True,
                                           check=True).stdout)
        self.assertIn("libpcap.so.0.8", needed)
        ldd = subprocess.run(["ldd", str(EXPORTER)], capture_output=True, text=True, check=True).stdout
        for soname in needed:
            with self.subTest(library=soname):
                m = re.search(r"(?m)^\s*(?:%s => )?(/\S*%s)\s" % (re.escape(soname), re.escape(soname)), ldd)
                self.assertIsNotNone(m, "ldd does not resolve %s:\n%s" % (soname, ldd))
                self.assertIn(self.package_of(m.group(1)), runtime)

    @staticmethod
    def package_of(path):
        candidates = [path, os.path.realpath(path)]
        for p in list(candidates):  # merged /usr: a file may be listed under either
            if p.startswith("/usr/"):
                candidates.append(p[len("/usr"):])
            else:
                candidates.append("/usr" + p)
        for p in candidates:
            r = subprocess.run(["dpkg-query", "-S", p], capture_output=True, text=True)
            if r.returncode == 0:
                return r.stdout.split(":", 1)[0].strip()
        raise AssertionError("no Debian package owns %s" % path)

    def test_build_context_keeps_what_cargo_needs(self):
        patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                    if line.strip() and not line.startswith("#")]
        # build.rs compiles bpf/ for the xdp feature.
        files = subprocess.run(["git", "-C", str(ROOT), "ls-files", "Cargo.toml", "Cargo.lock", "src", "benches",
                                "build.rs", "bpf"], capture_output=True, text=True).stdout.split() \
            or ["Cargo.toml", "Cargo.lock", "src/main.rs", "build.rs", "bpf/tcpx.bpf.c"]
        self.assertIn("Cargo.lock", files)
        self.assertIn("bpf/tcpx.bpf.c", files)
        for f in files:
            parts = f.split("/")
            prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
            for pat in patterns:
                for p in prefixes:
                    self.assertFalse(fnmatch.fnmatch(p, pat.replace("**/", "*")) or fnmatch.fnmatch(p, pat),
                                     "%s is left out of the build context by %r" % (f, pat))
        for excluded in ("target", ".git", "testdata"):
            self.assertIn(excluded, patterns)


if __name__ == "__main__":
    unittest.main()
