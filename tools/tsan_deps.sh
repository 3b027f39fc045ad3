#!/usr/bin/env bash
# SPDX-License-Identifier: AGPL-3.0-or-later
# Builds ThreadSanitizer-instrumented Abseil and gRPC into a prefix, for
# --config=tsan (tools/tsan.sh). The versions are the ones Debian has
# installed (libabsl-dev, libgrpc-dev), from Debian's own source packages
# with Debian's patches, configured the way debian/rules configures them
# (system Protobuf, c-ares, RE2, OpenSSL and zlib; Abseil from this prefix),
# and built with clang-14 -fsanitize=thread. Only the shared libraries the
# project links (third_party/system.BUILD) are built; the headers stay
# Debian's in /usr/include, which match because the sources, patches and
# ABI options (absl/base/options.h) are the same: the script checks that.
# Abseil gets one patch of ours first (tools/sanitizers/abseil-tsan-*.patch,
# which says what it fixes); it changes no declaration, so the ABI stays
# Debian's.
#
# Usage: tools/tsan_deps.sh [--check] [prefix]   (default prefix
#        $TRACTOR_TSAN_PREFIX or ~/.cache/tractor-tsan). Takes an hour or
#        more on two cores; run it as `nice -n 10 tools/tsan_deps.sh`.
#        JOBS=N overrides -j2. --check builds nothing: it fails unless the
#        prefix is complete (tools/tsan.sh runs it so).
# A second run with the prefix complete builds nothing. A prefix complete
# but for Abseil's patch (built before the patch, or with another version of
# it) gets only libabsl_synchronization rebuilt, the one library the patch
# changes: a few minutes. Every run ends by
# writing tsan_deps.bazelrc at the top of the repository (not checked in;
# .bazelrc imports it), which points --config=tsan at the prefix.
# Needs root (or sudo) only if the apt sources lack a deb-src entry, to add
# one.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)

check_only=0
if [ "${1:-}" = --check ]; then check_only=1; shift; fi
prefix=${1:-${TRACTOR_TSAN_PREFIX:-$HOME/.cache/tractor-tsan}}
jobs=${JOBS:-2}
cc=${CC_TSAN:-clang-14}
cxx=${CXX_TSAN:-clang++-14}

die() { echo "tsan_deps.sh: $*" >&2; exit 1; }

# The Bazel settings of --config=tsan that depend on the prefix: link the
# instrumented libraries ahead of /usr/lib's, load them at run time (each
# binary's RUNPATH), and tell discovery/mutex.h that Abseil announces its
# own locking to TSan.
write_bazelrc() {
  cat >"$repo/tsan_deps.bazelrc" <<EOF
# Written by tools/tsan_deps.sh; not checked in. --config=tsan links the
# ThreadSanitizer builds of Abseil and gRPC in $prefix.
build:tsan --linkopt=-L$prefix/lib
build:tsan --linkopt=-Wl,-rpath,$prefix/lib
build:tsan --copt=-DTRACTOR_TSAN_INSTRUMENTED_DEPS=1
EOF
}

src_version() {  # source package version of an installed binary package
  dpkg-query -W -f='${source:Version}' "$1" 2>/dev/null ||
    die "$1 is not installed (tools/setup.sh installs it)"
}
absl_version=$(src_version libabsl-dev)
grpc_version=$(src_version libgrpc++-dev)
stamp="$prefix/.complete"
want="abseil=$absl_version grpc=$grpc_version cc=$cc flags=v1"
# Abseil's patches: their content is part of what the Abseil libraries in
# the prefix were built from ($absl_stamp).
absl_patches=("$repo"/tools/sanitizers/abseil-tsan-*.patch)
[ -f "${absl_patches[0]}" ] || die "no tools/sanitizers/abseil-tsan-*.patch"
patch_id=$(cat "${absl_patches[@]}" | sha256sum | cut -c1-16)
absl_stamp="$prefix/.abseil-complete"
absl_want="$want patch=$patch_id"

stamp_is() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }
if stamp_is "$stamp" "$want" && stamp_is "$absl_stamp" "$absl_want"; then
  write_bazelrc
  [ "$check_only" = 1 ] || echo "tsan_deps.sh: $prefix is complete ($absl_want); nothing to build"
  exit 0
fi
if [ "$check_only" = 1 ]; then
  stamp_is "$stamp" "$want" &&
    die "$prefix holds Abseil built without its current patch (tools/sanitizers/abseil-tsan-*.patch): run tools/tsan_deps.sh (rebuilds libabsl_synchronization only, minutes)"
  die "$prefix has no complete TSan build of $want: run tools/tsan_deps.sh (an hour or more)"
fi

command -v "$cc" >/dev/null || die "$cc not found (apt-get install clang-14)"
command -v cmake >/dev/null || die "cmake not found"
command -v ninja >/dev/null || die "ninja not found (apt-get install ninja-build)"
command -v dpkg-source >/dev/null || die "dpkg-source not found (apt-get install dpkg-dev)"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# apt-get source needs a deb-src entry; a fresh machine has only deb.
if ! apt-cache showsrc grpc 2>/dev/null | grep -q "^Version: $grpc_version\$"; then
  list=/etc/apt/sources.list.d/tractor-tsan-src.sources
  echo "tsan_deps.sh: adding a deb-src entry ($list)"
  codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
  as_root tee "$list" >/dev/null <<EOF
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: $codename $codename-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: $codename-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  as_root apt-get update -qq
fi

# The sources and build trees stay in $work until the prefix is complete, so
# an interrupted run resumes where it stopped (ninja rebuilds nothing it
# has built).
work="$prefix/.build"
if ! stamp_is "$work/.sources" "$absl_want"; then
  rm -rf "$work"
  mkdir -p "$work"
  # apt-get source downloads and unpacks, applying Debian's patches; then
  # Abseil gets ours.
  (cd "$work" && apt-get source -qq "abseil=$absl_version" "grpc=$grpc_version")
  absl_src=$(find "$work" -maxdepth 1 -type d -name 'abseil-*' | head -1)
  [ -n "$absl_src" ] || die "apt-get source unpacked no Abseil"
  for p in "${absl_patches[@]}"; do
    patch -d "$absl_src" -p1 --forward --quiet <"$p" || die "$p does not apply to Abseil $absl_version"
  done
  echo "$absl_want" >"$work/.sources"
fi
mkdir -p "$prefix/lib"
cd "$work"
absl_src=$(find . -maxdepth 1 -type d -name 'abseil-*' | head -1)
grpc_src=$(find . -maxdepth 1 -type d -name 'grpc-*' | head -1)
[ -n "$absl_src" ] && [ -n "$grpc_src" ] || die "apt-get source unpacked nothing"

# The installed headers are Debian's: the ABI options must be the same.
cmp -s "$absl_src/absl/base/options.h" /usr/include/absl/base/options.h ||
  die "absl/base/options.h differs from /usr/include's (ABI options)"

# Debian's flags (dpkg-buildflags) at -O2, with TSan and line tables for
# the reports' stacks; no -D_FORTIFY_SOURCE, which TSan's interceptors
# do not need.
flags="-O2 -gline-tables-only -fno-omit-frame-pointer -fsanitize=thread"
common=(
  -G Ninja
  -DCMAKE_BUILD_TYPE=None
  -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx"
  -DCMAKE_C_FLAGS="$flags" -DCMAKE_CXX_FLAGS="$flags"
  -DCMAKE_INSTALL_PREFIX="$prefix" -DCMAKE_INSTALL_LIBDIR=lib -DgRPC_INSTALL_LIBDIR=lib
  -DCMAKE_PREFIX_PATH="$prefix"
  # The libraries find each other in the prefix, not in /usr/lib.
  -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON -DCMAKE_INSTALL_RPATH="$prefix/lib"
  -DCMAKE_CXX_STANDARD=17
  -DBUILD_SHARED_LIBS=ON
)

# The patch's calls into TSan must be in the library it changes.
check_patched() {
  nm -D "$prefix/lib/libabsl_synchronization.so" | grep -c ' U __tsan_acquire$' >/dev/null ||
    die "$prefix/lib/libabsl_synchronization.so lacks the patch's __tsan_acquire"
}

# Abseil, whole (as Debian builds it, minus the tests); skipped when an
# earlier run installed it and stopped in gRPC.
if stamp_is "$absl_stamp" "$absl_want"; then
  echo "tsan_deps.sh: Abseil $absl_version already in $prefix"
elif stamp_is "$stamp" "$want"; then
  # Everything else is there, built from the same sources but for the
  # patch, which only touches libabsl_synchronization.
  echo "tsan_deps.sh: rebuilding libabsl_synchronization with the patch"
  cmake -S "$absl_src" -B absl-build "${common[@]}" -DBUILD_TESTING=OFF >absl-configure.log
  cmake --build absl-build -j "$jobs" --target synchronization
  found=$(find absl-build -name 'libabsl_synchronization.so*')
  [ -n "$found" ] || die "libabsl_synchronization.so was not built"
  cp -P $found "$prefix/lib/"
  check_patched
  echo "$absl_want" >"$absl_stamp"
  cd "$prefix"
  rm -rf "$work"
  write_bazelrc
  echo "tsan_deps.sh: done; $prefix/lib holds the instrumented libraries"
  exit 0
else
  echo "tsan_deps.sh: building Abseil $absl_version"
  cmake -S "$absl_src" -B absl-build "${common[@]}" -DBUILD_TESTING=OFF >absl-configure.log
  cmake --build absl-build -j "$jobs"
  cmake --install absl-build >/dev/null
  check_patched
  echo "$absl_want" >"$absl_stamp"
fi

echo "tsan_deps.sh: building gRPC $grpc_version"
# The code of the reflection and channelz services is generated with the
# system's grpc_cpp_plugin (the same version): building gRPC's own plugin
# would need libprotoc's headers (libprotoc-dev), and the library it links
# is only named, to satisfy CMake, never built.
sed -i 's|set(_gRPC_CPP_PLUGIN $<TARGET_FILE:grpc_cpp_plugin>)|set(_gRPC_CPP_PLUGIN /usr/bin/grpc_cpp_plugin)|' \
  "$grpc_src/CMakeLists.txt"
grep -q 'set(_gRPC_CPP_PLUGIN /usr/bin/grpc_cpp_plugin)' "$grpc_src/CMakeLists.txt" ||
  die "could not point gRPC's CMakeLists.txt at /usr/bin/grpc_cpp_plugin"
command -v grpc_cpp_plugin >/dev/null ||
  die "grpc_cpp_plugin not found (apt-get install protobuf-compiler-grpc)"
protoc_lib=$(find /usr/lib -name 'libprotoc.so*' | head -1)
[ -n "$protoc_lib" ] || die "libprotoc not found (apt-get install protobuf-compiler)"
# debian/rules' COMMON_BUILD_FLAGS, minus the plugins for other languages.
cmake -S "$grpc_src" -B grpc-build "${common[@]}" \
  -DgRPC_ABSL_PROVIDER=package -DgRPC_CARES_PROVIDER=package \
  -DgRPC_PROTOBUF_PROVIDER=package -DgRPC_RE2_PROVIDER=package \
  -DgRPC_SSL_PROVIDER=package -DgRPC_ZLIB_PROVIDER=package \
  -DgRPC_BENCHMARK_PROVIDER=none -DgRPC_BUILD_TESTS=OFF \
  -DgRPC_BACKWARDS_COMPATIBILITY_MODE=OFF \
  -DgRPC_BUILD_GRPC_CPP_PLUGIN=OFF -DProtobuf_PROTOC_LIBRARY="$protoc_lib" \
  -DgRPC_BUILD_GRPC_CSHARP_PLUGIN=OFF -DgRPC_BUILD_GRPC_NODE_PLUGIN=OFF \
  -DgRPC_BUILD_GRPC_OBJECTIVE_C_PLUGIN=OFF -DgRPC_BUILD_GRPC_PHP_PLUGIN=OFF \
  -DgRPC_BUILD_GRPC_PYTHON_PLUGIN=OFF -DgRPC_BUILD_GRPC_RUBY_PLUGIN=OFF \
  >grpc-configure.log
grpc_libs=(grpc++ grpc gpr upb address_sorting grpc++_reflection grpcpp_channelz)
cmake --build grpc-build -j "$jobs" --target "${grpc_libs[@]}"
for l in "${grpc_libs[@]}"; do
  found=$(find grpc-build -maxdepth 1 -name "lib$l.so*")
  [ -n "$found" ] || die "lib$l.so was not built"
  # cp -P keeps the soname symlinks as symlinks.
  cp -P $found "$prefix/lib/"
done

# Each library must be instrumented and must load its siblings from the
# prefix.
for l in "${grpc_libs[@]}" absl_synchronization absl_base; do
  f="$prefix/lib/lib$l.so"
  # (grep -c reads all of nm's output: grep -q would cut it off, and the
  # pipeline fail under pipefail.)
  nm -D "$f" | grep -c ' U __tsan_init$' >/dev/null || die "$f is not instrumented"
done
outside=$(ldd "$prefix/lib/libgrpc++.so" | grep -E 'lib(grpc|gpr|upb|address_sorting|absl_)' |
  grep -v "$prefix/lib" || true)
[ -z "$outside" ] ||
  die "libgrpc++.so resolves some of its libraries outside $prefix/lib: $outside"

cd "$prefix"
rm -rf "$work"
echo "$want" >"$stamp"
write_bazelrc
echo "tsan_deps.sh: done; $prefix/lib holds the instrumented libraries"
