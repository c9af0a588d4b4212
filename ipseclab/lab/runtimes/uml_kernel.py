"""The User-Mode Linux kernel the lab boots: which one, and how the project's set-up installs it.

Why not simply Debian's ``user-mode-linux``: bookworm's (6.1) and trixie's (6.12) UML kernels
panic as soon as init starts on a CPU with AMX (``userspace - ptrace set fp regs failed, errno =
14``): the host's XSAVE area is larger than the buffer those kernels hand to
``PTRACE_SETREGSET``, and the host refuses any size but the full one.  Debian unstable's
``user-mode-linux`` (7.x) sizes the buffer from the host and boots on CPUs with and without AMX.

Its binary needs unstable's C library, so :func:`install_kernel` fetches the two packages
(``user-mode-linux`` and ``libc6``) through apt with a private configuration (a sources list
that names the unstable suite of the host's own Debian mirror, a private list and archive
directory, an empty dpkg status), checks them as apt does (signed Release), extracts them into
``<cache>/kernels/<version>/`` with ``dpkg-deb -x``, and points the kernel binary's interpreter
and library path at the extracted C library with ``patchelf``.  Nothing outlives the set-up:
the host's C library, apt sources, pinning and package lists are untouched, and the private
apt state is deleted once the packages are extracted.

:func:`select_kernel` picks the kernel a lab uses: ``$IPSECLAB_UML_KERNEL`` (``system``, a
kernel directory of the cache, or a ``linux.uml`` binary) if set, else the newest installed
in the cache, else the system's ``/usr/bin/linux.uml``.  ``runtimes.uml_probe`` then checks
that it can run init on this CPU before any case.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ...errors import LabError
from ..images import cache_root
from ..proc import require_tool, run

SYSTEM_BINARY = Path("/usr/bin/linux.uml")
SYSTEM_MODULES = Path("/usr/lib/uml/modules")

# How the guest's processes are run, on every UML command line (a guest's and the start-up probe's, so the probe
# checks the mode the guests use): with seccomp filters where the host allows them (UML 6.16 and later; "auto"
# falls back to ptrace, and an older kernel ignores the word).  Measured on a guest (AMD EPYC, UML 7.2.7): an exec
# of `ip` 57 -> 20 CPU-ms, of swanctl 130 -> 82; one pair's 40 matrix cells 134 -> 117 CPU-s, all passing.
USERSPACE = "seccomp=auto"
DEFAULT_SUITE = "unstable"
PACKAGES = ("user-mode-linux", "libc6")
MANIFEST = "kernel.json"
LIBDIR = "usr/lib/x86_64-linux-gnu"  # where unstable's libc6 keeps libc.so.6 and the dynamic loader
INSTALL_HINT = "run `sudo make setup` (it installs Debian unstable's user-mode-linux into the cache), " \
               "or `sudo .venv/bin/ipseclab kernel install`"


@dataclass(frozen=True, slots=True)
class UmlKernel:
    """A UML kernel: its binary, the directory of its modules, and where it came from."""

    binary: Path
    modules: Path  # .../modules/<version>: copied into every peer image as /lib/modules/<version>
    version: str  # the kernel release (``linux.uml --version``), e.g. 7.2.7
    origin: str  # how it got here, for lab.json and error messages
    package: str = ""  # the Debian package version it came from, e.g. 7.2um1
    install_dir: Path | None = None  # the cache directory it was installed into (binary, modules, libc)

    def build_id(self) -> str:
        """What identifies this build on this host: the version and the binary's size and mtime."""
        st = self.binary.stat()
        return f"{self.version}:{st.st_size}:{st.st_mtime_ns}"

    def describe(self) -> str:
        return f"UML {self.version} ({self.origin})"

    def as_dict(self) -> dict[str, str]:
        return {k: "" if v is None else str(v) for k, v in asdict(self).items()}


def kernels_dir() -> Path:
    return cache_root() / "kernels"


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", version))


def binary_version(binary: Path) -> str:
    """The kernel release a UML binary reports (``linux.uml --version`` prints it alone)."""
    proc = run([str(binary), "--version"], timeout=20, check=False)
    version = proc.stdout.strip().splitlines()[-1:] if proc.returncode == 0 else []
    if not version or not re.fullmatch(r"\d+\.\d+[\w.+-]*", version[0]):
        raise LabError(f"{binary} does not run as a UML kernel (`--version` exited {proc.returncode})",
                       command=[str(binary), "--version"], output=proc.stdout + proc.stderr, hint=INSTALL_HINT)
    return version[0]


def _from_manifest(directory: Path) -> UmlKernel | None:
    try:
        data = json.loads((directory / MANIFEST).read_text())
        kernel = UmlKernel(Path(data["binary"]), Path(data["modules"]), data["version"], data["origin"],
                           data.get("package", ""), directory)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return kernel if kernel.binary.exists() and kernel.modules.is_dir() else None


def relocate_kernel(directory: Path) -> UmlKernel:
    """An installed kernel copied to ``directory`` from elsewhere (a remote runner's cache): its binary's
    interpreter and library path, and its manifest, made to name the new place.  Idempotent."""
    manifest = directory / MANIFEST
    data = json.loads(manifest.read_text())
    old, new = str(data["install_dir"]), str(directory)
    if old != new:
        run(["patchelf", "--set-interpreter", str(directory / LIBDIR / "ld-linux-x86-64.so.2"),
             "--set-rpath", str(directory / LIBDIR), str(directory / "usr/bin/linux.uml")], timeout=120)
        data = {k: v.replace(old, new) if isinstance(v, str) else v for k, v in data.items()}
        fresh = manifest.with_suffix(".new")  # a new file, renamed over: never written through a hard link
        fresh.write_text(json.dumps(data, indent=2) + "\n")
        fresh.replace(manifest)
    kernel = _from_manifest(directory)
    if kernel is None:
        raise LabError(f"the kernel copied to {directory} has no usable manifest")
    return kernel


def installed_kernels() -> list[UmlKernel]:
    """Kernels installed in the cache by :func:`install_kernel`, newest first."""
    root = kernels_dir()
    found = [k for d in root.iterdir() if (k := _from_manifest(d))] if root.is_dir() else []
    return sorted(found, key=lambda k: _version_key(k.version), reverse=True)


def system_kernel(binary: Path = SYSTEM_BINARY) -> UmlKernel | None:
    """A UML binary outside the cache (Debian's package by default), with the modules of its version."""
    if not binary.exists():
        return None
    version = binary_version(binary)
    modules = SYSTEM_MODULES / version
    if not modules.is_dir():
        raise LabError(f"no modules for UML {version} in {SYSTEM_MODULES} (the kernel at {binary})",
                       hint="reinstall the user-mode-linux package, or " + INSTALL_HINT)
    return UmlKernel(binary, modules, version, f"{binary}, Debian's user-mode-linux package")


def select_kernel() -> UmlKernel:
    """The kernel labs boot here (see the module docstring for the order); LabError if there is none."""
    forced = os.environ.get("IPSECLAB_UML_KERNEL", "").strip()
    if forced:
        if forced == "system":
            kernel = system_kernel()
        elif Path(forced).is_dir():
            kernel = _from_manifest(Path(forced))
        else:
            kernel = system_kernel(Path(forced))
        if kernel is None:
            raise LabError(f"IPSECLAB_UML_KERNEL={forced} names no usable UML kernel",
                           hint="use 'system', a kernel directory under "
                                f"{kernels_dir()} or the path of a linux.uml binary")
        return kernel
    cached = installed_kernels()
    if cached:
        return cached[0]
    kernel = system_kernel()
    if kernel is None:
        raise LabError("no User-Mode Linux kernel is installed", hint=INSTALL_HINT)
    return kernel


# --- installation ----------------------------------------------------------------------------------


def host_codename(os_release: Path = Path("/etc/os-release")) -> str:
    """The host's Debian release name (``VERSION_CODENAME``), '' where it has none."""
    try:
        m = re.search(r"^VERSION_CODENAME=(\S+)", os_release.read_text(), re.M)
    except OSError:
        return ""
    return m.group(1).strip('"') if m else ""


def host_debian_mirror(etc: Path = Path("/etc/apt"), codename: str | None = None) -> tuple[str, str]:
    """The URI of the host's main Debian archive and its Signed-By keyring ('' if none) from apt's sources.

    The entry whose suite is the host's release itself (not -security or -updates) is the
    Debian archive; its URI serves unstable too.
    """
    entries: list[tuple[str, list[str], list[str], str]] = []  # (uri, suites, components, signed-by)
    for path in [etc / "sources.list", *sorted((etc / "sources.list.d").glob("*.list"))]:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            m = re.match(r"\s*deb\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)((?:\s+\S+)*)", line)
            if m:
                signed = re.search(r"signed-by=(\S+)", m.group(1) or "")
                entries.append((m.group(2), [m.group(3)], m.group(4).split(), signed.group(1) if signed else ""))
    for path in sorted((etc / "sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text(errors="replace")):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line or line[:1].isspace():
                    continue
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
            if fields.get("enabled", "yes").lower() == "no" or "deb" not in fields.get("types", "").split():
                continue
            entries += [(uri, fields.get("suites", "").split(), fields.get("components", "").split(),
                         fields.get("signed-by", "")) for uri in fields.get("uris", "").split()]
    release = codename if codename is not None else host_codename()
    # Debian's own archive: the host's release (or a Debian suite name) with component main, signed by
    # Debian's keyring or apt's default keys; a third party's repository (its own keyring) is not it
    candidates = [(uri, keyring) for uri, suites, components, keyring in entries
                  if "main" in components
                  and any(s == release or s in ("stable", "testing", "unstable", "sid") for s in suites)
                  and (not keyring or "debian-archive-keyring" in keyring)]
    if candidates:
        uri, keyring = candidates[0]
        return uri.rstrip("/"), keyring
    raise LabError("no Debian archive found in apt's sources (/etc/apt/sources.list*)",
                   hint="an entry for the host's release with component main signed by Debian's keyring is "
                        "needed; or install a newer user-mode-linux by hand and set IPSECLAB_UML_KERNEL to it")


def install_kernel(suite: str = DEFAULT_SUITE, *, force: bool = False, log: bool = True) -> UmlKernel:
    """Install ``suite``'s user-mode-linux into the cache (see the module docstring); returns it.

    Does nothing when a kernel is already installed there, unless ``force``.
    """
    existing = installed_kernels()
    if existing and not force:
        return existing[0]
    for tool in ("apt-get", "dpkg-deb", "patchelf"):
        require_tool(tool)
    uri, keyring = host_debian_mirror()
    root = kernels_dir()
    root.mkdir(parents=True, exist_ok=True)
    work = root / f".download-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    try:
        for d in ("lists/partial", "archives/partial", "parts", "debs"):
            (work / d).mkdir(parents=True)
        (work / "status").write_text("")
        signed = f" [signed-by={keyring}]" if keyring else ""
        (work / "sources.list").write_text(f"deb{signed} {uri} {suite} main\n")
        apt = ["-q", "-o", f"Dir::Etc::SourceList={work / 'sources.list'}",
               "-o", f"Dir::Etc::SourceParts={work / 'parts'}", "-o", f"Dir::State::Lists={work / 'lists'}",
               "-o", f"Dir::Cache={work}", "-o", f"Dir::Cache::archives={work / 'archives'}",
               "-o", f"Dir::State::status={work / 'status'}", "-o", "Acquire::Languages=none",
               "-o", "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false",
               "-o", "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false",
               "-o", "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false",
               "-o", "APT::Sandbox::User=root"]
        hint = f"check that apt can reach the Debian archive ({suite} suite)"
        started = time.monotonic()
        run(["apt-get", *apt, "update"], timeout=300, hint=hint)
        versions = {}
        for pkg in PACKAGES:
            shown = run(["apt-cache", *apt, "show", "--no-all-versions", pkg], timeout=60, hint=hint).stdout
            m = re.search(r"^Version:\s*(\S+)", shown, re.M)
            if not m:
                raise LabError(f"{pkg} has no version in Debian {suite}", output=shown, hint=hint)
            versions[pkg] = m.group(1)
        proc = run(["apt-get", *apt, "download", *PACKAGES], timeout=600, hint=hint, cwd=work / "debs")
        debs = sorted((work / "debs").glob("*.deb"))
        if len(debs) != len(PACKAGES):
            raise LabError(f"apt-get download fetched {len(debs)} of {len(PACKAGES)} packages",
                           output=proc.stdout + proc.stderr, hint=hint)
        partial = work / "root"
        for deb in debs:
            run(["dpkg-deb", "-x", str(deb), str(partial)], timeout=300)
        module_root = partial / "usr/lib/uml/modules"
        modules = sorted(module_root.iterdir(), key=lambda p: _version_key(p.name)) if module_root.is_dir() else []
        if not modules:
            raise LabError(f"user-mode-linux {versions['user-mode-linux']} from {suite} holds no modules")
        version = modules[-1].name
        final = root / f"{version}-{versions['user-mode-linux']}"
        # the binary's interpreter and library path name the final place; the directory moves there next
        binary = partial / "usr/bin/linux.uml"
        run(["patchelf", "--set-interpreter", str(final / LIBDIR / "ld-linux-x86-64.so.2"),
             "--set-rpath", str(final / LIBDIR), str(binary)], timeout=120)
        if final.exists():  # a reinstall (--force): move the old one aside first, remove it once replaced
            final.rename(work / "replaced")
        partial.rename(final)
        kernel = UmlKernel(final / "usr/bin/linux.uml", final / "usr/lib/uml/modules" / version, version,
                           f"Debian {suite} user-mode-linux {versions['user-mode-linux']} with libc6 "
                           f"{versions['libc6']}, in {final}", versions["user-mode-linux"], final)
        reported = binary_version(kernel.binary)
        if reported != version:
            raise LabError(f"the installed UML kernel reports {reported}, its modules are for {version}")
        manifest = kernel.as_dict() | {"installed_in_s": f"{time.monotonic() - started:.1f}",
                                       "suite": suite, "libc6": versions["libc6"]}
        (final / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if log:
            print(f"kernel: installed {kernel.describe()} in {time.monotonic() - started:.1f} s")
        return kernel
    finally:
        shutil.rmtree(work, ignore_errors=True)  # private apt lists and downloaded packages
