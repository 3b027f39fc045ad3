# SPDX-License-Identifier: AGPL-3.0-or-later
"""Compiles .proto files with the system protoc and grpc_cpp_plugin."""

def cc_grpc_proto(name, srcs, deps = [], grpc = True, visibility = None):
    """Generates <name> (C++ messages, and gRPC stubs when grpc=True).

    Args:
      name: the cc_library to create.
      srcs: .proto files under protos/ (imported as paths relative to protos/).
      deps: other cc_grpc_proto targets whose protos these import.
      grpc: whether to run grpc_cpp_plugin too.
      visibility: visibility of the cc_library.
    """
    outs = []
    for src in srcs:
        base = src[:-len(".proto")]
        outs += [base + ".pb.h", base + ".pb.cc"]
        if grpc:
            outs += [base + ".grpc.pb.h", base + ".grpc.pb.cc"]
    # The package's directory in the execution root: under external/<repo>/
    # when this repository is a dependency of another workspace.
    repo = native.repository_name()
    pkg = native.package_name()
    if repo != "@":
        pkg = "external/" + repo[1:] + "/" + pkg
    grpc_flags = ""
    if grpc:
        grpc_flags = "--plugin=protoc-gen-grpc=/usr/bin/grpc_cpp_plugin --grpc_out=$(GENDIR)/" + pkg + " "
    native.genrule(
        name = name + "_gen",
        srcs = srcs + [d + "_srcs" for d in deps],
        outs = outs,
        cmd = ("/usr/bin/protoc -I" + pkg + " -I/usr/include " +
               "--cpp_out=$(GENDIR)/" + pkg + " " + grpc_flags +
               " ".join(["$(location " + s + ")" for s in srcs])),
    )
    native.filegroup(name = name + "_srcs", srcs = srcs, visibility = visibility)
    native.cc_library(
        name = name,
        srcs = [o for o in outs if o.endswith(".cc")],
        hdrs = [o for o in outs if o.endswith(".h")],
        includes = ["."],
        deps = deps + ["@system//:protobuf", "@system//:grpc"],
        visibility = visibility,
    )
