"""Generate the Python code for the event contracts from ``proto/radstream/v1``.

Run ``python -m radstream.contracts.generate`` (``make proto``) after editing a ``.proto`` file
and commit what it writes to ``services/contracts/v1/``. ``--check`` (``make proto-check``)
regenerates into a temporary directory and fails when the committed code differs from it.

protoc (from ``grpcio-tools``) writes ``*_pb2.py``, ``*_pb2.pyi`` and, for files that declare a
service, ``*_pb2_grpc.py``. This module then

* rewrites protoc's imports (``from radstream.v1 import x_pb2``, the proto package) to the
  Python import path (``from radstream.contracts.v1 import x_pb2``),
* writes a typing stub ``*_pb2_grpc.pyi`` for each service module, so servicers can subclass
  the generated base classes under ``mypy --strict``,
* writes ``v1/__init__.py`` listing the modules.

The output is a pure function of the ``.proto`` files and the pinned protoc: sorted, no
timestamps, so the check is a byte-for-byte comparison.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import re
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from importlib import resources
from pathlib import Path

from google.protobuf import descriptor_pb2

from radstream.common.errors import MisconfiguredError, MissingExtraError, RadstreamError

REPO_ROOT = Path(__file__).resolve().parents[2]
PROTO_ROOT = REPO_ROOT / "proto"
OUTPUT_DIR = REPO_ROOT / "services" / "contracts" / "v1"

PROTO_PACKAGE_DIR = "radstream/v1"
PROTO_MODULE_PREFIX = "radstream.v1"
PYTHON_MODULE_PREFIX = "radstream.contracts.v1"

FIX_HINT = "run `make proto` (python -m radstream.contracts.generate) and commit the result"

GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")

# protoc's stubs annotate message-or-dict arguments with a bare ``Mapping``, which
# ``mypy --strict`` rejects; the stubs are otherwise strict-clean.
_PYI_HEADER = '# mypy: disable-error-code="type-arg"\n'

_PROTOC_IMPORT = re.compile(
    rf"^(from|import) {re.escape(PROTO_MODULE_PREFIX)}(?=[ .])",
    re.MULTILINE,
)
_PROTOC_MODULE_NAME = re.compile(
    rf"(BuildTopDescriptorsAndMessages\(DESCRIPTOR, '){re.escape(PROTO_MODULE_PREFIX)}\."
)


class ContractGenerationError(RadstreamError):
    """protoc failed on the ``.proto`` files; its message on stderr says where."""


def _protoc() -> tuple[Callable[[list[str]], int], Path]:
    """Return protoc's entry point and the directory of its bundled ``google/protobuf`` protos."""
    try:
        # grpcio-tools is a dev dependency without type information: import it by name.
        protoc = importlib.import_module("grpc_tools.protoc")
    except ImportError as exc:
        raise MissingExtraError("grpcio-tools", "dev") from exc
    include = Path(str(resources.files("grpc_tools") / "_proto"))
    main: Callable[[list[str]], int] = protoc.main
    return main, include


def proto_files(proto_root: Path = PROTO_ROOT) -> list[str]:
    """Return the ``.proto`` files of the contract package, relative to *proto_root*, sorted."""
    files = sorted(
        path.relative_to(proto_root).as_posix()
        for path in (proto_root / PROTO_PACKAGE_DIR).glob("*.proto")
    )
    if not files:
        raise MisconfiguredError(
            f"no .proto files under {proto_root / PROTO_PACKAGE_DIR}; "
            "run from a radstream source checkout"
        )
    return files


def run_protoc(proto_root: Path, *options: str) -> None:
    """Run protoc on every contract ``.proto`` file with *options* (``--python_out=...``)."""
    protoc, include = _protoc()
    args = [
        "grpc_tools.protoc",
        f"-I{proto_root}",
        f"-I{include}",
        *options,
        *proto_files(proto_root),
    ]
    status = protoc(args)
    if status != 0:
        raise ContractGenerationError(
            f"protoc failed with status {status} on {proto_root / PROTO_PACKAGE_DIR}; "
            "fix the .proto error it printed above"
        )


def compile_descriptors(
    proto_root: Path = PROTO_ROOT, *, source_info: bool = False
) -> descriptor_pb2.FileDescriptorSet:
    """Compile the contract ``.proto`` files into a descriptor set (with comments if asked)."""
    with tempfile.TemporaryDirectory(prefix="radstream-proto-") as tmp:
        out = Path(tmp) / "descriptors.pb"
        options = [f"--descriptor_set_out={out}"]
        if source_info:
            options.append("--include_source_info")
        run_protoc(proto_root, *options)
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def _to_python_imports(source: str) -> str:
    """Rewrite protoc's proto-package imports to the Python import path."""
    source = _PROTOC_IMPORT.sub(rf"\1 {PYTHON_MODULE_PREFIX}", source)
    return _PROTOC_MODULE_NAME.sub(rf"\g<1>{PYTHON_MODULE_PREFIX}.", source)


def _module_of(proto_file: str) -> tuple[str, str]:
    """Return (package, module) of the ``_pb2`` module generated for *proto_file*."""
    dotted = proto_file.removesuffix(".proto").replace("/", ".") + "_pb2"
    package, _, module = dotted.rpartition(".")
    if package == PROTO_MODULE_PREFIX:
        package = PYTHON_MODULE_PREFIX
    return package, module


def _python_names(
    descriptors: descriptor_pb2.FileDescriptorSet,
) -> dict[str, tuple[str, str, str]]:
    """Map each message's full name to (package, module, class path) of its Python class."""

    def walk(
        messages: Sequence[descriptor_pb2.DescriptorProto], prefix: str, path: str
    ) -> Iterator[tuple[str, str]]:
        for message in messages:
            yield f"{prefix}.{message.name}", f"{path}{message.name}"
            yield from walk(
                message.nested_type, f"{prefix}.{message.name}", f"{path}{message.name}."
            )

    names: dict[str, tuple[str, str, str]] = {}
    for file in descriptors.file:
        package, module = _module_of(file.name)
        for full_name, class_path in walk(file.message_type, f".{file.package}", ""):
            names[full_name] = (package, module, class_path)
    return names


def _grpc_stub(
    file: descriptor_pb2.FileDescriptorProto, names: dict[str, tuple[str, str, str]]
) -> str:
    """Render the typing stub for the ``_pb2_grpc`` module of *file*."""
    imports: set[tuple[str, str]] = set()

    def type_of(full_name: str) -> str:
        package, module, class_path = names[full_name]
        imports.add((package, module))
        return f"_{module}.{class_path}"

    body: list[str] = []
    for service in file.service:
        stub, servicer = [f"class {service.name}Stub:"], [f"class {service.name}Servicer:"]
        stub.append("    def __init__(self, channel: grpc.Channel | grpc.aio.Channel) -> None: ...")
        for method in service.method:
            request, response = type_of(method.input_type), type_of(method.output_type)
            if method.client_streaming:
                request = f"_Iterator[{request}] | _AsyncIterator[{request}]"
            if method.server_streaming:
                response = f"_Iterator[{response}] | _AsyncIterator[{response}]"
            else:
                response = f"{response} | _Awaitable[{response}]"
            stub.append(f"    {method.name}: _Any")
            servicer.append(
                f"    def {method.name}(self, request: {request}, "
                f"context: grpc.ServicerContext | grpc.aio.ServicerContext) -> {response}: ..."
            )
        body += ["", "", *stub, "", "", *servicer, "", ""]
        body.append(
            f"def add_{service.name}Servicer_to_server("
            f"servicer: {service.name}Servicer, server: grpc.Server | grpc.aio.Server) -> None: ..."
        )
    header = [
        f'"""Typing stub for the gRPC code generated from {file.name}; do not edit.',
        "",
        "Written by radstream.contracts.generate; regenerate with ``make proto``.",
        '"""',
        "",
        "from collections.abc import AsyncIterator as _AsyncIterator",
        "from collections.abc import Awaitable as _Awaitable",
        "from collections.abc import Iterator as _Iterator",
        "from typing import Any as _Any",
        "",
        "import grpc",
        "import grpc.aio",
        "",
        *(f"from {package} import {module} as _{module}" for package, module in sorted(imports)),
    ]
    return "\n".join([*header, *body]) + "\n"


def _package_init(modules: Sequence[str], grpc_modules: Sequence[str]) -> str:
    """Render ``v1/__init__.py``: imports every ``_pb2`` module and lists the gRPC ones."""
    lines = [
        f'"""Python code generated from proto/{PROTO_PACKAGE_DIR} by '
        "radstream.contracts.generate; do not edit.",
        "",
        "Regenerate with ``make proto``. gRPC modules are listed by name and not imported here,",
        "so importing the messages does not import grpc.",
        '"""',
        "",
        "from types import ModuleType",
        "",
        f"from {PYTHON_MODULE_PREFIX} import (",
        *(f"    {module}," for module in modules),
        ")",
        "",
        "__all__ = [",
        *(f'    "{name}",' for name in sorted([*modules, "GRPC_MODULES", "MODULES"])),
        "]",
        "",
        "#: Every generated message module, in file-name order.",
        "MODULES: tuple[ModuleType, ...] = (",
        *(f"    {module}," for module in modules),
        ")",
        "",
        "#: Import paths of the generated gRPC service modules.",
        "GRPC_MODULES: tuple[str, ...] = (",
        *(f'    "{PYTHON_MODULE_PREFIX}.{module}",' for module in grpc_modules),
        ")",
    ]
    return "\n".join(lines) + "\n"


def render(proto_root: Path = PROTO_ROOT) -> dict[str, bytes]:
    """Generate the contract code; return file contents by file name, sorted by name."""
    descriptors = compile_descriptors(proto_root)
    names = _python_names(descriptors)
    files: dict[str, bytes] = {}
    modules: list[str] = []
    grpc_modules: list[str] = []
    with tempfile.TemporaryDirectory(prefix="radstream-proto-") as tmp:
        out = Path(tmp)
        run_protoc(
            proto_root, f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}"
        )
        for file in descriptors.file:
            _, module = _module_of(file.name)
            generated = out / Path(file.name).parent
            modules.append(module)
            kinds = [".py", ".pyi"]
            if file.service:
                grpc_modules.append(f"{module}_grpc")
                kinds.append("_grpc.py")
                files[f"{module}_grpc.pyi"] = _grpc_stub(file, names).encode()
            for kind in kinds:
                text = (generated / f"{module}{kind}").read_text(encoding="utf-8")
                if kind == ".pyi":
                    text = _PYI_HEADER + text
                files[f"{module}{kind}"] = _to_python_imports(text).encode()
    files["__init__.py"] = _package_init(sorted(modules), sorted(grpc_modules)).encode()
    return dict(sorted(files.items()))


def _present(output_dir: Path) -> set[str]:
    """Return the names of the files in *output_dir* (caches excluded)."""
    if not output_dir.is_dir():
        return set()
    return {path.name for path in output_dir.iterdir() if path.is_file()}


def compare(files: dict[str, bytes], output_dir: Path = OUTPUT_DIR) -> list[str]:
    """List how *output_dir* differs from *files*: ``stale: x``, ``missing: x``, ``extra: x``."""
    present = _present(output_dir)
    problems = []
    for name in sorted(present | files.keys()):
        if name not in present:
            problems.append(f"missing: {name}")
        elif name not in files:
            problems.append(f"extra:   {name}")
        elif (output_dir / name).read_bytes() != files[name]:
            problems.append(f"stale:   {name}")
    return problems


def write(files: dict[str, bytes], output_dir: Path = OUTPUT_DIR) -> list[str]:
    """Write *files* into *output_dir*, delete generated files no longer produced; list changes."""
    output_dir.mkdir(parents=True, exist_ok=True)
    changes = []
    for name in sorted(_present(output_dir) - files.keys()):
        if name.endswith(GENERATED_SUFFIXES):
            (output_dir / name).unlink()
            changes.append(f"removed {name}")
    for name, content in files.items():
        target = output_dir / name
        if not target.is_file() or target.read_bytes() != content:
            target.write_bytes(content)
            changes.append(f"wrote   {name}")
    return changes


def _display(path: Path) -> str:
    """Return *path* relative to the repository root when it is inside it."""
    with contextlib.suppress(ValueError):
        return path.relative_to(REPO_ROOT).as_posix()
    return str(path)


def main(argv: Sequence[str] | None = None) -> int:
    """Regenerate the contract code, or with ``--check`` report drift; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m radstream.contracts.generate", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="regenerate into a temporary directory and fail if the tree differs",
    )
    args = parser.parse_args(argv)
    out = sys.stdout
    try:
        files = render()
    except ContractGenerationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    where = _display(OUTPUT_DIR)
    if args.check:
        problems = compare(files, OUTPUT_DIR)
        if problems:
            print(f"generated contract code in {where} is out of date:", file=out)
            for problem in problems:
                print(f"  {problem}", file=out)
            print(f"fix: {FIX_HINT}", file=out)
            return 1
        print(f"{where}: {len(files)} generated files up to date", file=out)
        return 0
    changes = write(files, OUTPUT_DIR)
    for change in changes:
        print(f"  {change}", file=out)
    print(f"{where}: {len(files)} generated files, {len(changes)} changed", file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
